//! The outbox relay: publishes committed deliveries to `concordat.deliver` with confirms, and marks them
//! sent once RabbitMQ confirmed them.
//!
//! The outbox in the store is the record: a delivery is pending until it is marked sent, and a crash at any
//! point leaves it pending, to be published again under the same message id. How the relay learns of a
//! pending row is a matter of speed, not of safety:
//!
//! - **Catching up** (at start, and after any failure): the relay reads the outbox, oldest first, publishes
//!   what it read, marks it sent and reads again, until nothing is pending. Rows the router hands over
//!   meanwhile are dropped: they are in the outbox and the reading takes them, in order.
//! - **Handed over** (from then on, when a router runs in the same process): the router gives the relay the
//!   rows of each transaction once it committed, so the relay publishes them without reading them back. A
//!   row handed over is *in flight* until it is marked sent, and publishing never waits for the marks: they
//!   ride on the router's next transaction ([`Tx::mark_sent_at_flush`]), which takes every mark due, so they
//!   cost no commit and no turn at the store's write lock of their own. When the router has no transaction
//!   within [`MARK_WAIT`] (it is idle), a task of the relay's writes them.
//! - **Looking** (every [`RELAY_IDLE`] while rows are handed over): rows that did not come through the
//!   handoff (written by another process, retried from the command line, or dropped from a full handoff)
//!   are read from the outbox once they are older than [`HANDOFF_GRACE`], so that a row still on its way
//!   through the handoff is not published twice. Rows in flight are skipped.
//!
//! Order: rows go out in the order they were committed, by either path; only a row that missed the handoff
//! can go out after rows committed later than it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use concordat_bus::{Backoff, OutgoingMessage, Publisher, TRACEPARENT_HEADER, TraceParent};
use concordat_store::{DeliveryId, PendingDelivery, Store, StoreError, Tx};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn};

use crate::shell::KIND_HEADER;

/// How long the relay waits before looking at the outbox again when it found nothing there: rows written
/// by another process (a retry from the command line) wait at most this long (plus [`HANDOFF_GRACE`]
/// while rows are handed over).
const RELAY_IDLE: Duration = Duration::from_millis(500);
/// How many outbox rows the relay publishes in one confirmed batch.
const RELAY_BATCH: usize = 64;
/// While rows are handed over, how old a pending row must be before a look at the outbox takes it: a
/// younger one may still be on its way through the handoff. Rows reach the relay within milliseconds of
/// their commit; their age counts from before it (`created_at` is the routing time).
const HANDOFF_GRACE: Duration = Duration::from_secs(2);
/// How many committed transactions' rows may wait in the handoff. When it is full the router does not
/// wait: the rows are in the outbox, and the relay's next look takes them.
const HANDOFF_CAPACITY: usize = 1024;
/// How long a confirmed delivery waits for the router's next transaction to mark it sent before the
/// relay marks it in a transaction of its own.
const MARK_WAIT: Duration = Duration::from_millis(50);
/// The first wait after a failed round; it doubles with each failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The waits after failed rounds: [`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`].
fn backoff() -> Backoff {
    Backoff::try_new(FIRST_BACKOFF, MAX_BACKOFF).expect("the relay's backoff constants are valid")
}

/// What the router and the relay of one process share.
#[derive(Debug, Default)]
struct Shared {
    /// Deliveries published or being published and not yet marked sent: a look at the outbox skips them.
    in_flight: Mutex<HashSet<DeliveryId>>,
    /// Deliveries RabbitMQ confirmed, waiting to be marked sent, oldest first.
    due: Mutex<Vec<Confirmed>>,
    /// Tells the marking task that marks fell due.
    due_now: Notify,
}

impl Shared {
    fn in_flight(&self) -> MutexGuard<'_, HashSet<DeliveryId>> {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn due(&self) -> MutexGuard<'_, Vec<Confirmed>> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts newly confirmed deliveries in line to be marked, and tells the marking task.
    fn fall_due(&self, group: Confirmed) {
        self.due().push(group);
        self.due_now.notify_one();
    }

    /// Puts marks a transaction took and did not commit back at the head of the line.
    fn put_back(&self, mut groups: Vec<Confirmed>) {
        if groups.is_empty() {
            return;
        }
        {
            let mut due = self.due();
            groups.append(&mut due);
            *due = groups;
        }
        self.due_now.notify_one();
    }

    /// Takes marked rows out of flight.
    fn land(&self, ids: impl IntoIterator<Item = DeliveryId>) {
        let mut in_flight = self.in_flight();
        for id in ids {
            in_flight.remove(&id);
        }
    }
}

/// Marks taken by a transaction ([`Handoff::mark_in`]): once it commits, [`TakenMarks::committed`] takes
/// their rows out of flight; dropped otherwise, they fall due again.
#[derive(Debug)]
pub struct TakenMarks {
    shared: Arc<Shared>,
    groups: Vec<Confirmed>,
}

impl TakenMarks {
    /// The transaction that carried the marks committed.
    pub fn committed(mut self) {
        let groups = std::mem::take(&mut self.groups);
        self.shared.land(groups.into_iter().flat_map(|(ids, _)| ids));
    }
}

impl Drop for TakenMarks {
    fn drop(&mut self) {
        self.shared.put_back(std::mem::take(&mut self.groups));
    }
}

/// The router's end of the handoff: [`Handoff::hand`] gives the relay the outbox rows of a transaction
/// that committed, and [`Handoff::mark_in`] has a transaction carry the relay's marks.
#[derive(Debug, Clone)]
pub struct Handoff {
    rows: mpsc::Sender<Vec<PendingDelivery>>,
    shared: Arc<Shared>,
}

impl Handoff {
    /// Has `tx` mark sent, when it flushes, every delivery the relay has had confirmed and not yet marked.
    /// Call [`TakenMarks::committed`] once `tx` committed.
    pub fn mark_in(&self, tx: &mut Tx) -> TakenMarks {
        let taken = self.take_marks();
        for (ids, at) in &taken.groups {
            tx.mark_sent_at_flush(ids, *at);
        }
        taken
    }

    fn take_marks(&self) -> TakenMarks {
        TakenMarks { shared: self.shared.clone(), groups: std::mem::take(&mut *self.shared.due()) }
    }

    /// Hands committed rows to the relay, without waiting. When the relay is far behind or gone, the rows
    /// stay for its next look at the outbox.
    pub fn hand(&self, rows: Vec<PendingDelivery>) {
        if rows.is_empty() {
            return;
        }
        match self.rows.try_send(rows) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(rows)) => {
                debug!(message = "The relay's handoff is full; the rows wait for its next look.", rows = rows.len());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The relay's end of the handoff, for [`run_relay`].
#[derive(Debug)]
pub struct HandedRows {
    rows: mpsc::Receiver<Vec<PendingDelivery>>,
    shared: Arc<Shared>,
}

/// A handoff from a router to the relay in the same process.
#[must_use]
pub fn handoff() -> (Handoff, HandedRows) {
    let (sender, receiver) = mpsc::channel(HANDOFF_CAPACITY);
    let shared = Arc::new(Shared::default());
    (Handoff { rows: sender, shared: shared.clone() }, HandedRows { rows: receiver, shared })
}

/// Why a relay round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading or marking the outbox failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// RabbitMQ did not confirm the batch.
    #[error("publish: {0}")]
    Publish(#[from] concordat_bus::PublishError),
}

/// Confirmed deliveries on their way to being marked sent: the ids, and when RabbitMQ confirmed them.
type Confirmed = (Vec<DeliveryId>, DateTime<Utc>);

/// Publishes the outbox to `concordat.deliver` with confirms and marks rows sent only after RabbitMQ
/// confirmed them (see the module's documentation for how it finds them). A crash between the confirm and
/// the mark republishes the same message ids; consumers dedupe by message id. `handed` is the relay's end
/// of a [`handoff`] from a router in the same process; without it the relay reads every row from the
/// outbox. Runs until `shutdown` fires, then writes the marks it holds.
pub async fn run_relay(
    store: Store,
    publisher: Arc<Publisher>,
    handed: Option<HandedRows>,
    shutdown: CancellationToken,
) {
    let shared = handed.as_ref().map_or_else(Arc::default, |handed| handed.shared.clone());
    let relay_done = CancellationToken::new();
    let marker = tokio::spawn(run_marker(store.clone(), shared.clone(), relay_done.clone()));
    let relay = Relay { store, publisher, shared };
    relay.run(handed, &shutdown).await;
    relay_done.cancel();
    if let Err(error) = marker.await {
        warn!(message = "The relay's marking task failed.", %error);
    }
}

struct Relay {
    store: Store,
    publisher: Arc<Publisher>,
    shared: Arc<Shared>,
}

/// What the relay is doing: reading the outbox until it is empty, or taking the rows handed over.
enum Mode {
    CatchingUp,
    /// Since when: rows enqueued before it were (or are being) read from the outbox.
    Handing {
        since: DateTime<Utc>,
    },
}

impl Relay {
    async fn run(&self, mut handed: Option<HandedRows>, shutdown: &CancellationToken) {
        let mut mode = Mode::CatchingUp;
        let mut backoff = backoff();
        let mut next_look = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            let failed = match mode {
                Mode::CatchingUp => {
                    // What was handed over is in the outbox too; reading it keeps the order.
                    if let Some(handed) = handed.as_mut() {
                        while handed.rows.try_recv().is_ok() {}
                    }
                    let since = Utc::now();
                    match self.read_and_publish(None).await {
                        Ok(0) if handed.is_some() => {
                            debug!(message = "The outbox is caught up; taking rows from the router.");
                            mode = Mode::Handing { since };
                            next_look = tokio::time::Instant::now() + RELAY_IDLE;
                            None
                        }
                        Ok(0) => {
                            idle(RELAY_IDLE, shutdown).await;
                            None
                        }
                        Ok(_) => None,
                        Err(error) => Some(error),
                    }
                }
                Mode::Handing { since } => {
                    let Some(rows) = handed.as_mut() else {
                        mode = Mode::CatchingUp;
                        continue;
                    };
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        received = rows.rows.recv() => match received {
                            Some(first) => self.publish_handed(first, rows, since).await.err(),
                            None => {
                                // The router is gone: read the outbox from now on.
                                handed = None;
                                mode = Mode::CatchingUp;
                                None
                            }
                        },
                        () = tokio::time::sleep_until(next_look) => {
                            let cutoff = Utc::now() - chrono::Duration::from_std(HANDOFF_GRACE).unwrap_or_default();
                            let result = self.read_and_publish(Some(cutoff)).await;
                            if !matches!(result, Ok(1..)) {
                                next_look = tokio::time::Instant::now() + RELAY_IDLE;
                            }
                            result.err()
                        }
                    }
                }
            };
            match failed {
                None => backoff.reset(),
                Some(error) => {
                    let delay = backoff.next_delay();
                    warn!(message = "Relay failed; retrying.", %error, delay_ms = delay.as_millis());
                    idle(delay, shutdown).await;
                    mode = Mode::CatchingUp;
                }
            }
        }
    }

    /// Publishes the rows handed over: `first` and whatever else is waiting, in batches of up to
    /// [`RELAY_BATCH`]. Rows enqueued before `since`, or already in flight, were read from the outbox and
    /// are skipped.
    async fn publish_handed(
        &self,
        first: Vec<PendingDelivery>,
        handed: &mut HandedRows,
        since: DateTime<Utc>,
    ) -> Result<usize, RelayError> {
        let mut rows = first;
        while rows.len() < RELAY_BATCH
            && let Ok(more) = handed.rows.try_recv()
        {
            rows.extend(more);
        }
        let rows: Vec<PendingDelivery> = {
            let mut in_flight = self.shared.in_flight();
            rows.into_iter().filter(|row| row.created_at >= since && in_flight.insert(row.delivery_id)).collect()
        };
        let mut sent = 0;
        let mut rest = rows.as_slice();
        while !rest.is_empty() {
            let (batch, after) = rest.split_at(rest.len().min(RELAY_BATCH));
            rest = after;
            match self.publish(batch).await {
                Ok(confirmed) => {
                    sent += batch.len();
                    // Out of flight once marked: by the router's next transaction, or the marking task.
                    let ids = batch.iter().map(|row| row.delivery_id).collect();
                    self.shared.fall_due((ids, confirmed));
                }
                Err(error) => {
                    // Neither these nor the rest are marked: the catching-up read takes them again.
                    self.land(batch);
                    self.land(rest);
                    return Err(error);
                }
            }
        }
        Ok(sent)
    }

    /// Reads up to [`RELAY_BATCH`] pending rows (only those enqueued before `cutoff`, when given) that are
    /// not in flight, publishes them, and marks them sent before returning how many there were.
    async fn read_and_publish(&self, cutoff: Option<DateTime<Utc>>) -> Result<usize, RelayError> {
        let limit = u32::try_from(RELAY_BATCH).unwrap_or(u32::MAX);
        let mut rows = self.store.pending_outbox_created_before(limit, cutoff).await?;
        {
            let mut in_flight = self.shared.in_flight();
            rows.retain(|row| in_flight.insert(row.delivery_id));
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let result = async {
            let confirmed = self.publish(&rows).await?;
            let ids: Vec<DeliveryId> = rows.iter().map(|row| row.delivery_id).collect();
            self.store.mark_sent(&ids, confirmed).await?;
            Ok(rows.len())
        }
        .await;
        self.land(&rows);
        result
    }

    /// Takes rows out of flight: marked, or left pending for the next read.
    fn land(&self, rows: &[PendingDelivery]) {
        self.shared.land(rows.iter().map(|row| row.delivery_id));
    }

    /// Publishes one batch with confirms; returns when RabbitMQ confirmed it.
    async fn publish(&self, rows: &[PendingDelivery]) -> Result<DateTime<Utc>, RelayError> {
        // One span per delivery, going on from its decision's; the message names it as the next hop's parent.
        let mut spans = Vec::with_capacity(rows.len());
        let messages: Vec<OutgoingMessage> = rows
            .iter()
            .map(|row| {
                let stored = row.headers.get(TRACEPARENT_HEADER);
                let span = info_span!(
                    "deliver",
                    message_id = %row.delivery_id,
                    event_id = %row.event_id,
                    recipient = %row.recipient,
                    kind = row.headers.get(KIND_HEADER).map_or("unknown", String::as_str),
                    exchange = %row.exchange,
                    outcome = tracing::field::Empty,
                );
                if let Some(parent) = stored {
                    concordat_telemetry::trace::continue_trace(&span, parent);
                }
                let traceparent = concordat_telemetry::trace::traceparent(&span)
                    .or_else(|| stored.cloned())
                    .and_then(|value| value.parse::<TraceParent>().ok())
                    .unwrap_or_else(TraceParent::new_root);
                spans.push(span);
                OutgoingMessage {
                    exchange: row.exchange.clone(),
                    routing_key: row.routing_key.clone(),
                    message_id: row.delivery_id.to_string(),
                    content_type: row.content_type.clone(),
                    body: row.body.clone(),
                    headers: row.headers.clone(),
                    traceparent,
                }
            })
            .collect();
        let started = std::time::Instant::now();
        let published = self.publisher.publish_batch(&messages).await;
        debug!(message = "Published a batch.", rows = rows.len(), ms = started.elapsed().as_secs_f64() * 1000.0);
        let outcome = if published.is_ok() { "confirmed" } else { "not_confirmed" };
        for span in &spans {
            span.record("outcome", outcome);
        }
        published?;
        let confirmed = Utc::now();
        for row in rows {
            concordat_telemetry::inc("concordat_deliveries_sent_total", &[("recipient", row.recipient.as_str())]);
            if let Some(received) = row.received_at {
                let seconds = (confirmed - received).to_std().map_or(0.0, |elapsed| elapsed.as_secs_f64());
                concordat_telemetry::observe("concordat_delivery_seconds", &[], seconds);
            }
        }
        info!(message = "Relayed deliveries.", count = rows.len());
        Ok(confirmed)
    }
}

/// Marks sent what the router's transactions did not take within [`MARK_WAIT`] of falling due, all of it
/// in one transaction, and takes it out of flight. A failed transaction puts the marks back in line (the
/// rows stay in flight, so they are not published again meanwhile) and is tried again after a wait. Once
/// `relay_done` fires, it writes what is due and ends; what cannot be marked then is left pending, to be
/// published again under the same ids at the next start.
async fn run_marker(store: Store, shared: Arc<Shared>, relay_done: CancellationToken) {
    let mut backoff = backoff();
    loop {
        if shared.due().is_empty() {
            tokio::select! {
                () = relay_done.cancelled() => break,
                () = shared.due_now.notified() => {}
            }
        }
        // The router's next transaction may take them first.
        idle(MARK_WAIT, &relay_done).await;
        let groups = std::mem::take(&mut *shared.due());
        if groups.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        match store.mark_sent_in_groups(&groups).await {
            Ok(marked) => {
                debug!(
                    message = "Marked deliveries sent.",
                    groups = groups.len(),
                    rows = marked,
                    ms = started.elapsed().as_secs_f64() * 1000.0
                );
                shared.land(groups.into_iter().flat_map(|(ids, _)| ids));
                backoff.reset();
            }
            Err(error) if relay_done.is_cancelled() => {
                warn!(message = "Marking deliveries sent failed at shutdown; they will be published again.", %error);
                break;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(message = "Marking deliveries sent failed; retrying.", %error, delay_ms = delay.as_millis());
                shared.put_back(groups);
                idle(delay, &relay_done).await;
            }
        }
    }
}

/// Waits `wait`, or less when `shutdown` fires.
async fn idle(wait: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(wait) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> DeliveryId {
        DeliveryId(uuid::Uuid::from_u128(n))
    }

    fn in_flight(shared: &Shared) -> Vec<DeliveryId> {
        let mut ids: Vec<DeliveryId> = shared.in_flight().iter().copied().collect();
        ids.sort_by_key(|id| id.0);
        ids
    }

    /// Two confirmed groups in flight, as the relay leaves them.
    fn confirmed(shared: &Shared) -> DateTime<Utc> {
        let at = Utc::now();
        shared.in_flight().extend([id(1), id(2), id(3)]);
        shared.fall_due((vec![id(1), id(2)], at));
        shared.fall_due((vec![id(3)], at));
        at
    }

    #[test]
    fn marks_a_transaction_took_land_when_it_commits() {
        let (handoff, _rows) = handoff();
        confirmed(&handoff.shared);
        let taken = handoff.take_marks();
        assert!(handoff.shared.due().is_empty(), "taken by one transaction, not offered to another");
        assert_eq!(in_flight(&handoff.shared), [id(1), id(2), id(3)], "in flight until the commit");
        taken.committed();
        assert!(in_flight(&handoff.shared).is_empty());
        assert!(handoff.shared.due().is_empty());
    }

    #[test]
    fn marks_of_a_transaction_that_did_not_commit_fall_due_again_first() {
        let (handoff, _rows) = handoff();
        let at = confirmed(&handoff.shared);
        let taken = handoff.take_marks();
        let later = at + chrono::Duration::milliseconds(5);
        handoff.shared.fall_due((vec![id(4)], later));
        drop(taken);
        let due: Vec<Confirmed> = handoff.shared.due().clone();
        assert_eq!(due, [(vec![id(1), id(2)], at), (vec![id(3)], at), (vec![id(4)], later)]);
        assert_eq!(in_flight(&handoff.shared), [id(1), id(2), id(3)], "still in flight: not published again");
    }
}
