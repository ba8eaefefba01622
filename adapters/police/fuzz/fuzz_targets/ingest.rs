//! Fuzzes `ingest` with arbitrary bytes: it must never panic, and every event it accepts must pass the
//! canonical schema.

#![no_main]

use std::sync::LazyLock;

use concordat_episode::{AgencyId, AgencyKind, IngestContext, Timestamp, validate};
use concordat_police::{PoliceConfig, ingest};
use libfuzzer_sys::fuzz_target;

static CONTEXT: LazyLock<IngestContext> = LazyLock::new(|| IngestContext {
    agency: AgencyId::new("northvale-police").expect("a valid agency id"),
    agency_kind: AgencyKind::Police,
    content_type: "application/json".to_owned(),
    received_at: Timestamp::parse("2026-03-21T12:00:00Z").expect("a valid timestamp"),
});

static CONFIG: LazyLock<PoliceConfig> = LazyLock::new(PoliceConfig::default);

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = ingest(data, &CONTEXT, &CONFIG) {
        assert!(!events.is_empty());
        for event in &events {
            let json = serde_json::to_value(event).expect("events serialize");
            assert!(validate(&json).is_ok(), "an accepted payload produced a schema-invalid event");
        }
    }
});
