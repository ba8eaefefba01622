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
use crate::config::GatewayConfig;

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
    pub(crate) adapters: AdapterConfigs,
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) topology: Topology,
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
    /// The first [`GatewayError`]: an agency the policy does not list, a digest listed for two agencies, a
    /// zero limit.
    pub fn new(
        config: GatewayConfig,
        policy: &Policy,
        adapters: AdapterConfigs,
        publisher: Arc<Publisher>,
        topology: Topology,
    ) -> Result<Self, GatewayError> {
        let (parties, tokens) = access(&config, policy)?;
        for (agency, party) in &parties {
            if tokens.has_token(agency) {
                info!(%agency, format = %party.format, "Agency may post over HTTP.");
            } else {
                info!(%agency, format = %party.format, "Agency has no bearer token: it cannot post over HTTP, only over AMQP.");
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                body_limit_bytes: config.body_limit_bytes,
                max_events: config.max_events_per_payload,
                request_timeout: Duration::from_millis(config.request_timeout_ms),
                parties,
                tokens,
                adapters,
                publisher,
                topology,
            }),
        })
    }

    /// The HTTP ingest routes with their layers: `POST /v1/agencies/{agency}/events`. Serve it on `listen`.
    pub fn router(&self) -> Router {
        crate::http::router(self.clone())
    }

    /// The agencies that may post over HTTP (those with at least one token), in id order.
    pub fn http_agencies(&self) -> Vec<AgencyId> {
        self.inner.parties.keys().filter(|agency| self.inner.tokens.has_token(agency)).cloned().collect()
    }
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
            let entry =
                config.agencies.entry(id(agency)).or_insert(AgencyAccess { token_sha256: Vec::new(), format: None });
            entry.token_sha256.push(Sha256Hex::digest(token.as_bytes()));
        }
        config
    }

    #[test]
    fn every_agency_of_the_policy_gets_a_format_and_only_configured_ones_a_token() {
        let mut config = access_for(&[("northvale-police", "p1"), ("northvale-police", "p2"), ("safe-haven", "s")]);
        config
            .agencies
            .insert(id("northvale-council"), AgencyAccess { token_sha256: Vec::new(), format: Some(Format::NhsFhir) });
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
        let message = GatewayError::UnknownAgency { agency: id("northvale-fire") }.to_string();
        assert_eq!(message, "gateway.agencies.northvale-fire: the sharing policy has no agency `northvale-fire`");
    }
}
