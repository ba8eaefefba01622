//! The bus against a real RabbitMQ (`CONCORDAT_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).
//! Each test declares its own topology under a unique prefix and deletes it afterwards; a broker that
//! cannot be reached fails the test.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{close_connections_named, config, message, message_count, take, wait_for_connection, with_topology};
use concordat_bus::{
    ConsumeError, DELIVERY_COUNT_HEADER, ERROR_HEADER, IncomingMessage, ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER, Outcome, PublishError, Publisher, STAGE_HEADER, Stage, Subscription,
    TRACEPARENT_HEADER, Topology, TopologyError, consume, consume_batches, queue_depths,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

const SOON: Duration = Duration::from_secs(20);

/// Publishing to the events exchange and consuming the router queue keeps body, properties and headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_round_trip_keeps_properties_and_headers() {
    let config = config();
    with_topology(&config, &[], |topology| {
        let config = config.clone();
        async move {
            let publisher =
                Publisher::connect(&config, "concordat-bus-test-round-trip").await.expect("publisher connects");
            let mut sent = message(&topology.events_exchange(), "police.met.police.s136_detention", "evt-round-trip-1");
            sent.headers.insert("cloudEvents:specversion".to_owned(), "1.0".to_owned());
            sent.headers.insert("concordat-episode".to_owned(), "ep-1".to_owned());
            publisher.publish(&sent).await.expect("publish is confirmed");

            let (received_tx, mut received) = mpsc::unbounded_channel::<IncomingMessage>();
            let shutdown = CancellationToken::new();
            let consumer = tokio::spawn(consume(
                config.clone(),
                Subscription::router(topology.clone(), "concordat-bus-test-round-trip-consumer"),
                shutdown.clone(),
                move |incoming| {
                    let received_tx = received_tx.clone();
                    async move {
                        let _ = received_tx.send(incoming);
                        Outcome::Ack
                    }
                },
            ));
            let got =
                tokio::time::timeout(SOON, received.recv()).await.expect("delivered in time").expect("one message");
            shutdown.cancel();
            consumer.await.expect("consumer task joins").expect("consumer stops cleanly");

            assert_eq!(got.body(), sent.body.as_slice());
            assert_eq!(got.message_id(), Some("evt-round-trip-1"));
            assert_eq!(got.content_type(), Some("application/json"));
            assert_eq!(got.exchange(), topology.events_exchange());
            assert_eq!(got.routing_key(), "police.met.police.s136_detention");
            assert_eq!(got.header("concordat-kind"), Some("police.s136_detention"));
            assert_eq!(got.header("cloudEvents:specversion"), Some("1.0"));
            assert_eq!(got.header("concordat-episode"), Some("ep-1"));
            assert_eq!(got.header(TRACEPARENT_HEADER), Some(sent.traceparent.to_string().as_str()));
            assert_eq!(got.traceparent(), Some(Ok(sent.traceparent)));
            assert!(!got.redelivered());
            assert_eq!(got.delivery_count(), 1);
            assert_eq!(message_count(&config, &topology.router_queue()).await, 0, "acked");
            publisher.close().await;
        }
    })
    .await;
}

/// A batch is confirmed as a whole and every message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_publish_confirms_every_message() {
    let config = config();
    with_topology(&config, &["met"], |topology| {
        let config = config.clone();
        async move {
            let publisher = Publisher::connect(&config, "concordat-bus-test-batch").await.expect("publisher connects");
            let batch: Vec<_> =
                (0..300).map(|n| message(&topology.deliver_exchange(), "met", &format!("d-{n}"))).collect();
            publisher.publish_batch(&batch).await.expect("batch is confirmed");
            assert_eq!(message_count(&config, &topology.inbox_queue("met")).await, 300);
            publisher.close().await;
        }
    })
    .await;
}

/// Queue depths name every queue of the topology with what waits in it; queues never declared have none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depths_count_what_waits_in_each_queue() {
    let config = config();
    with_topology(&config, &["met", "nhs"], |topology| {
        let config = config.clone();
        async move {
            let publisher = Publisher::connect(&config, "concordat-bus-test-depths").await.expect("publisher connects");
            let batch: Vec<_> =
                (0..3).map(|n| message(&topology.deliver_exchange(), "met", &format!("d-{n}"))).collect();
            publisher.publish_batch(&batch).await.expect("batch is confirmed");
            publisher.close().await;
            let depths = queue_depths(&config, &topology).await.expect("depths are read");
            let by_queue: BTreeMap<String, (Option<u32>, Option<u32>)> =
                depths.into_iter().map(|depth| (depth.queue, (depth.messages, depth.consumers))).collect();
            assert_eq!(by_queue.len(), 7, "ingest, router, two inboxes, three dead-letter queues: {by_queue:?}");
            assert_eq!(by_queue[&topology.inbox_queue("met")], (Some(3), Some(0)));
            assert_eq!(by_queue[&topology.inbox_queue("nhs")], (Some(0), Some(0)));
            assert_eq!(by_queue[&topology.router_queue()], (Some(0), Some(0)));
            assert_eq!(by_queue[&topology.dead_letter_queue(Stage::Router)], (Some(0), Some(0)));

            let never = format!("never-{}", uuid::Uuid::new_v4().simple());
            let undeclared = Topology::with_prefix(never, vec![]).unwrap();
            let depths = queue_depths(&config, &undeclared).await.expect("missing queues are not an error");
            assert!(depths.iter().all(|depth| depth.messages.is_none() && depth.consumers.is_none()), "{depths:?}");
        }
    })
    .await;
}

/// `consume_batches` hands over what is waiting, never more than `max_batch`, and settles each message by
/// its own outcome: acked, dead-lettered, or (given no outcome) requeued and seen again. A batch of acks
/// only (b-8 to b-15, as they usually fall) is settled in one frame, which must leave the batches around it
/// as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_what_is_waiting_and_settle_each_message_by_its_outcome() {
    let config = config();
    with_topology(&config, &[], |topology| {
        let config = config.clone();
        async move {
            let publisher =
                Publisher::connect(&config, "concordat-bus-test-batches").await.expect("publisher connects");
            let sent: Vec<_> = (0..20)
                .map(|n| message(&topology.events_exchange(), "police.met.police.s136_detention", &format!("b-{n}")))
                .collect();
            publisher.publish_batch(&sent).await.expect("batch is confirmed");

            let seen = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
            let shutdown = CancellationToken::new();
            let consumer = tokio::spawn(consume_batches(
                config.clone(),
                Subscription::router(topology.clone(), "concordat-bus-test-batches-consumer"),
                shutdown.clone(),
                8,
                {
                    let seen = seen.clone();
                    let b19_requeued = Arc::new(AtomicBool::new(false));
                    move |batch: Vec<IncomingMessage>| {
                        let b19_requeued = b19_requeued.clone();
                        let ids: Vec<String> =
                            batch.iter().map(|m| m.message_id().unwrap_or_default().to_owned()).collect();
                        let first = seen.lock().expect("not poisoned").is_empty();
                        seen.lock().expect("not poisoned").push(ids.clone());
                        async move {
                            if first {
                                // Let the rest of the queue reach the consumer's buffer.
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                            let mut outcomes: Vec<Outcome> = ids
                                .iter()
                                .map(|id| match id.as_str() {
                                    "b-7" => Outcome::DeadLetter { reason: "seven is poison".to_owned() },
                                    _ => Outcome::Ack,
                                })
                                .collect();
                            // The first time b-19 (the last sent, so last in its batch) is seen, it gets no
                            // outcome: requeued.
                            if ids.last().is_some_and(|id| id == "b-19") && !b19_requeued.swap(true, Ordering::SeqCst) {
                                outcomes.pop();
                            }
                            outcomes
                        }
                    }
                },
            ));
            let dead =
                take(&config, &topology.dead_letter_queue(Stage::Router), SOON).await.expect("a dead letter arrives");
            assert_eq!(dead.message_id().as_deref(), Some("b-7"));
            assert_eq!(dead.header(ERROR_HEADER).as_deref(), Some("seven is poison"));
            let deadline = tokio::time::Instant::now() + SOON;
            while seen.lock().expect("not poisoned").iter().flatten().filter(|id| *id == "b-19").count() < 2 {
                assert!(tokio::time::Instant::now() < deadline, "b-19 was not redelivered");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            shutdown.cancel();
            consumer.await.expect("joins").expect("stops cleanly");

            let batches = seen.lock().expect("not poisoned").clone();
            assert!(batches.iter().all(|batch| !batch.is_empty() && batch.len() <= 8), "batch sizes: {batches:?}");
            assert!(
                batches.iter().any(|batch| batch.len() == 8),
                "the waiting messages came in full batches: {batches:?}"
            );
            let mut every: Vec<&String> = batches.iter().flatten().collect();
            every.sort();
            let mut expected: Vec<String> = (0..20).map(|n| format!("b-{n}")).collect();
            expected.push("b-19".to_owned());
            expected.sort();
            assert_eq!(every, expected.iter().collect::<Vec<_>>(), "each once, b-19 twice");
            assert_eq!(message_count(&config, &topology.router_queue()).await, 0, "all settled");
            publisher.close().await;
        }
    })
    .await;
}

/// `DeadLetter` puts a copy with the reason and the original route in the stage's dead-letter queue and
/// acks the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_with_its_reason() {
    let config = config();
    with_topology(&config, &[], |topology| {
        let config = config.clone();
        async move {
            let publisher = Publisher::connect(&config, "concordat-bus-test-poison").await.expect("publisher connects");
            let sent = message(&topology.events_exchange(), "nhs.trust.nhs.referral", "evt-poison");
            publisher.publish(&sent).await.expect("publish is confirmed");

            let reason = "schema: /subject/nhs_number fails the modulus 11 check";
            let (done_tx, mut done) = mpsc::unbounded_channel::<()>();
            let shutdown = CancellationToken::new();
            let consumer = tokio::spawn(consume(
                config.clone(),
                Subscription::router(topology.clone(), "concordat-bus-test-poison-consumer"),
                shutdown.clone(),
                move |_incoming| {
                    let done_tx = done_tx.clone();
                    async move {
                        let _ = done_tx.send(());
                        Outcome::DeadLetter { reason: reason.to_owned() }
                    }
                },
            ));
            let dead =
                take(&config, &topology.dead_letter_queue(Stage::Router), SOON).await.expect("a dead letter arrives");
            tokio::time::timeout(SOON, done.recv()).await.expect("handler ran").expect("handler ran once");
            shutdown.cancel();
            consumer.await.expect("joins").expect("stops cleanly");

            assert_eq!(dead.header(ERROR_HEADER).as_deref(), Some(reason));
            assert_eq!(dead.header(STAGE_HEADER).as_deref(), Some("router"));
            assert_eq!(dead.header(ORIGINAL_EXCHANGE_HEADER), Some(topology.events_exchange()));
            assert_eq!(dead.header(ORIGINAL_ROUTING_KEY_HEADER).as_deref(), Some("nhs.trust.nhs.referral"));
            assert_eq!(dead.header("concordat-kind").as_deref(), Some("police.s136_detention"));
            assert_eq!(dead.header(TRACEPARENT_HEADER), Some(sent.traceparent.to_string()));
            assert_eq!(dead.message_id().as_deref(), Some("evt-poison"));
            assert_eq!(dead.routing_key, "router");
            assert_eq!(dead.body, sent.body);
            assert_eq!(message_count(&config, &topology.router_queue()).await, 0);
            publisher.close().await;
        }
    })
    .await;
}

/// `Retry` requeues until the message has been delivered `delivery_limit` times, then dead-letters it
/// with the handler's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_end_in_the_dead_letter_queue_after_the_delivery_limit() {
    let mut config = config();
    config.delivery_limit = 3;
    with_topology(&config, &[], |topology| {
        let config = config.clone();
        async move {
            let publisher = Publisher::connect(&config, "concordat-bus-test-retry").await.expect("publisher connects");
            let sent = message(&topology.events_exchange(), "vcs.haven.vcs.contact", "evt-retry");
            publisher.publish(&sent).await.expect("publish is confirmed");

            let seen = Arc::new(Mutex::new(Vec::<(u32, bool)>::new()));
            let shutdown = CancellationToken::new();
            let consumer = tokio::spawn(consume(
                config.clone(),
                Subscription::router(topology.clone(), "concordat-bus-test-retry-consumer"),
                shutdown.clone(),
                {
                    let seen = Arc::clone(&seen);
                    move |incoming: IncomingMessage| {
                        seen.lock().expect("lock").push((incoming.delivery_count(), incoming.redelivered()));
                        async move { Outcome::Retry { reason: "store unavailable".to_owned() } }
                    }
                },
            ));
            let dead =
                take(&config, &topology.dead_letter_queue(Stage::Router), SOON).await.expect("a dead letter arrives");
            shutdown.cancel();
            consumer.await.expect("joins").expect("stops cleanly");

            let error = dead.header(ERROR_HEADER).expect("reason header");
            assert!(error.starts_with("store unavailable"), "{error}");
            assert!(error.contains("3 deliveries"), "{error}");
            assert_eq!(dead.header(DELIVERY_COUNT_HEADER).as_deref(), Some("3"));
            assert_eq!(dead.message_id().as_deref(), Some("evt-retry"));
            assert_eq!(
                *seen.lock().expect("lock"),
                [(1, false), (2, true), (3, true)],
                "delivered exactly delivery_limit times"
            );
            assert_eq!(message_count(&config, &topology.router_queue()).await, 0);
            publisher.close().await;
        }
    })
    .await;
}

/// Declaring the same topology again succeeds; declaring it with other queue arguments is refused for
/// good, and a consumer that meets that refusal stops with an error instead of retrying forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_declares_twice_and_refuses_a_conflicting_shape() {
    let config = config();
    with_topology(&config, &["met", "nhs-trust"], |topology| {
        let config = config.clone();
        async move {
            topology.declare(&config).await.expect("second declaration succeeds");
            topology.declare(&config).await.expect("third declaration succeeds");

            let mut conflicting = config.clone();
            conflicting.delivery_limit = config.delivery_limit + 1;
            let refused = topology.declare(&conflicting).await;
            assert!(
                matches!(&refused, Err(error @ TopologyError::Broker { .. }) if error.is_permanent()),
                "{refused:?}"
            );
            let stopped = tokio::time::timeout(
                SOON,
                consume(
                    conflicting,
                    Subscription::router(topology.clone(), "concordat-bus-test-topology-consumer"),
                    CancellationToken::new(),
                    |_incoming| async { Outcome::Ack },
                ),
            )
            .await
            .expect("the consumer gives up rather than retrying");
            assert!(matches!(stopped, Err(ConsumeError::Topology { .. })), "{stopped:?}");
        }
    })
    .await;
}

/// An unroutable message, a missing exchange and a batch holding an unroutable message are errors; the
/// publisher keeps working afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_publishes_are_errors() {
    let config = config();
    with_topology(&config, &["met"], |topology| {
        let config = config.clone();
        async move {
            let publisher =
                Publisher::connect(&config, "concordat-bus-test-unroutable").await.expect("publisher connects");

            let nowhere = message(&topology.deliver_exchange(), "no-such-agency", "d-nowhere");
            let error = publisher.publish(&nowhere).await;
            match &error {
                Err(PublishError::Unroutable { message_id, exchange, routing_key, reply_code, .. }) => {
                    assert_eq!(message_id, "d-nowhere");
                    assert_eq!(exchange, &topology.deliver_exchange());
                    assert_eq!(routing_key, "no-such-agency");
                    assert_eq!(*reply_code, 312);
                }
                other => panic!("expected Unroutable, got {other:?}"),
            }

            let missing = message(&format!("{}-missing", topology.deliver_exchange()), "met", "d-missing");
            let error = publisher.publish(&missing).await;
            assert!(
                matches!(&error, Err(PublishError::ChannelClosed { message_id, .. }) if message_id == "d-missing"),
                "{error:?}"
            );

            let batch = vec![
                message(&topology.deliver_exchange(), "met", "d-ok-1"),
                message(&topology.deliver_exchange(), "nobody", "d-lost"),
                message(&topology.deliver_exchange(), "met", "d-ok-2"),
            ];
            let error = publisher.publish_batch(&batch).await;
            assert!(
                matches!(&error, Err(PublishError::Unroutable { message_id, .. }) if message_id == "d-lost"),
                "{error:?}"
            );

            let fine = message(&topology.deliver_exchange(), "met", "d-fine");
            publisher.publish(&fine).await.expect("the publisher still works");
            assert_eq!(message_count(&config, &topology.inbox_queue("met")).await, 3);
            publisher.close().await;
        }
    })
    .await;
}

/// After the broker closes the publisher's connection, a publish fails or reconnects within its deadline,
/// and the next one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_after_the_connection_was_closed_never_hangs() {
    let config = config();
    with_topology(&config, &["met"], |topology| {
        let config = config.clone();
        async move {
            let name = format!("test-publisher-{}", topology.router_queue());
            let publisher = Publisher::connect(&config, name.clone()).await.expect("publisher connects");
            let first = message(&topology.deliver_exchange(), "met", "d-before");
            publisher.publish(&first).await.expect("first publish");

            assert_eq!(close_connections_named(&name).await, 1, "one publisher connection");
            tokio::time::sleep(Duration::from_millis(300)).await;

            let during = message(&topology.deliver_exchange(), "met", "d-during");
            let bound = config.publish_timeout() + Duration::from_secs(2);
            let during_result = tokio::time::timeout(bound, publisher.publish(&during))
                .await
                .expect("a publish on a closed connection returns within its deadline");
            let after = message(&topology.deliver_exchange(), "met", "d-after");
            publisher.publish(&after).await.expect("the publisher reconnects");
            let expected = if during_result.is_ok() { 3 } else { 2 };
            assert_eq!(
                message_count(&config, &topology.inbox_queue("met")).await,
                expected,
                "during: {during_result:?}"
            );
            publisher.close().await;
        }
    })
    .await;
}

/// Shutdown lets the handler in progress finish and settle its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_message_in_hand() {
    let config = config();
    with_topology(&config, &[], |topology| {
        let config = config.clone();
        async move {
            let publisher =
                Publisher::connect(&config, "concordat-bus-test-shutdown").await.expect("publisher connects");
            let sent = message(&topology.events_exchange(), "police.met.police.outcome", "evt-slow");
            publisher.publish(&sent).await.expect("publish is confirmed");

            let started = Arc::new(Notify::new());
            let finished = Arc::new(Mutex::new(false));
            let shutdown = CancellationToken::new();
            let consumer = tokio::spawn(consume(
                config.clone(),
                Subscription::router(topology.clone(), "concordat-bus-test-shutdown-consumer"),
                shutdown.clone(),
                {
                    let started = Arc::clone(&started);
                    let finished = Arc::clone(&finished);
                    move |_incoming| {
                        let started = Arc::clone(&started);
                        let finished = Arc::clone(&finished);
                        async move {
                            started.notify_one();
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            *finished.lock().expect("lock") = true;
                            Outcome::Ack
                        }
                    }
                },
            ));
            tokio::time::timeout(SOON, started.notified()).await.expect("handler starts");
            shutdown.cancel();
            consumer.await.expect("joins").expect("stops cleanly");
            assert!(*finished.lock().expect("lock"), "handler ran to completion");
            assert_eq!(message_count(&config, &topology.router_queue()).await, 0, "acked");
            publisher.close().await;
        }
    })
    .await;
}

/// What the resilience test's handler saw.
#[derive(Default)]
struct Ledger {
    /// Every delivery per message id, as its `redelivered` flag.
    deliveries: HashMap<String, Vec<bool>>,
    /// Ids whose effect was applied: the handler's dedup.
    applied: HashSet<String>,
    /// `Ack` outcomes per message id.
    acks: BTreeMap<String, u32>,
}

/// The broker closes the consumer's connection twice while it works through 200 messages, each time
/// while a handler holds a message it has already applied but not yet acked. The consumer reconnects,
/// every message is processed, nothing is lost, and only messages the broker redelivered are seen twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_survives_connections_closed_mid_stream() {
    const COUNT: usize = 200;
    const CUTS: [usize; 2] = [50, 120];
    let mut config = config();
    config.prefetch = 20;
    with_topology(&config, &[], |topology| {
        let config = config.clone();
        async move {
            let publisher =
                Publisher::connect(&config, "concordat-bus-test-resilience").await.expect("publisher connects");
            let ids: Vec<String> = (0..COUNT).map(|n| format!("evt-{n:03}")).collect();
            let batch: Vec<_> =
                ids.iter().map(|id| message(&topology.events_exchange(), "police.met.police.conveyance", id)).collect();
            publisher.publish_batch(&batch).await.expect("batch is confirmed");

            let name = format!("test-consumer-{}", topology.router_queue());
            let ledger = Arc::new(Mutex::new(Ledger::default()));
            let (applied_tx, mut applied) = watch::channel(0_usize);
            let (paused_tx, mut paused) = mpsc::unbounded_channel::<usize>();
            let gates: Arc<Vec<Notify>> = Arc::new(CUTS.iter().map(|_| Notify::new()).collect());
            let shutdown = CancellationToken::new();
            let consumer = tokio::spawn(consume(
                config.clone(),
                Subscription::router(topology.clone(), name.clone()),
                shutdown.clone(),
                {
                    let ledger = Arc::clone(&ledger);
                    let gates = Arc::clone(&gates);
                    move |incoming: IncomingMessage| {
                        let ledger = Arc::clone(&ledger);
                        let gates = Arc::clone(&gates);
                        let applied_tx = applied_tx.clone();
                        let paused_tx = paused_tx.clone();
                        async move {
                            let id = incoming.message_id().expect("message id").to_owned();
                            let applied_now = {
                                let mut ledger = ledger.lock().expect("lock");
                                ledger.deliveries.entry(id.clone()).or_default().push(incoming.redelivered());
                                ledger.applied.insert(id.clone()).then_some(ledger.applied.len())
                            };
                            if let Some(total) = applied_now {
                                let _ = applied_tx.send(total);
                                // Hold this message, applied but unacked, while the test cuts the
                                // connection under it.
                                if let Some(cut) = CUTS.iter().position(|&at| at == total) {
                                    let _ = paused_tx.send(cut);
                                    gates[cut].notified().await;
                                }
                            }
                            *ledger.lock().expect("lock").acks.entry(id).or_default() += 1;
                            Outcome::Ack
                        }
                    }
                },
            ));

            for cut in 0..CUTS.len() {
                let paused_at =
                    tokio::time::timeout(SOON, paused.recv()).await.expect("handler reaches the cut").expect("a cut");
                assert_eq!(paused_at, cut);
                assert!(wait_for_connection(&name, SOON).await, "the consumer's connection is listed");
                assert_eq!(close_connections_named(&name).await, 1, "cut {cut}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                gates[cut].notify_one();
            }
            tokio::time::timeout(Duration::from_secs(60), applied.wait_for(|&n| n == COUNT))
                .await
                .expect("every message is processed in time")
                .expect("handler alive");
            shutdown.cancel();
            consumer.await.expect("joins").expect("stops cleanly");

            {
                let ledger = ledger.lock().expect("lock");
                let expected: HashSet<String> = ids.iter().cloned().collect();
                assert_eq!(ledger.applied, expected, "every message applied exactly once");
                for id in &ids {
                    let deliveries = &ledger.deliveries[id];
                    let fresh = deliveries.iter().filter(|redelivered| !**redelivered).count();
                    assert!(fresh <= 1, "{id} was delivered as new {fresh} times");
                    let acks = ledger.acks.get(id).copied().unwrap_or(0);
                    assert!(acks >= 1, "{id} never acked");
                    assert!(
                        acks == 1 || deliveries.iter().any(|redelivered| *redelivered),
                        "{id} acked {acks} times without a redelivery"
                    );
                }
                let repeats: usize = ledger.deliveries.values().map(|d| d.len() - 1).sum();
                assert!(repeats >= CUTS.len(), "each held message was redelivered after its cut ({repeats} repeats)");
                assert!(
                    repeats <= CUTS.len() * usize::from(config.prefetch),
                    "repeats bounded by what was in flight: {repeats}"
                );
            }
            assert_eq!(message_count(&config, &topology.router_queue()).await, 0, "all acked");
            assert_eq!(
                message_count(&config, &topology.dead_letter_queue(Stage::Router)).await,
                0,
                "nothing dead-lettered"
            );
            publisher.close().await;
        }
    })
    .await;
}
