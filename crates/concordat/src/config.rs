//! `concordat.toml` and its `CONCORDAT_*` environment overrides, read once into typed values.
//!
//! Each section belongs to the crate that uses it (`[bus]` is `concordat_bus::BusConfig`); this module only
//! layers the sources (built-in defaults, then the file, then the environment) and checks the result. It
//! holds no secrets: the admin token will come from `CONCORDAT_ADMIN_TOKEN` or `admin_token_file`, never inline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use concordat_bus::BusConfig;
use concordat_delivery::DeliveryConfig;
use concordat_formats::AdapterConfigs;
use concordat_gateway::GatewayConfig;
use concordat_gateway::listener::ListenerConfig;
use concordat_router::RetentionConfig;
use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The environment variable prefix of configuration overrides.
const ENV_PREFIX: &str = "CONCORDAT_";

/// `CONCORDAT_*` variables that are not configuration keys: secrets, development tokens, test and script
/// settings. Anything else under the prefix that names no key is reported, so a misspelt override does not
/// pass silently.
const NOT_CONFIG: &[&str] =
    &["ADMIN_TOKEN", "SUBJECT_KEY", "DEV_TOKEN_", "TEST_", "SERVICES_TIMEOUT", "SKIP_POSTGRES", "SKIP_CHROMIUM", "LOG"];

/// Concordat's whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The AMQP URL of RabbitMQ (`CONCORDAT_AMQP_URL`). Overrides `[bus] amqp_url`.
    pub amqp_url: String,
    /// A PEM file of the private CA an `amqps://` broker's certificate chains to (`CONCORDAT_AMQP_CA_FILE`).
    /// Overrides `[bus] amqp_ca_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp_ca_file: Option<PathBuf>,
    /// The store: `sqlite://data/concordat.db` (embedded, created on first run) or `postgres://…`
    /// (`CONCORDAT_STORE_URL`).
    pub store_url: String,
    /// Where agencies post events (`CONCORDAT_LISTEN`).
    pub listen: SocketAddr,
    /// Where the admin API, `/metrics`, `/healthz`, `/readyz` and the dashboard listen
    /// (`CONCORDAT_ADMIN_LISTEN`). Keep it off the agencies' network.
    pub admin_listen: SocketAddr,
    /// Host names the admin listener answers to besides IP literals and `localhost` (the name operators use
    /// for it, e.g. `["concordat-admin.northvale.example"]`); any other `Host` gets `421`, which stops DNS
    /// rebinding onto the dashboard and metrics.
    #[serde(default)]
    pub admin_hosts: Vec<String>,
    /// The sharing policy file (`CONCORDAT_POLICY`).
    pub policy: PathBuf,
    /// RabbitMQ's management HTTP API, for `concordat agencies provision` (`CONCORDAT_MANAGEMENT_URL`).
    /// Unset, `amqp_url`'s host on port 15672 with `amqp_url`'s credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_url: Option<String>,
    /// The server's certificate chain, PEM, its own certificate first (`CONCORDAT_TLS_CERT`). With
    /// `tls_key`, every HTTP listener (ingest, admin) serves HTTPS only; without both, plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert`, PEM (`CONCORDAT_TLS_KEY`). A secret: keep the file readable by the
    /// service's user only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Limits on every HTTP listener's connections: header-read and idle timeouts, how many at once
    /// (`[listeners]`, `CONCORDAT_LISTENERS__MAX_CONNECTIONS`).
    #[serde(default, skip_serializing)]
    pub listeners: ListenerConfig,
    /// The OTLP endpoint traces are exported to; unset, traces are not exported (`CONCORDAT_OTLP_ENDPOINT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// A file holding the admin API's bearer token (one line). `CONCORDAT_ADMIN_TOKEN` takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// RabbitMQ tuning: prefetch, publish deadline, delivery limit, reconnect backoff (`CONCORDAT_BUS__PREFETCH`).
    #[serde(default = "default_bus", skip_serializing)]
    pub bus: BusConfig,
    /// The ingest gateway: body limit, request timeout, each agency's token digests and format.
    #[serde(default, skip_serializing)]
    pub gateway: GatewayConfig,
    /// Each adapter's tables (`[adapters.police]`, `[adapters.nhs-fhir]`, `[adapters.vcs]`).
    #[serde(default, skip_serializing)]
    pub adapters: AdapterConfigs,
    /// A file holding the secret that keys NHS numbers for correlation (at least 16 bytes, one line).
    /// `CONCORDAT_SUBJECT_KEY` takes precedence. Unset, a development key is used and a warning says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_key_file: Option<PathBuf>,
    /// How long after an episode opens its originator should have had outcome feedback, in hours.
    pub feedback_due_hours: u64,
    /// How long an open episode may go without an event before it is closed as quiet, in hours.
    pub episode_quiet_hours: u64,
    /// How long personal data and dead letters are kept, and how often they are purged (`[retention]`,
    /// `CONCORDAT_RETENTION__EVENTS=90d`).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// How each agency receives (`[delivery.agencies.{id}] channel = "amqp" | "webhook" | "fhir" |
    /// "portal"`, default `amqp`), and the delivery worker's timeout and retries (`CONCORDAT_DELIVERY__…`).
    #[serde(default, skip_serializing)]
    pub delivery: DeliveryConfig,
}

fn default_bus() -> BusConfig {
    // An empty table takes every field's default; a field without one is a bug caught by every test.
    serde_json::from_str("{}").expect("every [bus] field has a default")
}

impl Default for Config {
    /// The embedded defaults of DESIGN.md §6: everything on this machine, the sample area's policy.
    fn default() -> Self {
        Self {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            amqp_ca_file: None,
            store_url: "sqlite://data/concordat.db".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_hosts: Vec::new(),
            policy: PathBuf::from("deploy/local/policies/northvale.yaml"),
            management_url: None,
            tls_cert: None,
            tls_key: None,
            listeners: ListenerConfig::default(),
            otlp_endpoint: None,
            admin_token_file: None,
            bus: default_bus(),
            gateway: GatewayConfig::default(),
            adapters: AdapterConfigs::default(),
            subject_key_file: None,
            feedback_due_hours: 24,
            episode_quiet_hours: 72,
            retention: RetentionConfig::default(),
            delivery: DeliveryConfig::default(),
        }
    }
}

/// A configuration problem, with the source it came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// The key used when no subject key is configured: fine on a developer's machine, never in production.
const DEVELOPMENT_SUBJECT_KEY: &[u8] = b"concordat-development-subject-key: never use in production";

impl Config {
    /// The secret that keys NHS numbers: `CONCORDAT_SUBJECT_KEY`, else the first line of `subject_key_file`,
    /// else the development key (the flag says which, so the caller can warn).
    ///
    /// # Errors
    /// `subject_key_file` is set but cannot be read.
    pub fn subject_key(&self, env: &[(String, String)]) -> Result<(Vec<u8>, bool), ConfigError> {
        if let Some((_, secret)) = env.iter().find(|(key, _)| key == "CONCORDAT_SUBJECT_KEY") {
            return Ok((secret.trim().as_bytes().to_vec(), false));
        }
        let Some(path) = &self.subject_key_file else { return Ok((DEVELOPMENT_SUBJECT_KEY.to_vec(), true)) };
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError(format!("subject_key_file {}: {error}", path.display())))?;
        Ok((text.lines().next().unwrap_or_default().trim().as_bytes().to_vec(), false))
    }

    /// The admin API's bearer token: `CONCORDAT_ADMIN_TOKEN`, else the first line of `admin_token_file`;
    /// `None` when neither is set (the admin API is then off).
    ///
    /// # Errors
    /// `admin_token_file` is set but cannot be read, or either source holds an empty token.
    pub fn admin_token(&self, env: &[(String, String)]) -> Result<Option<String>, ConfigError> {
        let token = match env.iter().find(|(key, _)| key == "CONCORDAT_ADMIN_TOKEN") {
            Some((_, token)) => token.trim().to_owned(),
            None => match &self.admin_token_file {
                None => return Ok(None),
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|error| ConfigError(format!("admin_token_file {}: {error}", path.display())))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            },
        };
        if token.is_empty() {
            return Err(ConfigError("the admin token is empty".to_owned()));
        }
        Ok(Some(token))
    }

    /// Loads the configuration: defaults, then `file` (when given, it must exist; when not, `concordat.toml`
    /// in the working directory is read if present), then `CONCORDAT_*` variables from `env`.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, an unknown key, a value of the wrong type; each message names
    /// the key and where it came from.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<(Self, Vec<String>), ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError(format!("config file {} does not exist", path.display())));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            // Without --config, a concordat.toml in the working directory is used when present.
            None => figment = figment.merge(Toml::file("concordat.toml")),
        }
        let (figment, warnings) = with_env_overrides(figment, env);
        let mut config: Config = figment.extract().map_err(|error| ConfigError(describe(&error)))?;
        config.bus.amqp_url = config.amqp_url.clone();
        if config.amqp_ca_file.is_some() {
            config.bus.amqp_ca_file = config.amqp_ca_file.clone();
        }
        config.bus.validate().map_err(|error| ConfigError(error.to_string()))?;
        config.listeners.validate().map_err(|error| ConfigError(error.to_string()))?;
        if config.tls_cert.is_none() || config.tls_key.is_none() {
            // A certificate is only ever presented over HTTPS: without it such an agency could not post.
            if let Some((agency, _)) =
                config.gateway.agencies.iter().find(|(_, access)| !access.client_cert_sha256.is_empty())
            {
                return Err(ConfigError(format!(
                    "gateway.agencies.{agency}.client_cert_sha256 needs tls_cert and tls_key: client certificates are only presented over HTTPS"
                )));
            }
        }
        Ok((config, warnings))
    }
}

/// Merges the `CONCORDAT_*` overrides (`__` nests: `CONCORDAT_BUS__PREFETCH` is `bus.prefetch`) and returns a
/// warning per variable that names no key. Values are read as TOML scalars (`32`, `true`), else as strings.
fn with_env_overrides(mut figment: Figment, env: &[(String, String)]) -> (Figment, Vec<String>) {
    const SECTIONS: &[&str] = &[
        "amqp_url",
        "amqp_ca_file",
        "store_url",
        "listen",
        "admin_listen",
        "policy",
        "management_url",
        "tls_cert",
        "tls_key",
        "listeners",
        "otlp_endpoint",
        "admin_token_file",
        "bus",
        "gateway",
        "adapters",
        "subject_key_file",
        "feedback_due_hours",
        "episode_quiet_hours",
        "retention",
        "delivery",
    ];
    let mut warnings = Vec::new();
    for (key, value) in env {
        let Some(name) = key.strip_prefix(ENV_PREFIX) else { continue };
        let path = name.to_ascii_lowercase().replace("__", ".");
        let first = path.split('.').next().unwrap_or_default();
        if SECTIONS.contains(&first) {
            let value: figment::value::Value = value.parse().unwrap_or_else(|never| match never {});
            figment = figment.merge(Serialized::default(&path, value));
        } else if !NOT_CONFIG.iter().any(|known| name.starts_with(known)) {
            warnings.push(format!("{key} names no configuration key; it is ignored"));
        }
    }
    (figment, warnings)
}

fn describe(error: &figment::Error) -> String {
    let mut messages = Vec::new();
    for error in error.clone() {
        let key = error.path.join(".");
        let source = error.metadata.as_ref().and_then(|metadata| metadata.source.as_ref()).map(ToString::to_string);
        let message = match (key.is_empty(), source) {
            (false, Some(source)) => format!("{key} (from {source}): {}", error.kind),
            (false, None) => format!("{key}: {}", error.kind),
            (true, Some(source)) => format!("{source}: {}", error.kind),
            (true, None) => error.kind.to_string(),
        };
        messages.push(message);
    }
    messages.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn the_admin_token_comes_from_the_environment_then_the_file_and_is_never_empty() {
        let mut config = Config::default();
        assert_eq!(config.admin_token(&env(&[])).unwrap(), None, "no token: the admin API is off");
        let token_file = file("from-the-file\nignored second line\n");
        config.admin_token_file = Some(token_file.path().to_path_buf());
        assert_eq!(config.admin_token(&env(&[])).unwrap().as_deref(), Some("from-the-file"));
        let from_env = config.admin_token(&env(&[("CONCORDAT_ADMIN_TOKEN", " from-env ")])).unwrap();
        assert_eq!(from_env.as_deref(), Some("from-env"), "the environment wins and is trimmed");
        assert!(config.admin_token(&env(&[("CONCORDAT_ADMIN_TOKEN", "  ")])).is_err(), "an empty token is refused");
        config.admin_token_file = Some(token_file.path().with_extension("missing"));
        let error = config.admin_token(&env(&[])).unwrap_err().to_string();
        assert!(error.contains("admin_token_file"), "{error}");
    }

    #[test]
    fn no_file_gives_the_documented_defaults() {
        // The crate directory holds no concordat.toml, so only the defaults apply.
        let (config, warnings) = Config::load(None, &[]).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(config.amqp_url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(config.store_url, "sqlite://data/concordat.db");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(config.policy, PathBuf::from("deploy/local/policies/northvale.yaml"));
        assert_eq!(config.otlp_endpoint, None);
        assert_eq!(config.bus.prefetch, 32);
    }

    #[test]
    fn the_file_then_the_environment_override_defaults() {
        let toml = file("listen = \"0.0.0.0:9080\"\namqp_url = \"amqp://a:b@rabbit:5672/%2f\"\n[bus]\nprefetch = 8\n");
        let (config, _) = Config::load(
            Some(toml.path()),
            &env(&[("CONCORDAT_AMQP_URL", "amqp://c:d@other:5672/%2f"), ("CONCORDAT_BUS__DELIVERY_LIMIT", "9")]),
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9080");
        assert_eq!(config.amqp_url, "amqp://c:d@other:5672/%2f");
        assert_eq!(config.bus.amqp_url, config.amqp_url, "the top-level URL is the one the bus uses");
        assert_eq!(config.bus.prefetch, 8);
        assert_eq!(config.bus.delivery_limit, 9);
    }

    #[test]
    fn the_amqp_ca_file_reaches_the_bus_and_is_checked_at_load() {
        let error = Config::load(None, &env(&[("CONCORDAT_AMQP_CA_FILE", "/nonexistent/ca.pem")])).unwrap_err();
        assert!(error.to_string().starts_with("amqp_ca_file /nonexistent/ca.pem: cannot be read"), "{error}");
    }

    #[test]
    fn the_sample_area_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/concordat.toml");
        let (config, warnings) = Config::load(Some(&path), &[]).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(config.gateway.agencies.len(), 8, "every sample agency can post");
        assert!(config.delivery.agencies.is_empty(), "the sample agencies read their inboxes over AMQP");
    }

    #[test]
    fn an_agency_is_given_a_webhook_from_the_file_or_the_environment() {
        let toml = file(concat!(
            "[delivery]\nretry_max_ms = 5000\n",
            "[delivery.agencies.northvale-police]\nchannel = \"webhook\"\n",
            "webhook_url = \"https://rms.example/hook\"\nwebhook_secret_file = \"/run/secrets/police.whsec\"\n",
        ));
        let (config, warnings) =
            Config::load(Some(toml.path()), &env(&[("CONCORDAT_DELIVERY__RETRY_INITIAL_MS", "250")])).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let police = &config.delivery.agencies["northvale-police"];
        assert_eq!(police.channel, concordat_delivery::Channel::Webhook);
        assert_eq!(police.webhook_url.as_deref(), Some("https://rms.example/hook"));
        assert_eq!((config.delivery.retry_initial_ms, config.delivery.retry_max_ms), (250, 5000));
        let typo = file("[delivery.agencies.northvale-police]\nchanel = \"webhook\"\n");
        let error = Config::load(Some(typo.path()), &[]).unwrap_err().to_string();
        assert!(error.contains("chanel"), "{error}");
    }

    #[test]
    fn listener_limits_and_tls_files_are_read_and_checked() {
        let (config, _) = Config::load(None, &[]).unwrap();
        assert_eq!((config.tls_cert, config.tls_key), (None, None), "plain HTTP by default");
        assert_eq!(config.listeners, ListenerConfig::default());
        let (config, _) = Config::load(
            None,
            &env(&[
                ("CONCORDAT_TLS_CERT", "/etc/concordat/cert.pem"),
                ("CONCORDAT_TLS_KEY", "/etc/concordat/key.pem"),
                ("CONCORDAT_LISTENERS__MAX_CONNECTIONS", "64"),
                ("CONCORDAT_LISTENERS__HEADER_READ_TIMEOUT_MS", "5000"),
            ]),
        )
        .unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("/etc/concordat/cert.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("/etc/concordat/key.pem")));
        assert_eq!((config.listeners.max_connections, config.listeners.header_read_timeout_ms), (64, 5000));
        let error = Config::load(None, &env(&[("CONCORDAT_LISTENERS__IDLE_TIMEOUT_MS", "0")])).unwrap_err();
        assert_eq!(error.to_string(), "listeners.idle_timeout_ms must be at least 1");
    }

    #[test]
    fn a_pinned_client_certificate_needs_tls() {
        let digest = "ab".repeat(32);
        let toml = file(&format!("[gateway.agencies.safe-haven]\nclient_cert_sha256 = [\"{digest}\"]\n"));
        let error = Config::load(Some(toml.path()), &[]).unwrap_err().to_string();
        assert!(
            error.starts_with("gateway.agencies.safe-haven.client_cert_sha256 needs tls_cert and tls_key"),
            "{error}"
        );
        let tls = env(&[("CONCORDAT_TLS_CERT", "cert.pem"), ("CONCORDAT_TLS_KEY", "key.pem")]);
        let (config, _) = Config::load(Some(toml.path()), &tls).unwrap();
        assert_eq!(config.gateway.agencies.len(), 1);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_it() {
        let toml = file("amqp_uri = \"amqp://x\"\n");
        let error = Config::load(Some(toml.path()), &[]).unwrap_err().to_string();
        assert!(error.contains("amqp_uri"), "{error}");
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let error = Config::load(None, &env(&[("CONCORDAT_ADMIN_LISTEN", "not an address")])).unwrap_err().to_string();
        assert!(error.contains("admin_listen"), "{error}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let error = Config::load(Some(Path::new("/nonexistent/concordat.toml")), &[]).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/concordat.toml"), "{error}");
    }

    #[test]
    fn unknown_variables_warn_and_secrets_do_not() {
        let (_, warnings) = Config::load(
            None,
            &env(&[
                ("CONCORDAT_AMPQ_URL", "amqp://typo"),
                ("CONCORDAT_ADMIN_TOKEN", "secret"),
                ("CONCORDAT_DEV_TOKEN_NORTHVALE_POLICE", "dev"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("CONCORDAT_AMPQ_URL"));
    }
}
