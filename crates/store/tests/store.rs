//! The store's behaviour, each test run on SQLite and on PostgreSQL with the same body.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use concordat_episode::{AgencyId, CrisisEvent, EpisodeId, EventId, NhsNumber, police_incident_system};
use concordat_store::{
    AuditBreak, CloseReason, Conflict, Decision, DecisionId, DeliveryId, DeliveryStatus, EpisodeState, NewDelivery,
    NewEpisode, PurgeCutoffs, Relation, StoreError, SubjectKeyer, Tx, Verdict,
};
use uuid::Uuid;

use common::{Spec, TestDb, at, event, ident};

on_both_backends!(
    migrations_are_idempotent,
    dedup_mark_is_written_once,
    refs_correlate_and_conflicts_list_every_episode,
    subject_keys_match_open_episodes_only,
    a_dropped_transaction_leaves_nothing,
    outbox_keeps_creation_order_and_marks,
    pushed_deliveries_are_confirmed_once_and_audited,
    many_rows_in_one_call_keep_order_and_name_the_refused_row,
    recorded_events_are_written_at_flush_and_refused_twice,
    members_added_together_are_audited_once_each,
    audit_chain_verifies_and_names_an_edited_record,
    audit_chain_names_a_deleted_record,
    concurrent_appends_never_fork_the_chain,
    concurrent_routers_open_one_episode_per_person,
    purge_removes_personal_data_and_keeps_the_chain,
    purging_keeps_the_store_bounded,
    each_kind_of_record_is_purged_by_its_own_cutoff,
    episodes_close_when_quiet_and_feedback_is_tracked,
    timeline_tells_the_story_without_personal_data,
    correlation_fixtures,
    unattached_events_are_held_by_subject_and_purged,
    read_ahead_answers_as_the_database_does,
    writes_deferred_while_reading_ahead_are_checked_at_the_flush,
);

fn agency(id: &str) -> AgencyId {
    AgencyId::new(id).unwrap()
}

fn keyer() -> SubjectKeyer {
    SubjectKeyer::new(b"northvale-test-subject-key-secret").unwrap()
}

fn s136(record_ref: &str, incident: &str, nhs_number: Option<&str>, minute: i64) -> CrisisEvent {
    let system = police_incident_system(&agency("northvale-police"));
    event(Spec {
        agency: "northvale-police",
        agency_kind: "police",
        kind: "police.s136_detention",
        record_ref,
        nhs_number,
        refs: &[(system.as_str(), incident)],
        received_minute: minute,
    })
}

fn crisis_plan(record_ref: &str, nhs_number: &str, minute: i64) -> CrisisEvent {
    event(Spec {
        agency: "northvale-mh",
        agency_kind: "nhs",
        kind: "nhs.crisis_plan",
        record_ref,
        nhs_number: Some(nhs_number),
        refs: &[],
        received_minute: minute,
    })
}

fn arrival(record_ref: &str, nhs_number: Option<&str>, minute: i64) -> CrisisEvent {
    event(Spec {
        agency: "northvale-mh",
        agency_kind: "nhs",
        kind: "nhs.place_of_safety_arrival",
        record_ref,
        nhs_number,
        refs: &[],
        received_minute: minute,
    })
}

/// What the router does with one event, reduced to the store calls: dedup, correlate (refs, then the
/// subject key of an open episode, else open one), record, mark processed.
async fn route(tx: &mut Tx, event: &CrisisEvent) -> anyhow::Result<EpisodeId> {
    assert!(!tx.is_processed(event.event_id).await?);
    let at = event.provenance.received_at.to_utc();
    let key = event.subject.nhs_number.as_ref().map(|number| keyer().key(number));
    let mut found = tx.find_episode_by_refs(&event.episode.refs).await?;
    if found.is_empty()
        && let Some(key) = &key
    {
        found = tx.find_open_episode_by_subject(key).await?;
    }
    let episode = match found.first() {
        Some(episode) => episode.id,
        None => {
            let id = EpisodeId(Uuid::new_v5(&Uuid::NAMESPACE_OID, event.event_id.0.as_bytes()));
            let new = NewEpisode {
                id,
                originator: event.source.agency.clone(),
                opened_by: event.event_id,
                opened_at: at,
                feedback_due_at: Some(at + chrono::Duration::hours(72)),
            };
            tx.open_episode(&new).await?.id
        }
    };
    tx.add_refs(episode, &event.episode.refs, at).await?;
    if let Some(key) = &key {
        tx.add_subject_key(episode, key, at).await?;
    }
    tx.add_member(episode, &event.source.agency, Relation::Contributor, at).await?;
    tx.record_event(episode, event).await?;
    tx.mark_processed(event.event_id, Some(episode), at).await?;
    Ok(episode)
}

fn decision(event: &CrisisEvent, episode: EpisodeId, recipient: &str, verdict: Verdict) -> Decision {
    Decision {
        decision_id: DecisionId(Uuid::new_v5(&event.event_id.0, recipient.as_bytes())),
        event_id: event.event_id,
        episode_id: Some(episode),
        recipient: agency(recipient),
        verdict,
        reason: "agreement nv-s136-handover permits".to_owned(),
        agreement_ids: vec!["nv-s136-handover".to_owned()],
        purposes: vec!["direct_care".to_owned()],
        lawful_bases: vec!["uk_gdpr_6_1_e".to_owned(), "uk_gdpr_9_2_h".to_owned()],
        fields_shared: vec!["/kind".to_owned(), "/risk/level".to_owned()],
        fields_withheld: vec!["/details/notes".to_owned()],
        policy_version: "sha256:0f0e".to_owned(),
        decided_at: event.provenance.received_at.to_utc(),
    }
}

fn delivery(event: &CrisisEvent, recipient: &str, minute: i64) -> NewDelivery {
    NewDelivery {
        delivery_id: DeliveryId(Uuid::new_v5(&event.event_id.0, format!("deliver:{recipient}").as_bytes())),
        event_id: event.event_id,
        decision_id: Some(DecisionId(Uuid::new_v5(&event.event_id.0, recipient.as_bytes()))),
        recipient: agency(recipient),
        exchange: "concordat.deliver".to_owned(),
        routing_key: recipient.to_owned(),
        content_type: "application/json".to_owned(),
        headers: BTreeMap::from([("concordat-kind".to_owned(), event.kind.to_string())]),
        body: format!("{{\"person\":\"Alex Testperson\",\"for\":\"{recipient}\"}}").into_bytes(),
        created_at: at(minute),
    }
}

/// Routes one event with a decision and a delivery for `recipient`, in one committed transaction.
async fn route_and_deliver(db: &TestDb, event: &CrisisEvent, recipient: &str) -> anyhow::Result<EpisodeId> {
    let mut tx = db.store.begin().await?;
    let episode = route(&mut tx, event).await?;
    tx.insert_decision(&decision(event, episode, recipient, Verdict::Permit)).await?;
    let minute = (event.provenance.received_at.to_utc() - at(0)).num_minutes();
    tx.enqueue(&delivery(event, recipient, minute)).await?;
    tx.commit().await?;
    Ok(episode)
}

async fn migrations_are_idempotent(db: TestDb) -> anyhow::Result<()> {
    let again = concordat_store::Store::connect(&db.url).await?;
    let third = concordat_store::Store::connect(&db.url).await?;
    assert_eq!(again.audit_verify().await?.records, 0);
    again.close().await;
    third.close().await;
    let tables = match db.store.backend() {
        concordat_store::Backend::Sqlite => {
            db.count("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_head'").await?
        }
        concordat_store::Backend::Postgres => {
            db.count("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'audit_head'").await?
        }
    };
    assert_eq!(tables, 1);
    assert_eq!(db.count("SELECT CAST(COUNT(*) AS BIGINT) FROM audit_head").await?, 1);
    Ok(())
}

async fn dedup_mark_is_written_once(db: TestDb) -> anyhow::Result<()> {
    let event = s136("NVP-1#s136", "NVP-20260301-0457", None, 1);
    let mut tx = db.store.begin().await?;
    route(&mut tx, &event).await?;
    tx.commit().await?;

    let mut tx = db.store.begin().await?;
    assert!(tx.is_processed(event.event_id).await?);
    let again = tx.mark_processed(event.event_id, None, at(2)).await;
    assert!(matches!(again, Err(StoreError::Conflict(Conflict::AlreadyProcessed(id))) if id == event.event_id));
    drop(tx);

    let mut tx = db.store.begin().await?;
    let other = EventId(Uuid::from_u128(7));
    assert!(!tx.is_processed(other).await?);
    // An event that joins no episode still gets its mark, so a redelivery is recognised.
    tx.mark_processed(other, None, at(3)).await?;
    tx.commit().await?;
    let mut tx = db.store.begin().await?;
    assert!(tx.is_processed(other).await?);
    Ok(())
}

async fn refs_correlate_and_conflicts_list_every_episode(db: TestDb) -> anyhow::Result<()> {
    let first = s136("NVP-1#s136", "NVP-20260301-0457", None, 1);
    let second = s136("NVP-2#s136", "NVP-20260301-0999", None, 2);
    let mut tx = db.store.begin().await?;
    let a = route(&mut tx, &first).await?;
    let b = route(&mut tx, &second).await?;
    tx.commit().await?;
    assert_ne!(a, b);

    let police = police_incident_system(&agency("northvale-police"));
    let mut tx = db.store.begin().await?;
    let ids = |found: Vec<concordat_store::Episode>| found.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(tx.find_episode_by_refs(&[ident(&police, "NVP-20260301-0457")]).await?), [a]);
    assert_eq!(ids(tx.find_episode_by_refs(&[ident("urn:concordat:episode", &b.to_string())]).await?), [b]);
    assert_eq!(ids(tx.find_episode_by_refs(&[ident(&police, "NVP-unknown")]).await?), Vec::<EpisodeId>::new());
    // Refs pointing at two episodes: both come back, oldest first, for the router to resolve.
    let both = [ident(&police, "NVP-20260301-0999"), ident(&police, "NVP-20260301-0457"), ident(&police, "NVP-x")];
    assert_eq!(ids(tx.find_episode_by_refs(&both).await?), [a, b]);
    // More refs than one statement carries: the ones that match are found wherever they stand, once each.
    let mut many: Vec<_> = (0..150).map(|n| ident(&police, &format!("NVP-none-{n}"))).collect();
    many[3] = ident(&police, "NVP-20260301-0999");
    many[97] = ident(&police, "NVP-20260301-0457");
    many[140] = ident(&police, "NVP-20260301-0999");
    assert_eq!(ids(tx.find_episode_by_refs(&many).await?), [a, b]);

    assert_eq!(tx.add_refs(a, &[ident(&police, "NVP-20260301-0457")], at(3)).await?, 0);
    let taken = tx.add_refs(b, &[ident(&police, "NVP-20260301-0457")], at(3)).await;
    match taken {
        Err(StoreError::Conflict(Conflict::RefHeldByOtherEpisode { system, held_by })) => {
            assert_eq!((system.as_str(), held_by), (police.as_str(), a));
        }
        other => panic!("expected a ref conflict, got {other:?}"),
    }
    let message = tx.add_refs(b, &[ident(&police, "NVP-20260301-0457")], at(3)).await.unwrap_err().to_string();
    assert!(!message.contains("NVP-20260301-0457"), "a ref value leaked into an error: {message}");
    // Several at once, repeats among them: only the new ones count; a ref of another episode anywhere in
    // the list is refused by name of its owner.
    let mixed = [
        ident(&police, "NVP-a"),
        ident(&police, "NVP-20260301-0457"),
        ident(&police, "NVP-a"),
        ident(&police, "NVP-b"),
    ];
    assert_eq!(tx.add_refs(a, &mixed, at(4)).await?, 2);
    assert_eq!(ids(tx.find_episode_by_refs(&[ident(&police, "NVP-b")]).await?), [a]);
    let late = [ident(&police, "NVP-c"), ident(&police, "NVP-20260301-0999"), ident(&police, "NVP-b")];
    match tx.add_refs(b, &late, at(5)).await {
        Err(StoreError::Conflict(Conflict::RefHeldByOtherEpisode { held_by, .. })) => assert_eq!(held_by, a),
        other => panic!("expected a ref conflict, got {other:?}"),
    }
    Ok(())
}

async fn subject_keys_match_open_episodes_only(db: TestDb) -> anyhow::Result<()> {
    let detained = s136("NVP-1#s136", "NVP-20260301-0457", Some("9990000018"), 1);
    let mut tx = db.store.begin().await?;
    let episode = route(&mut tx, &detained).await?;
    tx.commit().await?;

    // The trust's arrival event carries no police ref, only the NHS number: it joins by subject key.
    let arrived = arrival("AS-77", Some("9990000018"), 30);
    let mut tx = db.store.begin().await?;
    assert_eq!(route(&mut tx, &arrived).await?, episode);
    let stranger = keyer().key(&NhsNumber::new("9991111115")?);
    assert!(tx.find_open_episode_by_subject(&stranger).await?.is_empty());
    assert!(tx.close_episode(episode, CloseReason::Concluded, at(600)).await?);
    assert!(!tx.close_episode(episode, CloseReason::Concluded, at(601)).await?);
    tx.commit().await?;

    let mut tx = db.store.begin().await?;
    let same_person = keyer().key(&NhsNumber::new("9990000018")?);
    assert!(tx.find_open_episode_by_subject(&same_person).await?.is_empty(), "a closed episode matched");
    // A new crisis for the same person opens a new episode.
    let later = arrival("AS-91", Some("9990000018"), 2000);
    let new_episode = route(&mut tx, &later).await?;
    assert_ne!(new_episode, episode);
    assert_eq!(tx.find_open_episode_by_subject(&same_person).await?.len(), 1);
    let members = tx.members(episode).await?;
    let summary: Vec<_> = members.iter().map(|m| (m.agency.as_str(), m.relations.clone())).collect();
    assert_eq!(
        summary,
        [
            ("northvale-mh", vec![Relation::Contributor]),
            ("northvale-police", vec![Relation::Originator, Relation::Contributor]),
        ]
    );
    Ok(())
}

async fn a_dropped_transaction_leaves_nothing(db: TestDb) -> anyhow::Result<()> {
    let event = s136("NVP-1#s136", "NVP-20260301-0457", Some("9990000018"), 1);
    let episode;
    {
        let mut tx = db.store.begin().await?;
        episode = route(&mut tx, &event).await?;
        tx.insert_decision(&decision(&event, episode, "northvale-mh", Verdict::Permit)).await?;
        tx.enqueue(&delivery(&event, "northvale-mh", 1)).await?;
        tx.append_audit(at(1), concordat_store::AuditRecord::DeliverySent { delivery_id: DeliveryId(Uuid::nil()) });
        // Dropped here without commit.
    }
    let mut tx = db.store.begin().await?;
    assert!(!tx.is_processed(event.event_id).await?);
    assert_eq!(tx.episode(episode).await?, None);
    assert!(tx.event_meta(event.event_id).await?.is_none());
    assert!(tx.decisions(event.event_id).await?.is_empty());
    tx.rollback().await?;
    assert!(db.store.pending_outbox(10).await?.is_empty());
    assert_eq!(db.store.audit_verify().await?.records, 0);
    for table in ["episodes", "episode_refs", "episode_members", "subject_keys", "events", "event_payloads", "outbox"] {
        assert_eq!(db.count(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}")).await?, 0, "{table}");
    }
    Ok(())
}

/// Decisions and deliveries written many at a time (more than one statement's worth) keep their order
/// and their audit records; a refused row is named, whichever place it has in the call.
async fn members_added_together_are_audited_once_each(db: TestDb) -> anyhow::Result<()> {
    let event = s136("NVP-1#s136", "NVP-20260301-0457", None, 1);
    let mut tx = db.store.begin().await?;
    let episode = route(&mut tx, &event).await?;
    let committed = tx.commit().await?;
    let before = committed.audit_records;

    // Two new memberships and two the episode already holds, in one call: two are added and audited.
    let mut tx = db.store.begin().await?;
    let police = agency("northvale-police");
    let trust = agency("northvale-mh");
    let added = tx
        .add_members(
            episode,
            &[
                (police.clone(), Relation::Originator),
                (trust.clone(), Relation::Responder),
                (police.clone(), Relation::Contributor),
                (trust.clone(), Relation::Contributor),
            ],
            at(5),
        )
        .await?;
    assert_eq!(added, 2);
    assert!(!tx.add_member(episode, &trust, Relation::Responder, at(6)).await?, "held already");
    let haven = agency("safe-haven");
    let twice = [(haven.clone(), Relation::Responder), (haven.clone(), Relation::Responder)];
    assert_eq!(tx.add_members(episode, &twice, at(6)).await?, 1, "given twice, added once");
    let committed = tx.commit().await?;
    assert_eq!(committed.audit_records, 3, "one member_added per new membership (before: {before})");
    let mut tx = db.store.begin().await?;
    let members = tx.members(episode).await?;
    let trust_member = members.iter().find(|member| member.agency == trust).expect("the trust is a member");
    assert_eq!(trust_member.relations, [Relation::Contributor, Relation::Responder]);
    // Read together, members and refs are what each read alone gives.
    let refs = tx.episode_refs(episode).await?;
    assert!(refs.len() >= 2, "its own id and the incident: {refs:?}");
    assert_eq!(tx.members_and_refs(episode).await?, (members, refs));
    tx.rollback().await?;
    db.store.audit_verify().await?;
    Ok(())
}

async fn many_rows_in_one_call_keep_order_and_name_the_refused_row(db: TestDb) -> anyhow::Result<()> {
    let event = s136("NVP-1#s136", "NVP-20260301-0457", None, 1);
    let mut tx = db.store.begin().await?;
    let episode = route(&mut tx, &event).await?;
    let recipients: Vec<String> = (0..150).map(|n| format!("agency-{n:03}")).collect();
    let decisions: Vec<Decision> =
        recipients.iter().map(|recipient| decision(&event, episode, recipient, Verdict::Permit)).collect();
    let deliveries: Vec<NewDelivery> = recipients.iter().map(|recipient| delivery(&event, recipient, 1)).collect();
    tx.insert_decisions(&decisions).await?;
    tx.enqueue_all(&deliveries).await?;
    let committed = tx.commit().await?;
    assert!(committed.audit_records >= 300, "one audit record per decision and per delivery: {committed:?}");
    let pending: Vec<String> =
        db.store.pending_outbox(1000).await?.into_iter().map(|row| row.recipient.to_string()).collect();
    assert_eq!(pending, recipients, "the outbox keeps the order of the call");
    db.store.audit_verify().await?;

    let mut tx = db.store.begin().await?;
    let fresh = ["late-1", "late-2"].map(|recipient| delivery(&event, recipient, 2));
    let again = [fresh[0].clone(), deliveries[70].clone(), fresh[1].clone()];
    // Rows an earlier transaction stored are refused when the deferred rows are written.
    tx.enqueue_all(&again).await?;
    let refused = tx.flush().await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(Conflict::DeliveryExists(id))) if id == deliveries[70].delivery_id),
        "{refused:?}"
    );
    tx.rollback().await?;
    let mut tx = db.store.begin().await?;
    let twice = [decision(&event, episode, "late-1", Verdict::Deny), decisions[120].clone()];
    tx.insert_decisions(&twice).await?;
    let refused = tx.commit().await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(Conflict::DecisionExists { recipient, .. })) if recipient == "agency-120"),
        "{refused:?}"
    );
    // Nothing of a refused commit was written.
    let pending = db.store.pending_outbox(1000).await?;
    assert_eq!(pending.len(), recipients.len(), "late deliveries were not kept");
    db.store.audit_verify().await?;

    // Within one transaction the second of two is refused at once, and the first is kept.
    let mut tx = db.store.begin().await?;
    let late = decision(&event, episode, "late-2", Verdict::Permit);
    tx.insert_decision(&late).await?;
    let again = tx.insert_decision(&late).await;
    assert!(
        matches!(&again, Err(StoreError::Conflict(Conflict::DecisionExists { recipient, .. })) if recipient == "late-2")
    );
    tx.commit().await?;
    let mut tx = db.store.begin().await?;
    assert_eq!(tx.decisions(event.event_id).await?.len(), recipients.len() + 1);
    tx.rollback().await?;
    Ok(())
}

async fn recorded_events_are_written_at_flush_and_refused_twice(db: TestDb) -> anyhow::Result<()> {
    let first = s136("NVP-1#s136", "NVP-20260301-0457", None, 1);
    let mut tx = db.store.begin().await?;
    let episode = route(&mut tx, &first).await?;
    // The same event twice in one transaction is refused at once.
    let again = tx.record_event(episode, &first).await;
    assert!(matches!(again, Err(StoreError::Conflict(Conflict::EventRecorded(id))) if id == first.event_id));
    // A later event moves last_event_at on as soon as it is recorded, before anything is written.
    let later = arrival("NVMH-1#arrival", None, 30);
    tx.record_event(episode, &later).await?;
    let shown = tx.episode(episode).await?.unwrap();
    assert_eq!(shown.last_event_at, at(30));
    // Reading the events writes them first.
    let events = tx.episode_events(episode).await?;
    assert_eq!(events.iter().map(|meta| meta.event_id).collect::<Vec<_>>(), [first.event_id, later.event_id]);
    assert_eq!(tx.event(later.event_id).await?.map(|event| event.event_id), Some(later.event_id));
    tx.commit().await?;
    assert_eq!(db.store.episode(episode).await?.unwrap().last_event_at, at(30), "written as shown");

    // An event an earlier transaction recorded is refused by the commit, and nothing of it is kept.
    let mut tx = db.store.begin().await?;
    tx.record_event(episode, &later).await?;
    let refused = tx.commit().await;
    assert!(matches!(refused, Err(StoreError::Conflict(Conflict::EventRecorded(id))) if id == later.event_id));
    db.store.audit_verify().await?;
    Ok(())
}

async fn outbox_keeps_creation_order_and_marks(db: TestDb) -> anyhow::Result<()> {
    let event = s136("NVP-1#s136", "NVP-20260301-0457", None, 1);
    let mut tx = db.store.begin().await?;
    let episode = route(&mut tx, &event).await?;
    let recipients = ["northvale-mh", "northvale-ambulance", "northvale-acute", "safe-haven"];
    for recipient in recipients {
        tx.insert_decision(&decision(&event, episode, recipient, Verdict::Permit)).await?;
        // The same creation time for all: the order must come from insertion, not the clock.
        tx.enqueue(&delivery(&event, recipient, 1)).await?;
    }
    let duplicate = tx.enqueue(&delivery(&event, "northvale-mh", 1)).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(Conflict::DeliveryExists(_)))));
    tx.commit().await?;

    let order = |pending: Vec<concordat_store::PendingDelivery>| {
        pending.into_iter().map(|d| d.recipient.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(order(db.store.pending_outbox(10).await?), recipients);
    assert_eq!(order(db.store.pending_outbox(2).await?), recipients[..2]);
    // The relay's look at the outbox while the router hands it rows: only rows enqueued before the cutoff.
    assert!(db.store.pending_outbox_created_before(10, Some(at(1))).await?.is_empty());
    assert_eq!(order(db.store.pending_outbox_created_before(10, Some(at(2))).await?), recipients);
    let first = db.store.pending_outbox(1).await?.remove(0);
    assert_eq!(first.body, delivery(&event, "northvale-mh", 1).body);
    assert_eq!(first.headers.get("concordat-kind").map(String::as_str), Some("police.s136_detention"));

    let id = |recipient: &str| delivery(&event, recipient, 1).delivery_id;
    assert_eq!(db.store.mark_sent(&[id("northvale-ambulance"), id("northvale-acute")], at(5)).await?, 2);
    assert_eq!(db.store.mark_sent(&[id("northvale-ambulance")], at(6)).await?, 0, "marked twice");
    assert_eq!(order(db.store.pending_outbox(10).await?), ["northvale-mh", "safe-haven"]);

    assert_eq!(db.store.mark_failed(id("safe-haven"), "channel closed", 2, at(7)).await?, DeliveryStatus::Pending);
    assert_eq!(db.store.pending_outbox(10).await?[1].attempts, 1);
    assert_eq!(db.store.mark_failed(id("safe-haven"), "channel closed", 2, at(8)).await?, DeliveryStatus::Dead);
    assert_eq!(order(db.store.pending_outbox(10).await?), ["northvale-mh"]);
    let dead = db.store.dead_deliveries(10).await?;
    assert_eq!((dead.len(), dead[0].attempts, dead[0].last_error.as_deref()), (1, 2, Some("channel closed")));
    assert!(db.store.retry_delivery(id("safe-haven"), at(9)).await?);
    assert_eq!(order(db.store.pending_outbox(10).await?), ["northvale-mh", "safe-haven"]);
    // Marks riding on another transaction's flush: only what is still pending is marked and audited.
    let audited = db.store.audit_verify().await?.records;
    let mut tx = db.store.begin().await?;
    tx.mark_sent_at_flush(&[id("safe-haven"), id("northvale-acute"), id("safe-haven")], at(10));
    tx.commit().await?;
    assert_eq!(order(db.store.pending_outbox(10).await?), ["northvale-mh"]);
    assert_eq!(db.store.audit_verify().await?.records, audited + 1, "one delivery_sent per row marked");
    // Groups confirmed at different times, marked in one transaction; those already sent are skipped.
    let groups = [(vec![id("northvale-mh"), id("northvale-acute")], at(11)), (vec![id("safe-haven")], at(12))];
    assert_eq!(db.store.mark_sent_in_groups(&groups).await?, 1);
    assert!(db.store.pending_outbox(10).await?.is_empty());
    assert_eq!(db.store.audit_verify().await?.records, audited + 2);
    let unknown = db.store.mark_failed(DeliveryId(Uuid::nil()), "x", 2, at(9)).await;
    assert!(matches!(unknown, Err(StoreError::NotFound(_))));
    assert!(db.store.audit_verify().await?.records > 0);
    Ok(())
}

async fn pushed_deliveries_are_confirmed_once_and_audited(db: TestDb) -> anyhow::Result<()> {
    let event = s136("NVP-1#s136", "NVP-20260301-0457", None, 1);
    let episode = route_and_deliver(&db, &event, "northvale-police").await?;
    let id = delivery(&event, "northvale-police", 1).delivery_id;
    let audited = db.store.audit_verify().await?.records;
    // The worker may push before the relay's mark lands: confirming does not need the row to be sent.
    assert!(db.store.mark_confirmed(id, "webhook", 204, at(3)).await?);
    assert!(!db.store.mark_confirmed(id, "webhook", 200, at(4)).await?, "a second push confirms nothing new");
    assert!(!db.store.mark_confirmed(DeliveryId(Uuid::nil()), "fhir", 200, at(4)).await?, "unknown id");
    assert_eq!(db.store.mark_sent(&[id], at(5)).await?, 1, "the relay's mark still lands");
    let verified = db.store.audit_verify().await?;
    assert_eq!(verified.records, audited + 2, "one delivery_confirmed, one delivery_sent");
    let kinds = db.count("SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE kind = 'delivery_confirmed'").await?;
    assert_eq!(kinds, 1);
    let timeline = db.store.episode_timeline(episode).await?.unwrap();
    let meta = &timeline.entries[0].deliveries[0];
    assert_eq!((meta.confirmed_at, meta.sent_at, meta.status), (Some(at(3)), Some(at(5)), DeliveryStatus::Sent));
    Ok(())
}

/// Routes a small scenario in several transactions and returns how many audit records it made.
async fn scenario(db: &TestDb) -> anyhow::Result<u64> {
    let detained = s136("NVP-1#s136", "NVP-20260301-0457", Some("9990000018"), 1);
    let arrived = arrival("AS-77", Some("9990000018"), 30);
    route_and_deliver(db, &detained, "northvale-mh").await?;
    route_and_deliver(db, &arrived, "northvale-police").await?;
    let pending: Vec<_> = db.store.pending_outbox(10).await?.into_iter().map(|d| d.delivery_id).collect();
    db.store.mark_sent(&pending, at(40)).await?;
    Ok(db.store.audit_verify().await?.records)
}

async fn audit_chain_verifies_and_names_an_edited_record(db: TestDb) -> anyhow::Result<()> {
    let records = scenario(&db).await?;
    assert!(records >= 10, "{records}");
    let update = "UPDATE audit_log SET record = 'x' WHERE seq = 1";
    assert!(db.raw(update).await.is_err(), "the append-only trigger let an update through");

    db.allow_audit_tampering().await?;
    // Change who a decision was about, as someone covering a disclosure would.
    let seq = db.count("SELECT CAST(MIN(seq) AS BIGINT) FROM audit_log WHERE kind = 'decision'").await?;
    db.raw(&format!(
        "UPDATE audit_log SET record = REPLACE(record, 'northvale-mh', 'northvale-acute') WHERE seq = {seq}"
    ))
    .await?;
    match db.store.audit_verify().await {
        Err(StoreError::AuditBroken { seq: broken, reason: AuditBreak::HashMismatch }) => {
            assert_eq!(broken, u64::try_from(seq)?);
        }
        other => panic!("expected a hash mismatch at {seq}, got {other:?}"),
    }
    Ok(())
}

async fn audit_chain_names_a_deleted_record(db: TestDb) -> anyhow::Result<()> {
    let records = scenario(&db).await?;
    db.allow_audit_tampering().await?;
    db.raw("DELETE FROM audit_log WHERE seq = 4").await?;
    match db.store.audit_verify().await {
        Err(StoreError::AuditBroken { seq: 5, reason: AuditBreak::Gap { expected: 4 } }) => {}
        other => panic!("expected a gap before seq 5, got {other:?}"),
    }
    db.raw(&format!("DELETE FROM audit_log WHERE seq = {records}")).await?;
    // The gap is still the first break reported.
    assert!(matches!(db.store.audit_verify().await, Err(StoreError::AuditBroken { seq: 5, .. })));

    // Removing records from the end alone is caught by the chain head.
    let db2 = db.clone();
    db2.raw("DELETE FROM audit_log WHERE seq >= 4").await?;
    match db2.store.audit_verify().await {
        Err(StoreError::AuditBroken { seq: 4, reason: AuditBreak::Truncated { head_seq } }) => {
            assert_eq!(head_seq, records);
        }
        other => panic!("expected truncation at 4, got {other:?}"),
    }
    Ok(())
}

async fn concurrent_appends_never_fork_the_chain(db: TestDb) -> anyhow::Result<()> {
    const TASKS: usize = 6;
    const EVENTS: usize = 8;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            for n in 0..EVENTS {
                let record_ref = format!("NVP-{task}-{n}#s136");
                let incident = format!("NVP-20260301-{task}{n:03}");
                let event = s136(&record_ref, &incident, None, i64::try_from(task * 100 + n).unwrap());
                loop {
                    let mut tx = store.begin().await?;
                    let routed = route(&mut tx, &event).await;
                    let committed = match routed {
                        Ok(_) => tx.commit().await.map(|_| ()).map_err(anyhow::Error::from),
                        Err(error) => Err(error),
                    };
                    match committed {
                        Ok(()) => break,
                        // A busy database or a deadlock victim is retried, as the router does.
                        Err(error) if error.downcast_ref::<StoreError>().is_some_and(StoreError::is_transient) => {}
                        Err(error) => return Err(error),
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    let verified = db.store.audit_verify().await?;
    // Each routed event writes four records: episode opened, originator, contributor, event recorded.
    assert_eq!(verified.records, u64::try_from(TASKS * EVENTS * 4)?);
    assert_eq!(
        db.count("SELECT CAST(COUNT(DISTINCT prev_hash) AS BIGINT) FROM audit_log").await?,
        i64::try_from(TASKS * EVENTS * 4)?
    );
    Ok(())
}

async fn concurrent_routers_open_one_episode_per_person(db: TestDb) -> anyhow::Result<()> {
    // Four agencies' events about one person, no shared refs, routed at once: the subject-key lock must make
    // three of them join the episode the first one opened.
    const SOURCES: [(&str, &str, &str); 4] = [
        ("northvale-police", "police", "police.concern_for_welfare"),
        ("northvale-mh", "nhs", "nhs.referral"),
        ("northvale-ambulance", "ambulance", "nhs.referral"),
        ("safe-haven", "vcs", "vcs.referral"),
    ];
    let mut handles = Vec::new();
    for (n, (agency, agency_kind, kind)) in SOURCES.into_iter().enumerate() {
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            let record_ref = format!("{agency}-{n}");
            let minute = i64::try_from(n)?;
            let spec = Spec {
                agency,
                agency_kind,
                kind,
                record_ref: &record_ref,
                nhs_number: Some("9991111115"),
                refs: &[],
                received_minute: minute,
            };
            let event = event(spec);
            loop {
                let mut tx = store.begin().await?;
                let routed = match route(&mut tx, &event).await {
                    Ok(episode) => tx.commit().await.map(|_| episode).map_err(anyhow::Error::from),
                    Err(error) => Err(error),
                };
                match routed {
                    Ok(episode) => return anyhow::Ok(episode),
                    Err(error) if error.downcast_ref::<StoreError>().is_some_and(StoreError::is_transient) => {}
                    Err(error) => return Err(error),
                }
            }
        }));
    }
    let mut episodes = Vec::new();
    for handle in handles {
        episodes.push(handle.await??);
    }
    episodes.dedup();
    assert_eq!(episodes.len(), 1, "one person, one episode: {episodes:?}");
    assert_eq!(db.count("SELECT CAST(COUNT(*) AS BIGINT) FROM episodes").await?, 1);
    assert_eq!(db.count("SELECT CAST(COUNT(*) AS BIGINT) FROM events").await?, 4);
    db.store.audit_verify().await?;
    Ok(())
}

async fn payload_bytes(db: &TestDb) -> anyhow::Result<i64> {
    let events = db.count("SELECT CAST(COALESCE(SUM(LENGTH(body)), 0) AS BIGINT) FROM event_payloads").await?;
    let bodies = db.count("SELECT CAST(COALESCE(SUM(LENGTH(body)), 0) AS BIGINT) FROM outbox").await?;
    Ok(events + bodies)
}

async fn personal_rows(db: &TestDb) -> anyhow::Result<i64> {
    let mut total = 0;
    for sql in [
        "SELECT CAST(COUNT(*) AS BIGINT) FROM event_payloads",
        "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox WHERE body IS NOT NULL",
        "SELECT CAST(COUNT(*) AS BIGINT) FROM subject_keys",
        "SELECT CAST(COUNT(*) AS BIGINT) FROM unattached_events",
        "SELECT CAST(COUNT(*) AS BIGINT) FROM episode_refs WHERE system <> 'urn:concordat:episode'",
    ] {
        total += db.count(sql).await?;
    }
    Ok(total)
}

async fn purge_removes_personal_data_and_keeps_the_chain(db: TestDb) -> anyhow::Result<()> {
    scenario(&db).await?;
    let closed = db.store.close_quiet_episodes(at(40), at(45)).await?;
    assert_eq!(closed.len(), 1);
    let open = s136("NVP-3#s136", "NVP-20260301-0777", Some("9434765919"), 70);
    let open_episode = route_and_deliver(&db, &open, "northvale-mh").await?;
    assert!(payload_bytes(&db).await? > 0);

    let report = db.store.purge_personal_data(&PurgeCutoffs::all(at(60)), at(2000)).await?;
    assert_eq!(report.event_payloads, 2);
    assert_eq!(report.deliveries_deleted, 2);
    assert_eq!(report.subject_keys, 1);
    assert_eq!(report.refs, 1);
    db.store.audit_verify().await?;

    // The open episode's data are younger than the cut-off: all still there, its pending delivery too.
    let mut tx = db.store.begin().await?;
    assert_eq!(tx.event(open.event_id).await?.as_ref(), Some(&open));
    let key = keyer().key(&NhsNumber::new("9434765919")?);
    assert_eq!(tx.find_open_episode_by_subject(&key).await?.len(), 1);
    let detained = s136("NVP-1#s136", "NVP-20260301-0457", Some("9990000018"), 1);
    let meta = tx.event_meta(detained.event_id).await?.expect("metadata stay");
    assert!(meta.payload_purged);
    assert_eq!(tx.event(detained.event_id).await?, None);
    assert!(tx.episode(closed[0]).await?.is_some());
    tx.rollback().await?;
    assert_eq!(db.store.pending_outbox(10).await?.len(), 1);
    assert_ne!(open_episode, closed[0]);

    // Everything goes once the cut-off passes the open episode too, pending deliveries excepted.
    let pending: Vec<_> = db.store.pending_outbox(10).await?.into_iter().map(|d| d.delivery_id).collect();
    db.store.mark_sent(&pending, at(80)).await?;
    db.store.close_quiet_episodes(at(3000), at(3000)).await?;
    db.store.purge_personal_data(&PurgeCutoffs::all(at(4000)), at(4000)).await?;
    assert_eq!(personal_rows(&db).await?, 0);
    assert_eq!(payload_bytes(&db).await?, 0);
    db.store.audit_verify().await?;
    Ok(())
}

async fn each_kind_of_record_is_purged_by_its_own_cutoff(db: TestDb) -> anyhow::Result<()> {
    scenario(&db).await?;
    let closed = db.store.close_quiet_episodes(at(40), at(45)).await?;
    assert_eq!(closed.len(), 1);
    let outbox = "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox";
    let deliveries = db.count(outbox).await?;
    assert!(deliveries > 0);
    let keys = "SELECT CAST(COUNT(*) AS BIGINT) FROM subject_keys";
    let before_keys = db.count(keys).await?;
    assert!(before_keys > 0);

    // Only the events' period has passed: the payloads go, the deliveries and the episode's keys stay.
    let far_past = at(-100_000);
    let events_only = PurgeCutoffs { events: at(2000), ..PurgeCutoffs::all(far_past) };
    let report = db.store.purge_personal_data(&events_only, at(2000)).await?;
    assert!(report.event_payloads > 0);
    assert_eq!((report.deliveries_deleted, report.subject_keys, report.refs), (0, 0, 0));
    assert_eq!(db.count("SELECT CAST(COUNT(*) AS BIGINT) FROM event_payloads").await?, 0);
    assert_eq!(db.count(outbox).await?, deliveries);
    assert_eq!(db.count(keys).await?, before_keys);

    // Then the episodes' period: the closed episode's keys go, the deliveries still stay.
    let episodes_too = PurgeCutoffs { episodes: at(2000), ..events_only };
    let report = db.store.purge_personal_data(&episodes_too, at(2001)).await?;
    assert_eq!((report.subject_keys, report.deliveries_deleted), (1, 0));
    assert_eq!(db.count(outbox).await?, deliveries);

    // Last the deliveries' period: the sent rows go; the chain verifies throughout.
    let report = db.store.purge_personal_data(&PurgeCutoffs::all(at(2000)), at(2002)).await?;
    assert_eq!(report.deliveries_deleted, u64::try_from(deliveries)?);
    db.store.audit_verify().await?;
    Ok(())
}

async fn purging_keeps_the_store_bounded(db: TestDb) -> anyhow::Result<()> {
    let mut after_purge = Vec::new();
    for round in 0..3_i64 {
        for n in 0..5_i64 {
            let minute = round * 1000 + n;
            let record_ref = format!("NVP-{round}-{n}#s136");
            let event = s136(&record_ref, &format!("NVP-{round}-{n}"), Some("9990000018"), minute);
            route_and_deliver(&db, &event, "northvale-mh").await?;
        }
        assert!(payload_bytes(&db).await? > 0);
        let pending: Vec<_> = db.store.pending_outbox(100).await?.into_iter().map(|d| d.delivery_id).collect();
        db.store.mark_sent(&pending, at(round * 1000 + 10)).await?;
        db.store.close_quiet_episodes(at(round * 1000 + 500), at(round * 1000 + 500)).await?;
        db.store.purge_personal_data(&PurgeCutoffs::all(at(round * 1000 + 600)), at(round * 1000 + 600)).await?;
        let outbox = db.count("SELECT CAST(COUNT(*) AS BIGINT) FROM outbox").await?;
        after_purge.push((personal_rows(&db).await?, payload_bytes(&db).await?, outbox));
    }
    assert_eq!(after_purge, [(0, 0, 0); 3]);
    db.store.audit_verify().await?;
    Ok(())
}

async fn episodes_close_when_quiet_and_feedback_is_tracked(db: TestDb) -> anyhow::Result<()> {
    let first = s136("NVP-1#s136", "NVP-1", None, 1);
    let second = s136("NVP-2#s136", "NVP-2", None, 100);
    let mut tx = db.store.begin().await?;
    let a = route(&mut tx, &first).await?;
    let b = route(&mut tx, &second).await?;
    tx.commit().await?;

    let awaiting: Vec<_> = db.store.episodes_awaiting_feedback(at(50)).await?.into_iter().map(|e| e.id).collect();
    assert_eq!(awaiting, [a]);
    assert_eq!(db.store.episodes_feedback_overdue(at(1 + 72 * 60)).await?.len(), 1);

    let mut tx = db.store.begin().await?;
    let feedback = EventId(Uuid::from_u128(42));
    assert!(tx.mark_feedback_delivered(a, feedback, at(120)).await?);
    assert!(!tx.mark_feedback_delivered(a, feedback, at(130)).await?, "only the first feedback counts");
    tx.set_feedback_due(b, None).await?;
    tx.commit().await?;
    assert_eq!(db.store.episode(a).await?.and_then(|e| e.feedback_delivered_at), Some(at(120)));
    assert!(db.store.episodes_awaiting_feedback(at(50)).await?.is_empty());
    assert!(db.store.episodes_feedback_overdue(at(100_000)).await?.is_empty());

    assert_eq!(db.store.close_quiet_episodes(at(50), at(200)).await?, [a]);
    assert_eq!(db.store.close_quiet_episodes(at(50), at(201)).await?, Vec::<EpisodeId>::new());
    let closed = db.store.require_episode(a).await?;
    assert_eq!(
        (closed.state, closed.close_reason, closed.closed_at),
        (EpisodeState::Closed, Some(CloseReason::Quiet), Some(at(200)))
    );
    assert_eq!(db.store.episode(b).await?.map(|e| e.state), Some(EpisodeState::Open));
    let missing = EpisodeId(Uuid::nil());
    let mut tx = db.store.begin().await?;
    assert!(matches!(
        tx.close_episode(missing, CloseReason::Administrative, at(1)).await,
        Err(StoreError::NotFound(_))
    ));
    Ok(())
}

async fn timeline_tells_the_story_without_personal_data(db: TestDb) -> anyhow::Result<()> {
    scenario(&db).await?;
    let detained = s136("NVP-1#s136", "NVP-20260301-0457", Some("9990000018"), 1);
    let mut tx = db.store.begin().await?;
    let episode = tx.find_episode_by_refs(&detained.episode.refs).await?.remove(0);
    tx.rollback().await?;
    let timeline = db.store.episode_timeline(episode.id).await?.expect("timeline");
    assert_eq!(timeline.episode.originator.as_str(), "northvale-police");
    let kinds: Vec<_> = timeline.entries.iter().map(|entry| entry.event.kind.as_str()).collect();
    assert_eq!(kinds, ["police.s136_detention", "nhs.place_of_safety_arrival"]);
    let first = &timeline.entries[0];
    assert_eq!(first.decisions, [decision(&detained, episode.id, "northvale-mh", Verdict::Permit)]);
    assert_eq!(first.deliveries.len(), 1);
    assert_eq!(first.deliveries[0].status, DeliveryStatus::Sent);
    assert_eq!(first.deliveries[0].sent_at, Some(at(40)));
    let debug = format!("{timeline:?}");
    for personal in ["Testperson", "9990000018", "Fictional note"] {
        assert!(!debug.contains(personal), "{personal} in the timeline");
    }
    assert_eq!(db.store.episode_timeline(EpisodeId(Uuid::nil())).await?, None);
    // Nor in the audit log.
    let leaks = db
        .count(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE record LIKE '%Testperson%' \
             OR record LIKE '%9990000018%' OR record LIKE '%Fictional%'",
        )
        .await?;
    assert_eq!(leaks, 0);
    Ok(())
}

#[tokio::test]
async fn unreachable_databases_are_reported_without_passwords() {
    let error = concordat_store::Store::connect("postgres://postgres:hunter2@127.0.0.1:1/postgres").await.unwrap_err();
    assert!(matches!(error, StoreError::Unreachable { .. }), "{error:?}");
    assert!(error.is_transient());
    let message = error.to_string();
    assert!(message.contains("postgres://postgres:***@127.0.0.1:1/postgres"), "{message}");
    assert!(!message.contains("hunter2"));
    let error = concordat_store::Store::connect("mysql://root:pw@127.0.0.1/x").await.unwrap_err();
    assert!(matches!(error, StoreError::InvalidUrl { .. }), "{error:?}");
    assert!(!error.to_string().contains("pw@"));
}

/// Runs every scenario in `tests/fixtures/correlation/` through [`check_correlation`].
async fn correlation_fixtures(db: TestDb) -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/correlation");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    assert!(files.len() >= 3, "fixtures missing in {}", dir.display());
    for file in files {
        let case: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)?;
        // The cases share one store; they use distinct NHS numbers and refs so that they cannot correlate
        // with each other.
        check_correlation(&db, &case).await.map_err(|error| error.context(file.display().to_string()))?;
    }
    Ok(())
}

/// Routes each step of a scenario and checks that events share an episode exactly when their `expect`
/// labels are equal. A step with `close_quiet_since` closes quiet episodes instead.
async fn check_correlation(db: &TestDb, case: &serde_json::Value) -> anyhow::Result<()> {
    let mut labels: BTreeMap<String, EpisodeId> = BTreeMap::new();
    let steps = case["steps"].as_array().ok_or_else(|| anyhow::anyhow!("no steps"))?;
    for (index, step) in steps.iter().enumerate() {
        if let Some(since) = step["close_quiet_since"].as_i64() {
            let now = step["at"].as_i64().unwrap_or(since);
            db.store.close_quiet_episodes(at(since), at(now)).await?;
            continue;
        }
        let text = |key: &str| step[key].as_str().ok_or_else(|| anyhow::anyhow!("step {index}: `{key}` missing"));
        let refs: Vec<(String, String)> = serde_json::from_value(step["refs"].clone())?;
        let refs: Vec<(&str, &str)> = refs.iter().map(|(system, value)| (system.as_str(), value.as_str())).collect();
        let event = event(Spec {
            agency: text("agency")?,
            agency_kind: text("agency_kind")?,
            kind: text("kind")?,
            record_ref: text("record_ref")?,
            nhs_number: step["nhs_number"].as_str(),
            refs: &refs,
            received_minute: step["minute"].as_i64().unwrap_or_default(),
        });
        let mut tx = db.store.begin().await?;
        let episode = route(&mut tx, &event).await?;
        tx.commit().await?;
        let label = text("expect")?.to_owned();
        match labels.get(&label) {
            Some(expected) => anyhow::ensure!(*expected == episode, "step {index}: expected episode {label}"),
            None => anyhow::ensure!(
                !labels.values().any(|other| *other == episode),
                "step {index}: expected a new episode {label}, joined an earlier one"
            ),
        }
        labels.insert(label, episode);
    }
    db.store.audit_verify().await?;
    Ok(())
}

async fn unattached_events_are_held_by_subject_and_purged(db: TestDb) -> anyhow::Result<()> {
    let plan = crisis_plan("CarePlan/cp-1", "9990000018", 1);
    let other = event(Spec {
        agency: "northvale-mh",
        agency_kind: "nhs",
        kind: "nhs.risk_flag",
        record_ref: "Flag/f-1",
        nhs_number: Some("9991111115"),
        refs: &[],
        received_minute: 2,
    });
    let keyer = keyer();
    let key = keyer.key(&NhsNumber::new("9990000018")?);
    let mut tx = db.store.begin().await?;
    tx.hold_unattached(&key, &plan).await?;
    // Holding the same event again (a redelivery) changes nothing.
    tx.hold_unattached(&key, &plan).await?;
    tx.hold_unattached(&keyer.key(&NhsNumber::new("9991111115")?), &other).await?;
    tx.commit().await?;

    let mut tx = db.store.begin().await?;
    let held = tx.unattached_for_subject(&key).await?;
    drop(tx);
    assert_eq!(held, vec![plan.clone()], "only this person's events, exactly as sent");
    let verified = db.store.audit_verify().await?;
    assert_eq!(verified.records, 2, "one event_held record per event held");

    let report = db.store.purge_personal_data(&PurgeCutoffs::all(at(60)), at(61)).await?;
    assert_eq!(report.unattached_events, 2);
    let mut tx = db.store.begin().await?;
    assert!(tx.unattached_for_subject(&key).await?.is_empty());
    drop(tx);
    db.store.audit_verify().await?;
    Ok(())
}

/// Commits only append to SQLite's write-ahead log; a background checkpoint copies it into the database
/// file. Without it the file would stay as the migrations left it until the store closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_log_is_checkpointed_in_the_background() {
    common::run(concordat_store::Backend::Sqlite, |db| async move {
        let path = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
        let size = || std::fs::metadata(&path).map_or(0, |meta| meta.len());
        let before = size();
        let mut tx = db.store.begin().await?;
        for n in 0..200 {
            route(&mut tx, &s136(&format!("NVP-{n}#s136"), &format!("NVP-20260301-{n:04}"), None, 1)).await?;
        }
        tx.commit().await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while size() < before + 64 * 1024 {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes ({before} before the writes)",
                size()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(())
    })
    .await;
}

/// Everything the router's lookups answer about these refs, keys and episodes, as text to compare.
async fn lookups(
    tx: &mut Tx,
    refs: &[Vec<concordat_episode::Identifier>],
    keys: &[concordat_store::SubjectKey],
    episodes: &[EpisodeId],
) -> anyhow::Result<Vec<String>> {
    let mut seen = Vec::new();
    for group in refs {
        let found: Vec<_> = tx.find_episode_by_refs(group).await?.into_iter().map(|e| (e.id, e.state)).collect();
        seen.push(format!("refs {group:?}: {found:?}"));
    }
    for (index, key) in keys.iter().enumerate() {
        let open: Vec<_> = tx.find_open_episode_by_subject(key).await?.into_iter().map(|e| e.id).collect();
        let held: Vec<_> = tx.unattached_for_subject(key).await?.into_iter().map(|e| e.event_id).collect();
        seen.push(format!("key {index}: open {open:?}, held {held:?}"));
    }
    for id in episodes {
        seen.push(format!("episode {id}: {:?}", tx.episode(*id).await?));
        seen.push(format!("members and refs {id}: {:?}", tx.members_and_refs(*id).await?));
    }
    Ok(seen)
}

/// The router's lookups in one transaction, before and after the writes a batch makes, with or without
/// reading ahead; rolled back at the end.
async fn batch_script(db: &TestDb, ahead: bool) -> anyhow::Result<Vec<String>> {
    let police = police_incident_system(&agency("northvale-police"));
    let keyer = keyer();
    let (x, y, z) = (
        keyer.key(&NhsNumber::new("9990000018")?),
        keyer.key(&NhsNumber::new("9991111115")?),
        keyer.key(&NhsNumber::new("9434765919")?),
    );
    let a = EpisodeId(Uuid::new_v5(&Uuid::NAMESPACE_OID, s136("NVP-A#s136", "INC-A", None, 1).event_id.0.as_bytes()));
    let b = EpisodeId(Uuid::new_v5(&Uuid::NAMESPACE_OID, s136("NVP-B#s136", "INC-B", None, 2).event_id.0.as_bytes()));
    let c = EpisodeId(Uuid::from_u128(0xc));
    let refs: Vec<Vec<_>> = vec![
        vec![ident(&police, "INC-A")],
        vec![ident(&police, "INC-B")],
        vec![ident(&police, "INC-C")],
        vec![ident(&police, "INC-new")],
        vec![ident(&police, "INC-A"), ident(&police, "INC-B"), ident(&police, "INC-none")],
        vec![ident("urn:concordat:episode", &a.to_string())],
    ];
    let keys = [x.clone(), y.clone(), z.clone()];
    let episodes = [a, b, c];

    let mut tx = db.store.begin().await?;
    if ahead {
        let every: Vec<_> = refs.iter().flatten().cloned().collect();
        tx.read_ahead(&[], &every, &keys).await?;
    }
    let mut seen = lookups(&mut tx, &refs, &keys, &episodes).await?;

    // What a batch writes: an episode opened with refs, members and a key; refs, members and a key added to
    // another; an event held, one recorded; a close; feedback noted and its due time moved.
    let plan = crisis_plan("CarePlan/cp-2", "9434765919", 40);
    tx.hold_unattached(&z, &plan).await?;
    let new = NewEpisode {
        id: c,
        originator: agency("northvale-police"),
        opened_by: EventId(Uuid::from_u128(0xc0)),
        opened_at: at(50),
        feedback_due_at: Some(at(500)),
    };
    let members = [(agency("northvale-mh"), Relation::Responder), (agency("northvale-mh"), Relation::Responder)];
    tx.open_episode_with(&new, &[ident(&police, "INC-C")], &members).await?;
    tx.add_subject_key(c, &z, at(50)).await?;
    tx.add_subject_key(a, &x, at(51)).await?;
    tx.add_subject_key(a, &y, at(51)).await?;
    assert_eq!(tx.add_refs(a, &[ident(&police, "INC-new"), ident(&police, "INC-A")], at(52)).await?, 1);
    let joined = [(agency("northvale-vcs"), Relation::Contributor), (agency("northvale-police"), Relation::Originator)];
    assert_eq!(tx.add_members(a, &joined, at(53)).await?, 1);
    tx.record_event(a, &arrival("AS-5", Some("9990000018"), 54)).await?;
    assert!(tx.close_episode(b, CloseReason::Concluded, at(55)).await.is_ok());
    assert!(tx.mark_feedback_delivered(c, EventId(Uuid::from_u128(0xf)), at(56)).await?);
    tx.set_feedback_due(a, Some(at(999))).await?;
    assert!(matches!(
        tx.add_refs(c, &[ident(&police, "INC-A")], at(57)).await,
        Err(StoreError::Conflict(Conflict::RefHeldByOtherEpisode { .. }))
    ));
    seen.extend(lookups(&mut tx, &refs, &keys, &episodes).await?);
    // What reached the tables: reading ahead, the writes waited for the flush.
    tx.flush().await?;
    for id in episodes {
        seen.push(format!("stored members {id}: {:?}", tx.members(id).await?));
        seen.push(format!("stored refs {id}: {:?}", tx.episode_refs(id).await?));
    }
    tx.rollback().await?;
    Ok(seen)
}

async fn read_ahead_answers_as_the_database_does(db: TestDb) -> anyhow::Result<()> {
    // Before the batch: episode A (incident A, person X, a crisis plan held for X) open, episode B
    // (incident B, person Y) closed.
    let plan = crisis_plan("CarePlan/cp-1", "9990000018", 0);
    let mut tx = db.store.begin().await?;
    tx.hold_unattached(&keyer().key(&NhsNumber::new("9990000018")?), &plan).await?;
    route(&mut tx, &s136("NVP-A#s136", "INC-A", Some("9990000018"), 1)).await?;
    let b = route(&mut tx, &s136("NVP-B#s136", "INC-B", Some("9991111115"), 2)).await?;
    tx.close_episode(b, CloseReason::Quiet, at(3)).await?;
    tx.commit().await?;

    let from_database = batch_script(&db, false).await?;
    let read_ahead = batch_script(&db, true).await?;
    assert_eq!(from_database.len(), read_ahead.len());
    for (expected, answered) in from_database.iter().zip(&read_ahead) {
        assert_eq!(answered, expected);
    }
    // The script saw what it should, so the comparison compares something.
    let joined = from_database.iter().filter(|line| line.contains("northvale-vcs")).count();
    assert!(joined >= 1, "the added member is not seen: {from_database:#?}");
    assert!(from_database.iter().any(|line| line.starts_with("key 2: open [") && !line.contains("open []")));
    Ok(())
}

async fn writes_deferred_while_reading_ahead_are_checked_at_the_flush(db: TestDb) -> anyhow::Result<()> {
    let mut tx = db.store.begin().await?;
    let taken = route(&mut tx, &s136("NVP-A#s136", "INC-A", None, 1)).await?;
    tx.commit().await?;
    let before = db.store.audit_verify().await?.records;

    // The read-ahead knows nothing of this id, so opening it again waits for the flush, which refuses it.
    let police = police_incident_system(&agency("northvale-police"));
    let mut tx = db.store.begin().await?;
    // The dedup marks come with the read-ahead.
    let marked = s136("NVP-A#s136", "INC-A", None, 1).event_id;
    let unmarked = EventId(Uuid::from_u128(9));
    let processed = tx.read_ahead(&[unmarked, marked], &[ident(&police, "INC-Z")], &[]).await?;
    assert_eq!(processed.into_iter().collect::<Vec<_>>(), [marked]);
    // Marks of events it asked about are checked against what it read, and wait for the flush.
    let again = tx.mark_all_processed(&[(unmarked, None), (marked, None)], at(5)).await;
    assert!(matches!(again, Err(StoreError::Conflict(Conflict::AlreadyProcessed(id))) if id == marked));
    tx.mark_all_processed(&[(unmarked, None)], at(5)).await?;
    let twice = tx.mark_all_processed(&[(unmarked, None)], at(6)).await;
    assert!(matches!(twice, Err(StoreError::Conflict(Conflict::AlreadyProcessed(id))) if id == unmarked));
    assert!(tx.is_processed(unmarked).await?, "a deferred mark is written before marks are read");
    let again = NewEpisode {
        id: taken,
        originator: agency("northvale-police"),
        opened_by: EventId(Uuid::from_u128(7)),
        opened_at: at(5),
        feedback_due_at: None,
    };
    tx.open_episode_with(&again, &[ident(&police, "INC-Z")], &[]).await?;
    assert!(matches!(tx.commit().await, Err(StoreError::Conflict(Conflict::EpisodeExists(id))) if id == taken));

    // A ref the read-ahead knows to be another episode's is refused at once.
    let mut tx = db.store.begin().await?;
    tx.read_ahead(&[], &[ident(&police, "INC-A")], &[]).await?;
    let other = NewEpisode { id: EpisodeId(Uuid::from_u128(8)), ..again };
    let refused = tx.open_episode_with(&other, &[ident(&police, "INC-A")], &[]).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(Conflict::RefHeldByOtherEpisode { held_by, .. })) if held_by == taken)
    );
    drop(tx);
    assert_eq!(db.store.audit_verify().await?.records, before, "nothing of either was kept");
    let mut tx = db.store.begin().await?;
    assert!(tx.episode(EpisodeId(Uuid::from_u128(8))).await?.is_none());
    assert_eq!(tx.find_episode_by_refs(&[ident(&police, "INC-Z")]).await?.len(), 0);
    Ok(())
}
