//! Throughput on one core: ingest of a typical 6-resource message Bundle (MessageHeader, Patient, place-of-safety
//! Encounter, Location, risk Observation, Consent, Condition), and render of an outcome-feedback Bundle.
//! Target: at least 20,000 Bundles ingested per second.
// Helpers outside `#[test]` functions are test code too: a failed unwrap is a failed test or bench.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use concordat_episode::{AgencyId, AgencyKind, IngestContext, RenderContext, Timestamp};
use concordat_nhs_fhir::{NhsFhirConfig, ingest, render};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

const BUNDLE: &[u8] = include_bytes!("../tests/fixtures/valid/mixed-arrival-risk-consent-condition.json");
const FEEDBACK: &[u8] = include_bytes!("../tests/fixtures/render/feedback-outcome-from-safe-haven.json");

fn benches(c: &mut Criterion) {
    let ingest_cx = IngestContext {
        agency: AgencyId::new("northvale-mh").unwrap(),
        agency_kind: AgencyKind::Nhs,
        content_type: "application/fhir+json".to_owned(),
        received_at: Timestamp::parse("2026-03-02T08:00:00Z").unwrap(),
    };
    let config = NhsFhirConfig::default();
    let mut group = c.benchmark_group("nhs-fhir");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ingest_6_resource_bundle", |b| {
        b.iter(|| ingest(black_box(BUNDLE), &ingest_cx, &config).unwrap());
    });

    let view = concordat_episode::parse_event(FEEDBACK).unwrap();
    let render_cx = RenderContext {
        recipient: AgencyId::new("northvale-mh").unwrap(),
        recipient_kind: AgencyKind::Nhs,
        source_name: "Northvale Safe Haven".to_owned(),
        source_ods: None,
        recipient_ods: None,
        episode_id: None,
        episode_refs: Vec::new(),
        decision_id: Uuid::from_u128(1),
        purpose: "Outcome feedback".to_owned(),
        lawful_basis: "Art. 6(1)(e)".to_owned(),
        sent_at: Timestamp::parse("2026-03-04T21:00:00Z").unwrap(),
    };
    group.bench_function("render_feedback_bundle", |b| {
        b.iter(|| render(black_box(&view), &render_cx).unwrap());
    });
    group.finish();
}

criterion_group!(nhs_fhir, benches);
criterion_main!(nhs_fhir);
