//! HTTP ingest against a real RabbitMQ, over real HTTP: the sample area's configuration and development
//! tokens, a gateway per test on 127.0.0.1 with its topology under a unique prefix.
//!
//! Accepted payloads must reach `concordat.router` with the contract's headers; every refusal must be a
//! problem (or an `OperationOutcome` for FHIR clients) with its status and type, and must queue nothing.

#![allow(clippy::unwrap_used, reason = "in tests a failed unwrap is a failed test")]

mod common;

use std::time::Duration;

use common::{Harness, message_count, read, take, token, with_gateway};
use concordat_bus::TraceParent;
use concordat_episode::{CONTENT_TYPE, parse_event};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SOON: Duration = Duration::from_secs(10);
const LIMIT: usize = 64 * 1024;
const S136: &str = "schemas/examples/police-incident/valid/s136-public-place-police-vehicle.json";

fn url(harness: &Harness, agency: &str) -> String {
    format!("{}/v1/agencies/{agency}/events", harness.base_url)
}

/// Posts `body` as `agency` with its development token.
async fn post(harness: &Harness, agency: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(url(harness, agency))
        .bearer_auth(token(agency))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the gateway answers")
}

/// Posts, expects `202`, and returns the accepted ids after checking the body's shape.
async fn accepted(harness: &Harness, agency: &str, content_type: &str, body: Vec<u8>) -> Vec<String> {
    let response = post(harness, agency, content_type, body).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("a JSON body");
    let ids: Vec<String> =
        body["accepted"].as_array().expect("accepted ids").iter().map(|id| id.as_str().unwrap().to_owned()).collect();
    assert_eq!(body["count"], ids.len());
    assert!(!ids.is_empty());
    assert!(body["warnings"].is_array(), "a 202 always lists what was left out: {body}");
    ids
}

/// A police incident is accepted, and its events are on the router queue with the contract's routing key,
/// properties and headers, continuing the caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_police_incident_is_published_with_its_headers() {
    with_gateway(
        true,
        |_| {},
        |harness| async move {
            let parent = TraceParent::new_root();
            let response = reqwest::Client::new()
                .post(url(&harness, "northvale-police"))
                .bearer_auth(token("northvale-police"))
                .header("content-type", "application/json; charset=utf-8")
                .header("traceparent", parent.to_string())
                .body(read(S136))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
            let body: Value = response.json().await.unwrap();
            let ids: Vec<&str> = body["accepted"].as_array().unwrap().iter().map(|id| id.as_str().unwrap()).collect();
            assert_eq!(body["count"], ids.len());
            assert!(ids.len() >= 2, "an s136 with conveyance yields several events: {body}");

            let queued = take(&harness.bus, &harness.topology.router_queue(), ids.len(), SOON).await;
            assert_eq!(queued.len(), ids.len(), "every accepted event is queued");
            assert_eq!(message_count(&harness.bus, &harness.topology.router_queue()).await, 0, "and nothing else");
            for (message, id) in queued.iter().zip(&ids) {
                let event = parse_event(&message.body).expect("a valid canonical event");
                assert_eq!(event.event_id.to_string(), *id, "queued in the order accepted");
                assert_eq!(message.message_id().as_deref(), Some(*id));
                assert_eq!(message.content_type().as_deref(), Some(CONTENT_TYPE));
                assert_eq!(message.routing_key, format!("police.northvale-police.{}", event.kind));
                assert_eq!(message.header("concordat-kind"), Some(event.kind.to_string()));
                assert_eq!(message.header("cloudEvents:specversion").as_deref(), Some("1.0"));
                assert_eq!(message.header("cloudEvents:id").as_deref(), Some(*id));
                assert_eq!(
                    message.header("cloudEvents:source").as_deref(),
                    Some("urn:concordat:agency:northvale-police")
                );
                assert_eq!(message.header("cloudEvents:type"), Some(event.kind.to_string()));
                assert_eq!(message.header("cloudEvents:time"), Some(event.occurred_at.to_rfc3339()));
                assert_eq!(message.header("concordat-episode"), None, "the router assigns episodes");
                let traceparent = TraceParent::parse(&message.header("traceparent").unwrap()).unwrap();
                assert_eq!(traceparent.trace_id(), parent.trace_id(), "the caller's trace continues");
                assert_ne!(traceparent.span_id(), parent.span_id());
                assert_eq!(event.provenance.received_at.to_utc().timestamp_subsec_nanos() % 1_000_000, 0);
            }
        },
    )
    .await;
}

/// The same payload posted twice gets the same event ids; deduplication is the router's job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmission_gets_the_same_ids() {
    with_gateway(
        true,
        |_| {},
        |harness| async move {
            let first = accepted(&harness, "northvale-police", "application/json", read(S136)).await;
            let second = accepted(&harness, "northvale-police", "application/json", read(S136)).await;
            assert_eq!(first, second);
            assert_eq!(message_count(&harness.bus, &harness.topology.router_queue()).await as usize, first.len() * 2);
        },
    )
    .await;
}

/// Each kind of sender gets through in its own format: FHIR from the trust, CSV from the helpline, JSON from
/// the Safe Haven and from British Transport Police.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_is_accepted_from_its_agency() {
    with_gateway(
        true,
        |_| {},
        |harness| async move {
            let cases = [
                (
                    "northvale-mh",
                    "application/fhir+json",
                    "adapters/nhs-fhir/tests/fixtures/valid/outcome-admitted-formal-s2.json",
                ),
                ("listening-line", "text/csv", "schemas/examples/vcs-contact/valid/listening-line-week.csv"),
                ("safe-haven", "application/json", "schemas/examples/vcs-contact/valid/safe-haven-batch.json"),
                (
                    "transport-police",
                    "application/json",
                    "schemas/examples/police-incident/valid/btp-s136-railway-station.json",
                ),
            ];
            let mut total = 0;
            for (agency, content_type, path) in cases {
                let ids = accepted(&harness, agency, content_type, read(path)).await;
                total += ids.len();
            }
            let queued = take(&harness.bus, &harness.topology.router_queue(), total, SOON).await;
            assert_eq!(queued.len(), total);
            assert_eq!(message_count(&harness.bus, &harness.topology.router_queue()).await, 0);
            for message in &queued {
                let event = parse_event(&message.body).expect("a valid canonical event");
                assert_eq!(message.routing_key, event.routing_key());
            }
        },
    )
    .await;
}

/// A trust's whole referral message is read for its crisis content: the referral is queued, and every entry
/// that travels beside it (vitals, an allergy, medications, a questionnaire, the context Encounter) is named in
/// the `202` body's warnings, by pointer, so the sender learns what was not shared. A message with no crisis
/// care in it is refused, and nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nhs_message_is_read_for_its_crisis_content_and_the_rest_is_listed() {
    with_gateway(
        true,
        |_| {},
        |harness| async move {
            let path = "adapters/nhs-fhir/tests/fixtures/valid/referral-message-with-context-entries.json";
            let response = post(&harness, "northvale-mh", "application/fhir+json", read(path)).await;
            assert_eq!(response.status(), 202);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["count"], 1, "only the referral is a crisis event: {body}");
            let warnings = body["warnings"].as_array().expect("a warnings array");
            let pointers: Vec<&str> = warnings.iter().map(|warning| warning["pointer"].as_str().unwrap()).collect();
            for skipped in ["/entry/5/resource", "/entry/7/resource/code", "/entry/9/resource", "/entry/11/resource"] {
                assert!(pointers.contains(&skipped), "{skipped} is named: {pointers:?}");
            }
            assert!(warnings.iter().all(|warning| warning["detail"].as_str().is_some_and(|d| d.ends_with("skipped"))));
            let queued = take(&harness.bus, &harness.topology.router_queue(), 1, SOON).await;
            assert_eq!(parse_event(&queued[0].body).unwrap().kind.as_str(), "nhs.referral");

            let maternity = "adapters/nhs-fhir/tests/fixtures/invalid/not-crisis-maternity-short-stay.json";
            let refused = post(&harness, "northvale-mh", "application/json", read(maternity)).await;
            assert_eq!(refused.status(), 422);
            let problem: Value = refused.json().await.unwrap();
            assert!(problem.to_string().contains("is not crisis care"), "{problem}");
            assert_eq!(message_count(&harness.bus, &harness.topology.router_queue()).await, 0, "nothing queued");
        },
    )
    .await;
}

/// How a refused request is sent.
struct Refused {
    name: &'static str,
    method: &'static str,
    path: String,
    authorization: Option<String>,
    content_type: Option<&'static str>,
    accept: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    problem: &'static str,
}

fn refused(name: &'static str, agency: &str, status: u16, problem: &'static str) -> Refused {
    Refused {
        name,
        method: "POST",
        path: format!("/v1/agencies/{agency}/events"),
        authorization: Some(format!("Bearer {}", token("northvale-police"))),
        content_type: Some("application/json"),
        accept: None,
        body: read(S136),
        status,
        problem,
    }
}

/// Sends a request that must be refused, checks the status and the problem (or the `OperationOutcome` when
/// the request is a FHIR client's), and that nothing reached the router queue. Returns the body.
async fn check(harness: &Harness, case: Refused) -> (reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
    let mut request = client.request(method, format!("{}{}", harness.base_url, case.path)).body(case.body);
    if let Some(authorization) = &case.authorization {
        request = request.header("authorization", authorization);
    }
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(accept) = case.accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("the gateway answers");
    let name = case.name;
    assert_eq!(response.status().as_u16(), case.status, "{name}");
    let headers = response.headers().clone();
    let fhir = case.content_type == Some("application/fhir+json") || case.accept == Some("application/fhir+json");
    let expected_type = if fhir { "application/fhir+json" } else { "application/problem+json" };
    assert_eq!(headers["content-type"], expected_type, "{name}");
    let body: Value = response.json().await.unwrap_or_else(|error| panic!("{name}: body is not JSON: {error}"));
    if fhir {
        assert_eq!(body["resourceType"], "OperationOutcome", "{name}: {body}");
    } else {
        assert_eq!(body["type"], format!("urn:concordat:problem:{}", case.problem), "{name}: {body}");
        assert_eq!(body["status"], case.status, "{name}");
        assert!(body["title"].is_string() && body["detail"].is_string(), "{name}: {body}");
    }
    if case.status == 401 {
        assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer realm=\"concordat\""), "{name}");
    }
    // A refusal reveals nothing of the payload: the subject's details never come back.
    let text = body.to_string();
    for secret in ["Testperson", "9434765918", "9434765919", "Kingsway"] {
        assert!(!text.contains(secret), "{name}: the answer quotes the payload: {text}");
    }
    assert_eq!(message_count(&harness.bus, &harness.topology.router_queue()).await, 0, "{name}: something was queued");
    (headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_problems_and_queue_nothing() {
    // A small limit, so that the oversize body fits in the socket buffers and the client reads the 413
    // rather than a reset while still writing.
    with_gateway(
        true,
        |config| config.body_limit_bytes = LIMIT,
        |harness| async move {
            // Authentication comes first: without a valid token nobody learns which agencies exist.
            let (headers, _) = check(
                &harness,
                Refused { authorization: None, ..refused("no token", "northvale-police", 401, "unauthorized") },
            )
            .await;
            assert_eq!(headers["www-authenticate"], "Bearer realm=\"concordat\"");
            let (headers, _) = check(
                &harness,
                Refused {
                    authorization: Some("Basic bm9ydGh2YWxlOnBvbGljZQ==".to_owned()),
                    ..refused("not bearer", "northvale-police", 401, "unauthorized")
                },
            )
            .await;
            assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_request"));
            let (headers, _) = check(
                &harness,
                Refused {
                    authorization: Some("Bearer dev_not-a-token".to_owned()),
                    ..refused("wrong token", "northvale-police", 401, "unauthorized")
                },
            )
            .await;
            assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
            check(
                &harness,
                Refused {
                    authorization: None,
                    ..refused("unknown agency, no token", "northvale-fire", 401, "unauthorized")
                },
            )
            .await;

            // Then the path: a valid token is good for its own agency only.
            check(
                &harness,
                Refused {
                    authorization: Some(format!("Bearer {}", token("safe-haven"))),
                    ..refused("another agency's token", "northvale-police", 403, "forbidden")
                },
            )
            .await;
            check(&harness, refused("unknown agency", "northvale-fire", 404, "unknown-agency")).await;
            check(&harness, refused("not an agency id", "Northvale%20Police", 404, "unknown-agency")).await;

            // Then the body.
            let (_, body) = check(
                &harness,
                Refused {
                    body: b"{\"format\": \"police-incident.v1\",".to_vec(),
                    ..refused("malformed JSON", "northvale-police", 400, "malformed-payload")
                },
            )
            .await;
            assert!(body["line"].is_number() && body["column"].is_number(), "{body}");
            let (_, body) = check(
                &harness,
                Refused {
                    body: read("schemas/examples/police-incident/invalid/nhs-number-bad-check-digit.json"),
                    ..refused("invalid NHS number", "northvale-police", 422, "invalid-payload")
                },
            )
            .await;
            let errors = body["errors"].as_array().expect("an errors member");
            assert!(errors.iter().any(|error| error["pointer"] == "/person/nhs_number"), "{body}");
            assert!(errors.iter().all(|error| error["detail"].is_string()), "{body}");
            let (_, body) = check(
                &harness,
                Refused {
                    authorization: Some(format!("Bearer {}", token("safe-haven"))),
                    content_type: Some("text/csv"),
                    body: read("schemas/examples/vcs-contact/invalid/nhs-number-fails-check-digit.csv"),
                    ..refused("invalid CSV cell", "safe-haven", 422, "invalid-payload")
                },
            )
            .await;
            assert_eq!(body["errors"][0]["row"], 3, "{body}");
            assert_eq!(body["errors"][0]["column"], "nhs_number", "{body}");
            let (headers, _) = check(
                &harness,
                Refused {
                    body: vec![b' '; LIMIT + 1],
                    ..refused("oversize body", "northvale-police", 413, "payload-too-large")
                },
            )
            .await;
            // The rest of the body is never read, so the connection cannot carry another request: the
            // client is told, rather than finding out when its next request on it fails.
            assert_eq!(headers["connection"], "close");
            let (headers, body) = check(
                &harness,
                Refused {
                    content_type: Some("text/plain"),
                    ..refused("wrong media type", "northvale-police", 415, "unsupported-media-type")
                },
            )
            .await;
            assert_eq!(body["accepted"], serde_json::json!(["application/json"]));
            assert_eq!(headers["accept-post"], "application/json");
            check(
                &harness,
                Refused {
                    content_type: None,
                    ..refused("no media type", "northvale-police", 415, "unsupported-media-type")
                },
            )
            .await;

            // axum's own rejections are problems too.
            check(
                &harness,
                Refused {
                    method: "GET",
                    body: Vec::new(),
                    ..refused("wrong method", "northvale-police", 405, "method-not-allowed")
                },
            )
            .await;
            check(
                &harness,
                Refused {
                    path: "/v1/events".to_owned(),
                    ..refused("no such route", "northvale-police", 404, "not-found")
                },
            )
            .await;
        },
    )
    .await;
}

/// A FHIR client gets `OperationOutcome`s, with the same statuses, for adapter refusals and others alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_clients_get_operation_outcomes() {
    with_gateway(
        true,
        |_| {},
        |harness| async move {
            let trust = |name, status, problem| Refused {
                authorization: Some(format!("Bearer {}", token("northvale-mh"))),
                content_type: Some("application/fhir+json"),
                body: read("adapters/nhs-fhir/tests/fixtures/invalid/invalid-nhs-number.json"),
                ..refused(name, "northvale-mh", status, problem)
            };
            let (_, outcome) = check(&harness, trust("invalid FHIR", 422, "invalid-payload")).await;
            let issues = outcome["issue"].as_array().unwrap();
            assert!(issues.iter().any(|issue| issue["expression"].to_string().contains("identifier")), "{outcome}");
            check(&harness, Refused { body: b"{".to_vec(), ..trust("malformed FHIR", 400, "malformed-payload") }).await;
            check(&harness, Refused { authorization: None, ..trust("FHIR without token", 401, "unauthorized") }).await;
            check(
                &harness,
                Refused {
                    content_type: Some("text/csv"),
                    accept: Some("application/fhir+json"),
                    ..trust("CSV to FHIR", 415, "unsupported-media-type")
                },
            )
            .await;
        },
    )
    .await;
}

/// When RabbitMQ cannot take the events (here: the exchange does not exist) the caller gets `503` with
/// `Retry-After`, and no `202`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_publish_is_503_with_retry_after() {
    with_gateway(
        false,
        |_| {},
        |harness| async move {
            let response = post(&harness, "northvale-police", "application/json", read(S136)).await;
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "5");
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["type"], "urn:concordat:problem:broker-unavailable");
            assert!(!body["detail"].as_str().unwrap().contains("t-"), "a 5xx detail names no internals: {body}");
        },
    )
    .await;
}

/// A request that does not finish within `request_timeout_ms` (here: a body that never completes) gets a
/// `503` problem with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_times_out_with_a_problem() {
    with_gateway(
        true,
        |config| config.request_timeout_ms = 300,
        |harness| async move {
            let address = harness.base_url.trim_start_matches("http://").to_owned();
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            let head = format!(
                "POST /v1/agencies/northvale-police/events HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{{\"format\"",
                token("northvale-police")
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut answer = String::new();
            tokio::time::timeout(SOON, stream.read_to_string(&mut answer)).await.expect("answered in time").unwrap();
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            let lower = answer.to_ascii_lowercase();
            assert!(lower.contains("retry-after: 5"), "{answer}");
            assert!(answer.contains("urn:concordat:problem:timeout"), "{answer}");
            assert_eq!(message_count(&harness.bus, &harness.topology.router_queue()).await, 0);
        },
    )
    .await;
}
