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
//!   rows of each transaction once it committed, so the relay publishes them without reading them back. The
//!   marks are written by a task of their own, several confirmed batches in one transaction, so publishing
//!   never waits for the store's write lock. A row handed over is *in flight* until it is marked.
//! - **Looking** (every [`RELAY_IDLE`] while rows are handed over): rows that did not come through the
//!   handoff (written by another process, retried from the command line, or dropped from a full handoff)
//!   are read from the outbox once they are older than [`HANDOFF_GRACE`], so that a row still on its way
//!   through the handoff is not published twice. Rows in flight are skipped.
//!
//! Order: rows go out in the order they were committed, by either path; only a row that missed the handoff
//! can go out after rows committed later than it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use concordat_bus::{OutgoingMessage, Publisher, TRACEPARENT_HEADER, TraceParent};
use concordat_store::{DeliveryId, PendingDelivery, Store, StoreError};
use tokio::sync::mpsc;
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
/// The first wait after a failed round; it doubles with each failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The router's end of the handoff: [`Handoff::hand`] gives the relay the outbox rows of a transaction
/// that committed.
#[derive(Debug, Clone)]
pub struct Handoff {
    rows: mpsc::Sender<Vec<PendingDelivery>>,
}

impl Handoff {
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
}

/// A handoff from a router to the relay in the same process.
#[must_use]
pub fn handoff() -> (Handoff, HandedRows) {
    let (sender, receiver) = mpsc::channel(HANDOFF_CAPACITY);
    (Handoff { rows: sender }, HandedRows { rows: receiver })
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

/// Deliveries published or being published and not yet marked sent: a look at the outbox skips them.
type InFlight = Arc<Mutex<HashSet<DeliveryId>>>;

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
    let in_flight = InFlight::default();
    let (confirmed, to_mark) = mpsc::unbounded_channel();
    let marker = tokio::spawn(run_marker(store.clone(), to_mark, in_flight.clone(), shutdown.clone()));
    let relay = Relay { store, publisher, in_flight, confirmed };
    relay.run(handed, &shutdown).await;
    drop(relay);
    if let Err(error) = marker.await {
        warn!(message = "The relay's marking task failed.", %error);
    }
}

struct Relay {
    store: Store,
    publisher: Arc<Publisher>,
    in_flight: InFlight,
    confirmed: mpsc::UnboundedSender<Confirmed>,
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
        let mut backoff = FIRST_BACKOFF;
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
                None => backoff = FIRST_BACKOFF,
                Some(error) => {
                    warn!(message = "Relay failed; retrying.", %error, delay_ms = backoff.as_millis());
                    idle(backoff, shutdown).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
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
            let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
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
                    // The marking task takes them out of flight once they are marked.
                    let ids = batch.iter().map(|row| row.delivery_id).collect();
                    if self.confirmed.send((ids, confirmed)).is_err() {
                        self.land(batch);
                    }
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
            let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
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
        let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        for row in rows {
            in_flight.remove(&row.delivery_id);
        }
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
        let published = self.publisher.publish_batch(&messages).await;
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

/// Marks confirmed deliveries sent, taking whatever has been confirmed since its last transaction into the
/// next, and takes them out of flight once marked. A failed transaction is tried again (the rows stay in
/// flight, so they are not published again meanwhile) until `shutdown`; after it, what cannot be marked is
/// left pending, to be published again under the same ids at the next start. Ends when the relay has
/// gone and everything it confirmed was dealt with.
async fn run_marker(
    store: Store,
    mut confirmed: mpsc::UnboundedReceiver<Confirmed>,
    in_flight: InFlight,
    shutdown: CancellationToken,
) {
    while let Some(first) = confirmed.recv().await {
        let mut groups = vec![first];
        while let Ok(more) = confirmed.try_recv() {
            groups.push(more);
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            match store.mark_sent_in_groups(&groups).await {
                Ok(_) => break,
                Err(error) if shutdown.is_cancelled() => {
                    warn!(message = "Marking deliveries sent failed at shutdown; they will be published again.", %error);
                    break;
                }
                Err(error) => {
                    warn!(message = "Marking deliveries sent failed; retrying.", %error, delay_ms = backoff.as_millis());
                    idle(backoff, &shutdown).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let mut in_flight = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        for id in groups.iter().flat_map(|(ids, _)| ids) {
            in_flight.remove(id);
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
