//! The canonical crisis-episode event (`schemas/crisis-event.v1.json`) as Rust types.
//!
//! These types are a wire contract: they serialize to exactly the schema's shape, optional fields are left
//! out when unknown (never `null`, except `episode.episode_id`), and unknown fields are refused. Types that
//! hold personal data have a `Debug` that hides it, so a stray `{:?}` in a log line cannot leak it.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::ids::{AgencyId, EpisodeId, EventId, NonEmptyString, PostcodeDistrict, Sha256Hex};
use crate::kind::{AgencyKind, EventKind, RiskLevel};
use crate::nhs_number::NhsNumber;
use crate::time::Timestamp;

/// The identifier system of the NHS number.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// The identifier system of a Concordat episode id.
pub const EPISODE_SYSTEM: &str = "urn:concordat:episode";
/// The prefix of a police force's incident-number system; the agency id follows.
pub const POLICE_INCIDENT_SYSTEM_PREFIX: &str = "urn:concordat:police-incident:";
/// The media type of a canonical event on the wire.
pub const CONTENT_TYPE: &str = "application/vnd.concordat.crisis-event.v1+json";

/// One event in a crisis episode, as every adapter produces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrisisEvent {
    /// Deterministic id (see [`EventId::derive`]).
    pub event_id: EventId,
    /// What happened.
    pub kind: EventKind,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// When the source system recorded it.
    pub recorded_at: Timestamp,
    /// Who sent it.
    pub source: Source,
    /// Which episode it belongs to, and the refs that correlate it.
    pub episode: EpisodeLink,
    /// The person. Every field is personal data.
    pub subject: Subject,
    /// Risk on the common scale, when the source assessed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// Consent to sharing, as recorded by the source.
    pub consent: Consent,
    /// Kind-specific facts.
    pub details: Details,
    /// How the event was made.
    pub provenance: Provenance,
}

impl CrisisEvent {
    /// The AMQP routing key on `concordat.events`: `{agency_kind}.{agency}.{kind}`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}.{}", self.source.agency_kind, self.source.agency, self.kind)
    }

    /// The subject's age in whole years on the day the event occurred, when the birth date is known.
    pub fn subject_age(&self) -> Option<u32> {
        let birth = self.subject.birth_date?;
        age_on(birth, self.occurred_at.date())
    }
}

/// Whole years from `birth` to `on`; `None` when `on` is before `birth`.
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> Option<u32> {
    let years = on.year() - birth.year();
    let before_birthday = (on.month(), on.day()) < (birth.month(), birth.day());
    u32::try_from(years - i32::from(before_birthday)).ok()
}

/// The sending agency and its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The configured agency id.
    pub agency: AgencyId,
    /// What kind of agency it is.
    pub agency_kind: AgencyKind,
    /// The sending system, free text.
    pub system: String,
    /// The source system's own id for the record.
    pub record_ref: NonEmptyString,
}

/// An identifier in a system (FHIR style).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    /// The identifier system (a URL or URN).
    pub system: NonEmptyString,
    /// The value within that system.
    pub value: NonEmptyString,
}

/// The event's place in an episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeLink {
    /// Null until the router correlates the event.
    pub episode_id: Option<EpisodeId>,
    /// Identifiers that correlate this event with an episode.
    pub refs: Vec<Identifier>,
}

/// A code in a code system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coding {
    /// The code system.
    pub system: NonEmptyString,
    /// The code.
    pub code: NonEmptyString,
    /// A human-readable display, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// The person the episode is about. All fields are personal data; its `Debug` says only which are present.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// The NHS number, checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<NhsNumber>,
    /// Other identifiers (a force's person id, a trust's local patient id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// The person's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// Date of birth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    /// Administrative gender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    /// Ethnic category, as a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethnicity: Option<Coding>,
    /// Where they live, to the district.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode_district: Option<PostcodeDistrict>,
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("nhs_number", &self.nhs_number)
            .field("identifiers", &self.identifiers.len())
            .field("name", &self.name.as_ref().map(|_| ".."))
            .field("birth_date", &self.birth_date.map(|_| ".."))
            .field("gender", &self.gender.map(|_| ".."))
            .field("ethnicity", &self.ethnicity.as_ref().map(|_| ".."))
            .field("postcode_district", &self.postcode_district)
            .finish()
    }
}

/// A person's name.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Name {
    /// Given names, space separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Name(..)")
    }
}

/// FHIR administrative gender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    /// Male.
    Male,
    /// Female.
    Female,
    /// Other.
    Other,
    /// Not known.
    Unknown,
}

/// Risk on the common scale, with the agency's own grade kept for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// The level on the common scale.
    pub level: RiskLevel,
    /// What the risk is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub factors: Vec<RiskFactor>,
    /// The agency's own grade as it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_scale: Option<SourceScale>,
}

/// What a risk is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum RiskFactor {
    SelfHarm,
    SuicidalIdeation,
    HarmToOthers,
    HarmFromOthers,
    SubstanceUse,
    SafeguardingChild,
    SafeguardingAdult,
    PhysicalHealth,
    Weapons,
    MissingPerson,
    DomesticAbuse,
}

/// An agency's own risk grade (`THRIVE` / `high`, `rag` / `red`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceScale {
    /// The grading scheme.
    pub scheme: NonEmptyString,
    /// The grade in that scheme.
    pub value: NonEmptyString,
}

/// Consent to sharing as the source recorded it: a condition the policy checks, not the lawful basis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// The consent status.
    pub status: ConsentStatus,
    /// What the consent covers, in the source's words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// When it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<Timestamp>,
}

impl Consent {
    /// Consent that nobody recorded.
    pub fn unknown() -> Self {
        Self { status: ConsentStatus::Unknown, scope: Vec::new(), recorded_at: None }
    }
}

/// Consent status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// The person agreed to sharing.
    Given,
    /// The person refused.
    Refused,
    /// Nobody asked.
    NotSought,
    /// The person could not consent to this decision (Mental Capacity Act); this does not bar sharing.
    LacksCapacity,
    /// Not recorded.
    Unknown,
}

impl ConsentStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Given => "given",
            Self::Refused => "refused",
            Self::NotSought => "not_sought",
            Self::LacksCapacity => "lacks_capacity",
            Self::Unknown => "unknown",
        }
    }
}

/// Kind-specific facts. `summary`, `notes` and `codes` are sensitive; `Debug` hides them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Details {
    /// Where, coarsely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The power or legal status in play.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_status: Option<LegalStatus>,
    /// The place of safety used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_of_safety: Option<PlaceOfSafety>,
    /// How the person was conveyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conveyance: Option<Conveyance>,
    /// Whether force was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_used: Option<bool>,
    /// Whether the sender asks police to act.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub police_action_required: Option<bool>,
    /// The Right Care, Right Person triage decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcrp_decision: Option<RcrpDecision>,
    /// The outcome of an assessment or contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Disposition>,
    /// A referral made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<Referral>,
    /// When follow-up is planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up_at: Option<Timestamp>,
    /// On `feedback.outcome`: the outcome event reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_of: Option<EventId>,
    /// A short summary. Sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Free text. Always sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Codes as the source sent them. Sensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<Coding>,
}

impl fmt::Debug for Details {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Details")
            .field("location", &self.location.as_ref().map(|_| ".."))
            .field("legal_status", &self.legal_status)
            .field("place_of_safety", &self.place_of_safety.as_ref().map(|place| place.kind))
            .field("conveyance", &self.conveyance)
            .field("force_used", &self.force_used)
            .field("police_action_required", &self.police_action_required)
            .field("rcrp_decision", &self.rcrp_decision)
            .field("disposition", &self.disposition)
            .field("referral", &self.referral.as_ref().map(|_| ".."))
            .field("follow_up_at", &self.follow_up_at)
            .field("outcome_of", &self.outcome_of)
            .field("summary", &self.summary.as_ref().map(|_| ".."))
            .field("notes", &self.notes.as_ref().map(|_| ".."))
            .field("codes", &self.codes.len())
            .finish()
    }
}

/// Where something happened, coarsely.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// The postcode district.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode_district: Option<PostcodeDistrict>,
    /// A coarse grid reference (1 km or 10 km square).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_ref: Option<GridRef>,
    /// The kind of place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_type: Option<PlaceType>,
}

/// A coarse Ordnance Survey grid reference: two letters and two or four digits (`SJ89`, `SJ8497`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GridRef(String);

impl GridRef {
    /// Checks and wraps a grid reference, upper-casing the letters.
    ///
    /// # Errors
    /// [`GridRefError`] unless it is two letters and two or four digits (a finer one would place a home).
    pub fn new(value: impl AsRef<str>) -> Result<Self, GridRefError> {
        let value = value.as_ref().trim().to_ascii_uppercase();
        let bytes = value.as_bytes();
        let ok = (bytes.len() == 4 || bytes.len() == 6)
            && bytes[..2].iter().all(u8::is_ascii_uppercase)
            && bytes[2..].iter().all(u8::is_ascii_digit);
        if ok { Ok(Self(value)) } else { Err(GridRefError) }
    }

    /// The reference as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GridRef {
    type Error = GridRefError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<GridRef> for String {
    fn from(value: GridRef) -> Self {
        value.0
    }
}

/// A grid reference that is not two letters and two or four digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("grid reference must be two letters and two or four digits, e.g. SJ8497")]
pub struct GridRefError;

/// The kind of place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum PlaceType {
    PublicPlace,
    PrivateDwelling,
    HealthSetting,
    PoliceStation,
    Other,
}

/// The power or legal status in play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalStatus {
    /// Informal (voluntary) patient.
    Informal,
    /// MHA s2, admission for assessment.
    S2,
    /// MHA s3, admission for treatment.
    S3,
    /// MHA s4, emergency admission.
    S4,
    /// MHA s135(1) warrant.
    #[serde(rename = "s135_1")]
    S135_1,
    /// MHA s135(2) warrant.
    #[serde(rename = "s135_2")]
    S135_2,
    /// MHA s136 removal to a place of safety.
    S136,
    /// Mental Capacity Act 2005.
    Mca,
    /// No power used.
    None,
}

/// The place of safety used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOfSafety {
    /// What kind of place.
    pub kind: PlaceOfSafetyKind,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its ODS code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods_code: Option<OdsCode>,
}

/// An Organisation Data Service code: 3 to 6 upper-case letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OdsCode(String);

impl OdsCode {
    /// Checks and wraps an ODS code.
    ///
    /// # Errors
    /// [`OdsCodeError`] unless it is 3 to 6 upper-case letters and digits.
    pub fn new(value: impl Into<String>) -> Result<Self, OdsCodeError> {
        let value = value.into();
        let ok = (3..=6).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok { Ok(Self(value)) } else { Err(OdsCodeError) }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OdsCode {
    type Error = OdsCodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<OdsCode> for String {
    fn from(value: OdsCode) -> Self {
        value.0
    }
}

/// An ODS code that is not 3 to 6 upper-case letters and digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ODS code must be 3 to 6 upper-case letters and digits")]
pub struct OdsCodeError;

/// What kind of place of safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaceOfSafetyKind {
    /// A health-based place of safety ("136 suite").
    HealthBased,
    /// An emergency department.
    EmergencyDepartment,
    /// A police station (never lawful for under-18s).
    PoliceStation,
    /// Anywhere else.
    Other,
}

/// How the person was conveyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conveyance {
    /// The vehicle.
    pub mode: ConveyanceMode,
    /// Why an ambulance was not used, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambulance_not_used_reason: Option<AmbulanceNotUsedReason>,
}

/// The vehicle used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ConveyanceMode {
    Ambulance,
    PoliceVehicle,
    Other,
}

/// Why an ambulance was not used (the Home Office s136 return asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum AmbulanceNotUsedReason {
    NotAvailable,
    Delay,
    Behaviour,
    NotNeeded,
    Other,
}

/// The Right Care, Right Person triage decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum RcrpDecision {
    PoliceAttend,
    HealthLead,
    Joint,
    NoPoliceRole,
}

/// The outcome of an assessment or contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Admitted under s2 or s3.
    AdmittedFormal,
    /// Admitted voluntarily.
    AdmittedInformal,
    /// Discharged with follow-up (community team, GP, VCS).
    DischargedWithFollowUp,
    /// Referred to the crisis resolution and home treatment team.
    ReferredHomeTreatment,
    /// No further action.
    NoFurtherAction,
    /// Referred to another service.
    ReferredElsewhere,
}

impl Disposition {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AdmittedFormal => "admitted_formal",
            Self::AdmittedInformal => "admitted_informal",
            Self::DischargedWithFollowUp => "discharged_with_follow_up",
            Self::ReferredHomeTreatment => "referred_home_treatment",
            Self::NoFurtherAction => "no_further_action",
            Self::ReferredElsewhere => "referred_elsewhere",
        }
    }
}

/// A referral made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Referral {
    /// The agency referred to, when it is a Concordat agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_agency: Option<AgencyId>,
    /// The kind of service referred to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// How urgent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
}

/// How urgent a referral is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Urgency {
    Emergency,
    Urgent,
    Routine,
}

/// How the event was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The adapter's name (`nhs-fhir`, `police`, `vcs`, `router`).
    pub adapter: NonEmptyString,
    /// The adapter's version.
    pub adapter_version: NonEmptyString,
    /// The native format.
    pub format: NonEmptyString,
    /// SHA-256 of the native payload.
    pub payload_sha256: Sha256Hex,
    /// When Concordat received the payload.
    pub received_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_count_whole_years() {
        let birth = NaiveDate::from_ymd_opt(2008, 3, 2).unwrap();
        let on = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(age_on(birth, on(2026, 3, 1)), Some(17));
        assert_eq!(age_on(birth, on(2026, 3, 2)), Some(18));
        assert_eq!(age_on(birth, on(2008, 3, 2)), Some(0));
        assert_eq!(age_on(birth, on(2008, 3, 1)), None);
        // A leap-day birthday turns a year older on 1 March in a common year.
        let leap = NaiveDate::from_ymd_opt(2008, 2, 29).unwrap();
        assert_eq!(age_on(leap, on(2026, 2, 28)), Some(17));
        assert_eq!(age_on(leap, on(2026, 3, 1)), Some(18));
    }

    #[test]
    fn grid_refs_stay_coarse() {
        assert!(GridRef::new("SJ8497").is_ok());
        assert!(GridRef::new("sj89").is_ok());
        assert!(GridRef::new("SJ84529731").is_err());
        assert!(GridRef::new("S8497").is_err());
    }
}
