//! The pure commands as an integrator or a governance lead runs them: `translate`, `render` and
//! `policy check|explain|render`, with DESIGN.md §6's exit codes and messages that name the file and the place.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn concordat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_concordat")).current_dir(root()).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn translate_prints_canonical_events_as_a_json_array() {
    let output = concordat(&[
        "translate",
        "--adapter",
        "police",
        "--received-at",
        "2026-03-01T22:20:00Z",
        "schemas/examples/police-incident/valid/s136-public-place-police-vehicle.json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let events: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let events = events.as_array().unwrap();
    assert!(!events.is_empty());
    for event in events {
        concordat_episode::validate(event).unwrap();
        assert_eq!(event["source"]["agency"], "northvale-police");
        assert_eq!(event["provenance"]["received_at"], "2026-03-01T22:20:00Z");
    }
    assert!(events.iter().any(|event| event["kind"] == "police.s136_detention"));
}

#[test]
fn translate_prints_what_it_left_out_of_a_message_on_stderr() {
    let file = "adapters/nhs-fhir/tests/fixtures/valid/referral-message-with-context-entries.json";
    let output = concordat(&["translate", "--adapter", "nhs-fhir", "--agency", "northvale-acute", file]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let events: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(events.len(), 1, "stdout holds only the events");
    assert_eq!(events[0]["kind"], "nhs.referral");
    let skipped: Vec<String> =
        stderr(&output).lines().filter(|line| line.ends_with(": skipped")).map(str::to_owned).collect();
    assert_eq!(skipped.len(), 8, "each entry left out is named: {skipped:?}");
    assert!(skipped.iter().any(|line| line.contains("/entry/9/resource: AllergyIntolerance carries no crisis event")));
    assert!(skipped.iter().all(|line| line.starts_with(file)), "each names the file: {skipped:?}");
}

#[test]
fn translate_reads_standard_input_and_csv() {
    let csv = std::fs::read(root().join("schemas/examples/vcs-contact/valid/listening-line-week.csv")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_concordat"))
        .current_dir(root())
        .args(["translate", "--adapter", "vcs", "--agency", "listening-line", "--content-type", "text/csv", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&csv).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let events: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(events.len() > 1, "one event per row at least");
}

#[test]
fn translate_of_invalid_input_exits_1_naming_the_file_and_pointer_without_the_value() {
    let file = "schemas/examples/police-incident/invalid/nhs-number-bad-check-digit.json";
    let output = concordat(&["translate", "--adapter", "police", file]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains(file), "{message}");
    assert!(message.contains("nhs"), "the message names the field: {message}");
    let payload = std::fs::read_to_string(root().join(file)).unwrap();
    let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
    let number = find_string(&value, "nhs").unwrap();
    assert!(!message.contains(&number), "the message quotes the NHS number: {message}");
    assert!(stdout(&output).is_empty());
}

/// The first string value under a key containing `needle`.
fn find_string(value: &serde_json::Value, needle: &str) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => map.iter().find_map(|(key, value)| match value {
            serde_json::Value::String(text) if key.to_lowercase().contains(needle) => Some(text.clone()),
            other => find_string(other, needle),
        }),
        serde_json::Value::Array(items) => items.iter().find_map(|item| find_string(item, needle)),
        _ => None,
    }
}

#[test]
fn a_missing_file_is_invalid_input() {
    let output = concordat(&["translate", "--adapter", "nhs-fhir", "/nonexistent/bundle.json"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("/nonexistent/bundle.json"));
}

#[test]
fn render_prints_the_message_each_format_would_deliver() {
    let event = "schemas/examples/crisis-event/valid/feedback-outcome.json";
    for (adapter, marker) in [("nhs-fhir", "\"resourceType\""), ("police", "NVP-20260301-0457"), ("vcs", "discharged")]
    {
        let output = concordat(&["render", "--adapter", adapter, "--sent-at", "2026-03-02T05:00:00Z", event]);
        assert_eq!(output.status.code(), Some(0), "{adapter}: {}", stderr(&output));
        let body = stdout(&output);
        serde_json::from_str::<serde_json::Value>(&body).unwrap();
        assert!(body.to_lowercase().contains(&marker.to_lowercase()), "{adapter}: {body}");
        // Pure and deterministic: the same input renders the same bytes.
        let again = concordat(&["render", "--adapter", adapter, "--sent-at", "2026-03-02T05:00:00Z", event]);
        assert_eq!(stdout(&again), body);
    }
}

#[test]
fn render_refuses_an_event_that_breaks_the_schema() {
    let output =
        concordat(&["render", "--adapter", "police", "schemas/examples/crisis-event/invalid/unknown-kind.json"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("/kind"), "{}", stderr(&output));
}

#[test]
fn policy_check_passes_the_sample_and_lists_problems_with_lines() {
    let output = concordat(&["policy", "check", "deploy/local/policies/northvale.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let broken = "crates/policy/tests/fixtures/broken/bad-risk-level.yaml";
    let output = concordat(&["policy", "check", broken]);
    assert_eq!(output.status.code(), Some(1));
    let expected =
        std::fs::read_to_string(root().join("crates/policy/tests/fixtures/broken/bad-risk-level.expected")).unwrap();
    let line = expected.split(':').next().unwrap().trim();
    assert!(stderr(&output).contains(&format!("{broken}:{line}:")), "{}", stderr(&output));
}

#[test]
fn policy_explain_says_why_each_field_is_shared_or_withheld() {
    let output = concordat(&[
        "policy",
        "explain",
        "--policy",
        "deploy/local/policies/northvale.yaml",
        "--event",
        "schemas/examples/crisis-event/valid/police-s136-detention.json",
        "--to",
        "northvale-mh",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("s136-notify-place-of-safety"), "{text}");
    assert!(text.contains("/details/notes"), "the withheld notes are explained: {text}");
}

#[test]
fn policy_render_writes_a_readable_agreement() {
    for (format, marker) in [("md", "# "), ("html", "<!DOCTYPE html>")] {
        let output = concordat(&["policy", "render", "--format", format, "deploy/local/policies/northvale.yaml"]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let document = stdout(&output);
        assert!(document.contains(marker), "{format}");
        assert!(document.contains("Northvale Police"), "{format}: the parties are named");
    }
}

#[test]
fn audit_verify_refuses_a_missing_store_and_exits_3_when_the_database_is_unreachable() {
    // A mistyped SQLite path is not an empty, sound chain: nothing is created and the path is named.
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("concordat.db");
    let output = Command::new(env!("CARGO_BIN_EXE_concordat"))
        .current_dir(root())
        .args(["audit", "verify"])
        .env("CONCORDAT_STORE_URL", format!("sqlite://{}", missing.display()))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("there is no store at"), "{}", stderr(&output));
    assert!(!missing.exists(), "verify created a store");

    // Nothing listens on a port just released: the answer of a stopped PostgreSQL.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = Command::new(env!("CARGO_BIN_EXE_concordat"))
        .current_dir(root())
        .args(["audit", "verify"])
        .env("CONCORDAT_STORE_URL", format!("postgres://concordat:hunter2@127.0.0.1:{port}/concordat"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(!stderr(&output).contains("hunter2"), "the password is not printed: {}", stderr(&output));
}
