//! Concordat's police adapter: the `police-incident.v1` JSON a force exports from its command-and-control or
//! records system becomes canonical crisis events ([`ingest`]), and a canonical view a force is entitled to
//! becomes the `police-notification.v1` JSON its system files under its own incident number ([`render`]).
//!
//! Both are pure functions over owned data: no clock, no I/O, no environment; times come in through the
//! contexts. The adapter translates, it does not judge: what partners may see is the sharing policy's
//! decision, and facts such as an under-18 held at a police station are passed on, not refused. The
//! integrator's guide (fields, mapping tables, errors) is the crate's README.

mod format;
mod ingest;
mod mapping;
mod render;
mod schema;

use concordat_episode::{CrisisEvent, IngestContext, IngestError, RenderContext, RenderError, Rendered};

pub use format::FORMAT;
pub use ingest::{ADAPTER, CONTENT_TYPES};
pub use mapping::{PoliceConfig, THRIVE, ThriveLetter};
pub use render::{NOTIFICATION_CONTENT_TYPE, NOTIFICATION_FORMAT};
pub use schema::{INCIDENT_SCHEMA, NOTIFICATION_SCHEMA};

/// Translates one `police-incident.v1` payload into canonical crisis events: the police action (by the
/// power used), then `police.conveyance` when a conveyance is recorded, then `police.outcome` when an
/// outcome is (only the outcome with `"report": "outcome"`).
///
/// Every event carries the force's incident number as an episode reference
/// (`urn:concordat:police-incident:{agency}`), a `record_ref` unique within the payload, and an `event_id`
/// that is the same whenever the same payload is sent again.
///
/// # Errors
/// [`IngestError::UnsupportedContentType`] unless the content type is `application/json`;
/// [`IngestError::Syntax`] for bytes that are not JSON, with the line and column;
/// [`IngestError::Invalid`] listing every problem found, each with its JSON Pointer and the rule broken:
/// the schema's rules first, then the NHS number's check digit, the risk tables of `config`, the sending
/// force and the references.
pub fn ingest(payload: &[u8], cx: &IngestContext, config: &PoliceConfig) -> Result<Vec<CrisisEvent>, IngestError> {
    ingest::ingest(payload, cx, config)
}

/// Renders the view of one event that a police recipient may see as a `police-notification.v1` JSON
/// document. The output holds only what the view holds, plus the context's plain facts (who shared it,
/// why, the decision id and the recipient's own incident numbers).
///
/// # Errors
/// [`RenderError::Unrenderable`] when the recipient is not a police agency.
pub fn render(view: &CrisisEvent, cx: &RenderContext) -> Result<Rendered, RenderError> {
    render::render(view, cx)
}
