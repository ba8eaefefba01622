//! The outbox relay against the real RabbitMQ and a real store: rows the router hands over go out at once,
//! rows written elsewhere are found in the outbox, and every row reaches its inbox once and ends up marked
//! sent, including across a shutdown.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use concordat_bus::{IncomingMessage, Outcome, Publisher, Subscription, Topology, consume};
use concordat_episode::{AgencyId, EventId};
use concordat_router::{HandedRows, Handoff, handoff, run_relay};
use concordat_store::{DeliveryId, NewDelivery, PendingDelivery, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::bus;

const AGENCY: &str = "northvale-mh";

struct Harness {
    topology: Topology,
    store: Store,
    publisher: Arc<Publisher>,
    inbox: mpsc::UnboundedReceiver<IncomingMessage>,
    consuming: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info,lapin=error").try_init();
        let topology =
            Topology::with_prefix(format!("t-{}", Uuid::new_v4().simple()), vec![AGENCY.to_owned()]).unwrap();
        topology.declare(&bus()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("concordat.db").display())).await.unwrap();
        let publisher = Arc::new(Publisher::connect(&bus(), "relay-test").await.unwrap());
        let consuming = CancellationToken::new();
        let (sender, inbox) = mpsc::unbounded_channel();
        let subscription = Subscription::inbox(topology.clone(), AGENCY, "relay-test-inbox").unwrap();
        tokio::spawn(consume(bus(), subscription, consuming.clone(), move |message| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(message);
                Outcome::Ack
            }
        }));
        Self { topology, store, publisher, inbox, consuming, _dir: dir }
    }

    fn relay(&self, handed: Option<HandedRows>) -> (CancellationToken, JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(run_relay(self.store.clone(), self.publisher.clone(), handed, shutdown.clone()));
        (shutdown, running)
    }

    /// Commits `count` deliveries to the outbox, as the router would, and returns them as handed over.
    async fn enqueue(&self, count: usize) -> Vec<PendingDelivery> {
        let now = Utc::now();
        let deliveries: Vec<NewDelivery> = (0..count)
            .map(|index| NewDelivery {
                delivery_id: DeliveryId(Uuid::new_v4()),
                event_id: EventId(Uuid::new_v4()),
                decision_id: None,
                recipient: AgencyId::new(AGENCY).unwrap(),
                exchange: self.topology.deliver_exchange(),
                routing_key: AGENCY.to_owned(),
                content_type: "application/json".to_owned(),
                headers: BTreeMap::new(),
                body: format!("{{\"n\":{index}}}").into_bytes(),
                created_at: now,
            })
            .collect();
        let mut tx = self.store.begin().await.unwrap();
        tx.enqueue_all(&deliveries).await.unwrap();
        tx.commit().await.unwrap();
        deliveries.into_iter().map(|delivery| PendingDelivery::enqueued(delivery, Some(now))).collect()
    }

    /// The message ids that reach the inbox within `wait`, in order of arrival.
    async fn arrivals(&mut self, expected: usize, wait: Duration) -> Vec<String> {
        let mut ids = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while ids.len() < expected {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(message)) => ids.push(message.message_id().unwrap().to_owned()),
                _ => break,
            }
        }
        // Anything published twice would be right behind.
        while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(700), self.inbox.recv()).await {
            ids.push(message.message_id().unwrap().to_owned());
        }
        ids
    }

    /// Whether no delivery is left pending: every one was marked sent.
    async fn all_marked(&self) -> bool {
        self.store.pending_outbox(1000).await.unwrap().is_empty()
    }

    async fn stop(self) {
        self.consuming.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.topology.delete(&bus()).await.unwrap();
    }
}

fn ids(rows: &[PendingDelivery]) -> Vec<String> {
    rows.iter().map(|row| row.delivery_id.to_string()).collect()
}

/// Waits until the relay has caught up with the (empty) outbox and takes rows from the handoff.
async fn caught_up() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_handed_over_reach_the_inbox_once_in_order_and_are_marked_sent_by_shutdown() {
    let mut harness = Harness::start().await;
    let (hand, handed): (Handoff, HandedRows) = handoff();
    let (shutdown, running) = harness.relay(Some(handed));
    caught_up().await;

    let first = harness.enqueue(3).await;
    hand.hand(first.clone());
    let second = harness.enqueue(70).await;
    hand.hand(second.clone());
    // Well inside the grace before a look at the outbox would take them: these came by the handoff.
    let arrived = harness.arrivals(73, Duration::from_millis(1500)).await;
    let mut expected = ids(&first);
    expected.extend(ids(&second));
    assert_eq!(arrived, expected);

    shutdown.cancel();
    running.await.unwrap();
    assert!(harness.all_marked().await, "the marks were written before the relay stopped");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_missed_the_handoff_are_found_in_the_outbox_and_go_out_once() {
    let mut harness = Harness::start().await;
    let (hand, handed) = handoff();
    let (shutdown, running) = harness.relay(Some(handed));
    caught_up().await;

    // Written by another process: nothing is handed over.
    let elsewhere = harness.enqueue(2).await;
    let handed_over = harness.enqueue(1).await;
    hand.hand(handed_over.clone());
    let arrived = harness.arrivals(3, Duration::from_secs(10)).await;
    let mut expected = ids(&handed_over);
    expected.extend(ids(&elsewhere));
    assert_eq!(arrived, expected, "the handed row at once, the others after the grace, each once");

    shutdown.cancel();
    running.await.unwrap();
    assert!(harness.all_marked().await);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_pending_at_start_go_out_first_and_once_though_they_were_handed_over_too() {
    let mut harness = Harness::start().await;
    // Left pending by a process that stopped before publishing them, and handed over before the relay
    // started reading: the relay reads them from the outbox and drops what was handed.
    let left = harness.enqueue(5).await;
    let (hand, handed) = handoff();
    hand.hand(left.clone());
    let (shutdown, running) = harness.relay(Some(handed));
    let arrived = harness.arrivals(5, Duration::from_secs(10)).await;
    assert_eq!(arrived, ids(&left));

    // Then the handoff takes over.
    caught_up().await;
    let next = harness.enqueue(2).await;
    hand.hand(next.clone());
    assert_eq!(harness.arrivals(2, Duration::from_millis(1500)).await, ids(&next));

    shutdown.cancel();
    running.await.unwrap();
    assert!(harness.all_marked().await);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_handoff_the_relay_reads_every_row_from_the_outbox() {
    let mut harness = Harness::start().await;
    let (shutdown, running) = harness.relay(None);
    caught_up().await;
    let rows = harness.enqueue(4).await;
    assert_eq!(harness.arrivals(4, Duration::from_secs(5)).await, ids(&rows));
    shutdown.cancel();
    running.await.unwrap();
    assert!(harness.all_marked().await);
    harness.stop().await;
}
