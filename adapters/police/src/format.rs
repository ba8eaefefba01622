//! The native `police-incident.v1` format (`schemas/police-incident.v1.json`) as Rust types.
//!
//! These types mirror the published schema field for field and refuse unknown fields, so the schema and the
//! code cannot drift apart unnoticed. They only read: checks that need more than a shape (the NHS number's
//! check digit, the risk tables, the sending force) live in `ingest`, and nothing here writes a canonical
//! event. Types holding personal data have a `Debug` that hides it.

use std::fmt;

use chrono::NaiveDate;
use concordat_episode::{
    AmbulanceNotUsedReason, ConsentStatus, ConveyanceMode, Gender, PlaceOfSafetyKind, PlaceType, RcrpDecision,
    RiskFactor, Timestamp, Urgency,
};
use serde::Deserialize;

/// The format name, as the payload's `format` field and the canonical `provenance.format` carry it.
pub const FORMAT: &str = "police-incident.v1";

/// One police incident as a force exports it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// Always [`FORMAT`].
    // The schema checks the value; the field is declared so that `deny_unknown_fields` accepts it.
    #[allow(dead_code)]
    pub format: String,
    /// The force's Concordat agency id.
    pub force: String,
    /// The exporting system.
    pub system: String,
    /// The force's incident (log) number.
    pub incident_number: String,
    /// Which events to produce.
    #[serde(default)]
    pub report: Report,
    /// The control room's classification.
    pub incident_type: IncidentType,
    /// When the police action happened.
    pub occurred_at: Timestamp,
    /// When the force recorded it.
    pub recorded_at: Timestamp,
    /// References to the same episode held elsewhere.
    #[serde(default)]
    pub related_refs: Vec<NativeIdentifier>,
    /// Where, coarsely.
    pub location: Option<NativeLocation>,
    /// The person.
    pub person: Option<Person>,
    /// Officers by collar number.
    // Declared so the format accepts them; deliberately never read: collar numbers are personal data and
    // have no place in a canonical event.
    #[serde(default)]
    #[allow(dead_code)]
    pub officers: Vec<Officer>,
    /// The power used.
    pub power_used: Power,
    /// The first place of safety.
    pub place_of_safety: Option<NativePlaceOfSafety>,
    /// The conveyance.
    pub conveyance: Option<NativeConveyance>,
    /// Whether force was used.
    pub force_used: Option<bool>,
    /// The force's risk grading.
    pub risk: Option<NativeRisk>,
    /// The Right Care, Right Person decision.
    pub rcrp_decision: Option<RcrpDecision>,
    /// Consent to sharing.
    pub consent: Option<NativeConsent>,
    /// How the incident ended.
    pub outcome: Option<Outcome>,
    /// The force's own codes.
    #[serde(default)]
    pub codes: Vec<NativeCoding>,
    /// Free text.
    pub notes: Option<String>,
}

impl fmt::Debug for Incident {
    // Enough to tell incidents apart in a failing test, nothing about the person.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incident")
            .field("force", &self.force)
            .field("incident_type", &self.incident_type)
            .field("power_used", &self.power_used)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// Which events a payload yields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// Everything the record holds.
    #[default]
    Incident,
    /// Only the outcome.
    Outcome,
}

/// How the control room classified the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentType {
    /// A concern for someone's welfare.
    ConcernForWelfare,
    /// A missing person.
    MissingPerson,
    /// A mental-health crisis.
    MentalHealthCrisis,
    /// Anything else.
    Other,
}

impl IncidentType {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConcernForWelfare => "concern_for_welfare",
            Self::MissingPerson => "missing_person",
            Self::MentalHealthCrisis => "mental_health_crisis",
            Self::Other => "other",
        }
    }
}

/// The power used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Power {
    /// Mental Health Act 1983 s136.
    #[serde(rename = "s136")]
    S136,
    /// s135(1), on an AMHP's application.
    #[serde(rename = "s135_1")]
    S135_1,
    /// s135(2), to take or retake a patient liable to detention.
    #[serde(rename = "s135_2")]
    S135_2,
    /// Mental Capacity Act 2005.
    #[serde(rename = "mca")]
    Mca,
    /// No power.
    #[serde(rename = "none")]
    None,
}

/// A `{system, value}` identifier.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeIdentifier {
    /// The system URI.
    pub system: String,
    /// The value.
    pub value: String,
}

/// Where the incident happened.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeLocation {
    /// The postcode district.
    pub postcode_district: Option<String>,
    /// A 1 km or 10 km grid square.
    pub grid_ref: Option<String>,
    /// The kind of place.
    pub place_type: Option<PlaceType>,
}

/// The person.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The NHS number, possibly grouped with spaces or hyphens.
    pub nhs_number: Option<String>,
    /// The force's person identifiers.
    #[serde(default)]
    pub identifiers: Vec<NativeIdentifier>,
    /// The name.
    pub name: Option<PersonName>,
    /// Date of birth.
    pub birth_date: Option<NaiveDate>,
    /// Gender.
    pub gender: Option<Gender>,
    /// The self-defined ethnicity code.
    pub self_defined_ethnicity: Option<String>,
    /// Where they live, to the district.
    pub postcode_district: Option<String>,
}

/// A person's name.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonName {
    /// Given names.
    pub given: Option<String>,
    /// Family name.
    pub family: Option<String>,
}

/// An officer.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Officer {
    /// The collar number.
    #[allow(dead_code, reason = "kept in the native format only")]
    pub collar_number: String,
    /// What they did.
    #[allow(dead_code, reason = "kept in the native format only")]
    pub role: Option<String>,
}

/// The place of safety.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativePlaceOfSafety {
    /// What kind of place.
    #[serde(rename = "type")]
    pub kind: PlaceOfSafetyKind,
    /// Its name.
    pub name: Option<String>,
    /// Its ODS code.
    pub ods_code: Option<String>,
}

/// The conveyance.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeConveyance {
    /// The vehicle.
    pub mode: ConveyanceMode,
    /// Why not an ambulance.
    pub ambulance_not_used_reason: Option<AmbulanceNotUsedReason>,
    /// When it began.
    pub started_at: Option<Timestamp>,
}

/// The force's risk grading.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeRisk {
    /// `thrive` or a force-local scheme.
    pub scheme: String,
    /// The overall grade.
    pub grade: Option<String>,
    /// Per-letter THRIVE judgements.
    pub thrive: Option<Thrive>,
    /// What the risk is about.
    #[serde(default)]
    pub factors: Vec<RiskFactor>,
}

/// Per-letter THRIVE judgements.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thrive {
    /// Threat.
    pub threat: Option<String>,
    /// Harm.
    pub harm: Option<String>,
    /// Risk.
    pub risk: Option<String>,
    /// Investigation.
    pub investigation: Option<String>,
    /// Vulnerability.
    pub vulnerability: Option<String>,
    /// Engagement.
    pub engagement: Option<String>,
}

/// Consent as the force recorded it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeConsent {
    /// Its status.
    pub status: ConsentStatus,
    /// What it covers.
    #[serde(default)]
    pub scope: Vec<String>,
    /// When it was recorded.
    pub recorded_at: Option<Timestamp>,
}

/// How the incident ended for the police.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The result.
    pub result: OutcomeResult,
    /// When the incident closed.
    pub closed_at: Timestamp,
    /// A referral made.
    pub referral: Option<NativeReferral>,
    /// Free text.
    pub notes: Option<String>,
}

/// The police result of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeResult {
    /// Care handed over to health at a place of safety.
    HandedToHealth,
    /// Referred to a partner agency.
    ReferredToPartner,
    /// The person was admitted informally (as the force learned).
    AdmittedInformal,
    /// The person was admitted under the Mental Health Act (as the force learned).
    AdmittedFormal,
    /// Discharged with follow-up (as the force learned).
    DischargedWithFollowUp,
    /// A missing person found and returned home.
    ReturnedHome,
    /// No further police action.
    NoFurtherAction,
}

impl OutcomeResult {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HandedToHealth => "handed_to_health",
            Self::ReferredToPartner => "referred_to_partner",
            Self::AdmittedInformal => "admitted_informal",
            Self::AdmittedFormal => "admitted_formal",
            Self::DischargedWithFollowUp => "discharged_with_follow_up",
            Self::ReturnedHome => "returned_home",
            Self::NoFurtherAction => "no_further_action",
        }
    }
}

/// A referral.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeReferral {
    /// The Concordat agency referred to.
    pub to_agency: Option<String>,
    /// The kind of service.
    pub service: Option<String>,
    /// How urgent.
    pub urgency: Option<Urgency>,
}

/// A code.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeCoding {
    /// The code system.
    pub system: String,
    /// The code.
    pub code: String,
    /// Its display text.
    pub display: Option<String>,
}
