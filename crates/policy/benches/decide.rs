//! decide + project for a typical event (a s136 detention to the place of safety) against the sample policy.
//! Prints the time per decision; the target is under 10 µs.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;
use concordat_episode::{
    AgencyId, AgencyKind, Consent, ConsentStatus, CrisisEvent, Details, EpisodeLink, EventId, EventKind, Identifier,
    LegalStatus, Name, NhsNumber, NonEmptyString, PlaceOfSafety, PlaceOfSafetyKind, Provenance, Risk, RiskFactor,
    RiskLevel, Sha256Hex, Source, Subject, Timestamp,
};
use concordat_policy::{EpisodeContext, EpisodeState, decide, project};
use criterion::{Criterion, criterion_group, criterion_main};

fn text(value: &str) -> NonEmptyString {
    NonEmptyString::new(value).expect("non-empty")
}

fn typical_event() -> CrisisEvent {
    let agency = AgencyId::new("northvale-police").expect("agency id");
    let digest = Sha256Hex::digest(b"bench payload");
    let at = Timestamp::parse("2026-05-01T22:14:00+01:00").expect("timestamp");
    CrisisEvent {
        event_id: EventId::derive(&agency, "NV-2026-0001", &digest),
        kind: EventKind::PoliceS136Detention,
        occurred_at: at,
        recorded_at: at,
        source: Source {
            agency: agency.clone(),
            agency_kind: AgencyKind::Police,
            system: "Storm C&C".to_owned(),
            record_ref: text("NV-2026-0001"),
        },
        episode: EpisodeLink {
            episode_id: None,
            refs: vec![Identifier {
                system: text("urn:concordat:police-incident:northvale-police"),
                value: text("NV-2026-0001"),
            }],
        },
        subject: Subject {
            nhs_number: Some(NhsNumber::new("9990000018").expect("valid")),
            name: Some(Name { given: Some("Alex".to_owned()), family: Some("Example".to_owned()) }),
            birth_date: NaiveDate::from_ymd_opt(1990, 6, 15),
            ..Subject::default()
        },
        risk: Some(Risk { level: RiskLevel::High, factors: vec![RiskFactor::SelfHarm], source_scale: None }),
        consent: Consent { status: ConsentStatus::NotSought, scope: Vec::new(), recorded_at: None },
        details: Details {
            legal_status: Some(LegalStatus::S136),
            place_of_safety: Some(PlaceOfSafety {
                kind: PlaceOfSafetyKind::HealthBased,
                name: Some("Ashby Suite".to_owned()),
                ods_code: None,
            }),
            summary: Some("Found on the bridge, distressed".to_owned()),
            notes: Some("Officer's notes".to_owned()),
            ..Details::default()
        },
        provenance: Provenance {
            adapter: text("police"),
            adapter_version: text("0.1.0"),
            format: text("police-incident.v1"),
            payload_sha256: digest,
            received_at: at,
        },
    }
}

fn bench(c: &mut Criterion) {
    let text = include_str!("../../../deploy/local/policies/northvale.yaml");
    let policy = concordat_policy::load(Path::new("northvale.yaml"), text).expect("the sample policy loads");
    let event = typical_event();
    let context = EpisodeContext { state: EpisodeState::Open, recipient_relations: BTreeSet::new() };
    let recipient = AgencyId::new("northvale-mh").expect("agency id");

    let rounds = 20_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        let decision = decide(&policy, black_box(&event), &context, &recipient);
        black_box(project(&event, &decision));
    }
    let per = start.elapsed() / rounds;
    println!("decide + project: {per:?} per decision ({rounds} rounds, sample policy, s136 to the place of safety)");

    c.bench_function("decide+project s136 to place of safety", |b| {
        b.iter(|| {
            let decision = decide(&policy, black_box(&event), &context, &recipient);
            black_box(project(&event, &decision))
        });
    });
    c.bench_function("decide only, denied recipient", |b| {
        let stranger = AgencyId::new("listening-line").expect("agency id");
        b.iter(|| black_box(decide(&policy, black_box(&event), &context, &stranger)));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
