//! The delivery worker's shell: one consumer per pushed agency on `agency.{id}.inbox`, with a prefetch of
//! one, pushing each message to the agency's endpoint and settling it by the answer.
//!
//! The message in hand is held, unacknowledged, while its push is retried: a 5xx, a timeout or a connection
//! failure waits on the backoff (and on the endpoint's `Retry-After`, for a webhook's 429 and 503 and a
//! FHIR server's retryable answers) and tries again, for as long as the endpoint stays down, and the next
//! message is not taken meanwhile, so order is kept and the queue buffers the rest durably. Requeueing
//! instead would count each failure against the quorum queue's `x-delivery-limit` and, after a few, drop
//! the message to the dead letters although nothing was wrong with it. A 2xx is recorded in the store
//! (`confirmed_at`, audited `delivery_confirmed`) before the ack, so a crash in between pushes the message
//! again under the same `webhook-id`: receivers deduplicate by it. A final refusal is dead-lettered to
//! `concordat.dead.deliver` with the endpoint's reason. Shutdown stops the retries and returns the message
//! to its queue (which counts one delivery against the limit).
//!
//! This module does not sign (see `webhook.rs`), decide what an answer means (`answer.rs`) or speak FHIR
//! (the NHS adapter's push module does).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use concordat_bus::{
    Backoff, BusConfig, ConsumeError, IncomingMessage, Outcome, Subscription, Topology, TopologyError,
};
use concordat_episode::Rendered;
use concordat_nhs_fhir::FHIR_JSON;
use concordat_nhs_fhir::push::{PushConfig, PushError, push};
use concordat_store::{DeliveryId, Store};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::answer::{Answer, classify, operation_outcome_reason, retry_after};
use crate::config::{Deliveries, Endpoint};
use crate::webhook::WebhookSecret;

/// The longest `Retry-After` honoured; a longer one is cut to this, so a mistaken header cannot park an
/// agency's deliveries for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How much of a response body is read for a refusal's reason.
const BODY_LIMIT: usize = 64 * 1024;
/// The message headers passed on to a webhook as HTTP headers: metadata, never personal data.
const FORWARDED_HEADERS: [&str; 4] = ["concordat-kind", "concordat-episode", "concordat-decision", "traceparent"];

/// Why the worker stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The agency has no inbox in the topology.
    #[error("the inbox of agency `{agency}` cannot be consumed")]
    Inbox {
        /// The agency id.
        agency: String,
        /// Why.
        #[source]
        source: TopologyError,
    },
    /// An inbox consumer gave up (its configuration or topology was refused).
    #[error("pushing the inbox of agency `{agency}` stopped")]
    Consume {
        /// The agency id.
        agency: String,
        /// Why.
        #[source]
        source: ConsumeError,
    },
    /// An inbox consumer's task ended abnormally.
    #[error("the task pushing an inbox ended abnormally")]
    Task(#[source] tokio::task::JoinError),
    /// The HTTP client could not be built.
    #[error("the HTTP client cannot be built")]
    Client(#[source] reqwest::Error),
}

/// Runs the worker until `shutdown`: for each agency of `deliveries.pushes`, consumes its inbox and pushes
/// every message to its endpoint as the module docs describe. Returns at once when no agency is pushed to.
///
/// # Errors
/// [`DeliveryError::Inbox`] before anything starts when an agency has no inbox; otherwise, after
/// shutdown, the first consumer that gave up. The others go on until shutdown.
pub async fn run_delivery(
    deliveries: Deliveries,
    mut bus: BusConfig,
    topology: Topology,
    store: Store,
    shutdown: CancellationToken,
) -> Result<(), DeliveryError> {
    if deliveries.pushes.is_empty() {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(DeliveryError::Client)?;
    // One message in hand per agency: the one being pushed. The rest wait in the queue, in order.
    bus.prefetch = 1;
    let mut consumers = Vec::new();
    for push in deliveries.pushes {
        let connection_name = format!("concordat-delivery-{}", push.agency);
        let subscription = Subscription::inbox(topology.clone(), &push.agency, connection_name)
            .map_err(|source| DeliveryError::Inbox { agency: push.agency.clone(), source })?;
        let pusher = Arc::new(Pusher {
            agency: push.agency,
            endpoint: push.endpoint,
            client: client.clone(),
            store: store.clone(),
            timeout: deliveries.timeout,
            retry: deliveries.retry.clone(),
            shutdown: shutdown.clone(),
        });
        consumers.push((pusher, subscription));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (pusher, subscription) in consumers {
        info!(agency = %pusher.agency, channel = pusher.channel(), queue = subscription.queue(), "Pushing an inbox.");
        let (bus, shutdown, agency) = (bus.clone(), shutdown.clone(), pusher.agency.clone());
        tasks.spawn(async move {
            let handler = move |message| {
                let pusher = Arc::clone(&pusher);
                async move { pusher.deliver(message).await }
            };
            concordat_bus::consume(bus, subscription, shutdown, handler)
                .await
                .map_err(|source| DeliveryError::Consume { agency, source })
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(failure)) => failure,
            Err(join) => DeliveryError::Task(join),
        };
        error!(error = %failed, "An inbox is no longer pushed.");
        first_error.get_or_insert(failed);
    }
    first_error.map_or(Ok(()), Err)
}

/// Pushes one agency's messages.
struct Pusher {
    agency: String,
    endpoint: Endpoint,
    client: reqwest::Client,
    store: Store,
    timeout: Duration,
    retry: Backoff,
    shutdown: CancellationToken,
}

impl Pusher {
    fn channel(&self) -> &'static str {
        self.endpoint.channel().as_str()
    }

    /// Pushes `message` until its endpoint takes it or refuses it for good, or shutdown.
    async fn deliver(&self, message: IncomingMessage) -> Outcome {
        let Some(id) = message.message_id().map(str::to_owned) else {
            return Outcome::DeadLetter { reason: "the delivery has no message_id".to_owned() };
        };
        let mut retry = self.retry.clone();
        loop {
            match self.attempt(&message, &id).await {
                Answer::Accepted { status } => return self.confirm(&id, status).await,
                Answer::Refused { status, reason } => {
                    let channel = self.channel();
                    let reason = match status {
                        Some(status) => {
                            format!("the {channel} endpoint refused the delivery with HTTP {status}: {reason}")
                        }
                        None => format!("the delivery cannot be pushed to the {channel} endpoint: {reason}"),
                    };
                    return Outcome::DeadLetter { reason };
                }
                Answer::Retry { reason, after } => {
                    let backoff = concordat_bus::jittered(retry.next_delay(), random_unit());
                    let wait = backoff.max(after.unwrap_or_default().min(MAX_RETRY_AFTER));
                    warn!(
                        agency = %self.agency,
                        channel = self.channel(),
                        message_id = %id,
                        %reason,
                        wait_ms = wait.as_millis(),
                        "Push failed; retrying."
                    );
                    if !self.pause(wait).await {
                        return Outcome::Retry { reason: format!("{reason}; stopped while retrying") };
                    }
                }
            }
        }
    }

    /// Records the endpoint's 2xx, retrying the store until it answers, then acks.
    async fn confirm(&self, id: &str, status: u16) -> Outcome {
        let Ok(uuid) = Uuid::parse_str(id) else {
            // Not a delivery of the outbox (its ids are UUIDs): nothing to record, and it was delivered.
            warn!(agency = %self.agency, message_id = %id, "Delivered a message that names no outbox row.");
            return Outcome::Ack;
        };
        let mut retry = self.retry.clone();
        loop {
            match self.store.mark_confirmed(DeliveryId(uuid), self.channel(), status, Utc::now()).await {
                Ok(recorded) => {
                    info!(agency = %self.agency, channel = self.channel(), message_id = %id, status, recorded, "Delivered.");
                    return Outcome::Ack;
                }
                Err(error) => {
                    warn!(agency = %self.agency, message_id = %id, %error, "Recording a confirmed push failed; retrying.");
                    if !self.pause(retry.next_delay()).await {
                        return Outcome::Retry { reason: "the store could not record the confirmed push".to_owned() };
                    }
                }
            }
        }
    }

    /// Sleeps for `wait`; false when shutdown came first.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    async fn attempt(&self, message: &IncomingMessage, id: &str) -> Answer {
        match &self.endpoint {
            Endpoint::Webhook { url, secret } => self.post_webhook(url, secret, message, id).await,
            Endpoint::Fhir(config) => self.post_fhir(config, message).await,
        }
    }

    /// One signed POST of the message to a webhook.
    async fn post_webhook(
        &self,
        url: &reqwest::Url,
        secret: &WebhookSecret,
        message: &IncomingMessage,
        id: &str,
    ) -> Answer {
        // Each attempt is signed at its own time: receivers refuse timestamps far from their clock.
        let timestamp = Utc::now().timestamp();
        let mut request = self
            .client
            .post(url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, message.content_type().unwrap_or("application/octet-stream"))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", secret.sign(id, timestamp, message.body()));
        for name in FORWARDED_HEADERS {
            if let Some(value) = message.header(name) {
                request = request.header(name, value);
            }
        }
        let request = match request.body(message.body().to_vec()).build() {
            Ok(request) => request,
            Err(_) => {
                return Answer::Refused {
                    status: None,
                    reason: "its id, media type or headers cannot be sent as HTTP headers".to_owned(),
                };
            }
        };
        let response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(error) => return Answer::Retry { reason: failure(&error), after: None },
        };
        let status = response.status().as_u16();
        let header = |name| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let retry_after = header(reqwest::header::RETRY_AFTER);
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let body = read_limited(response).await;
        classify(status, retry_after.as_deref(), content_type.as_deref(), &body, SystemTime::now())
    }

    /// One `$process-message` POST of the message Bundle, through the NHS adapter's push module.
    async fn post_fhir(&self, config: &PushConfig, message: &IncomingMessage) -> Answer {
        let rendered = Rendered { content_type: FHIR_JSON, body: message.body().to_vec() };
        match push(&self.client, config, &rendered).await {
            Ok(delivered) => Answer::Accepted { status: delivered.status },
            Err(PushError::Rejected { status, outcome }) => Answer::Refused {
                status: Some(status),
                reason: outcome
                    .as_ref()
                    .and_then(operation_outcome_reason)
                    .unwrap_or_else(|| "no OperationOutcome given".to_owned()),
            },
            Err(PushError::Exhausted { last, retry_after: header, .. }) => {
                let after = header.as_deref().and_then(|value| retry_after(value, SystemTime::now()));
                Answer::Retry { reason: last, after }
            }
            Err(error @ PushError::NotABundle) => Answer::Refused { status: None, reason: error.to_string() },
        }
    }
}

/// Reads at most [`BODY_LIMIT`] bytes of a response; what cannot be read is left out.
async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= BODY_LIMIT {
            body.truncate(BODY_LIMIT);
            break;
        }
    }
    body
}

/// A transport failure in words that hold no URL or address.
fn failure(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// A number in `[0, 1]` for spreading retries, from a random UUID's bits.
fn random_unit() -> f64 {
    f64::from(Uuid::new_v4().as_fields().0) / f64::from(u32::MAX)
}
