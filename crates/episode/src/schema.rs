//! Validation of canonical events against `schemas/crisis-event.v1.json`, plus the checks a schema cannot
//! express (the NHS number's check digit).
//!
//! The schema is compiled once, on first use, with format assertions on (`date-time`, `date`, `uuid`) and
//! no network access: every `$ref` is internal. Messages name the JSON Pointer of the offending field and
//! never quote its value, since the value may be personal data.

use std::fmt;
use std::sync::LazyLock;

use serde_json::Value;

use crate::event::{CrisisEvent, NHS_NUMBER_SYSTEM};
use crate::nhs_number::NhsNumber;

/// The canonical event schema, as published.
pub const CRISIS_EVENT_SCHEMA: &str = include_str!("../../../schemas/crisis-event.v1.json");

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(CRISIS_EVENT_SCHEMA).expect("the bundled crisis-event schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the bundled crisis-event schema compiles")
});

/// One way in which a document breaks the canonical schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON Pointer to the offending value (`/subject/nhs_number`); empty for the whole document.
    pub pointer: String,
    /// What rule it broke, without quoting the value.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() { "/" } else { &self.pointer };
        write!(f, "{pointer}: {}", self.message)
    }
}

/// Why bytes are not a canonical event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The bytes are not JSON.
    #[error("not JSON: {reason} at line {line}, column {column}")]
    Json {
        /// What the parser expected, in its words (it never quotes input).
        reason: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The JSON breaks the schema; every violation is listed.
    #[error("{}", join(.0))]
    Invalid(Vec<Violation>),
}

fn join(violations: &[Violation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Checks a JSON value against the canonical schema and the NHS number rule, listing every violation.
///
/// # Errors
/// The violations, in document order as the validator found them.
pub fn validate(value: &Value) -> Result<(), Vec<Violation>> {
    let mut violations: Vec<Violation> = VALIDATOR
        .iter_errors(value)
        .map(|error| Violation {
            pointer: error.instance_path().to_string(),
            message: error.masked_with("value").to_string(),
        })
        .collect();
    check_nhs_numbers(value, &mut violations);
    if violations.is_empty() { Ok(()) } else { Err(violations) }
}

/// The schema can say "ten digits" but not "modulus 11"; this says the rest.
fn check_nhs_numbers(value: &Value, violations: &mut Vec<Violation>) {
    let mut check = |pointer: String, candidate: &Value| {
        let Some(text) = candidate.as_str() else { return };
        if let Err(error) = NhsNumber::new(text)
            && !violations.iter().any(|v| v.pointer == pointer)
        {
            violations.push(Violation { pointer, message: error.to_string() });
        }
    };
    if let Some(number) = value.pointer("/subject/nhs_number") {
        check("/subject/nhs_number".to_owned(), number);
    }
    let identifier_lists = [("/subject/identifiers"), ("/episode/refs")];
    for list in identifier_lists {
        let Some(items) = value.pointer(list).and_then(Value::as_array) else { continue };
        for (index, item) in items.iter().enumerate() {
            if item.get("system").and_then(Value::as_str) == Some(NHS_NUMBER_SYSTEM)
                && let Some(number) = item.get("value")
            {
                check(format!("{list}/{index}/value"), number);
            }
        }
    }
}

/// Parses bytes as a canonical event: JSON, then the schema, then the Rust types.
///
/// # Errors
/// [`EventError::Json`] for bytes that are not JSON, [`EventError::Invalid`] with every violation otherwise.
pub fn parse_event(bytes: &[u8]) -> Result<CrisisEvent, EventError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| json_error(&error))?;
    event_from_value(value)
}

/// Checks a JSON value and converts it to a [`CrisisEvent`].
///
/// # Errors
/// [`EventError::Invalid`] with every violation.
pub fn event_from_value(value: Value) -> Result<CrisisEvent, EventError> {
    validate(&value).map_err(EventError::Invalid)?;
    // The schema and the types agree, so this only fails if they drift apart; say so rather than panic.
    serde_json::from_value(value).map_err(|error| {
        EventError::Invalid(vec![Violation {
            pointer: String::new(),
            message: format!("valid against the schema but not the event types ({})", json_error_category(&error)),
        }])
    })
}

/// Serializes an event and checks the result against the schema: what adapters call before publishing.
///
/// # Errors
/// [`EventError::Invalid`] when the event breaks the schema.
pub fn to_validated_json(event: &CrisisEvent) -> Result<Vec<u8>, EventError> {
    let value = serde_json::to_value(event).map_err(|error| {
        EventError::Invalid(vec![Violation { pointer: String::new(), message: json_error_category(&error).to_owned() }])
    })?;
    validate(&value).map_err(EventError::Invalid)?;
    serde_json::to_vec(&value).map_err(|error| {
        EventError::Invalid(vec![Violation { pointer: String::new(), message: json_error_category(&error).to_owned() }])
    })
}

fn json_error(error: &serde_json::Error) -> EventError {
    EventError::Json { reason: json_error_category(error).to_owned(), line: error.line(), column: error.column() }
}

/// What went wrong parsing JSON, in words that never quote the input: serde_json's own messages can (an
/// unexpected string is quoted whole), and the input may be personal data.
pub fn json_error_category(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data if error.to_string().starts_with(crate::DUPLICATE_KEY) => {
            crate::DUPLICATE_KEY
        }
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "unexpected end of input",
    }
}
