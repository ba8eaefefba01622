//! The delivery worker's test bench: a real RabbitMQ (`CONCORDAT_AMQP_URL`) with a topology under a unique
//! prefix, a fresh SQLite store whose outbox holds the deliveries, the messages published to the inbox as
//! the relay publishes them, and the worker running until the test stops it. A broker that cannot be
//! reached fails the test.

#![allow(dead_code, reason = "each test binary uses a different part of the helpers")]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use chrono::{TimeZone as _, Utc};
use concordat_bus::{BusConfig, OutgoingMessage, Publisher, Stage, Topology, TraceParent};
use concordat_delivery::{DeliveryConfig, run_delivery};
use concordat_episode::{AgencyId, EventId};
use concordat_store::{DeliveryId, NewDelivery, Store};
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The bus configuration for tests: defaults, the broker from `CONCORDAT_AMQP_URL` if set, a quick
/// reconnect schedule. Logs go to the test output, filtered by `RUST_LOG`.
pub fn bus() -> BusConfig {
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

/// One test's world: topology, store, publisher, and the worker once started.
pub struct Bench {
    pub bus: BusConfig,
    pub topology: Topology,
    pub store: Store,
    publisher: Publisher,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    worker: Option<JoinHandle<Result<(), concordat_delivery::DeliveryError>>>,
}

impl Bench {
    /// Declares a topology with an inbox for `agency`, opens a fresh store.
    pub async fn new(agency: &str) -> Result<Self> {
        let bus = bus();
        let prefix = format!("t-{}", Uuid::new_v4().simple());
        let topology = Topology::with_prefix(prefix, vec![agency.to_owned()])?;
        topology.declare(&bus).await.context("declaring the test topology (is RabbitMQ running?)")?;
        let dir = tempfile::tempdir()?;
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("concordat.db").display())).await?;
        let publisher = Publisher::connect(&bus, "concordat-delivery-test").await?;
        Ok(Self { bus, topology, store, publisher, dir, shutdown: CancellationToken::new(), worker: None })
    }

    /// A secret file holding `secret`, in the bench's directory.
    pub fn secret_file(&self, secret: &str) -> Result<std::path::PathBuf> {
        let path = self.dir.path().join("webhook.whsec");
        std::fs::write(&path, format!("{secret}\n"))?;
        Ok(path)
    }

    /// Writes `count` deliveries for `agency` to the outbox and publishes them to its inbox, as the router
    /// and the relay do; returns their message ids in order.
    pub async fn deliver(&self, agency: &str, content_type: &str, bodies: &[Vec<u8>]) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut tx = self.store.begin().await?;
        let mut messages = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            let id = Uuid::new_v4();
            let headers = BTreeMap::from([
                ("concordat-kind".to_owned(), "feedback.outcome".to_owned()),
                ("concordat-episode".to_owned(), Uuid::new_v4().to_string()),
            ]);
            tx.enqueue(&NewDelivery {
                delivery_id: DeliveryId(id),
                event_id: EventId(Uuid::new_v4()),
                decision_id: None,
                recipient: AgencyId::new(agency)?,
                exchange: self.topology.deliver_exchange(),
                routing_key: agency.to_owned(),
                content_type: content_type.to_owned(),
                headers: headers.clone(),
                body: body.clone(),
                created_at: Utc.timestamp_opt(1_780_000_000 + i64::try_from(index)?, 0).single().context("time")?,
            })
            .await?;
            messages.push(OutgoingMessage {
                exchange: self.topology.deliver_exchange(),
                routing_key: agency.to_owned(),
                message_id: id.to_string(),
                content_type: content_type.to_owned(),
                body: body.clone(),
                headers,
                traceparent: TraceParent::new_root(),
            });
            ids.push(id.to_string());
        }
        tx.commit().await?;
        self.publisher.publish_batch(&messages).await?;
        Ok(ids)
    }

    /// Starts the worker with `config` (checked against the topology's agencies).
    pub fn start(&mut self, config: &DeliveryConfig) -> Result<()> {
        let deliveries = config.validate(self.topology.agencies())?;
        let task = run_delivery(
            deliveries,
            self.bus.clone(),
            self.topology.clone(),
            self.store.clone(),
            self.shutdown.clone(),
        );
        self.worker = Some(tokio::spawn(task));
        Ok(())
    }

    /// Stops the worker and insists it stopped cleanly.
    pub async fn stop(&mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            worker.await??;
        }
        Ok(())
    }

    /// How many messages wait in `queue` (ready, not counting one held unacked).
    pub async fn ready(&self, queue: &str) -> Result<u32> {
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared = channel.queue_declare(queue.into(), passive, FieldTable::default()).await?;
        let _ = connection.close(200, "done".into()).await;
        Ok(declared.message_count())
    }

    /// Takes the next dead letter of the `deliver` stage, waiting up to `within`: its message id and
    /// `x-concordat-error`.
    pub async fn dead_letter(&self, within: Duration) -> Result<Option<(String, String)>> {
        let queue = self.topology.dead_letter_queue(Stage::Deliver);
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        let deadline = tokio::time::Instant::now() + within;
        let taken = loop {
            if let Some(got) = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await? {
                let properties = &got.delivery.properties;
                let id = properties.message_id().as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default();
                let error = properties
                    .headers()
                    .as_ref()
                    .and_then(|headers| headers.inner().get(concordat_bus::ERROR_HEADER).cloned())
                    .map(|value| match value {
                        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                break Some((id, error));
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _ = connection.close(200, "done".into()).await;
        Ok(taken)
    }

    /// How many outbox rows have a `confirmed_at`, and how many `delivery_confirmed` records the audit
    /// chain holds (after checking the chain).
    pub async fn confirmations(&self) -> Result<(i64, i64)> {
        self.store.audit_verify().await?;
        let url = format!("sqlite://{}", self.dir.path().join("concordat.db").display());
        let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await?;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE confirmed_at IS NOT NULL")
            .fetch_one(&mut connection)
            .await?;
        let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE kind = 'delivery_confirmed'")
            .fetch_one(&mut connection)
            .await?;
        Ok((rows, audited))
    }

    async fn connection(&self) -> Result<Connection> {
        let properties = ConnectionProperties::default().with_connection_name("concordat-delivery-inspector".into());
        Ok(Connection::connect(&self.bus.amqp_url, properties).await?)
    }

    /// Stops the worker and deletes the topology.
    pub async fn finish(mut self) -> Result<()> {
        self.stop().await?;
        self.publisher.close().await;
        self.store.close().await;
        self.topology.delete(&self.bus).await?;
        Ok(())
    }
}

/// Waits until `check` holds, polling every 50 ms, up to `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(tokio::time::Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
