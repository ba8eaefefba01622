//! Read-ahead for a batch of events: what the router's correlation lookups would read one event at a time,
//! read for the whole batch in a handful of statements, then kept up to date by the transaction's own
//! writes.
//!
//! [`Tx::read_ahead`] takes every ref and subject key of a batch and reads, once: which episode owns each
//! ref, which episodes hold each key, those episodes with their members and refs, and the unattached
//! events held for each key. After it, [`Tx::find_episode_by_refs`], [`Tx::find_open_episode_by_subject`],
//! [`Tx::members_and_refs`], [`Tx::episode`] and [`Tx::unattached_for_subject`] answer from memory when
//! everything they would read is known, and go to the database otherwise. The transaction's writes to
//! those tables update what is known, so an answer from memory is the answer the database would give
//! inside the transaction: the store's tests run the router's reads both ways and compare them.
//!
//! Nobody else writes these rows meanwhile: on SQLite the transaction holds the write lock from its start,
//! and on PostgreSQL the read-ahead takes the advisory locks of every ref and key first, as the lookups
//! it stands in for would.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use concordat_episode::{AgencyId, CrisisEvent, EpisodeId, EventId, Identifier};
use uuid::Uuid;

use crate::error::{Conflict, StoreError};
use crate::flush::{Arg, Statement};
use crate::model::{Backend, CloseReason, Episode, EpisodeState, Member, Relation};
use crate::rows::{self, Cols};
use crate::subject::SubjectKey;
use crate::tx::{ROWS_PER_STATEMENT, Tx, group_members, identifier, list, lock_key, ref_lock_key};

/// An unattached event as the read-ahead keeps it: `received_at`, event id and body.
type Held = (DateTime<Utc>, Uuid, String);

/// An episode's members and refs, as [`Tx::members_and_refs`] gives them.
type MembersAndRefs = (Vec<Member>, Vec<Identifier>);

/// An episode as the read-ahead knows it: its row, its memberships and its refs, each with its time.
#[derive(Debug, Clone)]
struct Known {
    episode: Episode,
    members: Vec<(AgencyId, Relation, DateTime<Utc>)>,
    refs: Vec<(DateTime<Utc>, String, String)>,
}

/// What a batch's correlation lookups need, as read at its start and changed by its own writes since.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    /// Each ref read ahead or written since, with the episode that owns it (`None`: no episode does).
    refs: HashMap<(String, String), Option<EpisodeId>>,
    /// Each subject key read ahead, with every episode (open or closed) that holds it.
    subjects: HashMap<[u8; 32], Vec<EpisodeId>>,
    /// The episodes read ahead or opened since.
    episodes: HashMap<EpisodeId, Known>,
    /// The unattached events held for each key read ahead: `received_at`, event id and body.
    unattached: HashMap<[u8; 32], Vec<Held>>,
    /// The events whose dedup marks were read ahead, and which of them are marked (or were since).
    asked: HashSet<Uuid>,
    processed: HashSet<Uuid>,
}

impl ReadAhead {
    /// The episodes owning `refs`, when every one of them is known.
    pub(crate) fn owners(&self, refs: &[Identifier]) -> Option<Vec<EpisodeId>> {
        let mut owners = Vec::new();
        for identifier in refs {
            let owner = self.refs.get(&(identifier.system.to_string(), identifier.value.to_string()))?;
            if let Some(owner) = owner
                && !owners.contains(owner)
            {
                owners.push(*owner);
            }
        }
        Some(owners)
    }

    /// What pointing `refs` at `episode` would do, when every one of them is known: the refs that are new
    /// (each once, in the order given), or the conflict with the first one, in that order, that another
    /// episode holds. `None` when one of them was not read ahead.
    pub(crate) fn refs_for(
        &self,
        episode: EpisodeId,
        refs: &[(&str, &str)],
    ) -> Option<Result<Vec<(String, String)>, StoreError>> {
        let mut new: Vec<(String, String)> = Vec::new();
        for (system, value) in refs {
            let pair = ((*system).to_owned(), (*value).to_owned());
            match self.refs.get(&pair)? {
                Some(owner) if *owner == episode => {}
                Some(owner) => {
                    return Some(Err(StoreError::Conflict(Conflict::RefHeldByOtherEpisode {
                        system: pair.0,
                        held_by: *owner,
                    })));
                }
                None if new.contains(&pair) => {}
                None => new.push(pair),
            }
        }
        Some(Ok(new))
    }

    /// The memberships of `members` that the episode does not hold yet, each once, in the order given;
    /// `None` when the episode is not known.
    pub(crate) fn new_members(
        &self,
        episode: EpisodeId,
        members: &[(AgencyId, Relation)],
    ) -> Option<Vec<(AgencyId, Relation)>> {
        let known = self.episodes.get(&episode)?;
        let mut new: Vec<(AgencyId, Relation)> = Vec::new();
        for (agency, relation) in members {
            let held = known.members.iter().any(|(a, r, _)| a == agency && r == relation);
            if !held && !new.iter().any(|(a, r)| a == agency && r == relation) {
                new.push((agency.clone(), *relation));
            }
        }
        Some(new)
    }

    /// True when the read-ahead asked for this event's dedup mark.
    pub(crate) fn asked_about(&self, event: EventId) -> bool {
        self.asked.contains(&event.0)
    }

    /// True when the event carries its dedup mark, read ahead or written since.
    pub(crate) fn is_processed(&self, event: EventId) -> bool {
        self.processed.contains(&event.0)
    }

    /// A dedup mark written (or deferred) in this transaction.
    pub(crate) fn processed_now(&mut self, event: EventId) {
        self.processed.insert(event.0);
    }

    /// The episode, when it is known.
    pub(crate) fn episode(&self, id: EpisodeId) -> Option<&Episode> {
        self.episodes.get(&id).map(|known| &known.episode)
    }

    /// The episodes holding `key`, when it was read ahead.
    pub(crate) fn holding(&self, key: &SubjectKey) -> Option<&[EpisodeId]> {
        self.subjects.get(key.as_bytes()).map(Vec::as_slice)
    }

    /// An episode's members and refs, ordered as [`Tx::members_and_refs`] orders them, when it is known.
    pub(crate) fn members_and_refs(&self, id: EpisodeId) -> Option<Result<MembersAndRefs, StoreError>> {
        let known = self.episodes.get(&id)?;
        let mut members = known.members.clone();
        members.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
        let mut refs = known.refs.clone();
        refs.sort();
        let refs: Result<Vec<Identifier>, StoreError> =
            refs.into_iter().map(|(_, system, value)| identifier(system, value)).collect();
        Some(refs.map(|refs| (group_members(members), refs)))
    }

    /// The unattached events held for `key`, oldest first, when it was read ahead.
    pub(crate) fn unattached(&self, key: &SubjectKey) -> Option<Result<Vec<CrisisEvent>, StoreError>> {
        let mut held = self.unattached.get(key.as_bytes())?.clone();
        held.sort_by_key(|(at, event, _)| (*at, *event));
        Some(
            held.iter()
                .map(|(_, _, body)| {
                    serde_json::from_str(body)
                        .map_err(|_| StoreError::Corrupt { table: "unattached_events", column: "body" })
                })
                .collect(),
        )
    }

    /// An episode was opened with these refs and memberships (its own ref and its originator's among them).
    pub(crate) fn opened(&mut self, episode: Episode, refs: &[(&str, &str)], members: &[(AgencyId, Relation)]) {
        let id = episode.id;
        let at = episode.opened_at;
        for (system, value) in refs {
            self.refs.insert(((*system).to_owned(), (*value).to_owned()), Some(id));
        }
        let known = Known {
            members: members.iter().map(|(agency, relation)| (agency.clone(), *relation, at)).collect(),
            refs: refs.iter().map(|(system, value)| (at, (*system).to_owned(), (*value).to_owned())).collect(),
            episode,
        };
        self.episodes.insert(id, known);
    }

    /// Refs newly pointed at an episode.
    pub(crate) fn refs_added(&mut self, id: EpisodeId, refs: &[(String, String)], at: DateTime<Utc>) {
        for (system, value) in refs {
            self.refs.insert((system.clone(), value.clone()), Some(id));
            if let Some(known) = self.episodes.get_mut(&id) {
                known.refs.push((at, system.clone(), value.clone()));
            }
        }
    }

    /// Memberships newly added to an episode.
    pub(crate) fn members_added(&mut self, id: EpisodeId, members: &[(AgencyId, Relation)], at: DateTime<Utc>) {
        if let Some(known) = self.episodes.get_mut(&id) {
            known.members.extend(members.iter().map(|(agency, relation)| (agency.clone(), *relation, at)));
        }
    }

    /// True when `key` is known to be held by the episode already (so storing it again changes nothing).
    pub(crate) fn holds_key(&self, id: EpisodeId, key: &SubjectKey) -> bool {
        self.subjects.get(key.as_bytes()).is_some_and(|holders| holders.contains(&id))
    }

    /// A key stored for an episode.
    pub(crate) fn key_added(&mut self, id: EpisodeId, key: &SubjectKey) {
        if let Some(holders) = self.subjects.get_mut(key.as_bytes())
            && !holders.contains(&id)
        {
            holders.push(id);
        }
    }

    /// An unattached event newly held for `key`.
    pub(crate) fn held(&mut self, key: &SubjectKey, received_at: DateTime<Utc>, event: Uuid, body: &str) {
        if let Some(held) = self.unattached.get_mut(key.as_bytes()) {
            held.push((received_at, event, body.to_owned()));
        }
    }

    /// Changes an episode's row as a statement of this transaction just did.
    pub(crate) fn update(&mut self, id: EpisodeId, change: impl FnOnce(&mut Episode)) {
        if let Some(known) = self.episodes.get_mut(&id) {
            change(&mut known.episode);
        }
    }

    /// An episode closed.
    pub(crate) fn closed(&mut self, id: EpisodeId, reason: CloseReason, at: DateTime<Utc>) {
        self.update(id, |episode| {
            episode.state = EpisodeState::Closed;
            episode.closed_at = Some(at);
            episode.close_reason = Some(reason);
        });
    }
}

/// A row of the read-ahead's statements, by the part it answers.
enum Found {
    Processed(Uuid),
    Owner(String, String, Uuid),
    Key([u8; 32], Uuid),
    Held([u8; 32], DateTime<Utc>, Uuid, String),
    Episode(Episode),
    Member(Uuid, AgencyId, Relation, DateTime<Utc>),
    EpisodeRef(Uuid, String, String, DateTime<Utc>),
}

fn found(row: &dyn Cols) -> Result<Found, StoreError> {
    let key = |row: &dyn Cols| {
        let bytes = row.opt_bytes("k")?.unwrap_or_default();
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| StoreError::Corrupt { table: "subject_keys", column: "subject_key" })
    };
    Ok(match row.text("part")?.as_str() {
        "processed" => Found::Processed(row.uuid("id")?),
        "owner" => Found::Owner(row.text("system")?, row.text("value")?, row.uuid("id")?),
        "key" => Found::Key(key(row)?, row.uuid("id")?),
        "held" => Found::Held(key(row)?, row.time("at")?, row.uuid("id")?, row.text("body")?),
        "episode" => Found::Episode(rows::episode(row)?),
        "member" => {
            let agency = rows::agency(row, "episode_members", "a")?;
            let relation = Relation::parse(&row.text("b")?)
                .ok_or(StoreError::Corrupt { table: "episode_members", column: "relation" })?;
            Found::Member(row.uuid("id")?, agency, relation, row.time("at")?)
        }
        _ => Found::EpisodeRef(row.uuid("id")?, row.text("a")?, row.text("b")?, row.time("at")?),
    })
}

/// `(system = ? AND value = ?) OR …` for `count` refs, numbered from 1 on PostgreSQL.
fn ref_matches(backend: Backend, count: usize) -> String {
    let matches: Vec<String> = (0..count)
        .map(|index| match backend {
            Backend::Sqlite => "(system = ? AND value = ?)".to_owned(),
            Backend::Postgres => format!("(system = ${} AND value = ${})", 2 * index + 1, 2 * index + 2),
        })
        .collect();
    matches.join(" OR ")
}

impl Tx {
    /// Reads ahead what routing a batch of events needs, and returns which of `events` already carry
    /// their dedup mark. It reads the owners of `refs`, the episodes holding `keys` and the unattached
    /// events held for them, then those episodes with their members and refs: two calls to SQLite (a
    /// few statements each on PostgreSQL) however many events there are (see the module docs). On
    /// PostgreSQL it first takes the advisory locks of every ref and key, in one sorted order, as the
    /// per-event lookups would.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn read_ahead(
        &mut self,
        events: &[EventId],
        refs: &[Identifier],
        keys: &[SubjectKey],
    ) -> Result<BTreeSet<EventId>, StoreError> {
        self.flush().await?;
        let backend = self.backend();
        let mut locks: Vec<i64> = refs.iter().map(ref_lock_key).collect();
        locks.extend(keys.iter().map(|key| lock_key(&[b"subject", key.as_bytes()])));
        self.lock_keys(locks).await?;
        // A list used in both halves of a `UNION ALL`: SQLite's `?` are bound in order of appearance, so
        // twice; PostgreSQL's `$n` once, and used wherever they appear.
        let halves = match backend {
            Backend::Sqlite => 2,
            Backend::Postgres => 1,
        };

        let mut pairs: Vec<(&str, &str)> =
            refs.iter().map(|identifier| (identifier.system.as_str(), identifier.value.as_str())).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut subject_keys: Vec<[u8; 32]> = keys.iter().map(|key| *key.as_bytes()).collect();
        subject_keys.sort_unstable();
        subject_keys.dedup();
        let mut first = Vec::new();
        for chunk in events.chunks(8 * ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT 'processed' AS part, event_id AS id FROM processed_events WHERE event_id IN ({})",
                list(backend, 1, chunk.len())
            );
            first.push(Statement { sql, args: chunk.iter().map(|event| Arg::Uuid(event.0)).collect() });
        }
        for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT 'owner' AS part, system, value, episode_id AS id FROM episode_refs WHERE {}",
                ref_matches(backend, chunk.len())
            );
            let args = chunk.iter().flat_map(|(system, value)| [Arg::Str(system), Arg::Str(value)]).collect();
            first.push(Statement { sql, args });
        }
        for chunk in subject_keys.chunks(8 * ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT 'key' AS part, subject_key AS k, episode_id AS id, NULL AS at, NULL AS body \
                 FROM subject_keys WHERE subject_key IN ({in_list}) UNION ALL \
                 SELECT 'held' AS part, subject_key AS k, event_id AS id, received_at AS at, body \
                 FROM unattached_events WHERE subject_key IN ({in_list})",
                in_list = list(backend, 1, chunk.len())
            );
            let args = (0..halves).flat_map(|_| chunk.iter().map(|key| Arg::Bytes(key.as_slice()))).collect();
            first.push(Statement { sql, args });
        }
        let mut ahead = ReadAhead::default();
        for pair in &pairs {
            ahead.refs.insert((pair.0.to_owned(), pair.1.to_owned()), None);
        }
        for key in &subject_keys {
            ahead.subjects.insert(*key, Vec::new());
            ahead.unattached.insert(*key, Vec::new());
        }
        ahead.asked.extend(events.iter().map(|event| event.0));
        let mut processed = BTreeSet::new();
        for row in self.run_all(&first, found).await? {
            match row {
                Found::Processed(event) => {
                    ahead.processed.insert(event);
                    processed.insert(EventId(event));
                }
                Found::Owner(system, value, owner) => {
                    ahead.refs.insert((system, value), Some(EpisodeId(owner)));
                }
                Found::Key(key, episode) => ahead.subjects.entry(key).or_default().push(EpisodeId(episode)),
                Found::Held(key, at, event, body) => ahead.unattached.entry(key).or_default().push((at, event, body)),
                _ => return Err(StoreError::Corrupt { table: "episodes", column: "id" }),
            }
        }

        let mut ids: Vec<EpisodeId> = ahead.refs.values().flatten().copied().collect();
        ids.extend(ahead.subjects.values().flatten().copied());
        ids.sort_unstable();
        ids.dedup();
        let mut second = Vec::new();
        for chunk in ids.chunks(8 * ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT 'episode' AS part, {} FROM episodes WHERE id IN ({})",
                rows::EPISODE_COLUMNS,
                list(backend, 1, chunk.len())
            );
            second.push(Statement { sql, args: chunk.iter().map(|id| Arg::Uuid(id.0)).collect() });
            let sql = format!(
                "SELECT 'member' AS part, episode_id AS id, agency AS a, relation AS b, first_seen_at AS at \
                 FROM episode_members WHERE episode_id IN ({in_list}) UNION ALL \
                 SELECT 'ref' AS part, episode_id AS id, system AS a, value AS b, added_at AS at \
                 FROM episode_refs WHERE episode_id IN ({in_list})",
                in_list = list(backend, 1, chunk.len())
            );
            let args = (0..halves).flat_map(|_| chunk.iter().map(|id| Arg::Uuid(id.0))).collect();
            second.push(Statement { sql, args });
        }
        let mut parts = Vec::new();
        for row in self.run_all(&second, found).await? {
            match row {
                Found::Episode(episode) => {
                    let known = Known { episode, members: Vec::new(), refs: Vec::new() };
                    ahead.episodes.insert(known.episode.id, known);
                }
                other => parts.push(other),
            }
        }
        for row in parts {
            match row {
                Found::Member(episode, agency, relation, at) => {
                    if let Some(known) = ahead.episodes.get_mut(&EpisodeId(episode)) {
                        known.members.push((agency, relation, at));
                    }
                }
                Found::EpisodeRef(episode, system, value, at) => {
                    if let Some(known) = ahead.episodes.get_mut(&EpisodeId(episode)) {
                        known.refs.push((at, system, value));
                    }
                }
                _ => return Err(StoreError::Corrupt { table: "episodes", column: "id" }),
            }
        }
        self.ahead = Some(ahead);
        Ok(processed)
    }
}
