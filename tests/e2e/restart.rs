//! The broker killed mid-stream and started again loses nothing and delivers nothing twice, and the audit
//! chain still verifies; an audit record edited by hand is named by `concordat audit verify`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use concordat_e2e::fixtures::POLICE_S136;
use concordat_e2e::{Area, StoreKind, json_fixture};
use serde_json::json;

const INCIDENTS: usize = 40;

/// The s136 incident again under another incident number: distinct events about the same person.
fn incident(number: usize) -> Vec<u8> {
    let mut incident = json_fixture(POLICE_S136);
    incident["incident_number"] = json!(format!("NV-20260301-{:04}", 1000 + number));
    serde_json::to_vec(&incident).unwrap()
}

async fn killed_and_restarted(store: StoreKind) {
    let mut area = Area::start(store).await.unwrap();
    let mut accepted = Vec::new();
    for number in 0..INCIDENTS / 2 {
        accepted.extend(area.accepted("northvale-police", "application/json", incident(number)).await.unwrap());
    }
    // Killed outright while the router and the relay are still working through the first half.
    area.kill().unwrap();
    area.restart().await.unwrap();
    for number in INCIDENTS / 2..INCIDENTS {
        accepted.extend(area.accepted("northvale-police", "application/json", incident(number)).await.unwrap());
    }
    let distinct: std::collections::BTreeSet<_> = accepted.iter().collect();
    assert_eq!(distinct.len(), accepted.len(), "every incident is its own events");

    // The trust's inbox, read as a consumer that dedupes by message id (DESIGN.md §7) would read it.
    let delivered = area.drain("northvale-mh", Duration::from_secs(8)).await.unwrap();
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for message in &delivered {
        *by_id.entry(message.message_id.as_str()).or_default() += 1;
    }
    // Each incident is a detention and a conveyance, and the place of safety hears of both.
    let expected = 2 * INCIDENTS;
    assert_eq!(by_id.len(), expected, "every permitted delivery reached the place of safety");
    let rows = area.query_texts("SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE recipient = 'northvale-mh'");
    assert_eq!(rows.await.unwrap(), [[expected.to_string()]], "one outbox row per delivery, none planned twice");
    let events = area.query_texts("SELECT CAST(COUNT(*) AS TEXT) FROM events").await.unwrap();
    assert_eq!(events, [[accepted.len().to_string()]], "every accepted event was routed once");
    // One person, one open episode: every incident joined it by the exact NHS number.
    let episodes = area.query_texts("SELECT CAST(COUNT(*) AS TEXT) FROM episodes").await.unwrap();
    assert_eq!(episodes, [["1"]]);
    // The relay republishes only what it had published but not yet marked sent when it died: the same
    // message id, which the consumer drops. Its marks ride on the router's next transaction, so that is at
    // most what the router's last two batches delivered here (32 events each, one delivery to the place of
    // safety per event). Anything beyond that would be a second delivery.
    let repeats: usize = by_id.values().map(|count| count - 1).sum();
    assert!(repeats <= 64, "{repeats} repeated message ids: more than the router's last two batches");

    let verify = area.cli(&["audit", "verify"]).unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_broker_restarts_with_every_delivery_exactly_once_and_a_sound_chain_on_sqlite() {
    killed_and_restarted(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_broker_restarts_with_every_delivery_exactly_once_and_a_sound_chain_on_postgres() {
    killed_and_restarted(StoreKind::Postgres).await;
}

async fn edited_by_hand(store: StoreKind) {
    let mut area = Area::start(store).await.unwrap();
    area.accepted("northvale-police", "application/json", incident(1)).await.unwrap();
    area.next("northvale-mh").await.unwrap();
    area.kill().unwrap();

    let verify = area.cli(&["audit", "verify"]).unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));

    // Someone with database access drops the append-only guard and rewrites what a decision said.
    let target = area.query_texts("SELECT CAST(MIN(seq) AS TEXT) FROM audit_log WHERE record LIKE '%northvale-mh%'");
    let seq = target.await.unwrap()[0][0].clone();
    let edit =
        format!("UPDATE audit_log SET record = replace(record, 'northvale-mh', 'northvale-acute') WHERE seq = {seq}");
    let drop_guard = match store {
        StoreKind::Sqlite => "DROP TRIGGER audit_log_no_update",
        StoreKind::Postgres => "DROP TRIGGER audit_log_no_update ON audit_log",
    };
    area.execute(&[drop_guard, &edit]).await.unwrap();

    let verify = area.cli(&["audit", "verify"]).unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert_eq!(verify.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("seq {seq}")), "audit verify names the edited record {seq}: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_record_edited_by_hand_is_named_by_audit_verify_on_sqlite() {
    edited_by_hand(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_record_edited_by_hand_is_named_by_audit_verify_on_postgres() {
    edited_by_hand(StoreKind::Postgres).await;
}
