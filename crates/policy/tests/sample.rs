//! The sample policy (`deploy/local/policies/northvale.yaml`) does what each agreement's comment says.
// Helpers outside `#[test]` functions unwrap too: a panic is a test failure here.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::NaiveDate;
use concordat_episode::{ConsentStatus, CrisisEvent, EventKind, RiskLevel, to_validated_json};
use concordat_policy::{DenyReason, EpisodeContext, EpisodeState, Relation, Verdict, decide, project};
use support::{agency, context, event, open, sample};

use EventKind as K;
use Relation::{Contributor, Originator, Responder};

/// What a case expects.
enum Expect {
    /// Permitted by exactly these agreements, sharing exactly these non-envelope fields.
    Permit(&'static [&'static str], &'static [&'static str]),
    Deny(DenyReason),
}

fn check(
    source: &str,
    kind: EventKind,
    recipient: &str,
    context: &EpisodeContext,
    edit: fn(&mut CrisisEvent),
    expect: Expect,
) {
    let policy = sample();
    let mut event = event(source, kind);
    edit(&mut event);
    let decision = decide(policy, &event, context, &agency(recipient));
    let label = format!("{source} --{kind}--> {recipient}");
    match expect {
        Expect::Permit(agreements, fields) => {
            assert_eq!(decision.verdict, Verdict::Permit, "{label}");
            let ids: Vec<&str> = decision.permitted_by.iter().map(|ground| ground.agreement.as_str()).collect();
            assert_eq!(ids, agreements, "{label}");
            let shared: Vec<&str> = decision
                .fields_shared
                .iter()
                .filter(|field| !field.is_envelope())
                .map(|field| field.pointer())
                .collect();
            assert_eq!(shared, fields, "{label}");
            let view = project(&event, &decision);
            to_validated_json(&view).unwrap_or_else(|error| panic!("{label}: projection invalid: {error}"));
        }
        Expect::Deny(reason) => {
            assert_eq!(decision.verdict, Verdict::Deny(reason), "{label}");
            assert!(decision.fields_shared.is_empty() && decision.permitted_by.is_empty(), "{label}");
        }
    }
}

fn none(_: &mut CrisisEvent) {}
fn refused(event: &mut CrisisEvent) {
    event.consent.status = ConsentStatus::Refused;
}
fn moderate(event: &mut CrisisEvent) {
    event.risk.as_mut().unwrap().level = RiskLevel::Moderate;
}
fn refused_moderate(event: &mut CrisisEvent) {
    refused(event);
    moderate(event);
}
fn refused_low(event: &mut CrisisEvent) {
    refused(event);
    event.risk.as_mut().unwrap().level = RiskLevel::Low;
}
fn child(event: &mut CrisisEvent) {
    event.subject.birth_date = NaiveDate::from_ymd_opt(2010, 6, 15);
}
fn no_birth_date(event: &mut CrisisEvent) {
    event.subject.birth_date = None;
}
fn feedback(event: &mut CrisisEvent) {
    event.details.outcome_of = Some(event.event_id);
    event.details.follow_up_at = Some(event.occurred_at);
}

const S136_TO_POS: &[&str] = &[
    "/subject/nhs_number",
    "/subject/name/given",
    "/subject/name/family",
    "/subject/birth_date",
    "/subject/gender",
    "/risk/level",
    "/risk/factors",
    "/details/legal_status",
    "/details/place_of_safety/kind",
    "/details/place_of_safety/name",
    "/details/place_of_safety/ods_code",
    "/details/summary",
];

#[test]
fn s136_notification_reaches_the_place_of_safety_from_either_force() {
    for force in ["northvale-police", "transport-police"] {
        let permit = Expect::Permit(&["s136-notify-place-of-safety"], S136_TO_POS);
        check(force, K::PoliceS136Detention, "northvale-mh", &open(&[]), none, permit);
    }
}

#[test]
fn s136_notification_reaches_a_responding_emergency_department_only() {
    let fields = &[
        "/subject/nhs_number",
        "/subject/name/given",
        "/subject/name/family",
        "/subject/birth_date",
        "/risk/level",
        "/risk/factors",
        "/details/legal_status",
        "/details/place_of_safety/kind",
        "/details/place_of_safety/name",
        "/details/place_of_safety/ods_code",
    ];
    let permit = Expect::Permit(&["s136-notify-responding-nhs"], fields);
    check("northvale-police", K::PoliceS136Detention, "northvale-acute", &open(&[Responder]), none, permit);
    let deny = Expect::Deny(DenyReason::NoAgreement);
    check("northvale-police", K::PoliceS136Detention, "northvale-acute", &open(&[]), none, deny);
}

#[test]
fn arrival_goes_to_the_detaining_force_without_clinical_detail() {
    let fields = &[
        "/details/legal_status",
        "/details/place_of_safety/kind",
        "/details/place_of_safety/name",
        "/details/place_of_safety/ods_code",
    ];
    let permit = Expect::Permit(&["arrival-to-detaining-force"], fields);
    check("northvale-mh", K::NhsPlaceOfSafetyArrival, "northvale-police", &open(&[Originator]), none, permit);
    let deny = Expect::Deny(DenyReason::NoAgreement);
    check("northvale-mh", K::NhsPlaceOfSafetyArrival, "transport-police", &open(&[]), none, deny);
}

const PRE_CRISIS_TO_POLICE: &[&str] = &[
    "/subject/nhs_number",
    "/subject/name/given",
    "/subject/name/family",
    "/risk/level",
    "/risk/factors",
    "/details/summary",
];

#[test]
fn pre_crisis_context_reaches_responding_police_only_on_high_risk_or_consent() {
    let responder = open(&[Responder]);
    for kind in [K::NhsCrisisPlan, K::NhsRiskFlag, K::ContextPreCrisis] {
        // High risk, consent refused: the safeguarding route.
        let permit = Expect::Permit(&["pre-crisis-context-to-police"], PRE_CRISIS_TO_POLICE);
        check("northvale-mh", kind, "northvale-police", &responder, refused, permit);
        // Moderate risk, consent given: the consent route.
        let permit = Expect::Permit(&["pre-crisis-context-to-police"], PRE_CRISIS_TO_POLICE);
        check("northvale-mh", kind, "northvale-police", &responder, moderate, permit);
        // Moderate risk, consent refused: neither.
        let deny = Expect::Deny(DenyReason::BelowRiskThreshold);
        check("northvale-mh", kind, "northvale-police", &responder, refused_moderate, deny);
    }
    let closed = context(EpisodeState::Closed, &[Responder]);
    check("northvale-mh", K::NhsCrisisPlan, "northvale-police", &closed, none, Expect::Deny(DenyReason::EpisodeState));
    let not_responding = open(&[Contributor]);
    check(
        "northvale-mh",
        K::NhsCrisisPlan,
        "northvale-police",
        &not_responding,
        none,
        Expect::Deny(DenyReason::NoAgreement),
    );
}

#[test]
fn pre_crisis_context_reaches_a_responding_ambulance_whatever_the_consent() {
    let fields = &[
        "/subject/nhs_number",
        "/subject/name/given",
        "/subject/name/family",
        "/subject/birth_date",
        "/risk/level",
        "/risk/factors",
        "/details/summary",
    ];
    let permit = Expect::Permit(&["pre-crisis-context-to-ambulance"], fields);
    check("northvale-mh", K::NhsRiskFlag, "northvale-ambulance", &open(&[Responder]), refused_low, permit);
}

#[test]
fn outcome_feedback_reaches_the_detaining_force_with_the_outcome_only() {
    let permit =
        Expect::Permit(&["outcome-feedback-to-detaining-force"], &["/details/disposition", "/details/outcome_of"]);
    check("northvale-mh", K::FeedbackOutcome, "northvale-police", &open(&[Contributor]), feedback, permit);
    // The clinical outcome event itself never reaches police.
    let deny = Expect::Deny(DenyReason::NoAgreement);
    check("northvale-mh", K::NhsAssessmentOutcome, "northvale-police", &open(&[Contributor]), feedback, deny);
}

#[test]
fn vcs_referrals_need_consent_in_both_directions() {
    let fields = &["/subject/name/given", "/subject/name/family", "/subject/postcode_district", "/risk/level"];
    let permit = Expect::Permit(&["nhs-referral-to-vcs"], fields);
    check("northvale-mh", K::NhsReferral, "safe-haven", &open(&[Responder]), none, permit);
    let deny = Expect::Deny(DenyReason::ConsentRequired);
    check("northvale-mh", K::NhsReferral, "safe-haven", &open(&[Responder]), refused, deny);

    let fields = &[
        "/subject/nhs_number",
        "/subject/name/given",
        "/subject/name/family",
        "/subject/birth_date",
        "/subject/postcode_district",
        "/risk/level",
        "/risk/factors",
        "/details/summary",
    ];
    let permit = Expect::Permit(&["vcs-referral-to-crisis-team"], fields);
    check("listening-line", K::VcsReferral, "northvale-mh", &open(&[]), none, permit);
    check(
        "listening-line",
        K::VcsReferral,
        "northvale-mh",
        &open(&[]),
        refused,
        Expect::Deny(DenyReason::ConsentRequired),
    );
}

#[test]
fn outcome_feedback_reaches_a_contributing_vcs_only_with_consent() {
    let fields = &["/details/disposition", "/details/follow_up_at", "/details/outcome_of"];
    let permit = Expect::Permit(&["outcome-feedback-to-vcs"], fields);
    check("northvale-mh", K::FeedbackOutcome, "safe-haven", &open(&[Contributor]), feedback, permit);
    let deny = Expect::Deny(DenyReason::ConsentRequired);
    check(
        "northvale-mh",
        K::FeedbackOutcome,
        "safe-haven",
        &open(&[Contributor]),
        |event| {
            feedback(event);
            refused(event);
        },
        deny,
    );
}

#[test]
fn children_are_referred_to_safeguarding_and_adults_to_the_amhp_service() {
    let fields = &[
        "/subject/nhs_number",
        "/subject/name/given",
        "/subject/name/family",
        "/subject/birth_date",
        "/subject/postcode_district",
        "/risk/level",
        "/risk/factors",
        "/details/legal_status",
        "/details/place_of_safety/kind",
        "/details/place_of_safety/name",
        "/details/place_of_safety/ods_code",
        "/details/disposition",
        "/details/summary",
    ];
    let permit = Expect::Permit(&["safeguarding-under-18"], fields);
    check(
        "northvale-police",
        K::PoliceS136Detention,
        "northvale-council",
        &open(&[]),
        |event| {
            child(event);
            refused(event);
        },
        permit,
    );
    let permit = Expect::Permit(
        &["safeguarding-under-18"],
        &[
            "/subject/nhs_number",
            "/subject/name/given",
            "/subject/name/family",
            "/subject/birth_date",
            "/subject/postcode_district",
            "/risk/level",
            "/risk/factors",
            "/details/legal_status",
            "/details/place_of_safety/kind",
            "/details/place_of_safety/name",
            "/details/place_of_safety/ods_code",
            "/details/disposition",
            "/details/summary",
        ],
    );
    check("safe-haven", K::VcsContact, "northvale-council", &open(&[]), child, permit);

    let amhp = &[
        "/subject/name/given",
        "/subject/name/family",
        "/subject/birth_date",
        "/details/legal_status",
        "/details/place_of_safety/kind",
        "/details/place_of_safety/name",
        "/details/place_of_safety/ods_code",
    ];
    check(
        "northvale-police",
        K::PoliceS136Detention,
        "northvale-council",
        &open(&[]),
        none,
        Expect::Permit(&["s136-to-amhp-service"], amhp),
    );
    // Without a birth date neither age condition is met.
    let deny = Expect::Deny(DenyReason::AgeOutsideBand);
    check("northvale-police", K::PoliceS136Detention, "northvale-council", &open(&[]), no_birth_date, deny);
}

#[test]
fn concern_for_welfare_reaches_the_crisis_team_on_consent_or_moderate_risk() {
    let fields = &[
        "/subject/nhs_number",
        "/subject/name/given",
        "/subject/name/family",
        "/subject/birth_date",
        "/risk/level",
        "/risk/factors",
        "/details/summary",
    ];
    check(
        "northvale-police",
        K::PoliceConcernForWelfare,
        "northvale-mh",
        &open(&[]),
        refused_moderate,
        Expect::Permit(&["concern-for-welfare-to-crisis-team"], fields),
    );
    let deny = Expect::Deny(DenyReason::ConsentRequired);
    check("northvale-police", K::PoliceConcernForWelfare, "northvale-mh", &open(&[]), refused_low, deny);
}

#[test]
fn own_events_and_strangers_are_denied() {
    check(
        "northvale-mh",
        K::NhsCrisisPlan,
        "northvale-mh",
        &open(&[Responder]),
        none,
        Expect::Deny(DenyReason::OwnEvent),
    );
    check(
        "northvale-mh",
        K::NhsCrisisPlan,
        "nowhere",
        &open(&[Responder]),
        none,
        Expect::Deny(DenyReason::UnknownRecipient),
    );
    check(
        "elsewhere-police",
        K::PoliceS136Detention,
        "northvale-mh",
        &open(&[]),
        none,
        Expect::Deny(DenyReason::UnknownSource),
    );
}

#[test]
fn sensitive_fields_nobody_names_are_always_withheld() {
    let policy = sample();
    for agreement in policy.agreements() {
        for field in &agreement.fields {
            assert!(
                !matches!(field.pointer(), "/details/notes" | "/details/codes" | "/subject/identifiers"),
                "{}",
                agreement.id
            );
        }
    }
    let event = event("northvale-police", K::PoliceS136Detention);
    let decision = decide(policy, &event, &open(&[]), &agency("northvale-mh"));
    let withheld: Vec<&str> = decision.fields_withheld.iter().map(|field| field.pointer()).collect();
    for pointer in ["/details/notes", "/details/codes", "/subject/identifiers", "/consent/scope"] {
        assert!(withheld.contains(&pointer), "{pointer}");
    }
    let view = serde_json::to_value(project(&event, &decision)).unwrap();
    assert!(view.pointer("/details/notes").is_none());
    assert!(view.pointer("/subject/identifiers").is_none());
}
