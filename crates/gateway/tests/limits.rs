//! The abuse limits, against real servers: a per-agency rate limit on ingest (429 with `Retry-After`,
//! nothing queued past it, against a real RabbitMQ), and the listener's header-read timeout, idle timeout
//! and connection cap, over plain HTTP and HTTPS. The tests assert that the server closes or holds a
//! connection, never how long it took.

#![allow(clippy::unwrap_used, reason = "in tests a failed unwrap is a failed test")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use common::pki::Pki;
use common::{Serving, message_count, read, token, with_gateway, with_gateway_serving};
use concordat_gateway::listener::{self, Listener, ListenerConfig, TlsIdentity};
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How long a test waits for the server to act before failing: a bound on a hung test, not a measurement.
const PATIENCE: Duration = Duration::from_secs(20);
const S136: &str = "schemas/examples/police-incident/valid/s136-public-place-police-vehicle.json";

async fn post(base_url: &str, agency: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base_url}/v1/agencies/{agency}/events"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(read(S136))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_rate_an_agency_gets_429_with_retry_after_and_nothing_is_queued() {
    with_gateway(
        true,
        |config| {
            config.rate_limit_per_minute = 1;
            config.rate_limit_burst = 2;
        },
        |harness| async move {
            // Requests without valid credentials do not spend the agency's allowance.
            for _ in 0..3 {
                let response = post(&harness.base_url, "northvale-police", "not-the-police-token").await;
                assert_eq!(response.status(), 401);
            }
            let mut per_post = 0;
            for _ in 0..2 {
                let response = post(&harness.base_url, "northvale-police", &token("northvale-police")).await;
                assert_eq!(response.status(), 202, "within the burst");
                per_post = response.json::<Value>().await.unwrap()["count"].as_u64().unwrap();
            }
            let queued = message_count(&harness.bus, &harness.topology.router_queue()).await;
            assert_eq!(u64::from(queued), 2 * per_post);

            let refused = post(&harness.base_url, "northvale-police", &token("northvale-police")).await;
            assert_eq!(refused.status(), 429);
            assert_eq!(refused.headers()["content-type"], "application/problem+json");
            let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry_after), "Retry-After {retry_after} s at one request a minute");
            let body: Value = refused.json().await.unwrap();
            assert_eq!(body["type"], "urn:concordat:problem:too-many-requests");
            assert_eq!(body["status"], 429);
            assert_eq!(
                message_count(&harness.bus, &harness.topology.router_queue()).await,
                queued,
                "nothing past the limit was queued"
            );

            // Another agency has its own allowance.
            let response = reqwest::Client::new()
                .post(format!("{}/v1/agencies/safe-haven/events", harness.base_url))
                .bearer_auth(token("safe-haven"))
                .header("content-type", "application/json")
                .body(read("schemas/examples/vcs-contact/valid/safe-haven-bst-evening.json"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
        },
    )
    .await;
}

/// Reads until the server closes the connection; true if it did (end of stream or a reset) within
/// [`PATIENCE`], with anything it sent first.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin)) -> (bool, Vec<u8>) {
    let mut received = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received)).await {
        Ok(Ok(_)) => (true, received),
        Ok(Err(error)) => (
            matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::BrokenPipe
            ),
            received,
        ),
        Err(_elapsed) => (false, received),
    }
}

fn short_header_timeout() -> ListenerConfig {
    ListenerConfig { header_read_timeout_ms: 300, ..ListenerConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_or_half_a_header_is_closed() {
    let serving = |_: &concordat_gateway::Gateway| Serving { tls: None, limits: short_header_timeout() };
    with_gateway_serving(
        true,
        |_| {},
        serving,
        |harness| async move {
            let address = harness.base_url.trim_start_matches("http://").to_owned();
            let mut silent = TcpStream::connect(&address).await.unwrap();
            let (closed, received) = closed_by_server(&mut silent).await;
            assert!(closed, "a silent connection stayed open");
            assert!(received.is_empty(), "nothing is answered to nothing: {received:?}");

            let mut half = TcpStream::connect(&address).await.unwrap();
            half.write_all(b"POST /v1/agencies/northvale-police/events HTTP/1.1\r\nhost: test\r\ncontent-ty")
                .await
                .unwrap();
            let (closed, _) = closed_by_server(&mut half).await;
            assert!(closed, "a connection with half a header stayed open");

            // A complete request on a fresh connection is still served.
            let response = post(&harness.base_url, "northvale-police", &token("northvale-police")).await;
            assert_eq!(response.status(), 202);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_a_silent_connection_or_one_with_half_a_header_is_closed() {
    let pki = Pki::new();
    let (cert, key) = pki.server_files();
    let identity = TlsIdentity::load(&cert, &key).unwrap();
    let serving = move |_: &concordat_gateway::Gateway| Serving {
        tls: Some(identity.acceptor(None).unwrap()),
        limits: short_header_timeout(),
    };
    with_gateway_serving(
        true,
        |_| {},
        serving,
        |harness| async move {
            let address = harness.base_url.trim_start_matches("https://").to_owned();
            // No handshake at all.
            let mut silent = TcpStream::connect(&address).await.unwrap();
            assert!(closed_by_server(&mut silent).await.0, "a silent connection stayed open");

            // A handshake, then half a header.
            let mut roots = rustls::RootCertStore::empty();
            let ca = rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).unwrap();
            roots.add(ca).unwrap();
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
            let tcp = TcpStream::connect(&address).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            tls.write_all(b"POST /v1/agencies/northvale-police/events HTTP/1.1\r\nhost: te").await.unwrap();
            tls.flush().await.unwrap();
            assert!(closed_by_server(&mut tls).await.0, "a TLS connection with half a header stayed open");
        },
    )
    .await;
}

/// Serves `app` on a fresh port with `limits`, over plain HTTP; returns the address.
async fn serve_plain(app: Router, limits: ListenerConfig) -> String {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap().to_string();
    let listener = Listener { tcp, tls: None, limits, name: "test" };
    tokio::spawn(listener::serve(listener, app, CancellationToken::new()));
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_body_stalls_is_closed_when_idle() {
    // A route with no deadline of its own (as on the admin listener), reading the whole body.
    let app = Router::new()
        .route("/echo", axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }));
    let limits = ListenerConfig { header_read_timeout_ms: 60_000, idle_timeout_ms: 300, ..ListenerConfig::default() };
    let address = serve_plain(app, limits).await;

    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\nonly some").await.unwrap();
    let (closed, _) = closed_by_server(&mut stream).await;
    assert!(closed, "a connection whose body stalled stayed open");

    // One that keeps sending is served.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 4\r\nconnection: close\r\n\r\nfour")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\n4"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_new_connection_waits_until_one_closes() {
    let app = Router::new()
        .route("/echo", axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }));
    let limits = ListenerConfig { max_connections: 1, ..ListenerConfig::default() };
    let address = serve_plain(app, limits).await;

    let holder = TcpStream::connect(&address).await.unwrap();
    // Give the server the moment it needs to accept the first connection before the second arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = TcpStream::connect(&address).await.unwrap();
    waiting
        .write_all(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
        .await
        .unwrap();
    let mut answer = String::new();
    let early = tokio::time::timeout(Duration::from_secs(1), waiting.read_to_string(&mut answer)).await;
    assert!(early.is_err() && answer.is_empty(), "served beyond the cap: {answer}");

    drop(holder);
    tokio::time::timeout(PATIENCE, waiting.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
