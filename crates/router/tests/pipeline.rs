//! The router against the real RabbitMQ and a real store: the s136 story from canonical events on
//! `concordat.events` to the agencies' inboxes, with redelivery producing no second delivery and an audit
//! chain that verifies.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use concordat_bus::{
    IncomingMessage, Outcome, OutgoingMessage, Publisher, Subscription, Topology, TraceParent, consume,
};
use concordat_episode::{CrisisEvent, EPISODE_SYSTEM, EpisodeId, Identifier, NonEmptyString, parse_event};
use concordat_router::{EPISODE_HEADER, KIND_HEADER, Router, run_relay, run_router};
use concordat_store::{Store, SubjectKeyer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::bus;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> CrisisEvent {
    let path = root().join("schemas/examples/crisis-event/valid").join(format!("{name}.json"));
    parse_event(&std::fs::read(path).unwrap()).unwrap()
}

struct Harness {
    topology: Topology,
    publisher: Arc<Publisher>,
    store: Store,
    shutdown: CancellationToken,
    inboxes: BTreeMap<&'static str, mpsc::UnboundedReceiver<IncomingMessage>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info,lapin=error").try_init();
        let text = std::fs::read_to_string(root().join("deploy/local/policies/northvale.yaml")).unwrap();
        let policy = Arc::new(concordat_policy::load(Path::new("northvale.yaml"), &text).unwrap());
        let agencies = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
        let prefix = format!("t-{}", Uuid::new_v4().simple());
        let topology = Topology::with_prefix(prefix, agencies).unwrap();
        topology.declare(&bus()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("concordat.db").display())).await.unwrap();
        let publisher = Arc::new(Publisher::connect(&bus(), "router-test").await.unwrap());
        let keyer = SubjectKeyer::new(b"router-test-subject-key-secret").unwrap();
        let mut router =
            Router::new(policy, &BTreeMap::new(), store.clone(), keyer, topology.clone(), Duration::from_secs(3600));
        let shutdown = CancellationToken::new();
        tokio::spawn(run_relay(store.clone(), publisher.clone(), Some(router.hand_to_relay()), shutdown.clone()));
        tokio::spawn(run_router(router, bus(), shutdown.clone()));
        let mut inboxes = BTreeMap::new();
        for agency in ["northvale-mh", "northvale-police", "safe-haven"] {
            let (sender, receiver) = mpsc::unbounded_channel();
            let subscription = Subscription::inbox(topology.clone(), agency, format!("inbox-{agency}")).unwrap();
            tokio::spawn(consume(bus(), subscription, shutdown.clone(), move |message| {
                let sender = sender.clone();
                async move {
                    let _ = sender.send(message);
                    Outcome::Ack
                }
            }));
            inboxes.insert(agency, receiver);
        }
        Self { topology, publisher, store, shutdown, inboxes, _dir: dir }
    }

    async fn publish(&self, event: &CrisisEvent) {
        self.publisher
            .publish(&OutgoingMessage {
                exchange: self.topology.events_exchange(),
                routing_key: event.routing_key(),
                message_id: event.event_id.to_string(),
                content_type: concordat_episode::CONTENT_TYPE.to_owned(),
                body: serde_json::to_vec(event).unwrap(),
                headers: BTreeMap::new(),
                traceparent: TraceParent::new_root(),
            })
            .await
            .unwrap();
    }

    async fn next(&mut self, agency: &str) -> IncomingMessage {
        let inbox = self.inboxes.get_mut(agency).unwrap();
        tokio::time::timeout(Duration::from_secs(30), inbox.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing reached {agency}'s inbox"))
            .unwrap()
    }

    async fn nothing_more(&mut self, agency: &str) {
        let inbox = self.inboxes.get_mut(agency).unwrap();
        if let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(2), inbox.recv()).await {
            panic!("unexpected delivery to {agency}: kind {:?}", message.header(KIND_HEADER));
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.topology.delete(&bus()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s136_story_reaches_the_trust_and_feeds_back_to_the_force_exactly_once() {
    let mut harness = Harness::start().await;

    // Police detain under s136: the trust that runs the place of safety hears at once, in FHIR.
    let detention = example("police-s136-detention");
    harness.publish(&detention).await;
    let notification = harness.next("northvale-mh").await;
    assert_eq!(notification.content_type(), Some("application/fhir+json"));
    assert_eq!(notification.header(KIND_HEADER), Some("police.s136_detention"));
    let episode: Uuid = notification.header(EPISODE_HEADER).unwrap().parse().unwrap();
    let body = String::from_utf8(notification.body().to_vec()).unwrap();
    assert!(body.contains(&episode.to_string()));

    // The same event again (a resubmission, or a redelivery after a crash): no second delivery.
    harness.publish(&detention).await;
    harness.nothing_more("northvale-mh").await;

    // The trust posts the assessment outcome against the episode: the detaining force gets feedback in its
    // own format, with the disposition and no clinical detail.
    let mut outcome = example("nhs-assessment-outcome");
    outcome.episode.episode_id = Some(EpisodeId(episode));
    outcome.episode.refs = vec![Identifier {
        system: NonEmptyString::new(EPISODE_SYSTEM).unwrap(),
        value: NonEmptyString::new(episode.to_string()).unwrap(),
    }];
    harness.publish(&outcome).await;
    let feedback = harness.next("northvale-police").await;
    assert_eq!(feedback.header(KIND_HEADER), Some("feedback.outcome"));
    let body = String::from_utf8(feedback.body().to_vec()).unwrap();
    assert!(body.contains("NVP-20260301-0457"), "the force's own incident number: {body}");
    assert!(body.contains("discharged"), "{body}");
    for clinical in ["35489007", "Depressive", "s12 doctor", "9990000018", "Testperson"] {
        assert!(!body.contains(clinical), "feedback leaked `{clinical}`: {body}");
    }
    harness.nothing_more("safe-haven").await;

    let episode = harness.store.episode(EpisodeId(episode)).await.unwrap().unwrap();
    assert!(episode.feedback_delivered_at.is_some(), "the episode records that feedback was given");
    // Every delivery that went out is marked sent (by the router's next transaction or the relay).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !harness.store.pending_outbox(10).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "deliveries left pending after they went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    harness.store.audit_verify().await.unwrap();
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crisis_plan_held_before_the_crisis_reaches_the_responding_force_when_it_opens() {
    let mut harness = Harness::start().await;
    // The crisis plan opens no episode; it is held for the person.
    harness.publish(&example("nhs-crisis-plan")).await;
    // Then police detain the same person (same NHS number): the new episode offers the plan as context.
    harness.publish(&example("police-s136-detention")).await;
    let mut kinds = Vec::new();
    for _ in 0..1 {
        let message = harness.next("northvale-police").await;
        kinds.push(message.header(KIND_HEADER).unwrap_or_default().to_owned());
        let body = String::from_utf8(message.body().to_vec()).unwrap();
        assert!(body.contains("call sister first"), "{body}");
    }
    assert_eq!(kinds, ["context.pre_crisis"]);
    harness.store.audit_verify().await.unwrap();
    harness.stop().await;
}
