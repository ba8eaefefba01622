//! Property tests over random events and contexts against the sample policy: projections stay inside the
//! allow-list and valid; no covering agreement means deny; decisions are deterministic; refused consent is never
//! shared under an agreement that requires consent.
// Helpers outside `#[test]` functions unwrap too: a panic is a test failure here.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use chrono::NaiveDate;
use concordat_episode::{AgencyKind, ConsentStatus, CrisisEvent, EventKind, Name, Risk, RiskLevel, to_validated_json};
use concordat_policy::{EpisodeContext, EpisodeState, Field, Relation, Verdict, decide, project};
use proptest::prelude::*;
use support::{agency, event, leaves, sample};

const AGENCIES: &[&str] = &[
    "northvale-police",
    "transport-police",
    "northvale-mh",
    "northvale-acute",
    "northvale-ambulance",
    "northvale-council",
    "safe-haven",
    "listening-line",
    "stranger",
];

const STATUSES: &[ConsentStatus] = &[
    ConsentStatus::Given,
    ConsentStatus::Refused,
    ConsentStatus::NotSought,
    ConsentStatus::LacksCapacity,
    ConsentStatus::Unknown,
];

#[derive(Debug, Clone)]
struct Case {
    event: CrisisEvent,
    context: EpisodeContext,
    recipient: &'static str,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        0..AGENCIES.len() - 1,
        0..EventKind::ALL.len(),
        0..AGENCIES.len(),
        0..STATUSES.len(),
        proptest::option::of(0..RiskLevel::ALL.len()),
        proptest::option::of(1930i32..2025),
        any::<[bool; 8]>(),
        any::<bool>(),
        proptest::sample::subsequence(Relation::ALL.to_vec(), 0..=3),
    )
        .prop_map(|(source, kind, recipient, status, risk, birth_year, drop, closed, relations)| {
            let mut event = event(AGENCIES[source], EventKind::ALL[kind]);
            event.consent.status = STATUSES[status];
            event.risk =
                risk.map(|level| Risk { level: RiskLevel::ALL[level], factors: Vec::new(), source_scale: None });
            event.subject.birth_date = birth_year.and_then(|year| NaiveDate::from_ymd_opt(year, 3, 1));
            // Drop optional fields at random so that presence varies.
            if drop[0] {
                event.subject.nhs_number = None;
            }
            if drop[1] {
                event.subject.name = Some(Name { given: None, family: Some("Family".to_owned()) });
            }
            if drop[2] {
                event.details.summary = None;
            }
            if drop[3] {
                event.details.place_of_safety = None;
            }
            if drop[4] {
                event.details.notes = None;
            }
            if drop[5] {
                event.subject.ethnicity = None;
            }
            if drop[6] {
                event.details.outcome_of = Some(event.event_id);
            }
            if drop[7] {
                event.consent.scope.clear();
            }
            let state = if closed { EpisodeState::Closed } else { EpisodeState::Open };
            let context = EpisodeContext { state, recipient_relations: relations.into_iter().collect::<BTreeSet<_>>() };
            Case { event, context, recipient: AGENCIES[recipient] }
        })
}

/// An independent reading of "some agreement covers this flow", from the agreements' public data.
fn covered_by_any(case: &Case) -> bool {
    let policy = sample();
    let recipient = agency(case.recipient);
    let (Some(from), Some(to)) = (policy.agency(&case.event.source.agency), policy.agency(&recipient)) else {
        return false;
    };
    if from.id == to.id {
        return false;
    }
    policy.agreements().iter().any(|agreement| {
        let kinds: Vec<AgencyKind> = agreement.to.kinds.clone();
        agreement.kinds.contains(&case.event.kind)
            && (agreement.from.agencies.is_empty() || agreement.from.agencies.contains(&from.id))
            && (agreement.from.kinds.is_empty() || agreement.from.kinds.contains(&from.kind))
            && (agreement.to.agencies.is_empty() || agreement.to.agencies.contains(&to.id))
            && (kinds.is_empty() || kinds.contains(&to.kind))
            && (agreement.to.relations.is_empty()
                || agreement.to.relations.iter().any(|relation| case.context.recipient_relations.contains(relation)))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn projection_stays_inside_the_allow_list_and_valid(case in cases()) {
        let policy = sample();
        let decision = decide(policy, &case.event, &case.context, &agency(case.recipient));
        let view = project(&case.event, &decision);
        to_validated_json(&view).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let mut permitted: Vec<&str> = Field::ALL.iter().filter(|f| f.is_envelope()).map(|f| f.pointer()).collect();
        for ground in &decision.permitted_by {
            let agreement = policy.agreement(&ground.agreement).unwrap();
            permitted.extend(agreement.fields.iter().map(|field| field.pointer()));
        }
        if !decision.is_permit() {
            permitted.retain(|pointer| Field::from_pointer(pointer).is_some_and(Field::is_envelope));
        }
        for leaf in leaves(&serde_json::to_value(&view).unwrap()) {
            let inside = permitted.iter().any(|allowed| leaf == *allowed || leaf.starts_with(&format!("{allowed}/")));
            prop_assert!(inside, "{leaf} is outside the allow-list");
        }
    }

    #[test]
    fn no_covering_agreement_means_deny(case in cases()) {
        let decision = decide(sample(), &case.event, &case.context, &agency(case.recipient));
        if !covered_by_any(&case) {
            prop_assert!(matches!(decision.verdict, Verdict::Deny(_)));
            prop_assert!(decision.permitted_by.is_empty());
        }
        if decision.is_permit() {
            prop_assert!(covered_by_any(&case));
        }
    }

    #[test]
    fn decisions_are_deterministic(case in cases()) {
        let policy = sample();
        let first = decide(policy, &case.event, &case.context, &agency(case.recipient));
        let second = decide(sample(), &case.event.clone(), &case.context.clone(), &agency(case.recipient));
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(project(&case.event, &first), project(&case.event, &second));
    }

    #[test]
    fn refused_consent_is_never_shared_under_an_agreement_requiring_consent(mut case in cases()) {
        case.event.consent.status = ConsentStatus::Refused;
        let policy = sample();
        let decision = decide(policy, &case.event, &case.context, &agency(case.recipient));
        for ground in &decision.permitted_by {
            prop_assert!(!policy.agreement(&ground.agreement).unwrap().requires_consent(), "{}", ground.agreement);
        }
    }
}
