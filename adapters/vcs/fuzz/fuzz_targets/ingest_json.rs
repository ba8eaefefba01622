//! Fuzzes the json parser: any bytes must give events or an error, never a panic, and every event must be
//! schema-valid.

#![no_main]

use concordat_episode::{AgencyId, AgencyKind, IngestContext, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cx = IngestContext {
        agency: AgencyId::new("safe-haven").unwrap(),
        agency_kind: AgencyKind::Vcs,
        content_type: "application/json".to_owned(),
        received_at: Timestamp::parse("2026-03-02T09:00:00Z").unwrap(),
    };
    if let Ok(events) = concordat_vcs::ingest(data, &cx, &concordat_vcs::VcsConfig::default()) {
        for event in events {
            assert!(concordat_episode::to_validated_json(&event).is_ok());
        }
    }
});
