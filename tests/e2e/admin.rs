//! The admin API as an operator's tooling would call it: its own bearer token, an episode's timeline with
//! its decisions and no personal data, the dead letters listed and retried one by one, and the audit chain
//! verified, all against the running binary.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use concordat_e2e::fixtures::{NHS_NUMBER, POLICE_S136};
use concordat_e2e::{ADMIN_TOKEN, Area, StoreKind, find_identifier, fixture};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_shows_an_episode_verifies_the_chain_and_retries_a_dead_letter() {
    let mut area = Area::start(StoreKind::Sqlite).await.unwrap();

    // Without the admin token nothing is answered but a problem naming the scheme.
    for token in [None, Some("not-the-admin-token")] {
        let answer = area.admin(Method::GET, "/v1/admin/audit/verify", token).await.unwrap();
        assert_eq!(answer.status, 401, "{token:?}: {}", answer.text);
        assert!(answer.content_type.starts_with("application/problem+json"), "{}", answer.content_type);
    }

    // An s136 detention makes an episode; its timeline shows who was told what, and why.
    let police = fixture(POLICE_S136);
    area.accepted("northvale-police", "application/json", police.clone()).await.unwrap();
    let notification = area.next("northvale-mh").await.unwrap();
    let episode = find_identifier(&notification.json().unwrap(), "urn:concordat:episode").unwrap();
    let answer = area.admin(Method::GET, &format!("/v1/admin/episodes/{episode}"), Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    let timeline = &answer.json;
    assert_eq!(timeline["episode"]["id"], episode.as_str());
    assert_eq!(timeline["episode"]["originator"], "northvale-police");
    let events = timeline["events"].as_array().unwrap();
    let detention = events.iter().find(|event| event["kind"] == "police.s136_detention").unwrap();
    let decisions = detention["decisions"].as_array().unwrap();
    let to_trust = decisions.iter().find(|decision| decision["recipient"] == "northvale-mh").unwrap();
    assert_eq!(to_trust["verdict"], "permit", "{to_trust}");
    assert!(to_trust["fields_shared"].as_array().is_some_and(|fields| !fields.is_empty()), "{to_trust}");
    assert!(decisions.iter().any(|decision| decision["verdict"] == "deny"), "withheld recipients are listed too");
    assert!(detention["deliveries"].as_array().is_some_and(|deliveries| !deliveries.is_empty()));
    let police_text = String::from_utf8(police).unwrap();
    let notes: String = serde_json::from_str::<serde_json::Value>(&police_text).unwrap()["notes"]
        .as_str()
        .unwrap()
        .chars()
        .take(30)
        .collect();
    for personal in [NHS_NUMBER, "Testperson", notes.as_str()] {
        assert!(!answer.text.contains(personal), "the timeline shows `{personal}`");
    }
    let bad = area.admin(Method::GET, "/v1/admin/episodes/not-an-id", Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text);
    let path = "/v1/admin/episodes/00000000-0000-4000-8000-000000000000";
    let missing = area.admin(Method::GET, path, Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(missing.status, 404, "{}", missing.text);

    // The flows since the start show the police's detention reaching the trust, and what was withheld.
    let flows = area.admin(Method::GET, "/v1/admin/flows", Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(flows.status, 200, "{}", flows.text);
    let flows = flows.json["flows"].as_array().unwrap().clone();
    let police_to_trust = flows
        .iter()
        .find(|flow| flow["source"] == "northvale-police" && flow["recipient"] == "northvale-mh")
        .unwrap_or_else(|| panic!("no police to trust flow in {flows:?}"));
    assert!(police_to_trust["shared"].as_u64().unwrap() >= 1, "{police_to_trust}");
    assert!(flows.iter().any(|flow| flow["withheld"].as_u64().unwrap_or(0) > 0), "{flows:?}");
    let later = area.admin(Method::GET, "/v1/admin/flows?since=2999-01-01T00:00:00Z", Some(ADMIN_TOKEN)).await;
    assert_eq!(later.unwrap().json["flows"].as_array().map(Vec::len), Some(0));
    let bad_since = area.admin(Method::GET, "/v1/admin/flows?since=yesterday", Some(ADMIN_TOKEN)).await;
    assert_eq!(bad_since.unwrap().status, 400);

    // The decision for a canonical event, explained as the router would make it.
    let canonical: serde_json::Value =
        serde_json::from_slice(&fixture("schemas/examples/crisis-event/valid/police-s136-detention.json")).unwrap();
    let request = serde_json::json!({ "event": canonical, "to": "northvale-mh", "relations": ["responder"] });
    let explained = area.admin_json(Method::POST, "/v1/admin/policy/explain", &request).await.unwrap();
    assert_eq!(explained.status, 200, "{}", explained.text);
    assert_eq!(explained.json["verdict"], "permit", "{}", explained.text);
    assert!(explained.json["permitted_by"].as_array().is_some_and(|grounds| !grounds.is_empty()));
    assert!(explained.json["explanation"].as_str().unwrap().contains("PERMIT"), "{}", explained.text);
    assert!(!explained.text.contains("9990000018"), "the explanation names fields, not their values");
    let request = serde_json::json!({ "event": { "kind": "nonsense" }, "to": "northvale-mh" });
    let refused = area.admin_json(Method::POST, "/v1/admin/policy/explain", &request).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.text);

    // The chain verifies, and says how long it is.
    let verified = area.admin(Method::GET, "/v1/admin/audit/verify", Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.json["verified"], true, "{}", verified.text);
    assert!(verified.json["records"].as_u64().unwrap() > 0);

    // A payload the police adapter refuses (a wrong NHS number check digit), sent over AMQP, is a dead letter.
    let refused = String::from_utf8(fixture(POLICE_S136)).unwrap().replace(NHS_NUMBER, "9434765918");
    area.publish_ingest("northvale-police", "admin-e2e-1", "application/json", refused.as_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let answer = area.admin(Method::GET, "/v1/admin/dead-letters", Some(ADMIN_TOKEN)).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
        let letters = answer.json.as_array().cloned().unwrap_or_default();
        if !letters.is_empty() {
            assert!(!answer.text.contains("9434765918"), "a dead letter's body is never shown: {}", answer.text);
            break letters;
        }
        assert!(Instant::now() < deadline, "no dead letter appeared:\n{}", area.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(letters[0]["id"], "ingest:admin-e2e-1", "{letters:?}");
    let stage = area.admin(Method::GET, "/v1/admin/dead-letters?stage=router", Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(stage.json.as_array().map(Vec::len), Some(0), "{}", stage.text);
    let wrong_stage = area.admin(Method::GET, "/v1/admin/dead-letters?stage=nowhere", Some(ADMIN_TOKEN)).await;
    assert_eq!(wrong_stage.unwrap().status, 400);

    let path = "/v1/admin/dead-letters/ingest:no-such-message/retry";
    assert_eq!(area.admin(Method::POST, path, Some(ADMIN_TOKEN)).await.unwrap().status, 404);
    let path = "/v1/admin/dead-letters/not-a-dead-letter-id/retry";
    assert_eq!(area.admin(Method::POST, path, Some(ADMIN_TOKEN)).await.unwrap().status, 400);
    let path = "/v1/admin/dead-letters/ingest:admin-e2e-1/retry";
    let retried = area.admin(Method::POST, path, Some(ADMIN_TOKEN)).await.unwrap();
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(retried.json["retried"][0]["id"], "ingest:admin-e2e-1", "{}", retried.text);
    // The gateway reads it again and refuses it again: the retry went back through the pipeline.
    let deadline = Instant::now() + Duration::from_secs(30);
    while area.logs().lines().filter(|line| line.contains("admin-e2e-1") && line.contains("dead-lettered")).count() < 2
    {
        assert!(Instant::now() < deadline, "the retried payload was not read again:\n{}", area.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for personal in [NHS_NUMBER, "9434765918", "Testperson"] {
        assert!(!area.logs().contains(personal), "the logs show `{personal}`");
    }

    // What happened is in /metrics, in the Prometheus text format, with no token and no personal data.
    let metrics = area.admin(Method::GET, "/metrics", None).await.unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics.content_type.starts_with("text/plain; version=0.0.4"), "{}", metrics.content_type);
    let text = metrics.text;
    for line in [
        "concordat_events_ingested_total{agency=\"northvale-police\",kind=\"police.s136_detention\"} 1",
        "concordat_decisions_total{recipient=\"northvale-mh\",verdict=\"permit\"}",
        "concordat_decisions_total{recipient=\"safe-haven\",verdict=\"deny\"}",
        "concordat_dead_letters_total{stage=\"ingest\"}",
        "concordat_deliveries_sent_total{recipient=\"northvale-mh\"}",
        "# TYPE concordat_delivery_seconds histogram",
        "concordat_delivery_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(text.contains(line), "/metrics lacks `{line}`:\n{text}");
    }
    for personal in [NHS_NUMBER, "9434765918", "Testperson"] {
        assert!(!text.contains(personal), "/metrics shows `{personal}`");
    }
}
