//! Retention: with short periods, the store's personal data and old dead letters go on schedule, round
//! after round, while the audit chain keeps verifying; the store does not grow with the traffic it carried.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use concordat_e2e::fixtures::{EPISODE_SYSTEM, NHS_NUMBER, OUTCOME_NFA, POLICE_S136};
use concordat_e2e::{ADMIN_TOKEN, Area, StoreKind, find_identifier, fixture, json_fixture, set_nhs_number};
use reqwest::Method;
use serde_json::json;

/// Rows of the store that hold personal data, by table.
const PERSONAL: &[(&str, &str)] = &[
    ("event payloads", "SELECT CAST(COUNT(*) AS TEXT) FROM event_payloads"),
    ("outbox bodies", "SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE body IS NOT NULL"),
    ("subject keys", "SELECT CAST(COUNT(*) AS TEXT) FROM subject_keys"),
    ("unattached events", "SELECT CAST(COUNT(*) AS TEXT) FROM unattached_events"),
    ("correlation refs", "SELECT CAST(COUNT(*) AS TEXT) FROM episode_refs WHERE system <> 'urn:concordat:episode'"),
];

async fn personal_rows(area: &Area) -> Vec<(String, u64)> {
    let mut counts = Vec::new();
    for (what, sql) in PERSONAL {
        let rows = area.query_texts(sql).await.unwrap();
        counts.push(((*what).to_owned(), rows[0][0].parse().unwrap()));
    }
    counts
}

/// One s136 story, closed by the trust's outcome, plus a payload refused over AMQP (a dead letter).
async fn one_round(area: &mut Area, round: usize) {
    let mut police = json_fixture(POLICE_S136);
    police["incident_number"] = json!(format!("NV-RETENTION-{round}"));
    area.accepted("northvale-police", "application/json", serde_json::to_vec(&police).unwrap()).await.unwrap();
    let notification = area.next("northvale-mh").await.unwrap();
    let episode = find_identifier(&notification.json().unwrap(), EPISODE_SYSTEM).unwrap();
    // The rest of what the trust was sent this round (the conveyance), so the next round starts clean.
    area.drain("northvale-mh", Duration::from_secs(1)).await.unwrap();
    let mut outcome = json_fixture(OUTCOME_NFA);
    set_nhs_number(&mut outcome, NHS_NUMBER);
    outcome["identifier"] = json!({ "system": EPISODE_SYSTEM, "value": episode });
    // A new encounter each round: the same one again would be the same event, and deduplicated.
    for entry in outcome["entry"].as_array_mut().unwrap() {
        if entry["resource"]["resourceType"] == "Encounter" {
            let identifiers = entry["resource"]["identifier"].as_array_mut().unwrap();
            identifiers.truncate(1);
            identifiers[0]["value"] = json!(format!("ENC-RETENTION-{round}"));
        }
    }
    area.accepted("northvale-mh", "application/fhir+json", serde_json::to_vec(&outcome).unwrap()).await.unwrap();
    area.drain("northvale-police", Duration::from_secs(2)).await.unwrap();
    let refused = String::from_utf8(fixture(POLICE_S136)).unwrap().replace(NHS_NUMBER, "9434765918");
    let id = format!("retention-{round}");
    area.publish_ingest("northvale-police", &id, "application/json", refused.as_bytes()).await.unwrap();
    // It is dead-lettered before the round is over (and expired only after).
    let deadline = Instant::now() + Duration::from_secs(30);
    let quoted = format!("\"{id}\"");
    while !area.logs().lines().any(|line| line.contains(&quoted) && line.contains("Dead-lettered.")) {
        assert!(Instant::now() < deadline, "{id} was not dead-lettered:\n{}", area.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn personal_data_and_dead_letters_go_on_schedule_and_the_store_stays_bounded() {
    let env = [
        ("CONCORDAT_RETENTION__EVENTS", "2s"),
        ("CONCORDAT_RETENTION__DELIVERIES", "2s"),
        ("CONCORDAT_RETENTION__EPISODES", "2s"),
        ("CONCORDAT_RETENTION__DEAD_LETTERS", "2s"),
        ("CONCORDAT_RETENTION__EVERY", "1s"),
    ];
    let mut area = Area::start_with(StoreKind::Sqlite, &env).await.unwrap();
    let mut after_each_round = Vec::new();
    for round in 0..3 {
        one_round(&mut area, round).await;
        // What the round left is there at first (or already purged, on a slow machine), then goes.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let personal = personal_rows(&area).await;
            let dead = area.queue_depths().unwrap().get("concordat.dead.ingest").copied().unwrap_or(0);
            if personal.iter().all(|(_, rows)| *rows == 0) && dead == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: still held after 60 s: {personal:?}, {dead} dead letters\n{}",
                area.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let outbox = area.query_texts("SELECT CAST(COUNT(*) AS TEXT) FROM outbox").await.unwrap()[0][0].clone();
        let payload_bytes =
            area.query_texts("SELECT CAST(COALESCE(SUM(LENGTH(body)), 0) AS TEXT) FROM event_payloads").await.unwrap()
                [0][0]
                .clone();
        after_each_round.push((outbox, payload_bytes));
    }
    // Three rounds of traffic, and the store holds no more personal data than after the first.
    assert_eq!(after_each_round, vec![("0".to_owned(), "0".to_owned()); 3]);

    // The events' metadata and every decision stay: the audit chain still verifies, and it recorded each
    // purge (by counts and cut-offs, nothing else).
    let verified = area.admin(Method::GET, "/v1/admin/audit/verify", Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(verified.json["verified"], true, "{}", verified.text);
    let purges = area.query_texts("SELECT record FROM audit_log WHERE kind = 'personal_data_purged'").await.unwrap();
    assert!(!purges.is_empty());
    assert!(purges.iter().all(|row| !row[0].contains(NHS_NUMBER) && row[0].contains("cutoffs")), "{purges:?}");
    let events = area.query_texts("SELECT CAST(COUNT(*) AS TEXT) FROM events").await.unwrap();
    assert!(events[0][0].parse::<u32>().unwrap() >= 6, "each event's metadata stays: {events:?}");

    // Operators see it in /metrics (counted once a round has finished, so wait for the last one).
    let counted = |metrics: &str, record: &str| -> f64 {
        let series = format!("concordat_retention_purged_total{{record=\"{record}\"}} ");
        metrics.lines().find_map(|line| line.strip_prefix(&series)).and_then(|n| n.parse().ok()).unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = area.admin(Method::GET, "/metrics", None).await.unwrap().text;
        let records = ["event_payload", "delivery", "subject_key", "dead_letter"];
        if records.iter().all(|record| counted(&metrics, record) >= 3.0) {
            break;
        }
        assert!(Instant::now() < deadline, "purges not counted three times:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // And how much waits where (read every 15 s): the router's queue is read, the dead letters are gone.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let metrics = area.admin(Method::GET, "/metrics", None).await.unwrap().text;
        if metrics.contains("concordat_queue_consumers{queue=\"concordat.router\"} 1")
            && metrics.contains("concordat_queue_messages{queue=\"concordat.dead.ingest\"} 0")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no queue depths in /metrics:\n{metrics}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
