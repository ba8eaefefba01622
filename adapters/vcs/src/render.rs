//! A recipient's view of a canonical event to a `vcs-notification.v1` message: a deliberately simple JSON of
//! plain-language fields that a small service can read in an inbox or a spreadsheet.
//!
//! Rendering adds nothing the view lacks: the view is already cut down by the sharing policy, so a field
//! absent from it is absent from the notification. It reads no clock: the sending time and every id come from
//! the context and the event, so a redelivery renders the same bytes.

use concordat_episode::{
    AgencyKind, ConsentStatus, CrisisEvent, Disposition, EventKind, Gender, LegalStatus, PlaceOfSafetyKind,
    RenderContext, RenderError, Rendered, RiskFactor, RiskLevel, Urgency, derived_id,
};
use serde::Serialize;

use crate::format::ReferralService;
use crate::mapping;
use crate::uk_time;

/// The media type of a rendered notification.
pub const CONTENT_TYPE: &str = "application/json";
/// The format name every notification states.
pub const FORMAT: &str = "vcs-notification.v1";

/// The wire shape of `schemas/vcs-notification.v1.json`.
#[derive(Serialize)]
struct Notification {
    format: &'static str,
    notification_id: String,
    sent_at: String,
    kind: &'static str,
    what_happened: String,
    when: String,
    when_uk_time: String,
    shared_by: String,
    your_references: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    episode_id: Option<String>,
    event_id: String,
    decision_id: String,
    why_shared: WhyShared,
    consent: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk: Option<RiskWords>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referral: Option<ReferralWords>,
    #[serde(skip_serializing_if = "Option::is_none")]
    follow_up_planned_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legal_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    place_of_safety: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    person: Option<Person>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

#[derive(Serialize)]
struct WhyShared {
    purpose: String,
    lawful_basis: String,
}

#[derive(Serialize)]
struct RiskWords {
    level: &'static str,
    in_words: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    concerns: Vec<&'static str>,
}

#[derive(Serialize)]
struct ReferralWords {
    #[serde(skip_serializing_if = "Option::is_none")]
    to_agency: Option<String>,
    to_you: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    urgency: Option<&'static str>,
}

#[derive(Serialize)]
struct Person {
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nhs_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    birth_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gender: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postcode_district: Option<String>,
}

pub(crate) fn render(view: &CrisisEvent, cx: &RenderContext) -> Result<Rendered, RenderError> {
    // Which agencies receive this simple format is the deployment's choice (VCS services by default, local
    // authorities too), so the recipient's kind is not checked here.
    let details = &view.details;
    let outcome = details.disposition.map(|disposition| outcome_words(disposition, details.referral.as_ref()));
    let own_system = mapping::contact_system(&cx.recipient);
    let mut your_references: Vec<String> = Vec::new();
    for reference in cx.episode_refs.iter().filter(|reference| reference.system.as_str() == own_system) {
        if !your_references.iter().any(|known| known == reference.value.as_str()) {
            your_references.push(reference.value.as_str().to_owned());
        }
    }
    let notification = Notification {
        format: FORMAT,
        notification_id: derived_id(
            FORMAT,
            &[&cx.decision_id.to_string(), &view.event_id.to_string(), cx.recipient.as_str()],
        )
        .to_string(),
        sent_at: cx.sent_at.to_rfc3339(),
        kind: view.kind.as_str(),
        what_happened: what_happened(view, cx, outcome.as_deref()),
        when: view.occurred_at.to_rfc3339(),
        when_uk_time: uk_wall_clock(view),
        shared_by: cx.source_name.clone(),
        your_references,
        episode_id: cx.episode_id.or(view.episode.episode_id).map(|id| id.to_string()),
        event_id: view.event_id.to_string(),
        decision_id: cx.decision_id.to_string(),
        why_shared: WhyShared { purpose: cx.purpose.clone(), lawful_basis: cx.lawful_basis.clone() },
        consent: consent_words(view.consent.status),
        outcome,
        risk: view.risk.as_ref().map(|risk| RiskWords {
            level: risk.level.as_str(),
            in_words: risk_words(risk.level),
            concerns: risk.factors.iter().map(|factor| factor_words(*factor)).collect(),
        }),
        referral: details.referral.as_ref().map(|referral| ReferralWords {
            to_agency: referral.to_agency.as_ref().map(ToString::to_string),
            to_you: referral.to_agency.as_ref() == Some(&cx.recipient),
            service: referral.service.as_deref().map(service_words),
            urgency: referral.urgency.map(urgency_words),
        }),
        follow_up_planned_at: details.follow_up_at.map(|at| at.to_rfc3339()),
        legal_status: details.legal_status.map(legal_status_words),
        place_of_safety: details.place_of_safety.as_ref().map(|place| {
            let kind = place_of_safety_words(place.kind);
            match &place.name {
                Some(name) => format!("{name} ({kind})"),
                None => kind.to_owned(),
            }
        }),
        person: person(view),
        summary: details.summary.clone(),
        notes: details.notes.clone(),
    };
    let body = serde_json::to_vec_pretty(&notification)
        .map_err(|_| unrenderable("the notification could not be serialized".to_owned()))?;
    Ok(Rendered { content_type: CONTENT_TYPE, body })
}

fn unrenderable(reason: String) -> RenderError {
    RenderError::Unrenderable { what: FORMAT.to_owned(), reason }
}

fn person(view: &CrisisEvent) -> Option<Person> {
    let subject = &view.subject;
    let person = Person {
        given_name: subject.name.as_ref().and_then(|name| name.given.clone()),
        family_name: subject.name.as_ref().and_then(|name| name.family.clone()),
        nhs_number: subject.nhs_number.as_ref().map(|number| number.as_str().to_owned()),
        birth_date: subject.birth_date.map(|date| date.format("%Y-%m-%d").to_string()),
        gender: subject.gender.map(gender_words),
        postcode_district: subject.postcode_district.as_ref().map(|district| district.as_str().to_owned()),
    };
    let empty = person.given_name.is_none()
        && person.family_name.is_none()
        && person.nhs_number.is_none()
        && person.birth_date.is_none()
        && person.gender.is_none()
        && person.postcode_district.is_none();
    (!empty).then_some(person)
}

fn what_happened(view: &CrisisEvent, cx: &RenderContext, outcome: Option<&str>) -> String {
    let source = &cx.source_name;
    let details = &view.details;
    let to_you = details.referral.as_ref().and_then(|referral| referral.to_agency.as_ref()) == Some(&cx.recipient);
    let with_outcome = |text: String| match outcome {
        Some(outcome) => format!("{text}: {outcome}"),
        None => text,
    };
    match view.kind {
        EventKind::PoliceConcernForWelfare => format!("{source} logged a concern for the person's welfare"),
        EventKind::NhsCrisisPlan => format!("{source} holds a crisis plan for the person"),
        EventKind::NhsRiskFlag => format!("{source} holds a risk alert for the person"),
        EventKind::VcsContact => with_outcome(format!("{source} was in contact with the person")),
        EventKind::PoliceS136Detention => format!(
            "{source} used section 136 of the Mental Health Act to take the person to a place of safety for assessment"
        ),
        EventKind::PoliceS135Warrant => format!("{source} used a section 135 Mental Health Act warrant"),
        EventKind::PoliceConveyance => format!("{source} took the person to a place of safety"),
        EventKind::NhsPlaceOfSafetyArrival => format!("The person arrived at a place of safety ({source})"),
        EventKind::NhsReferral | EventKind::VcsReferral if to_you => format!("{source} referred the person to you"),
        EventKind::NhsReferral | EventKind::VcsReferral => format!("{source} made a referral for the person"),
        EventKind::NhsAssessmentOutcome => with_outcome(format!("{source} assessed the person")),
        EventKind::NhsDischarge => with_outcome(format!("{source} discharged the person")),
        EventKind::VcsFollowUp => with_outcome(format!("{source} followed up with the person")),
        EventKind::PoliceOutcome => with_outcome(format!("{source} recorded how its involvement ended")),
        EventKind::FeedbackOutcome => match (view.source.agency_kind, outcome) {
            (AgencyKind::Nhs, Some(outcome)) => format!("{source} assessed the person you were supporting: {outcome}"),
            (_, Some(outcome)) => format!("{source} reports the outcome for the person you were supporting: {outcome}"),
            (_, None) => format!("{source} reports an outcome for the person you were supporting"),
        },
        EventKind::ContextPreCrisis => {
            format!("{source} shared what it already knew about the person, for the crisis now under way")
        }
    }
}

fn uk_wall_clock(view: &CrisisEvent) -> String {
    let local = uk_time::to_local(view.occurred_at.0).unwrap_or(view.occurred_at.0);
    local.format("%A %-d %B %Y at %H:%M").to_string()
}

fn outcome_words(disposition: Disposition, referral: Option<&concordat_episode::Referral>) -> String {
    let words = match disposition {
        Disposition::AdmittedFormal => "admitted to hospital under the Mental Health Act",
        Disposition::AdmittedInformal => "admitted to hospital as a voluntary patient",
        Disposition::DischargedWithFollowUp => "discharged with follow-up",
        Disposition::ReferredHomeTreatment => "referred to the crisis resolution and home treatment team",
        Disposition::NoFurtherAction => "no further action needed",
        Disposition::ReferredElsewhere => "referred to another service",
    };
    match (disposition, referral.and_then(|referral| referral.service.as_deref())) {
        (Disposition::DischargedWithFollowUp, Some(service)) => format!("{words} from {}", service_words(service)),
        (Disposition::ReferredElsewhere, Some(service)) => format!("referred to {}", service_words(service)),
        _ => words.to_owned(),
    }
}

/// A canonical `referral.service` in words: the vcs-contact list's words when it is one of them, otherwise
/// the service's own text with underscores as spaces.
fn service_words(service: &str) -> String {
    ReferralService::ALL
        .iter()
        .find(|known| known.as_str() == service)
        .map_or_else(|| service.replace('_', " "), |known| known.words().to_owned())
}

const fn consent_words(status: ConsentStatus) -> &'static str {
    match status {
        ConsentStatus::Given => "the person agreed to their information being shared",
        ConsentStatus::Refused => "the person refused consent; this was shared under an agreement that allows it",
        ConsentStatus::NotSought => "consent was not asked for; this was shared under an agreement that allows it",
        ConsentStatus::LacksCapacity => "the person could not decide about sharing at the time",
        ConsentStatus::Unknown => "consent was not recorded",
    }
}

const fn risk_words(level: RiskLevel) -> &'static str {
    match level {
        RiskLevel::None => "no risk identified",
        RiskLevel::Low => "low risk",
        RiskLevel::Moderate => "moderate risk",
        RiskLevel::High => "high risk",
        RiskLevel::Imminent => "risk to life or of serious harm now",
    }
}

const fn factor_words(factor: RiskFactor) -> &'static str {
    match factor {
        RiskFactor::SelfHarm => "self-harm",
        RiskFactor::SuicidalIdeation => "thoughts of suicide",
        RiskFactor::HarmToOthers => "harm to other people",
        RiskFactor::HarmFromOthers => "harm from other people",
        RiskFactor::SubstanceUse => "alcohol or drug use",
        RiskFactor::SafeguardingChild => "a child at risk",
        RiskFactor::SafeguardingAdult => "an adult at risk",
        RiskFactor::PhysicalHealth => "physical health",
        RiskFactor::Weapons => "weapons",
        RiskFactor::MissingPerson => "missing person",
        RiskFactor::DomesticAbuse => "domestic abuse",
    }
}

const fn urgency_words(urgency: Urgency) -> &'static str {
    match urgency {
        Urgency::Emergency => "emergency",
        Urgency::Urgent => "urgent",
        Urgency::Routine => "routine",
    }
}

const fn gender_words(gender: Gender) -> &'static str {
    match gender {
        Gender::Male => "male",
        Gender::Female => "female",
        Gender::Other => "other",
        Gender::Unknown => "not known",
    }
}

const fn legal_status_words(status: LegalStatus) -> &'static str {
    match status {
        LegalStatus::Informal => "voluntary (informal) patient",
        LegalStatus::S2 => "detained under section 2 of the Mental Health Act (assessment)",
        LegalStatus::S3 => "detained under section 3 of the Mental Health Act (treatment)",
        LegalStatus::S4 => "detained under section 4 of the Mental Health Act (emergency)",
        LegalStatus::S135_1 => "section 135(1) Mental Health Act warrant",
        LegalStatus::S135_2 => "section 135(2) Mental Health Act warrant",
        LegalStatus::S136 => "section 136 of the Mental Health Act (place of safety)",
        LegalStatus::Mca => "Mental Capacity Act",
        LegalStatus::None => "no legal power used",
    }
}

const fn place_of_safety_words(kind: PlaceOfSafetyKind) -> &'static str {
    match kind {
        PlaceOfSafetyKind::HealthBased => "health-based place of safety",
        PlaceOfSafetyKind::EmergencyDepartment => "emergency department",
        PlaceOfSafetyKind::PoliceStation => "police station",
        PlaceOfSafetyKind::Other => "other place of safety",
    }
}
