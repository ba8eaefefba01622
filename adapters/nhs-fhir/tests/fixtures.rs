//! Golden fixtures: every valid FHIR input under `fixtures/valid` translates to the canonical events in its insta
//! snapshot, every event passes the canonical schema, and every invalid input under `fixtures/invalid` fails with
//! the error in its `.expected` sidecar. `UPDATE_EXPECT=1` rewrites the sidecars; `INSTA_UPDATE=always` the
//! snapshots.
// Helpers outside `#[test]` functions are test code too: a failed unwrap is a failed test or bench.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use concordat_episode::{AgencyId, AgencyKind, IngestContext, Timestamp};
use concordat_nhs_fhir::{NhsFhirConfig, ingest, operation_outcome};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// The context a fixture is ingested with: the acute trust for `acute-*` files, the mental-health trust otherwise;
/// `content-type-*` files arrive as CSV.
fn context(name: &str) -> IngestContext {
    let agency = if name.starts_with("acute-") { "northvale-acute" } else { "northvale-mh" };
    let content_type = if name.starts_with("content-type-") { "text/csv" } else { "application/fhir+json" };
    IngestContext {
        agency: AgencyId::new(agency).unwrap(),
        agency_kind: AgencyKind::Nhs,
        content_type: content_type.to_owned(),
        received_at: Timestamp::parse("2026-03-02T08:00:00Z").unwrap(),
    }
}

fn config() -> NhsFhirConfig {
    let mut config = NhsFhirConfig::default();
    config.ods_agencies.insert("RX4".to_owned(), AgencyId::new("northvale-mh").unwrap());
    config.ods_agencies.insert("RX5".to_owned(), AgencyId::new("northvale-acute").unwrap());
    config
}

/// The one check of a valid fixture: it translates, every event is schema-valid, record refs and event ids are
/// unique, resubmission yields the same ids, and the events match the snapshot.
fn check_valid(path: &Path) {
    let name = name(path);
    let payload = std::fs::read(path).unwrap();
    let cx = context(&name);
    let ingested = ingest(&payload, &cx, &config()).unwrap_or_else(|error| panic!("{name}: {error}"));
    check_warnings(path, &ingested.warnings);
    let events = ingested.events;
    assert!(!events.is_empty(), "{name}: no events");
    for event in &events {
        let value = serde_json::to_value(event).unwrap();
        if let Err(violations) = concordat_episode::validate(&value) {
            panic!("{name}: {violations:?}");
        }
        assert_eq!(event.provenance.received_at, cx.received_at);
        assert_eq!(event.source.agency, cx.agency);
    }
    let refs: BTreeSet<_> = events.iter().map(|event| event.source.record_ref.as_str()).collect();
    assert_eq!(refs.len(), events.len(), "{name}: record refs must be unique");
    let ids: BTreeSet<_> = events.iter().map(|event| event.event_id).collect();
    assert_eq!(ids.len(), events.len(), "{name}: event ids must be unique");
    let again = ingest(&payload, &cx, &config()).unwrap().events;
    assert_eq!(again, events, "{name}: resubmission must yield the same events");
    insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name.clone(), events);
    });
}

/// What a valid fixture's payload left out, one warning a line, must be what its `.warnings` sidecar says (no
/// sidecar: nothing may be left out). `UPDATE_EXPECT=1` rewrites the sidecars.
fn check_warnings(path: &Path, warnings: &[concordat_episode::InputProblem]) {
    let actual: String = warnings.iter().map(|warning| format!("{warning}\n")).collect();
    let sidecar = path.with_extension("warnings");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        if actual.is_empty() {
            let _ = std::fs::remove_file(&sidecar);
        } else {
            std::fs::write(&sidecar, &actual).unwrap();
        }
    }
    let expected = std::fs::read_to_string(&sidecar).unwrap_or_default();
    assert_eq!(actual, expected, "{}: warnings", name(path));
    for secret in ["9434765918", "9990000018", "Testpatient", "Alex"] {
        assert!(!actual.contains(secret), "{}: a warning quotes personal data", name(path));
    }
}

/// The one check of an invalid fixture: it fails with exactly the expected message, which never quotes the
/// personal data in the payload, and converts to an OperationOutcome with one issue per problem.
fn check_invalid(path: &Path) {
    let name = name(path);
    let payload = std::fs::read(path).unwrap();
    let error = ingest(&payload, &context(&name), &config()).expect_err(&name);
    let actual = error.to_string();
    let sidecar = path.with_extension("expected");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&sidecar, format!("{actual}\n")).unwrap();
    }
    let expected = std::fs::read_to_string(&sidecar).unwrap();
    assert_eq!(actual, expected.trim_end(), "{name}");
    for secret in ["9434765918", "9990000018", "Testpatient", "Alex"] {
        assert!(!actual.contains(secret), "{name}: the error quotes personal data");
    }
    let outcome = operation_outcome(&error);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let issues = outcome["issue"].as_array().unwrap();
    let problems = match &error {
        concordat_episode::IngestError::Invalid(problems) => problems.len(),
        _ => 1,
    };
    assert_eq!(issues.len(), problems, "{name}");
    let parsed: fhir_sdk::r4b::resources::OperationOutcome = serde_json::from_value(outcome.clone()).unwrap();
    assert_eq!(parsed.issue.len(), problems);
}

#[test]
fn valid_fixtures() {
    let files = fixtures("valid");
    assert!(files.len() >= 20, "at least 20 valid fixtures");
    for path in files {
        check_valid(&path);
    }
}

#[test]
fn invalid_fixtures() {
    let files = fixtures("invalid");
    assert!(files.len() >= 12, "at least 12 invalid fixtures");
    for path in files {
        check_invalid(&path);
    }
}

#[test]
fn every_event_kind_the_adapter_claims_is_covered_by_a_fixture() {
    let kinds: BTreeSet<_> = fixtures("valid")
        .iter()
        .flat_map(|path| ingest(&std::fs::read(path).unwrap(), &context(&name(path)), &config()).unwrap().events)
        .map(|event| event.kind)
        .collect();
    use concordat_episode::EventKind::*;
    for kind in [NhsPlaceOfSafetyArrival, NhsAssessmentOutcome, NhsDischarge, NhsReferral, NhsRiskFlag, NhsCrisisPlan] {
        assert!(kinds.contains(&kind), "{kind} has no fixture");
    }
}
