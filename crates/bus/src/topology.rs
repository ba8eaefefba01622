//! Concordat's RabbitMQ topology (DESIGN.md §5): exchange and queue names, their arguments, and
//! declaring them idempotently.
//!
//! The names are a public contract that agencies and operators rely on. This module only names and
//! declares; moving messages is [`crate::publisher`] and [`crate::consumer`]'s job.
//!
//! | name | kind | bound to |
//! | --- | --- | --- |
//! | `concordat.ingest` | topic exchange | |
//! | `concordat.ingest` | quorum queue, stage `ingest` | `concordat.ingest` with `#` |
//! | `concordat.events` | topic exchange | |
//! | `concordat.router` | quorum queue, stage `router` | `concordat.events` with `#` |
//! | `concordat.deliver` | direct exchange | |
//! | `agency.{id}.inbox` | quorum queue, stage `deliver` | `concordat.deliver` with `{id}` |
//! | `concordat.dlx` | direct exchange | |
//! | `concordat.dead.{stage}` | quorum queue | `concordat.dlx` with `{stage}` |
//!
//! Work queues carry `x-dead-letter-exchange = concordat.dlx`, `x-dead-letter-routing-key = {stage}` and
//! `x-delivery-limit`, so the broker dead-letters a message on its own should consumers keep failing on it.
//! Changing those arguments on an existing queue makes RabbitMQ refuse the declaration (406); change them
//! with a policy instead.

use std::fmt;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::{BusConfig, ConfigError, redact_url};
use crate::connection::open;

/// A step of the pipeline that consumes a queue and may dead-letter what it cannot process. Its name is
/// the dead-letter routing key and the suffix of `concordat.dead.{stage}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Native payloads arriving over AMQP, from `concordat.ingest`.
    Ingest,
    /// Canonical events, from `concordat.router`.
    Router,
    /// Rendered deliveries, from `agency.{id}.inbox`.
    Deliver,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 3] = [Stage::Ingest, Stage::Router, Stage::Deliver];

    /// `ingest`, `router` or `deliver`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Router => "router",
            Stage::Deliver => "deliver",
        }
    }

    /// The stage named `name` (`ingest`, `router` or `deliver`), if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == name)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the topology could not be built or declared.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An agency id cannot be used in a queue name and a routing key.
    #[error("agency id `{agency}` must be 1 to 200 letters, digits, `-` or `_`")]
    InvalidAgency {
        /// The offending id.
        agency: String,
    },
    /// A prefix cannot be used in names.
    #[error("topology prefix `{prefix}` must be 1 to 40 letters, digits, `-` or `_`")]
    InvalidPrefix {
        /// The offending prefix.
        prefix: String,
    },
    /// A name exceeds AMQP's 255 bytes.
    #[error("`{name}` is longer than 255 bytes")]
    NameTooLong {
        /// The name.
        name: String,
    },
    /// An inbox was asked for an agency the topology does not list.
    #[error("agency `{agency}` has no inbox in this topology")]
    UnknownAgency {
        /// The agency id.
        agency: String,
    },
    /// The broker could not be reached.
    #[error("cannot connect to RabbitMQ at {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What the client reported.
        #[source]
        source: lapin::Error,
    },
    /// The broker refused a declaration, binding or deletion (e.g. 406: an existing queue has other
    /// arguments), or the connection failed during it.
    #[error("{action} `{name}` failed")]
    Broker {
        /// `declaring exchange`, `declaring queue`, `binding queue`, `deleting queue`, …
        action: &'static str,
        /// The exchange or queue.
        name: String,
        /// What the broker or client reported.
        #[source]
        source: lapin::Error,
    },
}

impl TopologyError {
    /// Whether retrying later cannot help: the broker refused the request itself (a channel-level error
    /// such as 406 or 403) or the input is wrong, rather than the connection failing.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        match self {
            TopologyError::Connect { .. } => false,
            TopologyError::Broker { source, .. } => source.is_amqp_soft_error(),
            TopologyError::Config(_)
            | TopologyError::InvalidAgency { .. }
            | TopologyError::InvalidPrefix { .. }
            | TopologyError::NameTooLong { .. }
            | TopologyError::UnknownAgency { .. } => true,
        }
    }
}

/// The exchanges and queues Concordat declares, for a list of agencies.
///
/// [`Topology::new`] gives the production names. [`Topology::with_prefix`] puts every name under a prefix
/// (`t-1234.concordat.events`, `t-1234.agency.met.inbox`) so that tests sharing a broker never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: Option<String>,
    agencies: Vec<String>,
}

/// An exchange or queue to declare.
enum Entity {
    Exchange { name: String, kind: ExchangeKind },
    Queue { name: String, dead_letter_stage: Option<Stage> },
    Binding { queue: String, exchange: String, key: String },
}

impl Topology {
    /// The production topology for `agencies`.
    ///
    /// # Errors
    ///
    /// [`TopologyError::InvalidAgency`] when an id is empty, longer than 200 bytes, or holds anything but
    /// ASCII letters, digits, `-` and `_` (a `.`, `#` or `*` would read as routing syntax).
    pub fn new(agencies: Vec<String>) -> Result<Self, TopologyError> {
        for agency in &agencies {
            if !is_name_part(agency, 200) {
                return Err(TopologyError::InvalidAgency { agency: agency.clone() });
            }
        }
        Ok(Self { prefix: None, agencies })
    }

    /// The same shape with every name under `{prefix}.`, for tests.
    ///
    /// # Errors
    ///
    /// As [`Topology::new`], and [`TopologyError::InvalidPrefix`] for a prefix that is empty, longer than
    /// 40 bytes, or holds anything but ASCII letters, digits, `-` and `_`.
    pub fn with_prefix(prefix: impl Into<String>, agencies: Vec<String>) -> Result<Self, TopologyError> {
        let prefix = prefix.into();
        if !is_name_part(&prefix, 40) {
            return Err(TopologyError::InvalidPrefix { prefix });
        }
        Ok(Self { prefix: Some(prefix), ..Self::new(agencies)? })
    }

    /// The agencies that get an inbox.
    #[must_use]
    pub fn agencies(&self) -> &[String] {
        &self.agencies
    }

    fn name(&self, base: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}.{base}"),
            None => base.to_owned(),
        }
    }

    /// `concordat.ingest`, the topic exchange for native payloads (routing key = agency id).
    #[must_use]
    pub fn ingest_exchange(&self) -> String {
        self.name("concordat.ingest")
    }

    /// `concordat.events`, the topic exchange for canonical events (`{agency_kind}.{agency}.{kind}`).
    #[must_use]
    pub fn events_exchange(&self) -> String {
        self.name("concordat.events")
    }

    /// `concordat.deliver`, the direct exchange for rendered deliveries (routing key = agency id).
    #[must_use]
    pub fn deliver_exchange(&self) -> String {
        self.name("concordat.deliver")
    }

    /// `concordat.dlx`, the direct exchange for dead letters (routing key = stage).
    #[must_use]
    pub fn dead_letter_exchange(&self) -> String {
        self.name("concordat.dlx")
    }

    /// `concordat.ingest`, the ingest stage's queue.
    #[must_use]
    pub fn ingest_queue(&self) -> String {
        self.name("concordat.ingest")
    }

    /// `concordat.router`, the router's queue.
    #[must_use]
    pub fn router_queue(&self) -> String {
        self.name("concordat.router")
    }

    /// `agency.{agency}.inbox`, what an agency receives. Names any id; only listed agencies are declared.
    #[must_use]
    pub fn inbox_queue(&self, agency: &str) -> String {
        self.name(&format!("agency.{agency}.inbox"))
    }

    /// `concordat.dead.{stage}`, the dead letters of one stage.
    #[must_use]
    pub fn dead_letter_queue(&self, stage: Stage) -> String {
        self.name(&format!("concordat.dead.{stage}"))
    }

    /// Everything to declare, in an order where each binding follows its exchange and queue.
    fn entities(&self) -> Vec<Entity> {
        let exchange = |name: String, kind: ExchangeKind| Entity::Exchange { name, kind };
        let work_queue = |name: String, stage: Stage| Entity::Queue { name, dead_letter_stage: Some(stage) };
        let binding =
            |queue: String, exchange: String, key: &str| Entity::Binding { queue, exchange, key: key.to_owned() };
        let mut entities = vec![
            // The dead-letter side first, so that nothing is declared pointing at a missing target.
            exchange(self.dead_letter_exchange(), ExchangeKind::Direct),
        ];
        for stage in Stage::ALL {
            entities.push(Entity::Queue { name: self.dead_letter_queue(stage), dead_letter_stage: None });
            entities.push(binding(self.dead_letter_queue(stage), self.dead_letter_exchange(), stage.as_str()));
        }
        entities.extend([
            exchange(self.ingest_exchange(), ExchangeKind::Topic),
            work_queue(self.ingest_queue(), Stage::Ingest),
            binding(self.ingest_queue(), self.ingest_exchange(), "#"),
            exchange(self.events_exchange(), ExchangeKind::Topic),
            work_queue(self.router_queue(), Stage::Router),
            binding(self.router_queue(), self.events_exchange(), "#"),
            exchange(self.deliver_exchange(), ExchangeKind::Direct),
        ]);
        for agency in &self.agencies {
            entities.push(work_queue(self.inbox_queue(agency), Stage::Deliver));
            entities.push(binding(self.inbox_queue(agency), self.deliver_exchange(), agency));
        }
        entities
    }

    /// Declares every exchange, queue and binding. Declaring again what exists with the same arguments
    /// changes nothing, so every process does this at start-up and every consumer after each reconnect.
    ///
    /// # Errors
    ///
    /// [`TopologyError::Connect`] when the broker cannot be reached; [`TopologyError::Broker`] when it
    /// refuses a declaration, e.g. because an existing queue has other arguments.
    pub async fn declare(&self, config: &BusConfig) -> Result<(), TopologyError> {
        config.validate()?;
        let connection = open(config, "concordat-topology")
            .await
            .map_err(|source| TopologyError::Connect { url: redact_url(&config.amqp_url), source })?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|source| TopologyError::Connect { url: redact_url(&config.amqp_url), source })?;
        let declared = self.declare_on(&channel, config.delivery_limit).await;
        // The declarations are durable; a failed close cannot undo them.
        let _ = connection.close(200, "topology declared".into()).await;
        declared
    }

    /// Declares everything on an open channel.
    pub(crate) async fn declare_on(&self, channel: &Channel, delivery_limit: u32) -> Result<(), TopologyError> {
        for entity in self.entities() {
            match entity {
                Entity::Exchange { name, kind } => channel
                    .exchange_declare(
                        short(&name)?,
                        kind,
                        ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(broker("declaring exchange", &name))?,
                Entity::Queue { name, dead_letter_stage } => {
                    let arguments = self.queue_arguments(dead_letter_stage, delivery_limit);
                    channel
                        .queue_declare(short(&name)?, QueueDeclareOptions::durable(), arguments)
                        .await
                        .map_err(broker("declaring queue", &name))?;
                }
                Entity::Binding { queue, exchange, key } => channel
                    .queue_bind(
                        short(&queue)?,
                        short(&exchange)?,
                        short(&key)?,
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(broker("binding queue", &queue))?,
            }
        }
        Ok(())
    }

    fn queue_arguments(&self, dead_letter_stage: Option<Stage>, delivery_limit: u32) -> FieldTable {
        let text = |value: &str| AMQPValue::LongString(LongString::from(value));
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), text("quorum"));
        if let Some(stage) = dead_letter_stage {
            arguments.insert("x-dead-letter-exchange".into(), text(&self.dead_letter_exchange()));
            arguments.insert("x-dead-letter-routing-key".into(), text(stage.as_str()));
            // `BusConfig::validate` bounds the limit to what fits.
            let limit = i32::try_from(delivery_limit).unwrap_or(i32::MAX);
            arguments.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
        }
        arguments
    }

    /// Deletes every queue and exchange of this topology, messages included. For tests and for tearing
    /// down a prefixed topology; production topologies are never deleted by Concordat.
    ///
    /// # Errors
    ///
    /// [`TopologyError::Connect`] when the broker cannot be reached; [`TopologyError::Broker`] when a
    /// deletion fails. Deleting what does not exist succeeds.
    pub async fn delete(&self, config: &BusConfig) -> Result<(), TopologyError> {
        let connection = open(config, "concordat-topology")
            .await
            .map_err(|source| TopologyError::Connect { url: redact_url(&config.amqp_url), source })?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|source| TopologyError::Connect { url: redact_url(&config.amqp_url), source })?;
        for entity in self.entities() {
            match entity {
                Entity::Queue { name, .. } => {
                    channel
                        .queue_delete(short(&name)?, QueueDeleteOptions::default())
                        .await
                        .map_err(broker("deleting queue", &name))?;
                }
                Entity::Exchange { name, .. } => channel
                    .exchange_delete(short(&name)?, ExchangeDeleteOptions::default())
                    .await
                    .map_err(broker("deleting exchange", &name))?,
                Entity::Binding { .. } => {}
            }
        }
        let _ = connection.close(200, "topology deleted".into()).await;
        Ok(())
    }
}

fn is_name_part(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A name as AMQP carries it. Names built from checked parts stay under 255 bytes; this guards the
/// arithmetic rather than panicking in lapin's conversion.
pub(crate) fn short(name: &str) -> Result<ShortString, TopologyError> {
    ShortString::try_new(name).map_err(|_| TopologyError::NameTooLong { name: name.to_owned() })
}

fn broker(action: &'static str, name: &str) -> impl FnOnce(lapin::Error) -> TopologyError {
    let name = name.to_owned();
    move |source| TopologyError::Broker { action, name, source }
}

/// What a consumer reads: a queue of the topology, the stage it dead-letters to, and the name its
/// connection shows in RabbitMQ's management UI and `rabbitmqctl list_connections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    topology: Topology,
    queue: String,
    stage: Stage,
    connection_name: String,
}

impl Subscription {
    /// The ingest stage's queue, `concordat.ingest`.
    #[must_use]
    pub fn ingest(topology: Topology, connection_name: impl Into<String>) -> Self {
        Self { queue: topology.ingest_queue(), topology, stage: Stage::Ingest, connection_name: connection_name.into() }
    }

    /// The router's queue, `concordat.router`.
    #[must_use]
    pub fn router(topology: Topology, connection_name: impl Into<String>) -> Self {
        Self { queue: topology.router_queue(), topology, stage: Stage::Router, connection_name: connection_name.into() }
    }

    /// An agency's inbox, `agency.{agency}.inbox`, for the delivery worker.
    ///
    /// # Errors
    ///
    /// [`TopologyError::UnknownAgency`] when the topology does not list `agency`.
    pub fn inbox(topology: Topology, agency: &str, connection_name: impl Into<String>) -> Result<Self, TopologyError> {
        if !topology.agencies.iter().any(|known| known == agency) {
            return Err(TopologyError::UnknownAgency { agency: agency.to_owned() });
        }
        Ok(Self {
            queue: topology.inbox_queue(agency),
            topology,
            stage: Stage::Deliver,
            connection_name: connection_name.into(),
        })
    }

    /// The topology, declared again after every reconnect.
    #[must_use]
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The queue consumed.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The stage: the routing key of dead letters.
    #[must_use]
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The connection name shown by RabbitMQ.
    #[must_use]
    pub fn connection_name(&self) -> &str {
        &self.connection_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(topology: &Topology) -> Vec<String> {
        topology
            .entities()
            .into_iter()
            .map(|entity| match entity {
                Entity::Exchange { name, kind } => format!("exchange {name} {kind:?}"),
                Entity::Queue { name, dead_letter_stage } => format!("queue {name} {dead_letter_stage:?}"),
                Entity::Binding { queue, exchange, key } => format!("bind {queue} <- {exchange} {key}"),
            })
            .collect()
    }

    #[test]
    fn production_names_follow_the_contract() -> Result<(), TopologyError> {
        let topology = Topology::new(vec!["met".to_owned(), "nhs-trust_1".to_owned()])?;
        assert_eq!(
            names(&topology),
            [
                "exchange concordat.dlx Direct",
                "queue concordat.dead.ingest None",
                "bind concordat.dead.ingest <- concordat.dlx ingest",
                "queue concordat.dead.router None",
                "bind concordat.dead.router <- concordat.dlx router",
                "queue concordat.dead.deliver None",
                "bind concordat.dead.deliver <- concordat.dlx deliver",
                "exchange concordat.ingest Topic",
                "queue concordat.ingest Some(Ingest)",
                "bind concordat.ingest <- concordat.ingest #",
                "exchange concordat.events Topic",
                "queue concordat.router Some(Router)",
                "bind concordat.router <- concordat.events #",
                "exchange concordat.deliver Direct",
                "queue agency.met.inbox Some(Deliver)",
                "bind agency.met.inbox <- concordat.deliver met",
                "queue agency.nhs-trust_1.inbox Some(Deliver)",
                "bind agency.nhs-trust_1.inbox <- concordat.deliver nhs-trust_1",
            ]
        );
        Ok(())
    }

    #[test]
    fn a_prefix_applies_to_every_name() -> Result<(), TopologyError> {
        let topology = Topology::with_prefix("t-42", vec!["met".to_owned()])?;
        assert_eq!(topology.events_exchange(), "t-42.concordat.events");
        assert_eq!(topology.inbox_queue("met"), "t-42.agency.met.inbox");
        assert_eq!(topology.dead_letter_queue(Stage::Router), "t-42.concordat.dead.router");
        assert!(names(&topology).iter().all(|line| line.matches("t-42.").count() >= 1));
        Ok(())
    }

    #[test]
    fn work_queues_dead_letter_to_their_stage() -> Result<(), TopologyError> {
        let topology = Topology::with_prefix("p", Vec::new())?;
        let arguments = topology.queue_arguments(Some(Stage::Deliver), 7);
        let get = |key: &str| arguments.inner().get(key).cloned();
        let text = |value: &str| Some(AMQPValue::LongString(LongString::from(value)));
        assert_eq!(get("x-queue-type"), text("quorum"));
        assert_eq!(get("x-dead-letter-exchange"), text("p.concordat.dlx"));
        assert_eq!(get("x-dead-letter-routing-key"), text("deliver"));
        assert_eq!(get("x-delivery-limit"), Some(AMQPValue::LongInt(7)));
        let dead = topology.queue_arguments(None, 7);
        assert_eq!(dead.inner().len(), 1);
        Ok(())
    }

    #[test]
    fn rejects_names_that_read_as_routing_syntax() {
        for agency in ["", "a.b", "a#", "*", "with space", &"x".repeat(201)] {
            assert!(
                matches!(Topology::new(vec![agency.to_owned()]), Err(TopologyError::InvalidAgency { .. })),
                "{agency:?}"
            );
        }
        assert!(matches!(Topology::with_prefix("a.b", Vec::new()), Err(TopologyError::InvalidPrefix { .. })));
    }

    #[test]
    fn inbox_subscriptions_need_a_listed_agency() -> Result<(), TopologyError> {
        let topology = Topology::new(vec!["met".to_owned()])?;
        let inbox = Subscription::inbox(topology.clone(), "met", "delivery")?;
        assert_eq!(inbox.queue(), "agency.met.inbox");
        assert_eq!(inbox.stage(), Stage::Deliver);
        assert!(matches!(Subscription::inbox(topology, "nope", "delivery"), Err(TopologyError::UnknownAgency { .. })));
        Ok(())
    }
}
