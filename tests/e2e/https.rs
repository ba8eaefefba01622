//! The s136 story over HTTPS, as an area would run it: `tls_cert` and `tls_key` on both listeners, the
//! police posting with their bearer token and the trust with its pinned client certificate alone. A
//! certificate that is not pinned, and plain HTTP, get nowhere. Certificates are made by the test.

#![allow(clippy::unwrap_used)]

use concordat_e2e::fixtures::{EPISODE_SYSTEM, FHIR, NHS_NUMBER, OUTCOME_NFA, POLICE_S136};
use concordat_e2e::pki::Pki;
use concordat_e2e::{Area, Options, StoreKind, find_identifier, json_fixture, sample_config_with, set_nhs_number};
use serde_json::json;

const CRISIS_PLAN: &str = "adapters/nhs-fhir/tests/fixtures/valid/crisis-plan-with-consent-given.json";

/// The trust's assessment outcome against the episode: no further action.
fn assessment_outcome(episode_id: &str) -> Vec<u8> {
    let mut bundle = json_fixture(OUTCOME_NFA);
    set_nhs_number(&mut bundle, NHS_NUMBER);
    bundle["identifier"] = json!({ "system": EPISODE_SYSTEM, "value": episode_id });
    for entry in bundle["entry"].as_array_mut().unwrap() {
        if entry["resource"]["resourceType"] == "Encounter" {
            entry["resource"]["identifier"].as_array_mut().unwrap().truncate(1);
        }
    }
    serde_json::to_vec(&bundle).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s136_story_over_https_with_a_token_and_a_client_certificate() {
    let pki = Pki::new();
    let trust = pki.client("northvale-mh");
    let (cert, key) = pki.server_files();
    let pin = format!("client_cert_sha256 = [\"{}\"]", trust.sha256_hex());
    let config = sample_config_with(&[("northvale-mh", &pin)]).unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let env = [("CONCORDAT_TLS_CERT", cert.as_str()), ("CONCORDAT_TLS_KEY", key.as_str())];
    let options = Options { env: &env, config: Some(config), https_ca_pem: Some(pki.ca_pem()) };
    // The harness waits for /readyz over HTTPS: the admin listener serves TLS too.
    let mut area = Area::start_with_options(StoreKind::Sqlite, options).await.unwrap();
    let trust_system = area.client_with(Some(trust.reqwest())).unwrap();

    // The trust's crisis plan, sent with its certificate and no token.
    let mut plan = json_fixture(CRISIS_PLAN);
    set_nhs_number(&mut plan, NHS_NUMBER);
    let answer = area.post_via(&trust_system, "northvale-mh", None, FHIR, serde_json::to_vec(&plan).unwrap());
    let answer = answer.await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.text);

    // The police post the s136 incident with their bearer token, over HTTPS.
    let police = json_fixture(POLICE_S136);
    area.accepted("northvale-police", "application/json", serde_json::to_vec(&police).unwrap()).await.unwrap();
    let notification = area.next("northvale-mh").await.unwrap();
    assert_eq!(notification.kind(), "police.s136_detention");
    let episode_id = find_identifier(&notification.json().unwrap(), EPISODE_SYSTEM).expect("the episode id");
    let context = area.next("northvale-police").await.unwrap();
    assert_eq!(context.kind(), "context.pre_crisis", "the plan sent by certificate reached the police");

    // The trust's outcome, by certificate again, closes the loop to the police.
    let outcome = area.post_via(&trust_system, "northvale-mh", None, FHIR, assessment_outcome(&episode_id));
    assert_eq!(outcome.await.unwrap().status, 202);
    let feedback = area.next("northvale-police").await.unwrap();
    assert_eq!(feedback.kind(), "feedback.outcome");
    assert!(feedback.text().contains(&episode_id));

    // The trust's certificate is the trust's only: not the police's path.
    let elsewhere = area.post_via(&trust_system, "northvale-police", None, "application/json", b"{}".to_vec());
    let elsewhere = elsewhere.await.unwrap();
    assert_eq!(elsewhere.status, 403);
    assert_eq!(elsewhere.content_type, "application/problem+json");

    // A certificate nobody pinned fails the handshake, even beside a valid token.
    let stranger = area.client_with(Some(Pki::self_signed("northvale-mh").reqwest())).unwrap();
    let token = area.token("northvale-mh");
    let refused = area.post_via(&stranger, "northvale-mh", Some(&token), FHIR, assessment_outcome(&episode_id));
    assert!(refused.await.is_err(), "an unpinned certificate was let in");

    // Plain HTTP to either TLS listener gets no HTTP answer.
    for url in [area.ingest_url("/v1/agencies/northvale-police/events"), area.admin_url("/healthz")] {
        let plain = reqwest::Client::new().get(url.replace("https://", "http://")).send().await;
        assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    }
    area.nothing_for("northvale-police").await.unwrap();
}
