//! Data-driven tests: every example under `schemas/examples/police-incident/{valid,invalid}` and every render
//! fixture under `tests/fixtures/render` goes through one `check`, with golden outputs as insta snapshots
//! (`INSTA_UPDATE=always cargo test -p concordat-police` rewrites them; review the diff).
//!
//! The sending agency is `northvale-police`, except for examples whose file name starts with `btp-`, which
//! British Transport Police (`transport-police`) sends.

#![allow(clippy::unwrap_used, reason = "in tests a failed unwrap is a failed test")]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use concordat_episode::{
    AgencyId, AgencyKind, EpisodeId, Identifier, IngestContext, IngestError, RenderContext, Timestamp, parse_event,
    police_incident_system, validate,
};
use concordat_police::{NOTIFICATION_SCHEMA, PoliceConfig, ingest, render};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

static NOTIFICATION: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(NOTIFICATION_SCHEMA).unwrap();
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap()
});

fn examples(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/examples/police-incident").join(kind);
    files(&dir)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
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

fn ingest_context(name: &str) -> IngestContext {
    let agency = if name.starts_with("btp-") { "transport-police" } else { "northvale-police" };
    IngestContext {
        agency: AgencyId::new(agency).unwrap(),
        agency_kind: AgencyKind::Police,
        content_type: "application/json".to_owned(),
        received_at: Timestamp::parse("2026-03-21T12:00:00Z").unwrap(),
    }
}

/// A police partner receiving an event back, as the router would call `render`.
fn render_context(recipient: &str, refs: Vec<Identifier>) -> RenderContext {
    RenderContext {
        recipient: AgencyId::new(recipient).unwrap(),
        recipient_kind: AgencyKind::Police,
        source_name: "Northvale Police".to_owned(),
        source_ods: None,
        recipient_ods: None,
        episode_id: Some(EpisodeId(Uuid::from_u128(0x4b1f0c36_5f0e_4f7e_9a43_2d7d1c0b9e11))),
        episode_refs: refs,
        decision_id: Uuid::from_u128(0x0d6f5e0e_2c57_5b7c_9d1e_3f2b9c6a7a10),
        purpose: "Coordinating the response to a person in crisis".to_owned(),
        lawful_basis: "UK GDPR Art. 6(1)(e); Art. 9(2)(g); DPA 2018 Sch. 1 para 18".to_owned(),
        sent_at: Timestamp::parse("2026-03-21T12:00:05Z").unwrap(),
    }
}

/// What must hold for every valid example: schema-valid canonical events with unique, stable ids and record
/// refs, the incident ref first, no collar numbers, and a schema-valid notification for each event.
fn check_valid(path: &Path) -> Value {
    let name = name(path);
    let payload = std::fs::read(path).unwrap();
    let cx = ingest_context(&name);
    let events = ingest(&payload, &cx, &PoliceConfig::default()).unwrap_or_else(|error| panic!("{name}: {error}"));
    assert!(!events.is_empty(), "{name}: no events");
    assert_eq!(events, ingest(&payload, &cx, &PoliceConfig::default()).unwrap(), "{name}: not deterministic");

    let native: Value = serde_json::from_slice(&payload).unwrap();
    let incident_ref = Identifier {
        system: police_incident_system(&cx.agency).try_into().unwrap(),
        value: native["incident_number"].as_str().unwrap().to_owned().try_into().unwrap(),
    };
    let mut ids = std::collections::HashSet::new();
    let mut record_refs = std::collections::HashSet::new();
    for event in &events {
        let json = serde_json::to_value(event).unwrap();
        validate(&json).unwrap_or_else(|violations| panic!("{name}: {violations:?}"));
        assert!(ids.insert(event.event_id), "{name}: duplicate event id");
        assert!(record_refs.insert(event.source.record_ref.clone()), "{name}: duplicate record ref");
        assert_eq!(event.episode.refs.first(), Some(&incident_ref), "{name}: incident ref not first");
        let text = json.to_string();
        for officer in native["officers"].as_array().into_iter().flatten() {
            let collar = officer["collar_number"].as_str().unwrap();
            assert!(!text.contains(&format!("\"{collar}\"")), "{name}: a collar number leaked");
        }

        let rendered = render(event, &render_context("northvale-police", event.episode.refs.clone())).unwrap();
        let notification: Value = serde_json::from_slice(&rendered.body).unwrap();
        let errors: Vec<String> = NOTIFICATION.iter_errors(&notification).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: notification breaks its schema: {errors:?}");
    }
    serde_json::to_value(&events).unwrap()
}

/// What must hold for every invalid example: refused, with messages that name a place and never quote the
/// person's data.
fn check_invalid(path: &Path) -> String {
    let name = name(path);
    let payload = std::fs::read(path).unwrap();
    let error = ingest(&payload, &ingest_context(&name), &PoliceConfig::default()).expect_err(&name);
    let message = error.to_string();
    for personal in ["Alex", "Testperson", "9434765918", "1994-06-12", "NV1 4QT", "SJ84529731", "very_high"] {
        assert!(!message.contains(personal), "{name}: the message quotes the input");
    }
    assert!(!message.ends_with('.'), "{name}: trailing period");
    if let IngestError::Invalid(problems) = &error {
        assert!(!problems.is_empty(), "{name}: an empty problem list");
    }
    format!("{error:#?}\n\n{message}")
}

#[test]
fn valid_examples() {
    let paths = examples("valid");
    assert!(paths.len() >= 15, "at least 15 valid examples");
    for path in paths {
        let events = check_valid(&path);
        insta::assert_json_snapshot!(format!("valid__{}", name(&path)), events);
    }
}

#[test]
fn invalid_examples() {
    let paths = examples("invalid");
    assert!(paths.len() >= 12, "at least 12 invalid examples");
    for path in paths {
        let report = check_invalid(&path);
        insta::assert_snapshot!(format!("invalid__{}", name(&path)), report);
    }
}

/// The render fixture's context, as JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextFixture {
    recipient: AgencyId,
    recipient_kind: AgencyKind,
    source_name: String,
    episode_id: Option<EpisodeId>,
    episode_refs: Vec<Identifier>,
    decision_id: Uuid,
    purpose: String,
    lawful_basis: String,
    sent_at: Timestamp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderFixture {
    context: ContextFixture,
    view: Value,
}

fn check_render(path: &Path) -> String {
    let name = name(path);
    let fixture: RenderFixture = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let view = parse_event(fixture.view.to_string().as_bytes()).unwrap_or_else(|error| panic!("{name}: {error}"));
    let c = fixture.context;
    let cx = RenderContext {
        recipient: c.recipient,
        recipient_kind: c.recipient_kind,
        source_name: c.source_name,
        source_ods: None,
        recipient_ods: None,
        episode_id: c.episode_id,
        episode_refs: c.episode_refs,
        decision_id: c.decision_id,
        purpose: c.purpose,
        lawful_basis: c.lawful_basis,
        sent_at: c.sent_at,
    };
    match render(&view, &cx) {
        Ok(rendered) => {
            assert_eq!(rendered, render(&view, &cx).unwrap(), "{name}: not deterministic");
            assert_eq!(rendered.content_type, "application/json");
            let notification: Value = serde_json::from_slice(&rendered.body).unwrap();
            let errors: Vec<String> = NOTIFICATION.iter_errors(&notification).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{name}: notification breaks its schema: {errors:?}");
            // Nothing personal that the view lacks may appear.
            if view.subject.name.is_none() {
                assert!(notification.pointer("/person/name").is_none(), "{name}");
            }
            if view.details.notes.is_none() {
                assert!(notification.get("notes").is_none(), "{name}");
            }
            String::from_utf8(rendered.body).unwrap()
        }
        Err(error) => format!("{error:#?}\n\n{error}"),
    }
}

#[test]
fn render_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render");
    let paths = files(&dir);
    assert!(paths.len() >= 6);
    for path in paths {
        insta::assert_snapshot!(format!("render__{}", name(&path)), check_render(&path));
    }
}

fn s136_payload() -> Vec<u8> {
    std::fs::read(examples("valid").into_iter().find(|p| name(p) == "s136-public-place-police-vehicle").unwrap())
        .unwrap()
}

#[test]
fn content_types() {
    let payload = s136_payload();
    let mut cx = ingest_context("northvale");
    for accepted in ["application/json", "application/json; charset=utf-8", "Application/JSON"] {
        cx.content_type = accepted.to_owned();
        assert!(ingest(&payload, &cx, &PoliceConfig::default()).is_ok(), "{accepted}");
    }
    for refused in ["text/csv", "application/fhir+json", "", "application/jsonx"] {
        cx.content_type = refused.to_owned();
        let error = ingest(&payload, &cx, &PoliceConfig::default()).unwrap_err();
        assert!(matches!(error, IngestError::UnsupportedContentType { .. }), "{refused}");
    }
}

#[test]
fn resubmission_keeps_ids_and_a_changed_payload_does_not() {
    let payload = s136_payload();
    let cx = ingest_context("northvale");
    let ids = |payload: &[u8]| -> Vec<_> {
        ingest(payload, &cx, &PoliceConfig::default()).unwrap().iter().map(|event| event.event_id).collect()
    };
    let first = ids(&payload);
    assert_eq!(first, ids(&payload));
    // Reformatted (other whitespace, key order): the same incident, the same ids, so nothing is delivered twice.
    let value: Value = serde_json::from_slice(&payload).unwrap();
    let mut reformatted = serde_json::to_vec_pretty(&value).unwrap();
    reformatted.push(b'\n');
    assert_eq!(first, ids(&reformatted));
    let Value::Object(members) = &value else { panic!("an incident is an object") };
    let reversed: Vec<String> =
        members.iter().rev().map(|(key, item)| format!("{}: {item}", Value::String(key.clone()))).collect();
    assert_eq!(first, ids(format!("{{{}}}", reversed.join(",\r\n")).as_bytes()));
    // A real change to the incident makes new events.
    let mut changed = value.clone();
    changed["risk"] = serde_json::json!({"scheme": "thrive", "thrive": {"threat": "low", "engagement": "high"}});
    let other = ids(&serde_json::to_vec(&changed).unwrap());
    assert_ne!(first[0], other[0]);
}

#[test]
fn a_key_named_twice_is_refused() {
    let payload = br#"{"format": "police-incident.v1", "format": "police-incident.v1"}"#;
    let error = ingest(payload, &ingest_context("nv"), &PoliceConfig::default()).unwrap_err();
    assert!(
        matches!(&error, IngestError::Syntax { reason, line: 1, .. } if reason == concordat_episode::DUPLICATE_KEY),
        "{error:?}"
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let error =
        ingest(b"{\n  \"format\": \"police-incident.v1\",\n  oops\n}", &ingest_context("nv"), &PoliceConfig::default())
            .unwrap_err();
    assert_eq!(error, IngestError::Syntax { format: "JSON", reason: "syntax error".to_owned(), line: 3, column: 3 });
}

#[test]
fn configured_tables_decide_the_level() {
    let mut payload: Value = serde_json::from_slice(&s136_payload()).unwrap();
    payload["risk"] = serde_json::json!({"scheme": "colour", "grade": "amber"});
    let bytes = serde_json::to_vec(&payload).unwrap();
    let cx = ingest_context("northvale");

    let error = ingest(&bytes, &cx, &PoliceConfig::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "/risk/scheme: scheme is not `thrive` nor a force grading scheme in the adapter's configuration"
    );

    let lenient: PoliceConfig = serde_json::from_str(r#"{"unknown_grade": "moderate"}"#).unwrap();
    let events = ingest(&bytes, &cx, &lenient).unwrap();
    let risk = events[0].risk.as_ref().unwrap();
    assert_eq!(risk.level, concordat_episode::RiskLevel::Moderate);
    assert_eq!(risk.source_scale.as_ref().unwrap().value.as_str(), "amber");

    let local: PoliceConfig =
        serde_json::from_str(r#"{"force_grades": {"colour": {"amber": "high", "red": "imminent"}}}"#).unwrap();
    let events = ingest(&bytes, &cx, &local).unwrap();
    assert_eq!(events[0].risk.as_ref().unwrap().level, concordat_episode::RiskLevel::High);
}

#[test]
fn thrive_letters_count_only_the_configured_ones() {
    let mut payload: Value = serde_json::from_slice(&s136_payload()).unwrap();
    payload["risk"] = serde_json::json!({"scheme": "thrive", "thrive": {"threat": "low", "engagement": "high"}});
    let bytes = serde_json::to_vec(&payload).unwrap();
    let cx = ingest_context("northvale");
    let events = ingest(&bytes, &cx, &PoliceConfig::default()).unwrap();
    let risk = events[0].risk.as_ref().unwrap();
    assert_eq!(risk.level, concordat_episode::RiskLevel::Low);
    assert_eq!(risk.source_scale.as_ref().unwrap().value.as_str(), "T:low E:high");

    let config: PoliceConfig = serde_json::from_str(r#"{"thrive_letters": ["engagement"]}"#).unwrap();
    let events = ingest(&bytes, &cx, &config).unwrap();
    assert_eq!(events[0].risk.as_ref().unwrap().level, concordat_episode::RiskLevel::High);
}
