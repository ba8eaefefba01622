//! Throughput of `ingest` and `render` on a realistic s136 incident (three events per payload).
//!
//! Target: at least 50,000 incidents a second ingested on one core.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use concordat_episode::{AgencyId, AgencyKind, IngestContext, RenderContext, Timestamp};
use concordat_police::{PoliceConfig, ingest, render};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

const PAYLOAD: &[u8] =
    include_bytes!("../../../schemas/examples/police-incident/valid/s136-public-place-police-vehicle.json");

fn benches(c: &mut Criterion) {
    let config = PoliceConfig::default();
    let ingest_cx = IngestContext {
        agency: AgencyId::new("northvale-police").unwrap(),
        agency_kind: AgencyKind::Police,
        content_type: "application/json".to_owned(),
        received_at: Timestamp::parse("2026-03-01T23:30:00Z").unwrap(),
    };
    let events = ingest(PAYLOAD, &ingest_cx, &config).unwrap();
    let render_cx = RenderContext {
        recipient: AgencyId::new("transport-police").unwrap(),
        recipient_kind: AgencyKind::Police,
        source_name: "Northvale Police".to_owned(),
        source_ods: None,
        recipient_ods: None,
        episode_id: None,
        episode_refs: events[0].episode.refs.clone(),
        decision_id: Uuid::nil(),
        purpose: "Safeguarding the person during a mental-health crisis".to_owned(),
        lawful_basis: "UK GDPR Art. 6(1)(e); Art. 9(2)(g); DPA 2018 Sch. 1 para 18".to_owned(),
        sent_at: Timestamp::parse("2026-03-01T23:31:00Z").unwrap(),
    };

    let mut group = c.benchmark_group("police");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ingest_incident", |b| b.iter(|| ingest(black_box(PAYLOAD), &ingest_cx, &config).unwrap()));
    group.bench_function("render_notification", |b| b.iter(|| render(black_box(&events[0]), &render_cx).unwrap()));
    group.finish();
}

criterion_group!(police, benches);
criterion_main!(police);
