//! The `[gateway]` section of Concordat's configuration: request limits, rate limits and each agency's
//! access (bearer token digests, pinned client certificates).
//!
//! This module only describes settings; checking them against the sharing policy is [`crate::Gateway::new`]'s
//! job, and loading the file and the `CONCORDAT_*` overrides is the binary's. It holds no secret: an agency's
//! bearer tokens appear here only as SHA-256 digests, and client certificates (not secret) likewise.

use std::collections::BTreeMap;

use concordat_episode::{AgencyId, Sha256Hex};
use concordat_formats::Format;
use serde::Deserialize;

/// How the gateway takes native payloads from agencies.
///
/// Every field has a default, so an empty section is valid (and lets no agency post over HTTP).
///
/// ```toml
/// [gateway]
/// body_limit_bytes = 1048576
/// max_events_per_payload = 1000
/// request_timeout_ms = 10000
/// rate_limit_per_minute = 600
/// rate_limit_burst = 60
///
/// [gateway.agencies.northvale-police]
/// token_sha256 = ["5c1f…"]     # sha256 of the bearer token; list two while rotating
/// client_cert_sha256 = ["e3b0…"]  # sha256 of a client certificate's DER (needs tls_cert and tls_key)
/// rate_limit_per_minute = 1200 # optional; this agency's own rate
///
/// [gateway.agencies.northvale-council]
/// token_sha256 = ["9a0e…"]
/// format = "vcs"               # optional; defaults by the agency's kind in the policy
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The largest request body accepted, in bytes; a larger one gets `413`. Default 1 MiB, which holds a
    /// FHIR Bundle of a few hundred resources or a day's CSV export of a busy helpline.
    #[serde(default = "default_body_limit_bytes")]
    pub body_limit_bytes: usize,

    /// The most canonical events one payload may yield, over HTTP or AMQP; a payload that yields more is
    /// refused whole (`413`, or a dead letter) and nothing of it is queued. Every event costs a decision and
    /// an audit record per agency, which are kept for good, so one token must not be able to grow them
    /// without bound. Default 1000: a day's export of a busy service; split bigger ones.
    #[serde(default = "default_max_events_per_payload")]
    pub max_events_per_payload: usize,

    /// How long one request may take, from the first byte of its body to RabbitMQ's confirm, in
    /// milliseconds. Past it the caller gets `503` with `Retry-After` and should resubmit: event ids are
    /// deterministic, so a resubmission that overlaps a late confirm is deduplicated downstream. Keep it
    /// above `[bus] publish_timeout_ms` so that a slow broker is reported as such. Default 10000.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,

    /// How many requests each agency may make per minute, on average, before it gets `429 Too Many
    /// Requests` with `Retry-After`. Each agency has its own allowance, refilled continuously; requests
    /// without valid credentials are refused before they count. Default 600 (10 a second): far above what a
    /// force's or a trust's system sends in a crisis-care area, low enough that a runaway client cannot
    /// crowd out the others.
    #[serde(default = "default_rate_limit_per_minute")]
    pub rate_limit_per_minute: u32,

    /// How many requests an agency may make at once, beyond its rate, after a quiet spell (a backlog sent
    /// when its system reconnects). Default 60.
    #[serde(default = "default_rate_limit_burst")]
    pub rate_limit_burst: u32,

    /// Agencies that may post over HTTP, by agency id. Every id must name an agency of the sharing policy.
    /// An agency of the policy that is absent here can still integrate over AMQP (`concordat.ingest`).
    #[serde(default)]
    pub agencies: BTreeMap<AgencyId, AgencyAccess>,

    /// Who may publish as an agency over AMQP (`[gateway.amqp]`): agency users' names, and whether a
    /// message without `user_id` is trusted by its routing key (development only).
    #[serde(default)]
    pub amqp: crate::amqp::AmqpIngestConfig,
}

/// One agency's HTTP access: by bearer token, by client certificate, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyAccess {
    /// The lower-case hex SHA-256 of each bearer token the agency may use. Several allow rotation: add the
    /// new token's digest, move the agency over, then remove the old one. Generate a token with
    /// `openssl rand -base64 32` and its digest with `printf %s "$TOKEN" | sha256sum`.
    #[serde(default)]
    pub token_sha256: Vec<Sha256Hex>,

    /// The lower-case hex SHA-256 of each client certificate (its DER encoding) that authenticates the
    /// agency over HTTPS (mutual TLS), beside or instead of a bearer token. Needs `tls_cert` and `tls_key`.
    /// A request over a connection with one of these certificates is the agency's, with no
    /// `Authorization` header needed; a certificate not listed for any agency fails the TLS handshake.
    /// Get a digest with `openssl x509 -in agency.pem -outform DER | sha256sum`; list two while rotating.
    #[serde(default)]
    pub client_cert_sha256: Vec<Sha256Hex>,

    /// The agency's own `rate_limit_per_minute`, when it needs more (or less) than the default.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,

    /// The native format the agency posts (`nhs-fhir`, `police`, `vcs`); by default the one its kind in the
    /// policy speaks (`Format::default_for`). Also used for its AMQP payloads.
    #[serde(default)]
    pub format: Option<Format>,
}

fn default_body_limit_bytes() -> usize {
    1024 * 1024
}

fn default_max_events_per_payload() -> usize {
    1000
}

fn default_request_timeout_ms() -> u64 {
    10_000
}

fn default_rate_limit_per_minute() -> u32 {
    600
}

fn default_rate_limit_burst() -> u32 {
    60
}

impl Default for GatewayConfig {
    /// The documented defaults, with no agency allowed over HTTP.
    fn default() -> Self {
        Self {
            body_limit_bytes: default_body_limit_bytes(),
            max_events_per_payload: default_max_events_per_payload(),
            request_timeout_ms: default_request_timeout_ms(),
            rate_limit_per_minute: default_rate_limit_per_minute(),
            rate_limit_burst: default_rate_limit_burst(),
            agencies: BTreeMap::new(),
            amqp: crate::amqp::AmqpIngestConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_takes_the_documented_defaults() {
        let config: GatewayConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, GatewayConfig::default());
        assert_eq!(config.body_limit_bytes, 1_048_576);
        assert_eq!(config.request_timeout_ms, 10_000);
        assert_eq!((config.rate_limit_per_minute, config.rate_limit_burst), (600, 60));
    }

    #[test]
    fn agencies_carry_digests_and_an_optional_format() {
        let digest = "a".repeat(64);
        let json = format!(
            r#"{{"agencies": {{"northvale-police": {{"token_sha256": ["{digest}"]}},
                "northvale-council": {{"token_sha256": [], "format": "vcs"}}}}}}"#
        );
        let config: GatewayConfig = serde_json::from_str(&json).unwrap();
        let police = &config.agencies[&AgencyId::new("northvale-police").unwrap()];
        assert_eq!(police.token_sha256, vec![Sha256Hex::new(digest).unwrap()]);
        assert_eq!(police.format, None);
        assert_eq!(config.agencies[&AgencyId::new("northvale-council").unwrap()].format, Some(Format::Vcs));
    }

    #[test]
    fn bad_values_are_refused_when_read() {
        for json in [
            r#"{"body_limit": 10}"#,
            r#"{"agencies": {"Northvale Police": {}}}"#,
            r#"{"agencies": {"northvale-police": {"token_sha256": ["not-hex"]}}}"#,
            r#"{"agencies": {"northvale-police": {"token": "plain-text-secret"}}}"#,
            r#"{"agencies": {"northvale-police": {"format": "hl7v2"}}}"#,
            r#"{"agencies": {"northvale-police": {"client_cert_sha256": ["AB"]}}}"#,
            r#"{"agencies": {"northvale-police": {"client_cert": "-----BEGIN CERTIFICATE-----"}}}"#,
        ] {
            assert!(serde_json::from_str::<GatewayConfig>(json).is_err(), "{json}");
        }
    }
}
