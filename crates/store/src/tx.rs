//! One store transaction: everything the router writes for one event, committed together or not at all.
//!
//! A [`Tx`] wraps a SQLite or PostgreSQL transaction and runs the same SQL on either (`$n` placeholders work
//! on both). Dropping it without [`Tx::commit`] rolls it back, audit records included: they are buffered
//! and appended to the chain in `commit`, just before the database commit, so the chain lock is held only
//! for that moment.
//!
//! A [`StoreError::Conflict`] leaves the transaction usable on both databases: conflicting inserts use
//! `ON CONFLICT DO NOTHING` and look at the row count, so PostgreSQL never aborts the transaction for them.
//! After any other error, drop the transaction (PostgreSQL refuses further statements in it).
//!
//! Recorded events, decisions and outbox rows are deferred (see [`Tx::flush`]): a duplicate within the
//! transaction is refused at the call, a clash with an earlier transaction's row at the flush.
//!
//! This module is not a query builder: every statement is spelled out here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use concordat_episode::{
    AgencyId, CrisisEvent, EPISODE_SYSTEM, EpisodeId, EventId, Identifier, NonEmptyString, Sha256Hex,
};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, Sqlite, Transaction};
use uuid::Uuid;

use crate::ahead::ReadAhead;
use crate::audit::{AuditRecord, AuditRow, AuditVerified, ChainCheck, link_hash};
use crate::error::{Conflict, Missing, StoreError};
use crate::flush::{Arg, Statement};
use crate::model::{
    Backend, CloseReason, Decision, DeliveryMeta, Episode, EpisodeState, EventMeta, Member, NewDelivery, NewEpisode,
    PendingDelivery, Relation, Verdict, micros,
};
use crate::rows::{self, Cols};
use crate::subject::SubjectKey;

pub(crate) enum Conn {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$c` bound to the concrete transaction, once per backend, so that one statement text and
/// one set of binds serve both databases.
macro_rules! on {
    ($self:expr, |$c:ident| $body:expr) => {
        match &mut $self.conn {
            $crate::tx::Conn::Sqlite($c) => $body,
            $crate::tx::Conn::Postgres($c) => $body,
        }
    };
}
pub(crate) use on;

/// A store transaction. See the module docs.
pub struct Tx {
    pub(crate) conn: Conn,
    audit: Vec<(DateTime<Utc>, AuditRecord)>,
    pub(crate) deferred: Deferred,
    /// What [`Tx::read_ahead`] read for a batch's lookups, kept up to date by this transaction's writes.
    pub(crate) ahead: Option<ReadAhead>,
    /// This process's turn at SQLite's write lock, given back when the transaction ends (see
    /// [`crate::Store::begin`]). Declared after `conn`, so the transaction ends first.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// Rows that nothing in the router's transaction reads back: recorded events (their metadata, payloads and
/// the episode's `last_event_at`), decisions and outbox rows. They are kept here and written by
/// [`Tx::flush`] as a few multi-row statements, so that routing a batch of events costs a handful of round
/// trips to the database for all of them instead of several for each.
#[derive(Default)]
pub(crate) struct Deferred {
    /// Episodes opened while reading ahead ([`Tx::read_ahead`]), with the refs, memberships and subject
    /// keys added meanwhile: the read-ahead already answers for them, and already knew of any conflict.
    pub(crate) episodes: Vec<Episode>,
    pub(crate) refs: Vec<(String, String, Uuid, DateTime<Utc>)>,
    pub(crate) members: Vec<(Uuid, AgencyId, Relation, DateTime<Utc>)>,
    pub(crate) keys: Vec<(Uuid, [u8; 32], DateTime<Utc>)>,
    /// Dedup marks of events the read-ahead asked about: event, episode, time.
    pub(crate) marks: Vec<(Uuid, Option<Uuid>, DateTime<Utc>)>,
    pub(crate) events: Vec<EventRow>,
    /// The newest `received_at` recorded for each episode, for its `last_event_at`.
    pub(crate) touches: Vec<(Uuid, DateTime<Utc>)>,
    pub(crate) decisions: Vec<Decision>,
    /// Each with its body's SHA-256, computed once for the audit record and the row.
    pub(crate) deliveries: Vec<(NewDelivery, Sha256Hex)>,
    /// Deliveries RabbitMQ confirmed, to be marked sent: each group with when it was confirmed.
    pub(crate) sent: Vec<(Vec<Uuid>, DateTime<Utc>)>,
}

impl Deferred {
    /// True when episodes, refs, members or subject keys wait to be written.
    pub(crate) fn has_structure(&self) -> bool {
        !(self.episodes.is_empty() && self.refs.is_empty() && self.members.is_empty() && self.keys.is_empty())
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.has_structure()
            && self.marks.is_empty()
            && self.events.is_empty()
            && self.decisions.is_empty()
            && self.deliveries.is_empty()
            && self.sent.is_empty()
    }

    /// `last_event_at` as it will be once the deferred events are written.
    fn touched(&self, mut episode: Episode) -> Episode {
        if let Some((_, at)) = self.touches.iter().find(|(id, _)| *id == episode.id.0) {
            episode.last_event_at = episode.last_event_at.max(*at);
        }
        episode
    }
}

pub(crate) struct EventRow {
    pub(crate) event_id: EventId,
    pub(crate) episode: EpisodeId,
    pub(crate) kind: &'static str,
    pub(crate) source: String,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) digest: Sha256Hex,
    pub(crate) body: String,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.backend())
            .field("pending_audit", &self.audit.len())
            .field("deferred_events", &self.deferred.events.len())
            .field("deferred_decisions", &self.deferred.decisions.len())
            .field("deferred_deliveries", &self.deferred.deliveries.len())
            .finish()
    }
}

/// What a commit appended to the audit chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The sequence number of the first audit record appended, if any was.
    pub first_audit_seq: Option<u64>,
    /// How many audit records were appended.
    pub audit_records: u64,
}

/// The most rows one multi-row `INSERT` carries: 64 rows of 13 columns stay far below either database's
/// limit on bound parameters (32,766 for SQLite, 65,535 for PostgreSQL).
pub const ROWS_PER_STATEMENT: usize = 64;

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` placeholders each, bound in that order; on SQLite
/// `(?, ?), (?, ?)`, which binds the same way. SQLite looks a numbered parameter's name up by walking a
/// list, once per parameter as it is bound, so a wide statement of numbered parameters costs time
/// quadratic in their count: a sixty-four-row insert of thirteen columns spent more time there than
/// in executing it.
pub(crate) fn placeholders(backend: Backend, columns: usize, rows: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    out.push('$');
                    out.push_str(&(row * columns + column + 1).to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

/// `INSERT INTO {table} ({columns}) VALUES … ON CONFLICT {on_conflict} DO NOTHING {returning}` for one
/// chunk of `rows` rows (an empty `on_conflict` is any conflict).
pub(crate) fn insert(
    backend: Backend,
    table: &str,
    columns: &str,
    rows: usize,
    on_conflict: &str,
    returning: &str,
) -> String {
    let width = columns.split(',').count();
    format!(
        "INSERT INTO {table} ({columns}) VALUES {} ON CONFLICT {on_conflict} DO NOTHING {returning}",
        placeholders(backend, width, rows)
    )
}

/// `$1, $2, …` (`?, ?, …` on SQLite, see [`placeholders`]) for `count` parameters numbered from `first`.
pub(crate) fn list(backend: Backend, first: usize, count: usize) -> String {
    let one = |n: usize| match backend {
        Backend::Sqlite => "?".to_owned(),
        Backend::Postgres => format!("${n}"),
    };
    (first..first + count).map(one).collect::<Vec<_>>().join(", ")
}

/// Each item once, where it first stands (a call's rows are few: a linear scan beats hashing them).
fn first_of_each<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut unique = Vec::new();
    for item in items {
        if !unique.contains(&item) {
            unique.push(item);
        }
    }
    unique
}

pub(crate) fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// A PostgreSQL advisory-lock key for a correlation key: the first 8 bytes of its SHA-256.
pub(crate) fn lock_key(parts: &[&[u8]]) -> i64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut bytes = [0_u8; 8];
    for (slot, byte) in bytes.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    i64::from_be_bytes(bytes)
}

/// The advisory-lock key of a correlation ref.
pub(crate) fn ref_lock_key(identifier: &Identifier) -> i64 {
    lock_key(&[b"ref", identifier.system.as_str().as_bytes(), identifier.value.as_str().as_bytes()])
}

impl Tx {
    pub(crate) fn new(conn: Conn) -> Self {
        Self { conn, audit: Vec::new(), deferred: Deferred::default(), ahead: None, _turn: None }
    }

    pub(crate) fn holding(mut self, turn: tokio::sync::OwnedMutexGuard<()>) -> Self {
        self._turn = Some(turn);
        self
    }

    /// The database this transaction runs on.
    pub fn backend(&self) -> Backend {
        match self.conn {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// Serializes transactions that correlate on the same keys. On PostgreSQL this takes a transaction-scoped
    /// advisory lock per key, in sorted order so that two transactions cannot deadlock on them; a second
    /// router working on the same person then waits, and its lookup sees the first one's episode instead of
    /// opening a duplicate. SQLite needs nothing: its write transactions already run one at a time.
    pub(crate) async fn lock_keys(&mut self, mut keys: Vec<i64>) -> Result<(), StoreError> {
        if let Conn::Postgres(c) = &mut self.conn {
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut **c).await?;
            }
        }
        Ok(())
    }

    /// True when the event already carries its dedup mark.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn is_processed(&mut self, event_id: EventId) -> Result<bool, StoreError> {
        Ok(!self.processed_among(&[event_id]).await?.is_empty())
    }

    /// Which of `events` already carry their dedup mark, in one statement per 512 ids.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable id.
    pub async fn processed_among(&mut self, events: &[EventId]) -> Result<BTreeSet<EventId>, StoreError> {
        self.flush().await?;
        let mut processed = BTreeSet::new();
        for chunk in events.chunks(8 * ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT event_id FROM processed_events WHERE event_id IN ({})",
                list(self.backend(), 1, chunk.len())
            );
            let found: Vec<Uuid> = on!(self, |c| {
                let mut query = sqlx::query(&sql);
                for event in chunk {
                    query = query.bind(event.0);
                }
                query.fetch_all(&mut **c).await?.iter().map(|row| row.uuid("event_id")).collect::<Result<_, _>>()?
            });
            processed.extend(found.into_iter().map(EventId));
        }
        Ok(processed)
    }

    /// Writes the event's dedup mark, with the episode it went to (none when it joined no episode).
    ///
    /// # Errors
    /// [`Conflict::AlreadyProcessed`] when another transaction marked it first; roll back and ack.
    pub async fn mark_processed(
        &mut self,
        event_id: EventId,
        episode: Option<EpisodeId>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.mark_all_processed(&[(event_id, episode)], at).await
    }

    /// Writes the dedup marks of several events in one statement (one per `ROWS_PER_STATEMENT`).
    ///
    /// # Errors
    /// [`Conflict::AlreadyProcessed`] naming the first event already marked; the others may have been
    /// marked, so drop the transaction.
    pub async fn mark_all_processed(
        &mut self,
        marks: &[(EventId, Option<EpisodeId>)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = micros(at);
        // Reading ahead, when the read-ahead asked about every one of these events: a mark already there
        // is known now, and the rows wait for the flush.
        if let Some(ahead) = &mut self.ahead
            && marks.iter().all(|(event, _)| ahead.asked_about(*event))
        {
            let unique = first_of_each(marks.iter().copied());
            if let Some((refused, _)) = unique.iter().find(|(event, _)| ahead.is_processed(*event)) {
                return Err(StoreError::Conflict(Conflict::AlreadyProcessed(*refused)));
            }
            for (event, episode) in unique {
                ahead.processed_now(event);
                self.deferred.marks.push((event.0, episode.map(|id| id.0), at));
            }
            return Ok(());
        }
        // The marks name episodes, which may still be waiting for the flush.
        self.flush_structure().await?;
        for chunk in marks.chunks(ROWS_PER_STATEMENT) {
            let columns = "event_id, episode_id, processed_at";
            let sql = insert(self.backend(), "processed_events", columns, chunk.len(), "", "RETURNING event_id");
            let inserted: Vec<Uuid> = on!(self, |c| {
                let mut query = sqlx::query(&sql);
                for (event, episode) in chunk {
                    query = query.bind(event.0).bind(episode.map(|id| id.0)).bind(at);
                }
                query.fetch_all(&mut **c).await?.iter().map(|row| row.uuid("event_id")).collect::<Result<_, _>>()?
            });
            if let Some((refused, _)) = chunk.iter().find(|(event, _)| !inserted.contains(&event.0)) {
                return Err(StoreError::Conflict(Conflict::AlreadyProcessed(*refused)));
            }
        }
        Ok(())
    }

    /// The episodes that any of `refs` already belongs to, oldest first. More than one means the refs link
    /// episodes that were opened apart: the router must resolve that conflict, the store never merges.
    /// On PostgreSQL this first locks the refs (see the crate docs).
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable episode row.
    pub async fn find_episode_by_refs(&mut self, refs: &[Identifier]) -> Result<Vec<Episode>, StoreError> {
        if let Some(owners) = self.ahead.as_ref().and_then(|ahead| ahead.owners(refs)) {
            let mut episodes = Vec::with_capacity(owners.len());
            for owner in owners {
                episodes.extend(self.episode(owner).await?);
            }
            episodes.sort_by_key(|episode| (episode.opened_at, episode.id));
            return Ok(episodes);
        }
        self.flush_structure().await?;
        self.lock_keys(refs.iter().map(ref_lock_key).collect()).await?;
        // One statement per chunk of refs (an event rarely has more than three), each bound parameter pair
        // matching one ref; a chunk stays far below either database's limit on parameters.
        let mut episodes: Vec<Episode> = Vec::new();
        for chunk in refs.chunks(ROWS_PER_STATEMENT) {
            let matches: Vec<String> = (0..chunk.len())
                .map(|index| format!("(system = ${} AND value = ${})", 2 * index + 1, 2 * index + 2))
                .collect();
            let sql = format!(
                "SELECT {} FROM episodes WHERE id IN (SELECT episode_id FROM episode_refs WHERE {})",
                rows::EPISODE_COLUMNS,
                matches.join(" OR ")
            );
            let found: Vec<Episode> = on!(self, |c| {
                let mut query = sqlx::query(&sql);
                for identifier in chunk {
                    query = query.bind(identifier.system.as_str()).bind(identifier.value.as_str());
                }
                query.fetch_all(&mut **c).await?.iter().map(rows::episode).collect::<Result<_, _>>()?
            });
            for episode in found {
                if !episodes.iter().any(|known| known.id == episode.id) {
                    episodes.push(episode);
                }
            }
        }
        episodes.sort_by_key(|episode| (episode.opened_at, episode.id));
        Ok(episodes.into_iter().map(|episode| self.deferred.touched(episode)).collect())
    }

    /// The open episodes of the subject with this key, oldest first (usually none or one). Closed episodes
    /// never match: a new crisis after closure is a new episode. On PostgreSQL this first locks the key.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable episode row.
    pub async fn find_open_episode_by_subject(&mut self, key: &SubjectKey) -> Result<Vec<Episode>, StoreError> {
        if let Some(holders) = self.ahead.as_ref().and_then(|ahead| ahead.holding(key)).map(<[EpisodeId]>::to_vec) {
            let mut episodes = Vec::with_capacity(holders.len());
            for holder in holders {
                episodes.extend(self.episode(holder).await?.filter(|episode| episode.state == EpisodeState::Open));
            }
            episodes.sort_by_key(|episode| (episode.opened_at, episode.id));
            return Ok(episodes);
        }
        self.flush_structure().await?;
        self.lock_keys(vec![lock_key(&[b"subject", key.as_bytes()])]).await?;
        let sql = format!(
            "SELECT {} FROM episodes WHERE state = 'open' AND id IN \
             (SELECT episode_id FROM subject_keys WHERE subject_key = $1)",
            rows::EPISODE_COLUMNS
        );
        let bytes = key.as_bytes().to_vec();
        let mut episodes: Vec<Episode> = on!(self, |c| sqlx::query(&sql)
            .bind(bytes)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(rows::episode)
            .collect::<Result<_, _>>()?);
        episodes.sort_by_key(|episode| (episode.opened_at, episode.id));
        Ok(episodes.into_iter().map(|episode| self.deferred.touched(episode)).collect())
    }

    /// Opens an episode: stores it, its own id as a ref (`urn:concordat:episode`), and its originator as a
    /// member in the `originator` relation. Audited as `episode_opened`.
    ///
    /// # Errors
    /// [`Conflict::EpisodeExists`] when the id is taken.
    pub async fn open_episode(&mut self, new: &NewEpisode) -> Result<Episode, StoreError> {
        self.open_episode_with(new, &[], &[]).await
    }

    /// Opens an episode as [`Self::open_episode`] does, with more refs and memberships written in the same
    /// statements as its own ref and its originator's membership (three statements in all).
    ///
    /// # Errors
    /// [`Conflict::EpisodeExists`] when the id is taken; [`Conflict::RefHeldByOtherEpisode`] when one of
    /// `refs` belongs to another episode.
    pub async fn open_episode_with(
        &mut self,
        new: &NewEpisode,
        refs: &[Identifier],
        members: &[(AgencyId, Relation)],
    ) -> Result<Episode, StoreError> {
        let opened_at = micros(new.opened_at);
        let due = new.feedback_due_at.map(micros);
        let episode = Episode {
            id: new.id,
            state: EpisodeState::Open,
            originator: new.originator.clone(),
            opened_by: new.opened_by,
            opened_at,
            last_event_at: opened_at,
            closed_at: None,
            close_reason: None,
            feedback_due_at: due,
            feedback_delivered_at: None,
        };
        let own_ref = Identifier {
            system: concordat_episode::NonEmptyString::new(EPISODE_SYSTEM)
                .map_err(|_| StoreError::Corrupt { table: "episode_refs", column: "system" })?,
            value: concordat_episode::NonEmptyString::new(new.id.to_string())
                .map_err(|_| StoreError::Corrupt { table: "episode_refs", column: "value" })?,
        };
        let all_refs: Vec<Identifier> = std::iter::once(own_ref).chain(refs.iter().cloned()).collect();
        let all_members: Vec<(AgencyId, Relation)> =
            std::iter::once((new.originator.clone(), Relation::Originator)).chain(members.iter().cloned()).collect();
        let opened = AuditRecord::EpisodeOpened {
            episode_id: new.id,
            originator: new.originator.clone(),
            event_id: new.opened_by,
        };
        // Reading ahead, when every ref is known: the conflicts are known now and the rows wait for the
        // flush. The episode's own ref is as new as its id (the flush finds out if the id was taken).
        let pairs = first_of_each(all_refs.iter().map(|r| (r.system.as_str(), r.value.as_str())));
        let checked = match &self.ahead {
            Some(ahead) if ahead.episode(new.id).is_some() => {
                return Err(StoreError::Conflict(Conflict::EpisodeExists(new.id)));
            }
            Some(ahead) => ahead.refs_for(new.id, &pairs[1..]),
            None => None,
        };
        if let Some(checked) = checked {
            checked?;
            let unique_members = first_of_each(all_members);
            self.audit.push((opened_at, opened));
            for (agency, relation) in &unique_members {
                self.deferred.members.push((new.id.0, agency.clone(), *relation, opened_at));
            }
            self.audit_members(new.id, &unique_members, opened_at);
            for (system, value) in &pairs {
                self.deferred.refs.push(((*system).to_owned(), (*value).to_owned(), new.id.0, opened_at));
            }
            self.deferred.episodes.push(episode.clone());
            if let Some(ahead) = &mut self.ahead {
                ahead.opened(episode.clone(), &pairs, &unique_members);
            }
            return Ok(episode);
        }
        self.flush_structure().await?;
        let sql = "INSERT INTO episodes (id, state, originator, opened_by_event, opened_at, last_event_at, \
                   feedback_due_at) VALUES ($1, 'open', $2, $3, $4, $4, $5) ON CONFLICT DO NOTHING";
        on!(self, |c| sqlx::query(sql)
            .bind(new.id.0)
            .bind(new.originator.as_str())
            .bind(new.opened_by.0)
            .bind(opened_at)
            .bind(due)
            .execute(&mut **c)
            .await
            .map(|done| done.rows_affected()))
        .map_err(StoreError::from)
        .and_then(
            |inserted| if inserted == 1 { Ok(()) } else { Err(StoreError::Conflict(Conflict::EpisodeExists(new.id))) },
        )?;
        self.audit.push((opened_at, opened));
        self.add_refs(new.id, &all_refs, opened_at).await?;
        self.add_members(new.id, &all_members, opened_at).await?;
        if let Some(ahead) = &mut self.ahead {
            let refs = first_of_each(all_refs.iter().map(|r| (r.system.as_str(), r.value.as_str())));
            ahead.opened(episode.clone(), &refs, &first_of_each(all_members));
        }
        Ok(episode)
    }

    /// Points refs at an episode. A ref it already holds is left alone; returns how many were new. One
    /// statement per `ROWS_PER_STATEMENT` refs, and one more to find the owners when some were held.
    ///
    /// # Errors
    /// [`Conflict::RefHeldByOtherEpisode`] naming the first ref, in the order given, that belongs to
    /// another episode (other refs may have been added: roll back, or resolve and go on).
    pub async fn add_refs(
        &mut self,
        episode: EpisodeId,
        refs: &[Identifier],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let at = micros(at);
        let unique =
            first_of_each(refs.iter().map(|identifier| (identifier.system.as_str(), identifier.value.as_str())));
        if let Some(checked) = self.ahead.as_ref().and_then(|ahead| ahead.refs_for(episode, &unique)) {
            let new = checked?;
            for (system, value) in &new {
                self.deferred.refs.push((system.clone(), value.clone(), episode.0, at));
            }
            if let Some(ahead) = &mut self.ahead {
                ahead.refs_added(episode, &new, at);
            }
            return Ok(new.len() as u64);
        }
        self.flush_structure().await?;
        let mut added = 0;
        for chunk in unique.chunks(ROWS_PER_STATEMENT) {
            let (columns, returning) = ("system, value, episode_id, added_at", "RETURNING system, value");
            let sql = insert(self.backend(), "episode_refs", columns, chunk.len(), "(system, value)", returning);
            let inserted: Vec<(String, String)> = on!(self, |c| {
                let mut query = sqlx::query(&sql);
                for (system, value) in chunk {
                    query = query.bind(*system).bind(*value).bind(episode.0).bind(at);
                }
                query
                    .fetch_all(&mut **c)
                    .await?
                    .iter()
                    .map(|row| Ok((row.text("system")?, row.text("value")?)))
                    .collect::<Result<_, StoreError>>()?
            });
            added += inserted.len() as u64;
            if let Some(ahead) = &mut self.ahead {
                ahead.refs_added(episode, &inserted, at);
            }
            let held: Vec<(&str, &str)> = chunk
                .iter()
                .filter(|(system, value)| !inserted.iter().any(|(s, v)| s == system && v == value))
                .copied()
                .collect();
            if held.is_empty() {
                continue;
            }
            let owners = self.ref_owners(&held).await?;
            for (system, value) in held {
                let owner = owners.iter().find(|(s, v, _)| s == system && v == value).map(|(_, _, owner)| *owner);
                match owner {
                    Some(owner) if owner == episode.0 => {}
                    Some(owner) => {
                        return Err(StoreError::Conflict(Conflict::RefHeldByOtherEpisode {
                            system: system.to_owned(),
                            held_by: EpisodeId(owner),
                        }));
                    }
                    // Refused by the insert yet not there: only a purge racing this transaction does that.
                    None => return Err(StoreError::Corrupt { table: "episode_refs", column: "episode_id" }),
                }
            }
        }
        Ok(added)
    }

    /// The episodes that own these refs, in one statement: system, value and owner for each ref that has
    /// one (at most `ROWS_PER_STATEMENT` refs).
    pub(crate) async fn ref_owners(
        &mut self,
        refs: &[(&str, &str)],
    ) -> Result<Vec<(String, String, Uuid)>, StoreError> {
        let matches: Vec<String> = (0..refs.len())
            .map(|index| format!("(system = ${} AND value = ${})", 2 * index + 1, 2 * index + 2))
            .collect();
        let sql = format!("SELECT system, value, episode_id FROM episode_refs WHERE {}", matches.join(" OR "));
        Ok(on!(self, |c| {
            let mut query = sqlx::query(&sql);
            for (system, value) in refs {
                query = query.bind(*system).bind(*value);
            }
            query
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|row| Ok((row.text("system")?, row.text("value")?, row.uuid("episode_id")?)))
                .collect::<Result<_, StoreError>>()?
        }))
    }

    /// Whether `agency` has a right to `episode`, so that an event it sends may join the episode by stating
    /// the episode's id or one of its refs: it takes part in the episode (any relation), it was sent
    /// something from it (a permitting decision for it there, in this transaction or before), or the
    /// event's person is the episode's (`key`, the subject key of the event's NHS number, is held by it).
    /// Episode ids and refs are not secrets, so knowing one gives no right.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn may_join(
        &mut self,
        episode: EpisodeId,
        agency: &AgencyId,
        key: Option<&SubjectKey>,
    ) -> Result<bool, StoreError> {
        let (members, _) = self.members_and_refs(episode).await?;
        if members.iter().any(|member| &member.agency == agency) {
            return Ok(true);
        }
        let sent_here = |decision: &Decision| {
            decision.episode_id == Some(episode) && &decision.recipient == agency && decision.verdict == Verdict::Permit
        };
        if self.deferred.decisions.iter().any(sent_here) {
            return Ok(true);
        }
        if let Some(key) = key {
            let known =
                self.ahead.as_ref().and_then(|ahead| ahead.holding(key)).map(|holders| holders.contains(&episode));
            let deferred = self.deferred.keys.iter().any(|(id, bytes, _)| *id == episode.0 && bytes == key.as_bytes());
            match known {
                Some(true) => return Ok(true),
                _ if deferred => return Ok(true),
                Some(false) => {}
                None => {
                    let sql = "SELECT 1 AS held FROM subject_keys WHERE episode_id = $1 AND subject_key = $2";
                    let bytes = key.as_bytes().to_vec();
                    let held = on!(self, |c| sqlx::query(sql)
                        .bind(episode.0)
                        .bind(bytes)
                        .fetch_optional(&mut **c)
                        .await?
                        .is_some());
                    if held {
                        return Ok(true);
                    }
                }
            }
        }
        let sql = "SELECT 1 AS sent FROM decisions WHERE episode_id = $1 AND recipient = $2 AND verdict = 'permit' \
                   LIMIT 1";
        let sent = on!(self, |c| sqlx::query(sql)
            .bind(episode.0)
            .bind(agency.as_str())
            .fetch_optional(&mut **c)
            .await?
            .is_some());
        Ok(sent)
    }

    /// The episode's members (as [`Self::members`] gives them) and its refs (as [`Self::episode_refs`]
    /// gives them), read in one statement.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn members_and_refs(&mut self, episode: EpisodeId) -> Result<(Vec<Member>, Vec<Identifier>), StoreError> {
        if let Some(known) = self.ahead.as_ref().and_then(|ahead| ahead.members_and_refs(episode)) {
            return known;
        }
        self.flush_structure().await?;
        let sql = "SELECT 'member' AS part, agency AS a, relation AS b, first_seen_at AS at FROM episode_members \
                   WHERE episode_id = $1 UNION ALL \
                   SELECT 'ref' AS part, system AS a, value AS b, added_at AS at FROM episode_refs WHERE episode_id = $1";
        let found: Vec<(String, String, String, DateTime<Utc>)> = on!(self, |c| sqlx::query(sql)
            .bind(episode.0)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(|row| Ok((row.text("part")?, row.text("a")?, row.text("b")?, row.time("at")?)))
            .collect::<Result<_, StoreError>>()?);
        let mut memberships = Vec::new();
        let mut refs = Vec::new();
        for (part, a, b, at) in found {
            if part == "member" {
                let agency =
                    AgencyId::new(a).map_err(|_| StoreError::Corrupt { table: "episode_members", column: "agency" })?;
                let relation =
                    Relation::parse(&b).ok_or(StoreError::Corrupt { table: "episode_members", column: "relation" })?;
                memberships.push((agency, relation, at));
            } else {
                refs.push((at, a, b));
            }
        }
        memberships.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
        refs.sort();
        let refs = refs.into_iter().map(|(_, system, value)| identifier(system, value)).collect::<Result<_, _>>()?;
        Ok((group_members(memberships), refs))
    }

    /// Every correlating identifier of an episode, its own id among them, in the order added.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn episode_refs(&mut self, episode: EpisodeId) -> Result<Vec<Identifier>, StoreError> {
        self.flush_structure().await?;
        let sql = "SELECT system, value FROM episode_refs WHERE episode_id = $1 ORDER BY added_at, system, value";
        let rows: Vec<(String, String)> = on!(self, |c| sqlx::query(sql)
            .bind(episode.0)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(|row| Ok((row.text("system")?, row.text("value")?)))
            .collect::<Result<_, StoreError>>()?);
        rows.into_iter().map(|(system, value)| identifier(system, value)).collect()
    }

    /// Stores the subject key of the episode's person, so that later events with the same NHS number
    /// correlate while the episode is open. Idempotent.
    ///
    /// # Errors
    /// [`StoreError::Database`] (a foreign-key error when the episode does not exist).
    pub async fn add_subject_key(
        &mut self,
        episode: EpisodeId,
        key: &SubjectKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(ahead) = &mut self.ahead {
            if !ahead.holds_key(episode, key)
                && !self.deferred.keys.iter().any(|(id, bytes, _)| *id == episode.0 && bytes == key.as_bytes())
            {
                self.deferred.keys.push((episode.0, *key.as_bytes(), micros(at)));
                ahead.key_added(episode, key);
            }
            return Ok(());
        }
        let sql = "INSERT INTO subject_keys (episode_id, subject_key, added_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (episode_id, subject_key) DO NOTHING";
        let (bytes, at) = (key.as_bytes().to_vec(), micros(at));
        on!(self, |c| sqlx::query(sql).bind(episode.0).bind(bytes).bind(at).execute(&mut **c).await?.rows_affected());
        if let Some(ahead) = &mut self.ahead {
            ahead.key_added(episode, key);
        }
        Ok(())
    }

    /// Adds an agency to an episode in a relation; returns false when it already held it. A new membership
    /// is audited as `member_added`.
    ///
    /// # Errors
    /// [`StoreError::Database`] (a foreign-key error when the episode does not exist).
    pub async fn add_member(
        &mut self,
        episode: EpisodeId,
        agency: &AgencyId,
        relation: Relation,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.add_members(episode, &[(agency.clone(), relation)], at).await? == 1)
    }

    /// Adds agencies to an episode, each in a relation, in one statement; returns how many memberships were
    /// new. Each new one is audited as `member_added`, in the order given; one already held, or given
    /// twice, is left alone.
    ///
    /// # Errors
    /// [`StoreError::Database`] (a foreign-key error when the episode does not exist).
    pub async fn add_members(
        &mut self,
        episode: EpisodeId,
        members: &[(AgencyId, Relation)],
        at: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let at = micros(at);
        if let Some(new) = self.ahead.as_ref().and_then(|ahead| ahead.new_members(episode, members)) {
            for (agency, relation) in &new {
                self.deferred.members.push((episode.0, agency.clone(), *relation, at));
            }
            self.audit_members(episode, &new, at);
            if let Some(ahead) = &mut self.ahead {
                ahead.members_added(episode, &new, at);
            }
            return Ok(new.len());
        }
        self.flush_structure().await?;
        let unique = first_of_each(members);
        let mut added = 0;
        for chunk in unique.chunks(ROWS_PER_STATEMENT) {
            let columns = "episode_id, agency, relation, first_seen_at";
            let conflict = "(episode_id, agency, relation)";
            let sql =
                insert(self.backend(), "episode_members", columns, chunk.len(), conflict, "RETURNING agency, relation");
            let inserted: Vec<(String, String)> = on!(self, |c| {
                let mut query = sqlx::query(&sql);
                for (agency, relation) in chunk {
                    query = query.bind(episode.0).bind(agency.as_str()).bind(relation.as_str()).bind(at);
                }
                query
                    .fetch_all(&mut **c)
                    .await?
                    .iter()
                    .map(|row| Ok((row.text("agency")?, row.text("relation")?)))
                    .collect::<Result<_, StoreError>>()?
            });
            let new: Vec<(AgencyId, Relation)> = chunk
                .iter()
                .filter(|(agency, relation)| {
                    inserted.iter().any(|(a, r)| a == agency.as_str() && r == relation.as_str())
                })
                .map(|member| (*member).clone())
                .collect();
            if let Some(ahead) = &mut self.ahead {
                ahead.members_added(episode, &new, at);
            }
            added += new.len();
            self.audit_members(episode, &new, at);
        }
        Ok(added)
    }

    /// Audits new memberships as `member_added`, in the order given.
    fn audit_members(&mut self, episode: EpisodeId, new: &[(AgencyId, Relation)], at: DateTime<Utc>) {
        for (agency, relation) in new {
            let record = AuditRecord::MemberAdded { episode_id: episode, agency: agency.clone(), relation: *relation };
            self.audit.push((at, record));
        }
    }

    /// The episode's members, by agency id, each with all its relations.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn members(&mut self, episode: EpisodeId) -> Result<Vec<Member>, StoreError> {
        self.flush_structure().await?;
        let sql = "SELECT agency, relation, first_seen_at FROM episode_members WHERE episode_id = $1 \
                   ORDER BY agency, first_seen_at";
        let rows: Vec<(AgencyId, Relation, DateTime<Utc>)> = on!(self, |c| {
            let found = sqlx::query(sql).bind(episode.0).fetch_all(&mut **c).await?;
            let mut out = Vec::with_capacity(found.len());
            for row in &found {
                let relation = Relation::parse(&row.text("relation")?)
                    .ok_or(StoreError::Corrupt { table: "episode_members", column: "relation" })?;
                out.push((rows::agency(row, "episode_members", "agency")?, relation, row.time("first_seen_at")?));
            }
            out
        });
        Ok(group_members(rows))
    }

    /// An episode by id.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn episode(&mut self, id: EpisodeId) -> Result<Option<Episode>, StoreError> {
        if let Some(known) = self.ahead.as_ref().and_then(|ahead| ahead.episode(id)) {
            return Ok(Some(self.deferred.touched(known.clone())));
        }
        self.flush_structure().await?;
        let sql = format!("SELECT {} FROM episodes WHERE id = $1", rows::EPISODE_COLUMNS);
        let found = on!(self, |c| match sqlx::query(&sql).bind(id.0).fetch_optional(&mut **c).await? {
            Some(row) => Some(rows::episode(&row)?),
            None => None,
        });
        Ok(found.map(|episode| self.deferred.touched(episode)))
    }

    /// Records a canonical event in an episode: its metadata, and its JSON as a purgeable payload. Moves the
    /// episode's `last_event_at` forward to the event's `received_at`. Audited as `event_recorded`.
    /// Memberships are the router's to add: the store does not derive relations.
    ///
    /// The rows are written by [`Self::flush`] (which [`Self::commit`] runs); an episode read in this
    /// transaction already shows the new `last_event_at`.
    ///
    /// # Errors
    /// [`Conflict::EventRecorded`] when this transaction already recorded the event; when an earlier one
    /// did, [`Self::flush`] or [`Self::commit`] says so.
    pub async fn record_event(&mut self, episode: EpisodeId, event: &CrisisEvent) -> Result<(), StoreError> {
        let id = event.event_id;
        if self.deferred.events.iter().any(|row| row.event_id == id) {
            return Err(StoreError::Conflict(Conflict::EventRecorded(id)));
        }
        let received_at = micros(event.provenance.received_at.to_utc());
        let digest = event.provenance.payload_sha256.clone();
        // Serializing the canonical types cannot fail (they hold only strings, numbers and maps with string
        // keys); the error arm keeps this total.
        let body = serde_json::to_string(event)
            .map_err(|_| StoreError::Corrupt { table: "event_payloads", column: "body" })?;
        self.deferred.events.push(EventRow {
            event_id: id,
            episode,
            kind: event.kind.as_str(),
            source: event.source.agency.to_string(),
            occurred_at: micros(event.occurred_at.to_utc()),
            received_at,
            digest: digest.clone(),
            body,
        });
        match self.deferred.touches.iter_mut().find(|(touched, _)| *touched == episode.0) {
            Some((_, at)) => *at = (*at).max(received_at),
            None => self.deferred.touches.push((episode.0, received_at)),
        }
        self.audit.push((
            received_at,
            AuditRecord::EventRecorded {
                event_id: id,
                episode_id: episode,
                event_kind: event.kind,
                source: event.source.agency.clone(),
                payload_sha256: digest,
            },
        ));
        Ok(())
    }

    /// Keeps an event that belongs to no episode yet (a crisis plan, a risk flag, a VCS contact before any
    /// crisis) under its subject's key, so that an episode opened later for the same person can offer it as
    /// pre-crisis context. Idempotent. Audited as `event_held`.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn hold_unattached(&mut self, key: &SubjectKey, event: &CrisisEvent) -> Result<(), StoreError> {
        let sql = "INSERT INTO unattached_events (event_id, subject_key, kind, source_agency, received_at, body) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING";
        let received_at = micros(event.provenance.received_at.to_utc());
        let body = serde_json::to_string(event)
            .map_err(|_| StoreError::Corrupt { table: "unattached_events", column: "body" })?;
        let inserted = on!(self, |c| sqlx::query(sql)
            .bind(event.event_id.0)
            .bind(key.as_bytes().to_vec())
            .bind(event.kind.as_str())
            .bind(event.source.agency.as_str())
            .bind(received_at)
            .bind(body.as_str())
            .execute(&mut **c)
            .await?
            .rows_affected());
        if inserted == 1 {
            if let Some(ahead) = &mut self.ahead {
                ahead.held(key, received_at, event.event_id.0, &body);
            }
            self.audit.push((
                received_at,
                AuditRecord::EventHeld {
                    event_id: event.event_id,
                    event_kind: event.kind,
                    source: event.source.agency.clone(),
                    payload_sha256: event.provenance.payload_sha256.clone(),
                },
            ));
        }
        Ok(())
    }

    /// The unattached events held for a subject, oldest first (those not yet purged).
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] when a stored body is not a canonical event.
    pub async fn unattached_for_subject(&mut self, key: &SubjectKey) -> Result<Vec<CrisisEvent>, StoreError> {
        if let Some(held) = self.ahead.as_ref().and_then(|ahead| ahead.unattached(key)) {
            return held;
        }
        let sql = "SELECT body FROM unattached_events WHERE subject_key = $1 ORDER BY received_at, event_id";
        let bodies: Vec<String> = on!(self, |c| sqlx::query(sql)
            .bind(key.as_bytes().to_vec())
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(|row| row.text("body"))
            .collect::<Result<_, sqlx::Error>>()?);
        bodies
            .iter()
            .map(|body| {
                serde_json::from_str(body)
                    .map_err(|_| StoreError::Corrupt { table: "unattached_events", column: "body" })
            })
            .collect()
    }

    /// A recorded event's metadata.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn event_meta(&mut self, event_id: EventId) -> Result<Option<EventMeta>, StoreError> {
        self.flush().await?;
        let sql = format!(
            "SELECT {} FROM events e LEFT JOIN event_payloads p ON p.event_id = e.event_id WHERE e.event_id = $1",
            rows::EVENT_COLUMNS
        );
        on!(self, |c| match sqlx::query(&sql).bind(event_id.0).fetch_optional(&mut **c).await? {
            Some(row) => rows::event_meta(&row).map(Some),
            None => Ok(None),
        })
    }

    /// A recorded event itself; `None` when it is unknown or its payload was purged.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] when the stored JSON is not a canonical event.
    pub async fn event(&mut self, event_id: EventId) -> Result<Option<CrisisEvent>, StoreError> {
        self.flush().await?;
        let sql = "SELECT body FROM event_payloads WHERE event_id = $1";
        let body = on!(self, |c| match sqlx::query(sql).bind(event_id.0).fetch_optional(&mut **c).await? {
            Some(row) => Some(row.text("body")?),
            None => None,
        });
        body.map(|text| {
            serde_json::from_str(&text).map_err(|_| StoreError::Corrupt { table: "event_payloads", column: "body" })
        })
        .transpose()
    }

    /// The episode's events in the order received.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn episode_events(&mut self, episode: EpisodeId) -> Result<Vec<EventMeta>, StoreError> {
        self.flush().await?;
        let sql = format!(
            "SELECT {} FROM events e LEFT JOIN event_payloads p ON p.event_id = e.event_id WHERE e.episode_id = $1 \
             ORDER BY e.received_at, e.event_id",
            rows::EVENT_COLUMNS
        );
        on!(self, |c| sqlx::query(&sql)
            .bind(episode.0)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(rows::event_meta)
            .collect())
    }

    /// Stores a sharing decision. Audited as `decision` with everything but the time.
    ///
    /// # Errors
    /// [`Conflict::DecisionExists`] when the event already has a decision for this recipient.
    pub async fn insert_decision(&mut self, decision: &Decision) -> Result<(), StoreError> {
        self.insert_decisions(std::slice::from_ref(decision)).await
    }

    /// Stores sharing decisions, each audited as [`Self::insert_decision`] audits it. They are written by
    /// [`Self::flush`] in one statement per `ROWS_PER_STATEMENT`.
    ///
    /// # Errors
    /// [`Conflict::DecisionExists`] when this transaction already holds a decision about the same event
    /// for the same recipient (nothing of this call is kept); a decision stored by an earlier transaction
    /// is refused by [`Self::flush`] or [`Self::commit`].
    pub async fn insert_decisions(&mut self, decisions: &[Decision]) -> Result<(), StoreError> {
        for (index, decision) in decisions.iter().enumerate() {
            let same = |other: &Decision| {
                other.decision_id == decision.decision_id
                    || (other.event_id == decision.event_id && other.recipient == decision.recipient)
            };
            if self.deferred.decisions.iter().chain(&decisions[..index]).any(same) {
                let recipient = decision.recipient.to_string();
                return Err(StoreError::Conflict(Conflict::DecisionExists { event_id: decision.event_id, recipient }));
            }
        }
        for decision in decisions {
            self.audit.push((
                micros(decision.decided_at),
                AuditRecord::Decision {
                    decision_id: decision.decision_id,
                    event_id: decision.event_id,
                    episode_id: decision.episode_id,
                    recipient: decision.recipient.clone(),
                    verdict: decision.verdict,
                    reason: decision.reason.clone(),
                    agreement_ids: decision.agreement_ids.clone(),
                    purposes: decision.purposes.clone(),
                    lawful_bases: decision.lawful_bases.clone(),
                    fields_shared: decision.fields_shared.clone(),
                    fields_withheld: decision.fields_withheld.clone(),
                    policy_version: decision.policy_version.clone(),
                },
            ));
        }
        self.deferred.decisions.extend_from_slice(decisions);
        Ok(())
    }

    /// The decisions about an event, by recipient.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn decisions(&mut self, event_id: EventId) -> Result<Vec<Decision>, StoreError> {
        self.flush().await?;
        let sql = format!("SELECT {} FROM decisions WHERE event_id = $1 ORDER BY recipient", rows::DECISION_COLUMNS);
        on!(self, |c| sqlx::query(&sql)
            .bind(event_id.0)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(rows::decision)
            .collect())
    }

    /// Puts a rendered delivery in the outbox as pending. Audited as `delivery_enqueued` with the body's
    /// SHA-256, not the body.
    ///
    /// # Errors
    /// [`Conflict::DeliveryExists`] when the message id is already in the outbox.
    pub async fn enqueue(&mut self, delivery: &NewDelivery) -> Result<(), StoreError> {
        self.enqueue_all(std::slice::from_ref(delivery)).await
    }

    /// Puts rendered deliveries in the outbox, in order, each audited as [`Self::enqueue`] audits it. They
    /// are written by [`Self::flush`] in one statement per `ROWS_PER_STATEMENT`.
    ///
    /// # Errors
    /// [`Conflict::DeliveryExists`] when this transaction already holds a delivery with the same message
    /// id (nothing of this call is kept); one stored by an earlier transaction is refused by
    /// [`Self::flush`] or [`Self::commit`].
    pub async fn enqueue_all(&mut self, deliveries: &[NewDelivery]) -> Result<(), StoreError> {
        for (index, delivery) in deliveries.iter().enumerate() {
            let same = |other: &NewDelivery| other.delivery_id == delivery.delivery_id;
            let held = self.deferred.deliveries.iter().map(|(held, _)| held);
            if held.chain(&deliveries[..index]).any(same) {
                return Err(StoreError::Conflict(Conflict::DeliveryExists(delivery.delivery_id)));
            }
        }
        for delivery in deliveries {
            let digest = Sha256Hex::digest(&delivery.body);
            self.audit.push((
                micros(delivery.created_at),
                AuditRecord::DeliveryEnqueued {
                    delivery_id: delivery.delivery_id,
                    event_id: delivery.event_id,
                    decision_id: delivery.decision_id,
                    recipient: delivery.recipient.clone(),
                    exchange: delivery.exchange.clone(),
                    routing_key: delivery.routing_key.clone(),
                    body_sha256: digest.clone(),
                },
            ));
            self.deferred.deliveries.push((delivery.clone(), digest));
        }
        Ok(())
    }

    /// Queues an audit record of the router's own (the store already audits what it writes: episodes,
    /// members, events, decisions, deliveries). It is appended to the chain at commit.
    pub fn append_audit(&mut self, at: DateTime<Utc>, record: AuditRecord) {
        self.audit.push((micros(at), record));
    }

    /// How many audit records this transaction will append at commit, so far.
    pub fn audit_pending(&self) -> usize {
        self.audit.len()
    }

    /// Closes an open episode; returns false when it was already closed. Audited as `episode_closed`.
    ///
    /// # Errors
    /// [`Missing::Episode`] when there is no such episode.
    pub async fn close_episode(
        &mut self,
        id: EpisodeId,
        reason: CloseReason,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.flush_structure().await?;
        let sql = "UPDATE episodes SET state = 'closed', closed_at = $2, close_reason = $3 \
                   WHERE id = $1 AND state = 'open'";
        let at = micros(at);
        let closed = on!(self, |c| sqlx::query(sql)
            .bind(id.0)
            .bind(at)
            .bind(reason.as_str())
            .execute(&mut **c)
            .await?
            .rows_affected())
            == 1;
        if closed {
            if let Some(ahead) = &mut self.ahead {
                ahead.closed(id, reason, at);
            }
            self.audit.push((at, AuditRecord::EpisodeClosed { episode_id: id, reason }));
        } else if self.episode(id).await?.is_none() {
            return Err(StoreError::NotFound(Missing::Episode(id)));
        }
        Ok(closed)
    }

    /// Sets or clears the time by which the originator should have outcome feedback.
    ///
    /// # Errors
    /// [`Missing::Episode`] when there is no such episode.
    pub async fn set_feedback_due(&mut self, id: EpisodeId, due: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        self.flush_structure().await?;
        let sql = "UPDATE episodes SET feedback_due_at = $2 WHERE id = $1";
        let due = due.map(micros);
        let updated = on!(self, |c| sqlx::query(sql).bind(id.0).bind(due).execute(&mut **c).await?.rows_affected());
        if updated == 0 {
            return Err(StoreError::NotFound(Missing::Episode(id)));
        }
        if let Some(ahead) = &mut self.ahead {
            ahead.update(id, |episode| episode.feedback_due_at = due);
        }
        Ok(())
    }

    /// Notes that outcome feedback (`feedback_event`, a `feedback.outcome`) went to the originator. Only the
    /// first time counts: returns false, and audits nothing, when it was already noted.
    ///
    /// # Errors
    /// [`Missing::Episode`] when there is no such episode.
    pub async fn mark_feedback_delivered(
        &mut self,
        id: EpisodeId,
        feedback_event: EventId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.flush_structure().await?;
        let sql = "UPDATE episodes SET feedback_delivered_at = $2 WHERE id = $1 AND feedback_delivered_at IS NULL \
                   RETURNING originator";
        let at = micros(at);
        let originator = on!(self, |c| match sqlx::query(sql).bind(id.0).bind(at).fetch_optional(&mut **c).await? {
            Some(row) => Some(rows::agency(&row, "episodes", "originator")?),
            None => None,
        });
        let Some(originator) = originator else {
            self.episode(id).await?.ok_or(StoreError::NotFound(Missing::Episode(id)))?;
            return Ok(false);
        };
        if let Some(ahead) = &mut self.ahead {
            ahead.update(id, |episode| episode.feedback_delivered_at = Some(at));
        }
        self.audit.push((at, AuditRecord::FeedbackDelivered { episode_id: id, originator, event_id: feedback_event }));
        Ok(true)
    }

    /// Writes the deferred rows ([`Self::flush`]), appends the buffered audit records to the chain, then
    /// commits everything.
    ///
    /// # Errors
    /// A conflict from [`Self::flush`], or [`StoreError::Database`]; nothing was written.
    pub async fn commit(mut self) -> Result<Committed, StoreError> {
        self.flush().await?;
        let committed = self.flush_audit().await?;
        match self.conn {
            Conn::Sqlite(c) => c.commit().await?,
            Conn::Postgres(c) => c.commit().await?,
        }
        Ok(committed)
    }

    /// Rolls back explicitly (dropping the `Tx` does the same).
    ///
    /// # Errors
    /// [`StoreError::Database`] when the rollback itself failed; the database discards the transaction anyway.
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self.conn {
            Conn::Sqlite(c) => c.rollback().await?,
            Conn::Postgres(c) => c.rollback().await?,
        }
        Ok(())
    }

    /// Appends the buffered records. Moving the chain head first takes its row lock, which serializes
    /// appends across transactions on PostgreSQL until this one commits, so two transactions can never
    /// link to the same predecessor; SQLite runs one writer at a time anyway.
    async fn flush_audit(&mut self) -> Result<Committed, StoreError> {
        let records = std::mem::take(&mut self.audit);
        let Ok(n) = i64::try_from(records.len()) else {
            return Err(StoreError::Corrupt { table: "audit_head", column: "seq" });
        };
        if n == 0 {
            return Ok(Committed { first_audit_seq: None, audit_records: 0 });
        }
        let advance = "UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash";
        let (last_seq, mut prev_hash) = on!(self, |c| {
            let row = sqlx::query(advance).bind(n).fetch_one(&mut **c).await?;
            (row.int("seq")?, row.text("hash")?)
        });
        let first =
            u64::try_from(last_seq - n + 1).map_err(|_| StoreError::Corrupt { table: "audit_head", column: "seq" })?;
        let mut links = Vec::with_capacity(records.len());
        for (offset, (at, record)) in (0_u64..).zip(records) {
            let seq = first + offset;
            let json = record.canonical_json();
            let hash = link_hash(&prev_hash, seq, at, &json);
            let seq = i64::try_from(seq).map_err(|_| StoreError::Corrupt { table: "audit_log", column: "seq" })?;
            links.push((seq, at, record.kind(), json, std::mem::replace(&mut prev_hash, hash.clone()), hash));
        }
        // The links and the new head go in one call to SQLite.
        let backend = self.backend();
        let mut statements = Vec::new();
        for chunk in links.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO audit_log (seq, at, kind, record, prev_hash, hash) VALUES {}",
                placeholders(backend, 6, chunk.len())
            );
            let mut args = Vec::with_capacity(chunk.len() * 6);
            for (seq, at, kind, json, prev, hash) in chunk {
                args.extend([
                    Arg::Int(*seq),
                    Arg::Time(*at),
                    Arg::Str(kind),
                    Arg::Str(json.as_str()),
                    Arg::Str(prev.as_str()),
                    Arg::Str(hash.as_str()),
                ]);
            }
            statements.push(Statement { sql, args });
        }
        let head = format!("UPDATE audit_head SET hash = {} WHERE id = 1", list(backend, 1, 1));
        statements.push(Statement { sql: head, args: vec![Arg::Str(prev_hash.as_str())] });
        self.run_all(&statements, |_| Ok(())).await?;
        Ok(Committed { first_audit_seq: Some(first), audit_records: records_len(n) })
    }

    // ----- Used by `Store` for work outside the router's transaction. -----

    pub(crate) async fn pending_outbox(
        &mut self,
        limit: u32,
        created_before: Option<DateTime<Utc>>,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        self.flush().await?;
        let cutoff = if created_before.is_some() { "AND created_at < $2" } else { "" };
        let sql = format!(
            "SELECT {} FROM outbox WHERE status = 'pending' {cutoff} ORDER BY position LIMIT $1",
            rows::PENDING_COLUMNS
        );
        on!(self, |c| {
            let query = sqlx::query(&sql).bind(i64::from(limit));
            let query = match created_before {
                Some(cutoff) => query.bind(micros(cutoff)),
                None => query,
            };
            query.fetch_all(&mut **c).await?.iter().map(rows::pending_delivery).collect()
        })
    }

    pub(crate) async fn event_deliveries(&mut self, event_id: EventId) -> Result<Vec<DeliveryMeta>, StoreError> {
        self.flush().await?;
        let sql = format!("SELECT {} FROM outbox WHERE event_id = $1 ORDER BY position", rows::DELIVERY_META_COLUMNS);
        on!(self, |c| sqlx::query(&sql)
            .bind(event_id.0)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(rows::delivery_meta)
            .collect())
    }

    pub(crate) async fn dead_deliveries(&mut self, limit: u32) -> Result<Vec<DeliveryMeta>, StoreError> {
        self.flush().await?;
        let sql = format!(
            "SELECT {} FROM outbox WHERE status = 'dead' ORDER BY position LIMIT $1",
            rows::DELIVERY_META_COLUMNS
        );
        on!(self, |c| sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(rows::delivery_meta)
            .collect())
    }

    pub(crate) async fn execute_counting(&mut self, sql: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        self.flush().await?;
        // A statement of any shape may change what was read ahead.
        self.ahead = None;
        let at = micros(at);
        Ok(on!(self, |c| sqlx::query(sql).bind(at).execute(&mut **c).await?.rows_affected()))
    }

    pub(crate) async fn quiet_episode_ids(&mut self, quiet_since: DateTime<Utc>) -> Result<Vec<EpisodeId>, StoreError> {
        self.flush().await?;
        let sql = "SELECT id FROM episodes WHERE state = 'open' AND last_event_at < $1 ORDER BY last_event_at, id";
        let since = micros(quiet_since);
        on!(self, |c| sqlx::query(sql)
            .bind(since)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(|row| Ok(EpisodeId(row.uuid("id")?)))
            .collect())
    }

    pub(crate) async fn episodes_where(
        &mut self,
        condition: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Episode>, StoreError> {
        self.flush().await?;
        let sql = format!("SELECT {} FROM episodes WHERE {condition} ORDER BY opened_at, id", rows::EPISODE_COLUMNS);
        let at = micros(at);
        on!(self, |c| sqlx::query(&sql).bind(at).fetch_all(&mut **c).await?.iter().map(rows::episode).collect())
    }

    /// Marks deliveries that RabbitMQ confirmed at `at` as sent when this transaction flushes, in the
    /// flush's one call, each audited as `delivery_sent` (as [`crate::Store::mark_sent`] does, in a
    /// transaction of its own): the relay's marks ride on the router's next commit. Ids that are not
    /// pending by then (already sent, dead, unknown) are skipped.
    pub fn mark_sent_at_flush(&mut self, ids: &[crate::model::DeliveryId], at: DateTime<Utc>) {
        let ids = first_of_each(ids.iter().map(|id| id.0));
        if !ids.is_empty() {
            self.deferred.sent.push((ids, micros(at)));
        }
    }

    pub(crate) async fn mark_sent(
        &mut self,
        ids: &[crate::model::DeliveryId],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.mark_sent_at_flush(ids, at);
        self.flush_marking().await
    }

    pub(crate) async fn mark_failed(
        &mut self,
        id: crate::model::DeliveryId,
        error: &str,
        max_attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<crate::model::DeliveryStatus, StoreError> {
        self.flush().await?;
        use crate::model::DeliveryStatus;
        let sql = "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                   status = CASE WHEN attempts + 1 >= $3 THEN 'dead' ELSE status END \
                   WHERE delivery_id = $1 AND status = 'pending' RETURNING status, attempts";
        let error: String = error.chars().take(500).collect();
        let updated = on!(self, |c| match sqlx::query(sql)
            .bind(id.0)
            .bind(error)
            .bind(i64::from(max_attempts))
            .fetch_optional(&mut **c)
            .await?
        {
            Some(row) => Some((row.text("status")?, row.int("attempts")?)),
            None => None,
        });
        let Some((status, attempts)) = updated else {
            let status = "SELECT status FROM outbox WHERE delivery_id = $1";
            let current = on!(self, |c| match sqlx::query(status).bind(id.0).fetch_optional(&mut **c).await? {
                Some(row) => Some(row.text("status")?),
                None => None,
            });
            let current = current.ok_or(StoreError::NotFound(Missing::Delivery(id)))?;
            return DeliveryStatus::parse(&current).ok_or(StoreError::Corrupt { table: "outbox", column: "status" });
        };
        let status = DeliveryStatus::parse(&status).ok_or(StoreError::Corrupt { table: "outbox", column: "status" })?;
        if status == DeliveryStatus::Dead {
            let attempts = rows::count(attempts, "outbox", "attempts")?;
            self.audit.push((micros(at), AuditRecord::DeliveryDead { delivery_id: id, attempts }));
        }
        Ok(status)
    }

    pub(crate) async fn mark_confirmed(
        &mut self,
        id: crate::model::DeliveryId,
        channel: &str,
        status: u16,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.flush().await?;
        let sql = "UPDATE outbox SET confirmed_at = $2 WHERE delivery_id = $1 AND confirmed_at IS NULL";
        let at = micros(at);
        let marked = on!(self, |c| sqlx::query(sql).bind(id.0).bind(at).execute(&mut **c).await?.rows_affected()) == 1;
        if marked {
            let record = AuditRecord::DeliveryConfirmed { delivery_id: id, channel: channel.to_owned(), status };
            self.audit.push((at, record));
        }
        Ok(marked)
    }

    pub(crate) async fn retry_dead(
        &mut self,
        id: crate::model::DeliveryId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.flush().await?;
        let sql = "UPDATE outbox SET status = 'pending', attempts = 0 \
                   WHERE delivery_id = $1 AND status = 'dead' AND body IS NOT NULL";
        let retried = on!(self, |c| sqlx::query(sql).bind(id.0).execute(&mut **c).await?.rows_affected()) == 1;
        if retried {
            self.audit.push((micros(at), AuditRecord::DeliveryRetried { delivery_id: id }));
        }
        Ok(retried)
    }

    pub(crate) async fn audit_head(&mut self) -> Result<(u64, String), StoreError> {
        let sql = "SELECT seq, hash FROM audit_head WHERE id = 1";
        let (seq, hash) = on!(self, |c| {
            let row = sqlx::query(sql).fetch_one(&mut **c).await?;
            (row.int("seq")?, row.text("hash")?)
        });
        let seq = u64::try_from(seq).map_err(|_| StoreError::Corrupt { table: "audit_head", column: "seq" })?;
        Ok((seq, hash))
    }

    /// Walks the chain up to the head read first, a page at a time so memory stays flat on a long chain.
    pub(crate) async fn audit_verify(&mut self) -> Result<AuditVerified, StoreError> {
        const PAGE: i64 = 1000;
        let (head_seq, head_hash) = self.audit_head().await?;
        let head = i64::try_from(head_seq).map_err(|_| StoreError::Corrupt { table: "audit_head", column: "seq" })?;
        let sql = "SELECT seq, at, kind, record, prev_hash, hash FROM audit_log WHERE seq > $1 AND seq <= $2 \
                   ORDER BY seq LIMIT $3";
        let mut check = ChainCheck::new();
        let mut after = 0_i64;
        loop {
            let page: Vec<AuditRow> = on!(self, |c| {
                let found = sqlx::query(sql).bind(after).bind(head).bind(PAGE).fetch_all(&mut **c).await?;
                let mut out = Vec::with_capacity(found.len());
                for row in &found {
                    out.push(AuditRow {
                        seq: u64::try_from(row.int("seq")?)
                            .map_err(|_| StoreError::Corrupt { table: "audit_log", column: "seq" })?,
                        at: row.time("at")?,
                        kind: row.text("kind")?,
                        record: row.text("record")?,
                        prev_hash: row.text("prev_hash")?,
                        hash: row.text("hash")?,
                    });
                }
                out
            });
            let Some(last) = page.last() else { break };
            after = i64::try_from(last.seq).unwrap_or(i64::MAX);
            for row in &page {
                check.next(row).map_err(|(seq, reason)| StoreError::AuditBroken { seq, reason })?;
            }
        }
        check.finish(head_seq, &head_hash).map_err(|(seq, reason)| StoreError::AuditBroken { seq, reason })
    }
}

fn records_len(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn identifier(system: String, value: String) -> Result<Identifier, StoreError> {
    Ok(Identifier {
        system: NonEmptyString::new(system)
            .map_err(|_| StoreError::Corrupt { table: "episode_refs", column: "system" })?,
        value: NonEmptyString::new(value)
            .map_err(|_| StoreError::Corrupt { table: "episode_refs", column: "value" })?,
    })
}

/// One [`Member`] per agency from memberships sorted by agency, then time.
pub(crate) fn group_members(rows: Vec<(AgencyId, Relation, DateTime<Utc>)>) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::new();
    for (agency, relation, seen) in rows {
        match members.last_mut() {
            Some(member) if member.agency == agency => {
                member.relations.push(relation);
                member.first_seen_at = member.first_seen_at.min(seen);
            }
            _ => members.push(Member { agency, relations: vec![relation], first_seen_at: seen }),
        }
    }
    for member in &mut members {
        member.relations.sort();
    }
    members
}
