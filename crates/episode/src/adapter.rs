//! The contract every adapter keeps: what `ingest` is given and may fail with, what `render` is given and
//! returns.
//!
//! Adapters are pure functions over owned data: `ingest(payload, &IngestContext, &Config)` turns an agency's
//! native bytes into canonical events, `render(view, &RenderContext)` turns the redacted view a recipient is
//! entitled to into that agency's native message. Anything time- or identity-dependent comes in through the
//! context, so both are deterministic and testable without I/O.

use std::fmt;

use uuid::Uuid;

use crate::event::{CrisisEvent, Identifier, OdsCode};
use crate::ids::{AgencyId, EpisodeId};
use crate::kind::AgencyKind;
use crate::time::Timestamp;

/// What the shell knows about a payload that the payload itself may not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestContext {
    /// The authenticated sending agency (from its token or AMQP routing key), never from the payload.
    pub agency: AgencyId,
    /// Its kind.
    pub agency_kind: AgencyKind,
    /// The media type the payload came with, parameters stripped, lower case (`application/fhir+json`).
    pub content_type: String,
    /// When Concordat received it; becomes `provenance.received_at`.
    pub received_at: Timestamp,
}

/// Where in the input a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLocation {
    /// A JSON Pointer into the native JSON payload (`/person/nhsNumber`, `/entry/2/resource/status`).
    Pointer(String),
    /// A CSV cell: 1-based row (the header is row 1) and the column's header name.
    Cell {
        /// 1-based row number, counting the header row.
        row: usize,
        /// The column's header name.
        column: String,
    },
    /// A CSV row as a whole (wrong number of fields).
    Row(usize),
    /// The whole document.
    Document,
}

impl fmt::Display for InputLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pointer(pointer) if pointer.is_empty() => f.write_str("/"),
            Self::Pointer(pointer) => f.write_str(pointer),
            Self::Cell { row, column } => write!(f, "row {row}, column {column}"),
            Self::Row(row) => write!(f, "row {row}"),
            Self::Document => f.write_str("document"),
        }
    }
}

/// One problem with an input: where, and which rule it broke. The detail never quotes the value, which may
/// be personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    /// Where.
    pub location: InputLocation,
    /// The rule broken, in plain words, no trailing period.
    pub detail: String,
}

impl InputProblem {
    /// A problem at a JSON Pointer.
    pub fn at(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { location: InputLocation::Pointer(pointer.into()), detail: detail.into() }
    }

    /// A problem in a CSV cell.
    pub fn cell(row: usize, column: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { location: InputLocation::Cell { row, column: column.into() }, detail: detail.into() }
    }
}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.detail)
    }
}

/// What an adapter made of a payload it accepted: the events, in order, and what it read but left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    /// The canonical events, at least one.
    pub events: Vec<CrisisEvent>,
    /// Each part of the payload that yields no event (a record that is not crisis care, an entry that only
    /// travels beside one), with where it is and why it was left out. The sender is told of every one, so that
    /// nothing is dropped silently; like problems, a warning never quotes a value.
    pub warnings: Vec<InputProblem>,
}

impl Ingested {
    /// Events with nothing left out.
    pub fn events(events: Vec<CrisisEvent>) -> Self {
        Self { events, warnings: Vec::new() }
    }
}

/// Why an adapter refused a payload. The gateway maps each variant to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The adapter does not read this media type (HTTP 415).
    #[error("unsupported content type `{content_type}`; expected one of: {}", .expected.join(", "))]
    UnsupportedContentType {
        /// What was sent.
        content_type: String,
        /// What the adapter reads.
        expected: Vec<String>,
    },
    /// The bytes do not parse as the format at all (HTTP 400).
    #[error("malformed {format}: {reason} at line {line}, column {column}")]
    Syntax {
        /// The format (`JSON`, `CSV`).
        format: &'static str,
        /// What the parser expected; never quotes input.
        reason: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The payload parses but breaks the format's rules; every problem found is listed (HTTP 422).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<InputProblem>),
}

impl IngestError {
    /// The error for bytes that are not JSON: where, and what the parser expected, never the input itself.
    pub fn json_syntax(error: &serde_json::Error) -> Self {
        Self::Syntax {
            format: "JSON",
            reason: crate::schema::json_error_category(error).to_owned(),
            line: error.line(),
            column: error.column(),
        }
    }

    /// A single problem.
    pub fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Invalid(vec![InputProblem::at(pointer, detail)])
    }
}

/// Who the recipient is and why it receives this view: everything `render` needs beyond the view itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderContext {
    /// The receiving agency.
    pub recipient: AgencyId,
    /// Its kind.
    pub recipient_kind: AgencyKind,
    /// The sending agency's display name (for an Organization resource or a plain-language line).
    pub source_name: String,
    /// The sending agency's ODS code, when the policy gives one: NHS recipients identify organisations by it.
    pub source_ods: Option<OdsCode>,
    /// The receiving agency's ODS code, when the policy gives one.
    pub recipient_ods: Option<OdsCode>,
    /// The episode, when correlated.
    pub episode_id: Option<EpisodeId>,
    /// Every identifier of the episode the recipient may see, its own among them (e.g. its incident number),
    /// so that its system can file the message.
    pub episode_refs: Vec<Identifier>,
    /// The policy decision that permitted this delivery; recipients quote it in questions.
    pub decision_id: Uuid,
    /// The purpose the sharing agreement names.
    pub purpose: String,
    /// The lawful basis, as one readable line.
    pub lawful_basis: String,
    /// When the message is rendered.
    pub sent_at: Timestamp,
}

/// A native message ready to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Its media type (`application/fhir+json`, `application/json`).
    pub content_type: &'static str,
    /// The bytes.
    pub body: Vec<u8>,
}

/// Why a view could not be rendered in a recipient's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The format has no way to say this (the view lacks a field the format requires, or the kind has no
    /// native counterpart). The router dead-letters the delivery with this reason.
    #[error("cannot render {what}: {reason}")]
    Unrenderable {
        /// What was being rendered (an event kind, a resource).
        what: String,
        /// Why not.
        reason: String,
    },
}

/// Derives the deterministic id of something made from one event for one recipient (a delivery, a rendered
/// message), so that a redelivered event renders to the same ids.
pub fn derived_id(namespace: &str, parts: &[&str]) -> Uuid {
    let name = parts.iter().map(|part| part.replace('\\', "\\\\").replace('\n', "\\n")).collect::<Vec<_>>().join("\n");
    Uuid::new_v5(&crate::ids::EVENT_ID_NAMESPACE, format!("{namespace}\n{name}").as_bytes())
}
