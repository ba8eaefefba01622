//! Routing a batch of events in one store transaction: each event sees what those before it in the batch
//! wrote, a duplicate inside the batch is routed once, and a conflicting event is refused without holding
//! back the others.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use concordat_bus::{Topology, TraceParent};
use concordat_episode::{CrisisEvent, EventId, Identifier, NonEmptyString, parse_event};
use concordat_router::{Routable, RouteError, Routed, Router};
use concordat_store::{Store, SubjectKeyer};
use uuid::Uuid;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> CrisisEvent {
    let path = root().join("schemas/examples/crisis-event/valid").join(format!("{name}.json"));
    parse_event(&std::fs::read(path).unwrap()).unwrap()
}

fn incident(number: &str) -> Identifier {
    Identifier {
        system: NonEmptyString::new("urn:concordat:police-incident:northvale-police").unwrap(),
        value: NonEmptyString::new(number).unwrap(),
    }
}

/// An s136 detention of a person with no NHS number known, under its own incident number.
fn detention(number: &str) -> CrisisEvent {
    let mut event = example("police-s136-detention");
    event.event_id = EventId(Uuid::new_v4());
    event.episode.refs = vec![incident(number)];
    event.subject.nhs_number = None;
    event
}

async fn start(dir: &Path) -> (Router, Store) {
    let text = std::fs::read_to_string(root().join("deploy/local/policies/northvale.yaml")).unwrap();
    let policy = Arc::new(concordat_policy::load(Path::new("northvale.yaml"), &text).unwrap());
    let agencies = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
    let topology = Topology::with_prefix("batch-test", agencies).unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.join("concordat.db").display())).await.unwrap();
    let keyer = SubjectKeyer::new(b"router-batch-test-subject-key").unwrap();
    let router = Router::new(policy, &BTreeMap::new(), store.clone(), keyer, topology, Duration::from_secs(3600));
    (router, store)
}

fn episode_of(result: &Result<Routed, RouteError>) -> Uuid {
    match result {
        Ok(Routed::Done { episode: Some(episode), .. }) => episode.0,
        other => panic!("expected a routed event in an episode, got {other:?}"),
    }
}

#[tokio::test]
async fn one_batch_one_commit_with_each_event_seeing_those_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (router, store) = start(dir.path()).await;
    let first = detention("NVP-BATCH-1");
    let second = detention("NVP-BATCH-2");
    // Names both incidents, so it points at two episodes: refused, never merged.
    let mut ambiguous = example("police-conveyance");
    ambiguous.event_id = EventId(Uuid::new_v4());
    ambiguous.episode.refs = vec![incident("NVP-BATCH-1"), incident("NVP-BATCH-2")];
    ambiguous.subject.nhs_number = None;
    // From the force that opened both, so it has a right to each (a stranger's refs would be struck instead).
    ambiguous.source.agency = concordat_episode::AgencyId::new("northvale-police").unwrap();
    // The trust's outcome against the first incident, in the same batch that opened its episode.
    let mut outcome = example("nhs-assessment-outcome");
    outcome.episode.episode_id = None;
    outcome.episode.refs = vec![incident("NVP-BATCH-1")];
    outcome.subject.nhs_number = None;

    let batch = [first.clone(), first.clone(), second, ambiguous.clone(), outcome];
    let results = router
        .route_batch(batch.into_iter().map(|event| Routable::new(event, TraceParent::new_root())).collect(), Utc::now())
        .await
        .unwrap();

    assert_eq!(results.len(), 5);
    let opened = episode_of(&results[0]);
    assert!(matches!(results[1], Ok(Routed::Duplicate)), "the same event twice in a batch: {:?}", results[1]);
    let other = episode_of(&results[2]);
    assert_ne!(opened, other);
    assert!(matches!(results[3], Err(RouteError::Conflict(2))), "{:?}", results[3]);
    assert_eq!(episode_of(&results[4]), opened, "the outcome joined the episode opened earlier in the batch");

    // Everything but the refused event committed, with feedback to the detaining force recorded.
    let episode = store.episode(concordat_episode::EpisodeId(opened)).await.unwrap().unwrap();
    assert!(episode.feedback_delivered_at.is_some());
    let mut tx = store.begin().await.unwrap();
    assert!(tx.is_processed(first.event_id).await.unwrap());
    assert!(!tx.is_processed(ambiguous.event_id).await.unwrap(), "a refused event leaves no mark");
    drop(tx);
    let pending = store.pending_outbox(100).await.unwrap();
    let queued: usize = results
        .iter()
        .map(|result| match result {
            Ok(Routed::Done { deliveries, .. }) => *deliveries,
            _ => 0,
        })
        .sum();
    assert!(queued > 0);
    assert_eq!(pending.len(), queued, "one outbox row per delivery the batch reported");
    store.audit_verify().await.unwrap();

    // Alone, the refused event is refused the same way.
    let again = router.route(ambiguous, Utc::now(), &TraceParent::new_root()).await;
    assert!(matches!(again, Err(RouteError::Conflict(2))), "{again:?}");
}

#[tokio::test]
async fn a_batch_routes_as_the_same_events_one_by_one() {
    let batch = [
        detention("NVP-SAME-1"),
        detention("NVP-SAME-2"),
        example("nhs-crisis-plan"),
        example("police-s136-detention"),
        example("vcs-contact"),
    ];
    let together = tempfile::tempdir().unwrap();
    let (router, batched) = start(together.path()).await;
    let now = Utc::now();
    let results = router
        .route_batch(batch.iter().cloned().map(|event| Routable::new(event, TraceParent::new_root())).collect(), now)
        .await
        .unwrap();
    let apart = tempfile::tempdir().unwrap();
    let (router, single) = start(apart.path()).await;
    let mut one_by_one = Vec::new();
    for event in batch {
        one_by_one.push(router.route(event, now, &TraceParent::new_root()).await);
    }
    assert_eq!(format!("{results:?}"), format!("{one_by_one:?}"));
    let bodies = |rows: Vec<concordat_store::PendingDelivery>| {
        rows.into_iter().map(|row| (row.delivery_id, row.recipient, row.body)).collect::<Vec<_>>()
    };
    assert_eq!(bodies(batched.pending_outbox(100).await.unwrap()), bodies(single.pending_outbox(100).await.unwrap()));
}
