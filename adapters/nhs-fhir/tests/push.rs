//! Push delivery against a local FHIR receiver on 127.0.0.1: the receiver parses every request body back with
//! `fhir-sdk` and answers as a FHIR server would, following a script (success, 5xx, 422 with an
//! OperationOutcome, a response too slow for the timeout).
// Helpers outside `#[test]` functions are test code too: a failed unwrap is a failed test or bench.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "push")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use concordat_episode::{AgencyId, AgencyKind, RenderContext, Rendered, Timestamp};
use concordat_nhs_fhir::push::{PushConfig, PushError, PushMode, push, to_transaction};
use concordat_nhs_fhir::render;
use fhir_sdk::r4b::resources::Bundle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// One scripted answer.
#[derive(Clone)]
enum Answer {
    Ok(u16),
    ServerError,
    Unprocessable,
    Slow(Duration),
    TooMany,
}

#[derive(Default)]
struct Seen {
    paths: Vec<String>,
    bundle_types: Vec<String>,
}

/// Starts the receiver; it answers requests in script order (the last answer repeats) and stops with the test.
async fn receiver(script: Vec<Answer>) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut index = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let answer = script.get(index).or(script.last()).cloned().unwrap();
            index += 1;
            let state = Arc::clone(&state);
            tokio::spawn(async move { serve(stream, answer, state).await });
        }
    });
    (base, seen)
}

async fn serve(mut stream: TcpStream, answer: Answer, seen: Arc<Mutex<Seen>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "client closed before sending a request");
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|value| value.trim().parse::<usize>().unwrap())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.unwrap();
        buffer.extend_from_slice(&chunk[..read]);
    }
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap().to_owned();
    assert!(head.to_ascii_lowercase().contains("content-type: application/fhir+json"));
    // Every request must be FHIR a server can read.
    let bundle: Bundle =
        serde_json::from_slice(&buffer[head_end..head_end + length]).expect("request body is a FHIR Bundle");
    {
        let mut seen = seen.lock().unwrap();
        seen.paths.push(path);
        seen.bundle_types.push(bundle.r#type.as_ref().to_owned());
    }
    let retry_after = if matches!(answer, Answer::TooMany) { "retry-after: 7\r\n" } else { "" };
    let (status, body) = match answer {
        Answer::Ok(status) => (
            status,
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"message processed"}]}"#,
        ),
        Answer::ServerError => (
            500,
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception","diagnostics":"database unavailable"}]}"#,
        ),
        Answer::Unprocessable => (
            422,
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invariant","diagnostics":"Communication.subject: patient unknown to this trust"}]}"#,
        ),
        Answer::TooMany => (
            429,
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"throttled","diagnostics":"slow down"}]}"#,
        ),
        Answer::Slow(delay) => {
            tokio::time::sleep(delay).await;
            (200, r#"{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}"#)
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/fhir+json\r\n{retry_after}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn rendered() -> Rendered {
    let view = concordat_episode::parse_event(include_bytes!("fixtures/render/police-s136-detention.json")).unwrap();
    let cx = RenderContext {
        recipient: AgencyId::new("northvale-mh").unwrap(),
        recipient_kind: AgencyKind::Nhs,
        source_name: "Northvale Police".to_owned(),
        source_ods: None,
        recipient_ods: None,
        episode_id: None,
        episode_refs: Vec::new(),
        decision_id: Uuid::from_u128(42),
        purpose: "Safe handover".to_owned(),
        lawful_basis: "Art. 6(1)(e)".to_owned(),
        sent_at: Timestamp::parse("2026-03-02T04:05:00Z").unwrap(),
    };
    render(&view, &cx).unwrap()
}

fn config(base: String, mode: PushMode) -> PushConfig {
    PushConfig { base_url: base, mode, timeout_ms: 200, max_attempts: 3, initial_backoff_ms: 10, max_backoff_ms: 40 }
}

#[tokio::test]
async fn process_message_is_accepted() {
    let (base, seen) = receiver(vec![Answer::Ok(200)]).await;
    let delivered = push(&reqwest::Client::new(), &config(base, PushMode::ProcessMessage), &rendered()).await.unwrap();
    assert_eq!((delivered.status, delivered.attempts), (200, 1));
    assert_eq!(delivered.response.unwrap()["resourceType"], "OperationOutcome");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.paths, ["/fhir/$process-message"]);
    assert_eq!(seen.bundle_types, ["message"]);
}

#[tokio::test]
async fn transaction_mode_posts_a_transaction_to_the_base() {
    let (base, seen) = receiver(vec![Answer::Ok(200)]).await;
    let delivered = push(&reqwest::Client::new(), &config(base, PushMode::Transaction), &rendered()).await.unwrap();
    assert_eq!(delivered.attempts, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.paths, ["/fhir"]);
    assert_eq!(seen.bundle_types, ["transaction"]);
}

#[tokio::test]
async fn server_errors_are_retried_until_accepted() {
    let (base, seen) = receiver(vec![Answer::ServerError, Answer::ServerError, Answer::Ok(201)]).await;
    let delivered = push(&reqwest::Client::new(), &config(base, PushMode::ProcessMessage), &rendered()).await.unwrap();
    assert_eq!((delivered.status, delivered.attempts), (201, 3));
    assert_eq!(seen.lock().unwrap().paths.len(), 3);
}

#[tokio::test]
async fn server_errors_exhaust_the_attempts() {
    let (base, seen) = receiver(vec![Answer::ServerError]).await;
    let error = push(&reqwest::Client::new(), &config(base, PushMode::ProcessMessage), &rendered()).await.unwrap_err();
    assert_eq!(error, PushError::Exhausted { attempts: 3, last: "HTTP 500".to_owned(), retry_after: None });
    assert_eq!(seen.lock().unwrap().paths.len(), 3);
}

#[tokio::test]
async fn too_many_requests_is_retried_and_passes_on_retry_after() {
    let (base, seen) = receiver(vec![Answer::TooMany]).await;
    let error = push(&reqwest::Client::new(), &config(base, PushMode::ProcessMessage), &rendered()).await.unwrap_err();
    let expected = PushError::Exhausted { attempts: 3, last: "HTTP 429".to_owned(), retry_after: Some("7".to_owned()) };
    assert_eq!(error, expected);
    assert_eq!(seen.lock().unwrap().paths.len(), 3, "a 429 is retried");
}

#[tokio::test]
async fn unprocessable_is_final_and_carries_the_outcome() {
    let (base, seen) = receiver(vec![Answer::Unprocessable, Answer::Ok(200)]).await;
    let error = push(&reqwest::Client::new(), &config(base, PushMode::ProcessMessage), &rendered()).await.unwrap_err();
    let PushError::Rejected { status, outcome } = &error else { panic!("{error}") };
    assert_eq!(*status, 422);
    assert_eq!(outcome.as_ref().unwrap()["issue"][0]["code"], "invariant");
    assert!(error.dead_letter_reason().contains("patient unknown to this trust"));
    assert_eq!(seen.lock().unwrap().paths.len(), 1, "a 4xx is not retried");
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let (base, seen) = receiver(vec![Answer::Slow(Duration::from_millis(800)), Answer::Ok(200)]).await;
    let delivered = push(&reqwest::Client::new(), &config(base, PushMode::ProcessMessage), &rendered()).await.unwrap();
    assert_eq!(delivered.attempts, 2);
    assert!(!seen.lock().unwrap().paths.is_empty());
}

#[test]
fn transactions_create_patient_and_organization_only_once() {
    let transaction: serde_json::Value = serde_json::from_slice(&to_transaction(&rendered().body).unwrap()).unwrap();
    let entries = transaction["entry"].as_array().unwrap();
    assert!(entries.iter().all(|entry| entry["resource"]["resourceType"] != "MessageHeader"));
    let condition = |kind: &str| {
        entries.iter().find(|entry| entry["resource"]["resourceType"] == kind).unwrap()["request"]["ifNoneExist"]
            .clone()
    };
    assert_eq!(condition("Patient"), "identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018");
    assert_eq!(condition("Organization"), "identifier=urn:concordat:agency|northvale-police");
    assert_eq!(to_transaction(b"[]"), Err(PushError::NotABundle));
}
