//! The published examples (`schemas/examples/vcs-contact/{valid,invalid}`) and the render fixtures, through
//! one `check` per concern. Valid inputs have golden canonical outputs (insta snapshots next to this file);
//! invalid inputs have their expected errors beside them, one problem per line, in `<file>.expected`
//! (`UPDATE_EXPECT=1` rewrites them).

#![allow(clippy::unwrap_used, reason = "test code: an unwrap that fails is the test failing")]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use concordat_episode::{AgencyId, AgencyKind, EpisodeId, Identifier, IngestError, RenderContext, Timestamp};
use concordat_vcs::VcsConfig;
use serde::Deserialize;
use uuid::Uuid;

fn examples(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/examples/vcs-contact").join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "csv")))
        .collect();
    files.sort();
    files
}

fn stem(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().replace('.', "_")
}

/// The sending agency is named by the file's prefix; the media type by its extension.
fn ingest(path: &Path) -> Result<Vec<concordat_episode::CrisisEvent>, IngestError> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let agency = if name.starts_with("listening-line") { "listening-line" } else { "safe-haven" };
    let content_type = if name.ends_with(".csv") { "text/csv" } else { "application/json" };
    let payload = fs::read(path).unwrap();
    concordat_vcs::ingest(&payload, &common::ingest_context(agency, content_type), &VcsConfig::default())
}

/// One example: valid ones must map to schema-valid, deterministic events matching their snapshot (and
/// render to schema-valid notifications); invalid ones must fail with exactly the expected problems.
fn check(path: &Path) {
    let valid = path.parent().unwrap().ends_with("valid") && !path.parent().unwrap().ends_with("invalid");
    let result = ingest(path);
    if valid {
        let events = result.unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(!events.is_empty());
        for event in &events {
            let value = serde_json::to_value(event).unwrap();
            concordat_episode::validate(&value).unwrap_or_else(|v| panic!("{}: {v:?}", path.display()));
            let rendered = concordat_vcs::render(event, &common::render_context("safe-haven")).unwrap();
            assert_eq!(common::notification_violations(&rendered.body), Vec::<String>::new());
        }
        let mut ids: Vec<_> = events.iter().map(|event| event.event_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), events.len(), "{}: event ids repeat", path.display());
        assert_eq!(ingest(path).unwrap(), events, "{}: a resubmission must map identically", path.display());
        insta::assert_json_snapshot!(format!("valid__{}", stem(path)), events);
    } else {
        let error = result.err().unwrap_or_else(|| panic!("{}: accepted an invalid input", path.display()));
        let lines: Vec<String> = match &error {
            IngestError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        };
        let expected_path = path.with_extension(format!("{}.expected", path.extension().unwrap().to_str().unwrap()));
        // As rust-analyzer's expect-test: `UPDATE_EXPECT=1` rewrites the expectations, to be reviewed in the diff.
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            fs::write(&expected_path, lines.join("\n") + "\n").unwrap();
        }
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{}: missing; the error was:\n{}", expected_path.display(), lines.join("\n")));
        assert_eq!(lines.join("\n"), expected.trim_end(), "{}", path.display());
    }
}

#[test]
fn valid_examples() {
    let files = examples("valid");
    assert!(files.len() >= 15, "{} valid examples", files.len());
    assert!(files.iter().filter(|f| f.extension().unwrap() == "csv").count() >= 3);
    files.iter().for_each(|file| check(file));
}

#[test]
fn invalid_examples() {
    let files = examples("invalid");
    assert!(files.len() >= 12, "{} invalid examples", files.len());
    files.iter().for_each(|file| check(file));
}

/// A render fixture: the context the router would give, and the redacted view.
#[derive(Deserialize)]
struct RenderCase {
    context: ContextFile,
    view: serde_json::Value,
}

#[derive(Deserialize)]
struct ContextFile {
    recipient: AgencyId,
    source_name: String,
    episode_id: Option<EpisodeId>,
    episode_refs: Vec<Identifier>,
    decision_id: Uuid,
    purpose: String,
    lawful_basis: String,
    sent_at: Timestamp,
}

/// One render fixture: the view must be a valid canonical event, and its notification must validate and
/// match its snapshot, byte for byte on a second render.
fn check_render(path: &Path) {
    let case: RenderCase = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let view = concordat_episode::event_from_value(case.view).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let c = case.context;
    let cx = RenderContext {
        recipient: c.recipient,
        recipient_kind: AgencyKind::Vcs,
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
    let rendered = concordat_vcs::render(&view, &cx).unwrap();
    assert_eq!(rendered.content_type, "application/json");
    assert_eq!(common::notification_violations(&rendered.body), Vec::<String>::new(), "{}", path.display());
    assert_eq!(concordat_vcs::render(&view, &cx).unwrap(), rendered);
    // The body's own bytes, in field order, as the service will see it.
    insta::assert_snapshot!(format!("render__{}", stem(path)), String::from_utf8(rendered.body).unwrap());
}

#[test]
fn render_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render");
    let mut files: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 5);
    files.iter().for_each(|file| check_render(file));
}

#[test]
fn render_serves_a_local_authority_that_receives_the_simple_format() {
    let payload = fs::read(&examples("valid")[0]).unwrap();
    let events = concordat_vcs::ingest(
        &payload,
        &common::ingest_context("listening-line", "application/json"),
        &VcsConfig::default(),
    )
    .unwrap();
    // The council's safeguarding team gets this format by default (its kind has no format of its own).
    let cx =
        RenderContext { recipient_kind: AgencyKind::LocalAuthority, ..common::render_context("northvale-council") };
    let rendered = concordat_vcs::render(&events[0], &cx).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&rendered.body).unwrap();
    assert_eq!(body["format"], "vcs-notification.v1", "{body}");
    assert_eq!(body["event_id"], events[0].event_id.to_string());
}
