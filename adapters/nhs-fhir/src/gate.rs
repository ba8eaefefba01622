//! The crisis-care gate: whether a FHIR record is mental-health crisis care at all, before anything of it is
//! read into an event. A trust's integration engine sends whatever its EPR emits (a surgical consultation, a
//! maternity stay, a diabetes referral); only records that carry a crisis signal may become events, because
//! under an area's agreements an event can reach police and councils.
//!
//! A record passes when any of these is on it (each resource type reads the elements its ingest documents):
//! - a Mental Health Act legal status (England or Wales code system, any code but `98`/`99`);
//! - a place of safety coded in `urn:concordat:place-of-safety` (an emergency department is not one by itself);
//! - a mental-health treatment function ([`mapping::MENTAL_HEALTH_TREATMENT_FUNCTIONS`]);
//! - a crisis-plan or risk-assessment SNOMED CT code;
//! - any code of a Concordat code system (`urn:concordat:*`: event kind, service, disposition, ...);
//! - an identifier of a Concordat episode or of a police incident: the record answers a crisis already known;
//! - a code in the trust's `crisis_codes`, or a Location in its `crisis_locations`.
//!
//! Pure lookups over codings and identifiers; it records nothing and resolves no reference (the caller finds
//! Locations without reporting, so that a record that fails the gate reports no problem of its own).

use concordat_episode::{EPISODE_SYSTEM, POLICE_INCIDENT_SYSTEM_PREFIX, Timestamp};
use fhir_sdk::DateTime;
use fhir_sdk::r4b::resources::Location;
use fhir_sdk::r4b::types::{CodeableConcept, Identifier as FhirIdentifier};

use crate::NhsFhirConfig;
use crate::mapping;

/// What the sender is told about a record that fails the gate, after its resource type.
pub(crate) const NOT_CRISIS_CARE: &str = "is not crisis care, so it is not shared: it carries no Mental Health \
     Act legal status, place of safety, mental-health treatment function or service, crisis-plan or \
     risk-assessment code, Concordat code, Concordat episode or police incident identifier, nor a code or \
     location the trust configured as crisis care";

/// Whether any coding of these concepts marks the record as crisis care.
pub(crate) fn in_codes<'a>(config: &NhsFhirConfig, concepts: impl IntoIterator<Item = &'a CodeableConcept>) -> bool {
    concepts.into_iter().flat_map(|concept| concept.coding.iter().flatten()).any(|coding| {
        let (Some(system), Some(code)) = (coding.system.as_deref(), coding.code.as_deref()) else { return false };
        mapping::is_crisis_code(system, code)
            || config.crisis_codes.iter().any(|known| known.system == system && known.code == code)
    })
}

/// Whether any of a resource's own identifiers names a Concordat episode or a police incident.
pub(crate) fn in_identifiers(identifiers: &[Option<FhirIdentifier>]) -> bool {
    identifiers.iter().flatten().filter(|identifier| identifier.value.as_deref().is_some_and(|v| !v.is_empty())).any(
        |identifier| {
            identifier
                .system
                .as_deref()
                .is_some_and(|system| system == EPISODE_SYSTEM || system.starts_with(POLICE_INCIDENT_SYSTEM_PREFIX))
        },
    )
}

/// Whether a Location is one the trust configured as a mental-health location, or is typed as a place of
/// safety or with a crisis code.
pub(crate) fn at_location(config: &NhsFhirConfig, location: &Location) -> bool {
    let configured = location.identifier.iter().flatten().any(|identifier| {
        config.crisis_locations.iter().any(|known| {
            identifier.system.as_deref() == Some(known.system.as_str())
                && identifier.value.as_deref() == Some(known.value.as_str())
        })
    });
    configured || in_codes(config, location.r#type.iter().flatten())
}

/// The time a FHIR element gives an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moment {
    /// A dateTime with a time and an offset.
    At(Timestamp),
    /// A date alone, or a dateTime without a time: too coarse for an event.
    DateOnly,
    /// No such element.
    Missing,
}

impl Moment {
    /// The moment of an optional dateTime element.
    pub(crate) fn of(value: Option<&DateTime>) -> Self {
        match value {
            None => Self::Missing,
            Some(DateTime::DateTime(value)) => crate::ingest::instant(value).map_or(Self::Missing, Self::At),
            Some(DateTime::Date(_)) => Self::DateOnly,
        }
    }

    /// This moment, or `other` where this one gives no time; a date-only element on either side is remembered.
    pub(crate) fn or(self, other: Self) -> Self {
        match (self, other) {
            (Self::At(_), _) => self,
            (_, Self::At(_)) => other,
            (Self::DateOnly, _) | (_, Self::DateOnly) => Self::DateOnly,
            (Self::Missing, Self::Missing) => Self::Missing,
        }
    }

    /// The time, when one is given.
    pub(crate) fn time(self) -> Option<Timestamp> {
        match self {
            Self::At(time) => Some(time),
            Self::DateOnly | Self::Missing => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::CodeRef;

    fn concept(system: &str, code: &str) -> CodeableConcept {
        serde_json::from_value(serde_json::json!({ "coding": [{ "system": system, "code": code }] })).unwrap()
    }

    #[test]
    fn national_and_concordat_codes_are_signals_and_general_care_is_not() {
        let config = NhsFhirConfig::default();
        let signal = |system: &str, code: &str| in_codes(&config, [&concept(system, code)]);
        assert!(signal(mapping::LEGAL_STATUS_ENGLAND, "20"));
        assert!(signal(mapping::LEGAL_STATUS_WALES, "02"));
        assert!(signal(mapping::LEGAL_STATUS_ENGLAND, "10"), "s37 is mental-health care without a canonical status");
        assert!(!signal(mapping::LEGAL_STATUS_ENGLAND, "98"), "not applicable: a non-psychiatric specialty");
        assert!(!signal(mapping::LEGAL_STATUS_WALES, "99"));
        assert!(signal(mapping::TREATMENT_FUNCTION, "710"));
        assert!(!signal(mapping::TREATMENT_FUNCTION, "320"), "cardiology");
        assert!(!signal(mapping::TREATMENT_FUNCTION, "501"), "obstetrics");
        assert!(signal(mapping::SNOMED_CT, mapping::SNOMED_CRISIS_PLAN));
        assert!(!signal(mapping::SNOMED_CT, "73211009"), "diabetes mellitus");
        assert!(signal(mapping::CONCORDAT_SERVICE, "safe_haven"));
        assert!(!signal(mapping::V3_ROLE_CODE, "ER"), "an emergency department alone is no crisis signal");
    }

    #[test]
    fn a_trusts_own_codes_are_signals() {
        let mut config = NhsFhirConfig::default();
        let local = concept("https://trust.example/codes/service", "CRISIS-TEAM");
        assert!(!in_codes(&config, [&local]));
        config
            .crisis_codes
            .push(CodeRef { system: "https://trust.example/codes/service".to_owned(), code: "CRISIS-TEAM".to_owned() });
        assert!(in_codes(&config, [&local]));
    }

    #[test]
    fn episode_and_incident_identifiers_are_signals() {
        let identifier = |system: &str, value: &str| -> Option<FhirIdentifier> {
            serde_json::from_value(serde_json::json!({ "system": system, "value": value })).ok()
        };
        assert!(in_identifiers(&[identifier(EPISODE_SYSTEM, "5d0b5c2e-1111-4b7c-9a0e-7f1e2d3c4b5a")]));
        assert!(in_identifiers(&[identifier("urn:concordat:police-incident:northvale-police", "NV-1")]));
        assert!(!in_identifiers(&[identifier("https://trust.example/Id/encounter", "ENC-1")]));
        assert!(!in_identifiers(&[identifier(EPISODE_SYSTEM, "")]));
    }

    #[test]
    fn a_date_without_a_time_is_remembered_behind_a_missing_element() {
        assert_eq!(Moment::Missing.or(Moment::DateOnly), Moment::DateOnly);
        assert_eq!(Moment::DateOnly.or(Moment::Missing), Moment::DateOnly);
        assert_eq!(Moment::Missing.or(Moment::Missing), Moment::Missing);
        let at = Moment::At(Timestamp::parse("2026-03-01T12:00:00Z").unwrap());
        assert_eq!(Moment::DateOnly.or(at), at);
    }
}
