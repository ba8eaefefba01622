//! Concordat's store: episodes, correlation refs and subject keys, dedup marks, sharing decisions, the
//! outbox and the hash-chained audit log, on SQLite (the embedded default, `sqlite://data/concordat.db`) or
//! PostgreSQL (`postgres://…`, shared by scaled-out routers), with the same behaviour on both.
//!
//! The router does everything for one event in one [`Tx`]: check the dedup mark, correlate (refs first,
//! then the subject key of an open episode), open or join an episode, record the event, store decisions,
//! enqueue deliveries, mark the event processed, [`Tx::commit`], and only then ack. Dropping a `Tx`
//! rolls all of it back. The store audits its own writes (episodes, members, events, decisions,
//! deliveries); the records are appended to the chain at commit, under a lock that keeps the chain linear
//! however many routers commit at once.
//!
//! Personal data live only in event payloads, outbox bodies and subject keys (keyed hashes of NHS
//! numbers, never the numbers), so [`Store::purge_personal_data`] can delete them on schedule without
//! touching the audit chain, which holds ids, agencies, kinds, JSON Pointers and digests only.
//!
//! Rows that nothing in the router's transaction reads back (recorded events, decisions, outbox rows) are
//! deferred and written together by [`Tx::flush`], which [`Tx::commit`] runs: a batch of events costs a
//! few statements for those, not a few per event. A conflict among them is reported there. The other
//! way round, [`Tx::read_ahead`] reads what a batch's correlation lookups need (ref owners, episodes
//! holding a subject key, those episodes' members and refs, unattached events) in a few statements at
//! its start; the lookups then answer from memory, kept up to date by the transaction's own writes, and
//! an episode opened meanwhile waits for the flush too. On SQLite the flush, the read-ahead and the audit
//! append each send their statements in one call (see `flush.rs`): under load a statement costs its hop to
//! the database thread more than its rows.
//!
//! Concurrency: SQLite write transactions start with `BEGIN IMMEDIATE` and run one at a time (one
//! process's writers queue for their turn on an async mutex; the write-ahead log is checkpointed in the
//! background, never by a commit). On
//! PostgreSQL, correlation lookups take transaction-scoped advisory locks on the refs and subject key
//! involved, so two routers handling the same person serialize and the second joins the first's episode
//! rather than opening a duplicate.
//!
//! This crate is not the router: it correlates nothing by itself, never merges episodes, derives no
//! relations beyond the originator, and reads no clock (every time is an argument, truncated to
//! microseconds). It knows nothing of AMQP or HTTP.

mod ahead;
mod audit;
mod error;
mod flush;
mod model;
mod report;
mod rows;
mod store;
mod subject;
mod tx;

pub use audit::{AuditBreak, AuditRecord, AuditVerified, GENESIS_HASH, canonical_json, link_hash};
pub use error::{Conflict, Missing, StoreError, redact_url};
pub use model::{
    Backend, CloseReason, Decision, DecisionId, DeliveryId, DeliveryMeta, DeliveryStatus, Episode, EpisodeState,
    EventMeta, Member, NewDelivery, NewEpisode, PendingDelivery, PurgeCutoffs, PurgeReport, Relation, Timeline,
    TimelineEntry, Verdict,
};
pub use report::{ImpactReport, OriginatorFeedback, PairFlow};
pub use store::Store;
pub use subject::{MIN_SECRET_LEN, SubjectKey, SubjectKeyer, WeakSecret};
pub use tx::{Committed, Tx};
