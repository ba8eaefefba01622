//! The police receive outcome feedback on a webhook: `concordat run` configured (through the environment)
//! with `[delivery.agencies.northvale-police] channel = "webhook"` pushes the force's deliveries to a
//! receiver this test runs, which checks every Standard Webhooks signature with its own few lines.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use concordat_e2e::fixtures::{EPISODE_SYSTEM, FHIR, NHS_NUMBER, OUTCOME_NFA, POLICE_S136};
use concordat_e2e::{Area, StoreKind, find_identifier, json_fixture, set_nhs_number};
use hmac::{Hmac, Mac as _};
use serde_json::json;
use sha2::Sha256;

/// The force's webhook secret for this test: `whsec_` + base64 of 32 bytes.
const SECRET: &str = "whsec_dGhpcy1pcy1hLXRlc3Qtb25seS13ZWJob29rLWtleSE=";

/// A request the receiver took: `webhook-id`, `concordat-kind`, whether the signature verified, the body.
type Taken = (String, String, bool, String);

fn verifies(headers: &HeaderMap, body: &[u8]) -> bool {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let key = STANDARD.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", text("webhook-id"), text("webhook-timestamp")).as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    text("webhook-signature").split(' ').any(|signature| signature == expected)
}

async fn receive(State(taken): State<Arc<Mutex<Vec<Taken>>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let entry = (
        header("webhook-id"),
        header("concordat-kind"),
        verifies(&headers, &body),
        String::from_utf8_lossy(&body).into_owned(),
    );
    taken.lock().unwrap().push(entry);
    StatusCode::NO_CONTENT
}

/// The trust's no-further-action outcome for `episode_id`.
fn outcome(episode_id: &str) -> Vec<u8> {
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
async fn the_police_receive_outcome_feedback_on_their_webhook() {
    let taken = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().route("/concordat", axum::routing::post(receive)).with_state(taken.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/concordat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("northvale-police.whsec");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let secret_path = secret_file.display().to_string();
    let env = [
        ("CONCORDAT_DELIVERY__AGENCIES__NORTHVALE-POLICE__CHANNEL", "webhook"),
        ("CONCORDAT_DELIVERY__AGENCIES__NORTHVALE-POLICE__WEBHOOK_URL", url.as_str()),
        ("CONCORDAT_DELIVERY__AGENCIES__NORTHVALE-POLICE__WEBHOOK_SECRET_FILE", secret_path.as_str()),
    ];
    let mut area = Area::start_with(StoreKind::Sqlite, &env).await.unwrap();

    let police = serde_json::to_vec(&json_fixture(POLICE_S136)).unwrap();
    area.accepted("northvale-police", "application/json", police).await.unwrap();
    let notification = area.next("northvale-mh").await.unwrap();
    let episode_id = find_identifier(&notification.json().unwrap(), EPISODE_SYSTEM).unwrap();
    area.accepted("northvale-mh", FHIR, outcome(&episode_id)).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let feedback = loop {
        let found = taken.lock().unwrap().iter().find(|(_, kind, _, _)| kind == "feedback.outcome").cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no feedback on the webhook within 60 s:\n{}", area.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (id, _, signed, body) = feedback;
    assert!(signed, "the feedback carries a valid Standard Webhooks signature");
    assert!(body.contains("no_further_action") && body.contains(&episode_id), "{body}");
    assert!(taken.lock().unwrap().iter().all(|(_, _, signed, _)| *signed));
    // Pushed, so nothing waits in the force's inbox, and the push was recorded and audited.
    area.nothing_for("northvale-police").await.unwrap();
    let sql = format!(
        "SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE recipient = 'northvale-police' AND confirmed_at IS NOT NULL AND lower(hex(delivery_id)) = '{}'",
        id.replace('-', "")
    );
    assert_eq!(area.query_texts(&sql).await.unwrap(), [["1"]], "confirmed_at recorded for webhook-id {id}");
    let audited = area
        .query_texts("SELECT CAST(COUNT(*) AS TEXT) FROM audit_log WHERE kind = 'delivery_confirmed'")
        .await
        .unwrap();
    assert_ne!(audited, [["0"]]);
}
