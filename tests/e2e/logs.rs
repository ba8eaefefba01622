//! Logs: `--log-format json` (here by `CONCORDAT_LOG_FORMAT`) writes one JSON object per line; every line
//! about a message names it by event id or message id; and no line holds personal data, however the
//! payloads that carry it are accepted, refused or dead-lettered.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use concordat_e2e::fixtures::{EPISODE_SYSTEM, NHS_NUMBER, OUTCOME_NFA, POLICE_S136};
use concordat_e2e::{Area, StoreKind, find_identifier, json_fixture, set_nhs_number};
use serde_json::{Value, json};

const WRONG_CHECK_DIGIT: &str = "9434765918";
const GIVEN: &str = "Zebedee";
const FAMILY: &str = "Quarrington-Okafor";
const BIRTH_DATE: &str = "1961-02-03";
const NOTES: &str = "Neighbour Mrs Philippa Fairweather-Nkemelu at 14 Larch Close says he stopped his lithium";

/// The s136 incident, full of a person's details.
fn incident(number: &str) -> Value {
    let mut police = json_fixture(POLICE_S136);
    police["incident_number"] = json!(number);
    police["person"]["name"] = json!({ "given": GIVEN, "family": FAMILY });
    police["person"]["birth_date"] = json!(BIRTH_DATE);
    police["notes"] = json!(NOTES);
    police
}

/// The ids a log line carries, at its top level or in its spans.
fn ids(line: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut look = |object: &Value| {
        for key in ["event_id", "event_ids", "message_id"] {
            if let Some(id) = object.get(key).and_then(Value::as_str).filter(|id| !id.is_empty()) {
                found.push(id.to_owned());
            }
        }
    };
    look(line);
    if let Some(span) = line.get("span") {
        look(span);
    }
    for span in line.get("spans").and_then(Value::as_array).into_iter().flatten() {
        look(span);
    }
    found
}

#[tokio::test]
async fn json_logs_name_every_message_and_never_hold_personal_data() {
    let env = [("CONCORDAT_LOG_FORMAT", "json"), ("CONCORDAT_LOG", "info,concordat=debug")];
    let mut area = Area::start_with(StoreKind::Sqlite, &env).await.unwrap();

    // Accepted: the detention, then the trust's outcome (a FHIR Bundle with the patient's name).
    let accepted = area
        .accepted("northvale-police", "application/json", serde_json::to_vec(&incident("NV-LOGS-1")).unwrap())
        .await
        .unwrap();
    let notification = area.next("northvale-mh").await.unwrap();
    let episode = find_identifier(&notification.json().unwrap(), EPISODE_SYSTEM).unwrap();
    let mut outcome = json_fixture(OUTCOME_NFA);
    set_nhs_number(&mut outcome, NHS_NUMBER);
    outcome["identifier"] = json!({ "system": EPISODE_SYSTEM, "value": episode });
    let outcome_ids =
        area.accepted("northvale-mh", "application/fhir+json", serde_json::to_vec(&outcome).unwrap()).await.unwrap();
    area.drain("northvale-police", Duration::from_secs(2)).await.unwrap();

    // Refused over HTTP, each time for the value that holds personal data.
    let mut wrong_number = incident("NV-LOGS-2");
    wrong_number["person"]["nhs_number"] = json!(WRONG_CHECK_DIGIT);
    let mut name_as_date = incident("NV-LOGS-3");
    name_as_date["person"]["birth_date"] = json!(format!("{GIVEN} {FAMILY}"));
    let mut name_as_number = incident("NV-LOGS-4");
    name_as_number["person"]["nhs_number"] = json!(FAMILY);
    for refused in [wrong_number.clone(), name_as_date, name_as_number] {
        let answer =
            area.post("northvale-police", "application/json", serde_json::to_vec(&refused).unwrap()).await.unwrap();
        assert!((400..500).contains(&answer.status), "{} {}", answer.status, answer.text);
    }
    let truncated = format!("{{\"person\": {{\"name\": {{\"given\": \"{GIVEN}\", \"family\": \"{FAMILY}");
    let answer = area.post("northvale-police", "application/json", truncated).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text);

    // Refused over AMQP: a dead letter, whose reason is logged.
    let body = serde_json::to_vec(&wrong_number).unwrap();
    area.publish_ingest("northvale-police", "logs-e2e-1", "application/json", &body).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !area.logs().contains("logs-e2e-1") {
        assert!(Instant::now() < deadline, "the AMQP refusal was not logged:\n{}", area.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let logs = area.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}")))
        .collect();
    assert!(lines.len() > 10, "{logs}");
    for line in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(line.get(key).is_some(), "a line without `{key}`: {line}");
        }
    }

    // No personal data, in any form the inputs gave it.
    for secret in [NHS_NUMBER, WRONG_CHECK_DIGIT, GIVEN, FAMILY, BIRTH_DATE, "Fairweather", "Larch Close", "lithium"] {
        assert!(!logs.contains(secret), "the logs hold `{secret}`:\n{logs}");
    }
    for entry in outcome["entry"].as_array().unwrap() {
        if entry["resource"]["resourceType"] == "Patient" {
            for name in entry["resource"]["name"][0]["given"].as_array().unwrap() {
                assert!(!logs.contains(name.as_str().unwrap()), "the logs hold the patient's name:\n{logs}");
            }
            let family = entry["resource"]["name"][0]["family"].as_str().unwrap();
            assert!(!logs.contains(family), "the logs hold the patient's family name:\n{logs}");
        }
    }

    // Every line about a message names it: what the gateway accepted and the router routed, by event id;
    // what was dead-lettered, by message id.
    let about_messages = [
        "Events accepted.",
        "Events accepted from AMQP.",
        "Routed.",
        "Already routed; acking the redelivery.",
        "Dead-lettering the event.",
        "Ingest message dead-lettered.",
    ];
    let mut seen = 0;
    for line in &lines {
        let message = line["message"].as_str().unwrap_or_default();
        if about_messages.contains(&message) {
            seen += 1;
            assert!(!ids(line).is_empty(), "a line about a message names none: {line}");
        }
    }
    assert!(seen >= 5, "the accepted, routed and dead-lettered messages were logged: {logs}");
    for id in accepted.iter().chain(&outcome_ids) {
        let routed = lines.iter().any(|line| line["message"] == "Routed." && ids(line).iter().any(|found| found == id));
        assert!(routed, "no `Routed.` line names event {id}:\n{logs}");
        let taken = lines.iter().any(|line| {
            line["message"] == "Events accepted." && ids(line).iter().any(|found| found.split(',').any(|one| one == id))
        });
        assert!(taken, "no `Events accepted.` line names event {id}:\n{logs}");
    }
    let dead = lines.iter().find(|line| line["message"] == "Ingest message dead-lettered.").expect("logged");
    assert!(ids(dead).contains(&"logs-e2e-1".to_owned()), "{dead}");
}
