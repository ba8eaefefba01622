//! The `[bus]` section of Concordat's configuration, and the redaction of AMQP URLs for messages.
//!
//! This module only describes and checks settings; it opens no connection. Loading the file and applying
//! `CONCORDAT_*` overrides is the binary's job.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::backoff::{Backoff, InvalidBackoff};

/// How Concordat talks to RabbitMQ.
///
/// Every field has a default, so an empty section is valid. Check a loaded value with
/// [`BusConfig::validate`] before use; [`crate::Publisher::connect`] and [`crate::consume`] do so too.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// The AMQP 0-9-1 URL of the broker, user and password included (`CONCORDAT_AMQP_URL`). The virtual host
    /// is URL-encoded: `%2f` is `/`. Messages and logs show it with the password replaced by `***`.
    #[serde(default = "default_amqp_url")]
    pub amqp_url: String,

    /// A PEM file of CA certificates that an `amqps://` broker's certificate may chain to, besides the
    /// system's trust store: a private CA (`CONCORDAT_AMQP_CA_FILE`). Unset, only the system's roots are
    /// trusted. Read again on every connection, so a renewed file is picked up by the next reconnect.
    #[serde(default)]
    pub amqp_ca_file: Option<PathBuf>,

    /// How many unacknowledged messages RabbitMQ may hand one consumer at a time (`basic.qos`). Bounds the
    /// work in hand and so the redeliveries after a crash.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,

    /// How long a publish may take, from reconnecting if need be to the broker's confirm, in milliseconds.
    /// Past it the publish fails with [`crate::PublishError::Timeout`] and the caller retries.
    #[serde(default = "default_publish_timeout_ms")]
    pub publish_timeout_ms: u64,

    /// How many times a message may be delivered before a handler's `Retry` turns into a dead letter. Also
    /// declared on every work queue as `x-delivery-limit`, so the broker dead-letters on its own should a
    /// consumer keep crashing on a message.
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,

    /// The first wait before reconnecting after a lost connection, in milliseconds. Doubles on each failed
    /// attempt.
    #[serde(default = "default_reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,

    /// The longest wait between reconnection attempts, in milliseconds.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
}

fn default_amqp_url() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()
}

fn default_prefetch() -> u16 {
    32
}

fn default_publish_timeout_ms() -> u64 {
    5000
}

fn default_delivery_limit() -> u32 {
    5
}

fn default_reconnect_initial_ms() -> u64 {
    500
}

fn default_reconnect_max_ms() -> u64 {
    30_000
}

/// Why a [`BusConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `amqp_url` does not parse as an AMQP URL.
    #[error("amqp_url `{url}` is not an AMQP URL: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What the parser objected to.
        reason: String,
    },
    /// `prefetch` is zero, which RabbitMQ reads as "unlimited".
    #[error("prefetch must be at least 1")]
    ZeroPrefetch,
    /// `publish_timeout_ms` is zero.
    #[error("publish_timeout_ms must be at least 1")]
    ZeroPublishTimeout,
    /// `delivery_limit` is zero or above what a queue argument can hold.
    #[error("delivery_limit must be between 1 and {max}, not {value}")]
    DeliveryLimit {
        /// The configured value.
        value: u32,
        /// The largest accepted value.
        max: u32,
    },
    /// `reconnect_initial_ms` and `reconnect_max_ms` do not make a backoff.
    #[error("reconnect_initial_ms/reconnect_max_ms: {0}")]
    Backoff(#[from] InvalidBackoff),
    /// `amqp_ca_file` cannot be used.
    #[error("amqp_ca_file {}: {reason}", path.display())]
    CaFile {
        /// The configured file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl BusConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// The first field that cannot be used, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(reason) = self.amqp_url.parse::<lapin::uri::AMQPUri>() {
            // The parser may quote the whole URL, password included.
            let url = redact_url(&self.amqp_url);
            return Err(ConfigError::InvalidUrl { reason: reason.replace(&self.amqp_url, &url), url });
        }
        if self.prefetch == 0 {
            return Err(ConfigError::ZeroPrefetch);
        }
        if self.publish_timeout_ms == 0 {
            return Err(ConfigError::ZeroPublishTimeout);
        }
        // The limit travels as a signed 32-bit queue argument.
        let max = i32::MAX.unsigned_abs();
        if self.delivery_limit == 0 || self.delivery_limit > max {
            return Err(ConfigError::DeliveryLimit { value: self.delivery_limit, max });
        }
        self.backoff()?;
        crate::connection::tls_config(self)?;
        Ok(())
    }

    /// The publish deadline as a [`Duration`].
    #[must_use]
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// The reconnect schedule described by `reconnect_initial_ms` and `reconnect_max_ms`.
    ///
    /// # Errors
    ///
    /// [`InvalidBackoff`] when the initial delay is zero or above the maximum.
    pub fn backoff(&self) -> Result<Backoff, InvalidBackoff> {
        Backoff::try_new(Duration::from_millis(self.reconnect_initial_ms), Duration::from_millis(self.reconnect_max_ms))
    }
}

// The URL holds a password, so `Debug` shows it redacted.
impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusConfig")
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("amqp_ca_file", &self.amqp_ca_file)
            .field("prefetch", &self.prefetch)
            .field("publish_timeout_ms", &self.publish_timeout_ms)
            .field("delivery_limit", &self.delivery_limit)
            .field("reconnect_initial_ms", &self.reconnect_initial_ms)
            .field("reconnect_max_ms", &self.reconnect_max_ms)
            .finish()
    }
}

/// Returns `url` with the password replaced by `***`, for messages and logs.
///
/// `amqp://guest:guest@127.0.0.1:5672/%2f` becomes `amqp://guest:***@127.0.0.1:5672/%2f`. A URL without a
/// password comes back unchanged; text that is not a URL at all comes back as `***` whenever it might hold
/// credentials, since a mistyped URL may still carry a real password.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') || url.contains(':') { "***".to_owned() } else { url.to_owned() };
    };
    // The user information ends at the last `@` of the authority; the authority ends at the first `/`, `?`
    // or `#`. A password may itself contain a percent-encoded `@`, never a bare one.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_redact(url: &str, expected: &str) {
        assert_eq!(redact_url(url), expected, "redacting {url}");
    }

    #[test]
    fn redacts_the_password_only() {
        check_redact("amqp://guest:guest@127.0.0.1:5672/%2f", "amqp://guest:***@127.0.0.1:5672/%2f");
        check_redact(
            "amqps://router:s3cr%40t@rabbit.example:5671/concordat?heartbeat=30",
            "amqps://router:***@rabbit.example:5671/concordat?heartbeat=30",
        );
        check_redact("amqp://user:@host", "amqp://user:***@host");
        check_redact("amqp://a:b@c@host/%2f", "amqp://a:***@host/%2f");
    }

    #[test]
    fn leaves_urls_without_password_alone() {
        check_redact("amqp://127.0.0.1:5672/%2f", "amqp://127.0.0.1:5672/%2f");
        check_redact("amqp://guest@127.0.0.1/%2f", "amqp://guest@127.0.0.1/%2f");
        check_redact("amqp://host/vhost?auth=a:b@c", "amqp://host/vhost?auth=a:b@c");
    }

    #[test]
    fn hides_whatever_is_not_a_url() {
        check_redact("guest:guest@localhost", "***");
        check_redact("localhost", "localhost");
    }

    fn defaults() -> BusConfig {
        BusConfig {
            amqp_url: default_amqp_url(),
            amqp_ca_file: None,
            prefetch: default_prefetch(),
            publish_timeout_ms: default_publish_timeout_ms(),
            delivery_limit: default_delivery_limit(),
            reconnect_initial_ms: default_reconnect_initial_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
        }
    }

    #[test]
    fn an_empty_section_gives_the_documented_defaults() -> Result<(), serde_json::Error> {
        let config: BusConfig = serde_json::from_str("{}")?;
        assert_eq!(config, defaults());
        assert_eq!(config.amqp_url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(config.prefetch, 32);
        assert_eq!(config.publish_timeout_ms, 5000);
        assert_eq!(config.delivery_limit, 5);
        assert_eq!(config.reconnect_initial_ms, 500);
        assert_eq!(config.reconnect_max_ms, 30_000);
        assert!(config.validate().is_ok());
        Ok(())
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error = serde_json::from_str::<BusConfig>(r#"{"prefetsh": 3}"#);
        assert!(error.is_err());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let shown = format!("{:?}", defaults());
        assert!(shown.contains("guest:***@"), "{shown}");
        assert!(!shown.contains("guest:guest"), "{shown}");
    }

    #[test]
    fn validation_names_the_bad_field() {
        let bad = |edit: &dyn Fn(&mut BusConfig)| {
            let mut config = defaults();
            edit(&mut config);
            config.validate().map_err(|error| error.to_string())
        };
        assert_eq!(bad(&|c| c.prefetch = 0), Err("prefetch must be at least 1".to_owned()));
        assert_eq!(bad(&|c| c.publish_timeout_ms = 0), Err("publish_timeout_ms must be at least 1".to_owned()));
        assert!(bad(&|c| c.delivery_limit = 0).is_err());
        assert!(bad(&|c| c.reconnect_max_ms = 10).is_err());
        for url in ["http://guest:hunter2@host/", "guest:hunter2@host"] {
            let url_error = bad(&|c| c.amqp_url = url.to_owned());
            assert!(url_error.as_ref().is_err_and(|message| !message.contains("hunter2")), "{url_error:?}");
        }
    }

    /// A configuration trusting a CA file holding `pem`, and the file (removed when dropped).
    fn with_ca(pem: &str) -> (BusConfig, TempFile) {
        let file = TempFile::new(pem);
        let config = BusConfig {
            amqp_url: "amqps://a:b@rabbit.example/%2f".to_owned(),
            amqp_ca_file: Some(file.0.clone()),
            ..defaults()
        };
        (config, file)
    }

    /// A file under the system's temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!("concordat-ca-{}.pem", uuid::Uuid::new_v4().simple()));
            std::fs::write(&path, text).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn private_ca() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|error| panic!("{error}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Concordat test CA");
        let key = rcgen::KeyPair::generate().unwrap_or_else(|error| panic!("{error}"));
        params.self_signed(&key).unwrap_or_else(|error| panic!("{error}")).pem()
    }

    #[test]
    fn a_private_ca_file_is_loaded_as_the_tls_trust_anchor() {
        let ca = private_ca();
        let (config, _file) = with_ca(&ca);
        assert!(config.validate().is_ok());
        let tls = crate::connection::tls_config(&config).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(tls.cert_chain.as_deref(), Some(ca.as_str()));
        assert!(tls.identity.is_none(), "no client certificate is presented");
        let plain = crate::connection::tls_config(&defaults()).unwrap_or_else(|error| panic!("{error}"));
        assert!(plain.cert_chain.is_none(), "without amqp_ca_file only the system's roots are trusted");
    }

    #[test]
    fn a_bad_ca_file_is_a_clear_error_naming_the_file() {
        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        let cases = [
            ("", "holds no PEM certificate"),
            ("just some text\n", "holds no PEM certificate"),
            (garbage, "certificate 1 is not a usable CA certificate"),
        ];
        for (text, expected) in cases {
            let (config, file) = with_ca(text);
            let message = config.validate().map_err(|error| error.to_string()).unwrap_err();
            assert!(message.starts_with(&format!("amqp_ca_file {}: ", file.0.display())), "{message}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
        let missing = BusConfig { amqp_ca_file: Some(PathBuf::from("/nonexistent/ca.pem")), ..defaults() };
        let message = missing.validate().map_err(|error| error.to_string()).unwrap_err();
        assert!(message.starts_with("amqp_ca_file /nonexistent/ca.pem: cannot be read"), "{message}");
    }
}
