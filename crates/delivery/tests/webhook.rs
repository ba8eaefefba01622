//! Webhook delivery against a real RabbitMQ and a real HTTP receiver started by the test on 127.0.0.1. The
//! receiver verifies every signature with its own few lines of Standard Webhooks (not the signer under
//! test), answers as its script says, and records what it accepted by `webhook-id`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use concordat_delivery::{AgencyDelivery, Channel, DeliveryConfig};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use common::{Bench, eventually};

/// A secret as an agency would generate it: `whsec_` + base64 of 32 random bytes.
fn secret() -> String {
    let bytes: Vec<u8> =
        uuid::Uuid::new_v4().into_bytes().into_iter().chain(uuid::Uuid::new_v4().into_bytes()).collect();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The receiver's own check of a Standard Webhooks signature.
fn verifies(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let (id, timestamp, signatures) = (text("webhook-id"), text("webhook-timestamp"), text("webhook-signature"));
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let fresh = timestamp.parse::<i64>().is_ok_and(|at| (chrono::Utc::now().timestamp() - at).abs() < 300);
    fresh && signatures.split(' ').any(|signature| signature == expected)
}

/// What the receiver answers: `unavailable` requests get 503 first, then every request gets `then`.
#[derive(Clone)]
struct Script {
    secret: String,
    unavailable: usize,
    then: (StatusCode, &'static str, &'static str),
}

#[derive(Default)]
struct Seen {
    requests: usize,
    bad_signatures: usize,
    /// Accepted `webhook-id`s, in the order accepted, with the `concordat-kind` header and the body.
    accepted: Vec<(String, String, Vec<u8>)>,
}

type Receiver = (Script, Arc<Mutex<Seen>>);

async fn receive(State((script, seen)): State<Receiver>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let mut seen = seen.lock().unwrap();
    seen.requests += 1;
    if !verifies(&script.secret, &headers, &body) {
        seen.bad_signatures += 1;
        return (StatusCode::UNAUTHORIZED, [("content-type", "text/plain")], "bad signature");
    }
    if seen.requests <= script.unavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "text/plain")], "maintenance");
    }
    let (status, content_type, body_text) = script.then;
    if status.is_success() {
        let id = headers["webhook-id"].to_str().unwrap().to_owned();
        let kind = headers.get("concordat-kind").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        seen.accepted.push((id, kind, body.to_vec()));
    }
    (status, [("content-type", content_type)], body_text)
}

/// Starts the receiver; returns its URL and what it saw.
async fn receiver(script: Script) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app =
        axum::Router::new().route("/hooks/concordat", axum::routing::post(receive)).with_state((script, seen.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/concordat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn config(agency: &str, url: &str, secret_file: std::path::PathBuf) -> DeliveryConfig {
    let webhook = AgencyDelivery {
        channel: Channel::Webhook,
        webhook_url: Some(url.to_owned()),
        webhook_secret_file: Some(secret_file),
        fhir_base: None,
    };
    DeliveryConfig {
        agencies: BTreeMap::from([(agency.to_owned(), webhook)]),
        timeout_ms: 2000,
        // Short waits, so that the receiver's outage spans several attempts in a short test.
        retry_initial_ms: 20,
        retry_max_ms: 200,
    }
}

fn bodies(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|n| format!(r#"{{"kind":"feedback.outcome","n":{n}}}"#).into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_every_delivery_once_in_order_when_it_recovers() -> Result<()> {
    let agency = "northvale-police";
    let mut bench = Bench::new(agency).await?;
    let secret = secret();
    let script = Script { secret: secret.clone(), unavailable: 8, then: (StatusCode::OK, "text/plain", "ok") };
    let (url, seen) = receiver(script).await;
    let ids = bench.deliver(agency, "application/json", &bodies(5)).await?;
    bench.start(&config(agency, &url, bench.secret_file(&secret)?))?;

    eventually(Duration::from_secs(60), "every delivery accepted", || {
        let accepted = seen.lock().unwrap().accepted.len();
        async move { Ok(accepted >= 5) }
    })
    .await?;
    let inbox = bench.topology.inbox_queue(agency);
    eventually(Duration::from_secs(10), "the inbox emptied", || async { Ok(bench.ready(&inbox).await? == 0) }).await?;
    eventually(Duration::from_secs(10), "every push recorded", || async { Ok(bench.confirmations().await? == (5, 5)) })
        .await?;
    bench.stop().await?;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.bad_signatures, 0, "every request carried a valid signature");
        assert!(seen.requests >= 8 + 5, "the outage spanned several attempts: {} requests", seen.requests);
        let accepted: Vec<&str> = seen.accepted.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(accepted, ids, "each delivery once, in the order published");
        assert!(seen.accepted.iter().all(|(_, kind, _)| kind == "feedback.outcome"), "metadata headers passed on");
        assert_eq!(seen.accepted[2].2, bodies(5)[2], "the body as the inbox held it");
    }
    assert_eq!(bench.dead_letter(Duration::from_millis(200)).await?, None, "nothing dead-lettered");
    bench.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_dead_lettered_with_the_receivers_reason_and_the_rest_go_on() -> Result<()> {
    let agency = "northvale-police";
    let mut bench = Bench::new(agency).await?;
    let secret = secret();
    let problem = r#"{"type":"about:blank","title":"Bad Request","detail":"unknown incident reference"}"#;
    let script = Script {
        secret: secret.clone(),
        unavailable: 0,
        then: (StatusCode::BAD_REQUEST, "application/problem+json", problem),
    };
    let (url, seen) = receiver(script).await;
    let ids = bench.deliver(agency, "application/json", &bodies(2)).await?;
    bench.start(&config(agency, &url, bench.secret_file(&secret)?))?;

    let mut dead = Vec::new();
    for _ in &ids {
        dead.push(bench.dead_letter(Duration::from_secs(30)).await?.expect("a dead letter"));
    }
    bench.stop().await?;
    assert_eq!(dead.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), ids);
    for (_, reason) in &dead {
        assert_eq!(reason, "the webhook endpoint refused the delivery with HTTP 400: unknown incident reference");
    }
    let (requests, bad_signatures) = {
        let seen = seen.lock().unwrap();
        (seen.requests, seen.bad_signatures)
    };
    assert_eq!((requests, bad_signatures), (2, 0), "a 400 is final: one request each");
    assert_eq!(bench.confirmations().await?, (0, 0), "nothing recorded as delivered");
    assert_eq!(bench.ready(&bench.topology.inbox_queue(agency)).await?, 0);
    bench.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_keeps_the_message_in_its_queue_across_a_restart() -> Result<()> {
    let agency = "northvale-police";
    let mut bench = Bench::new(agency).await?;
    let secret = secret();
    // Nothing listens on this port: every attempt fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}/hooks/concordat");
    let ids = bench.deliver(agency, "application/json", &bodies(2)).await?;
    bench.start(&config(agency, &url, bench.secret_file(&secret)?))?;
    let inbox = bench.topology.inbox_queue(agency);
    // The worker holds the first message and leaves the second waiting.
    eventually(Duration::from_secs(10), "the first message taken", || async { Ok(bench.ready(&inbox).await? == 1) })
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    bench.stop().await?;
    eventually(Duration::from_secs(10), "both messages back in the queue", || async {
        Ok(bench.ready(&inbox).await? == 2)
    })
    .await?;
    assert_eq!(bench.dead_letter(Duration::from_millis(200)).await?, None, "a connection failure is not final");
    assert_eq!(bench.confirmations().await?, (0, 0));
    assert_eq!(ids.len(), 2);
    bench.finish().await
}
