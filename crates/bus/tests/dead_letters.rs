//! Listing and retrying dead letters against a real RabbitMQ, each test under its own prefixed topology.
//! Dead letters are made the way production makes them: a consumer's handler answers
//! `Outcome::DeadLetter`, or, for routes that cannot exist in a running system, a copy with the
//! dead-letter headers is published to `concordat.dlx`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{config, message, message_count, take, with_topology};
use concordat_bus::{
    BusConfig, DeadLetter, DeadLetterId, ERROR_HEADER, Filter, NotRetried, ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER, Outcome, OutgoingMessage, Publisher, QUORUM_DELIVERY_COUNT_HEADER, REFRESH_AT,
    STAGE_HEADER, Selector, Stage, Subscription, TRACEPARENT_HEADER, Topology, TraceParent, consume,
    count_dead_letters, expire_dead_letters, list_dead_letters, retry_dead_letters,
};
use tokio_util::sync::CancellationToken;

const SOON: Duration = Duration::from_secs(20);
const ROUTE: &str = "police.northvale-police.police.s136_detention";
/// A stand-in for the personal data a body holds; it must never come out of a listing.
const SECRET: &str = "Jane Testperson 9434765919";

/// Publishes one event per `(id, reason)` to the events exchange and lets a real router-stage consumer
/// dead-letter each with its reason. Returns what was published, by id.
async fn dead_letter_through_the_consumer(
    config: &BusConfig,
    topology: &Topology,
    poison: &[(&str, &str)],
) -> BTreeMap<String, OutgoingMessage> {
    let publisher = Publisher::connect(config, "concordat-dlq-test-publisher").await.unwrap();
    let mut sent = BTreeMap::new();
    for (id, _) in poison {
        let mut outgoing = message(&topology.events_exchange(), ROUTE, id);
        outgoing.body = format!(r#"{{"id":"{id}","subject":"{SECRET}"}}"#).into_bytes();
        outgoing.headers.insert("concordat-episode".to_owned(), format!("episode-of-{id}"));
        publisher.publish(&outgoing).await.unwrap();
        sent.insert((*id).to_owned(), outgoing);
    }
    publisher.close().await;
    let reasons: BTreeMap<String, String> =
        poison.iter().map(|(id, reason)| ((*id).to_owned(), (*reason).to_owned())).collect();
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(consume(
        config.clone(),
        Subscription::router(topology.clone(), "concordat-dlq-test-consumer"),
        shutdown.clone(),
        move |incoming| {
            let reason = reasons.get(incoming.message_id().unwrap_or_default()).cloned().unwrap_or_default();
            async move { Outcome::DeadLetter { reason } }
        },
    ));
    let queue = topology.dead_letter_queue(Stage::Router);
    let deadline = tokio::time::Instant::now() + SOON;
    while message_count(config, &queue).await < u32::try_from(poison.len()).unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "the consumer did not dead-letter everything in time");
    }
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    sent
}

fn by_id(letters: &[DeadLetter]) -> BTreeMap<String, DeadLetter> {
    letters.iter().map(|letter| (letter.message_id.clone().unwrap_or_default(), letter.clone())).collect()
}

/// A listing names each dead letter's stage, id, reason, kind, original route and size, never its body;
/// listing again and again (past the point where copies replace returned messages) loses nothing; counting
/// agrees and takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_shows_metadata_and_never_loses_a_message() {
    let config = config();
    with_topology(&config, &[], |topology| {
        let config = config.clone();
        async move {
            let poison = [
                ("evt-1", "schema: /subject/nhs_number fails the modulus 11 check"),
                ("evt-2", "no permitted view can be rendered for northvale-mh"),
                ("evt-3", "refs point at several episodes"),
            ];
            let sent = dead_letter_through_the_consumer(&config, &topology, &poison).await;
            let queue = topology.dead_letter_queue(Stage::Router);

            // Past REFRESH_AT, so that on a broker that counts returns the copies must take over.
            for round in 1..=REFRESH_AT + 2 {
                let listed = list_dead_letters(&config, &topology, &Filter::default()).await.unwrap();
                assert_eq!(listed.len(), 3, "round {round}: {listed:?}");
                let listed = by_id(&listed);
                for (id, reason) in poison {
                    let letter = &listed[id];
                    assert_eq!(letter.stage, Stage::Router);
                    assert_eq!(letter.reason, reason);
                    assert_eq!(letter.original_exchange, topology.events_exchange());
                    assert_eq!(letter.original_routing_key, ROUTE);
                    assert_eq!(letter.kind.as_deref(), Some("police.s136_detention"));
                    assert_eq!(letter.content_type.as_deref(), Some("application/json"));
                    assert_eq!(letter.delivery_count, Some(1));
                    assert_eq!(letter.body_bytes, sent[id].body.len());
                    assert!(letter.dead_lettered_at.is_some(), "{letter:?}");
                    assert_eq!(letter.id(), Some(DeadLetterId { stage: Stage::Router, message_id: id.to_owned() }));
                    let shown = format!("{letter:?}");
                    assert!(!shown.contains("Testperson") && !shown.contains("9434765919"), "{shown}");
                }
                assert_eq!(message_count(&config, &queue).await, 3, "round {round}");
            }
            // Counting takes nothing: the listing after it still finds all three.
            let counted = count_dead_letters(&config, &topology).await.unwrap();
            assert_eq!(counted, [(Stage::Ingest, 0), (Stage::Router, 3), (Stage::Deliver, 0)]);

            let only = Filter { reason: Some("episodes".to_owned()), ..Filter::default() };
            let listed = list_dead_letters(&config, &topology, &only).await.unwrap();
            assert_eq!(listed.iter().map(|l| l.message_id.clone().unwrap()).collect::<Vec<_>>(), ["evt-3"]);
            let elsewhere = Filter { stage: Some(Stage::Ingest), ..Filter::default() };
            assert!(list_dead_letters(&config, &topology, &elsewhere).await.unwrap().is_empty());

            // The messages themselves are intact, and no listing has brought them near a delivery limit.
            for _ in 0..3 {
                let dead = take(&config, &queue, SOON).await.unwrap();
                let id = dead.message_id().unwrap();
                assert_eq!(dead.body, sent[&id].body);
                assert_eq!(dead.header(TRACEPARENT_HEADER), Some(sent[&id].traceparent.to_string()));
                let returns: u32 = dead.header(QUORUM_DELIVERY_COUNT_HEADER).map_or(0, |count| count.parse().unwrap());
                assert!(returns < REFRESH_AT, "{id} was returned {returns} times");
            }
            assert_eq!(message_count(&config, &queue).await, 0);
        }
    })
    .await;
}

/// Retrying by id republishes that dead letter alone to its original route, as it was first published,
/// and removes it from the dead-letter queue; retrying by filter takes what the filter matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_by_id_and_by_filter_republishes_only_what_was_chosen() {
    let config = config();
    with_topology(&config, &[], |topology| {
        let config = config.clone();
        async move {
            let poison = [("evt-a", "store unavailable"), ("evt-b", "no agreement"), ("evt-c", "no agreement either")];
            let sent = dead_letter_through_the_consumer(&config, &topology, &poison).await;
            let dead_queue = topology.dead_letter_queue(Stage::Router);

            let id = DeadLetterId { stage: Stage::Router, message_id: "evt-a".to_owned() };
            let report = retry_dead_letters(&config, &topology, &Selector::from(id)).await.unwrap();
            assert_eq!(report.retried.iter().map(|l| l.message_id.clone().unwrap()).collect::<Vec<_>>(), ["evt-a"]);
            assert!(report.not_retried.is_empty(), "{:?}", report.not_retried);
            assert_eq!(message_count(&config, &dead_queue).await, 2);

            // It is back on the router's queue exactly as first published.
            let back = take(&config, &topology.router_queue(), SOON).await.expect("the retried event is routed again");
            let original = &sent["evt-a"];
            assert_eq!(back.message_id().as_deref(), Some("evt-a"));
            assert_eq!(back.routing_key, ROUTE);
            assert_eq!(back.body, original.body);
            assert_eq!(back.properties.content_type().as_ref().map(|c| c.as_str()), Some("application/json"));
            assert_eq!(back.header("concordat-kind").as_deref(), Some("police.s136_detention"));
            assert_eq!(back.header("concordat-episode").as_deref(), Some("episode-of-evt-a"));
            assert_eq!(back.header(TRACEPARENT_HEADER), Some(original.traceparent.to_string()));
            for header in [ERROR_HEADER, STAGE_HEADER, ORIGINAL_EXCHANGE_HEADER] {
                assert_eq!(back.header(header), None, "{header} went back with the message");
            }
            // The router's queue counts from zero again: the dead-letter queue's count stayed behind.
            let returns = back.header(QUORUM_DELIVERY_COUNT_HEADER);
            assert!(matches!(returns.as_deref(), None | Some("0")), "{returns:?}");
            assert_eq!(message_count(&config, &topology.router_queue()).await, 0);

            // By filter: the reason text selects one; an id in no queue selects nothing.
            let filter = Filter { reason: Some("either".to_owned()), ..Filter::default() };
            let report = retry_dead_letters(&config, &topology, &Selector::Filter(filter)).await.unwrap();
            assert_eq!(report.retried.iter().map(|l| l.message_id.clone().unwrap()).collect::<Vec<_>>(), ["evt-c"]);
            let missing = Selector::Id { stage: None, message_id: "evt-a".to_owned() };
            let report = retry_dead_letters(&config, &topology, &missing).await.unwrap();
            assert!(report.retried.is_empty() && report.not_retried.is_empty());

            let left = list_dead_letters(&config, &topology, &Filter::default()).await.unwrap();
            assert_eq!(left.iter().map(|l| l.message_id.clone().unwrap()).collect::<Vec<_>>(), ["evt-b"]);
            assert_eq!(message_count(&config, &topology.router_queue()).await, 1, "evt-c was routed");
        }
    })
    .await;
}

/// Expiry removes the dead letters dead-lettered before the cut-off and puts back the younger ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_removes_only_dead_letters_older_than_the_cutoff() {
    let config = config();
    with_topology(&config, &[], |topology| {
        let config = config.clone();
        async move {
            let poison = [("old-1", "no agreement"), ("old-2", "no agreement")];
            dead_letter_through_the_consumer(&config, &topology, &poison).await;
            let listed = list_dead_letters(&config, &topology, &Filter::default()).await.unwrap();
            let stamped: Vec<u64> = listed.iter().map(|letter| letter.dead_lettered_at.unwrap()).collect();
            let oldest = *stamped.iter().min().unwrap();

            // A cut-off at or before their time removes none.
            let none = expire_dead_letters(&config, &topology, oldest).await.unwrap();
            assert!(none.is_empty(), "{none:?}");
            assert_eq!(message_count(&config, &topology.dead_letter_queue(Stage::Router)).await, 2);

            // Past it, both go, and they are named.
            let newest = *stamped.iter().max().unwrap();
            let gone = expire_dead_letters(&config, &topology, newest + 1).await.unwrap();
            let mut ids: Vec<String> = gone.iter().map(|letter| letter.message_id.clone().unwrap()).collect();
            ids.sort();
            assert_eq!(ids, ["old-1", "old-2"]);
            assert_eq!(message_count(&config, &topology.dead_letter_queue(Stage::Router)).await, 0);
            assert!(list_dead_letters(&config, &topology, &Filter::default()).await.unwrap().is_empty());
        }
    })
    .await;
}

/// A dead letter whose original route is gone (nothing bound, or no such exchange) stays where it is and
/// is reported with why; the ones after it are still retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_without_a_route_stay_and_say_why() {
    let config = config();
    with_topology(&config, &["northvale-mh"], |topology| {
        let config = config.clone();
        async move {
            let publisher = Publisher::connect(&config, "concordat-dlq-test-routes").await.unwrap();
            let dead = |id: &str, exchange: &str, routing_key: &str| OutgoingMessage {
                exchange: topology.dead_letter_exchange(),
                routing_key: "deliver".to_owned(),
                message_id: id.to_owned(),
                content_type: "application/fhir+json".to_owned(),
                body: SECRET.as_bytes().to_vec(),
                headers: BTreeMap::from([
                    (ERROR_HEADER.to_owned(), "the recipient refused it".to_owned()),
                    (STAGE_HEADER.to_owned(), "deliver".to_owned()),
                    (ORIGINAL_EXCHANGE_HEADER.to_owned(), exchange.to_owned()),
                    (ORIGINAL_ROUTING_KEY_HEADER.to_owned(), routing_key.to_owned()),
                ]),
                traceparent: TraceParent::new_root(),
            };
            let missing_exchange = format!("{}.gone", topology.deliver_exchange());
            for letter in [
                dead("to-a-gone-exchange", &missing_exchange, "northvale-mh"),
                dead("to-a-gone-agency", &topology.deliver_exchange(), "northvale-closed"),
                dead("to-a-live-agency", &topology.deliver_exchange(), "northvale-mh"),
            ] {
                publisher.publish(&letter).await.unwrap();
            }
            publisher.close().await;

            let all = Selector::Filter(Filter::default());
            let report = retry_dead_letters(&config, &topology, &all).await.unwrap();
            assert_eq!(
                report.retried.iter().map(|l| l.message_id.clone().unwrap()).collect::<Vec<_>>(),
                ["to-a-live-agency"]
            );
            let why: BTreeMap<String, &NotRetried> =
                report.not_retried.iter().map(|(letter, why)| (letter.message_id.clone().unwrap(), why)).collect();
            assert!(matches!(why["to-a-gone-exchange"], NotRetried::Publish(_)), "{why:?}");
            assert!(
                matches!(why["to-a-gone-agency"], NotRetried::Unroutable { routing_key, .. } if routing_key == "northvale-closed"),
                "{why:?}"
            );
            assert_eq!(message_count(&config, &topology.dead_letter_queue(Stage::Deliver)).await, 2);
            assert_eq!(message_count(&config, &topology.inbox_queue("northvale-mh")).await, 1);
            let left = list_dead_letters(&config, &topology, &Filter::default()).await.unwrap();
            assert_eq!(left.len(), 2);
            assert!(left.iter().all(|letter| letter.stage == Stage::Deliver && letter.body_bytes == SECRET.len()));
        }
    })
    .await;
}
