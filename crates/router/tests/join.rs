//! The join rule: an event that names an episode (its id, or one of its refs) joins it only when its source
//! has a right to it: it takes part, it was sent something from it, or the event is about the episode's
//! person. Episode ids are not secrets, so a stranger quoting one is handled as if it had not, and never
//! receives the episode's outcome feedback.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use concordat_bus::{Topology, TraceParent};
use concordat_episode::{
    AgencyId, CrisisEvent, EPISODE_SYSTEM, EpisodeId, EventId, Identifier, NonEmptyString, parse_event,
};
use concordat_router::{Routed, Router};
use concordat_store::{Store, SubjectKeyer};
use uuid::Uuid;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> CrisisEvent {
    let path = root().join("schemas/examples/crisis-event/valid").join(format!("{name}.json"));
    let mut event = parse_event(&std::fs::read(path).unwrap()).unwrap();
    event.event_id = EventId(Uuid::new_v4());
    event
}

fn names(episode: EpisodeId) -> Identifier {
    Identifier {
        system: NonEmptyString::new(EPISODE_SYSTEM).unwrap(),
        value: NonEmptyString::new(episode.to_string()).unwrap(),
    }
}

async fn start(dir: &Path) -> (Router, Store) {
    let text = std::fs::read_to_string(root().join("deploy/local/policies/northvale.yaml")).unwrap();
    let policy = Arc::new(concordat_policy::load(Path::new("northvale.yaml"), &text).unwrap());
    let agencies = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
    let topology = Topology::with_prefix("join-test", agencies).unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.join("concordat.db").display())).await.unwrap();
    let keyer = SubjectKeyer::new(b"router-join-test-subject-key").unwrap();
    let router = Router::new(policy, &BTreeMap::new(), store.clone(), keyer, topology, Duration::from_secs(3600));
    (router, store)
}

async fn route(router: &Router, event: CrisisEvent) -> Option<EpisodeId> {
    match router.route(event, Utc::now(), &TraceParent::new_root()).await.unwrap() {
        Routed::Done { episode, .. } => episode,
        Routed::Duplicate => panic!("not a duplicate"),
    }
}

/// A detention by the police opens an episode about a person with NHS number 999 000 0018.
async fn detention(router: &Router) -> EpisodeId {
    route(router, example("police-s136-detention")).await.unwrap()
}

#[tokio::test]
async fn a_stranger_quoting_an_episode_id_does_not_join_nor_get_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let (router, store) = start(dir.path()).await;
    let episode = detention(&router).await;
    let stranger = AgencyId::new("safe-haven").unwrap();

    // The Safe Haven never took part and was sent nothing: it names the episode by its id, in both places.
    let mut contact = example("vcs-contact");
    contact.episode.episode_id = Some(episode);
    contact.episode.refs = vec![names(episode)];
    let refused_before = concordat_telemetry::value("concordat_joins_refused_total", &[("agency", "safe-haven")]);
    assert_ne!(route(&router, contact).await, Some(episode), "the contact is handled as if it named no episode");
    let refused = concordat_telemetry::value("concordat_joins_refused_total", &[("agency", "safe-haven")]);
    assert!(refused > refused_before, "the refusal is counted");

    let mut tx = store.begin().await.unwrap();
    let members = tx.members(episode).await.unwrap();
    assert!(members.iter().all(|member| member.agency != stranger), "{members:?}");
    drop(tx);

    // The trust was sent the detention, so it may name the episode; its outcome brings feedback to those
    // who took part, and none to the stranger.
    let mut outcome = example("nhs-assessment-outcome");
    outcome.episode.episode_id = Some(episode);
    outcome.episode.refs = vec![names(episode)];
    assert_eq!(route(&router, outcome).await, Some(episode));
    let pending = store.pending_outbox(1000).await.unwrap();
    assert!(pending.iter().any(|delivery| delivery.recipient.as_str() == "northvale-police"), "feedback to the force");
    assert!(pending.iter().all(|delivery| delivery.recipient != stranger), "nothing to the stranger");
    store.audit_verify().await.unwrap();
}

#[tokio::test]
async fn an_episode_id_nobody_assigned_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = start(dir.path()).await;
    let mut detention = example("police-s136-detention");
    let made_up = EpisodeId(Uuid::new_v4());
    detention.episode.episode_id = Some(made_up);
    let opened = route(&router, detention).await;
    assert!(opened.is_some_and(|episode| episode != made_up), "a new episode opens: {opened:?}");
}

#[tokio::test]
async fn the_same_person_may_name_the_episode() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _store) = start(dir.path()).await;
    let episode = detention(&router).await;
    // A Safe Haven contact about the same person (same NHS number) that quotes the episode joins it.
    let mut contact = example("vcs-contact");
    contact.subject.nhs_number = example("police-s136-detention").subject.nhs_number;
    contact.episode.refs = vec![names(episode)];
    assert_eq!(route(&router, contact).await, Some(episode));
}
