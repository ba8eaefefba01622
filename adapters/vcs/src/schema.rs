//! Validation of a native payload against the published `schemas/vcs-contact.v1.json`, with each schema
//! error turned into a plain rule at a JSON Pointer.
//!
//! Every payload passes through the schema before it is mapped, so the published schema and the code cannot
//! drift: what the schema rejects is rejected, at the schema's pointer. This module does not check what a
//! schema cannot say (the NHS number's check digit, clock changes, repeated ids); `ingest.rs` does. Messages
//! never quote a value, which may be personal data.

use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::format::{CONTACT_SCHEMA, LIST_FIELDS, PERSONAL_FIELDS};

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(CONTACT_SCHEMA).expect("the bundled vcs-contact schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the bundled vcs-contact schema compiles")
});

/// One schema violation: where, and the rule in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// JSON Pointer to the field (for a missing field, where it should be).
    pub pointer: String,
    /// The rule broken, no trailing period.
    pub detail: String,
}

/// Checks a payload (one contact or an array of them) against the schema, listing every violation.
pub fn check(value: &Value) -> Vec<SchemaProblem> {
    let mut problems = Vec::new();
    for error in VALIDATOR.iter_errors(value) {
        let at = error.instance_path().as_str().to_owned();
        let field = last_field(&at);
        match error.kind() {
            ValidationErrorKind::Required { property } => {
                let property = property.as_str().unwrap_or_default();
                let schema_path = error.schema_path().as_str();
                let detail = if schema_path.contains("/dependentRequired/") {
                    format!("is required when {} is given", last_field(schema_path))
                } else if property == "consent_scope" {
                    "is required when consent_status is given (list what the person agreed to)".to_owned()
                } else {
                    "is required".to_owned()
                };
                problems.push(SchemaProblem { pointer: format!("{at}/{}", escape(property)), detail });
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    let detail = "unknown field (see the field list in the vcs-contact.v1 schema)".to_owned();
                    problems.push(SchemaProblem { pointer: format!("{at}/{}", escape(name)), detail });
                }
            }
            kind => problems.push(SchemaProblem { pointer: at.clone(), detail: describe(kind, &at, field, &error) }),
        }
    }
    // A rule that follows from another field (consent_scope from consent_status) says nothing useful while that
    // field is itself wrong: report the cause only.
    let broken: Vec<String> = problems.iter().map(|problem| problem.pointer.clone()).collect();
    problems.retain(|problem| {
        let Some((parent, field)) = problem.pointer.rsplit_once('/') else { return true };
        let cause = match field {
            "consent_scope" => "consent_status",
            "follow_up_of" => "contact_type",
            personal if PERSONAL_FIELDS.contains(&personal) && problem.detail.starts_with("must be left out") => {
                "consent_status"
            }
            _ => return true,
        };
        !broken.contains(&format!("{parent}/{cause}"))
    });
    problems
}

fn describe(kind: &ValidationErrorKind, at: &str, field: &str, error: &jsonschema::ValidationError<'_>) -> String {
    match kind {
        ValidationErrorKind::FalseSchema if PERSONAL_FIELDS.contains(&field) => {
            "must be left out when consent_status is refused or not_sought (the person did not agree to share it)"
                .to_owned()
        }
        ValidationErrorKind::FalseSchema if field == "consent_scope" => {
            "must be left out unless consent_status is given".to_owned()
        }
        ValidationErrorKind::FalseSchema if field == "follow_up_of" => {
            "is only for a contact_type of follow_up".to_owned()
        }
        ValidationErrorKind::Enum { options } => {
            let names: Vec<&str> = options.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            format!("must be one of: {}", names.join(", "))
        }
        ValidationErrorKind::Pattern { .. } => pattern_rule(field).to_owned(),
        ValidationErrorKind::Format { format } if format == "date" => {
            "must be a real date written YYYY-MM-DD".to_owned()
        }
        ValidationErrorKind::Format { format } if format == "uuid" => {
            "must be a Concordat episode id (a UUID such as 6f1c2a7e-0b1d-4c55-9a43-2f0e8d7b9c10)".to_owned()
        }
        ValidationErrorKind::Type { .. } if at.is_empty() => {
            "must be a contact object or an array of contacts".to_owned()
        }
        ValidationErrorKind::Type { .. } if is_root_item(at) => "must be a contact object".to_owned(),
        ValidationErrorKind::Type { .. } if LIST_FIELDS.contains(&field) => "must be an array of values".to_owned(),
        ValidationErrorKind::Type { .. } => "must be a string".to_owned(),
        ValidationErrorKind::MinItems { .. } if at.is_empty() => "must hold at least one contact".to_owned(),
        ValidationErrorKind::MinItems { .. } => "must not be an empty list (leave the field out instead)".to_owned(),
        ValidationErrorKind::MinLength { .. } => "must not be empty (leave the field out instead)".to_owned(),
        ValidationErrorKind::MaxLength { limit } => format!("must be at most {limit} characters"),
        ValidationErrorKind::UniqueItems => "must not list a value twice".to_owned(),
        _ => error.masked_with("value").to_string(),
    }
}

fn pattern_rule(field: &str) -> &'static str {
    match field {
        "contact_id" | "follow_up_of" | "person_ref" => {
            "must be 1 to 64 letters, digits and . _ / : - starting with a letter or digit"
        }
        "organisation" | "referral_to" => "must be a Concordat agency id (lower-case letters, digits, inner hyphens)",
        "contact_time" | "follow_up_time" => "must be a 24-hour time HH:MM, optionally with seconds and a UTC offset",
        "nhs_number" => "must be 10 digits (a space or hyphen between the 3-3-4 groups is allowed)",
        "postcode_district" => "must be the first half of a postcode only, such as NV3",
        _ => "does not have the expected form",
    }
}

/// The last segment of a JSON Pointer, unescaped enough to compare with field names (which hold no `~`/`/`).
fn last_field(pointer: &str) -> &str {
    pointer.rsplit('/').next().unwrap_or_default()
}

/// `/3`: an element of a top-level array of contacts.
fn is_root_item(pointer: &str) -> bool {
    pointer.strip_prefix('/').is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 6901 escaping of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
