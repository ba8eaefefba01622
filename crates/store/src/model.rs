//! The rows the store keeps, as Rust types: episodes, members, decisions, deliveries, timelines.
//!
//! These are the store's API, not a wire format: nothing here derives `Serialize` except the small enums
//! that also appear inside audit records. Times are UTC with microsecond precision (the store truncates
//! finer times on the way in, because PostgreSQL keeps microseconds), so what you read back equals what
//! you wrote.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use concordat_episode::{AgencyId, EpisodeId, EventId, EventKind, Sha256Hex};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An embedded SQLite file (the default: `sqlite://data/concordat.db`).
    Sqlite,
    /// A PostgreSQL server (`postgres://…`), shared by scaled-out routers.
    Postgres,
}

impl Backend {
    /// The backend's name as operators write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rendered delivery's id, which is also its AMQP `message_id`. The router derives it deterministically,
/// so a redelivered event produces the same id and the outbox refuses it a second time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub Uuid);

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeliveryId({})", self.0.hyphenated())
    }
}

/// A sharing decision's id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DecisionId(pub Uuid);

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecisionId({})", self.0.hyphenated())
    }
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// The name stored in the database and written in audit records.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire,)* }
            }

            pub(crate) fn parse(text: &str) -> Option<Self> {
                match text { $($wire => Some(Self::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Whether an episode still correlates new events by NHS number.
    EpisodeState {
        /// Events join it by ref or by NHS number.
        Open = "open",
        /// Events join it only by ref; none opens it again.
        Closed = "closed",
    }
}

text_enum! {
    /// How an agency relates to an episode; the policy grants flows by relation.
    Relation {
        /// Its event opened the episode.
        Originator = "originator",
        /// It has sent an event in the episode.
        Contributor = "contributor",
        /// It sent a during-phase event in the episode, or was named as a referral's recipient.
        Responder = "responder",
    }
}

text_enum! {
    /// Why an episode was closed.
    CloseReason {
        /// No event arrived for the configured quiet period.
        Quiet = "quiet",
        /// The router saw the episode through to its end.
        Concluded = "concluded",
        /// An operator closed it.
        Administrative = "administrative",
    }
}

text_enum! {
    /// A sharing decision's verdict.
    Verdict {
        /// The recipient receives a (redacted) view.
        Permit = "permit",
        /// The recipient receives nothing.
        Deny = "deny",
    }
}

text_enum! {
    /// Where an outbox row is in its life.
    DeliveryStatus {
        /// Waiting for the relay to publish it.
        Pending = "pending",
        /// RabbitMQ confirmed it.
        Sent = "sent",
        /// It failed too often; an operator may retry it.
        Dead = "dead",
    }
}

/// Truncates a time to the microsecond, the precision both databases keep.
pub(crate) fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// An episode: the events about one person's crisis, correlated across agencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// The episode id (also the ref `urn:concordat:episode`).
    pub id: EpisodeId,
    /// Open or closed.
    pub state: EpisodeState,
    /// The agency whose event opened it.
    pub originator: AgencyId,
    /// The event that opened it.
    pub opened_by: EventId,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
    /// When the last event in it was received.
    pub last_event_at: DateTime<Utc>,
    /// When it was closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// Why it was closed.
    pub close_reason: Option<CloseReason>,
    /// When the originator should have outcome feedback by, when the router set a deadline.
    pub feedback_due_at: Option<DateTime<Utc>>,
    /// When outcome feedback first went to the originator.
    pub feedback_delivered_at: Option<DateTime<Utc>>,
}

/// What [`crate::Tx::open_episode`] needs to open an episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEpisode {
    /// The new id (the router assigns it).
    pub id: EpisodeId,
    /// The source agency of the opening event; it becomes the originator (and a member as such).
    pub originator: AgencyId,
    /// The opening event.
    pub opened_by: EventId,
    /// When it opens.
    pub opened_at: DateTime<Utc>,
    /// When outcome feedback to the originator falls due, if the router sets a deadline.
    pub feedback_due_at: Option<DateTime<Utc>>,
}

/// An agency's membership of an episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The agency.
    pub agency: AgencyId,
    /// Its relations to the episode, in the order originator, contributor, responder.
    pub relations: Vec<Relation>,
    /// When it first joined the episode in any relation.
    pub first_seen_at: DateTime<Utc>,
}

impl Member {
    /// True when the agency holds `relation`.
    pub fn is(&self, relation: Relation) -> bool {
        self.relations.contains(&relation)
    }
}

/// An event's metadata as recorded in its episode. No personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// The event id.
    pub event_id: EventId,
    /// The episode it belongs to.
    pub episode_id: EpisodeId,
    /// Its kind.
    pub kind: EventKind,
    /// The sending agency.
    pub source: AgencyId,
    /// When it happened, in UTC.
    pub occurred_at: DateTime<Utc>,
    /// When Concordat received it.
    pub received_at: DateTime<Utc>,
    /// The native payload's digest.
    pub payload_sha256: Sha256Hex,
    /// True once the canonical event itself was purged.
    pub payload_purged: bool,
}

/// A sharing decision, as the policy engine made it. No personal data: fields are JSON Pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The decision id.
    pub decision_id: DecisionId,
    /// The event decided on.
    pub event_id: EventId,
    /// The episode, when the event was correlated into one.
    pub episode_id: Option<EpisodeId>,
    /// The agency the decision is about.
    pub recipient: AgencyId,
    /// Permit or deny.
    pub verdict: Verdict,
    /// Why, in the policy engine's words (agreement ids, failed conditions; never a field's value).
    pub reason: String,
    /// The agreements that permitted the flow (empty on deny).
    pub agreement_ids: Vec<String>,
    /// The purposes named by those agreements.
    pub purposes: Vec<String>,
    /// The lawful bases named by those agreements.
    pub lawful_bases: Vec<String>,
    /// JSON Pointers of the fields shared.
    pub fields_shared: Vec<String>,
    /// JSON Pointers of the fields withheld.
    pub fields_withheld: Vec<String>,
    /// The policy version (its hash).
    pub policy_version: String,
    /// When it was decided.
    pub decided_at: DateTime<Utc>,
}

/// A rendered message to put in the outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The deterministic message id.
    pub delivery_id: DeliveryId,
    /// The event it renders.
    pub event_id: EventId,
    /// The decision that permitted it.
    pub decision_id: Option<DecisionId>,
    /// The recipient agency.
    pub recipient: AgencyId,
    /// The exchange to publish to (`concordat.deliver`).
    pub exchange: String,
    /// The routing key (the recipient's id on `concordat.deliver`).
    pub routing_key: String,
    /// The body's media type.
    pub content_type: String,
    /// AMQP headers (`concordat-kind`, `concordat-episode`, `traceparent` …). No personal data.
    pub headers: BTreeMap<String, String>,
    /// The rendered message. Personal data.
    pub body: Vec<u8>,
    /// When the router enqueued it.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for NewDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDelivery")
            .field("delivery_id", &self.delivery_id)
            .field("event_id", &self.event_id)
            .field("recipient", &self.recipient)
            .field("routing_key", &self.routing_key)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// An outbox row waiting to be published.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    /// The message id.
    pub delivery_id: DeliveryId,
    /// The event it renders.
    pub event_id: EventId,
    /// The recipient agency.
    pub recipient: AgencyId,
    /// The exchange.
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// The media type.
    pub content_type: String,
    /// AMQP headers.
    pub headers: BTreeMap<String, String>,
    /// The message. Personal data.
    pub body: Vec<u8>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When the gateway received the event it delivers, while the event's record is kept (for the
    /// ingest-to-inbox latency).
    pub received_at: Option<DateTime<Utc>>,
}

impl PendingDelivery {
    /// The row `delivery` becomes in the outbox once its transaction commits, with no failed attempt:
    /// what the router hands the relay in its own process instead of the relay reading it back.
    /// `received_at` is when the gateway received the event that caused it.
    #[must_use]
    pub fn enqueued(delivery: NewDelivery, received_at: Option<DateTime<Utc>>) -> Self {
        let NewDelivery {
            delivery_id,
            event_id,
            decision_id: _,
            recipient,
            exchange,
            routing_key,
            content_type,
            headers,
            body,
            created_at,
        } = delivery;
        Self {
            delivery_id,
            event_id,
            recipient,
            exchange,
            routing_key,
            content_type,
            headers,
            body,
            attempts: 0,
            created_at,
            received_at,
        }
    }
}

impl fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingDelivery")
            .field("delivery_id", &self.delivery_id)
            .field("event_id", &self.event_id)
            .field("recipient", &self.recipient)
            .field("routing_key", &self.routing_key)
            .field("body_len", &self.body.len())
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// An outbox row's metadata, for the admin API. No body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMeta {
    /// The message id.
    pub delivery_id: DeliveryId,
    /// The event it renders.
    pub event_id: EventId,
    /// The decision that permitted it.
    pub decision_id: Option<DecisionId>,
    /// The recipient agency.
    pub recipient: AgencyId,
    /// Pending, sent or dead.
    pub status: DeliveryStatus,
    /// Failed attempts.
    pub attempts: u32,
    /// The last publish error (from the broker; never message content).
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When RabbitMQ confirmed it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the recipient's own endpoint accepted it, for a delivery the delivery worker pushed.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// True once the body was purged.
    pub body_purged: bool,
}

/// One event in an episode's timeline, with the decisions and deliveries it led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// The event's metadata.
    pub event: EventMeta,
    /// The sharing decisions about it, by recipient.
    pub decisions: Vec<Decision>,
    /// The deliveries it produced, in creation order.
    pub deliveries: Vec<DeliveryMeta>,
}

/// An episode's story for the admin API: who is in it and what flowed where. No personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The episode.
    pub episode: Episode,
    /// Its members.
    pub members: Vec<Member>,
    /// Its events in the order received.
    pub entries: Vec<TimelineEntry>,
}

/// How far back [`crate::Store::purge_personal_data`] purges each kind of record: what is older than its
/// cut-off goes (the retention periods of DESIGN.md §7, invariant 7, counted back from now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeCutoffs {
    /// Canonical event payloads and unattached events received before it.
    pub events: DateTime<Utc>,
    /// Sent outbox rows created before it.
    pub deliveries: DateTime<Utc>,
    /// Bodies of dead outbox rows created before it (the dead letters' own period).
    pub dead_deliveries: DateTime<Utc>,
    /// Subject keys and correlation refs of episodes closed before it.
    pub episodes: DateTime<Utc>,
}

impl PurgeCutoffs {
    /// One cut-off for every kind of record.
    #[must_use]
    pub fn all(before: DateTime<Utc>) -> Self {
        Self { events: before, deliveries: before, dead_deliveries: before, episodes: before }
    }
}

/// What [`crate::Store::purge_personal_data`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Canonical event payloads deleted.
    pub event_payloads: u64,
    /// Unattached (pre-crisis) events deleted, payload and all.
    pub unattached_events: u64,
    /// Sent outbox rows deleted (the audit chain keeps their ids and body hashes).
    pub deliveries_deleted: u64,
    /// Bodies of dead outbox rows cleared (such a row can no longer be retried).
    pub dead_bodies_cleared: u64,
    /// Subject keys of closed episodes deleted.
    pub subject_keys: u64,
    /// Correlation refs of closed episodes deleted (the episode-id ref stays).
    pub refs: u64,
}
