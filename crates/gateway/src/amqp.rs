//! AMQP ingest: native payloads that agencies publish to `concordat.ingest` (routing key = their agency id,
//! AMQP `content_type` = the payload's media type) go through the same adapters and validation as HTTP ones.
//!
//! Each message is settled by what became of it: its events published to `concordat.events` and confirmed,
//! then ack; refused by its adapter, dead-lettered to `concordat.dead.ingest` with the precise reason
//! (pointers and rules, never values); RabbitMQ not confirming, requeued for another attempt (after
//! `delivery_limit` attempts the bus dead-letters it). A redelivered message yields the same event ids, so a
//! publish that was confirmed before a crash but not acked is deduplicated by the router.
//!
//! The routing key is trusted as the sender's identity. That trust is a deployment matter: each agency gets
//! its own RabbitMQ user whose topic permission (`rabbitmqctl set_topic_permissions -p / {user}
//! concordat.ingest '^{agency}$' '^$'`) lets it publish to `concordat.ingest` with its own id only, and no
//! other write permission. This module does not authenticate.

use chrono::{SubsecRound, Utc};
use concordat_bus::{BusConfig, ConsumeError, IncomingMessage, Outcome, Subscription, TraceParent, consume};
use concordat_episode::{AgencyId, Timestamp};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span, info, info_span, warn};

use crate::gateway::Gateway;
use crate::ingest::{Refusal, Submission, translate};

/// The connection name the ingest consumer shows in RabbitMQ.
pub const CONNECTION_NAME: &str = "concordat-gateway-ingest";

/// Consumes `concordat.ingest` until `shutdown` is cancelled: every message's events are published to
/// `concordat.events` (confirmed) before it is acked. The bus reconnects on its own.
///
/// # Errors
/// [`ConsumeError`] when `bus` cannot be used or RabbitMQ refuses the topology. Returns `Ok(())` after
/// shutdown.
pub async fn consume_amqp_ingest(
    gateway: Gateway,
    bus: BusConfig,
    shutdown: CancellationToken,
) -> Result<(), ConsumeError> {
    let subscription = Subscription::ingest(gateway.inner.topology.clone(), CONNECTION_NAME);
    consume(bus, subscription, shutdown, move |message| {
        let gateway = gateway.clone();
        let span =
            info_span!("ingest", queue = "concordat.ingest", message_id = message.message_id().unwrap_or_default());
        // The publisher's trace goes on through this message's events.
        if let Some(traceparent) = message.header(concordat_bus::TRACEPARENT_HEADER) {
            concordat_telemetry::trace::continue_trace(&span, traceparent);
        }
        async move { handle(&gateway, message).await }.instrument(span)
    })
    .await
}

/// What becomes of one message from `concordat.ingest`.
async fn handle(gateway: &Gateway, message: IncomingMessage) -> Outcome {
    let routing_key = message.routing_key().to_owned();
    let Some((agency, party)) = AgencyId::new(routing_key.as_str())
        .ok()
        .and_then(|agency| gateway.inner.parties.get(&agency).map(|party| (agency, *party)))
    else {
        warn!(routing_key, message_id = message.message_id(), "Ingest message from no known agency dead-lettered.");
        return Outcome::DeadLetter {
            reason: "the routing key names no agency of the sharing policy; publish with your agency id".to_owned(),
        };
    };
    let Some(content_type) = message.content_type().map(str::to_owned) else {
        warn!(%agency, message_id = message.message_id(), "Ingest message without content type dead-lettered.");
        let accepted = party.format.content_types().join(", ");
        return Outcome::DeadLetter {
            reason: format!("the message has no content_type property; the {} format reads {accepted}", party.format),
        };
    };
    // The same limit as over HTTP, so that an agency's payload is accepted or refused alike on either path.
    if message.body().len() > gateway.inner.body_limit_bytes {
        warn!(%agency, message_id = message.message_id(), size = message.body().len(), "Oversize ingest message dead-lettered.");
        return Outcome::DeadLetter {
            reason: format!(
                "the payload is {} bytes, over the gateway's limit of {} bytes",
                message.body().len(),
                gateway.inner.body_limit_bytes
            ),
        };
    }
    let traceparent = match message.traceparent() {
        Some(Ok(parent)) => parent.child(),
        Some(Err(_)) | None => TraceParent::new_root(),
    };
    let received_at = Timestamp::from(Utc::now().trunc_subsecs(3));
    let submission = Submission {
        agency: &agency,
        agency_kind: party.kind,
        format: party.format,
        content_type: &content_type,
        payload: message.body(),
        received_at,
        traceparent,
        max_events: gateway.inner.max_events,
    };
    // The consumer handles one message at a time (within its prefetch), so translating inline blocks no
    // other message of this queue.
    let mut translated =
        match translate(&submission, &gateway.inner.adapters, &gateway.inner.topology.events_exchange()) {
            Ok(translated) => translated,
            Err(refusal) => {
                let reason = match &refusal {
                    Refusal::Ingest(error) => format!("{} refused the payload: {error}", party.format),
                    Refusal::InvalidEvent { .. } | Refusal::TooManyEvents { .. } => refusal.to_string(),
                };
                warn!(%agency, message_id = message.message_id(), reason, "Ingest message dead-lettered.");
                return Outcome::DeadLetter { reason };
            }
        };
    let _spans = translated.trace(&Span::current(), &agency);
    match gateway.inner.publisher.publish_batch(&translated.messages).await {
        Ok(()) => {
            translated.count_accepted(&agency);
            let event_ids: Vec<String> = translated.event_ids.iter().map(ToString::to_string).collect();
            info!(
                %agency,
                content_type = %crate::problem::media_type(&content_type),
                format = %party.format,
                count = translated.event_ids.len(),
                event_ids = %event_ids.join(","),
                "Events accepted from AMQP."
            );
            Outcome::Ack
        }
        Err(concordat_bus::PublishError::Invalid { message_id, source }) => {
            Outcome::DeadLetter { reason: format!("event {message_id} cannot be published: {source}") }
        }
        Err(error) => Outcome::Retry { reason: format!("publishing the events failed: {error}") },
    }
}
