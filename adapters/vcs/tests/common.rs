//! Helpers shared by the integration tests: fixed contexts and the notification schema.

#![allow(clippy::unwrap_used, reason = "test code: an unwrap that fails is the test failing")]
#![allow(dead_code)]

use std::sync::LazyLock;

use concordat_episode::{AgencyId, AgencyKind, IngestContext, RenderContext, Timestamp};
use serde_json::Value;
use uuid::Uuid;

/// The context every fixture is ingested with: sent by `agency`, received at a fixed time.
pub fn ingest_context(agency: &str, content_type: &str) -> IngestContext {
    IngestContext {
        agency: AgencyId::new(agency).unwrap(),
        agency_kind: AgencyKind::Vcs,
        content_type: content_type.to_owned(),
        received_at: Timestamp::parse("2026-03-02T09:00:00Z").unwrap(),
    }
}

/// A context for rendering to `recipient` with no episode refs.
pub fn render_context(recipient: &str) -> RenderContext {
    RenderContext {
        recipient: AgencyId::new(recipient).unwrap(),
        recipient_kind: AgencyKind::Vcs,
        source_name: "Northvale Mental Health NHS Foundation Trust".to_owned(),
        source_ods: None,
        recipient_ods: None,
        episode_id: None,
        episode_refs: Vec::new(),
        decision_id: Uuid::from_u128(0x1234),
        purpose: "Direct care: telling the service that supported the person what happened next".to_owned(),
        lawful_basis: "UK GDPR Art. 6(1)(e) and Art. 9(2)(h); DPA 2018 Sch. 1 Part 1 para 2".to_owned(),
        sent_at: Timestamp::parse("2026-03-04T10:00:00Z").unwrap(),
    }
}

static NOTIFICATION: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(concordat_vcs::NOTIFICATION_SCHEMA).unwrap();
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap()
});

/// Every way a rendered body breaks `schemas/vcs-notification.v1.json`.
pub fn notification_violations(body: &[u8]) -> Vec<String> {
    let value: Value = serde_json::from_slice(body).unwrap();
    NOTIFICATION.iter_errors(&value).map(|error| format!("{}: {error}", error.instance_path())).collect()
}
