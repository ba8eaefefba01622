//! Ingest and render throughput of the VCS adapter, on the published examples.

#![allow(clippy::unwrap_used, reason = "test code: an unwrap that fails is the test failing")]

use std::hint::black_box;

use concordat_episode::{AgencyId, AgencyKind, IngestContext, RenderContext, Timestamp};
use concordat_vcs::VcsConfig;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

const ONE_JSON: &[u8] = include_bytes!("../../../schemas/examples/vcs-contact/valid/safe-haven-referral-to-crht.json");
const CSV_ROWS: &[u8] = include_bytes!("../../../schemas/examples/vcs-contact/valid/safe-haven-excel-export.csv");

fn context(content_type: &str) -> IngestContext {
    IngestContext {
        agency: AgencyId::new("safe-haven").unwrap(),
        agency_kind: AgencyKind::Vcs,
        content_type: content_type.to_owned(),
        received_at: Timestamp::parse("2026-03-02T09:00:00Z").unwrap(),
    }
}

fn benches(c: &mut Criterion) {
    let config = VcsConfig::default();
    let json = context("application/json");
    let csv = context("text/csv");
    let mut group = c.benchmark_group("vcs");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ingest_json_contact", |b| {
        b.iter(|| concordat_vcs::ingest(black_box(ONE_JSON), &json, &config).unwrap())
    });
    // The CSV example holds three contacts (and a blank row).
    group.throughput(Throughput::Elements(3));
    group.bench_function("ingest_csv_3_rows", |b| {
        b.iter(|| concordat_vcs::ingest(black_box(CSV_ROWS), &csv, &config).unwrap())
    });
    let event = concordat_vcs::ingest(ONE_JSON, &json, &config).unwrap().remove(0);
    let cx = RenderContext {
        recipient: AgencyId::new("safe-haven").unwrap(),
        recipient_kind: AgencyKind::Vcs,
        source_name: "Northvale Mental Health NHS Foundation Trust".to_owned(),
        source_ods: None,
        recipient_ods: None,
        episode_id: None,
        episode_refs: Vec::new(),
        decision_id: Uuid::from_u128(1),
        purpose: "Direct care".to_owned(),
        lawful_basis: "UK GDPR Art. 6(1)(e); Art. 9(2)(h)".to_owned(),
        sent_at: Timestamp::parse("2026-03-04T10:00:00Z").unwrap(),
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("render_notification", |b| b.iter(|| concordat_vcs::render(black_box(&event), &cx).unwrap()));
    group.finish();
}

criterion_group!(vcs, benches);
criterion_main!(vcs);
