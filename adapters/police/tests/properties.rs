//! Property tests: every valid incident yields schema-valid canonical events that render to schema-valid
//! notifications, and no input at all (arbitrary bytes, arbitrary JSON, a valid example with any field
//! replaced) makes the adapter panic. The fuzz targets under `fuzz/` push the same question further.

#![allow(clippy::unwrap_used, reason = "in tests a failed unwrap is a failed test")]

use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, NaiveDate};
use concordat_episode::{AgencyId, AgencyKind, IngestContext, RenderContext, Timestamp, validate};
use concordat_police::{NOTIFICATION_SCHEMA, PoliceConfig, ingest, render};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

static NOTIFICATION: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(NOTIFICATION_SCHEMA).unwrap();
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap()
});

fn ingest_context() -> IngestContext {
    IngestContext {
        agency: AgencyId::new("northvale-police").unwrap(),
        agency_kind: AgencyKind::Police,
        content_type: "application/json".to_owned(),
        received_at: Timestamp::parse("2026-03-21T12:00:00Z").unwrap(),
    }
}

fn render_context() -> RenderContext {
    RenderContext {
        recipient: AgencyId::new("transport-police").unwrap(),
        recipient_kind: AgencyKind::Police,
        source_name: "Northvale Police".to_owned(),
        source_ods: None,
        recipient_ods: None,
        episode_id: None,
        episode_refs: Vec::new(),
        decision_id: Uuid::nil(),
        purpose: "Coordinating the response".to_owned(),
        lawful_basis: "UK GDPR Art. 6(1)(e)".to_owned(),
        sent_at: Timestamp::parse("2026-03-21T12:00:05Z").unwrap(),
    }
}

fn timestamp() -> impl Strategy<Value = String> {
    (1_500_000_000i64..1_900_000_000, prop_oneof![Just(0), Just(3600), Just(-18000), Just(19800)], any::<bool>())
        .prop_map(|(seconds, offset, fraction)| {
            let offset = FixedOffset::east_opt(offset).unwrap();
            let time = DateTime::from_timestamp(seconds, if fraction { 250_000_000 } else { 0 }).unwrap();
            time.with_timezone(&offset).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        })
}

fn nhs_number() -> impl Strategy<Value = String> {
    (proptest::collection::vec(0u32..10, 9), prop_oneof![Just(""), Just(" "), Just("-")]).prop_filter_map(
        "check digit 10",
        |(digits, separator)| {
            let sum: u32 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
            let check = match 11 - sum % 11 {
                11 => 0,
                10 => return None,
                other => other,
            };
            let text: String = digits.iter().chain([&check]).map(|d| char::from_digit(*d, 10).unwrap()).collect();
            Some(format!("{}{separator}{}{separator}{}", &text[..3], &text[3..6], &text[6..]))
        },
    )
}

fn one_of(values: &'static [&'static str]) -> impl Strategy<Value = Value> + Clone {
    proptest::sample::select(values).prop_map(|value| json!(value))
}

fn district() -> impl Strategy<Value = Value> {
    "[A-Z]{1,2}[0-9][A-Z0-9]?".prop_map(Value::from)
}

fn person() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(nhs_number()),
        proptest::option::of(("\\PC{1,20}", "\\PC{1,20}")),
        proptest::option::of((1920i32..2026, 1u32..13, 1u32..29)),
        proptest::option::of(one_of(&["male", "female", "other", "unknown"])),
        proptest::option::of(one_of(&["W1", "W4", "M9", "A4", "B2", "O2", "NS"])),
        proptest::option::of(district()),
        proptest::collection::vec(("[a-z:]{1,20}", "\\PC{1,20}"), 0..3),
    )
        .prop_map(|(nhs, name, birth, gender, ethnicity, district, ids)| {
            let mut person = Map::new();
            if let Some(nhs) = nhs {
                person.insert("nhs_number".into(), json!(nhs));
            }
            if let Some((given, family)) = name {
                person.insert("name".into(), json!({"given": given, "family": family}));
            }
            if let Some((y, m, d)) = birth {
                // Born before any generated incident (the earliest is 2017).
                let date = NaiveDate::from_ymd_opt(y.min(2016), m, d).unwrap();
                person.insert("birth_date".into(), json!(date.to_string()));
            }
            for (key, value) in
                [("gender", gender), ("self_defined_ethnicity", ethnicity), ("postcode_district", district)]
            {
                if let Some(value) = value {
                    person.insert(key.into(), value);
                }
            }
            if !ids.is_empty() {
                let ids: Vec<Value> =
                    ids.into_iter().map(|(system, value)| json!({"system": system, "value": value})).collect();
                person.insert("identifiers".into(), Value::Array(ids));
            }
            Value::Object(person)
        })
}

fn risk() -> impl Strategy<Value = Value> {
    let factors = proptest::sample::subsequence(vec!["self_harm", "weapons", "missing_person", "substance_use"], 0..3);
    let thrive_grade = one_of(&["low", "medium", "high", "HIGH", "Medium"]);
    prop_oneof![
        (thrive_grade.clone(), factors.clone())
            .prop_map(|(grade, factors)| json!({"scheme": "thrive", "grade": grade, "factors": factors})),
        (thrive_grade.clone(), thrive_grade.clone(), thrive_grade)
            .prop_map(|(threat, harm, engagement)| json!({"scheme": "thrive", "thrive": {"threat": threat, "harm": harm, "engagement": engagement}})),
        one_of(&["grade_1", "grade_2", "grade_3", "grade_4"]).prop_map(|grade| json!({"scheme": "grade", "grade": grade})),
        one_of(&["P1", "P2", "p3", "P4"]).prop_map(|grade| json!({"scheme": "priority", "grade": grade})),
    ]
}

prop_compose! {
    fn incident()(
        number in "[A-Za-z0-9][A-Za-z0-9/_.:-]{0,30}",
        incident_type in one_of(&["concern_for_welfare", "missing_person", "mental_health_crisis", "other"]),
        occurred_at in timestamp(),
        recorded_at in timestamp(),
        power in one_of(&["s136", "s135_1", "s135_2", "mca", "none"]),
        report_outcome in any::<bool>(),
        location in proptest::option::of((proptest::option::of(district()), proptest::option::of("[A-Z]{2}([0-9]{2}|[0-9]{4})"))),
        person in proptest::option::of(person()),
        place in proptest::option::of(one_of(&["health_based", "emergency_department", "police_station", "other"])),
        conveyance in proptest::option::of((one_of(&["ambulance", "police_vehicle", "other"]), proptest::option::of(timestamp()))),
        risk in proptest::option::of(risk()),
        outcome in proptest::option::of((one_of(&["handed_to_health", "referred_to_partner", "returned_home", "admitted_formal"]), timestamp())),
        notes in proptest::option::of("\\PC{0,200}"),
        force_used in proptest::option::of(any::<bool>()),
        episode in proptest::option::of(any::<u128>()),
    ) -> Value {
        let mut incident = json!({
            "format": "police-incident.v1",
            "force": "northvale-police",
            "system": "Storm C&C",
            "incident_number": number,
            "incident_type": incident_type,
            "occurred_at": occurred_at,
            "recorded_at": recorded_at,
            "power_used": power,
        });
        let fields = incident.as_object_mut().unwrap();
        if let Some((district, grid)) = location {
            let mut location = Map::new();
            if let Some(district) = district { location.insert("postcode_district".into(), district); }
            if let Some(grid) = grid { location.insert("grid_ref".into(), json!(grid)); }
            fields.insert("location".into(), Value::Object(location));
        }
        if let Some(person) = person { fields.insert("person".into(), person); }
        if let Some(place) = place { fields.insert("place_of_safety".into(), json!({"type": place, "name": "Ashby Suite", "ods_code": "RX4"})); }
        if let Some((mode, started_at)) = conveyance {
            let mut conveyance = json!({"mode": mode});
            if mode != "ambulance" { conveyance["ambulance_not_used_reason"] = json!("delay"); }
            if let Some(started_at) = started_at { conveyance["started_at"] = json!(started_at); }
            fields.insert("conveyance".into(), conveyance);
        }
        if let Some(risk) = risk { fields.insert("risk".into(), risk); }
        if let Some((result, closed_at)) = outcome {
            fields.insert("outcome".into(), json!({"result": result, "closed_at": closed_at}));
            if report_outcome { fields.insert("report".into(), json!("outcome")); }
        }
        if let Some(notes) = notes { fields.insert("notes".into(), json!(notes)); }
        if let Some(force_used) = force_used { fields.insert("force_used".into(), json!(force_used)); }
        if let Some(episode) = episode {
            fields.insert("related_refs".into(), json!([{"system": "urn:concordat:episode", "value": Uuid::from_u128(episode).to_string()}]));
        }
        incident
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        "\\PC{0,30}".prop_map(Value::from),
        one_of(&["s136", "thrive", "NV1 4QT", "SJ84529731", "9434765919", "2026-03-01T22:14:00Z", "grade_1"]),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Every event `ingest` returns must pass the canonical schema and render to a valid notification.
fn assert_sound(payload: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(events) = ingest(payload, &ingest_context(), &PoliceConfig::default()) {
        prop_assert!(!events.is_empty());
        for event in &events {
            let json = serde_json::to_value(event).unwrap();
            prop_assert!(validate(&json).is_ok(), "{:?}", validate(&json));
            let rendered = render(event, &render_context()).unwrap();
            let notification: Value = serde_json::from_slice(&rendered.body).unwrap();
            prop_assert!(NOTIFICATION.is_valid(&notification));
        }
    }
    Ok(())
}

fn valid_example() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/examples/police-incident/valid/s136-public-place-police-vehicle.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

proptest! {
    #[test]
    fn valid_incidents_yield_schema_valid_events(incident in incident()) {
        let payload = serde_json::to_vec(&incident).unwrap();
        let events = ingest(&payload, &ingest_context(), &PoliceConfig::default());
        prop_assert!(events.is_ok(), "{:?}", events.err());
        assert_sound(&payload)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ingest(&bytes, &ingest_context(), &PoliceConfig::default());
    }

    #[test]
    fn arbitrary_json_never_panics(value in arbitrary_json()) {
        assert_sound(&serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn any_field_replaced_never_panics(
        index in any::<proptest::sample::Index>(),
        nested in any::<bool>(),
        replacement in arbitrary_json(),
    ) {
        let mut incident = valid_example();
        let keys: Vec<String> = incident.as_object().unwrap().keys().cloned().collect();
        let key = index.get(&keys).clone();
        let slot = &mut incident[&key];
        match slot {
            Value::Object(map) if nested && !map.is_empty() => {
                let inner: Vec<String> = map.keys().cloned().collect();
                let inner_key = index.get(&inner).clone();
                map.insert(inner_key, replacement);
            }
            _ => *slot = replacement,
        }
        assert_sound(&serde_json::to_vec(&incident).unwrap())?;
    }
}
