//! HTTPS ingest against a real RabbitMQ: the gateway served by its listener with certificates made by the
//! test. Agencies authenticate with bearer tokens or with pinned client certificates; a certificate that is
//! not pinned, and plain HTTP, never reach the gateway.

#![allow(clippy::unwrap_used, reason = "in tests a failed unwrap is a failed test")]

mod common;

use common::pki::{Identity, Pki};
use common::{Harness, Serving, message_count, read, token, with_gateway_serving};
use concordat_episode::Sha256Hex;
use concordat_gateway::GatewayConfig;
use concordat_gateway::listener::TlsIdentity;
use serde_json::Value;

const S136: &str = "schemas/examples/police-incident/valid/s136-public-place-police-vehicle.json";

/// Pins `identity` for `agency`, keeping its tokens.
fn pin(config: &mut GatewayConfig, agency: &str, identity: &Identity) {
    let access = config.agencies.entry(concordat_episode::AgencyId::new(agency).unwrap()).or_default();
    access.client_cert_sha256.push(Sha256Hex::new(identity.sha256_hex()).unwrap());
}

/// Serves over TLS with the PKI's server certificate, asking for the gateway's pinned client certificates.
fn https(pki: &Pki) -> impl FnOnce(&concordat_gateway::Gateway) -> Serving + use<> {
    let (cert, key) = pki.server_files();
    move |gateway| {
        let identity = TlsIdentity::load(&cert, &key).unwrap();
        Serving { tls: Some(identity.acceptor(Some(&gateway.client_certificates())).unwrap()), ..Serving::default() }
    }
}

async fn post(
    harness: &Harness,
    client: &reqwest::Client,
    agency: &str,
    token: Option<String>,
) -> reqwest::Result<reqwest::Response> {
    let mut request = client
        .post(format!("{}/v1/agencies/{agency}/events", harness.base_url))
        .header("content-type", "application/json")
        .body(read(S136));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await
}

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agencies_post_over_https_with_a_token_or_a_pinned_certificate() {
    let pki = Pki::new();
    let police = pki.client("northvale-police");
    let stranger = Pki::self_signed("northvale-police");
    let police_pin = police.clone();
    let serving = https(&pki);
    with_gateway_serving(
        true,
        move |config| pin(config, "northvale-police", &police_pin),
        serving,
        |harness| async move {
            let anonymous = pki.https_client(None);
            let with_police_cert = pki.https_client(Some(&police));

            // A bearer token over HTTPS, as before.
            let response =
                post(&harness, &anonymous, "northvale-police", Some(token("northvale-police"))).await.unwrap();
            assert_eq!(response.status(), 202);
            let accepted: Value = response.json().await.unwrap();
            let per_post = accepted["count"].as_u64().unwrap();

            // The pinned certificate alone is the police's credential.
            let response = post(&harness, &with_police_cert, "northvale-police", None).await.unwrap();
            assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
            // With a token of the same agency as well, still the police.
            let response =
                post(&harness, &with_police_cert, "northvale-police", Some(token("northvale-police"))).await.unwrap();
            assert_eq!(response.status(), 202);
            let queued = message_count(&harness.bus, &harness.topology.router_queue()).await;
            assert_eq!(u64::from(queued), 3 * per_post, "three accepted posts");

            // The police's certificate is no good on another agency's path, nor beside another agency's token.
            let body = problem(post(&harness, &with_police_cert, "safe-haven", None).await.unwrap(), 403).await;
            assert_eq!(body["detail"], "the client certificate is not valid for this agency");
            let mixed = post(&harness, &with_police_cert, "northvale-police", Some(token("safe-haven"))).await.unwrap();
            let body = problem(mixed, 403).await;
            assert_eq!(body["detail"], "the client certificate and the bearer token belong to different agencies");
            // Without a certificate or a token, 401 as ever.
            problem(post(&harness, &anonymous, "northvale-police", None).await.unwrap(), 401).await;

            // A certificate that is not pinned (here: self-signed with the police's name) fails the handshake.
            let with_stranger = pki.https_client(Some(&stranger));
            let refused = post(&harness, &with_stranger, "northvale-police", None).await;
            assert!(refused.is_err(), "an unpinned certificate got an answer: {refused:?}");
            let refused = post(&harness, &with_stranger, "northvale-police", Some(token("northvale-police"))).await;
            assert!(refused.is_err(), "an unpinned certificate is refused even beside a valid token");

            // Plain HTTP to the TLS listener gets no HTTP answer.
            let plain_url = harness.base_url.replace("https://", "http://");
            let plain = reqwest::Client::new()
                .post(format!("{plain_url}/v1/agencies/northvale-police/events"))
                .bearer_auth(token("northvale-police"))
                .header("content-type", "application/json")
                .body(read(S136))
                .send()
                .await;
            assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

            let queued = message_count(&harness.bus, &harness.topology.router_queue()).await;
            assert_eq!(u64::from(queued), 3 * per_post, "no refused request queued anything");
        },
    )
    .await;
}

#[test]
fn bad_tls_files_are_refused_with_what_is_wrong() {
    let pki = Pki::new();
    let (cert, key) = pki.server_files();
    assert!(TlsIdentity::load(&cert, &key).is_ok());
    let missing = pki.dir.path().join("missing.pem");
    let error = TlsIdentity::load(&missing, &key).unwrap_err().to_string();
    assert!(error.starts_with(&format!("tls_cert {}: ", missing.display())), "{error}");
    let error = TlsIdentity::load(&cert, &missing).unwrap_err().to_string();
    assert!(error.starts_with(&format!("tls_key {}: ", missing.display())), "{error}");
    // A key file given as the certificate holds no certificate, and the reverse no key.
    let error = TlsIdentity::load(&key, &key).unwrap_err().to_string();
    assert!(error.contains("holds no PEM certificate"), "{error}");
    assert!(TlsIdentity::load(&cert, &cert).unwrap_err().to_string().starts_with("tls_key "));
    // Another certificate's key.
    let other = pki.client("another");
    let (_, other_key) = pki.write("other", &other.cert_pem, &other.key_pem);
    let error = TlsIdentity::load(&cert, &other_key).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "tls_key {} is not the private key of the certificate in tls_cert {}",
            other_key.display(),
            cert.display()
        )
    );
    // Only one of the two.
    assert_eq!(
        TlsIdentity::from_config(Some(&cert), None).unwrap_err().to_string(),
        "tls_cert and tls_key must be set together; only tls_cert is set"
    );
    assert!(TlsIdentity::from_config(None, Some(&key)).is_err());
    assert!(TlsIdentity::from_config(None, None).unwrap().is_none(), "neither: plain HTTP");
}
