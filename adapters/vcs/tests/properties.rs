//! Property tests: every valid contact yields schema-valid, deterministic canonical events (and renders to a
//! schema-valid notification), JSON and CSV bodies mean the same, and no input of any shape panics.

#![allow(clippy::unwrap_used, reason = "test code: an unwrap that fails is the test failing")]

mod common;

use concordat_episode::{CrisisEvent, IngestError, InputLocation};
use concordat_vcs::VcsConfig;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const VALID_NHS: &[&str] = &["9990000018", "9991111115", "9434765919", "4010232137", "999 000 0018", "943-476-5919"];

fn pick(values: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(values).prop_map(str::to_owned)
}

fn subset(values: &'static [&'static str], min: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(values, min..=values.len()).prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

prop_compose! {
    /// A contact the format accepts: every optional field independently present or not, within the rules.
    fn contact()(
        id in "[A-Z]{2}-[0-9]{1,6}",
        service in pick(&["safe_haven", "helpline", "outreach", "peer_support"]),
        follow_up in any::<bool>(),
        follow_up_of in proptest::option::of("[A-Z]{2}-[0-9]{7}"),
        (year, month, day) in (2020i32..2031, 1u32..=12, 1u32..=28),
        (hour, minute) in (0u32..24, 0u32..60),
        consent in pick(&["given", "refused", "not_sought", "lacks_capacity"]),
        scope in subset(&["referral", "follow_up", "share_with_nhs", "share_with_police", "share_with_local_authority", "share_with_ambulance", "share_with_vcs"], 1),
        nhs in proptest::option::of(proptest::sample::select(VALID_NHS)),
        given in proptest::option::of("[A-Z][a-z]{1,10}( [A-Z][a-z]{1,8})?"),
        family in proptest::option::of("[A-Z][a-z'-]{1,12}"),
        birth_year in proptest::option::of(1930i32..2020),
        gender in proptest::option::of(pick(&["male", "female", "other", "unknown"])),
        district in proptest::option::of("[A-Z]{1,2}[0-9][0-9]?"),
        concerns in subset(&["self_harm", "suicidal_thoughts", "substance_use", "harm_from_others", "harm_to_others", "domestic_abuse", "child_safeguarding", "adult_safeguarding", "physical_health", "housing", "money", "loneliness"], 0),
        risk in pick(&["none", "low", "moderate", "high", "imminent"]),
        referral_to in proptest::option::of(pick(&["northvale-mh", "northvale-acute", "northvale-council", "northvale-police"])),
        referral_service in proptest::option::of(pick(&["crisis_resolution_home_treatment", "gp", "housing", "police", "other"])),
        urgency in proptest::option::of(pick(&["emergency", "urgent", "routine"])),
        follow_up_in in proptest::option::of((1i32..3, proptest::option::of((0u32..24, 0u32..60)))),
        outcome in proptest::option::of(pick(&["no_further_action", "follow_up_planned", "referred_elsewhere"])),
        notes in proptest::option::of("[A-Za-z][A-Za-z ,.;\"\n]{0,40}[a-z]"),
    ) -> Value {
        // The last Sunday of March or October is on or after the 25th; steer clear of its missing or repeated
        // hour, which needs an offset (tested with fixtures).
        let hour = if day >= 25 && (month == 3 || month == 10) && hour == 1 { 3 } else { hour };
        let mut c = Map::new();
        c.insert("contact_id".into(), json!(id));
        c.insert("service".into(), json!(service));
        c.insert("contact_date".into(), json!(format!("{year:04}-{month:02}-{day:02}")));
        c.insert("contact_time".into(), json!(format!("{hour:02}:{minute:02}")));
        c.insert("consent_status".into(), json!(consent));
        c.insert("risk".into(), json!(risk));
        if follow_up {
            c.insert("contact_type".into(), json!("follow_up"));
            if let Some(of) = follow_up_of { c.insert("follow_up_of".into(), json!(of)); }
        }
        if consent == "given" { c.insert("consent_scope".into(), json!(scope)); }
        if consent == "given" || consent == "lacks_capacity" {
            let personal = [
                ("nhs_number", nhs.map(str::to_owned)),
                ("given_name", given),
                ("family_name", family),
                ("birth_date", birth_year.map(|y| format!("{y:04}-01-31"))),
                ("gender", gender),
                ("postcode_district", district),
                ("notes", notes),
            ];
            for (field, value) in personal {
                if let Some(value) = value { c.insert(field.into(), json!(value)); }
            }
        }
        if !concerns.is_empty() { c.insert("concerns".into(), json!(concerns)); }
        if let Some(to) = referral_to { c.insert("referral_to".into(), json!(to)); }
        if let Some(service) = &referral_service { c.insert("referral_service".into(), json!(service)); }
        if let (Some(urgency), true) = (urgency, c.contains_key("referral_to") || referral_service.is_some()) {
            c.insert("referral_urgency".into(), json!(urgency));
        }
        if let Some((years, time)) = follow_up_in {
            c.insert("follow_up_date".into(), json!(format!("{:04}-01-15", year + years)));
            if let Some((h, m)) = time { c.insert("follow_up_time".into(), json!(format!("{h:02}:{m:02}"))); }
        }
        if let Some(outcome) = outcome { c.insert("outcome".into(), json!(outcome)); }
        Value::Object(c)
    }
}

fn ingest(body: &[u8], content_type: &str) -> Result<Vec<CrisisEvent>, IngestError> {
    concordat_vcs::ingest(body, &common::ingest_context("safe-haven", content_type), &VcsConfig::default())
}

/// The contacts as a CSV body: the union of their fields as the header, lists joined with `;`.
fn as_csv(contacts: &[Value]) -> Vec<u8> {
    let columns: Vec<&str> =
        concordat_vcs::FIELDS.iter().copied().filter(|field| contacts.iter().any(|c| c.get(field).is_some())).collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&columns).unwrap();
    for contact in contacts {
        let cells = columns.iter().map(|column| match contact.get(column) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(";"),
            _ => String::new(),
        });
        writer.write_record(cells).unwrap();
    }
    writer.into_inner().unwrap()
}

/// What a CSV and a JSON body of the same contacts may differ in: the format name, the payload digest, and
/// so the event ids.
fn without_payload_identity(mut events: Vec<CrisisEvent>) -> Vec<CrisisEvent> {
    for event in &mut events {
        event.event_id = concordat_episode::EventId(uuid::Uuid::nil());
        event.provenance.format = concordat_episode::NonEmptyString::new("-").unwrap();
        event.provenance.payload_sha256 = concordat_episode::Sha256Hex::digest(b"");
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_contacts_yield_valid_deterministic_events(contacts in proptest::collection::vec(contact(), 1..4)) {
        // Ids must be unique within a payload; make them so.
        let contacts: Vec<Value> = contacts.into_iter().enumerate().map(|(i, mut c)| {
            c["contact_id"] = json!(format!("C{i}-{}", c["contact_id"].as_str().unwrap()));
            c
        }).collect();
        let body = serde_json::to_vec(&contacts).unwrap();
        let events = ingest(&body, "application/json").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(events.len() >= contacts.len());
        let mut ids = Vec::new();
        for event in &events {
            let value = serde_json::to_value(event).unwrap();
            prop_assert_eq!(concordat_episode::validate(&value), Ok(()));
            let rendered = concordat_vcs::render(event, &common::render_context("safe-haven")).unwrap();
            prop_assert_eq!(common::notification_violations(&rendered.body), Vec::<String>::new());
            ids.push(event.event_id);
        }
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), events.len());
        prop_assert_eq!(ingest(&body, "application/json").unwrap(), events.clone());

        let from_csv = ingest(&as_csv(&contacts), "text/csv").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(without_payload_identity(from_csv), without_payload_identity(events));
    }

    #[test]
    fn a_wrong_check_digit_is_always_named(contact in contact(), last in 0u32..10) {
        let mut contact = contact;
        contact["consent_status"] = json!("given");
        contact["consent_scope"] = json!(["share_with_nhs"]);
        let number = format!("999000001{last}");
        contact["nhs_number"] = json!(number);
        let result = ingest(&serde_json::to_vec(&contact).unwrap(), "application/json");
        if last == 8 {
            prop_assert!(result.is_ok());
        } else {
            let Err(IngestError::Invalid(problems)) = result else { return Err(TestCaseError::fail("accepted")) };
            prop_assert!(problems.iter().any(|p| p.location == InputLocation::Pointer("/nhs_number".into())
                && p.detail == "NHS number fails the modulus-11 check"));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for content_type in ["application/json", "text/csv", "text/plain"] {
            if let Ok(events) = ingest(&bytes, content_type) {
                for event in events {
                    prop_assert_eq!(concordat_episode::validate(&serde_json::to_value(&event).unwrap()), Ok(()));
                }
            }
        }
    }

    #[test]
    fn arbitrary_field_values_never_panic(
        fields in proptest::collection::btree_map(
            proptest::sample::select(concordat_vcs::FIELDS),
            prop_oneof![any::<String>().prop_map(Value::String), "[ -~]{0,12}".prop_map(Value::String),
                        any::<i64>().prop_map(|n| json!(n)), Just(Value::Null),
                        proptest::collection::vec("[a-z_]{0,12}", 0..3).prop_map(|v| json!(v))],
            0..12),
        base in contact(),
    ) {
        let mut contact = base;
        for (field, value) in fields {
            contact[field] = value;
        }
        let json_body = serde_json::to_vec(&contact).unwrap();
        let csv_body = as_csv(std::slice::from_ref(&contact));
        for (body, content_type) in [(json_body, "application/json"), (csv_body, "text/csv")] {
            match ingest(&body, content_type) {
                Ok(events) => for event in events {
                    prop_assert_eq!(concordat_episode::validate(&serde_json::to_value(&event).unwrap()), Ok(()));
                },
                Err(IngestError::Invalid(problems)) => prop_assert!(!problems.is_empty()),
                Err(_) => {}
            }
        }
    }
}
