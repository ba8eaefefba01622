//! The adapter's configuration: its documented defaults, and what replacing them changes.

#![allow(clippy::unwrap_used, reason = "test code: an unwrap that fails is the test failing")]

mod common;

use concordat_episode::{IngestError, RiskFactor};
use concordat_vcs::{Concern, VcsConfig};

const CONTACT: &[u8] = br#"{"contact_id": "SH-1", "service": "safe_haven", "contact_date": "2026-03-01",
  "contact_time": "21:40", "consent_status": "not_sought", "concerns": ["loneliness", "self_harm"], "risk": "low",
  "referral_to": "northvale-mh"}"#;

fn ingest(config: &VcsConfig) -> Result<Vec<concordat_episode::CrisisEvent>, IngestError> {
    concordat_vcs::ingest(CONTACT, &common::ingest_context("safe-haven", "application/json"), config)
}

#[test]
fn defaults_follow_the_documented_table() {
    let config = VcsConfig::default();
    assert_eq!(config.concern_factors.len(), 9);
    assert_eq!(config.concern_factors.get(&Concern::SuicidalThoughts), Some(&RiskFactor::SuicidalIdeation));
    assert_eq!(config.concern_factors.get(&Concern::Loneliness), None);
    let events = ingest(&config).unwrap();
    assert_eq!(events[0].risk.as_ref().unwrap().factors, vec![RiskFactor::SelfHarm]);
}

#[test]
fn a_configured_table_and_partner_list_apply() {
    let config: VcsConfig = serde_json::from_str(
        r#"{"system": "Safe Haven sheet", "concern_factors": {"loneliness": "safeguarding_adult"},
            "referral_agencies": ["northvale-acute"]}"#,
    )
    .unwrap();
    let error = ingest(&config).unwrap_err();
    assert_eq!(error.to_string(), "/referral_to: is not an agency this service is configured to refer to");

    let config =
        VcsConfig { referral_agencies: vec![concordat_episode::AgencyId::new("northvale-mh").unwrap()], ..config };
    let events = ingest(&config).unwrap();
    assert_eq!(events[0].source.system, "Safe Haven sheet");
    assert_eq!(events[0].risk.as_ref().unwrap().factors, vec![RiskFactor::SafeguardingAdult]);
}

#[test]
fn unknown_config_keys_are_refused() {
    let result: Result<VcsConfig, _> = serde_json::from_str(r#"{"concern_factor": {}}"#);
    assert!(result.is_err());
    let result: Result<VcsConfig, _> = serde_json::from_str(r#"{"concern_factors": {"lonely": "self_harm"}}"#);
    assert!(result.is_err());
}
