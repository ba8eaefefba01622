//! The `[delivery]` configuration section: each agency's channel (`amqp`, `webhook`, `fhir`, `portal`), its
//! endpoint and secret file, and the worker's timeout and retry schedule, checked once into
//! [`Deliveries`].
//!
//! ```toml
//! [delivery]
//! retry_initial_ms = 1000
//! retry_max_ms = 60000
//!
//! [delivery.agencies.northvale-police]
//! channel = "webhook"
//! webhook_url = "https://rms.northvale-police.example/concordat"
//! webhook_secret_file = "/etc/concordat/northvale-police.whsec"
//!
//! [delivery.agencies.northvale-mh]
//! channel = "fhir"
//! fhir_base = "https://fhir.northvale-mh.example/R4"
//! ```
//!
//! Secrets are never inline: a webhook's secret is read from its file at start. This module does not know
//! which agencies exist; [`DeliveryConfig::validate`] is given the policy's list.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use concordat_bus::{Backoff, InvalidBackoff};
use concordat_nhs_fhir::push::{PushConfig, PushMode};
use serde::Deserialize;

use crate::webhook::{WebhookSecret, WebhookSecretError};

/// The `[delivery]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Each agency's channel, by agency id (`[delivery.agencies.northvale-police]`). An agency not listed
    /// receives over AMQP: it reads `agency.{id}.inbox` itself.
    #[serde(default)]
    pub agencies: BTreeMap<String, AgencyDelivery>,
    /// Timeout of one push attempt, in milliseconds. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The wait before the first retry of a failed push, in milliseconds; it doubles on each failure.
    /// Default 1000.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// The longest wait between retries, in milliseconds. Default 60000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_retry_initial_ms() -> u64 {
    1_000
}
fn default_retry_max_ms() -> u64 {
    60_000
}

impl Default for DeliveryConfig {
    /// No agency pushed to; the documented timeout and schedule.
    fn default() -> Self {
        Self {
            agencies: BTreeMap::new(),
            timeout_ms: default_timeout_ms(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
        }
    }
}

/// How an agency receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The agency's system consumes `agency.{id}.inbox` over AMQP (the default).
    #[default]
    Amqp,
    /// Each message is POSTed to `webhook_url`, signed per Standard Webhooks.
    Webhook,
    /// Each FHIR message Bundle is POSTed to `{fhir_base}/$process-message`.
    Fhir,
    /// Held in the inbox for the agency portal; the worker leaves the inbox alone.
    Portal,
}

impl Channel {
    /// `amqp`, `webhook`, `fhir` or `portal`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Amqp => "amqp",
            Channel::Webhook => "webhook",
            Channel::Fhir => "fhir",
            Channel::Portal => "portal",
        }
    }
}

/// One agency's `[delivery.agencies.{id}]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyDelivery {
    /// `amqp` (default), `webhook`, `fhir` or `portal`.
    #[serde(default)]
    pub channel: Channel,
    /// For `webhook`: the `http` or `https` URL each message is POSTed to.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// For `webhook`: a file holding the shared secret, `whsec_` + base64 of at least 16 random bytes
    /// (`printf 'whsec_%s\n' "$(head -c 32 /dev/urandom | base64)"`), readable by Concordat only.
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
    /// For `fhir`: the FHIR server's base URL (`https://fhir.northvale-mh.example/R4`); messages go to
    /// `{fhir_base}/$process-message`.
    #[serde(default)]
    pub fhir_base: Option<String>,
}

/// Why the `[delivery]` section cannot be used. Never quotes a secret or a URL (which may hold credentials).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryConfigError {
    /// The agency is not one the policy lists.
    #[error("delivery.agencies.{agency}: no such agency in the policy")]
    UnknownAgency {
        /// The agency id.
        agency: String,
    },
    /// The channel needs a key that is missing.
    #[error("delivery.agencies.{agency}: channel `{channel}` needs `{key}`")]
    MissingKey {
        /// The agency id.
        agency: String,
        /// The channel.
        channel: &'static str,
        /// The missing key.
        key: &'static str,
    },
    /// A key that the channel does not use is set (most likely the channel is wrong).
    #[error("delivery.agencies.{agency}: `{key}` does not apply to channel `{channel}`")]
    UnusedKey {
        /// The agency id.
        agency: String,
        /// The channel.
        channel: &'static str,
        /// The key.
        key: &'static str,
    },
    /// A URL is not an absolute `http` or `https` URL.
    #[error("delivery.agencies.{agency}: `{key}` must be an absolute http or https URL")]
    InvalidUrl {
        /// The agency id.
        agency: String,
        /// `webhook_url` or `fhir_base`.
        key: &'static str,
    },
    /// The secret file cannot be read.
    #[error("delivery.agencies.{agency}: webhook_secret_file {path}: {source}")]
    SecretFile {
        /// The agency id.
        agency: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The secret file holds no usable secret.
    #[error("delivery.agencies.{agency}: webhook_secret_file {path}: {source}")]
    Secret {
        /// The agency id.
        agency: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: WebhookSecretError,
    },
    /// The retry schedule is unusable.
    #[error("delivery: retry_initial_ms and retry_max_ms: {0}")]
    Backoff(#[from] InvalidBackoff),
    /// A zero timeout would fail every attempt.
    #[error("delivery: timeout_ms must be above zero")]
    ZeroTimeout,
}

/// Where one agency's messages are pushed.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A Standard Webhooks receiver.
    Webhook {
        /// The URL POSTed to.
        url: reqwest::Url,
        /// The shared secret.
        secret: WebhookSecret,
    },
    /// A FHIR server's `$process-message`, through the NHS adapter's push module (one attempt per call;
    /// the worker retries).
    Fhir(PushConfig),
}

impl Endpoint {
    /// The channel's name, `webhook` or `fhir`, as audited and logged.
    #[must_use]
    pub fn channel(&self) -> Channel {
        match self {
            Endpoint::Webhook { .. } => Channel::Webhook,
            Endpoint::Fhir(_) => Channel::Fhir,
        }
    }
}

/// One agency the worker pushes to.
#[derive(Debug, Clone)]
pub struct Push {
    /// The agency id (its inbox is `agency.{id}.inbox`).
    pub agency: String,
    /// Its endpoint.
    pub endpoint: Endpoint,
}

/// The `[delivery]` section, checked: the agencies to push to, the attempt timeout and the retry schedule.
#[derive(Debug, Clone)]
pub struct Deliveries {
    /// The agencies whose channel is `webhook` or `fhir`, in id order.
    pub pushes: Vec<Push>,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// The retry schedule, fresh: each message starts from a clone of it.
    pub retry: Backoff,
}

impl DeliveryConfig {
    /// Checks the section against the policy's `agencies` and reads each webhook's secret file.
    ///
    /// # Errors
    /// The first [`DeliveryConfigError`] found, naming the agency and key.
    pub fn validate(&self, agencies: &[String]) -> Result<Deliveries, DeliveryConfigError> {
        if self.timeout_ms == 0 {
            return Err(DeliveryConfigError::ZeroTimeout);
        }
        let retry =
            Backoff::try_new(Duration::from_millis(self.retry_initial_ms), Duration::from_millis(self.retry_max_ms))?;
        let mut pushes = Vec::new();
        for (agency, delivery) in &self.agencies {
            if !agencies.contains(agency) {
                return Err(DeliveryConfigError::UnknownAgency { agency: agency.clone() });
            }
            if let Some(endpoint) = delivery.endpoint(agency, self.timeout_ms)? {
                pushes.push(Push { agency: agency.clone(), endpoint });
            }
        }
        Ok(Deliveries { pushes, timeout: Duration::from_millis(self.timeout_ms), retry })
    }
}

impl AgencyDelivery {
    /// The endpoint the worker pushes to; `None` for `amqp` and `portal`.
    fn endpoint(&self, agency: &str, timeout_ms: u64) -> Result<Option<Endpoint>, DeliveryConfigError> {
        let channel = self.channel.as_str();
        let unused = |key| DeliveryConfigError::UnusedKey { agency: agency.to_owned(), channel, key };
        let missing = |key| DeliveryConfigError::MissingKey { agency: agency.to_owned(), channel, key };
        let webhook = self.webhook_url.is_some() || self.webhook_secret_file.is_some();
        match self.channel {
            Channel::Amqp | Channel::Portal => {
                if self.webhook_url.is_some() {
                    return Err(unused("webhook_url"));
                }
                if self.webhook_secret_file.is_some() {
                    return Err(unused("webhook_secret_file"));
                }
                if self.fhir_base.is_some() {
                    return Err(unused("fhir_base"));
                }
                Ok(None)
            }
            Channel::Webhook => {
                if self.fhir_base.is_some() {
                    return Err(unused("fhir_base"));
                }
                let url = http_url(
                    agency,
                    "webhook_url",
                    self.webhook_url.as_deref().ok_or_else(|| missing("webhook_url"))?,
                )?;
                let path = self.webhook_secret_file.as_ref().ok_or_else(|| missing("webhook_secret_file"))?;
                let secret = read_secret(agency, path)?;
                Ok(Some(Endpoint::Webhook { url, secret }))
            }
            Channel::Fhir => {
                if webhook {
                    return Err(unused(if self.webhook_url.is_some() { "webhook_url" } else { "webhook_secret_file" }));
                }
                let base = self.fhir_base.as_deref().ok_or_else(|| missing("fhir_base"))?;
                http_url(agency, "fhir_base", base)?;
                Ok(Some(Endpoint::Fhir(PushConfig {
                    base_url: base.trim_end_matches('/').to_owned(),
                    mode: PushMode::ProcessMessage,
                    timeout_ms,
                    // One attempt per call: the worker owns the retries, so that it can wait as long as the
                    // server stays down and stop at shutdown.
                    max_attempts: 1,
                    initial_backoff_ms: 1,
                    max_backoff_ms: 1,
                })))
            }
        }
    }
}

fn http_url(agency: &str, key: &'static str, text: &str) -> Result<reqwest::Url, DeliveryConfigError> {
    let invalid = || DeliveryConfigError::InvalidUrl { agency: agency.to_owned(), key };
    let url = reqwest::Url::parse(text).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid());
    }
    Ok(url)
}

fn read_secret(agency: &str, path: &PathBuf) -> Result<WebhookSecret, DeliveryConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| DeliveryConfigError::SecretFile {
        agency: agency.to_owned(),
        path: path.clone(),
        source,
    })?;
    WebhookSecret::parse(&text).map_err(|source| DeliveryConfigError::Secret {
        agency: agency.to_owned(),
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n";

    fn secret_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn parse(toml_like: serde_json::Value) -> DeliveryConfig {
        serde_json::from_value(toml_like).unwrap()
    }

    fn agencies() -> Vec<String> {
        ["northvale-police", "northvale-mh", "safe-haven"].map(str::to_owned).to_vec()
    }

    #[test]
    fn an_empty_section_pushes_nowhere_with_the_documented_defaults() {
        let config = parse(serde_json::json!({}));
        assert_eq!(config, DeliveryConfig::default());
        let deliveries = config.validate(&agencies()).unwrap();
        assert!(deliveries.pushes.is_empty());
        assert_eq!(deliveries.timeout, Duration::from_secs(10));
        assert_eq!(deliveries.retry, Backoff::try_new(Duration::from_secs(1), Duration::from_secs(60)).unwrap());
    }

    #[test]
    fn webhook_and_fhir_agencies_are_pushed_to_and_the_others_left_alone() {
        let secret = secret_file(SECRET);
        let config = parse(serde_json::json!({
            "agencies": {
                "northvale-police": {"channel": "webhook", "webhook_url": "https://rms.example/hook",
                                     "webhook_secret_file": secret.path()},
                "northvale-mh": {"channel": "fhir", "fhir_base": "https://fhir.example/R4/"},
                "safe-haven": {"channel": "portal"}
            }
        }));
        let pushes = config.validate(&agencies()).unwrap().pushes;
        assert_eq!(pushes.len(), 2);
        let Endpoint::Fhir(fhir) = &pushes[0].endpoint else { panic!("northvale-mh is pushed over FHIR") };
        assert_eq!((pushes[0].agency.as_str(), fhir.base_url.as_str()), ("northvale-mh", "https://fhir.example/R4"));
        assert_eq!((fhir.mode, fhir.max_attempts), (PushMode::ProcessMessage, 1));
        let Endpoint::Webhook { url, .. } = &pushes[1].endpoint else { panic!("the police are pushed a webhook") };
        assert_eq!(url.as_str(), "https://rms.example/hook");
    }

    fn error(agency: serde_json::Value) -> String {
        let config = parse(serde_json::json!({"agencies": {"northvale-police": agency}}));
        config.validate(&agencies()).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_name_the_agency_and_key_and_never_the_secret() {
        let secret = secret_file(SECRET);
        let path = secret.path();
        assert_eq!(
            error(serde_json::json!({"channel": "webhook", "webhook_secret_file": path})),
            "delivery.agencies.northvale-police: channel `webhook` needs `webhook_url`"
        );
        assert_eq!(
            error(serde_json::json!({"channel": "webhook", "webhook_url": "https://x.example/"})),
            "delivery.agencies.northvale-police: channel `webhook` needs `webhook_secret_file`"
        );
        assert_eq!(
            error(serde_json::json!({"channel": "fhir", "fhir_base": "ftp://user:pw@x.example/"})),
            "delivery.agencies.northvale-police: `fhir_base` must be an absolute http or https URL"
        );
        assert_eq!(
            error(serde_json::json!({"fhir_base": "https://x.example/"})),
            "delivery.agencies.northvale-police: `fhir_base` does not apply to channel `amqp`"
        );
        let short = secret_file("whsec_c2hvcnQ=");
        let message = error(serde_json::json!({"channel": "webhook", "webhook_url": "https://x.example/",
                                               "webhook_secret_file": short.path()}));
        assert!(message.ends_with("at least 16 bytes, not 5"), "{message}");
        assert!(!message.contains("c2hvcnQ"), "{message}");
        let config = parse(serde_json::json!({"agencies": {"nobody": {"channel": "portal"}}}));
        assert!(matches!(config.validate(&agencies()), Err(DeliveryConfigError::UnknownAgency { .. })));
        let config = parse(serde_json::json!({"retry_initial_ms": 0}));
        assert!(matches!(config.validate(&agencies()), Err(DeliveryConfigError::Backoff(_))));
        assert!(
            serde_json::from_value::<DeliveryConfig>(serde_json::json!({"agencies": {"x": {"chanel": "fhir"}}}))
                .is_err()
        );
    }
}
