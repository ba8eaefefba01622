//! Table tests: every condition type and every relation, against a small policy written for the purpose.
// Helpers outside `#[test]` functions unwrap too: a panic is a test failure here.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use chrono::NaiveDate;
use concordat_episode::{ConsentStatus, CrisisEvent, EventKind, RiskLevel};
use concordat_policy::{DenyReason, EpisodeState, Policy, Relation, Verdict, decide};
use support::{agency, context, event};

const POLICY: &str = r#"
format: concordat.sharing-policy.v1
id: conditions
title: Condition tests
area: Testshire
agencies:
  - { id: northvale-police, kind: police, name: Police }
  - { id: northvale-mh, kind: nhs, name: Trust }
  - { id: safe-haven, kind: vcs, name: Haven }
agreements:
  - id: consent
    title: consent given or lacking capacity
    from: { agency: northvale-police }
    to: { agency: northvale-mh }
    kinds: [police.s136_detention]
    purpose: p
    lawful_basis: { regime: uk_gdpr, article6: e, article9: h, schedule1: part1_para2 }
    conditions: { consent: [given, lacks_capacity] }
    fields: []
  - id: risk
    title: risk high or above
    from: { kind: police }
    to: { kind: nhs }
    kinds: [police.conveyance]
    purpose: p
    lawful_basis: { regime: uk_gdpr, article6: e, article9: h, schedule1: part1_para2 }
    conditions: { risk_at_least: high }
    fields: []
  - id: child
    title: under 18
    from: { kind: police }
    to: { kind: nhs }
    kinds: [police.concern_for_welfare]
    purpose: p
    lawful_basis: { regime: uk_gdpr, article6: e, article9: g, schedule1: part2_para18 }
    conditions: { age: { under: 18 } }
    fields: []
  - id: working-age
    title: 18 to 64
    from: { kind: police }
    to: { kind: nhs }
    kinds: [police.s135_warrant]
    purpose: p
    lawful_basis: { regime: dpa2018_part3, schedule8: para4 }
    conditions: { age: { at_least: 18, under: 65 } }
    fields: []
  - id: closed
    title: closed episodes only
    from: { kind: police }
    to: { kind: nhs }
    kinds: [police.outcome]
    purpose: p
    lawful_basis: { regime: uk_gdpr, article6: e, article9: h, schedule1: part1_para2 }
    conditions: { episode_state: closed }
    fields: []
  - id: either
    title: consent or imminent risk
    from: { kind: nhs }
    to: { kind: police }
    kinds: [nhs.crisis_plan]
    purpose: p
    lawful_basis: { regime: uk_gdpr, article6: e, article9: g, schedule1: part2_para18 }
    conditions: { any_of: [ { consent: [given] }, { risk_at_least: imminent } ] }
    fields: []
  - id: originator
    title: to the originator
    from: { kind: nhs }
    to: { relation: originator }
    kinds: [nhs.place_of_safety_arrival]
    purpose: p
    lawful_basis: { regime: uk_gdpr, article6: e, article9: h, schedule1: part1_para2 }
    fields: []
  - id: contributor
    title: to contributors
    from: { kind: nhs }
    to: { relation: contributor }
    kinds: [nhs.discharge]
    purpose: p
    lawful_basis: { regime: uk_gdpr, article6: e, article9: h, schedule1: part1_para2 }
    fields: []
  - id: responding-vcs
    title: to a responding VCS
    from: { kind: nhs }
    to: { kind: vcs, relation: [responder, originator] }
    kinds: [nhs.referral]
    purpose: p
    lawful_basis: { regime: uk_gdpr, article6: e, article9: h, schedule1: part1_para2 }
    fields: []
  - id: names
    title: union part one
    from: { kind: vcs }
    to: { kind: nhs }
    kinds: [vcs.contact]
    purpose: first purpose
    lawful_basis: { regime: uk_gdpr, article6: e, article9: h, schedule1: part1_para2 }
    fields: [/subject/name/given]
  - id: risks
    title: union part two
    from: { agency: safe-haven }
    to: { agency: northvale-mh }
    kinds: [vcs.contact]
    purpose: second purpose
    lawful_basis: { regime: uk_gdpr, article6: e, article9: h, schedule1: part1_para2 }
    fields: [/risk/level]
"#;

fn policy() -> Policy {
    concordat_policy::load(Path::new("conditions.yaml"), POLICY)
        .unwrap_or_else(|errors| panic!("{}", concordat_policy::problems_report(&errors)))
}

fn consent(status: ConsentStatus) -> impl Fn(&mut CrisisEvent) {
    move |event| event.consent.status = status
}

fn check(
    kind: EventKind,
    source: &str,
    recipient: &str,
    state: EpisodeState,
    relations: &[Relation],
    edit: &dyn Fn(&mut CrisisEvent),
    expected: Verdict,
) {
    let mut event = event(source, kind);
    edit(&mut event);
    let decision = decide(&policy(), &event, &context(state, relations), &agency(recipient));
    assert_eq!(decision.verdict, expected, "{kind} {source}->{recipient} {state:?} {relations:?}");
}

use EpisodeState::{Closed, Open};
use Verdict::{Deny, Permit};

#[test]
fn consent_condition() {
    use ConsentStatus::*;
    let k = EventKind::PoliceS136Detention;
    for (status, expected) in [
        (Given, Permit),
        (LacksCapacity, Permit),
        (Refused, Deny(DenyReason::ConsentRequired)),
        (NotSought, Deny(DenyReason::ConsentRequired)),
        (Unknown, Deny(DenyReason::ConsentRequired)),
    ] {
        check(k, "northvale-police", "northvale-mh", Open, &[], &consent(status), expected);
    }
}

#[test]
fn risk_condition() {
    let k = EventKind::PoliceConveyance;
    for (level, expected) in [
        (Some(RiskLevel::None), Deny(DenyReason::BelowRiskThreshold)),
        (Some(RiskLevel::Moderate), Deny(DenyReason::BelowRiskThreshold)),
        (Some(RiskLevel::High), Permit),
        (Some(RiskLevel::Imminent), Permit),
        (None, Deny(DenyReason::BelowRiskThreshold)),
    ] {
        let edit = move |event: &mut CrisisEvent| match level {
            Some(level) => event.risk.as_mut().unwrap().level = level,
            None => event.risk = None,
        };
        check(k, "northvale-police", "northvale-mh", Open, &[], &edit, expected);
    }
}

#[test]
fn age_conditions() {
    // Events occur on 2026-05-01.
    let born = |date: Option<(i32, u32, u32)>| {
        move |event: &mut CrisisEvent| {
            event.subject.birth_date = date.and_then(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d));
        }
    };
    let outside = Deny(DenyReason::AgeOutsideBand);
    for (date, child, working_age) in [
        (Some((2008, 5, 2)), Permit, outside),  // 17, turning 18 tomorrow
        (Some((2008, 5, 1)), outside, Permit),  // 18 today
        (Some((1961, 5, 2)), outside, Permit),  // 64
        (Some((1961, 5, 1)), outside, outside), // 65 today
        (None, outside, outside),               // unknown birth date never meets an age condition
    ] {
        check(EventKind::PoliceConcernForWelfare, "northvale-police", "northvale-mh", Open, &[], &born(date), child);
        check(EventKind::PoliceS135Warrant, "northvale-police", "northvale-mh", Open, &[], &born(date), working_age);
    }
}

#[test]
fn episode_state_condition() {
    let k = EventKind::PoliceOutcome;
    check(k, "northvale-police", "northvale-mh", Closed, &[], &|_| {}, Permit);
    check(k, "northvale-police", "northvale-mh", Open, &[], &|_| {}, Deny(DenyReason::EpisodeState));
}

#[test]
fn any_of_condition() {
    let k = EventKind::NhsCrisisPlan;
    let imminent = |event: &mut CrisisEvent| {
        event.consent.status = ConsentStatus::Refused;
        event.risk.as_mut().unwrap().level = RiskLevel::Imminent;
    };
    check(k, "northvale-mh", "northvale-police", Open, &[], &consent(ConsentStatus::Given), Permit);
    check(k, "northvale-mh", "northvale-police", Open, &[], &imminent, Permit);
    // High is not imminent; the reason is the first alternative's.
    check(
        k,
        "northvale-mh",
        "northvale-police",
        Open,
        &[],
        &consent(ConsentStatus::Refused),
        Deny(DenyReason::ConsentRequired),
    );
}

#[test]
fn relations() {
    use Relation::*;
    let none_edit: &dyn Fn(&mut CrisisEvent) = &|_| {};
    let no = Deny(DenyReason::NoAgreement);
    let table: &[(EventKind, &str, &[Relation], Verdict)] = &[
        (EventKind::NhsPlaceOfSafetyArrival, "northvale-police", &[Originator], Permit),
        (EventKind::NhsPlaceOfSafetyArrival, "northvale-police", &[Contributor, Responder], no),
        (EventKind::NhsPlaceOfSafetyArrival, "safe-haven", &[Originator, Contributor], Permit),
        (EventKind::NhsDischarge, "northvale-police", &[Contributor], Permit),
        (EventKind::NhsDischarge, "northvale-police", &[], no),
        (EventKind::NhsReferral, "safe-haven", &[Responder], Permit),
        (EventKind::NhsReferral, "safe-haven", &[Originator], Permit),
        (EventKind::NhsReferral, "safe-haven", &[Contributor], no),
        // The kind must match as well as the relation.
        (EventKind::NhsReferral, "northvale-police", &[Responder], no),
    ];
    for (kind, recipient, relations, expected) in table {
        check(*kind, "northvale-mh", recipient, Open, relations, none_edit, *expected);
    }
}

#[test]
fn several_permitting_agreements_share_the_union_and_are_all_recorded() {
    let policy = policy();
    let event = event("safe-haven", EventKind::VcsContact);
    let decision = decide(&policy, &event, &context(Open, &[]), &agency("northvale-mh"));
    let ids: Vec<&str> = decision.permitted_by.iter().map(|ground| ground.agreement.as_str()).collect();
    assert_eq!(ids, ["names", "risks"]);
    assert_eq!(decision.agreements_considered, ["names", "risks"]);
    assert_eq!(decision.purpose(), "first purpose | second purpose");
    let shared: Vec<&str> = decision.fields_shared.iter().filter(|f| !f.is_envelope()).map(|f| f.pointer()).collect();
    assert_eq!(shared, ["/subject/name/given", "/risk/level"]);
}

#[test]
fn a_denial_names_the_first_covering_agreement_with_an_unmet_condition() {
    let policy = policy();
    let mut event = event("northvale-police", EventKind::PoliceS136Detention);
    event.consent.status = ConsentStatus::Refused;
    let decision = decide(&policy, &event, &context(Open, &[]), &agency("northvale-mh"));
    assert_eq!(decision.agreements_considered, ["consent"]);
    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(json["verdict"], "deny");
    assert_eq!(json["reason"], "consent_required");
    assert_eq!(json["fields_withheld"][0], "/event_id");
}
