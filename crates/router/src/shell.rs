//! The router's imperative shell: consume `concordat.router`, run one store transaction per batch of
//! events around [`crate::plan`], ack only after it committed, then hand the committed outbox rows to the
//! relay ([`crate::relay`]).
//!
//! Order matters here (DESIGN.md §7, invariant 2): the dedup mark, the episode changes, every decision, every
//! outbox row and the audit records commit together, and only then is the event acked. A batch commits the
//! events waiting together (one commit instead of one per event); the guarantees are each event's. A crash before the
//! commit leaves nothing and the broker redelivers; a crash after it and before the ack redelivers an event
//! whose dedup mark is already there, so it is acked with no second delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concordat_bus::{
    BusConfig, ConsumeError, IncomingMessage, Outcome, Subscription, TRACEPARENT_HEADER, Topology, TraceParent,
    consume_batches,
};
use concordat_episode::{
    AgencyId, CrisisEvent, EPISODE_SYSTEM, EpisodeId, EventId, EventKind, Identifier, NonEmptyString, Timestamp,
    derived_id, parse_event,
};
use concordat_policy::{Decision, Policy, Relation, Verdict};
use concordat_store::{
    AuditRecord, CloseReason, DecisionId, DeliveryId, NewDelivery, NewEpisode, PendingDelivery, Store, StoreError,
    SubjectKey, SubjectKeyer, Tx,
};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::correlate::{Correlation, concludes, correlate, relations_earned};
use crate::plan::{AgencyDirectory, EpisodeSnapshot, Plan, plan};
use crate::relay::{HandedRows, Handoff, TakenMarks, handoff};

/// The header naming a delivery's event kind.
pub const KIND_HEADER: &str = "concordat-kind";
/// The header naming a delivery's episode.
pub const EPISODE_HEADER: &str = "concordat-episode";
/// The header naming the decision that permitted a delivery.
pub const DECISION_HEADER: &str = "concordat-decision";

/// Everything the router needs, built once at start-up.
#[derive(Clone)]
pub struct Router {
    policy: Arc<Policy>,
    directory: Arc<AgencyDirectory>,
    store: Store,
    keyer: Arc<SubjectKeyer>,
    topology: Topology,
    feedback_due: chrono::Duration,
    handoff: Option<Handoff>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("policy_version", self.policy.version()).finish_non_exhaustive()
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// Already processed: acked with no second delivery.
    Duplicate,
    /// Processed: so many decisions and deliveries committed.
    Done {
        /// The episode, when the event joined or opened one.
        episode: Option<EpisodeId>,
        /// Decisions made.
        decisions: usize,
        /// Deliveries queued.
        deliveries: usize,
    },
}

/// Why an event could not be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The event's identifiers point at several episodes; a person must resolve it.
    #[error("the event's identifiers point at {0} episodes; not merging them")]
    Conflict(usize),
    /// A permitted view could not be rendered in the recipient's format.
    #[error("cannot render the view for {recipient}: {reason}")]
    Render {
        /// The recipient.
        recipient: AgencyId,
        /// Why not.
        reason: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl Router {
    /// Builds the router. `formats` overrides the format an agency receives (default: by its kind);
    /// `feedback_due` is how long after an episode opens its originator should have had outcome feedback.
    pub fn new(
        policy: Arc<Policy>,
        formats: &BTreeMap<AgencyId, concordat_formats::Format>,
        store: Store,
        keyer: SubjectKeyer,
        topology: Topology,
        feedback_due: Duration,
    ) -> Self {
        let directory = Arc::new(AgencyDirectory::new(&policy, formats));
        let feedback_due = chrono::Duration::from_std(feedback_due).unwrap_or(chrono::Duration::days(1));
        Self { policy, directory, store, keyer: Arc::new(keyer), topology, feedback_due, handoff: None }
    }

    /// From now on, hands the outbox rows of each committed transaction to the relay that is given the
    /// result ([`crate::run_relay`], in the same process), so that it publishes them at once without
    /// reading them back. Clones made after this call hand over too.
    pub fn hand_to_relay(&mut self) -> HandedRows {
        let (sender, receiver) = handoff();
        self.handoff = Some(sender);
        receiver
    }

    /// After a commit: counts its decisions, takes the relay's marks it carried out of flight and hands
    /// its deliveries to the relay.
    fn committed(&self, written: Written, marks: Option<TakenMarks>) {
        count_decisions(&written.verdicts);
        // Decisions and audit records are never purged, so their growth per sender is what to watch.
        for (source, decisions, audit) in &written.stored {
            let count = |record: &'static str, n: usize| {
                let labels = [("agency", source.as_str()), ("record", record)];
                concordat_telemetry::add(
                    "concordat_records_stored_total",
                    &labels,
                    u64::try_from(n).unwrap_or(u64::MAX),
                );
            };
            count("decision", *decisions);
            count("audit", *audit);
        }
        if let Some(marks) = marks {
            marks.committed();
        }
        if let Some(handoff) = &self.handoff {
            handoff.hand(written.deliveries);
        }
    }

    /// Settles one message from `concordat.router`.
    pub async fn handle(&self, message: IncomingMessage) -> Outcome {
        self.handle_batch(vec![message])
            .await
            .pop()
            .unwrap_or_else(|| Outcome::Retry { reason: "the router gave no outcome".to_owned() })
    }

    /// Settles a batch of messages from `concordat.router`, one outcome per message in order.
    ///
    /// The events are routed in one store transaction (one commit for the batch). An event that cannot be
    /// routed does not hold the others back: a conflict is found before anything of it is written, so the
    /// batch goes on without it; after any other failure the transaction is dropped and each event is
    /// routed again in a transaction of its own, so that only the failing one is retried or dead-lettered.
    pub async fn handle_batch(&self, messages: Vec<IncomingMessage>) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; messages.len()];
        let mut routable = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            match parse_event(message.body()) {
                Ok(event) => {
                    let traceparent = message.traceparent().and_then(Result::ok).unwrap_or_else(TraceParent::new_root);
                    let span = route_span(&event);
                    // The event's trace goes on from the span that published it.
                    if let Some(parent) = message.header(TRACEPARENT_HEADER) {
                        concordat_telemetry::trace::continue_trace(&span, parent);
                    }
                    routable.push((index, event, traceparent, span));
                }
                Err(error) => {
                    outcomes[index] =
                        Some(Outcome::DeadLetter { reason: format!("not a canonical crisis event: {error}") });
                }
            }
        }
        let spans: Vec<(usize, tracing::Span)> =
            routable.iter().map(|(index, _, _, span)| (*index, span.clone())).collect();
        let now = Utc::now();
        let events: Vec<Routable> = routable
            .iter()
            .map(|(_, event, traceparent, span)| Routable {
                event: event.clone(),
                traceparent: *traceparent,
                span: span.clone(),
            })
            .collect();
        let results = match self.route_batch(events, now).await {
            Ok(results) => results,
            Err(error) if routable.len() == 1 => vec![Err(error)],
            Err(error) => {
                warn!(message = "Routing the batch failed; routing its events one by one.", %error, events = routable.len());
                let mut results = Vec::with_capacity(routable.len());
                for (_, event, traceparent, span) in routable {
                    results.push(self.route(event, now, &traceparent).instrument(span).await);
                }
                results
            }
        };
        for ((index, span), result) in spans.into_iter().zip(results) {
            outcomes[index] = Some(span.in_scope(|| outcome(result)));
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| Outcome::Retry { reason: "not routed".to_owned() }))
            .collect()
    }

    /// Routes one event in one store transaction.
    ///
    /// # Errors
    /// [`RouteError`]; nothing is committed when it fails.
    pub async fn route(
        &self,
        event: CrisisEvent,
        now: DateTime<Utc>,
        traceparent: &TraceParent,
    ) -> Result<Routed, RouteError> {
        let mut tx = self.store.begin().await?;
        if tx.is_processed(event.event_id).await? {
            return Ok(Routed::Duplicate);
        }
        let event_id = event.event_id;
        let mut written = Written::default();
        let routed = self.route_in(&mut tx, event, now, traceparent, &mut written).await?;
        if let Routed::Done { episode, .. } = routed {
            tx.mark_processed(event_id, episode, now).await?;
        }
        let marks = self.handoff.as_ref().map(|handoff| handoff.mark_in(&mut tx));
        tx.commit().await?;
        self.committed(written, marks);
        Ok(routed)
    }

    /// Routes `events` in order in one store transaction, each seeing what those before it wrote: one
    /// result per event. A conflict is that event's result (nothing of it was written); any other failure
    /// fails the whole batch, and nothing is committed.
    ///
    /// # Errors
    /// [`RouteError::Render`] or [`RouteError::Store`], for the batch.
    pub async fn route_batch(
        &self,
        events: Vec<Routable>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Routed, RouteError>>, RouteError> {
        let started = std::time::Instant::now();
        let mut tx = self.store.begin().await?;
        let ids: Vec<EventId> = events.iter().map(|routable| routable.event.event_id).collect();
        // The dedup marks, and what the events' correlation lookups will read, are read for all of them
        // at once; the marks are written in one statement. An event met twice in the batch is a
        // duplicate the second time, once the first was routed.
        let refs: Vec<Identifier> = events.iter().flat_map(|routable| correlating_refs(&routable.event)).collect();
        let keys: Vec<SubjectKey> = events
            .iter()
            .filter_map(|routable| routable.event.subject.nhs_number.as_ref().map(|number| self.keyer.key(number)))
            .collect();
        let mut processed = tx.read_ahead(&ids, &refs, &keys).await?;
        let mut marks = Vec::with_capacity(events.len());
        let mut done = Written::default();
        let mut results = Vec::with_capacity(events.len());
        for Routable { event, traceparent, span } in events {
            let event_id = event.event_id;
            if processed.contains(&event_id) {
                results.push(Ok(Routed::Duplicate));
                continue;
            }
            // A refused event adds nothing to `written`: a conflict is found before the plan is made.
            match self.route_in(&mut tx, event, now, &traceparent, &mut done).instrument(span).await {
                Err(conflict @ RouteError::Conflict(_)) => results.push(Err(conflict)),
                Err(error) => return Err(error),
                Ok(routed) => {
                    if let Routed::Done { episode, .. } = routed {
                        processed.insert(event_id);
                        marks.push((event_id, episode));
                    }
                    results.push(Ok(routed));
                }
            }
        }
        tx.mark_all_processed(&marks, now).await?;
        // The relay's marks for what it published since the last commit go in the same flush.
        let sent = self.handoff.as_ref().map(|handoff| handoff.mark_in(&mut tx));
        let routed = started.elapsed();
        tx.flush().await?;
        let written = started.elapsed();
        tx.commit().await?;
        self.committed(done, sent);
        concordat_telemetry::observe("concordat_router_batch_seconds", &[], started.elapsed().as_secs_f64());
        debug!(
            message = "Committed a batch.",
            events = results.len(),
            route_ms = routed.as_secs_f64() * 1000.0,
            write_ms = (written - routed).as_secs_f64() * 1000.0,
            total_ms = started.elapsed().as_secs_f64() * 1000.0,
        );
        Ok(results)
    }

    /// Routes one event inside `tx`, all but its dedup check and mark, which are the caller's. A
    /// [`RouteError::Conflict`] is returned before anything is written.
    /// Its decisions and deliveries are added to `written`, for after the transaction commits.
    async fn route_in(
        &self,
        tx: &mut Tx,
        mut event: CrisisEvent,
        now: DateTime<Utc>,
        traceparent: &TraceParent,
        written: &mut Written,
    ) -> Result<Routed, RouteError> {
        let audit_before = tx.audit_pending();
        let key = event.subject.nhs_number.as_ref().map(|number| self.keyer.key(number));
        let refs = correlating_refs(&event);
        let mut found = tx.find_episode_by_refs(&refs).await?;
        // Ids and refs are not secrets: the event joins an episode it names only when its source has a right
        // to it; otherwise they are struck from the event, which then correlates as if it had never named them.
        self.strike_unearned(tx, &mut event, &mut found, key.as_ref(), now).await?;
        let by_refs: Vec<EpisodeId> = found.iter().map(|episode| episode.id).collect();
        let by_subject = match &key {
            Some(key) if by_refs.is_empty() && event.episode.episode_id.is_none() => {
                let open = tx.find_open_episode_by_subject(key).await?.into_iter().next();
                let id = open.as_ref().map(|episode| episode.id);
                found.extend(open);
                id
            }
            _ => None,
        };
        let stamp = Timestamp::from(now);
        let (episode, plan) = match correlate(&event, &by_refs, by_subject) {
            Correlation::Conflict(ids) => return Err(RouteError::Conflict(ids.len())),
            Correlation::Unattached => {
                let plan = plan(&self.policy, &self.directory, &event, None, &[], stamp);
                if let Some(key) = &key {
                    tx.hold_unattached(key, &event).await?;
                }
                (None, plan)
            }
            correlation => {
                let opened = correlation == Correlation::Open;
                let snapshot = match correlation {
                    Correlation::Join(id) => {
                        // The lookups above read the episode in this transaction, and nothing of this event
                        // has changed its state since: no need to read it again.
                        let state = found.iter().find(|known| known.id == id).map(|known| known.state);
                        event.episode.episode_id = Some(id);
                        self.join(tx, &event, id, key.as_ref(), state, now).await?
                    }
                    _ => self.open(tx, &mut event, key.as_ref(), now).await?,
                };
                let episode = snapshot.id;
                let prior = match (&key, opened) {
                    (Some(key), true) => tx.unattached_for_subject(key).await?,
                    _ => Vec::new(),
                };
                let plan = plan(&self.policy, &self.directory, &event, Some(&snapshot), &prior, stamp);
                for made in &plan.derived {
                    tx.record_event(episode, made).await?;
                }
                if plan.feedback_to_originator
                    && let Some(feedback) = plan.derived.iter().find(|made| made.kind == EventKind::FeedbackOutcome)
                {
                    tx.mark_feedback_delivered(episode, feedback.event_id, now).await?;
                }
                if concludes(&event) {
                    tx.close_episode(episode, CloseReason::Concluded, now).await?;
                }
                (Some(episode), plan)
            }
        };
        if let Some(failure) = plan.render_failures.first() {
            return Err(RouteError::Render { recipient: failure.recipient.clone(), reason: failure.error.to_string() });
        }
        let deliveries = self.write(tx, &plan, episode, now, traceparent).await?;
        let audit = tx.audit_pending().saturating_sub(audit_before);
        written.add(&event, &plan, deliveries, audit);
        Ok(Routed::Done { episode, decisions: plan.decisions.len(), deliveries: plan.deliveries.len() })
    }

    /// Strikes from `event` the episode id and refs that name an episode its source has no right to
    /// ([`Tx::may_join`]), or that it names by a ref of its own namespace, and drops those episodes from
    /// `found`. A stated episode id that names no
    /// episode at all is struck too. Each refusal is audited (`join_refused`, by ids and agency), counted
    /// in `concordat_joins_refused_total` and logged by ids, never by what the event holds.
    async fn strike_unearned(
        &self,
        tx: &mut Tx,
        event: &mut CrisisEvent,
        found: &mut Vec<concordat_store::Episode>,
        key: Option<&SubjectKey>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut refused: Vec<EpisodeId> = Vec::new();
        for episode in found.iter() {
            if !tx.may_join(episode.id, &event.source.agency, key).await? {
                refused.push(episode.id);
            }
        }
        if !refused.is_empty() {
            // A ref in the source's own namespace (`urn:concordat:police-incident:{agency}` and the like) is its
            // own record: the episode that holds it is the source's to join.
            let suffix = format!(":{}", event.source.agency);
            let own: Vec<Identifier> = event
                .episode
                .refs
                .iter()
                .filter(|identifier| identifier.system.as_str().ends_with(&suffix))
                .cloned()
                .collect();
            if !own.is_empty() {
                let owned = tx.find_episode_by_refs(&own).await?;
                refused.retain(|id| !owned.iter().any(|episode| episode.id == *id));
            }
        }
        if let Some(stated) = event.episode.episode_id
            && !found.iter().any(|episode| episode.id == stated)
            && !refused.contains(&stated)
        {
            refused.push(stated);
        }
        if refused.is_empty() {
            return Ok(());
        }
        found.retain(|episode| !refused.contains(&episode.id));
        if event.episode.episode_id.is_some_and(|stated| refused.contains(&stated)) {
            event.episode.episode_id = None;
        }
        let mut kept = Vec::with_capacity(event.episode.refs.len());
        for identifier in std::mem::take(&mut event.episode.refs) {
            let owners = tx.find_episode_by_refs(std::slice::from_ref(&identifier)).await?;
            let own_episode = identifier.system.as_str() == EPISODE_SYSTEM
                && refused.iter().any(|id| id.to_string() == identifier.value.as_str());
            if !own_episode && !owners.iter().any(|owner| refused.contains(&owner.id)) {
                kept.push(identifier);
            }
        }
        event.episode.refs = kept;
        for episode in refused {
            let record = AuditRecord::JoinRefused {
                event_id: event.event_id,
                episode_id: episode,
                source: event.source.agency.clone(),
            };
            tx.append_audit(now, record);
            concordat_telemetry::inc("concordat_joins_refused_total", &[("agency", event.source.agency.as_str())]);
            warn!(
                message = "Event named an episode its source has no right to; handled as if it had not.",
                event_id = %event.event_id,
                episode_id = %episode,
                agency = %event.source.agency,
            );
        }
        Ok(())
    }

    /// Opens an episode for `event` and records the event in it: the episode, its refs and its members
    /// each in one statement. The id is derived from the event, so a retried transaction opens the same
    /// episode. Returns the episode as the plan needs it: exactly what was just written, not read back.
    async fn open(
        &self,
        tx: &mut Tx,
        event: &mut CrisisEvent,
        key: Option<&SubjectKey>,
        now: DateTime<Utc>,
    ) -> Result<EpisodeSnapshot, StoreError> {
        let id = EpisodeId(derived_id("episode", &[&event.event_id.to_string()]));
        event.episode.episode_id = Some(id);
        let joined = memberships(event, true);
        let stored: Vec<_> =
            joined.iter().map(|(agency, relation)| (agency.clone(), stored_relation(*relation))).collect();
        let new = NewEpisode {
            id,
            originator: event.source.agency.clone(),
            opened_by: event.event_id,
            opened_at: now,
            feedback_due_at: Some(now + self.feedback_due),
        };
        tx.open_episode_with(&new, &event.episode.refs, &stored).await?;
        if let Some(key) = key {
            tx.add_subject_key(id, key, now).await?;
        }
        tx.record_event(id, event).await?;
        let mut members: BTreeMap<AgencyId, BTreeSet<Relation>> = BTreeMap::new();
        members.entry(event.source.agency.clone()).or_default().insert(Relation::Originator);
        for (agency, relation) in joined {
            members.entry(agency).or_default().insert(relation);
        }
        Ok(EpisodeSnapshot {
            id,
            state: concordat_policy::EpisodeState::Open,
            members,
            refs: opened_refs(id, &event.episode.refs),
            opened_now: true,
        })
    }

    /// Records `event` in an episode it joins, with its refs, subject key and the relations its source
    /// earns, and returns the episode as the plan needs it. The episode's members and refs are read once,
    /// before anything is written, and what this event adds is written only when it is new. `state` is
    /// the episode's state when the caller already read it in this transaction; otherwise it is read.
    async fn join(
        &self,
        tx: &mut Tx,
        event: &CrisisEvent,
        episode: EpisodeId,
        key: Option<&SubjectKey>,
        state: Option<concordat_store::EpisodeState>,
        now: DateTime<Utc>,
    ) -> Result<EpisodeSnapshot, StoreError> {
        let (held, mut refs) = tx.members_and_refs(episode).await?;
        let mut members: BTreeMap<AgencyId, BTreeSet<Relation>> = held
            .into_iter()
            .map(|member| (member.agency, member.relations.into_iter().map(policy_relation).collect()))
            .collect();
        let mut new_refs: Vec<Identifier> =
            event.episode.refs.iter().filter(|identifier| !refs.contains(identifier)).cloned().collect();
        new_refs.sort_by(|a, b| (a.system.as_str(), a.value.as_str()).cmp(&(b.system.as_str(), b.value.as_str())));
        new_refs.dedup();
        if !new_refs.is_empty() {
            tx.add_refs(episode, &new_refs, now).await?;
            refs.extend(new_refs);
        }
        if let Some(key) = key {
            tx.add_subject_key(episode, key, now).await?;
        }
        let joined: Vec<(AgencyId, concordat_store::Relation)> = memberships(event, false)
            .into_iter()
            .filter(|(agency, relation)| members.get(agency).is_none_or(|held| !held.contains(relation)))
            .map(|(agency, relation)| (agency, stored_relation(relation)))
            .collect();
        if !joined.is_empty() {
            tx.add_members(episode, &joined, now).await?;
            for (agency, relation) in joined {
                members.entry(agency).or_default().insert(policy_relation(relation));
            }
        }
        tx.record_event(episode, event).await?;
        let state = match state {
            Some(state) => Some(state),
            None => tx.episode(episode).await?.map(|found| found.state),
        };
        let state = match state {
            Some(concordat_store::EpisodeState::Closed) => concordat_policy::EpisodeState::Closed,
            _ => concordat_policy::EpisodeState::Open,
        };
        Ok(EpisodeSnapshot { id: episode, state, members, refs, opened_now: false })
    }

    async fn write(
        &self,
        tx: &mut Tx,
        plan: &Plan,
        episode: Option<EpisodeId>,
        now: DateTime<Utc>,
        traceparent: &TraceParent,
    ) -> Result<Vec<NewDelivery>, StoreError> {
        let decisions: Vec<_> = plan.decisions.iter().map(|decision| stored_decision(decision, episode, now)).collect();
        tx.insert_decisions(&decisions).await?;
        // One span per decision, in the event's span; a delivery's trace goes on from its decision's.
        let decided: BTreeMap<uuid::Uuid, Option<String>> = plan
            .decisions
            .iter()
            .map(|decision| {
                let (verdict, reason) = match decision.verdict {
                    Verdict::Permit => ("permit", None),
                    Verdict::Deny(reason) => ("deny", Some(reason.as_str())),
                };
                let span = info_span!(
                    "decide",
                    event_id = %decision.event_id,
                    recipient = %decision.recipient,
                    decision = verdict,
                    reason,
                    fields_shared = decision.fields_shared.len(),
                    fields_withheld = decision.fields_withheld.len(),
                );
                (decision.decision_id, concordat_telemetry::trace::traceparent(&span))
            })
            .collect();
        let deliveries: Vec<NewDelivery> = plan
            .deliveries
            .iter()
            .map(|delivery| {
                let traceparent = decided
                    .get(&delivery.decision_id)
                    .and_then(Option::clone)
                    .unwrap_or_else(|| traceparent.child().to_string());
                let mut headers = BTreeMap::from([
                    (KIND_HEADER.to_owned(), delivery.kind.as_str().to_owned()),
                    (DECISION_HEADER.to_owned(), delivery.decision_id.to_string()),
                    (TRACEPARENT_HEADER.to_owned(), traceparent),
                ]);
                if let Some(episode) = delivery.episode_id {
                    headers.insert(EPISODE_HEADER.to_owned(), episode.to_string());
                }
                NewDelivery {
                    delivery_id: DeliveryId(delivery.message_id),
                    event_id: delivery.event_id,
                    decision_id: Some(DecisionId(delivery.decision_id)),
                    recipient: delivery.recipient.clone(),
                    exchange: self.topology.deliver_exchange(),
                    routing_key: delivery.recipient.to_string(),
                    content_type: delivery.content_type.to_owned(),
                    headers,
                    body: delivery.body.clone(),
                    created_at: now,
                }
            })
            .collect();
        tx.enqueue_all(&deliveries).await?;
        Ok(deliveries)
    }
}

/// A committed decision as the metrics count it: the recipient, and the reason when it was a denial.
type Counted = (AgencyId, Option<&'static str>);

/// What a transaction wrote that matters once it commits: its decisions, for the metrics, and its outbox
/// rows, for the relay.
#[derive(Default)]
struct Written {
    verdicts: Vec<Counted>,
    deliveries: Vec<PendingDelivery>,
    /// Per routed event: its source, its decisions and the audit records it queued.
    stored: Vec<(AgencyId, usize, usize)>,
}

impl Written {
    /// Adds what routing `event` wrote: its deliveries, its verdicts and its count of stored records.
    fn add(&mut self, event: &CrisisEvent, plan: &Plan, deliveries: Vec<NewDelivery>, audit: usize) {
        // Each row as the relay would read it back: with when the gateway received the event it delivers.
        let received = |id: EventId| {
            std::iter::once(event)
                .chain(&plan.derived)
                .find(|known| known.event_id == id)
                .map(|known| known.provenance.received_at.to_utc())
        };
        self.deliveries.extend(deliveries.into_iter().map(|delivery| {
            let received_at = received(delivery.event_id);
            PendingDelivery::enqueued(delivery, received_at)
        }));
        self.verdicts.extend(plan.decisions.iter().map(|decision| {
            let reason = match decision.verdict {
                Verdict::Permit => None,
                Verdict::Deny(reason) => Some(reason.as_str()),
            };
            (decision.recipient.clone(), reason)
        }));
        self.stored.push((event.source.agency.clone(), plan.decisions.len(), audit));
    }
}

fn count_decisions(verdicts: &[Counted]) {
    for (recipient, reason) in verdicts {
        let verdict = if reason.is_some() { "deny" } else { "permit" };
        concordat_telemetry::inc(
            "concordat_decisions_total",
            &[("recipient", recipient.as_str()), ("verdict", verdict)],
        );
        if let Some(reason) = reason {
            concordat_telemetry::inc("concordat_denials_total", &[("reason", reason)]);
        }
    }
}

/// An event to route, with the trace context it came with and the span its routing is logged in.
#[derive(Debug)]
pub struct Routable {
    /// The event.
    pub event: CrisisEvent,
    /// Its message's `traceparent` (a new root when it had none): the deliveries' trace context when spans
    /// are not exported.
    pub traceparent: TraceParent,
    /// Its `route` span (see [`route_span`]).
    pub span: tracing::Span,
}

impl Routable {
    /// `event` with the trace context it came with, in a [`route_span`] of its own.
    pub fn new(event: CrisisEvent, traceparent: TraceParent) -> Self {
        let span = route_span(&event);
        Self { event, traceparent, span }
    }
}

/// The span an event's routing is logged in: ids and kinds only; `episode` and `outcome` are recorded when
/// they are known.
pub fn route_span(event: &CrisisEvent) -> tracing::Span {
    info_span!(
        "route",
        event_id = %event.event_id,
        kind = %event.kind,
        agency = %event.source.agency,
        episode = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// How a routing result settles its message, logged in the event's span.
fn outcome(result: Result<Routed, RouteError>) -> Outcome {
    match result {
        Ok(Routed::Duplicate) => {
            tracing::Span::current().record("outcome", "duplicate");
            info!(message = "Already routed; acking the redelivery.");
            Outcome::Ack
        }
        Ok(Routed::Done { episode, decisions, deliveries }) => {
            let episode = episode.map(|id| id.to_string()).unwrap_or_default();
            tracing::Span::current().record("outcome", "routed").record("episode", episode.as_str());
            info!(message = "Routed.", episode, decisions, deliveries);
            Outcome::Ack
        }
        Err(error @ (RouteError::Conflict(_) | RouteError::Render { .. })) => {
            tracing::Span::current().record("outcome", "dead_letter");
            warn!(message = "Dead-lettering the event.", %error);
            Outcome::DeadLetter { reason: error.to_string() }
        }
        Err(RouteError::Store(error)) => {
            tracing::Span::current().record("outcome", "retry");
            // Transient or not, a retry is safe (nothing committed); the delivery limit turns a persistent
            // failure into a dead letter with this reason.
            warn!(message = "Store failed; the event will be retried.", %error);
            Outcome::Retry { reason: format!("store: {error}") }
        }
    }
}

// The store and the policy each name the relations; the two lists are the same three words.
fn stored_relation(relation: Relation) -> concordat_store::Relation {
    match relation {
        Relation::Originator => concordat_store::Relation::Originator,
        Relation::Contributor => concordat_store::Relation::Contributor,
        Relation::Responder => concordat_store::Relation::Responder,
    }
}

fn policy_relation(relation: concordat_store::Relation) -> Relation {
    match relation {
        concordat_store::Relation::Originator => Relation::Originator,
        concordat_store::Relation::Contributor => Relation::Contributor,
        concordat_store::Relation::Responder => Relation::Responder,
    }
}

/// The refs of an episode just opened, as the store lists them (`Tx::episode_refs`): its own id and the
/// opening event's refs, all added at one time, so in order of system and value.
/// The memberships `event` earns its source (and the agency it refers to, as a responder).
fn memberships(event: &CrisisEvent, opened: bool) -> Vec<(AgencyId, Relation)> {
    let mut joined: Vec<(AgencyId, Relation)> =
        relations_earned(event, opened).into_iter().map(|relation| (event.source.agency.clone(), relation)).collect();
    if let Some(referred) = event.details.referral.as_ref().and_then(|referral| referral.to_agency.as_ref()) {
        joined.push((referred.clone(), Relation::Responder));
    }
    joined
}

fn opened_refs(episode: EpisodeId, refs: &[Identifier]) -> Vec<Identifier> {
    let own = NonEmptyString::new(EPISODE_SYSTEM)
        .ok()
        .zip(NonEmptyString::new(episode.to_string()).ok())
        .map(|(system, value)| Identifier { system, value });
    let mut all: Vec<Identifier> = own.into_iter().chain(refs.iter().cloned()).collect();
    all.sort_by(|a, b| (a.system.as_str(), a.value.as_str()).cmp(&(b.system.as_str(), b.value.as_str())));
    all.dedup();
    all
}

/// The identifiers that may correlate an event: its refs and the episode id it states.
fn correlating_refs(event: &CrisisEvent) -> Vec<Identifier> {
    let mut refs = event.episode.refs.clone();
    if let Some(episode) = event.episode.episode_id
        && let (Ok(system), Ok(value)) = (NonEmptyString::new(EPISODE_SYSTEM), NonEmptyString::new(episode.to_string()))
    {
        refs.push(Identifier { system, value });
    }
    refs
}

fn stored_decision(decision: &Decision, episode: Option<EpisodeId>, now: DateTime<Utc>) -> concordat_store::Decision {
    let (verdict, reason) = match decision.verdict {
        Verdict::Permit => (concordat_store::Verdict::Permit, "permit".to_owned()),
        Verdict::Deny(reason) => (concordat_store::Verdict::Deny, reason.as_str().to_owned()),
    };
    concordat_store::Decision {
        decision_id: DecisionId(decision.decision_id),
        event_id: decision.event_id,
        episode_id: episode,
        recipient: decision.recipient.clone(),
        verdict,
        reason,
        agreement_ids: decision.permitted_by.iter().map(|ground| ground.agreement.clone()).collect(),
        purposes: decision.permitted_by.iter().map(|ground| ground.purpose.clone()).collect(),
        lawful_bases: decision.permitted_by.iter().map(|ground| ground.lawful_basis.clone()).collect(),
        fields_shared: decision.fields_shared.iter().map(|field| field.pointer().to_owned()).collect(),
        fields_withheld: decision.fields_withheld.iter().map(|field| field.pointer().to_owned()).collect(),
        policy_version: decision.policy_version.to_string(),
        decided_at: now,
    }
}

/// The most events the router commits in one transaction (bounded by the consumer's prefetch as well).
pub const ROUTER_BATCH: usize = 32;

/// Consumes `concordat.router` until `shutdown` fires, routing what has arrived in batches of up to
/// [`ROUTER_BATCH`] events, one transaction each, acked after the commit.
///
/// # Errors
/// [`ConsumeError`] for a configuration or topology the broker refuses; lost connections are retried.
pub async fn run_router(router: Router, bus: BusConfig, shutdown: CancellationToken) -> Result<(), ConsumeError> {
    let subscription = Subscription::router(router.topology.clone(), "concordat-router");
    consume_batches(bus, subscription, shutdown, ROUTER_BATCH, move |messages| {
        let router = router.clone();
        async move { router.handle_batch(messages).await }
    })
    .await
}

/// Episode housekeeping, every `every` until `shutdown` fires: closes the episodes with no event for
/// `quiet` (reason `quiet`, audited) and reports, by count and episode id (no personal data), the episodes
/// whose originator's outcome feedback is overdue. A failed round is logged and tried again next time.
pub async fn run_housekeeping(store: Store, quiet: Duration, every: Duration, shutdown: CancellationToken) {
    let quiet = chrono::Duration::from_std(quiet).unwrap_or(chrono::Duration::MAX);
    let mut reported = BTreeSet::new();
    loop {
        let now = Utc::now();
        match store.close_quiet_episodes(now - quiet, now).await {
            Ok(closed) if !closed.is_empty() => info!(message = "Closed quiet episodes.", count = closed.len()),
            Ok(_) => {}
            Err(error) => warn!(message = "Closing quiet episodes failed; trying again later.", %error),
        }
        match store.episodes_awaiting_feedback(now).await {
            Ok(awaiting) => {
                let open = awaiting.iter().filter(|episode| episode.state == concordat_store::EpisodeState::Open);
                concordat_telemetry::set("concordat_feedback_outstanding", &[], open.count() as f64);
            }
            Err(error) => warn!(message = "Reading outstanding feedback failed; trying again later.", %error),
        }
        match store.episodes_feedback_overdue(now).await {
            Ok(overdue) => {
                concordat_telemetry::set("concordat_feedback_overdue", &[], overdue.len() as f64);
                // Remember only what is still overdue, so the set stays as small as the backlog.
                reported.retain(|id| overdue.iter().any(|episode| episode.id == *id));
                for episode in overdue.iter().filter(|episode| reported.insert(episode.id)) {
                    warn!(
                        message = "Outcome feedback to the originator is overdue.",
                        episode_id = %episode.id,
                        originator = %episode.originator,
                    );
                }
            }
            Err(error) => warn!(message = "Reading overdue feedback failed; trying again later.", %error),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}
