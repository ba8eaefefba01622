//! Shared test helpers: the sample policy and a builder of canonical events.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;

use chrono::NaiveDate;
use concordat_episode::{
    AgencyId, AgencyKind, Coding, Consent, ConsentStatus, CrisisEvent, Details, EpisodeLink, EventId, EventKind,
    Identifier, Name, NhsNumber, NonEmptyString, Provenance, Risk, RiskLevel, Sha256Hex, Source, Subject, Timestamp,
};
use concordat_policy::{EpisodeContext, EpisodeState, Policy, Relation};

pub const SAMPLE: &str = include_str!("../../../../deploy/local/policies/northvale.yaml");

static SAMPLE_POLICY: LazyLock<Policy> = LazyLock::new(|| {
    concordat_policy::load(Path::new("deploy/local/policies/northvale.yaml"), SAMPLE)
        .unwrap_or_else(|errors| panic!("{}", concordat_policy::problems_report(&errors)))
});

pub fn sample() -> &'static Policy {
    &SAMPLE_POLICY
}

pub fn agency(id: &str) -> AgencyId {
    AgencyId::new(id).unwrap()
}

fn kind_of(agency: &str) -> AgencyKind {
    match agency {
        "northvale-police" | "transport-police" => AgencyKind::Police,
        "northvale-mh" | "northvale-acute" => AgencyKind::Nhs,
        "northvale-ambulance" => AgencyKind::Ambulance,
        "northvale-council" => AgencyKind::LocalAuthority,
        _ => AgencyKind::Vcs,
    }
}

fn text(value: &str) -> NonEmptyString {
    NonEmptyString::new(value).unwrap()
}

/// A full event: every sensitive field set, risk high, consent given, an adult subject.
pub fn event(source: &str, kind: EventKind) -> CrisisEvent {
    let digest = Sha256Hex::digest(format!("{source}{kind}").as_bytes());
    let at = Timestamp::parse("2026-05-01T22:14:00+01:00").unwrap();
    CrisisEvent {
        event_id: EventId::derive(&agency(source), "REF-1", &digest),
        kind,
        occurred_at: at,
        recorded_at: at,
        source: Source {
            agency: agency(source),
            agency_kind: kind_of(source),
            system: "Test system".to_owned(),
            record_ref: text("REF-1"),
        },
        episode: EpisodeLink {
            episode_id: None,
            refs: vec![Identifier {
                system: text("urn:concordat:police-incident:northvale-police"),
                value: text("NV-1"),
            }],
        },
        subject: Subject {
            nhs_number: Some(NhsNumber::new("9990000018").unwrap()),
            identifiers: vec![Identifier { system: text("urn:test:local"), value: text("L1") }],
            name: Some(Name { given: Some("Testy".to_owned()), family: Some("McTestface".to_owned()) }),
            birth_date: NaiveDate::from_ymd_opt(1990, 6, 15),
            gender: Some(concordat_episode::Gender::Other),
            ethnicity: Some(Coding { system: text("urn:test:ethnic"), code: text("Z"), display: None }),
            postcode_district: Some(concordat_episode::PostcodeDistrict::new("NV1").unwrap()),
        },
        risk: Some(Risk {
            level: RiskLevel::High,
            factors: vec![concordat_episode::RiskFactor::SelfHarm],
            source_scale: None,
        }),
        consent: Consent { status: ConsentStatus::Given, scope: vec!["share".to_owned()], recorded_at: Some(at) },
        details: Details {
            legal_status: Some(concordat_episode::LegalStatus::S136),
            place_of_safety: Some(concordat_episode::PlaceOfSafety {
                kind: concordat_episode::PlaceOfSafetyKind::HealthBased,
                name: Some("Ashby Suite".to_owned()),
                ods_code: Some(concordat_episode::OdsCode::new("RX4").unwrap()),
            }),
            disposition: Some(concordat_episode::Disposition::AdmittedInformal),
            summary: Some("Summary text".to_owned()),
            notes: Some("Clinical notes".to_owned()),
            codes: vec![Coding { system: text("http://snomed.info/sct"), code: text("225338004"), display: None }],
            ..Details::default()
        },
        provenance: Provenance {
            adapter: text("test"),
            adapter_version: text("0"),
            format: text("test"),
            payload_sha256: digest,
            received_at: at,
        },
    }
}

pub fn context(state: EpisodeState, relations: &[Relation]) -> EpisodeContext {
    EpisodeContext { state, recipient_relations: relations.iter().copied().collect::<BTreeSet<_>>() }
}

pub fn open(relations: &[Relation]) -> EpisodeContext {
    context(EpisodeState::Open, relations)
}

/// An event with every optional field of the canonical schema set.
pub fn full_event() -> CrisisEvent {
    use concordat_episode::*;
    let mut event = event("northvale-police", EventKind::PoliceS136Detention);
    event.subject.ethnicity.as_mut().unwrap().display = Some("Not stated".to_owned());
    event.risk.as_mut().unwrap().source_scale = Some(SourceScale { scheme: text("THRIVE"), value: text("high") });
    let details = &mut event.details;
    details.location = Some(Location {
        postcode_district: Some(PostcodeDistrict::new("NV2").unwrap()),
        grid_ref: Some(GridRef::new("SJ8497").unwrap()),
        place_type: Some(PlaceType::PublicPlace),
    });
    details.conveyance = Some(Conveyance {
        mode: ConveyanceMode::PoliceVehicle,
        ambulance_not_used_reason: Some(AmbulanceNotUsedReason::Delay),
    });
    details.force_used = Some(false);
    details.police_action_required = Some(true);
    details.rcrp_decision = Some(RcrpDecision::Joint);
    details.referral = Some(Referral {
        to_agency: Some(agency("safe-haven")),
        service: Some("safe_haven".to_owned()),
        urgency: Some(Urgency::Urgent),
    });
    details.follow_up_at = Some(event.occurred_at);
    details.outcome_of = Some(event.event_id);
    event
}

/// The JSON Pointers of the leaves of a serialized event (arrays count as leaves).
pub fn leaves(value: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, prefix: String, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    walk(child, format!("{prefix}/{key}"), out);
                }
            }
            serde_json::Value::Object(_) => {}
            _ => out.push(prefix),
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}
