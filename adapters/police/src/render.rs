//! A recipient's canonical view → the `police-notification.v1` JSON a force receives
//! (`schemas/police-notification.v1.json`).
//!
//! One shape carries all three things police receive back: notifications of partners' events, pre-crisis
//! context, and outcome feedback. It leads with what a control room needs to file and act on it: the
//! force's own incident numbers, what happened in plain words, who shared it and why. Rendering is
//! deterministic (ids derived from the event and the decision, time from the context) and adds nothing the
//! view lacks: the view was already cut down by the sharing policy, and this module never widens it.

use concordat_episode::{
    AgencyId, AgencyKind, Consent, ConsentStatus, Conveyance, CrisisEvent, Disposition, EventId, EventKind, Identifier,
    LegalStatus, Location, PlaceOfSafety, RcrpDecision, Referral, RenderContext, RenderError, Rendered, Risk, Subject,
    Timestamp, derived_id, police_incident_system,
};
use serde::Serialize;
use uuid::Uuid;

use crate::mapping;

/// The format name of what police receive.
pub const NOTIFICATION_FORMAT: &str = "police-notification.v1";

/// The media type of a rendered notification.
pub const NOTIFICATION_CONTENT_TYPE: &str = "application/json";

pub(crate) fn render(view: &CrisisEvent, cx: &RenderContext) -> Result<Rendered, RenderError> {
    if cx.recipient_kind != AgencyKind::Police {
        return Err(RenderError::Unrenderable {
            what: NOTIFICATION_FORMAT.to_owned(),
            reason: format!("the recipient's agency kind is `{}`, not `police`", cx.recipient_kind),
        });
    }
    let notification = notification(view, cx);
    let body = serde_json::to_vec_pretty(&notification).map_err(|_| RenderError::Unrenderable {
        what: NOTIFICATION_FORMAT.to_owned(),
        reason: "the notification could not be serialized".to_owned(),
    })?;
    Ok(Rendered { content_type: NOTIFICATION_CONTENT_TYPE, body })
}

fn notification<'a>(view: &'a CrisisEvent, cx: &'a RenderContext) -> Notification<'a> {
    let own_system = police_incident_system(&cx.recipient);
    let mut references: Vec<&Identifier> = Vec::with_capacity(cx.episode_refs.len() + view.episode.refs.len());
    for reference in cx.episode_refs.iter().chain(&view.episode.refs) {
        if !references.contains(&reference) {
            references.push(reference);
        }
    }
    let incident_numbers = references
        .iter()
        .filter(|reference| reference.system.as_str() == own_system)
        .map(|r| r.value.as_str())
        .collect();
    let decision = cx.decision_id.hyphenated().to_string();
    let event_id = view.event_id.to_string();
    let details = &view.details;
    let outcome = details.disposition.map(|disposition| OutcomeView {
        disposition,
        description: mapping::disposition_words(disposition),
        outcome_of: details.outcome_of,
    });
    Notification {
        format: NOTIFICATION_FORMAT,
        notification_id: derived_id(NOTIFICATION_FORMAT, &[&event_id, cx.recipient.as_str(), &decision]),
        sent_at: cx.sent_at,
        recipient: &cx.recipient,
        category: category(view.kind),
        headline: match details.disposition {
            Some(disposition) => format!(
                "{}: {} ({})",
                cx.source_name,
                mapping::kind_words(view.kind),
                mapping::disposition_words(disposition)
            ),
            None => format!("{}: {}", cx.source_name, mapping::kind_words(view.kind)),
        },
        incident_numbers,
        episode_id: cx.episode_id.map(|id| id.0).or(view.episode.episode_id.map(|id| id.0)),
        references,
        event: EventView {
            event_id: view.event_id,
            kind: view.kind,
            what: mapping::kind_words(view.kind),
            occurred_at: view.occurred_at,
            recorded_at: view.recorded_at,
        },
        shared_by: SharedBy {
            agency: &view.source.agency,
            agency_kind: view.source.agency_kind,
            name: &cx.source_name,
            system: &view.source.system,
            their_reference: view.source.record_ref.as_str(),
        },
        sharing: Sharing { decision_id: cx.decision_id, purpose: &cx.purpose, lawful_basis: &cx.lawful_basis },
        police_action_required: details.police_action_required,
        rcrp_decision: details.rcrp_decision,
        outcome,
        person: (view.subject != Subject::default()).then_some(&view.subject),
        risk: view.risk.as_ref(),
        consent: (view.consent.status != ConsentStatus::Unknown || !view.consent.scope.is_empty())
            .then_some(&view.consent),
        location: details.location.as_ref(),
        legal_status: details.legal_status,
        place_of_safety: details.place_of_safety.as_ref(),
        conveyance: details.conveyance.as_ref(),
        force_used: details.force_used,
        referral: details.referral.as_ref(),
        follow_up_at: details.follow_up_at,
        summary: details.summary.as_deref(),
        notes: details.notes.as_deref(),
        codes: &details.codes,
    }
}

const fn category(kind: EventKind) -> &'static str {
    match kind {
        EventKind::FeedbackOutcome => "outcome_feedback",
        EventKind::ContextPreCrisis => "pre_crisis_context",
        _ => "notification",
    }
}

/// The wire shape of `police-notification.v1`. Optional fields are left out when the view lacks them.
#[derive(Serialize)]
struct Notification<'a> {
    format: &'static str,
    notification_id: Uuid,
    sent_at: Timestamp,
    recipient: &'a AgencyId,
    category: &'static str,
    headline: String,
    incident_numbers: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    episode_id: Option<Uuid>,
    references: Vec<&'a Identifier>,
    event: EventView,
    shared_by: SharedBy<'a>,
    sharing: Sharing<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    police_action_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rcrp_decision: Option<RcrpDecision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<OutcomeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    person: Option<&'a Subject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk: Option<&'a Risk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent: Option<&'a Consent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legal_status: Option<LegalStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    place_of_safety: Option<&'a PlaceOfSafety>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conveyance: Option<&'a Conveyance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    force_used: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referral: Option<&'a Referral>,
    #[serde(skip_serializing_if = "Option::is_none")]
    follow_up_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    codes: &'a [concordat_episode::Coding],
}

#[derive(Serialize)]
struct EventView {
    event_id: EventId,
    kind: EventKind,
    what: &'static str,
    occurred_at: Timestamp,
    recorded_at: Timestamp,
}

#[derive(Serialize)]
struct SharedBy<'a> {
    agency: &'a AgencyId,
    agency_kind: AgencyKind,
    name: &'a str,
    system: &'a str,
    their_reference: &'a str,
}

#[derive(Serialize)]
struct Sharing<'a> {
    decision_id: Uuid,
    purpose: &'a str,
    lawful_basis: &'a str,
}

#[derive(Serialize)]
struct OutcomeView {
    disposition: Disposition,
    description: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome_of: Option<EventId>,
}
