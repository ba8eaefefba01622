//! Fuzzes render over any canonical event the episode crate accepts: never a panic.

#![no_main]

use concordat_episode::{AgencyId, AgencyKind, RenderContext, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(view) = concordat_episode::parse_event(data) else { return };
    let cx = RenderContext {
        recipient: AgencyId::new("safe-haven").unwrap(),
        recipient_kind: AgencyKind::Vcs,
        source_name: "Northvale Police".to_owned(),
        episode_id: None,
        episode_refs: Vec::new(),
        decision_id: decision_id().0,
        purpose: "Direct care".to_owned(),
        lawful_basis: "UK GDPR Art. 6(1)(e)".to_owned(),
        sent_at: Timestamp::parse("2026-03-04T10:00:00Z").unwrap(),
    };
    let _ = concordat_vcs::render(&view, &cx);
});

fn decision_id() -> concordat_episode::EventId {
    concordat_episode::EventId::derive(&AgencyId::new("fuzz").unwrap(), "", &concordat_episode::Sha256Hex::digest(b""))
}
