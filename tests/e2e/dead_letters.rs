//! A payload the gateway refuses over AMQP is dead-lettered with its reason; `concordat dlq list` shows it
//! by its metadata alone, never its personal data, and `concordat dlq retry` sends it back through the
//! gateway (DESIGN.md §7, invariant 3).

#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::time::{Duration, Instant};

use concordat_e2e::fixtures::POLICE_S136;
use concordat_e2e::{Area, StoreKind, fixture};
use serde_json::Value;

const MESSAGE_ID: &str = "dlq-e2e-police-1";

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The JSON listing, once it holds `count` dead letters (within 30 s).
fn listed(area: &Area, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = area.cli(&["dlq", "list", "--format", "json"]).unwrap();
        assert!(output.status.success(), "dlq list failed: {}", String::from_utf8_lossy(&output.stderr));
        let letters: Vec<Value> = serde_json::from_str(&stdout(&output)).unwrap();
        if letters.len() == count {
            return letters;
        }
        assert!(Instant::now() < deadline, "expected {count} dead letters, listed {letters:?}:\n{}", area.logs());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn shows_no_personal_data(what: &str, text: &str) {
    for secret in ["Testperson", "Alex", "9434765918"] {
        assert!(!text.contains(secret), "{what} shows `{secret}`: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_payload_is_listed_and_retried_from_the_command_line() {
    let mut area = Area::start(StoreKind::Sqlite).await.unwrap();
    // A valid police incident but for one digit of the NHS number, so the adapter refuses it.
    let body = String::from_utf8(fixture(POLICE_S136)).unwrap().replace("9434765919", "9434765918");
    area.publish_ingest("northvale-police", MESSAGE_ID, "application/json", body.as_bytes()).await.unwrap();

    let letters = listed(&area, 1);
    let letter = &letters[0];
    assert_eq!(letter["id"], format!("ingest:{MESSAGE_ID}"), "{letter}");
    assert_eq!(letter["stage"], "ingest");
    assert_eq!(letter["message_id"], MESSAGE_ID);
    assert_eq!(letter["original_exchange"], "concordat.ingest");
    assert_eq!(letter["original_routing_key"], "northvale-police");
    assert_eq!(letter["content_type"], "application/json");
    assert_eq!(letter["body_bytes"], body.len());
    assert_eq!(letter["delivery_count"], 1);
    assert!(letter["dead_lettered_at"].is_string(), "{letter}");
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("refused the payload"), "{reason}");
    shows_no_personal_data("the JSON listing", &letter.to_string());
    let table = area.cli(&["dlq", "list", "--stage", "ingest"]).unwrap();
    assert!(table.status.success());
    assert!(stdout(&table).contains(MESSAGE_ID), "{}", stdout(&table));
    shows_no_personal_data("the table", &stdout(&table));
    assert_eq!(listed(&area, 1).len(), 1, "listing keeps the dead letter where it is");

    let missing = area.cli(&["dlq", "retry", "--id", "ingest:no-such-message"]).unwrap();
    assert_eq!(missing.status.code(), Some(1), "{}", String::from_utf8_lossy(&missing.stderr));

    let retried = area.cli(&["dlq", "retry", "--id", &format!("ingest:{MESSAGE_ID}")]).unwrap();
    assert_eq!(retried.status.code(), Some(0), "{}", String::from_utf8_lossy(&retried.stderr));
    assert!(stdout(&retried).contains(&format!("retried ingest:{MESSAGE_ID}")), "{}", stdout(&retried));
    shows_no_personal_data("the retry report", &stdout(&retried));
    shows_no_personal_data("the retry log", &String::from_utf8_lossy(&retried.stderr));

    // The gateway reads it again from `concordat.ingest`, refuses it again, and it is back in the
    // dead-letter queue: the retry went through the pipeline rather than around it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let refusals = area
            .logs()
            .lines()
            .filter(|line| line.contains("Ingest message dead-lettered.") && line.contains(MESSAGE_ID))
            .count();
        if refusals == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the retried payload was not read again:\n{}", area.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let letters = listed(&area, 1);
    assert_eq!(letters[0]["message_id"], MESSAGE_ID);
    shows_no_personal_data("the process's logs", &area.logs());
}
