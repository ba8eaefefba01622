//! The confirmed publisher: a message counts as published only once RabbitMQ has confirmed it.
//!
//! Every publish is `mandatory` on a channel in confirm mode and waits for the broker's ack under the
//! configured deadline. A nack, a returned (unroutable) message, a timeout or a lost connection is an
//! error for the caller, never a silent success: the gateway answers `202` only after this returns `Ok`
//! (DESIGN.md §7, invariant 1). This module does not retry; callers retry with the same `message_id` and
//! rely on downstream dedup.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lapin::message::BasicReturnMessage;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};
use tracing::{debug, warn};

use crate::config::{BusConfig, ConfigError, redact_url};
use crate::connection::open;
use crate::message::{InvalidMessage, OutgoingMessage, WireMessage};

/// Why a publish did not succeed.
///
/// After [`PublishError::Nacked`] and [`PublishError::Unroutable`] the message is in no queue. After
/// [`PublishError::Timeout`], [`PublishError::ChannelClosed`] and [`PublishError::ConnectionLost`] it may
/// or may not be; publishing it again with the same `message_id` is safe because consumers dedup.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A message cannot be put on the wire; nothing was sent.
    #[error("message `{message_id}` cannot be published")]
    Invalid {
        /// The message's id.
        message_id: String,
        /// What is wrong with it.
        #[source]
        source: InvalidMessage,
    },
    /// The broker could not be reached; nothing was sent.
    #[error("cannot connect to RabbitMQ at {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What the client reported.
        #[source]
        source: lapin::Error,
    },
    /// The broker answered with a nack: it could not take responsibility for the message.
    #[error("RabbitMQ nacked message `{message_id}`")]
    Nacked {
        /// The message's id.
        message_id: String,
    },
    /// The broker returned the message: no queue is bound for its routing key.
    #[error(
        "message `{message_id}` is unroutable: nothing bound to exchange `{exchange}` for routing key \
         `{routing_key}` ({reply_code} {reply_text})"
    )]
    Unroutable {
        /// The message's id.
        message_id: String,
        /// The exchange it was published to.
        exchange: String,
        /// Its routing key.
        routing_key: String,
        /// The broker's reply code (312, `NO_ROUTE`).
        reply_code: u16,
        /// The broker's reply text.
        reply_text: String,
    },
    /// No confirm arrived within `publish_timeout_ms`.
    #[error("message `{message_id}` was not confirmed within {timeout_ms} ms")]
    Timeout {
        /// The first message of the batch still unconfirmed.
        message_id: String,
        /// The deadline.
        timeout_ms: u64,
    },
    /// The broker closed the channel, e.g. because the exchange does not exist (404) or access was
    /// refused (403).
    #[error("RabbitMQ closed the channel while publishing `{message_id}`")]
    ChannelClosed {
        /// The message being published or confirmed.
        message_id: String,
        /// The broker's error.
        #[source]
        source: lapin::Error,
    },
    /// The connection failed while publishing or waiting for the confirm. The next publish reconnects.
    #[error("the connection to RabbitMQ was lost while publishing `{message_id}`")]
    ConnectionLost {
        /// The message being published or confirmed.
        message_id: String,
        /// What the client reported.
        #[source]
        source: lapin::Error,
    },
}

impl PublishError {
    /// Whether the failure says nothing about the message itself, so the same message may succeed on a
    /// later attempt: the broker was unreachable, slow, or dropped the connection.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PublishError::Connect { .. }
                | PublishError::Timeout { .. }
                | PublishError::ConnectionLost { .. }
                | PublishError::Nacked { .. }
        )
    }
}

/// Classifies a client error met while publishing `message_id`.
fn failed(message_id: &str, source: lapin::Error) -> PublishError {
    let message_id = message_id.to_owned();
    if source.is_amqp_soft_error() {
        PublishError::ChannelClosed { message_id, source }
    } else {
        PublishError::ConnectionLost { message_id, source }
    }
}

fn unroutable(returned: &BasicReturnMessage) -> PublishError {
    PublishError::Unroutable {
        message_id: returned
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default(),
        exchange: returned.delivery.exchange.as_str().to_owned(),
        routing_key: returned.delivery.routing_key.as_str().to_owned(),
        reply_code: returned.reply_code,
        reply_text: returned.reply_text.as_str().to_owned(),
    }
}

/// Publishes `batch` on `channel`, which must be in confirm mode and used by nobody else meanwhile, then
/// waits for every confirm. `confirmed` counts the messages confirmed so far, in order, so that a caller
/// whose deadline expires can name the first one still pending.
///
/// The channel must be exclusive because lapin hands a returned message to whichever confirm arrives
/// next; the error therefore names the message from the returned copy itself, not from its position.
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    batch: &[WireMessage<'_>],
    confirmed: &mut usize,
) -> Result<(), PublishError> {
    let mut pending = Vec::with_capacity(batch.len());
    for message in batch {
        let confirm = channel
            .basic_publish(
                message.exchange.clone(),
                message.routing_key.clone(),
                BasicPublishOptions {
                    // An unroutable message is returned rather than dropped, so it becomes an error.
                    mandatory: true,
                    immediate: false,
                },
                message.body,
                message.properties.clone(),
            )
            .await
            .map_err(|source| failed(&message.message_id, source))?;
        pending.push(confirm);
    }
    // Every confirm is awaited, even after a failure, so that a channel returned to the pool owes nothing.
    let mut first_error = None;
    for (message, confirm) in batch.iter().zip(pending) {
        let error = match confirm.await {
            Ok(Confirmation::Ack(None)) => None,
            Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => Some(unroutable(&returned)),
            // `NotRequested` cannot happen on a channel in confirm mode; it is no confirmation either way.
            Ok(Confirmation::Nack(None) | Confirmation::NotRequested) => {
                Some(PublishError::Nacked { message_id: message.message_id.clone() })
            }
            // The channel is gone: every later confirm fails the same way.
            Err(source) => {
                return Err(first_error.unwrap_or_else(|| failed(&message.message_id, source)));
            }
        };
        match error {
            None if first_error.is_none() => *confirmed += 1,
            None => {}
            Some(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Idle confirm channels kept per connection; more are opened under load and closed afterwards.
const MAX_IDLE_CHANNELS: usize = 16;

/// One connection and its idle confirm channels.
#[derive(Debug)]
struct Link {
    id: u64,
    connection: Connection,
    idle: Mutex<Vec<Channel>>,
}

impl Link {
    async fn check_out(&self) -> Result<Channel, lapin::Error> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            match idle {
                Some(channel) if channel.status().connected() => return Ok(channel),
                Some(_closed) => {}
                None => break,
            }
        }
        let channel = self.connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(channel)
    }

    fn check_in(&self, channel: Channel) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // A channel dropped here is closed by lapin once its last handle goes.
        if idle.len() < MAX_IDLE_CHANNELS && channel.status().connected() {
            idle.push(channel);
        }
    }
}

/// What one publish attempt got hold of, kept outside the deadline so that it can be settled after.
#[derive(Default)]
struct Attempt {
    link: Option<Arc<Link>>,
    channel: Option<Channel>,
    confirmed: usize,
}

/// Publishes with confirms over one connection, reconnecting lazily.
///
/// Concurrent publishes each take their own channel from a small pool, so they do not wait on one
/// another's confirms. When a publish fails because of the connection (or times out), the connection is
/// dropped and the next publish opens a new one; the failed publish itself reports the error.
pub struct Publisher {
    config: BusConfig,
    connection_name: String,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    next_link_id: AtomicU64,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("amqp_url", &redact_url(&self.config.amqp_url))
            .field("connection_name", &self.connection_name)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects to the broker, failing fast so that a process can report an unreachable RabbitMQ at
    /// start-up. `connection_name` is shown by RabbitMQ (`rabbitmqctl list_connections name`).
    ///
    /// # Errors
    ///
    /// [`PublishError::Config`] for an unusable configuration, [`PublishError::Connect`] when the broker
    /// cannot be reached.
    pub async fn connect(config: &BusConfig, connection_name: impl Into<String>) -> Result<Self, PublishError> {
        config.validate()?;
        let publisher = Self {
            config: config.clone(),
            connection_name: connection_name.into(),
            link: tokio::sync::Mutex::new(None),
            next_link_id: AtomicU64::new(0),
        };
        publisher.link().await?;
        Ok(publisher)
    }

    /// Publishes one message and waits for RabbitMQ's confirm, all within `publish_timeout_ms`.
    ///
    /// # Errors
    ///
    /// Any [`PublishError`]; only `Ok` means the broker took responsibility for the message.
    pub async fn publish(&self, message: &OutgoingMessage) -> Result<(), PublishError> {
        self.publish_batch(std::slice::from_ref(message)).await
    }

    /// Publishes every message, then waits for all their confirms, within one `publish_timeout_ms`
    /// deadline. One round trip for the lot rather than one per message.
    ///
    /// # Errors
    ///
    /// The first [`PublishError`] met. The batch succeeds or fails as a whole: after an error some
    /// messages may have been confirmed, so callers republish the whole batch under the same ids.
    pub async fn publish_batch(&self, messages: &[OutgoingMessage]) -> Result<(), PublishError> {
        let Some(first) = messages.first() else {
            return Ok(());
        };
        let batch = messages
            .iter()
            .map(|message| {
                message
                    .to_wire()
                    .map_err(|source| PublishError::Invalid { message_id: message.message_id.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut attempt = Attempt::default();
        let result = match tokio::time::timeout(self.config.publish_timeout(), self.attempt(&batch, &mut attempt)).await
        {
            Ok(result) => result,
            Err(_elapsed) => Err(PublishError::Timeout {
                message_id: batch
                    .get(attempt.confirmed)
                    .map_or_else(|| first.message_id.clone(), |m| m.message_id.clone()),
                timeout_ms: self.config.publish_timeout_ms,
            }),
        };
        self.settle(attempt, &result).await;
        match &result {
            Ok(()) => debug!(
                connection_name = %self.connection_name,
                exchange = %first.exchange,
                message_id = %first.message_id,
                count = messages.len(),
                "Published and confirmed."
            ),
            Err(error) => warn!(
                connection_name = %self.connection_name,
                exchange = %first.exchange,
                message_id = %first.message_id,
                count = messages.len(),
                %error,
                "Publish failed."
            ),
        }
        result
    }

    async fn attempt(&self, batch: &[WireMessage<'_>], attempt: &mut Attempt) -> Result<(), PublishError> {
        let first_id = batch.first().map_or("", |m| m.message_id.as_str());
        let link = self.link().await?;
        attempt.link = Some(Arc::clone(&link));
        let channel = link.check_out().await.map_err(|source| failed(first_id, source))?;
        attempt.channel = Some(channel.clone());
        publish_confirmed(&channel, batch, &mut attempt.confirmed).await
    }

    /// Returns a healthy channel to the pool, or drops what failed.
    async fn settle(&self, attempt: Attempt, result: &Result<(), PublishError>) {
        let Some(link) = attempt.link else {
            return;
        };
        match result {
            Ok(()) | Err(PublishError::Nacked { .. } | PublishError::Unroutable { .. }) => {
                if let Some(channel) = attempt.channel {
                    link.check_in(channel);
                }
            }
            // The channel alone died; the connection may serve others.
            Err(PublishError::ChannelClosed { .. }) => {}
            // A lost connection or a missing confirm: start afresh on the next publish. Publishes still
            // in flight keep the old connection alive through their own channel handles.
            Err(_) => {
                let mut current = self.link.lock().await;
                if current.as_ref().is_some_and(|current| current.id == link.id) {
                    *current = None;
                }
            }
        }
    }

    /// The current connection, opening one if there is none or it has failed.
    async fn link(&self) -> Result<Arc<Link>, PublishError> {
        let mut current = self.link.lock().await;
        if let Some(link) = current.as_ref()
            && link.connection.status().connected()
        {
            return Ok(Arc::clone(link));
        }
        let connection = open(&self.config, &self.connection_name)
            .await
            .map_err(|source| PublishError::Connect { url: redact_url(&self.config.amqp_url), source })?;
        let link = Arc::new(Link {
            id: self.next_link_id.fetch_add(1, Ordering::Relaxed),
            connection,
            idle: Mutex::new(Vec::new()),
        });
        debug!(connection_name = %self.connection_name, "Publisher connected.");
        *current = Some(Arc::clone(&link));
        Ok(link)
    }

    /// Closes the connection. A later publish opens a new one.
    pub async fn close(&self) {
        let link = self.link.lock().await.take();
        if let Some(link) = link {
            // Nothing is pending on a connection being closed on purpose; a failure to close cleanly
            // leaves the broker to notice the dropped socket.
            let _ = link.connection.close(200, "publisher closed".into()).await;
        }
    }
}
