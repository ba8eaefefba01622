//! Fuzzes FHIR `ingest` with arbitrary bytes: it must never panic; every event it accepts must pass the
//! canonical schema; and no warning or problem it reports may quote the payload (checked with the test NHS
//! number the seeds carry).

#![no_main]

use std::sync::LazyLock;

use concordat_episode::{AgencyId, AgencyKind, IngestContext, IngestError, Timestamp, validate};
use concordat_nhs_fhir::{NhsFhirConfig, ingest};
use libfuzzer_sys::fuzz_target;

static CONTEXT: LazyLock<IngestContext> = LazyLock::new(|| IngestContext {
    agency: AgencyId::new("northvale-mh").expect("a valid agency id"),
    agency_kind: AgencyKind::Nhs,
    content_type: "application/fhir+json".to_owned(),
    received_at: Timestamp::parse("2026-03-21T12:00:00Z").expect("a valid timestamp"),
});

static CONFIG: LazyLock<NhsFhirConfig> = LazyLock::new(NhsFhirConfig::default);

/// A value the seed payloads carry that no message may repeat.
const PERSONAL: &str = "9990000018";

fuzz_target!(|data: &[u8]| {
    match ingest(data, &CONTEXT, &CONFIG) {
        Ok(ingested) => {
            assert!(!ingested.events.is_empty(), "an accepted payload yields at least one event");
            for event in &ingested.events {
                let json = serde_json::to_value(event).expect("events serialize");
                assert!(validate(&json).is_ok(), "an accepted payload produced a schema-invalid event");
            }
            for warning in &ingested.warnings {
                assert!(!warning.detail.contains(PERSONAL), "a warning quotes the payload");
            }
        }
        Err(IngestError::Invalid(problems)) => {
            for problem in &problems {
                assert!(!problem.detail.contains(PERSONAL), "a problem quotes the payload");
            }
        }
        Err(_) => {}
    }
});
