//! Helpers for the gateway's tests against a real RabbitMQ (`CONCORDAT_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`): the sample area's policy, configuration and development tokens, a
//! gateway over a topology under a unique prefix (deleted afterwards), and reading queues. A broker that
//! cannot be reached fails the test.

#![allow(dead_code, reason = "each test binary uses a different part of the helpers")]

pub mod pki;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use concordat_bus::{BusConfig, Publisher, Topology};
use concordat_formats::AdapterConfigs;
use concordat_gateway::listener::{self, Listener, ListenerConfig, TlsAcceptor};
use concordat_gateway::{Gateway, GatewayConfig};
use concordat_policy::Policy;
use figment::Figment;
use figment::providers::{Format as _, Toml};
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the repository, read.
pub fn read(path: &str) -> Vec<u8> {
    let path = root().join(path);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The bus configuration for tests: defaults, the broker from `CONCORDAT_AMQP_URL` if set, quick
/// reconnects. Also sends logs to the test output, filtered by `RUST_LOG`.
pub fn bus_config() -> BusConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config: BusConfig = serde_json::from_str("{}").expect("defaults deserialize");
    if let Ok(url) = std::env::var("CONCORDAT_AMQP_URL") {
        config.amqp_url = url;
    }
    config.reconnect_initial_ms = 100;
    config.reconnect_max_ms = 1000;
    config
}

/// The sample area's sharing policy.
pub fn policy() -> Policy {
    let path = root().join("deploy/local/policies/northvale.yaml");
    let text = std::fs::read_to_string(&path).expect("read the sample policy");
    concordat_policy::load(&path, &text).unwrap_or_else(|errors| panic!("sample policy: {errors:?}"))
}

/// The `[gateway]` section of `deploy/local/concordat.toml`.
pub fn sample_gateway_config() -> GatewayConfig {
    Figment::from(Toml::file_exact(root().join("deploy/local/concordat.toml")))
        .extract_inner("gateway")
        .unwrap_or_else(|error| panic!("deploy/local/concordat.toml [gateway]: {error}"))
}

/// `deploy/local/dev-tokens.env` as variable name → token.
pub fn dev_tokens() -> BTreeMap<String, String> {
    let text = String::from_utf8(read("deploy/local/dev-tokens.env")).expect("UTF-8");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap_or_else(|| panic!("not NAME=value: {line}"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The variable holding `agency`'s development token.
pub fn token_variable(agency: &str) -> String {
    format!("CONCORDAT_DEV_TOKEN_{}", agency.to_ascii_uppercase().replace('-', "_"))
}

/// `agency`'s development token.
pub fn token(agency: &str) -> String {
    dev_tokens().remove(&token_variable(agency)).unwrap_or_else(|| panic!("no development token for {agency}"))
}

/// A gateway for the sample area, with its topology under a fresh prefix, and the address its router is
/// served on.
#[derive(Debug, Clone)]
pub struct Harness {
    pub bus: BusConfig,
    pub topology: Topology,
    pub gateway: Gateway,
    pub base_url: String,
}

/// How the gateway's router is served: over plain HTTP or HTTPS, with the listener's limits.
#[derive(Debug, Clone, Default)]
pub struct Serving {
    pub tls: Option<TlsAcceptor>,
    pub limits: ListenerConfig,
}

/// Runs `body` against a sample-area gateway served on 127.0.0.1 (configured by `configure`), with its
/// topology declared first and deleted afterwards, even when `body` panics. With `declare` false the
/// topology is never declared, so every publish fails.
pub async fn with_gateway<F, Fut>(declare: bool, configure: impl FnOnce(&mut GatewayConfig), body: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_gateway_serving(declare, configure, |_| Serving::default(), body).await;
}

/// [`with_gateway`], served as `serving` says (given the built gateway, for its client certificates); the
/// base URL is `https://127.0.0.1:…` over TLS.
pub async fn with_gateway_serving<F, Fut>(
    declare: bool,
    configure: impl FnOnce(&mut GatewayConfig),
    serving: impl FnOnce(&Gateway) -> Serving,
    body: F,
) where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let bus = bus_config();
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let agencies = policy().agencies().iter().map(|agency| agency.id.to_string()).collect();
    let topology = Topology::with_prefix(prefix, agencies).expect("valid test topology");
    if declare {
        topology.declare(&bus).await.expect("declare the test topology (is RabbitMQ running at CONCORDAT_AMQP_URL?)");
    }
    let publisher = Publisher::connect(&bus, "concordat-gateway-test").await.expect("publisher connects");
    let mut config = sample_gateway_config();
    configure(&mut config);
    let gateway = Gateway::new(config, &policy(), AdapterConfigs::default(), Arc::new(publisher), topology.clone())
        .expect("the sample configuration builds a gateway");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let Serving { tls, limits } = serving(&gateway);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base_url = format!("{scheme}://{}", tcp.local_addr().expect("local address"));
    let router = gateway.router();
    let listener = Listener { tcp, tls, limits, name: "ingest" };
    let server = tokio::spawn(listener::serve(listener, router, tokio_util::sync::CancellationToken::new()));
    let harness = Harness { bus: bus.clone(), topology: topology.clone(), gateway, base_url };
    let outcome = tokio::spawn(body(harness)).await;
    server.abort();
    if declare {
        topology.delete(&bus).await.expect("delete the test topology");
    }
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("test body did not finish: {error}"),
        }
    }
}

async fn connection(config: &BusConfig) -> Connection {
    Connection::connect(
        &config.amqp_url,
        ConnectionProperties::default().with_connection_name("concordat-gateway-test-inspector".into()),
    )
    .await
    .expect("connect to RabbitMQ")
}

/// How many ready messages `queue` holds, after letting the broker settle.
pub async fn message_count(config: &BusConfig, queue: &str) -> u32 {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let connection = connection(config).await;
    let channel = connection.create_channel().await.expect("open a channel");
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .expect("queue exists");
    let _ = connection.close(200, "done".into()).await;
    declared.message_count()
}

/// A message taken (and acknowledged) from a queue.
#[derive(Debug)]
pub struct Taken {
    pub properties: BasicProperties,
    pub body: Vec<u8>,
    pub routing_key: String,
}

impl Taken {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.properties.headers().as_ref()?.inner().get(name)?;
        Some(match value {
            AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
            AMQPValue::ShortString(text) => text.as_str().to_owned(),
            other => format!("{other:?}"),
        })
    }

    pub fn message_id(&self) -> Option<String> {
        self.properties.message_id().as_ref().map(|id| id.as_str().to_owned())
    }

    pub fn content_type(&self) -> Option<String> {
        self.properties.content_type().as_ref().map(|value| value.as_str().to_owned())
    }
}

/// Takes up to `count` messages from `queue`, waiting up to `within` in all.
pub async fn take(config: &BusConfig, queue: &str, count: usize, within: Duration) -> Vec<Taken> {
    let connection = connection(config).await;
    let channel = connection.create_channel().await.expect("open a channel");
    let deadline = tokio::time::Instant::now() + within;
    let mut taken = Vec::new();
    while taken.len() < count {
        let got = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.expect("basic.get");
        match got {
            Some(got) => taken.push(Taken {
                properties: got.delivery.properties.clone(),
                body: got.delivery.data.clone(),
                routing_key: got.delivery.routing_key.as_str().to_owned(),
            }),
            None if tokio::time::Instant::now() >= deadline => break,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let _ = connection.close(200, "done".into()).await;
    taken
}
