//! Concordat's voluntary and community sector (VCS) adapter: `vcs-contact.v1` in, `vcs-notification.v1` out.
//!
//! [`ingest`] turns what a Safe Haven, crisis café, helpline, outreach or peer-support service sends (JSON, or
//! CSV straight from a spreadsheet) into canonical events: `vcs.contact` or `vcs.follow_up` per contact, and
//! `vcs.referral` when the contact made a referral. [`render`] turns a recipient's redacted view of any
//! canonical event into a plain-language JSON notification a small service can read.
//!
//! Both are pure: no clock, no I/O, no environment; times come from the payload and the contexts. This crate
//! does not decide who may see what (that is the policy's job) and does not talk to the broker. The formats,
//! the mapping tables and every error are documented in the crate's README.
//!
//! Modules: `format` (native types and the published schema), `schema` (schema validation with plain
//! messages), `ingest`, `render`, `mapping` (the documented tables and [`VcsConfig`]), `uk_time` (UK local
//! time and its clock changes).

mod format;
mod ingest;
mod mapping;
mod render;
mod schema;
mod table;
mod uk_time;

use concordat_episode::{CrisisEvent, IngestContext, IngestError, RenderContext, RenderError, Rendered};

pub use format::{
    CONTACT_SCHEMA, Concern, ConsentScope, ConsentStatus, ContactType, FIELDS, FORMAT_CSV, FORMAT_JSON, Gender,
    LIST_FIELDS, Outcome, PERSONAL_FIELDS, REQUIRED_FIELDS, ReferralService, ReferralUrgency, Service,
};
pub use ingest::CONTENT_TYPES;
pub use mapping::{
    CONCERN_SYSTEM, CONTACT_SYSTEM_PREFIX, DEFAULT_CONCERN_FACTORS, PERSON_SYSTEM_PREFIX, SERVICE_SYSTEM, VcsConfig,
    contact_system, person_system,
};
pub use render::{CONTENT_TYPE as NOTIFICATION_CONTENT_TYPE, FORMAT as NOTIFICATION_FORMAT};

/// The published schema of the notifications [`render`] produces.
pub const NOTIFICATION_SCHEMA: &str = include_str!("../../../schemas/vcs-notification.v1.json");

/// Turns a `vcs-contact.v1` payload into canonical events, in payload order: for each contact its
/// `vcs.contact` (or `vcs.follow_up`) event, then its `vcs.referral` event when it made a referral.
///
/// `cx.content_type` picks the body: `application/json` (one contact object or an array of them) or
/// `text/csv` (a header row, then one contact per row). A UTF-8 byte-order mark is ignored.
///
/// # Errors
/// - [`IngestError::UnsupportedContentType`] for any other media type;
/// - [`IngestError::Syntax`] when the body is not JSON, or not UTF-8 CSV;
/// - [`IngestError::Invalid`] listing every problem in the payload, each at a JSON Pointer
///   (`/2/nhs_number`) or a CSV row and column (`row 3, column nhs_number`), with the rule it broke.
pub fn ingest(payload: &[u8], cx: &IngestContext, config: &VcsConfig) -> Result<Vec<CrisisEvent>, IngestError> {
    ingest::ingest(payload, cx, config)
}

/// Renders the view of an event that a recipient may see as a `vcs-notification.v1` JSON message
/// (`application/json`), deterministic for a given view and context. VCS services receive this format, and so
/// by default do local authorities; which agencies do is the deployment's choice, not checked here.
///
/// # Errors
/// [`RenderError::Unrenderable`] only if the notification cannot be serialized (a bug, reported rather than
/// delivered).
pub fn render(view: &CrisisEvent, cx: &RenderContext) -> Result<Rendered, RenderError> {
    render::render(view, cx)
}
