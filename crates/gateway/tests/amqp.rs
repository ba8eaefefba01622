//! AMQP ingest against a real RabbitMQ: payloads published to `concordat.ingest` with the agency id as
//! routing key are translated and published onward, or dead-lettered with the reason; a publisher that is
//! not the agency's RabbitMQ user is dead-lettered too. The first two tests publish as the broker's
//! administrative user under the development allowance (`trust_routing_key`); the identity test creates a
//! RabbitMQ user of its own and deletes it afterwards.

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
        |config| config.amqp.trust_routing_key = true,
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
        |config| {
            config.body_limit_bytes = 16 * 1024;
            config.amqp.trust_routing_key = true;
        },
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

/// A RabbitMQ user made for one test (a unique name, so parallel runs never share one), deleted when
/// dropped, even after a failed assertion.
struct TestUser {
    name: String,
    password: String,
}

impl TestUser {
    /// Creates `name` with write access to `exchange` in the default virtual host and no topic permission:
    /// the broker lets it publish with any routing key, so only the gateway's rule stands between it and
    /// speaking for another agency.
    fn create(name: &str, exchange: &str) -> Self {
        let password = uuid::Uuid::new_v4().simple().to_string();
        let user = Self { name: name.to_owned(), password };
        rabbitmqctl(&["add_user", &user.name, &user.password]);
        let write = format!("^{}$", exchange.replace('.', "\\."));
        rabbitmqctl(&["set_permissions", "-p", "/", &user.name, "^$", &write, "^$"]);
        user
    }

    fn url(&self) -> String {
        format!("amqp://{}:{}@127.0.0.1:5672/%2f", self.name, self.password)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").args(["-q", "delete_user", &self.name]).output();
    }
}

fn rabbitmqctl(args: &[&str]) {
    let output = std::process::Command::new("rabbitmqctl").arg("-q").args(args).output().expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Publishes `body` to `exchange` with `routing_key` over `url`, with `user_id` when given, and waits for
/// RabbitMQ's confirm.
async fn publish_as(
    url: &str,
    exchange: &str,
    routing_key: &str,
    user_id: Option<&str>,
    message_id: &str,
    body: &[u8],
) {
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(lapin::options::ConfirmSelectOptions::default()).await.unwrap();
    let mut properties = lapin::BasicProperties::default()
        .with_message_id(message_id.into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    if let Some(user_id) = user_id {
        properties = properties.with_user_id(user_id.into());
    }
    let options = lapin::options::BasicPublishOptions { mandatory: true, immediate: false };
    let confirm = channel
        .basic_publish(exchange.into(), routing_key.into(), options, body, properties)
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(confirm, lapin::Confirmation::Ack(None)), "{confirm:?}");
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_agency_s_own_rabbitmq_user_speaks_for_it() {
    let prefix = format!("t{}-agency-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let user_prefix = prefix.clone();
    with_gateway(
        true,
        move |config| config.amqp.user_prefix = user_prefix,
        |harness| async move {
            let exchange = harness.topology.ingest_exchange();
            let user = TestUser::create(&format!("{prefix}safe-haven"), &exchange);
            let payload = read("schemas/examples/vcs-contact/valid/safe-haven-bst-evening.json");
            // Safe Haven's user as itself; then as the Listening Line (its claim is the routing key, its
            // identity the user_id RabbitMQ checked); then the administrative user with no user_id.
            publish_as(&user.url(), &exchange, "safe-haven", Some(&user.name), "own", &payload).await;
            publish_as(&user.url(), &exchange, "listening-line", Some(&user.name), "claims-another", &payload).await;
            publish_as(&harness.bus.amqp_url, &exchange, "listening-line", None, "anonymous", &payload).await;
            with_consumer(&harness, async {
                let queued = take(&harness.bus, &harness.topology.router_queue(), 2, SOON).await;
                assert_eq!(queued.len(), 1, "only Safe Haven's own message is accepted");
                let event = parse_event(&queued[0].body).expect("a valid canonical event");
                assert_eq!(event.source.agency.as_str(), "safe-haven");
                let mut dead = take(&harness.bus, &harness.topology.dead_letter_queue(Stage::Ingest), 2, SOON).await;
                dead.sort_by_key(|message| message.message_id());
                let reasons: Vec<(Option<String>, String)> =
                    dead.iter().map(|message| (message.message_id(), message.header(ERROR_HEADER).unwrap())).collect();
                assert_eq!(
                    reasons,
                    vec![
                        (
                            Some("anonymous".to_owned()),
                            format!(
                                "the message has no user_id property; publish as agency `listening-line`'s RabbitMQ \
                                 user and set user_id to `{prefix}listening-line`"
                            )
                        ),
                        (
                            Some("claims-another".to_owned()),
                            format!(
                                "user_id `{prefix}safe-haven` may not publish as agency `listening-line`, whose \
                                 RabbitMQ user is `{prefix}listening-line`"
                            )
                        ),
                    ]
                );
                let claimed = dead.iter().find(|message| message.message_id().as_deref() == Some("claims-another"));
                assert_eq!(
                    claimed.and_then(|message| message.header(concordat_bus::ORIGINAL_USER_ID_HEADER)),
                    Some(user.name.clone()),
                    "the dead letter keeps who published it"
                );
            })
            .await;
            assert_eq!(message_count(&harness.bus, &harness.topology.ingest_queue()).await, 0, "all settled");
        },
    )
    .await;
}
