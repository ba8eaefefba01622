//! Concordat's canonical crisis-episode event: the types every adapter produces and every recipient's view is
//! cut from, the event-kind taxonomy, the common risk scale, the NHS number check, deterministic event ids,
//! strict JSON reading with an RFC 8785 canonical digest, and validation against `schemas/crisis-event.v1.json`.
//!
//! This crate is pure: it knows nothing of AMQP, SQL or HTTP, reads no clock and does no I/O.

mod adapter;
mod canonical;
mod event;
mod ids;
mod kind;
mod nhs_number;
mod plausible;
mod schema;
mod time;

pub use adapter::{
    IngestContext, IngestError, Ingested, InputLocation, InputProblem, RenderContext, RenderError, Rendered, derived_id,
};
pub use canonical::{DUPLICATE_KEY, canonical_digest, canonical_json, json_payload_digest, read_json};
pub use event::{
    AmbulanceNotUsedReason, CONTENT_TYPE, Coding, Consent, ConsentStatus, Conveyance, ConveyanceMode, CrisisEvent,
    Details, Disposition, EPISODE_SYSTEM, EpisodeLink, Gender, GridRef, GridRefError, Identifier, LegalStatus,
    Location, NHS_NUMBER_SYSTEM, Name, OdsCode, OdsCodeError, POLICE_INCIDENT_SYSTEM_PREFIX, PlaceOfSafety,
    PlaceOfSafetyKind, PlaceType, Provenance, RcrpDecision, Referral, Risk, RiskFactor, Source, SourceScale, Subject,
    Urgency, age_on,
};
pub use ids::{AgencyId, EVENT_ID_NAMESPACE, EpisodeId, EventId, IdError, NonEmptyString, PostcodeDistrict, Sha256Hex};
pub use kind::{AgencyKind, EventKind, Phase, RiskLevel, UnknownEventKind, UnknownRiskLevel};
pub use nhs_number::{NhsNumber, NhsNumberError};
pub use plausible::{EARLIEST_EVENT, FUTURE_SKEW, check_times};
pub use schema::{
    CRISIS_EVENT_SCHEMA, EventError, Violation, event_from_value, json_error_category, parse_event, to_validated_json,
    validate,
};
pub use time::Timestamp;

/// The police incident-number identifier system of an agency: `urn:concordat:police-incident:{agency}`.
pub fn police_incident_system(agency: &AgencyId) -> String {
    format!("{POLICE_INCIDENT_SYSTEM_PREFIX}{agency}")
}
