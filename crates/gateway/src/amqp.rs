//! AMQP ingest: native payloads that agencies publish to `concordat.ingest` (routing key = their agency id,
//! AMQP `content_type` = the payload's media type) go through the same adapters and validation as HTTP ones.
//!
//! Each message is settled by what became of it: its events published to `concordat.events` and confirmed,
//! then ack; refused by its adapter, dead-lettered to `concordat.dead.ingest` with the precise reason
//! (pointers and rules, never values); RabbitMQ not confirming, requeued for another attempt (after
//! `delivery_limit` attempts the bus dead-letters it). A redelivered message yields the same event ids, so a
//! publish that was confirmed before a crash but not acked is deduplicated by the router.
//!
//! **Who sent it.** The routing key only claims an agency; the message's `user_id` property proves it.
//! RabbitMQ refuses a publish whose `user_id` differs from the user the connection authenticated as, so a
//! message is taken as agency X's only when its `user_id` is X's RabbitMQ user, `{user_prefix}X`
//! (`agency-X` by default, as `concordat agencies provision` creates it). A message whose `user_id` names
//! another user is dead-lettered with the reason, whatever the configuration; one without `user_id` too,
//! unless `[gateway.amqp] trust_routing_key` is on, a development allowance for administrative users such
//! as `guest` that publish for any agency. The topic permission that provisioning sets (agency X may
//! publish to `concordat.ingest` with routing key `X` only) is the broker's own second line. This module
//! creates no users and sets no permissions.

use chrono::{SubsecRound, Utc};
use concordat_bus::{BusConfig, ConsumeError, IncomingMessage, Outcome, Subscription, TraceParent, consume};
use concordat_episode::{AgencyId, Timestamp};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span, info, info_span, warn};

use crate::gateway::{Gateway, Party};
use crate::ingest::{Refusal, Submission, translate};

/// The connection name the ingest consumer shows in RabbitMQ.
pub const CONNECTION_NAME: &str = "concordat-gateway-ingest";

/// How the AMQP ingest path tells who published a message: the `[gateway.amqp]` section.
///
/// ```toml
/// [gateway.amqp]
/// user_prefix = "agency-"     # agency X publishes as the RabbitMQ user agency-X
/// trust_routing_key = false   # development only: accept messages without user_id by their routing key
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpIngestConfig {
    /// What comes before an agency id in the name of its RabbitMQ user. Default `agency-`. Another prefix
    /// lets two deployments share one broker (RabbitMQ users are not per virtual host).
    #[serde(default = "default_user_prefix")]
    pub user_prefix: String,

    /// Accept a message that carries no `user_id` as from the agency its routing key names. For local
    /// development only, where `guest` publishes for every agency; in production any user with write access
    /// to `concordat.ingest` could then speak for any agency its topic permission allows. Default `false`.
    #[serde(default)]
    pub trust_routing_key: bool,
}

fn default_user_prefix() -> String {
    "agency-".to_owned()
}

impl Default for AmqpIngestConfig {
    /// The safe defaults: agency users named `agency-{id}`, `user_id` required.
    fn default() -> Self {
        Self { user_prefix: default_user_prefix(), trust_routing_key: false }
    }
}

impl AmqpIngestConfig {
    /// The RabbitMQ user that speaks for `agency`: `{user_prefix}{agency}`.
    #[must_use]
    pub fn user_for(&self, agency: &str) -> String {
        format!("{}{agency}", self.user_prefix)
    }
}

/// Why a message may not be taken as from the agency its routing key names. The text is the dead-letter
/// reason; it names users and agencies, never anything of the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityRefusal {
    /// The message has no `user_id` and the routing key is not trusted on its own.
    #[error(
        "the message has no user_id property; publish as agency `{agency}`'s RabbitMQ user and set user_id to `{expected}`"
    )]
    Missing {
        /// The agency the routing key names.
        agency: String,
        /// Its RabbitMQ user.
        expected: String,
    },
    /// The message was published by another user than the agency's.
    #[error("user_id `{user_id}` may not publish as agency `{agency}`, whose RabbitMQ user is `{expected}`")]
    Mismatch {
        /// The publisher, as RabbitMQ validated it.
        user_id: String,
        /// The agency the routing key names.
        agency: String,
        /// Its RabbitMQ user.
        expected: String,
    },
}

/// Checks that a message published with `user_id` may speak for `agency` (the module documentation gives
/// the rule).
///
/// # Errors
/// [`IdentityRefusal`] when it may not.
pub fn check_sender(config: &AmqpIngestConfig, agency: &str, user_id: Option<&str>) -> Result<(), IdentityRefusal> {
    let expected = config.user_for(agency);
    match user_id {
        Some(user_id) if user_id == expected => Ok(()),
        Some(user_id) => {
            Err(IdentityRefusal::Mismatch { user_id: user_id.to_owned(), agency: agency.to_owned(), expected })
        }
        None if config.trust_routing_key => Ok(()),
        None => Err(IdentityRefusal::Missing { agency: agency.to_owned(), expected }),
    }
}

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

/// The envelope's checks, before the payload is read: the sender (routing key and validated `user_id`), the
/// media type and the size. Returns the agency, its party and the media type, or the dead letter to send.
fn admit(gateway: &Gateway, message: &IncomingMessage) -> Result<(AgencyId, Party, String), Outcome> {
    let routing_key = message.routing_key().to_owned();
    let Some((agency, party)) = AgencyId::new(routing_key.as_str())
        .ok()
        .and_then(|agency| gateway.inner.parties.get(&agency).map(|party| (agency, *party)))
    else {
        warn!(routing_key, message_id = message.message_id(), "Ingest message from no known agency dead-lettered.");
        return Err(Outcome::DeadLetter {
            reason: "the routing key names no agency of the sharing policy; publish with your agency id".to_owned(),
        });
    };
    if let Err(refusal) = check_sender(&gateway.inner.amqp, agency.as_str(), message.user_id()) {
        warn!(%agency, user_id = message.user_id(), message_id = message.message_id(), "Ingest message from another user dead-lettered.");
        return Err(Outcome::DeadLetter { reason: refusal.to_string() });
    }
    let Some(content_type) = message.content_type().map(str::to_owned) else {
        warn!(%agency, message_id = message.message_id(), "Ingest message without content type dead-lettered.");
        let accepted = party.format.content_types().join(", ");
        return Err(Outcome::DeadLetter {
            reason: format!("the message has no content_type property; the {} format reads {accepted}", party.format),
        });
    };
    // The same limit as over HTTP, so that an agency's payload is accepted or refused alike on either path.
    if message.body().len() > gateway.inner.body_limit_bytes {
        warn!(%agency, message_id = message.message_id(), size = message.body().len(), "Oversize ingest message dead-lettered.");
        return Err(Outcome::DeadLetter {
            reason: format!(
                "the payload is {} bytes, over the gateway's limit of {} bytes",
                message.body().len(),
                gateway.inner.body_limit_bytes
            ),
        });
    }
    Ok((agency, party, content_type))
}

/// What becomes of one message from `concordat.ingest`.
async fn handle(gateway: &Gateway, message: IncomingMessage) -> Outcome {
    let (agency, party, content_type) = match admit(gateway, &message) {
        Ok(admitted) => admitted,
        Err(outcome) => return outcome,
    };
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
                // Warnings name places and rules only, never values, so the sender's operator may read them here.
                skipped = %translated.warnings.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(trust_routing_key: bool, agency: &str, user_id: Option<&str>) -> Result<(), String> {
        let config = AmqpIngestConfig { trust_routing_key, ..AmqpIngestConfig::default() };
        check_sender(&config, agency, user_id).map_err(|refusal| refusal.to_string())
    }

    #[test]
    fn an_agency_user_speaks_for_its_own_agency_only() {
        assert_eq!(check(false, "northvale-mh", Some("agency-northvale-mh")), Ok(()));
        assert_eq!(
            check(false, "northvale-police", Some("agency-northvale-mh")),
            Err("user_id `agency-northvale-mh` may not publish as agency `northvale-police`, whose RabbitMQ user is \
                 `agency-northvale-police`"
                .to_owned())
        );
    }

    #[test]
    fn a_message_without_user_id_is_refused_unless_the_routing_key_is_trusted() {
        let refused = check(false, "safe-haven", None).unwrap_err();
        assert!(refused.contains("no user_id") && refused.contains("`agency-safe-haven`"), "{refused}");
        assert_eq!(check(true, "safe-haven", None), Ok(()));
    }

    #[test]
    fn trusting_the_routing_key_never_overrides_a_contradicting_user_id() {
        for user_id in ["guest", "agency-northvale-police", "agency-safe-haven-2", ""] {
            assert!(check(true, "safe-haven", Some(user_id)).is_err(), "{user_id}");
        }
    }

    #[test]
    fn the_prefix_names_the_user() {
        let config = AmqpIngestConfig { user_prefix: "area2-".to_owned(), trust_routing_key: false };
        assert_eq!(check_sender(&config, "safe-haven", Some("area2-safe-haven")), Ok(()));
        assert!(check_sender(&config, "safe-haven", Some("agency-safe-haven")).is_err());
    }

    #[test]
    fn the_section_defaults_to_safe() {
        let config: AmqpIngestConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, AmqpIngestConfig { user_prefix: "agency-".to_owned(), trust_routing_key: false });
        assert!(serde_json::from_str::<AmqpIngestConfig>(r#"{"trust_routing_keys": true}"#).is_err());
    }
}
