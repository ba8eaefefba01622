//! The documented tables that turn a voluntary-sector contact into canonical terms, and the adapter's
//! configuration, which can replace them.
//!
//! Concerns map onto the canonical `risk.factors`; concerns with no risk factor (housing, money, loneliness)
//! are kept only as codes. Risk needs no table: services grade it on the common scale directly. This module
//! holds data and lookups, not the rules about which fields a contact may carry (`ingest.rs`).

use std::collections::BTreeMap;

use concordat_episode::{AgencyId, Disposition, RiskFactor, Urgency};
use serde::Deserialize;

use crate::format::{Concern, Outcome, ReferralUrgency};

/// The code system of the service a contact was with (`safe_haven`, `helpline`, …), in `details.codes`.
pub const SERVICE_SYSTEM: &str = "urn:concordat:vcs-service";
/// The code system of the concerns a contact recorded, in `details.codes`.
pub const CONCERN_SYSTEM: &str = "urn:concordat:vcs-concern";
/// The prefix of a service's contact-reference system; the agency id follows
/// (`urn:concordat:vcs-contact:safe-haven`). Contact ids ride in `episode.refs` under it, so that a
/// follow-up joins the episode of the contact it follows and notifications can quote the service's own id.
pub const CONTACT_SYSTEM_PREFIX: &str = "urn:concordat:vcs-contact:";
/// The prefix of a service's person-reference system; the agency id follows. Used in `subject.identifiers`.
pub const PERSON_SYSTEM_PREFIX: &str = "urn:concordat:vcs-person:";

/// The contact-reference identifier system of a service.
pub fn contact_system(agency: &AgencyId) -> String {
    format!("{CONTACT_SYSTEM_PREFIX}{agency}")
}

/// The person-reference identifier system of a service.
pub fn person_system(agency: &AgencyId) -> String {
    format!("{PERSON_SYSTEM_PREFIX}{agency}")
}

/// How the VCS adapter maps contacts. `Default` is the documented table of the README.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VcsConfig {
    /// The sending system's name, written to `source.system`.
    pub system: String,
    /// The risk factor each concern maps onto. A concern missing from the table yields no factor (it is still
    /// kept as a code). Replacing the table replaces it whole.
    pub concern_factors: BTreeMap<Concern, RiskFactor>,
    /// The agencies a referral may name in `referral_to`. Empty (the default): any well-formed agency id; the
    /// router then decides whether it knows the agency.
    pub referral_agencies: Vec<AgencyId>,
}

impl Default for VcsConfig {
    fn default() -> Self {
        Self {
            system: "vcs-contact.v1".to_owned(),
            concern_factors: DEFAULT_CONCERN_FACTORS.iter().copied().collect(),
            referral_agencies: Vec::new(),
        }
    }
}

/// The default concern table (see the README). Housing, money and loneliness have no canonical risk factor.
pub const DEFAULT_CONCERN_FACTORS: &[(Concern, RiskFactor)] = &[
    (Concern::SelfHarm, RiskFactor::SelfHarm),
    (Concern::SuicidalThoughts, RiskFactor::SuicidalIdeation),
    (Concern::SubstanceUse, RiskFactor::SubstanceUse),
    (Concern::HarmFromOthers, RiskFactor::HarmFromOthers),
    (Concern::HarmToOthers, RiskFactor::HarmToOthers),
    (Concern::DomesticAbuse, RiskFactor::DomesticAbuse),
    (Concern::ChildSafeguarding, RiskFactor::SafeguardingChild),
    (Concern::AdultSafeguarding, RiskFactor::SafeguardingAdult),
    (Concern::PhysicalHealth, RiskFactor::PhysicalHealth),
];

/// The canonical disposition of a contact's outcome.
pub const fn disposition(outcome: Outcome) -> Disposition {
    match outcome {
        Outcome::NoFurtherAction => Disposition::NoFurtherAction,
        Outcome::FollowUpPlanned => Disposition::DischargedWithFollowUp,
        Outcome::ReferredElsewhere => Disposition::ReferredElsewhere,
    }
}

/// The canonical urgency of a referral.
pub const fn urgency(urgency: ReferralUrgency) -> Urgency {
    match urgency {
        ReferralUrgency::Emergency => Urgency::Emergency,
        ReferralUrgency::Urgent => Urgency::Urgent,
        ReferralUrgency::Routine => Urgency::Routine,
    }
}
