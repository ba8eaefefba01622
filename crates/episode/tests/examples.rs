//! The published examples under `schemas/examples/crisis-event/` are the contract integrators copy: every
//! valid one must validate and round-trip through the Rust types unchanged, every invalid one must be
//! rejected with a message naming the field it gets wrong.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use concordat_episode::{CrisisEvent, EventError, EventKind, parse_event, validate};
use serde_json::Value;

fn examples(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/examples/crisis-event").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn valid_examples_validate_and_round_trip_unchanged() {
    let files = examples("valid");
    assert!(files.len() >= EventKind::ALL.len(), "expected at least one valid example per kind");
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        let event = parse_event(&bytes).unwrap_or_else(|error| panic!("{}: {error}", name(&path)));
        let written = serde_json::to_value(&event).unwrap();
        assert_eq!(written, original, "{} changed on a round trip", name(&path));
    }
}

#[test]
fn every_kind_has_a_valid_example() {
    let kinds: Vec<EventKind> = examples("valid")
        .iter()
        .map(|path| serde_json::from_slice::<CrisisEvent>(&std::fs::read(path).unwrap()).unwrap().kind)
        .collect();
    for kind in EventKind::ALL {
        assert!(kinds.contains(kind), "no valid example of {kind}");
    }
}

#[test]
fn invalid_examples_are_rejected_naming_the_field() {
    let expected_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/examples/crisis-event/invalid-expected.json");
    let expected: BTreeMap<String, String> = serde_json::from_slice(&std::fs::read(expected_file).unwrap()).unwrap();
    let files = examples("invalid");
    assert!(files.len() >= 12);
    assert_eq!(files.len(), expected.len(), "every invalid example needs an expected pointer");
    for path in files {
        let name = name(&path);
        let pointer = &expected[&name];
        let bytes = std::fs::read(&path).unwrap();
        let Err(EventError::Invalid(violations)) = parse_event(&bytes) else {
            panic!("{name} was not rejected as invalid");
        };
        assert!(
            violations.iter().any(|violation| &violation.pointer == pointer),
            "{name}: expected a violation at `{pointer}`, got {violations:?}"
        );
        // The message must not quote the offending value: it may be personal data.
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        if let Some(Value::String(bad)) = value.pointer(pointer)
            && bad.len() > 3
        {
            for violation in &violations {
                assert!(!violation.message.contains(bad.as_str()), "{name}: message quotes the value: {violation}");
            }
        }
    }
}

#[test]
fn not_json_names_line_and_column_without_quoting() {
    let Err(EventError::Json { line, column, reason }) = parse_event(b"{\n  \"kind\": Alex Testperson\n}") else {
        panic!("expected a JSON error");
    };
    assert_eq!(line, 2);
    assert!(column > 0);
    assert!(!reason.contains("Alex"));
}

#[test]
fn validation_lists_every_violation() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas/examples/crisis-event/valid/police-s136-detention.json");
    let mut value: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    value["kind"] = Value::from("police.unknown");
    value["subject"]["nhs_number"] = Value::from("9434765918");
    value["risk"]["level"] = Value::from("severe");
    let violations = validate(&value).unwrap_err();
    let pointers: Vec<&str> = violations.iter().map(|violation| violation.pointer.as_str()).collect();
    for pointer in ["/kind", "/subject/nhs_number", "/risk/level"] {
        assert!(pointers.contains(&pointer), "{pointer} missing from {pointers:?}");
    }
}
