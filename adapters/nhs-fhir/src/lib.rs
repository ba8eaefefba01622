//! Concordat's NHS adapter: FHIR R4 with the UK Core profiles, in and out.
//!
//! - [`ingest`] turns what a trust's EPR already produces (a `message`, `transaction`, `collection` or `batch`
//!   Bundle, or a single resource) into canonical crisis events. Which resource yields which event is described
//!   in [`ingest`]'s module; which code means what is the one table in [`mapping`].
//! - [`render`] turns the redacted view an NHS recipient may see into a FHIR message Bundle it can store.
//! - [`operation_outcome`] turns an ingest error into the FHIR `OperationOutcome` a FHIR client expects.
//! - `push` (cargo feature `push`) posts a rendered Bundle to a trust's FHIR server.
//!
//! Both [`ingest`] and [`render`] are pure: no clock, no I/O; times come in through the contexts.
//!
//! # FHIR R4 through R4B models
//! `fhir-sdk` 0.16 has models for STU3, R4B (4.3) and R5 but not R4 (4.0.1). This adapter reads and writes R4
//! JSON with the R4B models, which is sound for the resources it handles because R4B changed none of the elements
//! read here (Patient, Encounter, EpisodeOfCare, ServiceRequest, Condition, Flag, CarePlan, Consent,
//! Observation, Communication, Organization, Location, MessageHeader, OperationOutcome). The differences that
//! matter:
//! - R4B's models ignore unknown elements, so an element that exists only in R4 would be dropped unnoticed; none
//!   of the elements this adapter reads is R4-only.
//! - Resource types present in R4 but removed in R4B (`MedicinalProduct*`, `EffectEvidenceSynthesis`,
//!   `RiskEvidenceSynthesis`, ...) have no R4B model. The adapter reads each Bundle entry's `resourceType` before
//!   parsing it, so such an entry is reported as an unsupported resource type rather than failing the Bundle.
//! - Coded elements are closed enums in the models (R4B's value sets for the statuses read here equal R4's), so
//!   an unknown status code is a precise error at its JSON Pointer.
//! - What is rendered uses only elements that exist unchanged in R4 (MessageHeader `eventCoding` and
//!   `destination.endpoint` as R4 has them, Communication `payload.contentString`, ServiceRequest, Flag), and
//!   every rendered Bundle is parsed back through the models before it is returned.
//! - The `fhirVersion` media-type parameter is ignored on input; output is labelled plain
//!   `application/fhir+json`.

use std::collections::BTreeMap;

use concordat_episode::{
    AgencyId, CrisisEvent, Disposition, IngestContext, IngestError, Ingested, RenderContext, RenderError, Rendered,
};
use serde::Deserialize;

mod gate;
pub mod ingest;
pub mod mapping;
pub mod outcome;
#[cfg(feature = "push")]
pub mod push;
pub mod render;

pub use mapping::{RiskGrade, UrgencyCode};
pub use outcome::operation_outcome;

/// The adapter's name, as written to `provenance.adapter`.
pub const ADAPTER_NAME: &str = "nhs-fhir";
/// The native format's name, as written to `provenance.format`.
pub const FORMAT: &str = "fhir-r4";
/// The media types the adapter reads.
pub const CONTENT_TYPES: &[&str] = &["application/fhir+json", "application/json"];
/// The media type the adapter writes.
pub const FHIR_JSON: &str = "application/fhir+json";

/// How a trust's FHIR is read: the tables and choices a deployment may change. Every field has a default
/// (see [`Default`]), so an empty section is a working configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NhsFhirConfig {
    /// The sending system's name written to `source.system` when the Bundle's MessageHeader names none
    /// (`source.name`, then `source.software`). Default `FHIR R4`.
    pub system: String,
    /// Whether every event must carry the subject's NHS number. An NHS system can always trace one; without it an
    /// event cannot be matched to an episode except by its refs. Default `true`.
    pub require_nhs_number: bool,
    /// Risk grades and the common-scale level each means, matched on an Observation's
    /// `valueCodeableConcept` codings and a Flag's code codings. A Flag none of whose codings is here is not a
    /// risk flag: it yields no event (no default level is guessed for it). Default
    /// [`mapping::default_risk_grades`].
    pub risk_grades: Vec<RiskGrade>,
    /// The trust's own codes that mark a record as crisis care, beside the national and Concordat ones of
    /// [`mapping::is_crisis_code`]: its crisis team's local service codes, a local crisis clinic type. Matched
    /// on every coding the gate reads (Encounter type, serviceType, reasonCode; EpisodeOfCare type;
    /// ServiceRequest code, category, performerType, reasonCode). Default empty.
    pub crisis_codes: Vec<CodeRef>,
    /// The trust's mental-health locations (a 136 suite, a crisis assessment unit, a ward), by an identifier of
    /// the Location resource (an ODS site code, or the trust's own location identifier): an Encounter at one is
    /// crisis care. Default empty.
    pub crisis_locations: Vec<IdentifierRef>,
    /// Codes that state a referral's urgency when its `priority` does not (a ServiceRequest's `reasonCode` or
    /// `category`). Default [`mapping::default_urgency_codes`].
    pub urgency_codes: Vec<UrgencyCode>,
    /// NHS Data Dictionary Discharge Destination (England) code to disposition. Default
    /// [`mapping::default_discharge_destinations`].
    pub discharge_destinations: BTreeMap<String, Disposition>,
    /// ODS organisation code to Concordat agency, to name the agency a referral goes to. An Organization that
    /// carries a `urn:concordat:agency` identifier needs no row here. Default empty.
    pub ods_agencies: BTreeMap<String, AgencyId>,
}

impl Default for NhsFhirConfig {
    fn default() -> Self {
        Self {
            system: "FHIR R4".to_owned(),
            require_nhs_number: true,
            risk_grades: mapping::default_risk_grades(),
            crisis_codes: Vec::new(),
            crisis_locations: Vec::new(),
            urgency_codes: mapping::default_urgency_codes(),
            discharge_destinations: mapping::default_discharge_destinations(),
            ods_agencies: BTreeMap::new(),
        }
    }
}

/// A code a trust names in its configuration: `{ system = "…", code = "…" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRef {
    /// The code system's URI.
    pub system: String,
    /// The code.
    pub code: String,
}

/// An identifier a trust names in its configuration: `{ system = "…", value = "…" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierRef {
    /// The identifier system's URI.
    pub system: String,
    /// The value.
    pub value: String,
}

/// Translates a FHIR R4 payload (a Bundle or a single resource) into canonical events, in entry order, and
/// lists every entry it left out (not crisis care, or carrying no event) as a warning at its JSON Pointer.
///
/// # Errors
/// [`IngestError::UnsupportedContentType`] unless the media type is `application/fhir+json` or
/// `application/json`; [`IngestError::Syntax`] for bytes that are not JSON; [`IngestError::Invalid`] listing every
/// problem found (not a FHIR resource, an unknown resource or unsupported Bundle type, an element that breaks
/// FHIR R4, a missing or invalid NHS number, a reference that does not resolve to a resource of the expected
/// type, an event with no time), each at its JSON Pointer; and when nothing in the payload is a crisis event,
/// every reason why each entry was left out.
pub fn ingest(payload: &[u8], cx: &IngestContext, config: &NhsFhirConfig) -> Result<Ingested, IngestError> {
    ingest::ingest(payload, cx, config)
}

/// Renders the view of one event that an NHS recipient may see as a FHIR R4 message Bundle.
///
/// # Errors
/// [`RenderError::Unrenderable`] when the Bundle would not parse back as FHIR (a bug, reported rather than
/// delivered).
pub fn render(view: &CrisisEvent, cx: &RenderContext) -> Result<Rendered, RenderError> {
    render::render(view, cx)
}
