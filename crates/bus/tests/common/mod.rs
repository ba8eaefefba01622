//! Helpers for the tests against a real RabbitMQ: configuration from `CONCORDAT_AMQP_URL`, a topology
//! under a unique prefix that is deleted afterwards, reading queues, and closing named connections with
//! `rabbitmqctl`. A broker that cannot be reached fails the test.

#![allow(dead_code, reason = "each test binary uses a different part of the helpers")]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use concordat_bus::{BusConfig, OutgoingMessage, Topology, TraceParent};
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// The bus configuration for tests: defaults, the broker from `CONCORDAT_AMQP_URL` if set, and a quick
/// reconnect schedule. Also sends logs to the test output, filtered by `RUST_LOG`.
pub fn config() -> BusConfig {
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

/// Runs `body` with a topology under a fresh prefix, declared first and deleted afterwards, even when
/// `body` panics.
pub async fn with_topology<F, Fut>(config: &BusConfig, agencies: &[&str], body: F)
where
    F: FnOnce(Topology) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let agencies = agencies.iter().map(|agency| (*agency).to_owned()).collect();
    let topology = Topology::with_prefix(prefix, agencies).expect("valid test topology");
    topology.declare(config).await.expect("declare the test topology (is RabbitMQ running at CONCORDAT_AMQP_URL?)");
    let outcome = tokio::spawn(body(topology.clone())).await;
    topology.delete(config).await.expect("delete the test topology");
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("test body did not finish: {error}"),
        }
    }
}

/// A message for `exchange` with `routing_key`, a JSON body, a fresh trace and one custom header.
pub fn message(exchange: &str, routing_key: &str, message_id: &str) -> OutgoingMessage {
    OutgoingMessage {
        exchange: exchange.to_owned(),
        routing_key: routing_key.to_owned(),
        message_id: message_id.to_owned(),
        content_type: "application/json".to_owned(),
        body: format!(r#"{{"id":"{message_id}"}}"#).into_bytes(),
        headers: BTreeMap::from([("concordat-kind".to_owned(), "police.s136_detention".to_owned())]),
        traceparent: TraceParent::new_root(),
    }
}

async fn connection(config: &BusConfig) -> Connection {
    Connection::connect(
        &config.amqp_url,
        ConnectionProperties::default().with_connection_name("concordat-bus-test-inspector".into()),
    )
    .await
    .expect("connect to RabbitMQ")
}

/// How many ready messages `queue` holds, after letting the broker settle returns from closed channels.
pub async fn message_count(config: &BusConfig, queue: &str) -> u32 {
    tokio::time::sleep(Duration::from_millis(300)).await;
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

/// A message taken (and acknowledged) from `queue`: its properties and body.
#[derive(Debug)]
pub struct Taken {
    pub properties: BasicProperties,
    pub body: Vec<u8>,
    pub routing_key: String,
}

impl Taken {
    /// A header as text, whatever its AMQP type.
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.properties.headers().as_ref()?.inner().get(name)?;
        Some(match value {
            AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
            AMQPValue::ShortString(text) => text.as_str().to_owned(),
            AMQPValue::LongLongInt(number) => number.to_string(),
            AMQPValue::LongInt(number) => number.to_string(),
            other => format!("{other:?}"),
        })
    }

    pub fn message_id(&self) -> Option<String> {
        self.properties.message_id().as_ref().map(|id| id.as_str().to_owned())
    }
}

/// Takes the next message of `queue`, waiting up to `within` for one to arrive.
pub async fn take(config: &BusConfig, queue: &str, within: Duration) -> Option<Taken> {
    let connection = connection(config).await;
    let channel = connection.create_channel().await.expect("open a channel");
    let deadline = tokio::time::Instant::now() + within;
    let taken = loop {
        let got = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.expect("basic.get");
        if let Some(got) = got {
            break Some(Taken {
                properties: got.delivery.properties.clone(),
                body: got.delivery.data.clone(),
                routing_key: got.delivery.routing_key.as_str().to_owned(),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = connection.close(200, "done".into()).await;
    taken
}

async fn rabbitmqctl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("rabbitmqctl").args(args).output().await.expect("run rabbitmqctl");
    assert!(output.status.success(), "rabbitmqctl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The broker-side ids of the connections whose `connection_name` is exactly `name`.
pub async fn connections_named(name: &str) -> Vec<String> {
    let listing = rabbitmqctl(&["list_connections", "--quiet", "--no-table-headers", "pid", "client_properties"]).await;
    // rabbitmqctl prints client properties as `{"connection_name","<name>"}`.
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    listing
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Closes, from the broker side, every connection named `name`; returns how many there were.
pub async fn close_connections_named(name: &str) -> usize {
    let pids = connections_named(name).await;
    for pid in &pids {
        rabbitmqctl(&["close_connection", pid, "test"]).await;
    }
    pids.len()
}

/// Waits until a connection named `name` exists, up to `within`.
pub async fn wait_for_connection(name: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if !connections_named(name).await.is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
