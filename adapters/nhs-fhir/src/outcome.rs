//! An ingest error as a FHIR R4 `OperationOutcome`, for callers that speak FHIR: the gateway may answer a FHIR
//! client with it (HTTP 415, 400 or 422 as [`IngestError`] says) instead of `application/problem+json`.
//!
//! This module only converts; it does not choose the HTTP status or the response media type.

use concordat_episode::{IngestError, InputLocation, InputProblem};
use serde_json::{Value, json};

/// The `OperationOutcome` for an ingest error: one issue per problem, each with its location as a JSON Pointer
/// (in `location`), as a FHIRPath expression where the pointer translates to one, and the rule broken in
/// `diagnostics`. Like the error itself, it never quotes a value from the payload.
pub fn operation_outcome(error: &IngestError) -> Value {
    let issues: Vec<Value> = match error {
        IngestError::UnsupportedContentType { .. } => vec![issue("not-supported", &error.to_string(), None)],
        IngestError::Syntax { line, column, .. } => {
            let location = format!("line {line}, column {column}");
            vec![issue("structure", &error.to_string(), Some(&location))]
        }
        IngestError::Invalid(problems) => problems.iter().map(problem_issue).collect(),
    };
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

fn problem_issue(problem: &InputProblem) -> Value {
    let code = issue_type(&problem.detail);
    let mut value = issue(code, &problem.detail, Some(&problem.location.to_string()));
    if let (InputLocation::Pointer(pointer), Some(object)) = (&problem.location, value.as_object_mut())
        && let Some(expression) = fhir_path(pointer)
    {
        object.insert("expression".to_owned(), json!([expression]));
    }
    value
}

fn issue(code: &str, diagnostics: &str, location: Option<&str>) -> Value {
    let mut value = json!({ "severity": "error", "code": code, "diagnostics": diagnostics });
    if let (Some(location), Some(object)) = (location, value.as_object_mut()) {
        object.insert("location".to_owned(), json!([location]));
    }
    value
}

/// The FHIR issue type for one of this adapter's own messages (`issue-type` value set).
fn issue_type(detail: &str) -> &'static str {
    if detail.starts_with("unsupported") {
        "not-supported"
    } else if detail.contains("does not resolve") || detail.contains("cannot resolve") {
        "not-found"
    } else if detail.contains("lacks the element") || detail.starts_with("missing") || detail.contains("has no") {
        "required"
    } else if detail.starts_with("NHS number") || detail.contains("code is not in") {
        "value"
    } else if detail.starts_with("not a FHIR resource") || detail.starts_with("wrong JSON type") {
        "structure"
    } else {
        "invalid"
    }
}

/// `/entry/2/resource/subject/reference` becomes `Bundle.entry[2].resource.subject.reference`; a pointer into a
/// single resource becomes a path relative to it (`subject.reference`).
fn fhir_path(pointer: &str) -> Option<String> {
    let mut segments = pointer.split('/').skip(1).map(|segment| segment.replace("~1", "/").replace("~0", "~"));
    let first = segments.next()?;
    let mut path = if first == "entry" { "Bundle.entry".to_owned() } else { first };
    for segment in segments {
        if segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty() {
            path.push_str(&format!("[{segment}]"));
        } else {
            path.push('.');
            path.push_str(&segment);
        }
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_fhir_paths() {
        assert_eq!(
            fhir_path("/entry/2/resource/subject/reference").as_deref(),
            Some("Bundle.entry[2].resource.subject.reference")
        );
        assert_eq!(fhir_path("/identifier/0/value").as_deref(), Some("identifier[0].value"));
        assert_eq!(fhir_path(""), None);
    }

    #[test]
    fn every_variant_yields_an_operation_outcome() {
        let errors = [
            IngestError::UnsupportedContentType {
                content_type: "text/csv".into(),
                expected: vec!["application/fhir+json".into()],
            },
            IngestError::Syntax { format: "JSON", reason: "syntax error".into(), line: 3, column: 7 },
            IngestError::invalid(
                "/entry/1/resource/subject/reference",
                "reference does not resolve to any entry of this Bundle",
            ),
        ];
        let codes: Vec<Value> =
            errors.iter().map(|error| operation_outcome(error)["issue"][0]["code"].clone()).collect();
        assert_eq!(codes, [json!("not-supported"), json!("structure"), json!("not-found")]);
        let outcome = operation_outcome(&errors[2]);
        assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.entry[1].resource.subject.reference");
        assert_eq!(outcome["issue"][0]["location"][0], "/entry/1/resource/subject/reference");
    }
}
