//! The sample area's files agree: every agency of `deploy/local/policies/northvale.yaml` has one development
//! token in `deploy/local/dev-tokens.env`, and `deploy/local/concordat.toml` lists that token's SHA-256 for
//! that agency and no other, so the two files cannot drift apart.

#![allow(clippy::unwrap_used, reason = "in tests a failed unwrap is a failed test")]

mod common;

use std::collections::BTreeSet;

use common::{dev_tokens, policy, sample_gateway_config, token_variable};
use concordat_episode::Sha256Hex;
use figment::Figment;
use figment::providers::{Format as _, Toml};

#[test]
fn every_agency_has_a_dev_token_whose_digest_is_configured() {
    let tokens = dev_tokens();
    let config = sample_gateway_config();
    let policy = policy();
    let agencies: BTreeSet<String> = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
    let variables: BTreeSet<String> = agencies.iter().map(|agency| token_variable(agency)).collect();
    assert_eq!(tokens.keys().cloned().collect::<BTreeSet<_>>(), variables, "one token per agency of the policy");
    assert_eq!(
        config.agencies.keys().map(ToString::to_string).collect::<BTreeSet<_>>(),
        agencies,
        "concordat.toml lists every agency of the policy"
    );
    for (agency, access) in &config.agencies {
        let token = &tokens[&token_variable(agency.as_str())];
        assert_eq!(access.token_sha256, vec![Sha256Hex::digest(token.as_bytes())], "{agency}");
    }
    let distinct: BTreeSet<&String> = tokens.values().collect();
    assert_eq!(distinct.len(), tokens.len(), "every agency has its own token");
    for token in tokens.values() {
        assert!(token.len() >= 40, "a development token is long enough to look like a real one");
    }
}

#[test]
fn the_sample_configuration_uses_only_known_sections() {
    // The binary's `Config` (crates/concordat/src/config.rs) refuses unknown keys; these are its keys plus the
    // sections it takes from the gateway and the adapters.
    let known = [
        "amqp_url",
        "store_url",
        "listen",
        "admin_listen",
        "policy",
        "otlp_endpoint",
        "admin_token_file",
        "bus",
        "gateway",
        "adapters",
        "subject_key_file",
        "feedback_due_hours",
        "episode_quiet_hours",
        "retention",
        "amqp_ca_file",
        "management_url",
        "admin_hosts",
        "tls_cert",
        "tls_key",
        "listeners",
        "delivery",
    ];
    let figment = Figment::from(Toml::file_exact(common::root().join("deploy/local/concordat.toml")));
    let value: figment::value::Dict = figment.extract().expect("concordat.toml is TOML");
    for key in value.keys() {
        assert!(known.contains(&key.as_str()), "unknown top-level key `{key}` in deploy/local/concordat.toml");
    }
    let policy_path: String = figment.extract_inner("policy").expect("a policy key");
    assert!(common::root().join(policy_path).is_file(), "the policy file exists");
}
