//! The event-kind taxonomy across the crisis timeline, and the common risk scale.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where on the crisis timeline an event kind falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// What partners know before a crisis: plans, flags, contacts.
    Before,
    /// The crisis itself: detentions, conveyance, arrival at a place of safety, referrals.
    During,
    /// Outcomes, discharges and follow-up.
    After,
    /// Made by the router, not by an agency.
    Router,
}

macro_rules! event_kinds {
    ($( $variant:ident = $wire:literal, $phase:ident, $doc:literal; )*) => {
        /// What happened. The wire form is dotted (`police.s136_detention`); the prefix names the kind of
        /// agency that reports it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum EventKind {
            $( #[doc = $doc] #[serde(rename = $wire)] $variant, )*
        }

        impl EventKind {
            /// Every kind, in timeline order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The dotted wire name.
            pub const fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $wire,)* }
            }

            /// Where on the timeline this kind falls.
            pub const fn phase(self) -> Phase {
                match self { $(EventKind::$variant => Phase::$phase,)* }
            }
        }

        impl FromStr for EventKind {
            type Err = UnknownEventKind;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($wire => Ok(EventKind::$variant),)* _ => Err(UnknownEventKind) }
            }
        }
    };
}

event_kinds! {
    PoliceConcernForWelfare = "police.concern_for_welfare", Before, "Police logged a concern for someone's welfare.";
    NhsCrisisPlan = "nhs.crisis_plan", Before, "An NHS crisis plan exists or changed (SNOMED CT 736253002).";
    NhsRiskFlag = "nhs.risk_flag", Before, "An NHS risk alert was raised or cleared.";
    VcsContact = "vcs.contact", Before, "A voluntary-sector contact: a Safe Haven visit, a helpline call.";
    PoliceS136Detention = "police.s136_detention", During, "Police removed or kept someone under s136 MHA.";
    PoliceS135Warrant = "police.s135_warrant", During, "Police executed a s135 warrant.";
    PoliceConveyance = "police.conveyance", During, "The person was conveyed to a place of safety.";
    NhsPlaceOfSafetyArrival = "nhs.place_of_safety_arrival", During, "The person arrived at a place of safety.";
    NhsReferral = "nhs.referral", During, "An NHS service made or received a referral.";
    VcsReferral = "vcs.referral", During, "A voluntary-sector service made or received a referral.";
    NhsAssessmentOutcome = "nhs.assessment_outcome", After, "The MHA assessment's outcome.";
    NhsDischarge = "nhs.discharge", After, "Discharge from a place of safety, ward or team.";
    VcsFollowUp = "vcs.follow_up", After, "A voluntary-sector follow-up contact.";
    PoliceOutcome = "police.outcome", After, "The police record of how the incident ended.";
    FeedbackOutcome = "feedback.outcome", Router, "Outcome feedback to the agencies that started or joined the episode.";
    ContextPreCrisis = "context.pre_crisis", Router, "What partners already hold, shared with responders when an episode opens.";
}

impl EventKind {
    /// True for the outcome kinds that produce `feedback.outcome` for the episode's originator and
    /// contributors.
    pub const fn is_outcome(self) -> bool {
        matches!(self, Self::NhsAssessmentOutcome | Self::NhsDischarge | Self::PoliceOutcome | Self::VcsFollowUp)
    }

    /// True for kinds that may open a new episode when nothing correlates them with an open one.
    pub const fn opens_episode(self) -> bool {
        matches!(self.phase(), Phase::During) || matches!(self, Self::PoliceConcernForWelfare)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind")]
pub struct UnknownEventKind;

/// The kinds of agency Concordat connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgencyKind {
    /// A police force, or a team within one.
    Police,
    /// An NHS trust or service.
    Nhs,
    /// A voluntary and community sector service.
    Vcs,
    /// An ambulance service.
    Ambulance,
    /// A local authority (AMHP service, safeguarding).
    LocalAuthority,
}

impl AgencyKind {
    /// Every agency kind.
    pub const ALL: &'static [AgencyKind] = &[Self::Police, Self::Nhs, Self::Vcs, Self::Ambulance, Self::LocalAuthority];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Police => "police",
            Self::Nhs => "nhs",
            Self::Vcs => "vcs",
            Self::Ambulance => "ambulance",
            Self::LocalAuthority => "local_authority",
        }
    }
}

impl fmt::Display for AgencyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The common risk scale every agency's own grading maps onto. Ordered: `None < Low < Moderate < High <
/// Imminent`, so a policy threshold is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    /// No identified risk.
    None,
    /// Low risk.
    Low,
    /// Moderate risk.
    Moderate,
    /// High risk.
    High,
    /// Risk to life or of serious harm now.
    Imminent,
}

impl RiskLevel {
    /// Every level, lowest first.
    pub const ALL: &'static [RiskLevel] = &[Self::None, Self::Low, Self::Moderate, Self::High, Self::Imminent];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Low => "low",
            Self::Moderate => "moderate",
            Self::High => "high",
            Self::Imminent => "imminent",
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RiskLevel {
    type Err = UnknownRiskLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|level| level.as_str() == s).ok_or(UnknownRiskLevel)
    }
}

/// A string that names no level of the common risk scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown risk level (expected none, low, moderate, high or imminent)")]
pub struct UnknownRiskLevel;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_wire_names() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!("police.s137".parse::<EventKind>(), Err(UnknownEventKind));
    }

    #[test]
    fn kind_prefixes_name_their_reporter() {
        for kind in EventKind::ALL {
            let prefix = kind.as_str().split('.').next().unwrap();
            let expected = match kind.phase() {
                Phase::Router => ["feedback", "context"].contains(&prefix),
                _ => ["police", "nhs", "vcs"].contains(&prefix),
            };
            assert!(expected, "{kind}");
        }
    }

    #[test]
    fn risk_scale_is_ordered() {
        let mut sorted = RiskLevel::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, RiskLevel::ALL);
        assert!(RiskLevel::High >= RiskLevel::Moderate);
        assert!(RiskLevel::None < RiskLevel::Low);
        for level in RiskLevel::ALL {
            assert_eq!(level.as_str().parse::<RiskLevel>(), Ok(*level));
        }
    }
}
