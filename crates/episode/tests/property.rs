//! Any `CrisisEvent` the Rust types can build serializes to schema-valid JSON and reads back equal: the
//! types and `schemas/crisis-event.v1.json` cannot drift apart unnoticed.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use concordat_episode::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use uuid::Uuid;

fn text() -> impl Strategy<Value = String> {
    // Arbitrary Unicode, including control characters, quotes and astral planes.
    any::<String>().prop_map(|s| s.chars().take(40).collect())
}

fn non_empty() -> impl Strategy<Value = NonEmptyString> {
    text().prop_filter_map("empty", |s| NonEmptyString::new(s).ok())
}

fn agency() -> impl Strategy<Value = AgencyId> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?".prop_map(|s| AgencyId::new(s).unwrap())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800, 0u32..1_000_000_000, -14 * 4..=14 * 4i32).prop_map(|(secs, nanos, quarter_hours)| {
        let offset = FixedOffset::east_opt(quarter_hours * 900).unwrap();
        let utc: DateTime<chrono::Utc> = DateTime::from_timestamp(secs, nanos).unwrap();
        Timestamp(offset.from_utc_datetime(&utc.naive_utc()))
    })
}

fn date() -> impl Strategy<Value = NaiveDate> {
    (1900i32..2030, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap())
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn nhs_number() -> impl Strategy<Value = NhsNumber> {
    proptest::array::uniform9(0u8..10).prop_filter_map("check digit 10", |digits| {
        let prefix: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        (0..10).find_map(|last| NhsNumber::new(format!("{prefix}{last}")).ok())
    })
}

fn identifier() -> impl Strategy<Value = Identifier> {
    (non_empty(), non_empty()).prop_map(|(system, value)| Identifier { system, value })
}

fn coding() -> impl Strategy<Value = Coding> {
    (non_empty(), non_empty(), of(text())).prop_map(|(system, code, display)| Coding { system, code, display })
}

fn district() -> impl Strategy<Value = PostcodeDistrict> {
    "[A-Z]{1,2}[0-9][A-Z0-9]?".prop_map(|s| PostcodeDistrict::new(s).unwrap())
}

fn subject() -> impl Strategy<Value = Subject> {
    (
        of(nhs_number()),
        vec(identifier(), 0..3),
        of((of(text()), of(text())).prop_map(|(given, family)| Name { given, family })),
        of(date()),
        of(prop_oneof![Just(Gender::Male), Just(Gender::Female), Just(Gender::Other), Just(Gender::Unknown)]),
        of(coding()),
        of(district()),
    )
        .prop_map(|(nhs_number, identifiers, name, birth_date, gender, ethnicity, postcode_district)| Subject {
            nhs_number,
            identifiers,
            name,
            birth_date,
            gender,
            ethnicity,
            postcode_district,
        })
}

fn risk() -> impl Strategy<Value = Risk> {
    let factor = prop_oneof![
        Just(RiskFactor::SelfHarm),
        Just(RiskFactor::SuicidalIdeation),
        Just(RiskFactor::HarmToOthers),
        Just(RiskFactor::HarmFromOthers),
        Just(RiskFactor::SubstanceUse),
        Just(RiskFactor::SafeguardingChild),
        Just(RiskFactor::SafeguardingAdult),
        Just(RiskFactor::PhysicalHealth),
        Just(RiskFactor::Weapons),
        Just(RiskFactor::MissingPerson),
        Just(RiskFactor::DomesticAbuse),
    ];
    (
        proptest::sample::select(RiskLevel::ALL),
        vec(factor, 0..4),
        of((non_empty(), non_empty()).prop_map(|(scheme, value)| SourceScale { scheme, value })),
    )
        .prop_map(|(level, factors, source_scale)| Risk { level, factors, source_scale })
}

fn consent() -> impl Strategy<Value = Consent> {
    let status = prop_oneof![
        Just(ConsentStatus::Given),
        Just(ConsentStatus::Refused),
        Just(ConsentStatus::NotSought),
        Just(ConsentStatus::LacksCapacity),
        Just(ConsentStatus::Unknown),
    ];
    (status, vec(text(), 0..3), of(timestamp())).prop_map(|(status, scope, recorded_at)| Consent {
        status,
        scope,
        recorded_at,
    })
}

fn details() -> impl Strategy<Value = Details> {
    let location = (
        of(district()),
        of("[A-Z]{2}([0-9]{2}|[0-9]{4})".prop_map(|s| GridRef::new(s).unwrap())),
        of(prop_oneof![
            Just(PlaceType::PublicPlace),
            Just(PlaceType::PrivateDwelling),
            Just(PlaceType::HealthSetting),
            Just(PlaceType::PoliceStation),
            Just(PlaceType::Other)
        ]),
    )
        .prop_map(|(postcode_district, grid_ref, place_type)| Location { postcode_district, grid_ref, place_type });
    let legal = prop_oneof![
        Just(LegalStatus::Informal),
        Just(LegalStatus::S2),
        Just(LegalStatus::S3),
        Just(LegalStatus::S4),
        Just(LegalStatus::S135_1),
        Just(LegalStatus::S135_2),
        Just(LegalStatus::S136),
        Just(LegalStatus::Mca),
        Just(LegalStatus::None),
    ];
    let place = (
        prop_oneof![
            Just(PlaceOfSafetyKind::HealthBased),
            Just(PlaceOfSafetyKind::EmergencyDepartment),
            Just(PlaceOfSafetyKind::PoliceStation),
            Just(PlaceOfSafetyKind::Other)
        ],
        of(text()),
        of("[A-Z0-9]{3,6}".prop_map(|s| OdsCode::new(s).unwrap())),
    )
        .prop_map(|(kind, name, ods_code)| PlaceOfSafety { kind, name, ods_code });
    let conveyance = (
        prop_oneof![Just(ConveyanceMode::Ambulance), Just(ConveyanceMode::PoliceVehicle), Just(ConveyanceMode::Other)],
        of(prop_oneof![
            Just(AmbulanceNotUsedReason::NotAvailable),
            Just(AmbulanceNotUsedReason::Delay),
            Just(AmbulanceNotUsedReason::Behaviour),
            Just(AmbulanceNotUsedReason::NotNeeded),
            Just(AmbulanceNotUsedReason::Other)
        ]),
    )
        .prop_map(|(mode, ambulance_not_used_reason)| Conveyance { mode, ambulance_not_used_reason });
    let rcrp = prop_oneof![
        Just(RcrpDecision::PoliceAttend),
        Just(RcrpDecision::HealthLead),
        Just(RcrpDecision::Joint),
        Just(RcrpDecision::NoPoliceRole)
    ];
    let disposition = prop_oneof![
        Just(Disposition::AdmittedFormal),
        Just(Disposition::AdmittedInformal),
        Just(Disposition::DischargedWithFollowUp),
        Just(Disposition::ReferredHomeTreatment),
        Just(Disposition::NoFurtherAction),
        Just(Disposition::ReferredElsewhere)
    ];
    let referral = (
        of(agency()),
        of(text()),
        of(prop_oneof![Just(Urgency::Emergency), Just(Urgency::Urgent), Just(Urgency::Routine)]),
    )
        .prop_map(|(to_agency, service, urgency)| Referral { to_agency, service, urgency });
    (
        (of(location), of(legal), of(place), of(conveyance), of(any::<bool>()), of(any::<bool>()), of(rcrp)),
        (
            of(disposition),
            of(referral),
            of(timestamp()),
            of(uuid().prop_map(EventId)),
            of(text()),
            of(text()),
            vec(coding(), 0..3),
        ),
    )
        .prop_map(
            |(
                (
                    location,
                    legal_status,
                    place_of_safety,
                    conveyance,
                    force_used,
                    police_action_required,
                    rcrp_decision,
                ),
                (disposition, referral, follow_up_at, outcome_of, summary, notes, codes),
            )| Details {
                location,
                legal_status,
                place_of_safety,
                conveyance,
                force_used,
                police_action_required,
                rcrp_decision,
                disposition,
                referral,
                follow_up_at,
                outcome_of,
                summary,
                notes,
                codes,
            },
        )
}

fn event() -> impl Strategy<Value = CrisisEvent> {
    (
        (uuid(), proptest::sample::select(EventKind::ALL), timestamp(), timestamp()),
        (agency(), proptest::sample::select(AgencyKind::ALL), text(), non_empty()),
        (of(uuid().prop_map(EpisodeId)), vec(identifier(), 0..3)),
        (subject(), of(risk()), consent(), details()),
        (non_empty(), non_empty(), non_empty(), any::<[u8; 8]>(), timestamp()),
    )
        .prop_map(
            |(
                (id, kind, occurred_at, recorded_at),
                (agency, agency_kind, system, record_ref),
                (episode_id, refs),
                (subject, risk, consent, details),
                (adapter, adapter_version, format, payload, received_at),
            )| CrisisEvent {
                event_id: EventId(id),
                kind,
                occurred_at,
                recorded_at,
                source: Source { agency, agency_kind, system, record_ref },
                episode: EpisodeLink { episode_id, refs },
                subject,
                risk,
                consent,
                details,
                provenance: Provenance {
                    adapter,
                    adapter_version,
                    format,
                    payload_sha256: Sha256Hex::digest(&payload),
                    received_at,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_event_the_types_build_is_schema_valid(event in event()) {
        let json = to_validated_json(&event).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let back = parse_event(&json).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(back, event);
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct(
        agency in agency(), a in text(), b in text(), payload in any::<Vec<u8>>()
    ) {
        let digest = Sha256Hex::digest(&payload);
        prop_assert_eq!(EventId::derive(&agency, &a, &digest), EventId::derive(&agency, &a, &digest));
        if a != b {
            prop_assert_ne!(EventId::derive(&agency, &a, &digest), EventId::derive(&agency, &b, &digest));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in any::<Vec<u8>>()) {
        let _ = parse_event(&bytes);
    }
}
