//! The documented tables that turn police terms into canonical ones: the configurable risk-grade tables
//! ([`PoliceConfig`]), and the fixed mappings of powers, outcomes and ethnicity codes, plus the plain words
//! a notification uses.
//!
//! Every table here is in the crate's README; change both together. This module only looks things up: it
//! neither reads payloads nor builds events.

use std::collections::BTreeMap;

use concordat_episode::{Disposition, EventKind, LegalStatus, RiskLevel};
use serde::Deserialize;

use crate::format::{OutcomeResult, Power};

/// The adapter's configuration: how a force's own risk grading maps onto the common scale.
///
/// Every field has a documented default ([`PoliceConfig::default`]); a configuration file names only what it
/// changes. Grades and scheme names are compared case-insensitively (ASCII).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoliceConfig {
    /// THRIVE judgements (overall or per letter) onto the common scale. Default: `low` → low, `medium` →
    /// moderate, `high` → high.
    pub thrive: BTreeMap<String, RiskLevel>,
    /// The THRIVE letters whose judgements set the level when a payload gives per-letter judgements and no
    /// overall grade; the highest wins. Default: threat, harm, risk, vulnerability (investigation and
    /// engagement say how to respond, not how grave the risk is).
    pub thrive_letters: Vec<ThriveLetter>,
    /// Force-local grading schemes: scheme name → grade → level. Default: `grade` (`grade_1` → imminent,
    /// `grade_2` → high, `grade_3` → moderate, `grade_4` → low) and `priority` (`P1` → imminent, `P2` →
    /// high, `P3` → moderate, `P4` → low). The name `thrive` is reserved for [`Self::thrive`].
    pub force_grades: BTreeMap<String, BTreeMap<String, RiskLevel>>,
    /// The level given to a scheme or grade the tables do not hold. Default: unset, which makes an unknown
    /// scheme or grade an error naming its JSON Pointer. The original grade is kept in `risk.source_scale`
    /// either way.
    pub unknown_grade: Option<RiskLevel>,
}

impl Default for PoliceConfig {
    fn default() -> Self {
        let table = |rows: &[(&str, RiskLevel)]| -> BTreeMap<String, RiskLevel> {
            rows.iter().map(|(grade, level)| ((*grade).to_owned(), *level)).collect()
        };
        Self {
            thrive: table(&[("low", RiskLevel::Low), ("medium", RiskLevel::Moderate), ("high", RiskLevel::High)]),
            thrive_letters: vec![
                ThriveLetter::Threat,
                ThriveLetter::Harm,
                ThriveLetter::Risk,
                ThriveLetter::Vulnerability,
            ],
            force_grades: BTreeMap::from([
                (
                    "grade".to_owned(),
                    table(&[
                        ("grade_1", RiskLevel::Imminent),
                        ("grade_2", RiskLevel::High),
                        ("grade_3", RiskLevel::Moderate),
                        ("grade_4", RiskLevel::Low),
                    ]),
                ),
                (
                    "priority".to_owned(),
                    table(&[
                        ("P1", RiskLevel::Imminent),
                        ("P2", RiskLevel::High),
                        ("P3", RiskLevel::Moderate),
                        ("P4", RiskLevel::Low),
                    ]),
                ),
            ]),
            unknown_grade: None,
        }
    }
}

/// The name of the THRIVE scheme in payloads and in `risk.source_scale.scheme`.
pub const THRIVE: &str = "thrive";

/// A letter of THRIVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThriveLetter {
    /// Threat.
    Threat,
    /// Harm.
    Harm,
    /// Risk.
    Risk,
    /// Investigation.
    Investigation,
    /// Vulnerability.
    Vulnerability,
    /// Engagement.
    Engagement,
}

impl ThriveLetter {
    /// Every letter, in THRIVE order.
    pub const ALL: [ThriveLetter; 6] =
        [Self::Threat, Self::Harm, Self::Risk, Self::Investigation, Self::Vulnerability, Self::Engagement];

    /// The field name in the native format.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Threat => "threat",
            Self::Harm => "harm",
            Self::Risk => "risk",
            Self::Investigation => "investigation",
            Self::Vulnerability => "vulnerability",
            Self::Engagement => "engagement",
        }
    }

    /// The letter itself, as `risk.source_scale.value` abbreviates it.
    pub const fn initial(self) -> char {
        match self {
            Self::Threat => 'T',
            Self::Harm => 'H',
            Self::Risk => 'R',
            Self::Investigation => 'I',
            Self::Vulnerability => 'V',
            Self::Engagement => 'E',
        }
    }
}

impl PoliceConfig {
    /// Looks a grade up in a scheme's table: `Some(level)` when known, `None` when the scheme or grade is not
    /// in the tables (the caller applies [`Self::unknown_grade`]).
    pub fn level(&self, scheme: &str, grade: &str) -> Option<RiskLevel> {
        let table = if scheme.eq_ignore_ascii_case(THRIVE) {
            &self.thrive
        } else {
            self.force_grades.iter().find(|(name, _)| name.eq_ignore_ascii_case(scheme)).map(|(_, table)| table)?
        };
        table.iter().find(|(key, _)| key.eq_ignore_ascii_case(grade)).map(|(_, level)| *level)
    }
}

/// The canonical kind of the incident's main event, from the power used. Conveyance and outcome events
/// come on top (see the README).
pub const fn primary_kind(power: Power) -> EventKind {
    match power {
        Power::S136 => EventKind::PoliceS136Detention,
        Power::S135_1 | Power::S135_2 => EventKind::PoliceS135Warrant,
        Power::Mca | Power::None => EventKind::PoliceConcernForWelfare,
    }
}

/// The canonical legal status of a power.
pub const fn legal_status(power: Power) -> LegalStatus {
    match power {
        Power::S136 => LegalStatus::S136,
        Power::S135_1 => LegalStatus::S135_1,
        Power::S135_2 => LegalStatus::S135_2,
        Power::Mca => LegalStatus::Mca,
        Power::None => LegalStatus::None,
    }
}

/// The canonical disposition of a police result.
pub const fn disposition(result: OutcomeResult) -> Disposition {
    match result {
        OutcomeResult::HandedToHealth | OutcomeResult::ReferredToPartner => Disposition::ReferredElsewhere,
        OutcomeResult::AdmittedInformal => Disposition::AdmittedInformal,
        OutcomeResult::AdmittedFormal => Disposition::AdmittedFormal,
        OutcomeResult::DischargedWithFollowUp => Disposition::DischargedWithFollowUp,
        OutcomeResult::ReturnedHome | OutcomeResult::NoFurtherAction => Disposition::NoFurtherAction,
    }
}

/// The code system of the police result, kept in `details.codes` of the outcome event, since the
/// disposition alone cannot tell `handed_to_health` from `referred_to_partner`.
pub const OUTCOME_SYSTEM: &str = "urn:concordat:police-outcome";

/// The code system of the control room's incident type, kept in `details.codes`.
pub const INCIDENT_TYPE_SYSTEM: &str = "urn:concordat:police-incident-type";

/// The code system of the police self-defined ethnicity codes in `subject.ethnicity`.
pub const SELF_DEFINED_ETHNICITY_SYSTEM: &str = "urn:concordat:police-self-defined-ethnicity";

/// The police self-defined ethnicity codes (census categories) and their display text.
pub const SELF_DEFINED_ETHNICITY: &[(&str, &str)] = &[
    ("W1", "White: English, Welsh, Scottish, Northern Irish or British"),
    ("W2", "White: Irish"),
    ("W3", "White: Gypsy or Irish Traveller"),
    ("W4", "White: Roma"),
    ("W9", "White: any other White background"),
    ("M1", "Mixed: White and Black Caribbean"),
    ("M2", "Mixed: White and Black African"),
    ("M3", "Mixed: White and Asian"),
    ("M9", "Mixed: any other Mixed or multiple background"),
    ("A1", "Asian: Indian"),
    ("A2", "Asian: Pakistani"),
    ("A3", "Asian: Bangladeshi"),
    ("A4", "Asian: Chinese"),
    ("A9", "Asian: any other Asian background"),
    ("B1", "Black: Caribbean"),
    ("B2", "Black: African"),
    ("B9", "Black: any other Black, Black British or Caribbean background"),
    ("O2", "Other: Arab"),
    ("O9", "Other: any other ethnic group"),
    ("NS", "Not stated"),
];

/// The display text of a self-defined ethnicity code.
pub fn ethnicity_display(code: &str) -> Option<&'static str> {
    SELF_DEFINED_ETHNICITY.iter().find(|(known, _)| *known == code).map(|(_, display)| *display)
}

/// What happened, in plain words, for a notification's headline.
pub const fn kind_words(kind: EventKind) -> &'static str {
    match kind {
        EventKind::PoliceConcernForWelfare => "Police logged a concern for the person's welfare",
        EventKind::NhsCrisisPlan => "An NHS crisis plan exists or has changed",
        EventKind::NhsRiskFlag => "An NHS risk alert was raised or cleared",
        EventKind::VcsContact => "The person was in contact with a voluntary-sector service",
        EventKind::PoliceS136Detention => "Police detained the person under section 136 of the Mental Health Act",
        EventKind::PoliceS135Warrant => "Police executed a section 135 Mental Health Act warrant",
        EventKind::PoliceConveyance => "The person was conveyed to a place of safety",
        EventKind::NhsPlaceOfSafetyArrival => "The person arrived at a place of safety",
        EventKind::NhsReferral => "An NHS service made or received a referral",
        EventKind::VcsReferral => "A voluntary-sector service made or received a referral",
        EventKind::NhsAssessmentOutcome => "The Mental Health Act assessment has an outcome",
        EventKind::NhsDischarge => "The person was discharged",
        EventKind::VcsFollowUp => "A voluntary-sector service followed the person up",
        EventKind::PoliceOutcome => "A police incident was closed",
        EventKind::FeedbackOutcome => "Outcome of an episode your force was involved in",
        EventKind::ContextPreCrisis => "What partners already hold about the person",
    }
}

/// An outcome in plain words.
pub const fn disposition_words(disposition: Disposition) -> &'static str {
    match disposition {
        Disposition::AdmittedFormal => "Admitted to hospital under the Mental Health Act",
        Disposition::AdmittedInformal => "Admitted to hospital voluntarily",
        Disposition::DischargedWithFollowUp => "Discharged with follow-up arranged",
        Disposition::ReferredHomeTreatment => "Referred to the crisis resolution and home treatment team",
        Disposition::NoFurtherAction => "No further action",
        Disposition::ReferredElsewhere => "Referred to another service",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tables_match_the_readme() {
        let config = PoliceConfig::default();
        let cases = [
            ("thrive", "low", Some(RiskLevel::Low)),
            ("thrive", "Medium", Some(RiskLevel::Moderate)),
            ("THRIVE", "HIGH", Some(RiskLevel::High)),
            ("thrive", "very_high", None),
            ("grade", "grade_1", Some(RiskLevel::Imminent)),
            ("grade", "grade_4", Some(RiskLevel::Low)),
            ("priority", "p2", Some(RiskLevel::High)),
            ("priority", "P3", Some(RiskLevel::Moderate)),
            ("colour", "red", None),
        ];
        for (scheme, grade, expected) in cases {
            assert_eq!(config.level(scheme, grade), expected, "{scheme}/{grade}");
        }
    }

    #[test]
    fn config_overrides_only_what_it_names() {
        let config: PoliceConfig = serde_json::from_str(r#"{"unknown_grade": "moderate"}"#).unwrap();
        assert_eq!(config.unknown_grade, Some(RiskLevel::Moderate));
        assert_eq!(config.thrive, PoliceConfig::default().thrive);
        assert!(serde_json::from_str::<PoliceConfig>(r#"{"thrvie": {}}"#).is_err());
    }

    #[test]
    fn every_ethnicity_code_in_the_schema_has_a_display() {
        let schema: serde_json::Value = serde_json::from_str(crate::schema::INCIDENT_SCHEMA).unwrap();
        let codes = schema.pointer("/properties/person/properties/self_defined_ethnicity/enum").unwrap();
        let codes: Vec<&str> = codes.as_array().unwrap().iter().filter_map(serde_json::Value::as_str).collect();
        assert_eq!(codes, SELF_DEFINED_ETHNICITY.iter().map(|(code, _)| *code).collect::<Vec<_>>());
    }
}
