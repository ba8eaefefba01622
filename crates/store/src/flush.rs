//! Writing a transaction's deferred rows: one multi-row statement per table and chunk, all of them sent to
//! SQLite in a single call.
//!
//! Under load a statement's cost is mostly its hop to the database thread and back, not its rows. SQLite
//! runs several `;`-separated statements given in one call one after another, binding its `?` parameters
//! in order across them, so the flush of a batch (episodes, refs, members, subject keys, dedup marks,
//! events, payloads, `last_event_at`, decisions, outbox rows) is one round trip there. PostgreSQL runs the same statements
//! one by one. Every conflict is learnt from what the inserts return, and reported after all of them ran.

use chrono::{DateTime, Utc};
use concordat_episode::EpisodeId;
use uuid::Uuid;

use crate::error::{Conflict, StoreError};
use crate::model::{Backend, micros};
use crate::rows::Cols;
use crate::tx::{Deferred, ROWS_PER_STATEMENT, Tx, insert, json_list, list, on, placeholders};

/// A value to bind.
pub(crate) enum Arg<'a> {
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Str(&'a str),
    Owned(String),
    Bytes(&'a [u8]),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
    Int(i64),
}

/// One statement and its binds, in order. On SQLite its parameters must be `?`: a numbered one names
/// its place among all the binds of the call, not of its statement.
pub(crate) struct Statement<'a> {
    pub(crate) sql: String,
    pub(crate) args: Vec<Arg<'a>>,
}

/// Binds `args` to `query` in order; expanded once per backend by [`on!`].
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Uuid(value) => query.bind(*value),
                Arg::OptUuid(value) => query.bind(*value),
                Arg::Str(value) => query.bind(*value),
                Arg::Owned(value) => query.bind(value.as_str()),
                Arg::Bytes(value) => query.bind(*value),
                Arg::Time(value) => query.bind(*value),
                Arg::OptTime(value) => query.bind(*value),
                Arg::Int(value) => query.bind(*value),
            };
        }
        query
    }};
}

/// What an insert returned: the table's part name and the row's key.
enum Returned {
    Id(String, Uuid),
    Ref(String, String),
}

/// The deferred rows being written, for the conflict checks after the statements ran.
struct Expected {
    episodes: Vec<Uuid>,
    refs: Vec<(String, String, Uuid)>,
    marks: Vec<Uuid>,
    events: Vec<Uuid>,
    decisions: Vec<(Uuid, concordat_episode::EventId, String)>,
    deliveries: Vec<Uuid>,
}

impl Tx {
    /// Writes what this transaction deferred: the episodes opened, refs, members and subject keys added
    /// while reading ahead, then recorded events, decisions and outbox rows, in the order given, as a few
    /// multi-row statements (one call to SQLite). [`Self::commit`] runs it, and so does every read of
    /// those tables in this transaction; call it to learn of a conflict before committing.
    ///
    /// # Errors
    /// [`Conflict::EpisodeExists`], [`Conflict::RefHeldByOtherEpisode`], [`Conflict::AlreadyProcessed`],
    /// [`Conflict::EventRecorded`],
    /// [`Conflict::DecisionExists`] or [`Conflict::DeliveryExists`] naming the first row an earlier
    /// transaction already stored; then drop the transaction. [`StoreError::Database`] otherwise.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_marking().await.map(|_| ())
    }

    /// [`Self::flush`], returning how many deliveries it marked sent.
    pub(crate) async fn flush_marking(&mut self) -> Result<u64, StoreError> {
        if self.deferred.is_empty() {
            return Ok(0);
        }
        let deferred = std::mem::take(&mut self.deferred);
        if let Some(ahead) = &mut self.ahead {
            // What the read-ahead answers from here on must show them, as the rows will.
            for (episode, at) in &deferred.touches {
                ahead.update(EpisodeId(*episode), |known| known.last_event_at = known.last_event_at.max(*at));
            }
        }
        self.write(&deferred).await
    }

    /// Writes the episodes opened, and the refs, memberships and subject keys added, while reading ahead:
    /// what any statement about an episode needs in its tables first. Recorded events, decisions and
    /// outbox rows stay deferred.
    pub(crate) async fn flush_structure(&mut self) -> Result<(), StoreError> {
        if !self.deferred.has_structure() {
            return Ok(());
        }
        let structure = Deferred {
            episodes: std::mem::take(&mut self.deferred.episodes),
            refs: std::mem::take(&mut self.deferred.refs),
            members: std::mem::take(&mut self.deferred.members),
            keys: std::mem::take(&mut self.deferred.keys),
            ..Deferred::default()
        };
        self.write(&structure).await.map(|_| ())
    }

    /// Writes `deferred`; returns how many deliveries it marked sent.
    async fn write(&mut self, deferred: &Deferred) -> Result<u64, StoreError> {
        let backend = self.backend();
        let (statements, expected) = statements(backend, deferred)?;
        let returned = self.run_all(&statements, returned).await?;
        self.check(&expected, &returned).await?;
        // Audited in the order given, once each, and only what was still pending.
        let mut marked: Vec<&Uuid> = Vec::new();
        for (ids, at) in &deferred.sent {
            for id in ids {
                let sent = returned
                    .iter()
                    .any(|row| matches!(row, Returned::Id(part, found) if part == "sent" && found == id));
                if sent && !marked.contains(&id) {
                    marked.push(id);
                    let delivery_id = crate::model::DeliveryId(*id);
                    self.append_audit(*at, crate::audit::AuditRecord::DeliverySent { delivery_id });
                }
            }
        }
        Ok(marked.len() as u64)
    }

    /// Runs `statements` in order, in one call on SQLite and one after another on PostgreSQL, and decodes
    /// every row they return, in order.
    pub(crate) async fn run_all<T>(
        &mut self,
        statements: &[Statement<'_>],
        decode: impl Fn(&dyn Cols) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut rows = Vec::new();
        if statements.is_empty() {
            return Ok(rows);
        }
        if self.backend() == Backend::Sqlite {
            let sql: Vec<&str> = statements.iter().map(|statement| statement.sql.as_str()).collect();
            let sql = sql.join(";\n");
            let args = statements.iter().flat_map(|statement| &statement.args);
            on!(self, |c| {
                // Not kept prepared: the statements' row counts vary together, so the same text seldom
                // comes back, and every cached variant would hold its statements' memory.
                for row in bind_args!(sqlx::query(&sql).persistent(false), args).fetch_all(&mut **c).await? {
                    rows.push(decode(&row)?);
                }
            });
        } else {
            for statement in statements {
                on!(self, |c| {
                    for row in bind_args!(sqlx::query(&statement.sql), &statement.args).fetch_all(&mut **c).await? {
                        rows.push(decode(&row)?);
                    }
                });
            }
        }
        Ok(rows)
    }

    /// Reports the first row of each kind that an insert refused, in the order the kinds were written.
    async fn check(&mut self, expected: &Expected, returned: &[Returned]) -> Result<(), StoreError> {
        let has = |part: &str, id: &Uuid| {
            returned.iter().any(|row| matches!(row, Returned::Id(p, found) if p == part && found == id))
        };
        if let Some(refused) = expected.episodes.iter().find(|id| !has("episode", id)) {
            return Err(StoreError::Conflict(Conflict::EpisodeExists(EpisodeId(*refused))));
        }
        let refused = expected.refs.iter().find(|(system, value, _)| {
            !returned.iter().any(|row| matches!(row, Returned::Ref(s, v) if s == system && v == value))
        });
        if let Some((system, value, episode)) = refused {
            // Held since it was read ahead: by whom, for the error.
            let owners = self.ref_owners(&[(system.as_str(), value.as_str())]).await?;
            let held_by = owners.first().map_or(*episode, |(_, _, owner)| *owner);
            return Err(StoreError::Conflict(Conflict::RefHeldByOtherEpisode {
                system: system.clone(),
                held_by: EpisodeId(held_by),
            }));
        }
        if let Some(refused) = expected.marks.iter().find(|id| !has("mark", id)) {
            return Err(StoreError::Conflict(Conflict::AlreadyProcessed(concordat_episode::EventId(*refused))));
        }
        if let Some(refused) = expected.events.iter().find(|id| !has("event", id)) {
            return Err(StoreError::Conflict(Conflict::EventRecorded(concordat_episode::EventId(*refused))));
        }
        if let Some((_, event_id, recipient)) = expected.decisions.iter().find(|(id, _, _)| !has("decision", id)) {
            return Err(StoreError::Conflict(Conflict::DecisionExists {
                event_id: *event_id,
                recipient: recipient.clone(),
            }));
        }
        if let Some(refused) = expected.deliveries.iter().find(|id| !has("delivery", id)) {
            return Err(StoreError::Conflict(Conflict::DeliveryExists(crate::model::DeliveryId(*refused))));
        }
        Ok(())
    }
}

fn returned(row: &dyn Cols) -> Result<Returned, StoreError> {
    let part = row.text("part")?;
    Ok(if part == "ref" {
        Returned::Ref(row.text("system")?, row.text("value")?)
    } else {
        Returned::Id(part, row.uuid("id")?)
    })
}

/// The statements that write `deferred`, in the order their rows depend on each other, and what their
/// inserts should return.
fn statements(backend: Backend, deferred: &Deferred) -> Result<(Vec<Statement<'_>>, Expected), StoreError> {
    let mut out = Vec::new();
    let mut expected = Expected {
        episodes: Vec::new(),
        refs: Vec::new(),
        marks: Vec::new(),
        events: Vec::new(),
        decisions: Vec::new(),
        deliveries: Vec::new(),
    };
    for chunk in deferred.episodes.chunks(ROWS_PER_STATEMENT) {
        let columns = "id, state, originator, opened_by_event, opened_at, last_event_at, feedback_due_at";
        let mut args = Vec::with_capacity(chunk.len() * 7);
        for episode in chunk {
            expected.episodes.push(episode.id.0);
            args.extend([
                Arg::Uuid(episode.id.0),
                Arg::Str(episode.state.as_str()),
                Arg::Str(episode.originator.as_str()),
                Arg::Uuid(episode.opened_by.0),
                Arg::Time(episode.opened_at),
                Arg::Time(episode.last_event_at),
                Arg::OptTime(episode.feedback_due_at),
            ]);
        }
        let sql = insert(backend, "episodes", columns, chunk.len(), "", "RETURNING 'episode' AS part, id");
        out.push(Statement { sql, args });
    }
    for chunk in deferred.refs.chunks(ROWS_PER_STATEMENT) {
        let mut args = Vec::with_capacity(chunk.len() * 4);
        for (system, value, episode, at) in chunk {
            expected.refs.push((system.clone(), value.clone(), *episode));
            args.extend([Arg::Str(system), Arg::Str(value), Arg::Uuid(*episode), Arg::Time(*at)]);
        }
        let returning = "RETURNING 'ref' AS part, system, value";
        let columns = "system, value, episode_id, added_at";
        out.push(Statement {
            sql: insert(backend, "episode_refs", columns, chunk.len(), "(system, value)", returning),
            args,
        });
    }
    for chunk in deferred.members.chunks(ROWS_PER_STATEMENT) {
        let mut args = Vec::with_capacity(chunk.len() * 4);
        for (episode, agency, relation, at) in chunk {
            args.extend([Arg::Uuid(*episode), Arg::Str(agency.as_str()), Arg::Str(relation.as_str()), Arg::Time(*at)]);
        }
        let columns = "episode_id, agency, relation, first_seen_at";
        let conflict = "(episode_id, agency, relation)";
        out.push(Statement { sql: insert(backend, "episode_members", columns, chunk.len(), conflict, ""), args });
    }
    for chunk in deferred.keys.chunks(ROWS_PER_STATEMENT) {
        let mut args = Vec::with_capacity(chunk.len() * 3);
        for (episode, key, at) in chunk {
            args.extend([Arg::Uuid(*episode), Arg::Bytes(key.as_slice()), Arg::Time(*at)]);
        }
        let columns = "episode_id, subject_key, added_at";
        let conflict = "(episode_id, subject_key)";
        out.push(Statement { sql: insert(backend, "subject_keys", columns, chunk.len(), conflict, ""), args });
    }
    for chunk in deferred.marks.chunks(ROWS_PER_STATEMENT) {
        let mut args = Vec::with_capacity(chunk.len() * 3);
        for (event, episode, at) in chunk {
            expected.marks.push(*event);
            args.extend([Arg::Uuid(*event), Arg::OptUuid(*episode), Arg::Time(*at)]);
        }
        let columns = "event_id, episode_id, processed_at";
        let returning = "RETURNING 'mark' AS part, event_id AS id";
        out.push(Statement { sql: insert(backend, "processed_events", columns, chunk.len(), "", returning), args });
    }
    for chunk in deferred.events.chunks(ROWS_PER_STATEMENT) {
        let mut args = Vec::with_capacity(chunk.len() * 7);
        let mut payloads = Vec::with_capacity(chunk.len() * 2);
        for row in chunk {
            expected.events.push(row.event_id.0);
            args.extend([
                Arg::Uuid(row.event_id.0),
                Arg::Uuid(row.episode.0),
                Arg::Str(row.kind),
                Arg::Str(row.source.as_str()),
                Arg::Time(row.occurred_at),
                Arg::Time(row.received_at),
                Arg::Str(row.digest.as_str()),
            ]);
            payloads.extend([Arg::Uuid(row.event_id.0), Arg::Str(row.body.as_str())]);
        }
        let columns = "event_id, episode_id, kind, source_agency, occurred_at, received_at, payload_sha256";
        let returning = "RETURNING 'event' AS part, event_id AS id";
        out.push(Statement { sql: insert(backend, "events", columns, chunk.len(), "", returning), args });
        // A payload is never stored without its event, so one already there means the event was too,
        // which the event's insert reports.
        let sql = insert(backend, "event_payloads", "event_id, body", chunk.len(), "", "");
        out.push(Statement { sql, args: payloads });
    }
    for chunk in deferred.touches.chunks(ROWS_PER_STATEMENT) {
        // A VALUES list names its columns column1, column2 on both databases.
        let sql = format!(
            "UPDATE episodes SET last_event_at = CASE WHEN episodes.last_event_at < v.column2 THEN v.column2 \
             ELSE episodes.last_event_at END FROM (VALUES {}) AS v WHERE episodes.id = v.column1",
            placeholders(backend, 2, chunk.len())
        );
        let args = chunk.iter().flat_map(|(episode, at)| [Arg::Uuid(*episode), Arg::Time(*at)]).collect();
        out.push(Statement { sql, args });
    }
    for chunk in deferred.decisions.chunks(ROWS_PER_STATEMENT) {
        let columns = "decision_id, event_id, episode_id, recipient, verdict, reason, agreement_ids, purposes, \
                       lawful_bases, fields_shared, fields_withheld, policy_version, decided_at";
        let mut args = Vec::with_capacity(chunk.len() * 13);
        for decision in chunk {
            expected.decisions.push((decision.decision_id.0, decision.event_id, decision.recipient.to_string()));
            args.extend([
                Arg::Uuid(decision.decision_id.0),
                Arg::Uuid(decision.event_id.0),
                Arg::OptUuid(decision.episode_id.map(|id| id.0)),
                Arg::Str(decision.recipient.as_str()),
                Arg::Str(decision.verdict.as_str()),
                Arg::Str(decision.reason.as_str()),
                Arg::Owned(json_list(&decision.agreement_ids)),
                Arg::Owned(json_list(&decision.purposes)),
                Arg::Owned(json_list(&decision.lawful_bases)),
                Arg::Owned(json_list(&decision.fields_shared)),
                Arg::Owned(json_list(&decision.fields_withheld)),
                Arg::Str(decision.policy_version.as_str()),
                Arg::Time(micros(decision.decided_at)),
            ]);
        }
        let returning = "RETURNING 'decision' AS part, decision_id AS id";
        out.push(Statement { sql: insert(backend, "decisions", columns, chunk.len(), "", returning), args });
    }
    for chunk in deferred.deliveries.chunks(ROWS_PER_STATEMENT) {
        let columns = "delivery_id, event_id, decision_id, recipient, exchange, routing_key, content_type, headers, \
                       body, body_sha256, created_at, status, attempts";
        let mut args = Vec::with_capacity(chunk.len() * 13);
        for (delivery, digest) in chunk {
            expected.deliveries.push(delivery.delivery_id.0);
            let headers = serde_json::to_string(&delivery.headers)
                .map_err(|_| StoreError::Corrupt { table: "outbox", column: "headers" })?;
            // Status and attempts are the same for every new row: bound like the rest, to keep one shape.
            args.extend([
                Arg::Uuid(delivery.delivery_id.0),
                Arg::Uuid(delivery.event_id.0),
                Arg::OptUuid(delivery.decision_id.map(|id| id.0)),
                Arg::Str(delivery.recipient.as_str()),
                Arg::Str(delivery.exchange.as_str()),
                Arg::Str(delivery.routing_key.as_str()),
                Arg::Str(delivery.content_type.as_str()),
                Arg::Owned(headers),
                Arg::Bytes(delivery.body.as_slice()),
                Arg::Str(digest.as_str()),
                Arg::Time(micros(delivery.created_at)),
                Arg::Str("pending"),
                Arg::Int(0),
            ]);
        }
        let returning = "RETURNING 'delivery' AS part, delivery_id AS id";
        out.push(Statement { sql: insert(backend, "outbox", columns, chunk.len(), "", returning), args });
    }
    for (ids, at) in &deferred.sent {
        for chunk in ids.chunks(8 * ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE outbox SET status = 'sent', sent_at = {} WHERE status = 'pending' AND delivery_id IN ({}) \
                 RETURNING 'sent' AS part, delivery_id AS id",
                list(backend, 1, 1),
                list(backend, 2, chunk.len())
            );
            let mut args = Vec::with_capacity(chunk.len() + 1);
            args.push(Arg::Time(*at));
            args.extend(chunk.iter().map(|id| Arg::Uuid(*id)));
            out.push(Statement { sql, args });
        }
    }
    Ok((out, expected))
}
