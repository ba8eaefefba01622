//! The acking consumer: reads one queue with bounded prefetch, hands each message (or, with
//! [`consume_batches`], each batch of messages already waiting) to an async handler, and settles it by the
//! handler's [`Outcome`]; reconnects on its own when the connection or channel dies.
//!
//! A message is acked only after its handler returned [`Outcome::Ack`], so a handler acks after its
//! commit (DESIGN.md §7, invariant 2). A poison message is copied to `concordat.dead.{stage}` and acked
//! only once that copy is confirmed (invariant 3). Anything unacked when a connection dies is redelivered
//! by RabbitMQ, so handlers must be idempotent, deduplicating by `message_id`.
//!
//! This module knows nothing of what the bodies mean; the handler does.

use std::fmt;
use std::future::Future;

use futures_util::{FutureExt as _, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Acker, BasicProperties, Channel, Connection, Consumer};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::backoff::{Backoff, jittered};
use crate::config::{BusConfig, ConfigError};
use crate::connection::open;
use crate::message::{IncomingMessage, WireMessage, dead_letter_properties};
use crate::publisher::{PublishError, publish_confirmed};
use crate::random::random_unit;
use crate::topology::{Subscription, TopologyError, short};

/// What a handler decided about a message.
///
/// Reasons end up in logs and in the `x-concordat-error` header of dead letters: name the failure (a
/// JSON Pointer, a rule, an error kind), never personal data from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done, effects committed: ack.
    Ack,
    /// A transient failure (database down, recipient unreachable): requeue for another attempt. Once the
    /// message has been delivered `delivery_limit` times it is dead-lettered with this reason instead.
    Retry {
        /// Why the attempt failed.
        reason: String,
    },
    /// The message can never be processed (invalid, unknown kind): dead-letter it now.
    DeadLetter {
        /// Why it cannot be processed.
        reason: String,
    },
}

/// Why [`consume`] gave up. Lost connections are not among them: those are retried.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker refused the topology (e.g. a queue exists with other arguments, 406, or the user may not
    /// declare it, 403); reconnecting would meet the same refusal.
    #[error("the topology for queue `{queue}` was refused")]
    Topology {
        /// The queue the consumer reads.
        queue: String,
        /// The refusal.
        #[source]
        source: TopologyError,
    },
}

/// Why a session with the broker ended before shutdown.
#[derive(Debug, thiserror::Error)]
enum Interruption {
    #[error("connection or channel failed")]
    Connection(#[source] lapin::Error),
    #[error("the channel closed before the message could be settled")]
    Unsettled,
    #[error("the broker cancelled the consumer")]
    Cancelled,
    #[error("declaring the topology failed")]
    Topology(#[source] TopologyError),
    #[error("dead-lettering failed; the message was requeued")]
    DeadLetter(#[source] PublishError),
}

/// Consumes `subscription`'s queue until `shutdown` is cancelled, calling `handler` for each message and
/// settling it by the [`Outcome`].
///
/// On every (re)connection it declares the subscription's topology, sets `basic.qos` to `prefetch`, and
/// consumes with manual acks. When the connection or channel dies, it waits and reconnects: the first
/// wait is `reconnect_initial_ms`, doubling on each failed attempt up to `reconnect_max_ms`, each wait
/// drawn from its upper half (`[d/2, d]`) so that consumers restarted together spread out; a session that
/// gets as far as consuming starts the schedule again. Messages unacked at that moment are redelivered
/// by RabbitMQ, possibly to this handler again.
///
/// Shutdown finishes the message in hand (handler and settlement), then closes the connection; messages
/// prefetched but not yet handled go back to the queue.
///
/// The handler gets its own copy of the message; [`Outcome::DeadLetter`] publishes the original, with its
/// headers plus `x-concordat-error`, `x-concordat-stage`, `x-concordat-original-exchange`,
/// `x-concordat-original-routing-key`, `x-concordat-delivery-count` and `x-concordat-dead-lettered-at`, to
/// `concordat.dlx` with the stage as routing key, waits for the confirm, then acks. If that publish fails,
/// the message is requeued instead so nothing is lost, and the consumer reconnects to declare the topology
/// again.
///
/// # Errors
///
/// [`ConsumeError::Config`] for an unusable configuration and [`ConsumeError::Topology`] when the broker
/// refuses the topology. Returns `Ok(())` after shutdown.
pub async fn consume<F, Fut>(
    config: BusConfig,
    subscription: Subscription,
    shutdown: CancellationToken,
    mut handler: F,
) -> Result<(), ConsumeError>
where
    F: FnMut(IncomingMessage) -> Fut,
    Fut: Future<Output = Outcome>,
{
    consume_batches(config, subscription, shutdown, 1, move |mut batch: Vec<IncomingMessage>| {
        let handled = batch.pop().map(&mut handler);
        async move {
            match handled {
                Some(outcome) => vec![outcome.await],
                None => Vec::new(),
            }
        }
    })
    .await
}

/// Like [`consume`], but hands the handler every message already waiting, up to `max_batch` (and never
/// more than `prefetch`), as one batch, so that a handler can commit their effects together.
///
/// A batch is never waited for: the consumer takes the first message as soon as it arrives and adds only
/// those the broker has already delivered to this process, so at a low rate each batch holds one message
/// and no latency is added; under load the batches grow to what arrived while the last one was handled.
///
/// The handler returns one [`Outcome`] per message, in the batch's order; each message is then settled as
/// [`consume`] settles it (ack, requeue, or dead-letter). A message the handler gave no outcome for is
/// requeued, as for [`Outcome::Retry`]. Shutdown finishes the batch in hand.
///
/// # Errors
///
/// As [`consume`].
pub async fn consume_batches<F, Fut>(
    config: BusConfig,
    subscription: Subscription,
    shutdown: CancellationToken,
    max_batch: usize,
    mut handler: F,
) -> Result<(), ConsumeError>
where
    F: FnMut(Vec<IncomingMessage>) -> Fut,
    Fut: Future<Output = Vec<Outcome>>,
{
    config.validate()?;
    let mut backoff = config.backoff().map_err(ConfigError::from)?;
    let max_batch = max_batch.clamp(1, usize::from(config.prefetch));
    loop {
        match session(&config, &subscription, &shutdown, max_batch, &mut handler, &mut backoff).await {
            Ok(()) => return Ok(()),
            Err(Interruption::Topology(source)) if source.is_permanent() => {
                error!(
                    queue = subscription.queue(),
                    error = %ErrorChain(&source),
                    "Topology refused; consumer stopped."
                );
                return Err(ConsumeError::Topology { queue: subscription.queue().to_owned(), source });
            }
            Err(interruption) => {
                warn_reconnect(&subscription, &interruption, &mut backoff, &shutdown).await;
            }
        }
    }
}

async fn warn_reconnect(
    subscription: &Subscription,
    interruption: &Interruption,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) {
    let delay = jittered(backoff.next_delay(), random_unit());
    warn!(
        queue = subscription.queue(),
        connection_name = subscription.connection_name(),
        error = %ErrorChain(interruption),
        delay_ms = delay.as_millis(),
        "Consumer interrupted; reconnecting."
    );
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}

/// One connection's worth of consuming. Returns `Ok(())` only on shutdown.
///
/// The shutdown check happens between batches only: a handler that has started always runs to the
/// settlement of its batch.
async fn session<F, Fut>(
    config: &BusConfig,
    subscription: &Subscription,
    shutdown: &CancellationToken,
    max_batch: usize,
    handler: &mut F,
    backoff: &mut Backoff,
) -> Result<(), Interruption>
where
    F: FnMut(Vec<IncomingMessage>) -> Fut,
    Fut: Future<Output = Vec<Outcome>>,
{
    // Nothing is in hand while connecting, so shutdown may cut it short.
    let (connection, _channel, dead_letters, mut consumer) = tokio::select! {
        biased;
        () = shutdown.cancelled() => return Ok(()),
        ready = connect(config, subscription) => ready?,
    };
    backoff.reset();
    info!(
        queue = subscription.queue(),
        connection_name = subscription.connection_name(),
        prefetch = config.prefetch,
        max_batch,
        "Consuming."
    );

    let ended = loop {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        let mut batch = match next {
            Some(Ok(delivery)) => vec![delivery],
            Some(Err(error)) => break Err(Interruption::Connection(error)),
            None => break Err(Interruption::Cancelled),
        };
        // Add what has already arrived, without waiting for more.
        let mut interrupted = None;
        while batch.len() < max_batch {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => batch.push(delivery),
                Some(Some(Err(error))) => {
                    interrupted = Some(Interruption::Connection(error));
                    break;
                }
                Some(None) => {
                    interrupted = Some(Interruption::Cancelled);
                    break;
                }
                None => break,
            }
        }
        if let Some(interruption) = interrupted {
            // The channel is gone: what was taken cannot be acked, and the broker will redeliver it.
            break Err(interruption);
        }
        // A delivery buffered before its channel died cannot be acked; the broker will redeliver it, so
        // running the handler now would only repeat work.
        batch.retain(|delivery| !delivery.acker.poisoned());
        if batch.is_empty() {
            continue;
        }
        if let Err(interruption) = handle(config, subscription, &dead_letters, handler, batch).await {
            break Err(interruption);
        }
    };
    if ended.is_ok() {
        // Unacked prefetched messages return to the queue when the connection closes.
        let _ = connection.close(200, "consumer shut down".into()).await;
        info!(queue = subscription.queue(), "Consumer stopped.");
    }
    ended
}

/// Opens a connection, declares the topology and starts consuming: the connection, the consuming
/// channel (closed when its last handle drops, so the session keeps it), the dead-letter channel and the
/// consumer stream.
async fn connect(
    config: &BusConfig,
    subscription: &Subscription,
) -> Result<(Connection, Channel, Channel, Consumer), Interruption> {
    let connection = open(config, subscription.connection_name()).await.map_err(Interruption::Connection)?;
    let channel = connection.create_channel().await.map_err(Interruption::Connection)?;
    subscription.topology().declare_on(&channel, config.delivery_limit).await.map_err(Interruption::Topology)?;
    // Dead letters go out on their own confirm channel, used by this consumer's loop alone.
    let dead_letters = connection.create_channel().await.map_err(Interruption::Connection)?;
    dead_letters.confirm_select(ConfirmSelectOptions::default()).await.map_err(Interruption::Connection)?;
    // Prefetch bounds the work in hand, and so what is redelivered after a crash.
    channel.basic_qos(config.prefetch, BasicQosOptions::default()).await.map_err(Interruption::Connection)?;
    let queue = short(subscription.queue()).map_err(Interruption::Topology)?;
    let consumer = channel
        .basic_consume(queue, "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(Interruption::Connection)?;
    Ok((connection, channel, dead_letters, consumer))
}

/// Runs the handler on one batch of deliveries and settles each by its outcome, in order.
async fn handle<F, Fut>(
    config: &BusConfig,
    subscription: &Subscription,
    dead_letters: &Channel,
    handler: &mut F,
    batch: Vec<Delivery>,
) -> Result<(), Interruption>
where
    F: FnMut(Vec<IncomingMessage>) -> Fut,
    Fut: Future<Output = Vec<Outcome>>,
{
    let received: Vec<Received> = batch
        .into_iter()
        .map(|delivery| {
            let Delivery { data, exchange, routing_key, redelivered, properties, acker, .. } = delivery;
            let message = IncomingMessage::new(data, &properties, exchange.as_str(), routing_key.as_str(), redelivered);
            Received { message, properties, acker }
        })
        .collect();
    let span = match received.as_slice() {
        [one] => info_span!(
            "consume",
            queue = subscription.queue(),
            message_id = one.message.message_id().unwrap_or_default(),
            delivery_count = one.message.delivery_count(),
            redelivered = one.message.redelivered(),
        ),
        many => info_span!("consume", queue = subscription.queue(), messages = many.len()),
    };
    let outcomes = handler(received.iter().map(|each| each.message.clone()).collect()).instrument(span.clone()).await;
    // The usual case, a batch handled in full: one `basic.ack` with `multiple` for the lot (every earlier
    // delivery on the channel is settled already, and later ones are not covered), instead of one frame
    // and one wait for lapin's I/O loop per message.
    if received.len() > 1
        && outcomes.len() == received.len()
        && outcomes.iter().all(|outcome| matches!(outcome, Outcome::Ack))
        && let Some(last) = received.last()
    {
        ack_through(&last.acker).instrument(span.clone()).await?;
        span.in_scope(|| debug!(messages = received.len(), "Acked the batch."));
        return Ok(());
    }
    let mut outcomes = outcomes.into_iter();
    for each in &received {
        let outcome = outcomes
            .next()
            .unwrap_or_else(|| Outcome::Retry { reason: "the handler gave no outcome for the message".to_owned() });
        let span = if received.len() == 1 {
            span.clone()
        } else {
            info_span!(
                parent: &span,
                "settle",
                message_id = each.message.message_id().unwrap_or_default(),
                delivery_count = each.message.delivery_count(),
                redelivered = each.message.redelivered(),
            )
        };
        settle(config, subscription, dead_letters, each, outcome).instrument(span).await?;
    }
    Ok(())
}

/// A delivery taken apart: what the handler sees, and what settling it needs.
struct Received {
    message: IncomingMessage,
    properties: BasicProperties,
    acker: Acker,
}

/// Settles one delivery by its outcome.
async fn settle(
    config: &BusConfig,
    subscription: &Subscription,
    dead_letters: &Channel,
    received: &Received,
    outcome: Outcome,
) -> Result<(), Interruption> {
    let Received { message, properties, acker } = received;
    match outcome {
        Outcome::Ack => {
            ack(acker).await?;
            debug!("Acked.");
            Ok(())
        }
        Outcome::Retry { reason } if message.delivery_count() >= config.delivery_limit => {
            let reason = format!("{reason} (still failing after {} deliveries)", message.delivery_count());
            dead_letter(config, subscription, dead_letters, message, properties, acker, &reason).await
        }
        Outcome::Retry { reason } => {
            warn!(%reason, "Handler asked to retry; requeueing.");
            nack_requeue(acker).await
        }
        Outcome::DeadLetter { reason } => {
            dead_letter(config, subscription, dead_letters, message, properties, acker, &reason).await
        }
    }
}

async fn ack(acker: &Acker) -> Result<(), Interruption> {
    match acker.ack(BasicAckOptions::default()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Interruption::Unsettled),
        Err(error) => Err(Interruption::Connection(error)),
    }
}

/// Acks `acker`'s delivery and every earlier one on its channel.
async fn ack_through(acker: &Acker) -> Result<(), Interruption> {
    match acker.ack(BasicAckOptions { multiple: true }).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Interruption::Unsettled),
        Err(error) => Err(Interruption::Connection(error)),
    }
}

async fn nack_requeue(acker: &Acker) -> Result<(), Interruption> {
    let options = BasicNackOptions { multiple: false, requeue: true };
    match acker.nack(options).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Interruption::Unsettled),
        Err(error) => Err(Interruption::Connection(error)),
    }
}

/// Publishes a copy of `message` to the dead-letter exchange, waits for the confirm, then acks the
/// original. The order matters: acking first could lose the message if the copy then failed.
async fn dead_letter(
    config: &BusConfig,
    subscription: &Subscription,
    dead_letters: &Channel,
    message: &IncomingMessage,
    original: &BasicProperties,
    acker: &Acker,
    reason: &str,
) -> Result<(), Interruption> {
    let stage = subscription.stage();
    let exchange = subscription.topology().dead_letter_exchange();
    let wire = WireMessage {
        exchange: short(&exchange).map_err(Interruption::Topology)?,
        routing_key: stage.as_str().into(),
        message_id: message.message_id().unwrap_or_default().to_owned(),
        body: message.body(),
        properties: dead_letter_properties(
            original,
            reason,
            stage.as_str(),
            message.exchange(),
            message.routing_key(),
            message.delivery_count(),
            unix_seconds_now(),
        ),
    };
    let mut confirmed = 0;
    let published = match tokio::time::timeout(
        config.publish_timeout(),
        publish_confirmed(dead_letters, std::slice::from_ref(&wire), &mut confirmed),
    )
    .await
    {
        Ok(published) => published,
        Err(_elapsed) => {
            Err(PublishError::Timeout { message_id: wire.message_id.clone(), timeout_ms: config.publish_timeout_ms })
        }
    };
    match published {
        Ok(()) => {
            concordat_telemetry::inc("concordat_dead_letters_total", &[("stage", stage.as_str())]);
            warn!(
                %reason,
                dead_letter_queue = %subscription.topology().dead_letter_queue(stage),
                "Dead-lettered."
            );
            ack(acker).await
        }
        Err(publish_error) => {
            error!(
                %reason,
                error = %ErrorChain(&publish_error),
                "Dead-lettering failed; requeueing the message."
            );
            nack_requeue(acker).await?;
            Err(Interruption::DeadLetter(publish_error))
        }
    }
}

/// Seconds since the Unix epoch, for the time a message was dead-lettered; 0 on a clock set before 1970.
fn unix_seconds_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Displays an error followed by its sources, `outer: inner: root`, for one log field.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}
