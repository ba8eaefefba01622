//! FHIR delivery against a real RabbitMQ and a small `$process-message` server started by the test on
//! 127.0.0.1, which parses every Bundle it gets with `fhir-sdk` and insists it is a message Bundle.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use concordat_delivery::{AgencyDelivery, Channel, DeliveryConfig};
use concordat_episode::{AgencyId, AgencyKind, RenderContext, Timestamp};
use fhir_sdk::r4b::resources::Bundle;
use uuid::Uuid;

use common::{Bench, eventually};

const OUTAGE: &str = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"transient","diagnostics":"database unavailable"}]}"#;
const PROCESSED: &str = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"message processed"}]}"#;
const UNKNOWN: &str = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invariant","diagnostics":"Communication.subject: patient unknown to this trust"}]}"#;

#[derive(Clone)]
struct Script {
    unavailable: usize,
    then: (StatusCode, &'static str),
}

#[derive(Default)]
struct Seen {
    requests: usize,
    not_message_bundles: usize,
    wrong_paths: usize,
    /// Bundle ids accepted, in order.
    accepted: Vec<String>,
}

type Server = (Script, Arc<Mutex<Seen>>);

async fn process_message(
    State((script, seen)): State<Server>,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    let fhir = [("content-type", "application/fhir+json")];
    let mut seen = seen.lock().unwrap();
    seen.requests += 1;
    if uri.path() != "/R4/$process-message" {
        seen.wrong_paths += 1;
        return (StatusCode::NOT_FOUND, fhir, UNKNOWN);
    }
    let bundle = serde_json::from_slice::<Bundle>(&body);
    let Ok(bundle) = bundle
        .as_ref()
        .map_err(|_| ())
        .and_then(|bundle| (bundle.r#type.as_ref() == "message").then_some(bundle).ok_or(()))
    else {
        seen.not_message_bundles += 1;
        return (StatusCode::BAD_REQUEST, fhir, UNKNOWN);
    };
    if seen.requests <= script.unavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, fhir, OUTAGE);
    }
    if script.then.0.is_success() {
        let id = bundle.id.clone().unwrap_or_default();
        seen.accepted.push(id);
    }
    (script.then.0, fhir, script.then.1)
}

async fn server(script: Script) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = axum::Router::new().fallback(process_message).with_state((script, seen.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/R4", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

/// Message Bundles as the router renders them for the trust, each for its own decision.
fn bundles(count: u128) -> Vec<Vec<u8>> {
    let fixture = include_bytes!("../../../adapters/nhs-fhir/tests/fixtures/render/police-s136-detention.json");
    let view = concordat_episode::parse_event(fixture).unwrap();
    (0..count)
        .map(|n| {
            let cx = RenderContext {
                recipient: AgencyId::new("northvale-mh").unwrap(),
                recipient_kind: AgencyKind::Nhs,
                source_name: "Northvale Police".to_owned(),
                source_ods: None,
                recipient_ods: None,
                episode_id: None,
                episode_refs: Vec::new(),
                decision_id: Uuid::from_u128(n + 1),
                purpose: "Safe handover".to_owned(),
                lawful_basis: "Art. 6(1)(e)".to_owned(),
                sent_at: Timestamp::parse("2026-03-02T04:05:00Z").unwrap(),
            };
            concordat_nhs_fhir::render(&view, &cx).unwrap().body
        })
        .collect()
}

fn config(agency: &str, base: &str) -> DeliveryConfig {
    let fhir = AgencyDelivery { channel: Channel::Fhir, fhir_base: Some(base.to_owned()), ..AgencyDelivery::default() };
    DeliveryConfig {
        agencies: BTreeMap::from([(agency.to_owned(), fhir)]),
        timeout_ms: 2000,
        retry_initial_ms: 20,
        retry_max_ms: 200,
    }
}

fn bundle_id(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body).unwrap()["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_server_that_is_down_gets_every_message_bundle_once_when_it_recovers() -> Result<()> {
    let agency = "northvale-mh";
    let mut bench = Bench::new(agency).await?;
    let (base, seen) = server(Script { unavailable: 6, then: (StatusCode::OK, PROCESSED) }).await;
    let bodies = bundles(3);
    bench.deliver(agency, "application/fhir+json", &bodies).await?;
    bench.start(&config(agency, &base))?;

    eventually(Duration::from_secs(60), "every Bundle processed", || {
        let accepted = seen.lock().unwrap().accepted.len();
        async move { Ok(accepted >= 3) }
    })
    .await?;
    let inbox = bench.topology.inbox_queue(agency);
    eventually(Duration::from_secs(10), "the inbox emptied", || async { Ok(bench.ready(&inbox).await? == 0) }).await?;
    eventually(Duration::from_secs(10), "every push recorded", || async { Ok(bench.confirmations().await? == (3, 3)) })
        .await?;
    bench.stop().await?;
    {
        let seen = seen.lock().unwrap();
        assert_eq!((seen.wrong_paths, seen.not_message_bundles), (0, 0), "valid message Bundles to $process-message");
        assert!(seen.requests >= 6 + 3, "the outage spanned several attempts: {} requests", seen.requests);
        let expected: Vec<String> = bodies.iter().map(|body| bundle_id(body)).collect();
        assert_eq!(seen.accepted, expected, "each Bundle once, in order");
    }
    assert_eq!(bench.dead_letter(Duration::from_millis(200)).await?, None);
    bench.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bundle_is_dead_lettered_with_the_operation_outcomes_diagnostics() -> Result<()> {
    let agency = "northvale-mh";
    let mut bench = Bench::new(agency).await?;
    let (base, seen) = server(Script { unavailable: 0, then: (StatusCode::UNPROCESSABLE_ENTITY, UNKNOWN) }).await;
    let ids = bench.deliver(agency, "application/fhir+json", &bundles(1)).await?;
    bench.start(&config(agency, &base))?;
    let dead = bench.dead_letter(Duration::from_secs(30)).await?.expect("a dead letter");
    bench.stop().await?;
    assert_eq!(dead.0, ids[0]);
    assert_eq!(
        dead.1,
        "the fhir endpoint refused the delivery with HTTP 422: Communication.subject: patient unknown to this trust"
    );
    assert_eq!(seen.lock().unwrap().requests, 1, "a 422 is final");
    assert_eq!(bench.confirmations().await?, (0, 0));
    bench.finish().await
}
