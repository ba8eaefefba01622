//! The router's functional core against the sample area's policy and the published examples: the s136
//! story without a broker or a database.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use concordat_episode::{
    AgencyId, CrisisEvent, Disposition, EPISODE_SYSTEM, EpisodeId, Identifier, NonEmptyString, Timestamp, parse_event,
};
use concordat_policy::{EpisodeState, Policy, Relation};
use concordat_router::{
    AgencyDirectory, Correlation, EpisodeSnapshot, Plan, concludes, correlate, plan, relations_earned,
};
use uuid::Uuid;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn policy() -> Policy {
    let path = root().join("deploy/local/policies/northvale.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    concordat_policy::load(Path::new("northvale.yaml"), &text).unwrap()
}

fn example(name: &str) -> CrisisEvent {
    let path = root().join("schemas/examples/crisis-event/valid").join(format!("{name}.json"));
    parse_event(&std::fs::read(path).unwrap()).unwrap()
}

fn agency(id: &str) -> AgencyId {
    AgencyId::new(id).unwrap()
}

fn now() -> Timestamp {
    Timestamp::parse("2026-03-02T05:00:00Z").unwrap()
}

fn episode_id() -> EpisodeId {
    EpisodeId(Uuid::from_u128(0x3f1c_9a52_7b8e_4d21_9c55_0a6e_2b7d_41f3))
}

fn snapshot(members: &[(&str, &[Relation])], opened_now: bool) -> EpisodeSnapshot {
    EpisodeSnapshot {
        id: episode_id(),
        state: EpisodeState::Open,
        members: members
            .iter()
            .map(|(id, relations)| (agency(id), relations.iter().copied().collect::<BTreeSet<_>>()))
            .collect(),
        refs: vec![
            Identifier {
                system: NonEmptyString::new("urn:concordat:police-incident:northvale-police").unwrap(),
                value: NonEmptyString::new("NVP-20260301-0457").unwrap(),
            },
            Identifier {
                system: NonEmptyString::new(EPISODE_SYSTEM).unwrap(),
                value: NonEmptyString::new(episode_id().to_string()).unwrap(),
            },
        ],
        opened_now,
    }
}

fn in_episode(mut event: CrisisEvent) -> CrisisEvent {
    event.episode.episode_id = Some(episode_id());
    event
}

fn recipients(plan: &Plan) -> Vec<&str> {
    plan.deliveries.iter().map(|delivery| delivery.recipient.as_str()).collect()
}

fn directory(policy: &Policy) -> AgencyDirectory {
    AgencyDirectory::new(policy, &BTreeMap::new())
}

#[test]
fn an_s136_detention_notifies_the_place_of_safety_in_fhir() {
    let policy = policy();
    let event = in_episode(example("police-s136-detention"));
    let police = [Relation::Originator, Relation::Contributor, Relation::Responder];
    let episode = snapshot(&[("northvale-police", &police)], true);
    let plan = plan(&policy, &directory(&policy), &event, Some(&episode), &[], now());

    // The place of safety hears in FHIR; the AMHP service (the council) is told of an adult's detention.
    assert_eq!(recipients(&plan), ["northvale-council", "northvale-mh"]);
    let delivery = &plan.deliveries[1];
    assert_eq!(delivery.content_type, "application/fhir+json");
    let body = String::from_utf8(delivery.body.clone()).unwrap();
    assert!(body.contains(&episode_id().to_string()), "the notification carries the episode id");
    assert!(body.contains("9990000018"), "the agreement shares the NHS number with the place of safety");
    assert!(!body.contains("railway bridge"), "free-text notes are not named by the agreement");
    let amhp = String::from_utf8(plan.deliveries[0].body.clone()).unwrap();
    assert!(amhp.contains("Ashby Suite"), "the AMHP service learns where the assessment will be: {amhp}");
    assert!(!amhp.contains("9990000018"), "the AMHP agreement does not name the NHS number");
    assert!(!amhp.contains("railway bridge"), "free-text notes are not named by the agreement");
    // Every other agency was decided on, and denied, on the record.
    assert_eq!(plan.decisions.len(), policy.agencies().len() - 1);
}

#[test]
fn opening_an_episode_offers_pre_crisis_context_to_the_responding_force() {
    let policy = policy();
    let event = in_episode(example("police-s136-detention"));
    let police = [Relation::Originator, Relation::Contributor, Relation::Responder];
    let episode = snapshot(&[("northvale-police", &police)], true);
    let crisis_plan = example("nhs-crisis-plan");
    let plan = plan(&policy, &directory(&policy), &event, Some(&episode), &[crisis_plan], now());

    assert_eq!(plan.derived.len(), 1);
    assert_eq!(plan.derived[0].kind.as_str(), "context.pre_crisis");
    let to_police: Vec<_> = plan.deliveries.iter().filter(|d| d.recipient.as_str() == "northvale-police").collect();
    assert_eq!(to_police.len(), 1, "consent was given, so the crisis-plan summary reaches the responding force");
    let body = String::from_utf8(to_police[0].body.clone()).unwrap();
    assert!(body.contains("call sister first"), "{body}");
    assert!(!body.contains("736253002"), "clinical codes are not shared with police");
}

#[test]
fn pre_crisis_context_without_consent_or_high_risk_is_withheld_and_recorded() {
    let policy = policy();
    let event = in_episode(example("police-s136-detention"));
    let police = [Relation::Originator, Relation::Contributor, Relation::Responder];
    let episode = snapshot(&[("northvale-police", &police)], true);
    let mut crisis_plan = example("nhs-crisis-plan");
    crisis_plan.consent.status = concordat_episode::ConsentStatus::Refused;
    let plan = plan(&policy, &directory(&policy), &event, Some(&episode), &[crisis_plan], now());
    assert!(plan.deliveries.iter().all(|d| d.recipient.as_str() != "northvale-police"));
    let context_id = plan.derived[0].event_id;
    let decision = plan
        .decisions
        .iter()
        .find(|decision| decision.event_id == context_id && decision.recipient.as_str() == "northvale-police")
        .unwrap();
    assert!(!decision.is_permit());
}

#[test]
fn an_assessment_outcome_feeds_back_to_the_detaining_force_without_clinical_detail() {
    let policy = policy();
    let outcome = in_episode(example("nhs-assessment-outcome"));
    let police = [Relation::Originator, Relation::Contributor, Relation::Responder];
    let trust = [Relation::Contributor, Relation::Responder];
    let episode = snapshot(&[("northvale-police", &police), ("northvale-mh", &trust)], false);
    let plan = plan(&policy, &directory(&policy), &outcome, Some(&episode), &[], now());

    assert!(plan.feedback_to_originator);
    let feedback = plan.derived.iter().find(|event| event.kind.as_str() == "feedback.outcome").unwrap();
    assert_eq!(feedback.details.outcome_of, Some(outcome.event_id));
    let to_police: Vec<_> = plan.deliveries.iter().filter(|d| d.recipient.as_str() == "northvale-police").collect();
    assert_eq!(to_police.len(), 1);
    assert_eq!(to_police[0].event_id, feedback.event_id);
    let body = String::from_utf8(to_police[0].body.clone()).unwrap();
    assert!(body.contains("NVP-20260301-0457"), "the force's own incident number lets it file the feedback");
    for clinical in ["35489007", "Depressive", "s12 doctor", "9990000018"] {
        assert!(!body.contains(clinical), "feedback to police leaked `{clinical}`: {body}");
    }
}

#[test]
fn planning_is_deterministic() {
    let policy = policy();
    let event = in_episode(example("police-s136-detention"));
    let police = [Relation::Originator, Relation::Contributor, Relation::Responder];
    let episode = snapshot(&[("northvale-police", &police)], true);
    let prior = [example("nhs-crisis-plan")];
    let first = plan(&policy, &directory(&policy), &event, Some(&episode), &prior, now());
    let second = plan(&policy, &directory(&policy), &event, Some(&episode), &prior, now());
    assert_eq!(first.deliveries, second.deliveries);
    assert_eq!(first.decisions, second.decisions);
}

#[test]
fn correlation_follows_the_design_rules() {
    let detention = example("police-s136-detention");
    let crisis_plan = example("nhs-crisis-plan");
    let a = EpisodeId(Uuid::from_u128(1));
    let b = EpisodeId(Uuid::from_u128(2));
    assert_eq!(correlate(&detention, &[a], None), Correlation::Join(a));
    assert_eq!(correlate(&detention, &[a, a], Some(b)), Correlation::Join(a), "a ref beats the NHS number");
    assert_eq!(correlate(&detention, &[a, b], None), Correlation::Conflict(vec![a, b]));
    assert_eq!(correlate(&detention, &[], Some(b)), Correlation::Join(b));
    assert_eq!(correlate(&detention, &[], None), Correlation::Open);
    assert_eq!(correlate(&crisis_plan, &[], None), Correlation::Unattached, "a crisis plan opens no episode");
    let mut stated = detention.clone();
    stated.episode.episode_id = Some(b);
    assert_eq!(correlate(&stated, &[a], None), Correlation::Conflict(vec![a, b]));
}

#[test]
fn sources_earn_relations_by_what_they_send() {
    let detention = example("police-s136-detention");
    assert_eq!(
        relations_earned(&detention, true),
        BTreeSet::from([Relation::Originator, Relation::Contributor, Relation::Responder])
    );
    let outcome = example("nhs-assessment-outcome");
    assert_eq!(relations_earned(&outcome, false), BTreeSet::from([Relation::Contributor]));
}

#[test]
fn a_discharge_or_no_further_action_concludes_the_episode_and_nothing_else_does() {
    let mut outcome = example("nhs-assessment-outcome");
    for (disposition, concluded) in [
        (Disposition::NoFurtherAction, true),
        (Disposition::AdmittedFormal, false),
        (Disposition::ReferredHomeTreatment, false),
        (Disposition::DischargedWithFollowUp, false),
    ] {
        outcome.details.disposition = Some(disposition);
        assert_eq!(concludes(&outcome), concluded, "{}", disposition.as_str());
    }
    assert!(!concludes(&example("police-s136-detention")));
    assert!(concludes(&example("nhs-discharge")));
}
