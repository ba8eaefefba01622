//! Validation of native payloads against the published `schemas/police-incident.v1.json`, so the schema
//! integrators read and the code that judges their payloads cannot drift apart.
//!
//! The schema is compiled once, on first use (draft 2020-12, formats asserted, no network: every `$ref` is
//! internal). Messages name the JSON Pointer and the rule, never the value; where the schema's generic
//! message would leave an integrator guessing (a full postcode, a fine grid reference, a missing field),
//! this module says it plainly. It does not map anything onto canonical events.

use std::sync::LazyLock;

use concordat_episode::InputProblem;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

/// The native format's schema, as published.
pub const INCIDENT_SCHEMA: &str = include_str!("../../../schemas/police-incident.v1.json");

/// The schema of what police receive back, as published.
pub const NOTIFICATION_SCHEMA: &str = include_str!("../../../schemas/police-notification.v1.json");

#[allow(clippy::expect_used, reason = "the schema is bundled at compile time and tested; failing is a build bug")]
static INCIDENT: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(INCIDENT_SCHEMA).expect("the bundled police-incident schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        // The schema's patterns need no look-around; the `regex` engine runs in linear time on hostile input
        // and is faster than the default `fancy-regex`.
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&schema)
        .expect("the bundled police-incident schema compiles")
});

/// Checks a payload against the schema, listing every problem in document order.
pub fn check(value: &Value) -> Vec<InputProblem> {
    // Most payloads are valid; the boolean check is much cheaper than collecting errors.
    if INCIDENT.is_valid(value) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for error in INCIDENT.iter_errors(value) {
        let pointer = error.instance_path().to_string();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    problems.push(InputProblem::at(child(&pointer, name), "unknown field (not in police-incident.v1)"));
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                problems.push(InputProblem::at(child(&pointer, name), "required field is missing"));
            }
            ValidationErrorKind::FalseSchema => {
                problems.push(InputProblem::at(pointer.clone(), forbidden(&pointer)));
            }
            ValidationErrorKind::AnyOf { .. } if pointer == "/risk" => {
                problems.push(InputProblem::at(
                    pointer,
                    "risk needs an overall `grade`, per-letter `thrive` judgements, or both",
                ));
            }
            ValidationErrorKind::Enum { options } => {
                problems.push(InputProblem::at(pointer, format!("must be one of: {}", list(options))));
            }
            ValidationErrorKind::Constant { expected_value } => {
                problems.push(InputProblem::at(pointer, format!("must be {}", list(expected_value))));
            }
            ValidationErrorKind::Format { format } if format == "date-time" => {
                problems.push(InputProblem::at(pointer, TIMESTAMP_RULE));
            }
            ValidationErrorKind::Format { format } if format == "date" => {
                problems.push(InputProblem::at(pointer, "must be a calendar date, YYYY-MM-DD"));
            }
            ValidationErrorKind::Pattern { .. } => {
                let detail = refine_pattern(&pointer, value.pointer(&pointer))
                    .map_or_else(|| error.masked_with("value").to_string(), str::to_owned);
                problems.push(InputProblem::at(pointer, detail));
            }
            _ => problems.push(InputProblem::at(pointer, error.masked_with("value").to_string())),
        }
    }
    // A value can break two rules at once (a timestamp's pattern and its format); one message per place is
    // enough to fix it.
    let mut seen = std::collections::HashSet::new();
    problems.retain(|problem| seen.insert(problem.location.to_string()));
    problems
}

const TIMESTAMP_RULE: &str = "must be an RFC 3339 timestamp with a UTC offset (e.g. `2026-03-01T22:14:00Z`)";

/// The schema's allowed values (never the payload's) as `a`, `b`, `c`.
fn list(options: &Value) -> String {
    let one = |value: &Value| match value {
        Value::String(text) => format!("`{text}`"),
        other => format!("`{other}`"),
    };
    match options {
        Value::Array(items) => items.iter().map(one).collect::<Vec<_>>().join(", "),
        other => one(other),
    }
}

/// The pointer of a named child, escaped per RFC 6901.
fn child(parent: &str, name: &str) -> String {
    format!("{parent}/{}", name.replace('~', "~0").replace('/', "~1"))
}

fn forbidden(pointer: &str) -> &'static str {
    match pointer {
        "/risk/thrive" => "per-letter THRIVE judgements need scheme `thrive`",
        "/conveyance/ambulance_not_used_reason" => {
            "a reason an ambulance was not used makes no sense when mode is `ambulance`"
        }
        _ => "field not allowed here",
    }
}

/// Plain messages for the pattern failures integrators hit most, judged from the value's shape without
/// quoting it.
fn refine_pattern(pointer: &str, value: Option<&Value>) -> Option<&'static str> {
    let text = value?.as_str()?;
    if pointer.ends_with("/postcode_district") {
        let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        // A full postcode ends in an inward code: a digit and two letters.
        let inward = match compact.as_slice() {
            [_, _, .., digit, first, second] => {
                digit.is_ascii_digit() && first.is_ascii_alphabetic() && second.is_ascii_alphabetic()
            }
            _ => false,
        };
        return Some(if inward {
            "a full postcode is not allowed: send the postcode district (outward code, e.g. `NV1`) only"
        } else {
            "must be a postcode district (outward code, e.g. `NV1`), upper case"
        });
    }
    if pointer == "/location/grid_ref" {
        let digits = text.bytes().filter(u8::is_ascii_digit).count();
        return Some(if digits > 4 {
            "grid reference finer than 1 km is not allowed: send two letters and four digits (e.g. `SJ8497`)"
        } else {
            "must be two letters and two or four digits (e.g. `SJ8497`)"
        });
    }
    match pointer {
        "/place_of_safety/ods_code" => Some("ODS code must be 3 to 6 upper-case letters and digits (e.g. `RX4`)"),
        "/risk/scheme" => Some("scheme must be 1-32 lower-case letters, digits, `_` or `-` (e.g. `thrive`)"),
        "/risk/grade" => Some("grade must be 1-32 letters, digits, spaces, `_` or `-`"),
        _ if pointer.starts_with("/risk/thrive/") => {
            Some("a THRIVE judgement must be 1-16 letters, spaces, `_` or `-`")
        }
        _ if pointer.starts_with("/officers/") => Some("collar number must be 1-12 letters and digits, no spaces"),
        "/person/nhs_number" => Some("NHS number must be 10 digits, optionally grouped 3-3-4 with spaces or hyphens"),
        "/incident_number" => {
            Some("incident number must be 1-64 letters, digits and `/ _ . : -`, starting with a letter or digit")
        }
        "/occurred_at" | "/recorded_at" | "/conveyance/started_at" | "/outcome/closed_at" | "/consent/recorded_at" => {
            Some(TIMESTAMP_RULE)
        }
        "/force" | "/outcome/referral/to_agency" => {
            Some("must be a Concordat agency id (lower-case letters, digits, inner hyphens)")
        }
        _ => None,
    }
}
