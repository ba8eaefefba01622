//! The crisis-care stories the broker exists for, end to end, on both stores: the agencies post their native
//! payloads over HTTP and read their inboxes over AMQP, as their own systems would.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use concordat_e2e::fixtures::{EPISODE_SYSTEM, FHIR, NHS_NUMBER, OUTCOME_NFA, POLICE_S136};
use concordat_e2e::{Area, StoreKind, find_identifier, json_fixture, set_nhs_number};
use serde_json::json;

const CRISIS_PLAN: &str = "adapters/nhs-fhir/tests/fixtures/valid/crisis-plan-with-consent-given.json";
const SAFE_HAVEN_REFERRAL: &str = "schemas/examples/vcs-contact/valid/safe-haven-referral-to-crht.json";

/// The trust's assessment outcome for the episode: no further action, with a diagnosis recorded against the
/// encounter (which must never reach the police).
fn assessment_outcome(episode_id: &str) -> Vec<u8> {
    let mut bundle = json_fixture(OUTCOME_NFA);
    set_nhs_number(&mut bundle, NHS_NUMBER);
    bundle["identifier"] = json!({ "system": EPISODE_SYSTEM, "value": episode_id });
    let entries = bundle["entry"].as_array_mut().unwrap();
    for entry in entries.iter_mut() {
        if entry["resource"]["resourceType"] == "Encounter" {
            // Keep only the trust's own encounter id: the episode id is the correlating reference.
            entry["resource"]["identifier"].as_array_mut().unwrap().truncate(1);
        }
    }
    entries.push(json!({
        "fullUrl": "urn:uuid:3f2c9a1e-0000-4000-8000-00000000000d",
        "resource": {
            "resourceType": "Condition",
            "id": "cond-1",
            "clinicalStatus": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"
            }]},
            "code": { "coding": [{
                "system": "http://snomed.info/sct", "code": "35489007", "display": "Depressive disorder"
            }]},
            "subject": { "reference": "urn:uuid:3f2c9a1e-0000-4000-8000-000000000001" },
            "encounter": { "reference": "urn:uuid:3f2c9a1e-0000-4000-8000-000000000002" },
            "recordedDate": "2026-03-02T02:50:00Z"
        }
    }));
    serde_json::to_vec(&bundle).unwrap()
}

async fn s136_story(store: StoreKind) {
    let mut area = Area::start(store).await.unwrap();

    // Before the crisis: the trust holds a crisis plan, agreed with the person, who consented to sharing it.
    let mut plan = json_fixture(CRISIS_PLAN);
    set_nhs_number(&mut plan, NHS_NUMBER);
    area.accepted("northvale-mh", FHIR, serde_json::to_vec(&plan).unwrap()).await.unwrap();

    // The police detain the person under s136 and post the incident.
    let police = json_fixture(POLICE_S136);
    let notes = police["notes"].as_str().unwrap().to_owned();
    let ids =
        area.accepted("northvale-police", "application/json", serde_json::to_vec(&police).unwrap()).await.unwrap();
    assert!(!ids.is_empty(), "a 202 names the accepted event ids");

    // The place of safety hears in FHIR, with the episode id and the NHS number, never the officers' notes.
    let notification = area.next("northvale-mh").await.unwrap();
    assert_eq!(notification.content_type, FHIR);
    assert_eq!(notification.kind(), "police.s136_detention");
    let fhir = notification.json().unwrap();
    assert_eq!(fhir["resourceType"], "Bundle", "{fhir}");
    let episode_id = find_identifier(&fhir, EPISODE_SYSTEM).expect("the notification names the episode");
    assert_eq!(find_identifier(&fhir, "https://fhir.nhs.uk/Id/nhs-number").as_deref(), Some(NHS_NUMBER));
    assert!(!notification.text().contains(&notes[..40]), "free-text notes are not shared");

    // The responding force is offered what the trust already held, as the policy allows (consent given).
    let context = area.next("northvale-police").await.unwrap();
    assert_eq!(context.kind(), "context.pre_crisis");
    assert_eq!(context.content_type, "application/json");
    assert!(context.text().contains("sister is the named contact"), "{}", context.text());

    // The trust assesses and posts the outcome against the episode.
    area.accepted("northvale-mh", FHIR, assessment_outcome(&episode_id)).await.unwrap();

    // The detaining force hears what happened, in its own format, without clinical detail.
    let feedback = area.next("northvale-police").await.unwrap();
    assert_eq!(feedback.kind(), "feedback.outcome");
    assert_eq!(feedback.content_type, "application/json");
    let text = feedback.text();
    assert!(text.contains("no_further_action"), "the disposition is fed back: {text}");
    assert!(text.contains(&episode_id), "the feedback names the episode: {text}");
    for clinical in ["35489007", "Depressive", "snomed", "Usual place of residence"] {
        assert!(!text.contains(clinical), "clinical detail `{clinical}` reached the police: {text}");
    }
    assert!(!text.contains(&notes[..40]));
    area.nothing_for("northvale-police").await.unwrap();

    // The feedback was noted, the final outcome closed the episode, and the audit chain verifies.
    let episodes = area.query_texts("SELECT state, close_reason FROM episodes").await.unwrap();
    assert_eq!(episodes, [["closed", "concluded"]], "one episode, concluded by the outcome");
    let feedback_noted = area.query_texts("SELECT originator FROM episodes WHERE feedback_delivered_at IS NOT NULL");
    assert_eq!(feedback_noted.await.unwrap(), [["northvale-police"]]);
    let verify = area.cli(&["audit", "verify"]).unwrap();
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{stdout}{}", String::from_utf8_lossy(&verify.stderr));
    assert!(stdout.starts_with("audit chain verified: "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s136_story_on_sqlite() {
    s136_story(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s136_story_on_postgres() {
    s136_story(StoreKind::Postgres).await;
}

/// A Safe Haven referral to the crisis team, with the person's consent as given (or not).
fn safe_haven_referral(consent: &str) -> Vec<u8> {
    let mut referral = json_fixture(SAFE_HAVEN_REFERRAL);
    referral["consent_status"] = json!(consent);
    if consent != "given" {
        // The format has the service leave out what the person did not agree to share.
        let fields = referral.as_object_mut().unwrap();
        for field in ["consent_scope", "nhs_number", "given_name", "family_name", "birth_date", "gender"] {
            fields.remove(field);
        }
    }
    serde_json::to_vec(&referral).unwrap()
}

async fn vcs_referral_only_with_consent(store: StoreKind) {
    let mut area = Area::start(store).await.unwrap();

    area.accepted("safe-haven", "application/json", safe_haven_referral("refused")).await.unwrap();
    area.nothing_for("northvale-mh").await.unwrap();
    let recorded = area.query_texts("SELECT verdict, reason FROM decisions WHERE recipient = 'northvale-mh'");
    let recorded = recorded.await.unwrap();
    assert!(!recorded.is_empty(), "the refusal was decided on, and recorded");
    assert!(recorded.iter().all(|row| row[0] == "deny"), "{recorded:?}");

    area.accepted("safe-haven", "application/json", safe_haven_referral("given")).await.unwrap();
    let delivered = area.drain("northvale-mh", Duration::from_secs(4)).await.unwrap();
    let referral = delivered.iter().find(|message| message.kind() == "vcs.referral");
    let referral = referral.unwrap_or_else(|| panic!("no referral reached the trust:\n{}", area.logs()));
    assert_eq!(referral.content_type, FHIR);
    assert_eq!(
        find_identifier(&referral.json().unwrap(), "https://fhir.nhs.uk/Id/nhs-number").as_deref(),
        Some(NHS_NUMBER)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vcs_referral_is_shared_only_with_consent_on_sqlite() {
    vcs_referral_only_with_consent(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vcs_referral_is_shared_only_with_consent_on_postgres() {
    vcs_referral_only_with_consent(StoreKind::Postgres).await;
}

async fn resubmission_delivers_once(store: StoreKind) {
    let mut area = Area::start(store).await.unwrap();
    let body = concordat_e2e::fixture(POLICE_S136);
    let first = area.accepted("northvale-police", "application/json", body.clone()).await.unwrap();
    let second = area.accepted("northvale-police", "application/json", body).await.unwrap();
    assert_eq!(first, second, "the same payload is the same events");

    // The incident is a detention and a conveyance: the place of safety hears of each exactly once.
    let delivered = area.drain("northvale-mh", Duration::from_secs(4)).await.unwrap();
    let mut kinds: Vec<&str> = delivered.iter().map(|message| message.kind()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["police.conveyance", "police.s136_detention"]);
    let to_council = area.drain("northvale-council", Duration::from_secs(1)).await.unwrap();
    assert_eq!(to_council.len(), 1, "the AMHP service hears of the detention once too");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_twice_is_delivered_once_on_sqlite() {
    resubmission_delivers_once(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_twice_is_delivered_once_on_postgres() {
    resubmission_delivers_once(StoreKind::Postgres).await;
}
