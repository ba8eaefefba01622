//! The store handle: connecting (and migrating), starting transactions, and the work done outside the
//! router's transaction: the outbox relay's reads and marks, episode housekeeping, purging, audit
//! verification and the admin API's queries.
//!
//! It holds a connection pool and is cheap to clone. It reads no clock: every time comes in as an argument.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concordat_episode::{EPISODE_SYSTEM, EpisodeId};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::audit::{AuditRecord, AuditVerified};
use crate::error::{Missing, StoreError, redact_url};
use crate::model::{
    Backend, CloseReason, DeliveryId, DeliveryMeta, DeliveryStatus, Episode, PendingDelivery, PurgeCutoffs,
    PurgeReport, Timeline, TimelineEntry, micros,
};
use crate::tx::{Conn, Tx};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a SQLite writer waits for another to finish before giving up with a transient error.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any caller waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The store. See the crate docs.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Held by each SQLite write transaction of this process from `BEGIN IMMEDIATE` to its end.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// While any clone of this store lives, its SQLite WAL is checkpointed in the background.
    _alive: Arc<()>,
}

/// How often the background checkpoint copies the SQLite WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] until the pool closes or the store is dropped.
/// `PASSIVE` never waits for writers or readers: it copies what it can and leaves the rest for the next
/// round, so the router's commits stay short (they only append to the WAL and sync it).
async fn checkpoint_wal(pool: SqlitePool, alive: std::sync::Weak<()>) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if pool.is_closed() || alive.strong_count() == 0 {
            break;
        }
        let started = std::time::Instant::now();
        let result = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await;
        tracing::debug!(message = "Checkpointed the WAL.", ms = started.elapsed().as_secs_f64() * 1000.0);
        if let Err(error) = result {
            if pool.is_closed() {
                break;
            }
            tracing::warn!(message = "Checkpointing the SQLite write-ahead log failed; trying again.", %error);
        }
    }
}

impl Store {
    /// Connects to `sqlite://path` (the file and its directory are created when missing) or
    /// `postgres://…`, and brings the schema up to date. Safe to call from several processes at once:
    /// PostgreSQL migrations take an advisory lock, SQLite's a write lock.
    ///
    /// SQLite runs in WAL mode with foreign keys on, `synchronous = FULL` (a commit survives power loss,
    /// which the router's ack relies on) and a 10 s busy timeout.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`], [`StoreError::CreateDir`], [`StoreError::Unreachable`] (exit code 3 in the
    /// binary) or [`StoreError::Migration`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let url_redacted = redact_url(url);
        let invalid = || StoreError::InvalidUrl { url_redacted: url_redacted.clone() };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|_| invalid())?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .synchronous(SqliteSynchronous::Full)
                // Lets a purge give freed pages back to the file system (`PRAGMA incremental_vacuum`).
                .auto_vacuum(SqliteAutoVacuum::Incremental)
                // The WAL is checkpointed in the background (see `checkpoint_wal`), not by whichever
                // commit happens to cross SQLite's threshold: that commit would otherwise copy a
                // thousand pages back into the database file and sync it before returning.
                .pragma("wal_autocheckpoint", "0")
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            create_parent_dir(options.get_filename())?;
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|source| StoreError::Unreachable { url_redacted: url_redacted.clone(), source })?;
            SQLITE_MIGRATIONS.run(&pool).await.map_err(StoreError::Migration)?;
            let alive = Arc::new(());
            tokio::spawn(checkpoint_wal(pool.clone(), Arc::downgrade(&alive)));
            Ok(Self { pool: Pool::Sqlite(pool), writer: Arc::default(), _alive: alive })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|_| invalid())?;
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|source| StoreError::Unreachable { url_redacted: url_redacted.clone(), source })?;
            POSTGRES_MIGRATIONS.run(&pool).await.map_err(StoreError::Migration)?;
            Ok(Self { pool: Pool::Postgres(pool), writer: Arc::default(), _alive: Arc::default() })
        } else {
            Err(invalid())
        }
    }

    /// The database in use.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so a
    /// transaction that reads, then writes, cannot fail half-way on a lock upgrade. Writers of this process
    /// queue for it in turn and each starts the moment the one before it ends, instead of polling a busy
    /// database file with SQLite's growing sleeps (the router and the relay would otherwise lose
    /// milliseconds each time they meet); another process's writers still wait with the busy timeout.
    ///
    /// # Errors
    /// [`StoreError::Database`] (transient when the pool or the lock timed out).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => {
                let turn = self.writer.clone().lock_owned().await;
                Tx::new(Conn::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?)).holding(turn)
            }
            Pool::Postgres(pool) => Tx::new(Conn::Postgres(pool.begin().await?)),
        })
    }

    /// A read transaction: a consistent snapshot that does not hold SQLite's write lock.
    pub(crate) async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(Tx::new(match &self.pool {
            Pool::Sqlite(pool) => Conn::Sqlite(pool.begin().await?),
            Pool::Postgres(pool) => Conn::Postgres(pool.begin().await?),
        }))
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// Up to `limit` pending deliveries, oldest first, for the outbox relay. One relay per store is
    /// assumed: two relays would publish the same rows (harmless to consumers that dedup on `message_id`,
    /// but wasteful).
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn pending_outbox(&self, limit: u32) -> Result<Vec<PendingDelivery>, StoreError> {
        self.pending_outbox_created_before(limit, None).await
    }

    /// Like [`Self::pending_outbox`], but only rows enqueued before `cutoff` (all of them for `None`): the
    /// relay's look for rows that did not reach it from the router in its own process.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn pending_outbox_created_before(
        &self,
        limit: u32,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let mut tx = self.begin_read().await?;
        let pending = tx.pending_outbox(limit, cutoff).await?;
        tx.rollback().await?;
        Ok(pending)
    }

    /// Marks deliveries that RabbitMQ confirmed as sent, each audited as `delivery_sent`, in one
    /// transaction and one statement per 512 ids. Ids that are not pending (already sent, dead, unknown) are skipped; returns how many
    /// were marked.
    ///
    /// # Errors
    /// [`StoreError::Database`]; nothing was marked.
    pub async fn mark_sent(&self, ids: &[DeliveryId], at: DateTime<Utc>) -> Result<u64, StoreError> {
        self.mark_sent_in_groups(&[(ids.to_vec(), at)]).await
    }

    /// Like [`Self::mark_sent`] for several groups of deliveries, each confirmed at its own time, in one
    /// transaction: the relay marks what RabbitMQ confirmed while its last marks were being written.
    ///
    /// # Errors
    /// [`StoreError::Database`]; nothing was marked.
    pub async fn mark_sent_in_groups(&self, groups: &[(Vec<DeliveryId>, DateTime<Utc>)]) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut marked = 0;
        for (ids, at) in groups {
            marked += tx.mark_sent(ids, *at).await?;
        }
        tx.commit().await?;
        Ok(marked)
    }

    /// Records a failed publish attempt with the broker's error (not message content; cut to 500
    /// characters). After `max_attempts` attempts the delivery is dead (audited as `delivery_dead`) and the
    /// relay no longer sees it. Returns the delivery's status afterwards; a delivery no longer pending is
    /// left as it is.
    ///
    /// # Errors
    /// [`Missing::Delivery`] for an unknown id, or [`StoreError::Database`].
    pub async fn mark_failed(
        &self,
        id: DeliveryId,
        error: &str,
        max_attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<DeliveryStatus, StoreError> {
        let mut tx = self.begin().await?;
        let status = tx.mark_failed(id, error, max_attempts, at).await?;
        tx.commit().await?;
        Ok(status)
    }

    /// Records that the recipient's own endpoint accepted a pushed delivery (a 2xx from its webhook or FHIR
    /// server) at `at`: sets `confirmed_at` and audits `delivery_confirmed` with the `channel` (`webhook`,
    /// `fhir`) and the HTTP `status`, in one transaction. The first confirmation counts: a delivery pushed
    /// again after a crash, or one no longer in the outbox (purged, or never written there), is left as it
    /// is and `false` returned.
    ///
    /// # Errors
    /// [`StoreError::Database`]; nothing was recorded.
    pub async fn mark_confirmed(
        &self,
        id: DeliveryId,
        channel: &str,
        status: u16,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let marked = tx.mark_confirmed(id, channel, status, at).await?;
        tx.commit().await?;
        Ok(marked)
    }

    /// Dead deliveries, oldest first, for the admin API.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn dead_deliveries(&self, limit: u32) -> Result<Vec<DeliveryMeta>, StoreError> {
        let mut tx = self.begin_read().await?;
        let dead = tx.dead_deliveries(limit).await?;
        tx.rollback().await?;
        Ok(dead)
    }

    /// Puts a dead delivery back to pending with its attempts reset (audited as `delivery_retried`).
    /// Returns false when it is not dead, or its body was purged.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn retry_delivery(&self, id: DeliveryId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let retried = tx.retry_dead(id, at).await?;
        tx.commit().await?;
        Ok(retried)
    }

    /// Walks the whole audit chain and checks every link.
    ///
    /// # Errors
    /// [`StoreError::AuditBroken`] naming the first broken record and what is wrong with it (the CLI's exit
    /// code 1), or [`StoreError::Database`].
    pub async fn audit_verify(&self) -> Result<AuditVerified, StoreError> {
        let mut tx = self.begin_read().await?;
        let verified = tx.audit_verify().await?;
        tx.rollback().await?;
        Ok(verified)
    }

    /// An episode by id.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn episode(&self, id: EpisodeId) -> Result<Option<Episode>, StoreError> {
        let mut tx = self.begin_read().await?;
        let episode = tx.episode(id).await?;
        tx.rollback().await?;
        Ok(episode)
    }

    /// Episodes opened at or before `opened_before` whose originator has not yet received outcome
    /// feedback, oldest first, open or closed.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn episodes_awaiting_feedback(&self, opened_before: DateTime<Utc>) -> Result<Vec<Episode>, StoreError> {
        let mut tx = self.begin_read().await?;
        let episodes = tx.episodes_where("feedback_delivered_at IS NULL AND opened_at <= $1", opened_before).await?;
        tx.rollback().await?;
        Ok(episodes)
    }

    /// Episodes whose feedback deadline (`feedback_due_at`) is at or before `now` with no feedback
    /// delivered yet, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn episodes_feedback_overdue(&self, now: DateTime<Utc>) -> Result<Vec<Episode>, StoreError> {
        let mut tx = self.begin_read().await?;
        let episodes = tx.episodes_where("feedback_delivered_at IS NULL AND feedback_due_at <= $1", now).await?;
        tx.rollback().await?;
        Ok(episodes)
    }

    /// Closes every open episode with no event received since `quiet_since` (reason `quiet`, each audited),
    /// in one transaction. Returns the ids closed.
    ///
    /// # Errors
    /// [`StoreError::Database`]; nothing was closed.
    pub async fn close_quiet_episodes(
        &self,
        quiet_since: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<EpisodeId>, StoreError> {
        let mut tx = self.begin().await?;
        let ids = tx.quiet_episode_ids(quiet_since).await?;
        for id in &ids {
            tx.close_episode(*id, CloseReason::Quiet, at).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Deletes personal data older than their kind's cut-off, in one transaction, and audits what went (counts
    /// and cut-offs only):
    ///
    /// - canonical event payloads, and events held unattached, received before `cutoffs.events` (their
    ///   metadata stay);
    /// - sent outbox rows created before `cutoffs.deliveries` (the chain keeps their ids and body digests);
    /// - bodies of dead outbox rows created before `cutoffs.dead_deliveries` (they can no longer be retried);
    /// - subject keys and correlation refs of episodes closed before `cutoffs.episodes` (the episode-id ref
    ///   stays).
    ///
    /// Pending deliveries are never purged: they must still go out. Decisions and the audit chain hold no
    /// personal data and are kept, so the chain still verifies. On SQLite the freed pages are then returned
    /// to the file system.
    ///
    /// # Errors
    /// [`StoreError::Database`]; nothing was purged.
    pub async fn purge_personal_data(
        &self,
        cutoffs: &PurgeCutoffs,
        at: DateTime<Utc>,
    ) -> Result<PurgeReport, StoreError> {
        let closed = "SELECT id FROM episodes WHERE state = 'closed' AND closed_at < $1";
        let mut tx = self.begin().await?;
        let report = PurgeReport {
            event_payloads: tx
                .execute_counting(
                    "DELETE FROM event_payloads WHERE event_id IN (SELECT event_id FROM events WHERE received_at < $1)",
                    cutoffs.events,
                )
                .await?,
            unattached_events: tx
                .execute_counting("DELETE FROM unattached_events WHERE received_at < $1", cutoffs.events)
                .await?,
            deliveries_deleted: tx
                .execute_counting("DELETE FROM outbox WHERE status = 'sent' AND created_at < $1", cutoffs.deliveries)
                .await?,
            dead_bodies_cleared: tx
                .execute_counting(
                    "UPDATE outbox SET body = NULL WHERE status = 'dead' AND created_at < $1 AND body IS NOT NULL",
                    cutoffs.dead_deliveries,
                )
                .await?,
            subject_keys: tx
                .execute_counting(&format!("DELETE FROM subject_keys WHERE episode_id IN ({closed})"), cutoffs.episodes)
                .await?,
            refs: tx
                .execute_counting(
                    &format!(
                        "DELETE FROM episode_refs WHERE system <> '{EPISODE_SYSTEM}' AND episode_id IN ({closed})"
                    ),
                    cutoffs.episodes,
                )
                .await?,
        };
        let cutoffs = PurgeCutoffs {
            events: micros(cutoffs.events),
            deliveries: micros(cutoffs.deliveries),
            dead_deliveries: micros(cutoffs.dead_deliveries),
            episodes: micros(cutoffs.episodes),
        };
        tx.append_audit(at, AuditRecord::PersonalDataPurged { cutoffs, removed: report });
        tx.commit().await?;
        if let Pool::Sqlite(pool) = &self.pool {
            sqlx::query("PRAGMA incremental_vacuum").execute(pool).await?;
        }
        Ok(report)
    }

    /// An episode's timeline for the admin API: members, events (metadata only), decisions and deliveries.
    /// No personal data.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn episode_timeline(&self, id: EpisodeId) -> Result<Option<Timeline>, StoreError> {
        let mut tx = self.begin_read().await?;
        let Some(episode) = tx.episode(id).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let members = tx.members(id).await?;
        let mut entries = Vec::new();
        for event in tx.episode_events(id).await? {
            let decisions = tx.decisions(event.event_id).await?;
            let deliveries = tx.event_deliveries(event.event_id).await?;
            entries.push(TimelineEntry { event, decisions, deliveries });
        }
        tx.rollback().await?;
        Ok(Some(Timeline { episode, members, entries }))
    }

    /// Like [`Store::episode`], but an error when the episode does not exist.
    ///
    /// # Errors
    /// [`Missing::Episode`], or as [`Store::episode`].
    pub async fn require_episode(&self, id: EpisodeId) -> Result<Episode, StoreError> {
        self.episode(id).await?.ok_or(StoreError::NotFound(Missing::Episode(id)))
    }
}

fn create_parent_dir(file: &Path) -> Result<(), StoreError> {
    // An in-memory database has no file; `sqlite://data/concordat.db` needs `data/`.
    if file.as_os_str().is_empty() || file.to_string_lossy().starts_with(":memory:") {
        return Ok(());
    }
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use concordat_episode::{EpisodeId, EventId};
    use uuid::Uuid;

    use super::*;
    use crate::model::{DecisionId, NewEpisode, Relation, Verdict};

    fn send<T: Send>(_: &T) {}

    // The router and the relay run these futures in spawned tasks, so each must be `Send`. This only has to
    // compile; it never polls anything.
    #[allow(dead_code)]
    async fn futures_are_send(store: Store, mut tx: Tx, new: NewEpisode, decision: crate::Decision) {
        let now = Utc::now();
        let id = EpisodeId(Uuid::nil());
        send(&Store::connect("sqlite::memory:"));
        send(&store.begin());
        send(&store.pending_outbox(1));
        send(&store.mark_sent(&[], now));
        send(&store.pending_outbox_created_before(1, Some(now)));
        send(&store.mark_sent_in_groups(&[]));
        send(&store.mark_failed(DeliveryId(Uuid::nil()), "", 1, now));
        send(&store.mark_confirmed(DeliveryId(Uuid::nil()), "webhook", 200, now));
        send(&store.dead_deliveries(1));
        send(&store.retry_delivery(DeliveryId(Uuid::nil()), now));
        send(&store.audit_verify());
        send(&store.episodes_awaiting_feedback(now));
        send(&store.close_quiet_episodes(now, now));
        send(&store.purge_personal_data(&PurgeCutoffs::all(now), now));
        send(&store.episode_timeline(id));
        send(&tx.is_processed(EventId(Uuid::nil())));
        send(&tx.find_episode_by_refs(&[]));
        send(&tx.open_episode(&new));
        send(&tx.members(id));
        send(&tx.add_member(id, &new.originator, Relation::Originator, now));
        send(&tx.insert_decision(&decision));
        send(&tx.decisions(EventId(Uuid::nil())));
        send(&tx.close_episode(id, CloseReason::Quiet, now));
        send(&tx.mark_feedback_delivered(id, EventId(Uuid::nil()), now));
        let _ = (DecisionId(Uuid::nil()), Verdict::Permit);
        send(&tx.commit());
    }
}
