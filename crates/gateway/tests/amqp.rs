//! AMQP ingest against a real RabbitMQ: payloads published to `concordat.ingest` with the agency id as
//! routing key are translated and published onward, or dead-lettered with the reason.

#![allow(clippy::unwrap_used, reason = "in tests a failed unwrap is a failed test")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Harness, message_count, read, take, with_gateway};
use concordat_bus::{ERROR_HEADER, OutgoingMessage, Publisher, Stage, TraceParent};
use concordat_episode::parse_event;
use concordat_gateway::consume_amqp_ingest;
use tokio_util::sync::CancellationToken;

const SOON: Duration = Duration::from_secs(15);

/// Publishes native payloads to the ingest exchange as an agency's system would.
async fn publish(harness: &Harness, messages: &[(&str, &str, Vec<u8>)]) {
    let publisher = Publisher::connect(&harness.bus, "concordat-gateway-test-agency").await.unwrap();
    let messages: Vec<OutgoingMessage> = messages
        .iter()
        .enumerate()
        .map(|(index, (routing_key, content_type, body))| OutgoingMessage {
            exchange: harness.topology.ingest_exchange(),
            routing_key: (*routing_key).to_owned(),
            message_id: format!("agency-message-{index}"),
            content_type: (*content_type).to_owned(),
            body: body.clone(),
            headers: BTreeMap::new(),
            traceparent: TraceParent::new_root(),
        })
        .collect();
    publisher.publish_batch(&messages).await.expect("the ingest exchange takes the payloads");
    publisher.close().await;
}

/// Runs the ingest consumer while `body` runs, then stops it.
async fn with_consumer<Fut: Future<Output = ()>>(harness: &Harness, body: Fut) {
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(consume_amqp_ingest(harness.gateway.clone(), harness.bus.clone(), shutdown.clone()));
    body.await;
    shutdown.cancel();
    consumer.await.expect("the consumer task joins").expect("the consumer stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_payload_is_published_onward_and_acked() {
    with_gateway(
        true,
        |_| {},
        |harness| async move {
            publish(
                &harness,
                &[(
                    "safe-haven",
                    "application/json",
                    read("schemas/examples/vcs-contact/valid/safe-haven-bst-evening.json"),
                )],
            )
            .await;
            with_consumer(&harness, async {
                let queued = take(&harness.bus, &harness.topology.router_queue(), 1, SOON).await;
                assert_eq!(queued.len(), 1, "the event reaches the router queue");
                let event = parse_event(&queued[0].body).expect("a valid canonical event");
                assert_eq!(event.source.agency.as_str(), "safe-haven");
                assert_eq!(queued[0].message_id(), Some(event.event_id.to_string()));
                assert_eq!(queued[0].header("cloudEvents:source").as_deref(), Some("urn:concordat:agency:safe-haven"));
            })
            .await;
            assert_eq!(message_count(&harness.bus, &harness.topology.ingest_queue()).await, 0, "acked");
            assert_eq!(message_count(&harness.bus, &harness.topology.dead_letter_queue(Stage::Ingest)).await, 0);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_payloads_are_dead_lettered_with_the_reason() {
    with_gateway(
        true,
        |config| config.body_limit_bytes = 16 * 1024,
        |harness| async move {
            let s136 = read("schemas/examples/police-incident/valid/s136-public-place-police-vehicle.json");
            publish(
                &harness,
                &[
                    (
                        "northvale-police",
                        "application/json",
                        read("schemas/examples/police-incident/invalid/nhs-number-bad-check-digit.json"),
                    ),
                    ("northvale-fire", "application/json", s136.clone()),
                    ("northvale-police", "text/plain", s136),
                    ("safe-haven", "application/json", vec![b' '; 16 * 1024 + 1]),
                ],
            )
            .await;
            with_consumer(&harness, async {
                let dead = take(&harness.bus, &harness.topology.dead_letter_queue(Stage::Ingest), 4, SOON).await;
                assert_eq!(dead.len(), 4, "every refused payload is dead-lettered");
                let reasons: Vec<String> = dead.iter().map(|message| message.header(ERROR_HEADER).unwrap()).collect();
                assert!(reasons[0].contains("/person/nhs_number"), "{reasons:?}");
                assert!(reasons[1].contains("routing key names no agency"), "{reasons:?}");
                assert!(
                    reasons[2].contains("unsupported content type") && reasons[2].contains("application/json"),
                    "{reasons:?}"
                );
                assert!(reasons[3].contains("over the gateway's limit"), "{reasons:?}");
                for reason in &reasons {
                    assert!(!reason.contains("9434765918") && !reason.contains("Testperson"), "{reason}");
                }
            })
            .await;
            assert_eq!(
                message_count(&harness.bus, &harness.topology.router_queue()).await,
                0,
                "nothing published onward"
            );
            assert_eq!(message_count(&harness.bus, &harness.topology.ingest_queue()).await, 0, "all settled");
        },
    )
    .await;
}
