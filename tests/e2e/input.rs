//! Bad input from an agency's system gets a precise 4xx as RFC 9457 problem details, and nothing is queued:
//! no inbox hears of it and no queue holds it.

#![allow(clippy::unwrap_used)]

use concordat_e2e::fixtures::POLICE_S136;
use concordat_e2e::{Area, StoreKind, fixture};

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_precisely_and_queue_nothing() {
    let mut area = Area::start(StoreKind::Sqlite).await.unwrap();
    let good = fixture(POLICE_S136);
    let police_token = {
        // The police's own token, read the way an integrator would: from the development tokens file.
        let tokens = String::from_utf8(fixture("deploy/local/dev-tokens.env")).unwrap();
        let line = tokens.lines().find(|line| line.starts_with("CONCORDAT_DEV_TOKEN_NORTHVALE_POLICE=")).unwrap();
        line.split_once('=').unwrap().1.trim().to_owned()
    };
    let oversize = {
        let mut text = String::from_utf8(good.clone()).unwrap();
        text.truncate(text.rfind('}').unwrap());
        format!("{text}, \"padding\": \"{}\"}}", "x".repeat(2 * 1024 * 1024))
    };
    let invalid_nhs = String::from_utf8(good.clone()).unwrap().replace("9434765919", "9434765918");
    let not_json = b"{\"format\": \"police-incident.v1\", \"force\": ".to_vec();

    // What is wrong, the agency posted to, the token, the media type, the body, the expected status.
    type Case<'a> = (&'a str, &'a str, String, &'a str, Vec<u8>, u16);
    let cases: Vec<Case<'_>> = vec![
        ("an unknown agency", "nowhere-police", police_token.clone(), "application/json", good.clone(), 404),
        ("a bad token", "northvale-police", "dev_not-a-token".to_owned(), "application/json", good.clone(), 401),
        ("no token", "northvale-police", String::new(), "application/json", good.clone(), 401),
        ("another agency's token", "northvale-mh", police_token.clone(), "application/fhir+json", good.clone(), 403),
        ("malformed JSON", "northvale-police", police_token.clone(), "application/json", not_json, 400),
        ("an unsupported media type", "northvale-police", police_token.clone(), "application/xml", good.clone(), 415),
        (
            "an invalid NHS number",
            "northvale-police",
            police_token.clone(),
            "application/json",
            invalid_nhs.into(),
            422,
        ),
        ("an oversize body", "northvale-police", police_token.clone(), "application/json", oversize.into(), 413),
    ];
    for (what, agency, token, content_type, body, status) in cases {
        let answer = area.post_with_token(agency, &token, content_type, body).await.unwrap();
        assert_eq!(answer.status, status, "{what}: {}", answer.text);
        if content_type == "application/fhir+json" {
            // A FHIR client is answered in FHIR.
            assert!(answer.content_type.starts_with("application/fhir+json"), "{what}: {}", answer.content_type);
            assert_eq!(answer.json["resourceType"], "OperationOutcome", "{what}: {}", answer.text);
        } else {
            assert!(answer.content_type.starts_with("application/problem+json"), "{what}: {}", answer.content_type);
            assert_eq!(answer.json["status"], status, "{what}: the problem states its status: {}", answer.text);
            assert!(answer.json["title"].is_string(), "{what}: {}", answer.text);
        }
        assert!(!answer.text.contains("Testperson"), "{what}: the answer echoes no personal data");
    }
    let body = String::from_utf8(good.clone()).unwrap().replace("9434765919", "9434765918");
    let answer = area.post("northvale-police", "application/json", body).await.unwrap();
    assert!(answer.text.contains("/person/nhs_number"), "the 422 names the field: {}", answer.text);

    for agency in ["northvale-mh", "northvale-council", "northvale-police"] {
        area.nothing_for(agency).await.unwrap();
    }
    let depths = area.queue_depths().unwrap();
    let held: Vec<_> = depths.iter().filter(|(_, messages)| **messages > 0).collect();
    assert!(held.is_empty(), "refused requests left messages behind: {held:?}");
    let events = area.query_texts("SELECT CAST(COUNT(*) AS TEXT) FROM events").await.unwrap();
    assert_eq!(events, [["0"]], "no event reached the store");
}
