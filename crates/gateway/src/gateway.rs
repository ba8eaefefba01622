//! The [`Gateway`]: the `[gateway]` configuration checked against the sharing policy, plus the adapters'
//! tables, the confirmed publisher and the topology, shared by the HTTP and AMQP ingest paths.
//!
//! Building one checks everything once and reads no file; serving HTTP is [`crate::http`]'s job, consuming
//! `concordat.ingest` is [`crate::amqp`]'s.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use concordat_bus::{Publisher, Topology};
use concordat_episode::{AgencyId, AgencyKind};
use concordat_formats::{AdapterConfigs, Format};
use concordat_policy::Policy;
use tracing::info;

use crate::auth::TokenTable;
use crate::certificates::CertificateTable;
use crate::config::GatewayConfig;
use crate::listener::ClientCertificates;
use crate::rate::{Rate, RateLimits};

/// Why the `[gateway]` section cannot be used with the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// `[gateway.agencies.{agency}]` names an agency the sharing policy does not list.
    #[error("gateway.agencies.{agency}: the sharing policy has no agency `{agency}`")]
    UnknownAgency {
        /// The configured id.
        agency: AgencyId,
    },
    /// One token digest is listed for two agencies, so a caller holding it could not be told apart.
    #[error("gateway.agencies.{second}.token_sha256[{index}]: the same digest is listed for `{first}`")]
    SharedToken {
        /// The agency listed first.
        first: AgencyId,
        /// The agency listed second.
        second: AgencyId,
        /// The digest's position in the second agency's list.
        index: usize,
    },
    /// One client certificate is pinned for two agencies, so a caller presenting it could not be told apart.
    #[error("gateway.agencies.{second}.client_cert_sha256[{index}]: the same digest is listed for `{first}`")]
    SharedCertificate {
        /// The agency listed first.
        first: AgencyId,
        /// The agency listed second.
        second: AgencyId,
        /// The digest's position in the second agency's list.
        index: usize,
    },
    /// A rate limit of zero requests, or a burst of zero.
    #[error("{key} must be at least 1")]
    ZeroRateLimit {
        /// The key: `gateway.rate_limit_per_minute`, `gateway.rate_limit_burst` or an agency's own.
        key: String,
    },
    /// `body_limit_bytes` is zero.
    #[error("gateway.body_limit_bytes must be at least 1")]
    ZeroBodyLimit,
    /// `max_events_per_payload` is zero.
    #[error("gateway.max_events_per_payload must be at least 1")]
    ZeroEventCap,
    /// `request_timeout_ms` is zero.
    #[error("gateway.request_timeout_ms must be at least 1")]
    ZeroRequestTimeout,
}

/// An agency of the policy as the gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Party {
    pub(crate) kind: AgencyKind,
    pub(crate) format: Format,
}

pub(crate) struct Inner {
    pub(crate) body_limit_bytes: usize,
    pub(crate) max_events: usize,
    pub(crate) request_timeout: Duration,
    /// Every agency of the policy: HTTP callers are the ones with a token, AMQP senders may be any.
    pub(crate) parties: BTreeMap<AgencyId, Party>,
    pub(crate) tokens: TokenTable,
    pub(crate) certificates: CertificateTable,
    pub(crate) rates: RateLimits,
    pub(crate) adapters: AdapterConfigs,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) topology: Topology,
    /// Who may publish as an agency over AMQP.
    pub(crate) amqp: crate::amqp::AmqpIngestConfig,
}

/// The ingest gateway: cheap to clone, one per process. See the crate documentation for how it is served.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("body_limit_bytes", &self.inner.body_limit_bytes)
            .field("request_timeout", &self.inner.request_timeout)
            .field("agencies", &self.inner.parties.len())
            .field("tokens", &self.inner.tokens)
            .field("certificates", &self.inner.certificates)
            .field("topology", &self.inner.topology)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Checks `config` against `policy` and builds the gateway. Events are published with `publisher` to
    /// `topology`'s events exchange; the AMQP path reads `topology`'s ingest queue.
    ///
    /// Logs, once, each agency of the policy that has no token: it cannot post over HTTP, only over AMQP.
    ///
    /// # Errors
    /// The first [`GatewayError`]: an agency the policy does not list, a token or certificate digest listed
    /// for two agencies, a zero limit.
    pub fn new(
        config: GatewayConfig,
        policy: &Policy,
        adapters: AdapterConfigs,
        publisher: Arc<Publisher>,
        topology: Topology,
    ) -> Result<Self, GatewayError> {
        let (parties, tokens) = access(&config, policy)?;
        let certificates = certificates(&config)?;
        let rates = rate_limits(&config)?;
        for (agency, party) in &parties {
            let (token, certificate) = (tokens.has_token(agency), certificates.has_certificate(agency));
            if token || certificate {
                info!(%agency, format = %party.format, token, certificate, "Agency may post over HTTP.");
            } else {
                info!(%agency, format = %party.format, "Agency has no bearer token or client certificate: it cannot post over HTTP, only over AMQP.");
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                body_limit_bytes: config.body_limit_bytes,
                max_events: config.max_events_per_payload,
                request_timeout: Duration::from_millis(config.request_timeout_ms),
                parties,
                tokens,
                certificates,
                rates,
                adapters,
                publisher,
                topology,
                amqp: config.amqp,
            }),
        })
    }

    /// The HTTP ingest routes with their layers: `POST /v1/agencies/{agency}/events`. Serve it on `listen`.
    pub fn router(&self) -> Router {
        crate::http::router(self.clone())
    }

    /// The agencies that may post over HTTP (those with at least one token or client certificate), in id
    /// order.
    pub fn http_agencies(&self) -> Vec<AgencyId> {
        let inner = &self.inner;
        let may_post =
            |agency: &&AgencyId| inner.tokens.has_token(agency) || inner.certificates.has_certificate(agency);
        inner.parties.keys().filter(may_post).cloned().collect()
    }

    /// The client certificates of every agency, for the ingest listener's TLS acceptor
    /// ([`crate::listener::TlsIdentity::acceptor`]); empty when no agency has one.
    pub fn client_certificates(&self) -> ClientCertificates {
        self.inner.certificates.pins()
    }
}

/// The pinned client certificates of `config`'s agencies (checked against the policy by [`access`]).
fn certificates(config: &GatewayConfig) -> Result<CertificateTable, GatewayError> {
    let mut table = CertificateTable::default();
    for (agency, access) in &config.agencies {
        for (index, digest) in access.client_cert_sha256.iter().enumerate() {
            let mut bytes = [0_u8; 32];
            // `Sha256Hex` holds exactly 64 hex digits, so decoding always succeeds.
            if hex::decode_to_slice(digest.as_str(), &mut bytes).is_err() {
                continue;
            }
            if let Some(first) = table.insert(bytes, agency) {
                return Err(GatewayError::SharedCertificate { first, second: agency.clone(), index });
            }
        }
    }
    Ok(table)
}

/// The default rate and each agency's own, checked.
fn rate_limits(config: &GatewayConfig) -> Result<RateLimits, GatewayError> {
    let zero = |key: String| GatewayError::ZeroRateLimit { key };
    if config.rate_limit_burst == 0 {
        return Err(zero("gateway.rate_limit_burst".to_owned()));
    }
    let default = Rate::new(config.rate_limit_per_minute, config.rate_limit_burst)
        .ok_or_else(|| zero("gateway.rate_limit_per_minute".to_owned()))?;
    let mut own = BTreeMap::new();
    for (agency, access) in &config.agencies {
        if let Some(per_minute) = access.rate_limit_per_minute {
            let rate = Rate::new(per_minute, config.rate_limit_burst)
                .ok_or_else(|| zero(format!("gateway.agencies.{agency}.rate_limit_per_minute")))?;
            own.insert(agency.clone(), rate);
        }
    }
    Ok(RateLimits::new(default, own))
}

/// Every agency of the policy with its format, and the token table, from a checked `config`.
fn access(config: &GatewayConfig, policy: &Policy) -> Result<(BTreeMap<AgencyId, Party>, TokenTable), GatewayError> {
    if config.body_limit_bytes == 0 {
        return Err(GatewayError::ZeroBodyLimit);
    }
    if config.max_events_per_payload == 0 {
        return Err(GatewayError::ZeroEventCap);
    }
    if config.request_timeout_ms == 0 {
        return Err(GatewayError::ZeroRequestTimeout);
    }
    let mut parties = BTreeMap::new();
    for agency in policy.agencies() {
        let format = config
            .agencies
            .get(&agency.id)
            .and_then(|access| access.format)
            .unwrap_or_else(|| Format::default_for(agency.kind));
        parties.insert(agency.id.clone(), Party { kind: agency.kind, format });
    }
    let mut tokens = TokenTable::default();
    let mut holders: BTreeMap<String, AgencyId> = BTreeMap::new();
    for (agency, access) in &config.agencies {
        if !parties.contains_key(agency) {
            return Err(GatewayError::UnknownAgency { agency: agency.clone() });
        }
        for (index, digest) in access.token_sha256.iter().enumerate() {
            match holders.get(digest.as_str()) {
                Some(first) if first != agency => {
                    return Err(GatewayError::SharedToken { first: first.clone(), second: agency.clone(), index });
                }
                // Listed twice for the same agency: harmless.
                Some(_) => continue,
                None => {}
            }
            holders.insert(digest.as_str().to_owned(), agency.clone());
            let mut bytes = [0_u8; 32];
            // `Sha256Hex` holds exactly 64 hex digits, so decoding always succeeds.
            if hex::decode_to_slice(digest.as_str(), &mut bytes).is_ok() {
                tokens.insert(bytes, agency.clone());
            }
        }
    }
    Ok((parties, tokens))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use concordat_episode::Sha256Hex;

    use super::*;
    use crate::config::AgencyAccess;

    fn policy() -> Policy {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policies/northvale.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        concordat_policy::load(&path, &text).unwrap()
    }

    fn id(agency: &str) -> AgencyId {
        AgencyId::new(agency).unwrap()
    }

    fn access_for(tokens: &[(&str, &str)]) -> GatewayConfig {
        let mut config = GatewayConfig::default();
        for (agency, token) in tokens {
            let entry = config.agencies.entry(id(agency)).or_insert(AgencyAccess::default());
            entry.token_sha256.push(Sha256Hex::digest(token.as_bytes()));
        }
        config
    }

    #[test]
    fn every_agency_of_the_policy_gets_a_format_and_only_configured_ones_a_token() {
        let mut config = access_for(&[("northvale-police", "p1"), ("northvale-police", "p2"), ("safe-haven", "s")]);
        config
            .agencies
            .insert(id("northvale-council"), AgencyAccess { format: Some(Format::NhsFhir), ..AgencyAccess::default() });
        let (parties, tokens) = access(&config, &policy()).unwrap();
        assert_eq!(parties.len(), policy().agencies().len());
        assert_eq!(parties[&id("northvale-police")].format, Format::Police);
        assert_eq!(parties[&id("northvale-ambulance")].format, Format::NhsFhir);
        assert_eq!(parties[&id("listening-line")].format, Format::Vcs);
        assert_eq!(parties[&id("northvale-council")].format, Format::NhsFhir, "configured, not by kind");
        assert_eq!(tokens.agency_of(b"p2"), Some(&id("northvale-police")));
        assert_eq!(tokens.agency_of(b"s"), Some(&id("safe-haven")));
        assert!(!tokens.has_token(&id("northvale-council")));
    }

    #[test]
    fn configurations_that_cannot_work_are_refused() {
        let policy = policy();
        assert_eq!(
            access(&access_for(&[("northvale-fire", "f")]), &policy).err(),
            Some(GatewayError::UnknownAgency { agency: id("northvale-fire") })
        );
        assert_eq!(
            access(&access_for(&[("northvale-police", "same"), ("safe-haven", "x"), ("safe-haven", "same")]), &policy)
                .err(),
            Some(GatewayError::SharedToken { first: id("northvale-police"), second: id("safe-haven"), index: 1 })
        );
        assert!(access(&access_for(&[("safe-haven", "same"), ("safe-haven", "same")]), &policy).is_ok());
        let zero_limit = GatewayConfig { body_limit_bytes: 0, ..GatewayConfig::default() };
        assert_eq!(access(&zero_limit, &policy).err(), Some(GatewayError::ZeroBodyLimit));
        let zero_timeout = GatewayConfig { request_timeout_ms: 0, ..GatewayConfig::default() };
        assert_eq!(access(&zero_timeout, &policy).err(), Some(GatewayError::ZeroRequestTimeout));
        let mut shared = GatewayConfig::default();
        for agency in ["northvale-police", "safe-haven"] {
            let digest = Sha256Hex::digest(b"one certificate's DER");
            shared
                .agencies
                .insert(id(agency), AgencyAccess { client_cert_sha256: vec![digest], ..AgencyAccess::default() });
        }
        assert_eq!(
            certificates(&shared).err(),
            Some(GatewayError::SharedCertificate { first: id("northvale-police"), second: id("safe-haven"), index: 0 })
        );
        let zero_rate = GatewayConfig { rate_limit_per_minute: 0, ..GatewayConfig::default() };
        assert_eq!(
            rate_limits(&zero_rate).err().map(|error| error.to_string()).as_deref(),
            Some("gateway.rate_limit_per_minute must be at least 1")
        );
        let zero_burst = GatewayConfig { rate_limit_burst: 0, ..GatewayConfig::default() };
        assert!(rate_limits(&zero_burst).is_err());
        let mut zero_own = GatewayConfig::default();
        zero_own
            .agencies
            .insert(id("safe-haven"), AgencyAccess { rate_limit_per_minute: Some(0), ..AgencyAccess::default() });
        assert_eq!(
            rate_limits(&zero_own).err().map(|error| error.to_string()).as_deref(),
            Some("gateway.agencies.safe-haven.rate_limit_per_minute must be at least 1")
        );
        let message = GatewayError::UnknownAgency { agency: id("northvale-fire") }.to_string();
        assert_eq!(message, "gateway.agencies.northvale-fire: the sharing policy has no agency `northvale-fire`");
    }
}
