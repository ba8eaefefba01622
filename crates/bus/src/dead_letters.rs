//! Dead letters: what the `concordat.dead.{stage}` queues hold, listed by their metadata and retried to
//! the route they were first published on (DESIGN.md §7, invariant 3: inspectable and replayable).
//!
//! This module reads headers and properties only. It never parses, returns or logs a body: a dead letter
//! is described by its size, since bodies hold personal data.
//!
//! RabbitMQ has no way to look at a queue without taking from it, so both [`list_dead_letters`] and [`retry_dead_letters`] take every
//! message of a dead-letter queue with `basic.get` (unacknowledged), decide, and then settle each one:
//!
//! - a message that was retried is acked only after RabbitMQ confirmed the republished copy, so a crash in
//!   between leaves it in the dead-letter queue as well as on its route (consumers dedupe by `message_id`);
//! - every other message goes back with `basic.nack` and `requeue`.
//!
//! Each return raises a quorum queue's `x-delivery-count`. The dead-letter queues are declared without a
//! delivery limit, but RabbitMQ 4.0 to 4.2 apply a default limit of 20 to every quorum queue and drop a
//! message returned more often than that when the queue has no dead-letter exchange. So a message whose
//! count has reached [`REFRESH_AT`] is not returned but replaced: a copy (same id, properties, headers and
//! body, without the count) is published to the same queue and confirmed, and only then is the original
//! acked. The copy starts at zero returns, so no number of listings can ever drop a dead letter.

use std::collections::BTreeMap;
use std::fmt;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use tracing::{info, warn};

use crate::config::{BusConfig, ConfigError, redact_url};
use crate::connection::open;
use crate::message::{
    DEAD_LETTERED_AT_HEADER, DELIVERY_COUNT_HEADER, ERROR_HEADER, ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER, QUORUM_DELIVERY_COUNT_HEADER, WireMessage, integer,
};
use crate::publisher::{PublishError, publish_confirmed};
use crate::topology::{Stage, Topology};

/// How many times a dead letter may be returned to its queue before it is replaced by a fresh copy: half
/// of the default delivery limit of RabbitMQ 4.0 to 4.2, so a copy is made long before a message is at risk.
pub const REFRESH_AT: u32 = 10;

/// The header that names an event's kind, set by the gateway and the router.
const KIND_HEADER: &str = "concordat-kind";

/// Which stage's dead letter, by its message id: how the admin API and the command line name one.
///
/// Written `{stage}:{message_id}` (`router:6f1c0d3e-…`). A message id can repeat across stages (an
/// ingest payload and an event share nothing, but nothing forbids equal ids), and even within one queue
/// when the same message was dead-lettered twice; an id names every copy, which are the same message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeadLetterId {
    /// The stage whose queue holds it.
    pub stage: Stage,
    /// The AMQP `message-id`.
    pub message_id: String,
}

impl fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.stage, self.message_id)
    }
}

impl DeadLetterId {
    /// Reads `{stage}:{message_id}`; `None` when the text does not start with a stage and a colon.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (stage, message_id) = text.split_once(':')?;
        let stage = Stage::from_name(stage)?;
        (!message_id.is_empty()).then(|| Self { stage, message_id: message_id.to_owned() })
    }
}

/// One message in a dead-letter queue, described without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The stage whose dead-letter queue holds it.
    pub stage: Stage,
    /// The AMQP `message-id`, if the message had one (Concordat's publishers always set it).
    pub message_id: Option<String>,
    /// Why it was dead-lettered: `x-concordat-error`, or RabbitMQ's own reason (`x-death`) when the broker
    /// dead-lettered it, e.g. after its delivery limit.
    pub reason: String,
    /// The exchange it was first published to; empty when unknown.
    pub original_exchange: String,
    /// The routing key it was first published with.
    pub original_routing_key: String,
    /// How many times it had been delivered when it was dead-lettered, if recorded.
    pub delivery_count: Option<u32>,
    /// The `concordat-kind` header: the event kind, if the message carries one.
    pub kind: Option<String>,
    /// The AMQP `content-type`.
    pub content_type: Option<String>,
    /// The size of the body in bytes. The body itself is never read out.
    pub body_bytes: usize,
    /// When it was dead-lettered, in seconds since the Unix epoch, if recorded.
    pub dead_lettered_at: Option<u64>,
}

impl DeadLetter {
    /// Its id, when it has a message id.
    #[must_use]
    pub fn id(&self) -> Option<DeadLetterId> {
        self.message_id.clone().map(|message_id| DeadLetterId { stage: self.stage, message_id })
    }

    fn from_delivery(stage: Stage, delivery: &Delivery) -> Self {
        let properties = &delivery.properties;
        let headers = properties.headers().as_ref().map(FieldTable::inner);
        let text = |name: &str| headers.and_then(|table| table.get(name)).and_then(text_value);
        let number = |name: &str| headers.and_then(|table| table.get(name)).and_then(integer);
        let death = headers.and_then(|table| table.get("x-death")).and_then(latest_death);
        let reason = text(ERROR_HEADER)
            .or_else(|| death.as_ref().map(|death| format!("dead-lettered by RabbitMQ: {}", death.reason)))
            .unwrap_or_default();
        let original_exchange = text(ORIGINAL_EXCHANGE_HEADER)
            .or_else(|| death.as_ref().map(|death| death.exchange.clone()))
            .unwrap_or_default();
        let original_routing_key = text(ORIGINAL_ROUTING_KEY_HEADER)
            .or_else(|| death.as_ref().map(|death| death.routing_key.clone()))
            .unwrap_or_default();
        let dead_lettered_at = headers
            .and_then(|table| table.get(DEAD_LETTERED_AT_HEADER))
            .and_then(timestamp)
            .or_else(|| death.as_ref().and_then(|death| death.time));
        Self {
            stage,
            message_id: properties.message_id().as_ref().map(|id| id.as_str().to_owned()),
            reason,
            original_exchange,
            original_routing_key,
            delivery_count: number(DELIVERY_COUNT_HEADER).and_then(|count| u32::try_from(count).ok()),
            kind: text(KIND_HEADER),
            content_type: properties.content_type().as_ref().map(|value| value.as_str().to_owned()),
            body_bytes: delivery.data.len(),
            dead_lettered_at,
        }
    }
}

/// Which dead letters to list or retry. Every condition given must hold; none given selects all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this stage's queue; all stages when `None`.
    pub stage: Option<Stage>,
    /// Only those whose reason contains this text.
    pub reason: Option<String>,
    /// Only those of this `concordat-kind`.
    pub kind: Option<String>,
}

impl Filter {
    fn matches(&self, letter: &DeadLetter) -> bool {
        self.stage.is_none_or(|stage| stage == letter.stage)
            && self.reason.as_deref().is_none_or(|text| letter.reason.contains(text))
            && self.kind.as_deref().is_none_or(|kind| letter.kind.as_deref() == Some(kind))
    }

    fn stages(&self) -> Vec<Stage> {
        self.stage.map_or_else(|| Stage::ALL.to_vec(), |stage| vec![stage])
    }
}

/// The dead letters [`retry_dead_letters`] is to republish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Those with this message id, in one stage's queue or (`stage: None`) in any.
    Id {
        /// The stage, when known.
        stage: Option<Stage>,
        /// The AMQP `message-id`.
        message_id: String,
    },
    /// Those the filter matches; [`Filter::default`] selects all.
    Filter(Filter),
}

impl Selector {
    fn stages(&self) -> Vec<Stage> {
        match self {
            Selector::Id { stage: Some(stage), .. } => vec![*stage],
            Selector::Id { stage: None, .. } => Stage::ALL.to_vec(),
            Selector::Filter(filter) => filter.stages(),
        }
    }

    fn matches(&self, letter: &DeadLetter) -> bool {
        match self {
            Selector::Id { stage, message_id } => {
                stage.is_none_or(|stage| stage == letter.stage) && letter.message_id.as_deref() == Some(message_id)
            }
            Selector::Filter(filter) => filter.matches(letter),
        }
    }
}

impl From<DeadLetterId> for Selector {
    fn from(id: DeadLetterId) -> Self {
        Selector::Id { stage: Some(id.stage), message_id: id.message_id }
    }
}

/// Why a selected dead letter was not retried. It stays in its dead-letter queue, untouched.
#[derive(Debug, thiserror::Error)]
pub enum NotRetried {
    /// It records no original exchange, so there is nowhere to send it.
    #[error("it records no original exchange")]
    NoOriginalRoute,
    /// Nothing is bound to its original exchange for its routing key any more (RabbitMQ returned it).
    #[error("nothing is bound to exchange `{exchange}` for routing key `{routing_key}` any more")]
    Unroutable {
        /// The original exchange.
        exchange: String,
        /// The original routing key.
        routing_key: String,
    },
    /// The republish failed otherwise: the exchange is gone (404), access was refused, no confirm came.
    #[error("republishing failed")]
    Publish(#[source] PublishError),
}

/// What [`retry_dead_letters`] did with the dead letters it selected.
#[derive(Debug, Default)]
pub struct RetryReport {
    /// Republished to their original route, confirmed, and removed from their dead-letter queue.
    pub retried: Vec<DeadLetter>,
    /// Still in their dead-letter queue, each with why.
    pub not_retried: Vec<(DeadLetter, NotRetried)>,
}

/// Why listing or retrying could not be done at all.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker could not be reached.
    #[error("cannot connect to RabbitMQ at {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What the client reported.
        #[source]
        source: lapin::Error,
    },
    /// Reading or settling a dead-letter queue failed, e.g. the connection was lost. Whatever was taken
    /// and not yet settled goes back to the queue when the connection closes.
    #[error("reading dead-letter queue `{queue}` failed")]
    Broker {
        /// The queue.
        queue: String,
        /// What the client reported.
        #[source]
        source: lapin::Error,
    },
}

/// Lists the dead letters `filter` selects, stage by stage in pipeline order and, within a queue, in
/// queue order. Every message is put back (see the module documentation for how, and why none can be
/// lost by listing); a message another client holds unacknowledged at the moment is not seen.
///
/// Holds every message of a queue in memory while it lists it: dead-letter queues are meant to be short.
///
/// # Errors
///
/// [`DeadLetterError::Config`] for an unusable configuration, [`DeadLetterError::Connect`] when the broker
/// cannot be reached, [`DeadLetterError::Broker`] when a queue cannot be read.
pub async fn list_dead_letters(
    config: &BusConfig,
    topology: &Topology,
    filter: &Filter,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let session = Session::open(config, "concordat-dlq-list").await?;
    let mut listed = Vec::new();
    let mut failed = None;
    for stage in filter.stages() {
        match session.visit(topology, stage, |_| Action::Keep).await {
            Ok(visited) => {
                listed.extend(visited.into_iter().map(|(letter, _)| letter).filter(|letter| filter.matches(letter)));
            }
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    session.close().await;
    failed.map_or(Ok(listed), Err)
}

/// Republishes the dead letters `selector` selects to their original exchange and routing key, each with
/// its message id, content type, body and headers, minus the dead-letter headers (`x-concordat-*`,
/// `x-death`, `x-delivery-count`). Publishes are `mandatory` and confirmed; a dead letter leaves its queue
/// only once RabbitMQ confirmed its copy. The others, selected or not, go back untouched.
///
/// # Errors
///
/// As [`list_dead_letters`]. A dead letter that could not be republished is not an error but an entry of
/// [`RetryReport::not_retried`].
pub async fn retry_dead_letters(
    config: &BusConfig,
    topology: &Topology,
    selector: &Selector,
) -> Result<RetryReport, DeadLetterError> {
    let session = Session::open(config, "concordat-dlq-retry").await?;
    let mut report = RetryReport::default();
    let mut failed = None;
    for stage in selector.stages() {
        let select = |letter: &DeadLetter| if selector.matches(letter) { Action::Retry } else { Action::Keep };
        match session.visit(topology, stage, select).await {
            Ok(visited) => {
                for (letter, settled) in visited {
                    match settled {
                        Settled::Kept | Settled::Dropped => {}
                        Settled::Retried(Ok(())) => report.retried.push(letter),
                        Settled::Retried(Err(why)) => report.not_retried.push((letter, why)),
                    }
                }
            }
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    session.close().await;
    for letter in &report.retried {
        info!(stage = %letter.stage, message_id = letter.message_id.as_deref().unwrap_or_default(), "Dead letter retried.");
    }
    for (letter, why) in &report.not_retried {
        warn!(
            stage = %letter.stage,
            message_id = letter.message_id.as_deref().unwrap_or_default(),
            why = %why,
            "Dead letter not retried."
        );
    }
    failed.map_or(Ok(report), Err)
}

/// Removes, from every stage's dead-letter queue, the dead letters dead-lettered before `before` (seconds
/// since the Unix epoch): the retention period of dead letters has passed (DESIGN.md §7, invariant 7). A
/// dead letter with no recorded time is kept, since its age is unknown; the others go back as listing puts
/// them back. Returns the dead letters removed (metadata only).
///
/// # Errors
/// As [`list_dead_letters`]; what was removed before a failure stays removed.
pub async fn expire_dead_letters(
    config: &BusConfig,
    topology: &Topology,
    before: u64,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let session = Session::open(config, "concordat-dlq-expire").await?;
    let mut expired = Vec::new();
    let mut failed = None;
    let expire = |letter: &DeadLetter| match letter.dead_lettered_at {
        Some(at) if at < before => Action::Drop,
        _ => Action::Keep,
    };
    for stage in Stage::ALL {
        match session.visit(topology, stage, expire).await {
            Ok(visited) => {
                expired.extend(
                    visited.into_iter().filter(|(_, settled)| matches!(settled, Settled::Dropped)).map(|(l, _)| l),
                );
            }
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    session.close().await;
    for letter in &expired {
        info!(stage = %letter.stage, message_id = letter.message_id.as_deref().unwrap_or_default(), "Dead letter expired.");
    }
    failed.map_or(Ok(expired), Err)
}

/// What a visit is to do with one dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Put it back.
    Keep,
    /// Republish it to its original route, then remove it.
    Retry,
    /// Remove it.
    Drop,
}

/// What became of one dead letter of a visit.
#[derive(Debug)]
enum Settled {
    /// Put back.
    Kept,
    /// Retried, or why not (then put back).
    Retried(Result<(), NotRetried>),
    /// Removed.
    Dropped,
}

type Visited = (DeadLetter, Settled);

/// One connection: a channel that takes and settles, and a confirm channel that publishes.
struct Session {
    connection: Connection,
    config: BusConfig,
    publisher: tokio::sync::Mutex<Channel>,
}

impl Session {
    async fn open(config: &BusConfig, connection_name: &str) -> Result<Self, DeadLetterError> {
        config.validate()?;
        let connect = |source| DeadLetterError::Connect { url: redact_url(&config.amqp_url), source };
        let connection = open(config, connection_name).await.map_err(connect)?;
        let publisher = confirm_channel(&connection).await.map_err(connect)?;
        Ok(Self { connection, config: config.clone(), publisher: tokio::sync::Mutex::new(publisher) })
    }

    async fn close(self) {
        // Anything still unsettled goes back to its queue when the connection closes.
        let _ = self.connection.close(200, "dead letters settled".into()).await;
    }

    /// Takes every message of `stage`'s dead-letter queue, then, in queue order, does with each what
    /// `decide` says: a retried one is republished to its original route and acked once its copy was
    /// confirmed (put back if not), a dropped one is acked, the others are put back. A queue that does not
    /// exist (the topology was never declared on this broker) holds nothing.
    async fn visit(
        &self,
        topology: &Topology,
        stage: Stage,
        decide: impl Fn(&DeadLetter) -> Action,
    ) -> Result<Vec<Visited>, DeadLetterError> {
        let queue = topology.dead_letter_queue(stage);
        let broker = |source| DeadLetterError::Broker { queue: queue.clone(), source };
        let name = ShortString::try_new(queue.as_str())
            .map_err(|_| broker(lapin::Error::from(std::io::Error::other("queue name longer than 255 bytes"))))?;
        if !self.exists(&name).await.map_err(broker)? {
            return Ok(Vec::new());
        }
        let reader = self.connection.create_channel().await.map_err(broker)?;
        let mut taken = Vec::new();
        // Every message stays unacknowledged on `reader` until it is settled below, so each `basic.get`
        // moves on to the next one and the loop ends once the queue is empty.
        while let Some(got) = reader.basic_get(name.clone(), BasicGetOptions { no_ack: false }).await.map_err(broker)? {
            taken.push(got.delivery);
        }
        let mut visited = Vec::with_capacity(taken.len());
        let mut settled = Ok(());
        for delivery in &taken {
            let letter = DeadLetter::from_delivery(stage, delivery);
            let outcome = match decide(&letter) {
                Action::Keep => Settled::Kept,
                Action::Retry => Settled::Retried(self.republish(&letter, delivery).await),
                Action::Drop => Settled::Dropped,
            };
            let result = match outcome {
                // Acked only now that RabbitMQ has confirmed the copy on its original route.
                Settled::Retried(Ok(())) | Settled::Dropped => {
                    delivery.acker.ack(BasicAckOptions::default()).await.map(drop)
                }
                Settled::Kept | Settled::Retried(Err(_)) => self.put_back(&name, delivery).await,
            };
            if let Err(source) = result {
                settled = Err(broker(source));
                break;
            }
            visited.push((letter, outcome));
        }
        let _ = reader.close(200, "dead letters settled".into()).await;
        settled.map(|()| visited)
    }

    /// Whether `queue` exists, asked on a channel of its own since a missing queue closes the channel.
    async fn exists(&self, queue: &ShortString) -> Result<bool, lapin::Error> {
        let channel = self.connection.create_channel().await?;
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        match channel.queue_declare(queue.clone(), options, FieldTable::default()).await {
            Ok(_) => {
                let _ = channel.close(200, "checked".into()).await;
                Ok(true)
            }
            Err(error) if error.is_amqp_soft_error() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Returns a message to its queue, or replaces it by a fresh copy once it has been returned
    /// [`REFRESH_AT`] times (see the module documentation).
    async fn put_back(&self, queue: &ShortString, delivery: &Delivery) -> Result<(), lapin::Error> {
        let returns = returns(&delivery.properties);
        if returns >= REFRESH_AT {
            let copy = WireMessage {
                // The default exchange routes by queue name, to this queue alone.
                exchange: ShortString::from(""),
                routing_key: queue.clone(),
                message_id: message_id(&delivery.properties),
                body: &delivery.data,
                properties: without_headers(&delivery.properties, |name| name == QUORUM_DELIVERY_COUNT_HEADER),
            };
            match self.publish(&copy).await {
                Ok(()) => return delivery.acker.ack(BasicAckOptions::default()).await.map(drop),
                Err(error) => {
                    // The original goes back as it is: one more return is safer than a lost message.
                    warn!(queue = queue.as_str(), message_id = %copy.message_id, %error, returns, "Could not refresh a dead letter.");
                }
            }
        }
        delivery.acker.nack(BasicNackOptions { multiple: false, requeue: true }).await.map(drop)
    }

    /// Republishes a dead letter to its original route.
    async fn republish(&self, letter: &DeadLetter, delivery: &Delivery) -> Result<(), NotRetried> {
        if letter.original_exchange.is_empty() {
            return Err(NotRetried::NoOriginalRoute);
        }
        let short = |value: &str, field| {
            ShortString::try_new(value).map_err(|_| {
                NotRetried::Publish(PublishError::Invalid {
                    message_id: message_id(&delivery.properties),
                    source: crate::InvalidMessage::TooLong { field },
                })
            })
        };
        let copy = WireMessage {
            exchange: short(&letter.original_exchange, "exchange")?,
            routing_key: short(&letter.original_routing_key, "routing_key")?,
            message_id: message_id(&delivery.properties),
            body: &delivery.data,
            properties: without_headers(&delivery.properties, is_dead_letter_header),
        };
        match self.publish(&copy).await {
            Ok(()) => Ok(()),
            Err(PublishError::Unroutable { exchange, routing_key, .. }) => {
                Err(NotRetried::Unroutable { exchange, routing_key })
            }
            Err(error) => Err(NotRetried::Publish(error)),
        }
    }

    /// Publishes one message on the confirm channel and waits for its confirm, within the configured
    /// deadline. A channel the broker closed (a missing exchange) is replaced for the next publish.
    async fn publish(&self, message: &WireMessage<'_>) -> Result<(), PublishError> {
        let mut channel = self.publisher.lock().await;
        if !channel.status().connected() {
            *channel = confirm_channel(&self.connection)
                .await
                .map_err(|source| PublishError::ConnectionLost { message_id: message.message_id.clone(), source })?;
        }
        let mut confirmed = 0;
        match tokio::time::timeout(
            self.config.publish_timeout(),
            publish_confirmed(&channel, std::slice::from_ref(message), &mut confirmed),
        )
        .await
        {
            Ok(published) => published,
            Err(_elapsed) => Err(PublishError::Timeout {
                message_id: message.message_id.clone(),
                timeout_ms: self.config.publish_timeout_ms,
            }),
        }
    }
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}

/// The headers a dead-letter queue added, which a retried message must not carry back.
fn is_dead_letter_header(name: &str) -> bool {
    name.starts_with("x-concordat-")
        || name == QUORUM_DELIVERY_COUNT_HEADER
        || name == "x-death"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// `properties` with the headers `drop` names removed, and without `user_id`: a message the broker
/// dead-lettered itself may still carry one, and RabbitMQ refuses it from Concordat's own user.
fn without_headers(properties: &BasicProperties, drop: impl Fn(&str) -> bool) -> BasicProperties {
    let headers: BTreeMap<ShortString, AMQPValue> = properties
        .headers()
        .as_ref()
        .map(|table| {
            table.inner().iter().filter(|(name, _)| !drop(name.as_str())).map(|(n, v)| (n.clone(), v.clone())).collect()
        })
        .unwrap_or_default();
    crate::message::without_user_id(properties).with_headers(FieldTable::from(headers))
}

/// How many times the quorum queue has had this message returned.
fn returns(properties: &BasicProperties) -> u32 {
    properties
        .headers()
        .as_ref()
        .and_then(|table| table.inner().get(QUORUM_DELIVERY_COUNT_HEADER))
        .and_then(integer)
        .and_then(|count| u32::try_from(count).ok())
        .unwrap_or(0)
}

fn message_id(properties: &BasicProperties) -> String {
    properties.message_id().as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default()
}

fn text_value(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

fn timestamp(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::Timestamp(seconds) => Some(*seconds),
        other => integer(other).and_then(|number| u64::try_from(number).ok()),
    }
}

/// What RabbitMQ recorded when it dead-lettered a message itself (the newest `x-death` entry).
struct Death {
    reason: String,
    exchange: String,
    routing_key: String,
    time: Option<u64>,
}

fn latest_death(value: &AMQPValue) -> Option<Death> {
    let AMQPValue::FieldArray(entries) = value else {
        return None;
    };
    let AMQPValue::FieldTable(entry) = entries.as_slice().first()? else {
        return None;
    };
    let get = |name: &str| entry.inner().get(name);
    let routing_key = match get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().first().and_then(text_value),
        _ => None,
    };
    let queue = get("queue").and_then(text_value).unwrap_or_default();
    let reason = get("reason").and_then(text_value).unwrap_or_default();
    Some(Death {
        reason: if queue.is_empty() { reason } else { format!("{reason} in `{queue}`") },
        exchange: get("exchange").and_then(text_value).unwrap_or_default(),
        routing_key: routing_key.unwrap_or_default(),
        time: get("time").and_then(timestamp),
    })
}

#[cfg(test)]
mod tests {
    use lapin::types::LongString;

    use super::*;

    fn letter(stage: Stage, reason: &str, kind: Option<&str>) -> DeadLetter {
        DeadLetter {
            stage,
            message_id: Some("m-1".to_owned()),
            reason: reason.to_owned(),
            original_exchange: "concordat.events".to_owned(),
            original_routing_key: "police.p.police.s136_detention".to_owned(),
            delivery_count: Some(1),
            kind: kind.map(str::to_owned),
            content_type: Some("application/json".to_owned()),
            body_bytes: 10,
            dead_lettered_at: None,
        }
    }

    #[test]
    fn ids_read_back_what_they_write() {
        let id = DeadLetterId { stage: Stage::Router, message_id: "a:b".to_owned() };
        assert_eq!(id.to_string(), "router:a:b");
        assert_eq!(DeadLetterId::parse("router:a:b"), Some(id));
        assert_eq!(DeadLetterId::parse("6f1c0d3e"), None);
        assert_eq!(DeadLetterId::parse("nowhere:x"), None);
        assert_eq!(DeadLetterId::parse("ingest:"), None);
    }

    #[test]
    fn filters_need_every_condition() {
        let dead = letter(Stage::Router, "no agreement covers it", Some("police.s136_detention"));
        assert!(Filter::default().matches(&dead));
        assert!(Filter { stage: Some(Stage::Router), ..Filter::default() }.matches(&dead));
        assert!(!Filter { stage: Some(Stage::Ingest), ..Filter::default() }.matches(&dead));
        assert!(Filter { reason: Some("agreement".to_owned()), ..Filter::default() }.matches(&dead));
        let both = Filter { reason: Some("agreement".to_owned()), kind: Some("nhs.referral".to_owned()), stage: None };
        assert!(!both.matches(&dead));
        let id = Selector::Id { stage: None, message_id: "m-1".to_owned() };
        assert!(id.matches(&dead));
        assert!(!Selector::from(DeadLetterId { stage: Stage::Deliver, message_id: "m-1".to_owned() }).matches(&dead));
    }

    #[test]
    fn retried_copies_lose_only_the_dead_letter_headers() {
        let mut table = FieldTable::default();
        for name in
            [ERROR_HEADER, ORIGINAL_EXCHANGE_HEADER, QUORUM_DELIVERY_COUNT_HEADER, "x-death", "x-first-death-reason"]
        {
            table.insert(name.into(), AMQPValue::LongString(LongString::from("x")));
        }
        table.insert("concordat-kind".into(), AMQPValue::LongString(LongString::from("k")));
        table.insert("traceparent".into(), AMQPValue::LongString(LongString::from("t")));
        let kept = without_headers(&BasicProperties::default().with_headers(table), is_dead_letter_header);
        let names: Vec<&str> =
            kept.headers().as_ref().map(|t| t.inner().keys().map(ShortString::as_str).collect()).unwrap_or_default();
        assert_eq!(names, ["concordat-kind", "traceparent"]);
    }

    #[test]
    fn broker_dead_letters_name_their_route_from_x_death() {
        let mut entry = FieldTable::default();
        entry.insert("reason".into(), AMQPValue::LongString(LongString::from("delivery_limit")));
        entry.insert("queue".into(), AMQPValue::LongString(LongString::from("concordat.router")));
        entry.insert("exchange".into(), AMQPValue::LongString(LongString::from("concordat.events")));
        entry.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(vec![AMQPValue::LongString(LongString::from("nhs.t.nhs.referral"))].into()),
        );
        entry.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        let death = latest_death(&AMQPValue::FieldArray(vec![AMQPValue::FieldTable(entry)].into()));
        let death = death.expect("an x-death entry");
        assert_eq!(death.reason, "delivery_limit in `concordat.router`");
        assert_eq!(death.exchange, "concordat.events");
        assert_eq!(death.routing_key, "nhs.t.nhs.referral");
        assert_eq!(death.time, Some(1_700_000_000));
    }
}
