//! The impact report over a small known history, on SQLite and on PostgreSQL with the same body: exact
//! counts per agency pair and per originator, the feedback times' median and 90th percentile, and a window
//! that leaves out what lies outside it.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;

use concordat_episode::{AgencyId, CrisisEvent, EpisodeId, EventId, NhsNumber};
use concordat_store::{
    CloseReason, Decision, DecisionId, DeliveryId, DeliveryStatus, ImpactReport, NewDelivery, NewEpisode, PairFlow,
    PurgeCutoffs, Relation, SubjectKeyer, Tx, Verdict,
};
use uuid::Uuid;

use common::{Spec, TestDb, at, event};

on_both_backends!(impact_report_counts_a_known_history, impact_report_window_leaves_out_what_is_outside_it);

const POLICE: &str = "northvale-police";
const TRUST: &str = "northvale-mh";
const SAFE_HAVEN: &str = "northvale-safe-haven";
const COUNCIL: &str = "northvale-council";

fn agency(id: &str) -> AgencyId {
    AgencyId::new(id).unwrap()
}

fn police_event(record_ref: &str, minute: i64) -> CrisisEvent {
    event(Spec {
        agency: POLICE,
        agency_kind: "police",
        kind: "police.s136_detention",
        record_ref,
        nhs_number: None,
        refs: &[],
        received_minute: minute,
    })
}

fn trust_event(kind: &str, record_ref: &str, minute: i64) -> CrisisEvent {
    event(Spec {
        agency: TRUST,
        agency_kind: "nhs",
        kind,
        record_ref,
        nhs_number: None,
        refs: &[],
        received_minute: minute,
    })
}

/// Opens an episode for `event` at `opened_minute`, with a feedback deadline `due_after` minutes later,
/// and records the event in it unless `record` is false (an episode whose opening event is missing).
async fn open(
    tx: &mut Tx,
    event: &CrisisEvent,
    opened_minute: i64,
    due_after: Option<i64>,
    record: bool,
) -> anyhow::Result<EpisodeId> {
    let id = EpisodeId(Uuid::new_v5(&Uuid::NAMESPACE_OID, event.event_id.0.as_bytes()));
    tx.open_episode(&NewEpisode {
        id,
        originator: event.source.agency.clone(),
        opened_by: event.event_id,
        opened_at: at(opened_minute),
        feedback_due_at: due_after.map(|minutes| at(opened_minute + minutes)),
    })
    .await?;
    if record {
        tx.record_event(id, event).await?;
    }
    Ok(id)
}

fn decision(event: &CrisisEvent, episode: Option<EpisodeId>, recipient: &str, reason: &str, minute: i64) -> Decision {
    let verdict = if reason == "permit" { Verdict::Permit } else { Verdict::Deny };
    Decision {
        decision_id: DecisionId(Uuid::new_v5(&event.event_id.0, recipient.as_bytes())),
        event_id: event.event_id,
        episode_id: episode,
        recipient: agency(recipient),
        verdict,
        reason: reason.to_owned(),
        agreement_ids: Vec::new(),
        purposes: Vec::new(),
        lawful_bases: Vec::new(),
        fields_shared: Vec::new(),
        fields_withheld: Vec::new(),
        policy_version: "sha256:0f0e".to_owned(),
        decided_at: at(minute),
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
        headers: BTreeMap::new(),
        body: b"{\"person\":\"Alex Testperson\"}".to_vec(),
        created_at: at(minute),
    }
}

/// The history, minute 0 being 2026-03-01 22:00 UTC:
///
/// | episode | originator | opened | crisis | feedback | other |
/// | --- | --- | --- | --- | --- | --- |
/// | e1 | police | 10 | 0 (the s136 happened before it was received) | 70: 70 min | a dead delivery to the trust |
/// | e2 | police | 20 | opening event missing: 20 | 150: 130 min | |
/// | e3 | police | 30 | 30 | 630: 600 min | a pending delivery to the trust |
/// | e4 | police | 40 | | none | closed at 300 |
/// | e5 | police | 50 | | none | due at 110: overdue |
/// | e6 | police | 60 | | none | due at 10060: not yet overdue |
/// | e7 | police | -100 | -100 | -40 | before the window; a dead delivery at -100 |
/// | e8 | trust | 500 | | none | no deadline |
///
/// Decisions: police e1 → trust permit, safe haven no_agreement, council consent_required (at 10); e3 →
/// trust permit, safe haven no_agreement (at 30); e4 → trust below_risk_threshold (at 40); e7 → trust
/// permit (at -100); the trust's outcome in e1 and its feedback → police permit (at 70); a safe-haven
/// contact held before any episode → trust no_agreement (at 5).
async fn history(db: &TestDb) -> anyhow::Result<()> {
    let mut tx = db.store.begin().await?;
    let mut s136_e1 = police_event("NVP-1#s136", 10);
    s136_e1.occurred_at = at(0).into();
    let e1 = open(&mut tx, &s136_e1, 10, Some(720), true).await?;
    let s136_e2 = police_event("NVP-2#s136", 20);
    let e2 = open(&mut tx, &s136_e2, 20, Some(720), false).await?;
    let s136_e3 = police_event("NVP-3#s136", 30);
    let e3 = open(&mut tx, &s136_e3, 30, Some(720), true).await?;
    let s136_e4 = police_event("NVP-4#s136", 40);
    let e4 = open(&mut tx, &s136_e4, 40, Some(720), true).await?;
    let s136_e5 = police_event("NVP-5#s136", 50);
    open(&mut tx, &s136_e5, 50, Some(60), true).await?;
    let s136_e6 = police_event("NVP-6#s136", 60);
    open(&mut tx, &s136_e6, 60, Some(10_000), true).await?;
    let s136_e7 = police_event("NVP-7#s136", -100);
    let e7 = open(&mut tx, &s136_e7, -100, Some(720), true).await?;
    let referral = trust_event("nhs.referral", "MH-8#referral", 500);
    open(&mut tx, &referral, 500, None, true).await?;

    let outcome = trust_event("nhs.assessment_outcome", "MH-1#outcome", 70);
    let feedback = trust_event("feedback.outcome", "MH-1#outcome#feedback", 70);
    tx.add_member(e1, &agency(TRUST), Relation::Contributor, at(70)).await?;
    tx.record_event(e1, &outcome).await?;
    tx.record_event(e1, &feedback).await?;
    tx.mark_feedback_delivered(e1, feedback.event_id, at(70)).await?;
    tx.mark_feedback_delivered(e2, EventId(Uuid::from_u128(2)), at(150)).await?;
    tx.mark_feedback_delivered(e3, EventId(Uuid::from_u128(3)), at(630)).await?;
    tx.mark_feedback_delivered(e7, EventId(Uuid::from_u128(7)), at(-40)).await?;
    tx.close_episode(e4, CloseReason::Concluded, at(300)).await?;

    for (event, episode, recipient, reason, minute) in [
        (&s136_e1, e1, TRUST, "permit", 10),
        (&s136_e1, e1, SAFE_HAVEN, "no_agreement", 10),
        (&s136_e1, e1, COUNCIL, "consent_required", 10),
        (&s136_e3, e3, TRUST, "permit", 30),
        (&s136_e3, e3, SAFE_HAVEN, "no_agreement", 30),
        (&s136_e4, e4, TRUST, "below_risk_threshold", 40),
        (&s136_e7, e7, TRUST, "permit", -100),
        (&outcome, e1, POLICE, "permit", 70),
        (&feedback, e1, POLICE, "permit", 70),
    ] {
        tx.insert_decision(&decision(event, Some(episode), recipient, reason, minute)).await?;
    }
    let contact = event(Spec {
        agency: SAFE_HAVEN,
        agency_kind: "vcs",
        kind: "vcs.contact",
        record_ref: "SH-1#contact",
        nhs_number: Some("9990000018"),
        refs: &[],
        received_minute: 5,
    });
    let keyer = SubjectKeyer::new(b"northvale-test-subject-key-secret").unwrap();
    let key = keyer.key(&NhsNumber::new("9990000018").unwrap());
    tx.hold_unattached(&key, &contact).await?;
    tx.insert_decision(&decision(&contact, None, TRUST, "no_agreement", 5)).await?;

    let dead_in_window = delivery(&s136_e1, TRUST, 10);
    let dead_before = delivery(&s136_e7, TRUST, -100);
    tx.enqueue(&dead_in_window).await?;
    tx.enqueue(&dead_before).await?;
    tx.enqueue(&delivery(&s136_e3, TRUST, 30)).await?;
    tx.commit().await?;
    for dead in [&dead_in_window, &dead_before] {
        let status = db.store.mark_failed(dead.delivery_id, "connection reset", 1, at(400)).await?;
        assert_eq!(status, DeliveryStatus::Dead);
    }
    Ok(())
}

fn flow(report: &ImpactReport, source: &str, recipient: &str) -> PairFlow {
    report
        .pairs
        .iter()
        .find(|pair| pair.source.as_str() == source && pair.recipient.as_str() == recipient)
        .unwrap_or_else(|| panic!("no row for {source} → {recipient}"))
        .clone()
}

fn reasons(items: &[(&str, u64)]) -> BTreeMap<String, u64> {
    items.iter().map(|(reason, n)| ((*reason).to_owned(), *n)).collect()
}

fn pair(source: &str, recipient: &str, episodes: u64, shared: u64, withheld: &[(&str, u64)], dead: u64) -> PairFlow {
    PairFlow {
        source: agency(source),
        recipient: agency(recipient),
        episodes,
        shared,
        withheld: withheld.iter().map(|(_, n)| n).sum(),
        withheld_by_reason: reasons(withheld),
        dead_deliveries: dead,
    }
}

async fn impact_report_counts_a_known_history(db: TestDb) -> anyhow::Result<()> {
    history(&db).await?;
    let report = db.store.impact_report(Some(at(0)), Some(at(1000)), at(2000)).await?;
    assert_eq!((report.from, report.to, report.as_of), (Some(at(0)), Some(at(1000)), at(2000)));

    // By source, then recipient.
    assert_eq!(
        report.pairs,
        [
            pair(TRUST, POLICE, 1, 2, &[], 0),
            pair(POLICE, COUNCIL, 1, 0, &[("consent_required", 1)], 0),
            pair(POLICE, TRUST, 3, 2, &[("below_risk_threshold", 1)], 1),
            pair(POLICE, SAFE_HAVEN, 2, 0, &[("no_agreement", 2)], 0),
            pair(SAFE_HAVEN, TRUST, 0, 0, &[("no_agreement", 1)], 0),
        ]
    );
    assert_eq!(report.decisions_without_source, 0);

    assert_eq!(report.originators.len(), 2);
    let police = &report.originators[1];
    assert_eq!(police.originator.as_str(), POLICE);
    assert_eq!((police.episodes, police.with_feedback), (6, 3));
    assert!((police.feedback_rate - 0.5).abs() < 1e-9, "{}", police.feedback_rate);
    // 70, 130 and 600 minutes: the median is the 2nd, the 90th percentile the 3rd.
    assert_eq!(police.median_to_feedback_secs, Some(130 * 60));
    assert_eq!(police.p90_to_feedback_secs, Some(600 * 60));
    assert_eq!((police.closed_without_feedback, police.overdue, police.crisis_time_from_opening), (1, 1, 1));

    let trust = &report.originators[0];
    assert_eq!(trust.originator.as_str(), TRUST);
    assert_eq!((trust.episodes, trust.with_feedback, trust.closed_without_feedback, trust.overdue), (1, 0, 0, 0));
    assert!(trust.feedback_rate.abs() < 1e-9);
    assert_eq!((trust.median_to_feedback_secs, trust.p90_to_feedback_secs), (None, None));

    // No personal data: the report as JSON holds no name, NHS number, birth date or note.
    let json = serde_json::to_string(&report)?;
    for personal in ["Testperson", "Alex", "9990000018", "1990-04-01", "Fictional note"] {
        assert!(!json.contains(personal), "{personal} in the report");
    }
    Ok(())
}

async fn impact_report_window_leaves_out_what_is_outside_it(db: TestDb) -> anyhow::Result<()> {
    history(&db).await?;
    // Minutes 0 to 25: episodes e1 and e2, the decisions made at 5 and 10, the dead delivery of e1.
    let early = db.store.impact_report(Some(at(0)), Some(at(25)), at(2000)).await?;
    assert_eq!(early.pairs.len(), 4, "{:?}", early.pairs);
    assert_eq!(flow(&early, POLICE, TRUST), pair(POLICE, TRUST, 1, 1, &[], 1));
    assert_eq!(flow(&early, POLICE, SAFE_HAVEN), pair(POLICE, SAFE_HAVEN, 1, 0, &[("no_agreement", 1)], 0));
    assert_eq!(flow(&early, SAFE_HAVEN, TRUST), pair(SAFE_HAVEN, TRUST, 0, 0, &[("no_agreement", 1)], 0));
    assert!(early.pairs.iter().all(|pair| pair.source.as_str() != TRUST), "the trust's decisions were at 70");
    assert_eq!(early.originators.len(), 1);
    let police = &early.originators[0];
    assert_eq!((police.episodes, police.with_feedback), (2, 2));
    assert_eq!((police.median_to_feedback_secs, police.p90_to_feedback_secs), (Some(70 * 60), Some(130 * 60)));

    // `to` is exclusive: a window ending at minute 10 leaves out e1, opened at 10, and its decisions.
    let before = db.store.impact_report(Some(at(0)), Some(at(10)), at(2000)).await?;
    assert!(before.originators.is_empty());
    assert_eq!(before.pairs, [pair(SAFE_HAVEN, TRUST, 0, 0, &[("no_agreement", 1)], 0)]);

    // Open at both ends: e7 and its decision and dead delivery come in.
    let all = db.store.impact_report(None, None, at(2000)).await?;
    assert_eq!((all.from, all.to), (None, None));
    assert_eq!(flow(&all, POLICE, TRUST), pair(POLICE, TRUST, 4, 3, &[("below_risk_threshold", 1)], 2));
    let police = all.originators.iter().find(|it| it.originator.as_str() == POLICE).unwrap();
    assert_eq!((police.episodes, police.with_feedback), (7, 4));

    // Once the held contact is purged, its decision is still counted, without a source.
    db.store.purge_personal_data(&PurgeCutoffs::all(at(3000)), at(3000)).await?;
    let purged = db.store.impact_report(None, None, at(2000)).await?;
    assert_eq!(purged.decisions_without_source, 1);
    assert!(purged.pairs.iter().all(|pair| pair.source.as_str() != SAFE_HAVEN));
    assert_eq!(flow(&purged, POLICE, TRUST), flow(&all, POLICE, TRUST));
    Ok(())
}
