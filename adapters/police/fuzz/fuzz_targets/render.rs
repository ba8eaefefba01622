//! Fuzzes `render` with arbitrary canonical events (whatever `parse_event` accepts): it must never panic,
//! and must always render for a police recipient.

#![no_main]

use concordat_episode::{AgencyId, AgencyKind, RenderContext, Timestamp, parse_event};
use concordat_police::render;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(view) = parse_event(data) else { return };
    let cx = RenderContext {
        recipient: AgencyId::new("northvale-police").expect("a valid agency id"),
        recipient_kind: AgencyKind::Police,
        source_name: "Northvale Mental Health NHS Foundation Trust".to_owned(),
        episode_id: view.episode.episode_id,
        episode_refs: view.episode.refs.clone(),
        decision_id: uuid::Uuid::nil(),
        purpose: "fuzzing".to_owned(),
        lawful_basis: "none".to_owned(),
        sent_at: Timestamp::parse("2026-03-21T12:00:00Z").expect("a valid timestamp"),
    };
    let rendered = render(&view, &cx).expect("every canonical event renders for a police recipient");
    let _: serde_json::Value = serde_json::from_slice(&rendered.body).expect("a notification is JSON");
});
