//! What an NHS recipient receives: the redacted view of one canonical event as a FHIR R4 message Bundle, pure
//! and deterministic.
//!
//! The Bundle holds, in order: a `MessageHeader` (event coded in `urn:concordat:event-kind`, source Concordat,
//! destination the recipient, by its ODS code where the policy gives one, sender the source agency, focus the
//! main resource, reason the agreement's purpose and lawful basis); the source agency as an `Organization`
//! (its ODS code where the policy gives one, and its `urn:concordat:agency` identifier); a `Patient` only when
//! the view holds subject fields, with only those; and the main resource:
//!
//! | kind | main resource |
//! | --- | --- |
//! | `nhs.referral`, `vcs.referral` | `ServiceRequest` (service, urgency, referred-to agency) |
//! | `nhs.risk_flag` | `Flag` (`active`, or `inactive` when the view's risk level is `none`) |
//! | everything else (notifications, `context.pre_crisis`, `feedback.outcome`) | `Communication` (`sent` is the event's own time) |
//!
//! The main resource carries the event id (`urn:concordat:event`), the episode id (`urn:concordat:episode`) and
//! every episode ref the recipient may see, so its system can file the message. Coded facts (disposition, legal
//! status as UK Core's England code, place of safety, risk) appear as codings, and every field of the view also
//! appears as a readable line, so a person reading the record sees what a machine reads. Nothing that is not in
//! the view is added: the view is already redacted by the policy.
//!
//! Ids and fullUrls are UUIDs derived from the decision id and the event id, and every time is `cx.sent_at` or a
//! time from the view, so the same input renders the same bytes. This module does not send anything (see
//! `push`).

use concordat_episode::{
    CrisisEvent, EPISODE_SYSTEM, EventKind, Gender, Identifier, NHS_NUMBER_SYSTEM, RenderContext, RenderError,
    Rendered, RiskLevel, Urgency, derived_id,
};
use fhir_sdk::r4b::resources::Bundle;
use serde_json::{Map, Value, json};

use crate::mapping;
use crate::{ADAPTER_NAME, FHIR_JSON};

/// The namespace of the ids this module derives.
const ID_NAMESPACE: &str = "concordat:nhs-fhir:render";

/// See [`crate::render`].
pub(crate) fn render(view: &CrisisEvent, cx: &RenderContext) -> Result<Rendered, RenderError> {
    let bundle = bundle_value(view, cx);
    // Every rendered Bundle is read back through the FHIR models, so a recipient never receives one that breaks
    // FHIR R4; the serialization written is the models', which puts `resourceType` first.
    let parsed: Bundle = serde_json::from_value(bundle).map_err(|_| RenderError::Unrenderable {
        what: view.kind.as_str().to_owned(),
        reason: "the message Bundle does not parse as FHIR R4".to_owned(),
    })?;
    let body = serde_json::to_vec(&parsed).map_err(|_| RenderError::Unrenderable {
        what: view.kind.as_str().to_owned(),
        reason: "the message Bundle could not be serialized".to_owned(),
    })?;
    Ok(Rendered { content_type: FHIR_JSON, body })
}

/// The main resource type for a kind.
fn main_type(kind: EventKind) -> &'static str {
    match kind {
        EventKind::NhsReferral | EventKind::VcsReferral => "ServiceRequest",
        EventKind::NhsRiskFlag => "Flag",
        _ => "Communication",
    }
}

fn bundle_value(view: &CrisisEvent, cx: &RenderContext) -> Value {
    let decision = cx.decision_id.to_string();
    let event = view.event_id.to_string();
    let id = |part: &str| derived_id(ID_NAMESPACE, &[&decision, &event, part]).to_string();
    let resource_type = main_type(view.kind);
    let (bundle_id, header_id, organization_id, patient_id, main_id) =
        (id("Bundle"), id("MessageHeader"), id("Organization"), id("Patient"), id(resource_type));
    let url = |id: &str| format!("urn:uuid:{id}");
    let sent = cx.sent_at.to_rfc3339();

    let patient = patient(view, &patient_id);
    let subject = patient.as_ref().map(|_| json!({ "reference": url(&patient_id) }));
    let sender = json!({ "reference": url(&organization_id), "display": cx.source_name });
    // NHS systems know organisations by ODS code; an agency the policy gives none is named by its Concordat id.
    let recipient = match &cx.recipient_ods {
        Some(ods) => json!({ "identifier": { "system": mapping::ODS_ORGANIZATION, "value": ods.as_str() } }),
        None => json!({ "identifier": { "system": mapping::CONCORDAT_AGENCY, "value": cx.recipient.as_str() } }),
    };
    let parts = Parts { view, cx, identifiers: identifiers(view, cx), subject, sender: sender.clone(), recipient };
    let main = match resource_type {
        "ServiceRequest" => service_request(&parts, &main_id),
        "Flag" => flag(&parts, &main_id),
        _ => communication(&parts, &main_id),
    };

    let header = json!({
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": kind_coding(view.kind),
        "destination": [{
            "name": cx.recipient.as_str(),
            "endpoint": format!("urn:concordat:agency:{}", cx.recipient),
            "receiver": parts.recipient,
        }],
        "sender": sender,
        "source": { "name": "Concordat", "software": ADAPTER_NAME, "version": env!("CARGO_PKG_VERSION"), "endpoint": "urn:concordat" },
        "reason": { "text": format!("{} (lawful basis: {})", cx.purpose, cx.lawful_basis) },
        "focus": [{ "reference": url(&main_id) }],
    });
    let mut organization_ids = Vec::new();
    if let Some(ods) = &cx.source_ods {
        organization_ids.push(json!({ "system": mapping::ODS_ORGANIZATION, "value": ods.as_str() }));
    }
    organization_ids.push(json!({ "system": mapping::CONCORDAT_AGENCY, "value": view.source.agency.as_str() }));
    let organization = json!({
        "resourceType": "Organization",
        "id": organization_id,
        "identifier": organization_ids,
        "name": cx.source_name,
    });
    let mut entries = vec![
        json!({ "fullUrl": url(&header_id), "resource": header }),
        json!({ "fullUrl": url(&organization_id), "resource": organization }),
    ];
    if let Some(patient) = patient {
        entries.push(json!({ "fullUrl": url(&patient_id), "resource": patient }));
    }
    entries.push(json!({ "fullUrl": url(&main_id), "resource": main }));
    json!({
        "resourceType": "Bundle",
        "id": bundle_id,
        "identifier": { "system": mapping::CONCORDAT_DECISION, "value": decision },
        "type": "message",
        "timestamp": sent,
        "entry": entries,
    })
}

struct Parts<'a> {
    view: &'a CrisisEvent,
    cx: &'a RenderContext,
    identifiers: Vec<Value>,
    subject: Option<Value>,
    sender: Value,
    recipient: Value,
}

impl Parts<'_> {
    /// Subject is 1..1 on ServiceRequest and Flag; when the policy withheld every subject field, say so.
    fn required_subject(&self) -> Value {
        self.subject.clone().unwrap_or_else(|| json!({ "display": "subject withheld under the sharing agreement" }))
    }
}

/// The event id, the episode id and the episode refs: what the recipient's system files the message under.
fn identifiers(view: &CrisisEvent, cx: &RenderContext) -> Vec<Value> {
    let mut found: Vec<(String, String)> = vec![(mapping::CONCORDAT_EVENT.to_owned(), view.event_id.to_string())];
    if let Some(episode) = cx.episode_id.or(view.episode.episode_id) {
        found.push((EPISODE_SYSTEM.to_owned(), episode.to_string()));
    }
    let refs = cx.episode_refs.iter().chain(&view.episode.refs);
    for Identifier { system, value } in refs {
        let pair = (system.as_str().to_owned(), value.as_str().to_owned());
        if !found.contains(&pair) {
            found.push(pair);
        }
    }
    found.into_iter().map(|(system, value)| json!({ "system": system, "value": value })).collect()
}

fn patient(view: &CrisisEvent, id: &str) -> Option<Value> {
    let subject = &view.subject;
    let mut patient = Map::new();
    let mut identifiers = Vec::new();
    if let Some(number) = &subject.nhs_number {
        identifiers.push(json!({ "system": NHS_NUMBER_SYSTEM, "value": number.as_str() }));
    }
    for identifier in &subject.identifiers {
        identifiers.push(json!({ "system": identifier.system.as_str(), "value": identifier.value.as_str() }));
    }
    if !identifiers.is_empty() {
        patient.insert("identifier".to_owned(), Value::Array(identifiers));
    }
    if let Some(name) = &subject.name {
        let mut human = Map::new();
        if let Some(family) = &name.family {
            human.insert("family".to_owned(), json!(family));
        }
        if let Some(given) = &name.given {
            human.insert("given".to_owned(), json!(given.split_whitespace().collect::<Vec<_>>()));
        }
        if !human.is_empty() {
            patient.insert("name".to_owned(), json!([human]));
        }
    }
    if let Some(gender) = subject.gender {
        let code = match gender {
            Gender::Male => "male",
            Gender::Female => "female",
            Gender::Other => "other",
            Gender::Unknown => "unknown",
        };
        patient.insert("gender".to_owned(), json!(code));
    }
    if let Some(birth) = subject.birth_date {
        patient.insert("birthDate".to_owned(), json!(birth.format("%Y-%m-%d").to_string()));
    }
    if let Some(district) = &subject.postcode_district {
        // Only the outward code is ever shared; FHIR allows a partial postal code.
        patient.insert("address".to_owned(), json!([{ "postalCode": district.as_str() }]));
    }
    if let Some(ethnicity) = &subject.ethnicity {
        patient.insert(
            "extension".to_owned(),
            json!([{ "url": mapping::ETHNIC_CATEGORY_EXTENSION, "valueCodeableConcept": { "coding": [coding_value(ethnicity)] } }]),
        );
    }
    if patient.is_empty() {
        return None;
    }
    patient.insert("resourceType".to_owned(), json!("Patient"));
    patient.insert("id".to_owned(), json!(id));
    Some(Value::Object(patient))
}

fn coding_value(coding: &concordat_episode::Coding) -> Value {
    let mut value = json!({ "system": coding.system.as_str(), "code": coding.code.as_str() });
    if let (Some(display), Some(object)) = (&coding.display, value.as_object_mut()) {
        object.insert("display".to_owned(), json!(display));
    }
    value
}

fn coding(system: &str, code: &str) -> Value {
    json!({ "system": system, "code": code })
}

fn kind_coding(kind: EventKind) -> Value {
    json!({ "system": mapping::CONCORDAT_EVENT_KIND, "code": kind.as_str(), "display": kind_display(kind) })
}

fn kind_display(kind: EventKind) -> &'static str {
    match kind {
        EventKind::PoliceConcernForWelfare => "Police concern for welfare",
        EventKind::NhsCrisisPlan => "NHS crisis plan",
        EventKind::NhsRiskFlag => "NHS risk flag",
        EventKind::VcsContact => "Voluntary-sector contact",
        EventKind::PoliceS136Detention => "Police detention under s136",
        EventKind::PoliceS135Warrant => "Police executed a s135 warrant",
        EventKind::PoliceConveyance => "Conveyance to a place of safety",
        EventKind::NhsPlaceOfSafetyArrival => "Arrival at a place of safety",
        EventKind::NhsReferral => "NHS referral",
        EventKind::VcsReferral => "Voluntary-sector referral",
        EventKind::NhsAssessmentOutcome => "Mental Health Act assessment outcome",
        EventKind::NhsDischarge => "NHS discharge",
        EventKind::VcsFollowUp => "Voluntary-sector follow-up",
        EventKind::PoliceOutcome => "Police outcome",
        EventKind::FeedbackOutcome => "Outcome feedback",
        EventKind::ContextPreCrisis => "Pre-crisis context",
    }
}

/// Codings for the coded facts of the view, one CodeableConcept each.
fn reason_codes(view: &CrisisEvent) -> Vec<Value> {
    let details = &view.details;
    let mut concepts = Vec::new();
    if let Some(disposition) = details.disposition {
        concepts.push(json!({ "coding": [coding(mapping::CONCORDAT_DISPOSITION, disposition.as_str())] }));
    }
    if let Some(status) = details.legal_status {
        let mut codings = vec![coding(mapping::CONCORDAT_LEGAL_STATUS, mapping::legal_status_wire(status))];
        if let Some(code) = mapping::legal_status_england_code(status) {
            codings.push(coding(mapping::LEGAL_STATUS_ENGLAND, code));
        }
        concepts.push(json!({ "coding": codings }));
    }
    if let Some(place) = &details.place_of_safety {
        let code = mapping::place_of_safety_wire(place.kind);
        concepts.push(json!({ "coding": [coding(mapping::CONCORDAT_PLACE_OF_SAFETY, code)] }));
    }
    if let Some(risk) = &view.risk {
        concepts.push(json!({ "coding": [coding(mapping::CONCORDAT_RISK_LEVEL, risk.level.as_str())] }));
        for factor in &risk.factors {
            let code = mapping::risk_factor_wire(*factor);
            concepts.push(json!({ "coding": [coding(mapping::CONCORDAT_RISK_FACTOR, code)] }));
        }
    }
    for code in &details.codes {
        concepts.push(json!({ "coding": [coding_value(code)] }));
    }
    concepts
}

/// Every field of the view as a readable line, in a fixed order.
fn lines(view: &CrisisEvent, cx: &RenderContext) -> Vec<String> {
    let details = &view.details;
    let mut lines = vec![format!("{} reported by {} at {}", kind_display(view.kind), cx.source_name, view.occurred_at)];
    if let Some(status) = details.legal_status {
        lines.push(format!("Legal status: {}", mapping::legal_status_wire(status)));
    }
    if let Some(place) = &details.place_of_safety {
        let mut line = format!("Place of safety: {}", mapping::place_of_safety_wire(place.kind));
        let named: Vec<&str> =
            place.name.as_deref().into_iter().chain(place.ods_code.as_ref().map(|code| code.as_str())).collect();
        if !named.is_empty() {
            line.push_str(&format!(" ({})", named.join(", ")));
        }
        lines.push(line);
    }
    if let Some(conveyance) = &details.conveyance {
        lines.push(format!("Conveyance: {}", json_name(&conveyance.mode)));
        if let Some(reason) = &conveyance.ambulance_not_used_reason {
            lines.push(format!("Ambulance not used: {}", json_name(reason)));
        }
    }
    if let Some(force) = details.force_used {
        lines.push(format!("Force used: {}", if force { "yes" } else { "no" }));
    }
    if let Some(action) = details.police_action_required {
        lines.push(format!("Police action required: {}", if action { "yes" } else { "no" }));
    }
    if let Some(decision) = &details.rcrp_decision {
        lines.push(format!("Right Care, Right Person decision: {}", json_name(decision)));
    }
    if let Some(disposition) = details.disposition {
        lines.push(format!("Outcome: {}", disposition.as_str()));
    }
    if let Some(referral) = &details.referral {
        let parts: Vec<String> = [
            referral.to_agency.as_ref().map(|agency| format!("to {agency}")),
            referral.service.as_ref().map(|service| format!("service {service}")),
            referral.urgency.as_ref().map(|urgency| format!("urgency {}", json_name(urgency))),
        ]
        .into_iter()
        .flatten()
        .collect();
        lines.push(format!("Referral: {}", if parts.is_empty() { "made".to_owned() } else { parts.join(", ") }));
    }
    if let Some(follow_up) = details.follow_up_at {
        lines.push(format!("Follow-up planned at {follow_up}"));
    }
    if let Some(outcome_of) = details.outcome_of {
        lines.push(format!("Outcome of event {outcome_of}"));
    }
    if let Some(location) = &details.location {
        let parts: Vec<String> = [
            location.place_type.as_ref().map(json_name),
            location.postcode_district.as_ref().map(|district| district.as_str().to_owned()),
            location.grid_ref.as_ref().map(|grid| grid.as_str().to_owned()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            lines.push(format!("Location: {}", parts.join(", ")));
        }
    }
    if let Some(risk) = &view.risk {
        let mut line = format!("Risk: {}", risk.level);
        if !risk.factors.is_empty() {
            let factors: Vec<&str> = risk.factors.iter().map(|factor| mapping::risk_factor_wire(*factor)).collect();
            line.push_str(&format!(" ({})", factors.join(", ")));
        }
        if let Some(scale) = &risk.source_scale {
            line.push_str(&format!("; graded {} in {}", scale.value, scale.scheme));
        }
        lines.push(line);
    }
    lines.push(format!("Consent: {}", view.consent.status.as_str()));
    if let Some(summary) = &details.summary {
        lines.push(format!("Summary: {summary}"));
    }
    if let Some(notes) = &details.notes {
        lines.push(format!("Notes: {notes}"));
    }
    lines
}

/// The snake_case wire name of a canonical enum, read from its serde form.
fn json_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => "other".to_owned(),
    }
}

fn communication(parts: &Parts<'_>, id: &str) -> Value {
    let view = parts.view;
    let mut resource = json!({
        "resourceType": "Communication",
        "id": id,
        "identifier": parts.identifiers,
        "status": "completed",
        "category": [{ "coding": [kind_coding(view.kind)] }],
        // The event's own time, in a structured element a receiving system files it by; when Concordat sent the
        // message is the Bundle's timestamp.
        "sent": view.occurred_at.to_rfc3339(),
        "sender": parts.sender,
        "recipient": [parts.recipient],
        "payload": lines(view, parts.cx).into_iter().map(|line| json!({ "contentString": line })).collect::<Vec<_>>(),
    });
    if let Some(object) = resource.as_object_mut() {
        if let Some(subject) = &parts.subject {
            object.insert("subject".to_owned(), subject.clone());
        }
        let reasons = reason_codes(view);
        if !reasons.is_empty() {
            object.insert("reasonCode".to_owned(), Value::Array(reasons));
        }
        if let Some(outcome_of) = view.details.outcome_of {
            let about =
                json!([{ "identifier": { "system": mapping::CONCORDAT_EVENT, "value": outcome_of.to_string() } }]);
            object.insert("about".to_owned(), about);
        }
    }
    resource
}

fn service_request(parts: &Parts<'_>, id: &str) -> Value {
    let view = parts.view;
    let referral = view.details.referral.as_ref();
    let mut resource = json!({
        "resourceType": "ServiceRequest",
        "id": id,
        "identifier": parts.identifiers,
        "status": "active",
        "intent": "order",
        "category": [{ "coding": [kind_coding(view.kind)] }],
        "subject": parts.required_subject(),
        "authoredOn": view.occurred_at.to_rfc3339(),
        "requester": parts.sender,
        "note": lines(view, parts.cx).into_iter().map(|line| json!({ "text": line })).collect::<Vec<_>>(),
    });
    if let Some(object) = resource.as_object_mut() {
        if let Some(service) = referral.and_then(|referral| referral.service.as_deref()) {
            object.insert("code".to_owned(), json!({ "coding": [coding(mapping::CONCORDAT_SERVICE, service)] }));
        }
        if let Some(urgency) = referral.and_then(|referral| referral.urgency) {
            let priority = match urgency {
                Urgency::Emergency => "stat",
                Urgency::Urgent => "urgent",
                Urgency::Routine => "routine",
            };
            object.insert("priority".to_owned(), json!(priority));
        }
        if let Some(agency) = referral.and_then(|referral| referral.to_agency.as_ref()) {
            let performer =
                json!([{ "identifier": { "system": mapping::CONCORDAT_AGENCY, "value": agency.as_str() } }]);
            object.insert("performer".to_owned(), performer);
        }
        let reasons = reason_codes(view);
        if !reasons.is_empty() {
            object.insert("reasonCode".to_owned(), Value::Array(reasons));
        }
    }
    resource
}

fn flag(parts: &Parts<'_>, id: &str) -> Value {
    let view = parts.view;
    let status = match &view.risk {
        Some(risk) if risk.level == RiskLevel::None => "inactive",
        _ => "active",
    };
    let mut codings = Vec::new();
    if let Some(risk) = &view.risk {
        codings.push(coding(mapping::CONCORDAT_RISK_LEVEL, risk.level.as_str()));
        for factor in &risk.factors {
            codings.push(coding(mapping::CONCORDAT_RISK_FACTOR, mapping::risk_factor_wire(*factor)));
        }
    }
    codings.extend(view.details.codes.iter().map(coding_value));
    // Flag has no note element: the summary and notes the view allows are its code's text.
    let text: Vec<&str> = view.details.summary.iter().chain(&view.details.notes).map(String::as_str).collect();
    let text = if text.is_empty() { "Risk flag".to_owned() } else { text.join("\n") };
    json!({
        "resourceType": "Flag",
        "id": id,
        "identifier": parts.identifiers,
        "status": status,
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety", "display": "Safety" }] }],
        "code": { "coding": codings, "text": text },
        "subject": parts.required_subject(),
        "period": { "start": view.occurred_at.to_rfc3339() },
        "author": parts.sender,
    })
}
