//! Decisions: may this recipient see this event, under which agreements, and which fields. Then the
//! projection of the event onto what the decision permits.
//!
//! Both are pure functions of the policy, the event, the episode context and the recipient: no clock, no I/O.
//! The router stamps the decision's time and stores it; this module does neither.

use std::fmt;

use concordat_episode::{
    AgencyId, Coding, Conveyance, CrisisEvent, Details, EventId, Location, Name, PlaceOfSafety, Referral, Risk,
    SourceScale, Subject, derived_id,
};
use concordat_episode::{Consent, Sha256Hex};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::fields::{Field, FieldSet};
use crate::model::{Agency, Agreement, Conditions, EpisodeContext, Policy};

/// Why a delivery was denied. The router counts denials by this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// No agreement covers this sender, recipient and event kind.
    NoAgreement,
    /// An agreement covers the flow but needs consent the event does not record.
    ConsentRequired,
    /// An agreement covers the flow but needs a higher (or any) risk level.
    BelowRiskThreshold,
    /// An agreement covers the flow but the subject's age is outside its band, or unknown.
    AgeOutsideBand,
    /// An agreement covers the flow but not in the episode's current state.
    EpisodeState,
    /// The recipient is the event's own source.
    OwnEvent,
    /// The recipient is not a party to the policy.
    UnknownRecipient,
    /// The sender is not a party to the policy, so no agreement can cover its events.
    UnknownSource,
}

impl DenyReason {
    /// The wire name (a metric label).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoAgreement => "no_agreement",
            Self::ConsentRequired => "consent_required",
            Self::BelowRiskThreshold => "below_risk_threshold",
            Self::AgeOutsideBand => "age_outside_band",
            Self::EpisodeState => "episode_state",
            Self::OwnEvent => "own_event",
            Self::UnknownRecipient => "unknown_recipient",
            Self::UnknownSource => "unknown_source",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Permit or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// At least one agreement permits the delivery.
    Permit,
    /// None does, for this reason.
    Deny(DenyReason),
}

/// One agreement that permits a delivery, as the decision records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ground {
    /// The agreement's id.
    pub agreement: String,
    /// Its purpose.
    pub purpose: String,
    /// Its lawful basis as one readable line.
    pub lawful_basis: String,
}

/// The record of one decision. When several agreements permit a delivery, it records each of them and
/// shares the union of their allow-lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Deterministic: derived from the event id, the recipient and the policy version.
    pub decision_id: Uuid,
    /// The event decided on.
    pub event_id: EventId,
    /// The recipient.
    pub recipient: AgencyId,
    /// Permit or deny, with the reason.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The agreements that cover this sender, recipient and kind, whether or not their conditions held.
    pub agreements_considered: Vec<String>,
    /// The agreements that permit the delivery.
    pub permitted_by: Vec<Ground>,
    /// Fields present in the event that the recipient sees (the envelope's parts, then named fields' leaves).
    pub fields_shared: Vec<Field>,
    /// Fields present in the event that are withheld.
    pub fields_withheld: Vec<Field>,
    /// The SHA-256 of the policy file.
    pub policy_version: Sha256Hex,
    /// What [`project`] keeps.
    #[serde(skip)]
    allowed: FieldSet,
}

impl Decision {
    /// True when the delivery is permitted.
    pub fn is_permit(&self) -> bool {
        self.verdict == Verdict::Permit
    }

    /// The purposes of the permitting agreements, joined for a single line (empty on deny).
    pub fn purpose(&self) -> String {
        self.permitted_by.iter().map(|ground| ground.purpose.as_str()).collect::<Vec<_>>().join(" | ")
    }

    /// The lawful bases of the permitting agreements, joined for a single line (empty on deny).
    pub fn lawful_basis(&self) -> String {
        let mut lines: Vec<&str> = Vec::new();
        for ground in &self.permitted_by {
            if !lines.contains(&ground.lawful_basis.as_str()) {
                lines.push(&ground.lawful_basis);
            }
        }
        lines.join(" | ")
    }

    /// The fields [`project`] keeps: the envelope plus every permitting agreement's allow-list; nothing on deny.
    pub fn allowed_fields(&self) -> FieldSet {
        self.allowed
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.pointer())
    }
}

/// Why an agreement does not cover a delivery at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotCovered {
    Sender,
    RecipientAgency,
    RecipientKind,
    RecipientRelation,
    Kind,
}

/// What one agreement says about one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finding {
    NotCovered(NotCovered),
    Unmet(DenyReason),
    Permits,
}

/// Everything decide and explain need: a denial before any agreement is looked at, or a finding per
/// agreement (in policy order).
pub(crate) enum Evaluation {
    Early(DenyReason),
    Findings(Vec<Finding>),
}

pub(crate) fn evaluate(
    policy: &Policy,
    event: &CrisisEvent,
    context: &EpisodeContext,
    recipient: &AgencyId,
) -> Evaluation {
    if *recipient == event.source.agency {
        return Evaluation::Early(DenyReason::OwnEvent);
    }
    let Some(to) = policy.agency(recipient) else { return Evaluation::Early(DenyReason::UnknownRecipient) };
    let Some(from) = policy.agency(&event.source.agency) else { return Evaluation::Early(DenyReason::UnknownSource) };
    let findings = policy.agreements.iter().map(|agreement| finding(agreement, event, context, from, to)).collect();
    Evaluation::Findings(findings)
}

fn finding(
    agreement: &Agreement,
    event: &CrisisEvent,
    context: &EpisodeContext,
    from: &Agency,
    to: &Agency,
) -> Finding {
    if let Err(reason) = covers(agreement, event, context, from, to) {
        return Finding::NotCovered(reason);
    }
    match check(&agreement.conditions, event, context) {
        Ok(()) => Finding::Permits,
        Err(reason) => Finding::Unmet(reason),
    }
}

pub(crate) fn covers(
    agreement: &Agreement,
    event: &CrisisEvent,
    context: &EpisodeContext,
    from: &Agency,
    to: &Agency,
) -> Result<(), NotCovered> {
    if !agreement.covers_kind(event.kind) {
        return Err(NotCovered::Kind);
    }
    if !agreement.from.matches(from) {
        return Err(NotCovered::Sender);
    }
    if !agreement.to.agencies.is_empty() && !agreement.to.agencies.contains(&to.id) {
        return Err(NotCovered::RecipientAgency);
    }
    if !agreement.to.kinds.is_empty() && !agreement.to.kinds.contains(&to.kind) {
        return Err(NotCovered::RecipientKind);
    }
    if !agreement.to.relations.is_empty()
        && !agreement.to.relations.iter().any(|relation| context.recipient_relations.contains(relation))
    {
        return Err(NotCovered::RecipientRelation);
    }
    Ok(())
}

/// Checks a set of conditions. When an `any_of` fails, the reason is that of its first alternative.
pub(crate) fn check(conditions: &Conditions, event: &CrisisEvent, context: &EpisodeContext) -> Result<(), DenyReason> {
    if let Some(state) = conditions.episode_state
        && state != context.state
    {
        return Err(DenyReason::EpisodeState);
    }
    if let Some(statuses) = &conditions.consent
        && !statuses.contains(&event.consent.status)
    {
        return Err(DenyReason::ConsentRequired);
    }
    if let Some(threshold) = conditions.risk_at_least
        && event.risk.as_ref().is_none_or(|risk| risk.level < threshold)
    {
        return Err(DenyReason::BelowRiskThreshold);
    }
    if let Some(band) = conditions.age
        && event.subject_age().is_none_or(|age| !band.contains(age))
    {
        return Err(DenyReason::AgeOutsideBand);
    }
    if conditions.any_of.is_empty() {
        return Ok(());
    }
    let mut first_failure = None;
    for alternative in &conditions.any_of {
        match check(alternative, event, context) {
            Ok(()) => return Ok(()),
            Err(reason) => {
                first_failure.get_or_insert(reason);
            }
        }
    }
    Err(first_failure.unwrap_or(DenyReason::NoAgreement))
}

/// Decides whether `recipient` may see `event`, and which of its fields.
///
/// Default deny: a delivery is permitted only when an agreement covers the sender, the recipient (by agency,
/// kind and relation) and the event kind, and its conditions hold. A recipient never receives its own event.
/// When several agreements permit, the decision records them all and shares the union of their allow-lists.
/// A denial's reason is [`DenyReason::NoAgreement`] when no agreement covers the flow, else the unmet
/// condition of the first covering agreement in the file.
pub fn decide(policy: &Policy, event: &CrisisEvent, context: &EpisodeContext, recipient: &AgencyId) -> Decision {
    let evaluation = evaluate(policy, event, context, recipient);
    decision_from(policy, event, recipient, &evaluation)
}

pub(crate) fn decision_from(
    policy: &Policy,
    event: &CrisisEvent,
    recipient: &AgencyId,
    evaluation: &Evaluation,
) -> Decision {
    let mut considered = Vec::new();
    let mut permitted_by = Vec::new();
    let mut allowed = FieldSet::EMPTY;
    let mut first_unmet = None;
    let verdict = match evaluation {
        Evaluation::Early(reason) => Verdict::Deny(*reason),
        Evaluation::Findings(findings) => {
            for (agreement, finding) in policy.agreements.iter().zip(findings) {
                match finding {
                    Finding::NotCovered(_) => continue,
                    Finding::Unmet(reason) => {
                        first_unmet.get_or_insert(*reason);
                    }
                    Finding::Permits => {
                        allowed = allowed.union(agreement.covered);
                        permitted_by.push(Ground {
                            agreement: agreement.id.clone(),
                            purpose: agreement.purpose.clone(),
                            lawful_basis: agreement.basis_line.clone(),
                        });
                    }
                }
                considered.push(agreement.id.clone());
            }
            if permitted_by.is_empty() {
                Verdict::Deny(first_unmet.unwrap_or(DenyReason::NoAgreement))
            } else {
                allowed = allowed.union(FieldSet::envelope());
                Verdict::Permit
            }
        }
    };
    let present = present_fields(event);
    let shared = present.iter().filter(|field| allowed.contains(*field)).collect();
    let withheld = present.iter().filter(|field| !allowed.contains(*field)).collect();
    let event_id = event.event_id.to_string();
    Decision {
        decision_id: derived_id("decision", &[&event_id, recipient.as_str(), policy.version.as_str()]),
        event_id: event.event_id,
        recipient: recipient.clone(),
        verdict,
        agreements_considered: considered,
        permitted_by,
        fields_shared: shared,
        fields_withheld: withheld,
        policy_version: policy.version.clone(),
        allowed,
    }
}

/// The reported fields (see [`Field::is_reported`]) that the event holds.
pub fn present_fields(event: &CrisisEvent) -> FieldSet {
    use Field as F;
    let mut set = FieldSet::EMPTY;
    let mut mark = |present: bool, field: Field| {
        if present {
            set.insert(field);
        }
    };
    for field in
        [F::EventId, F::Kind, F::OccurredAt, F::RecordedAt, F::Source, F::Episode, F::ConsentStatus, F::Provenance]
    {
        mark(true, field);
    }
    let subject = &event.subject;
    mark(subject.nhs_number.is_some(), F::SubjectNhsNumber);
    mark(!subject.identifiers.is_empty(), F::SubjectIdentifiers);
    if let Some(name) = &subject.name {
        mark(name.given.is_some(), F::SubjectNameGiven);
        mark(name.family.is_some(), F::SubjectNameFamily);
    }
    mark(subject.birth_date.is_some(), F::SubjectBirthDate);
    mark(subject.gender.is_some(), F::SubjectGender);
    if let Some(coding) = &subject.ethnicity {
        mark(true, F::SubjectEthnicitySystem);
        mark(true, F::SubjectEthnicityCode);
        mark(coding.display.is_some(), F::SubjectEthnicityDisplay);
    }
    mark(subject.postcode_district.is_some(), F::SubjectPostcodeDistrict);
    if let Some(risk) = &event.risk {
        mark(true, F::RiskLevel);
        mark(!risk.factors.is_empty(), F::RiskFactors);
        mark(risk.source_scale.is_some(), F::RiskSourceScaleScheme);
        mark(risk.source_scale.is_some(), F::RiskSourceScaleValue);
    }
    mark(!event.consent.scope.is_empty(), F::ConsentScope);
    mark(event.consent.recorded_at.is_some(), F::ConsentRecordedAt);
    let details = &event.details;
    if let Some(location) = &details.location {
        mark(location.postcode_district.is_some(), F::DetailsLocationPostcodeDistrict);
        mark(location.grid_ref.is_some(), F::DetailsLocationGridRef);
        mark(location.place_type.is_some(), F::DetailsLocationPlaceType);
    }
    mark(details.legal_status.is_some(), F::DetailsLegalStatus);
    if let Some(place) = &details.place_of_safety {
        mark(true, F::DetailsPlaceOfSafetyKind);
        mark(place.name.is_some(), F::DetailsPlaceOfSafetyName);
        mark(place.ods_code.is_some(), F::DetailsPlaceOfSafetyOdsCode);
    }
    if let Some(conveyance) = &details.conveyance {
        mark(true, F::DetailsConveyanceMode);
        mark(conveyance.ambulance_not_used_reason.is_some(), F::DetailsConveyanceAmbulanceNotUsedReason);
    }
    mark(details.force_used.is_some(), F::DetailsForceUsed);
    mark(details.police_action_required.is_some(), F::DetailsPoliceActionRequired);
    mark(details.rcrp_decision.is_some(), F::DetailsRcrpDecision);
    mark(details.disposition.is_some(), F::DetailsDisposition);
    if let Some(referral) = &details.referral {
        mark(referral.to_agency.is_some(), F::DetailsReferralToAgency);
        mark(referral.service.is_some(), F::DetailsReferralService);
        mark(referral.urgency.is_some(), F::DetailsReferralUrgency);
    }
    mark(details.follow_up_at.is_some(), F::DetailsFollowUpAt);
    mark(details.outcome_of.is_some(), F::DetailsOutcomeOf);
    mark(details.summary.is_some(), F::DetailsSummary);
    mark(details.notes.is_some(), F::DetailsNotes);
    mark(!details.codes.is_empty(), F::DetailsCodes);
    set
}

/// The recipient's view of `event` under `decision`: the envelope plus the permitted fields, everything else
/// dropped. The view is itself a valid canonical event (loading refuses allow-lists that would break an
/// object's required fields). A denied decision projects to the envelope alone, which the router does not
/// deliver.
pub fn project(event: &CrisisEvent, decision: &Decision) -> CrisisEvent {
    use Field as F;
    let allowed = decision.allowed;
    let has = |field: Field| allowed.contains(field);

    let subject = &event.subject;
    let name = subject.name.as_ref().and_then(|name| {
        let projected = Name {
            given: keep(allowed, F::SubjectNameGiven, &name.given),
            family: keep(allowed, F::SubjectNameFamily, &name.family),
        };
        (projected.given.is_some() || projected.family.is_some()).then_some(projected)
    });
    let ethnicity = subject.ethnicity.as_ref().filter(|_| has(F::SubjectEthnicityCode)).map(|coding| Coding {
        system: coding.system.clone(),
        code: coding.code.clone(),
        display: keep(allowed, F::SubjectEthnicityDisplay, &coding.display),
    });
    let risk = event.risk.as_ref().filter(|_| has(F::RiskLevel)).map(|risk| Risk {
        level: risk.level,
        factors: keep_all(allowed, F::RiskFactors, &risk.factors),
        source_scale: risk
            .source_scale
            .as_ref()
            .filter(|_| has(F::RiskSourceScaleValue))
            .map(|scale| SourceScale { scheme: scale.scheme.clone(), value: scale.value.clone() }),
    });
    let details = &event.details;
    let location = details.location.as_ref().and_then(|location| {
        let projected = Location {
            postcode_district: keep(allowed, F::DetailsLocationPostcodeDistrict, &location.postcode_district),
            grid_ref: keep(allowed, F::DetailsLocationGridRef, &location.grid_ref),
            place_type: keep(allowed, F::DetailsLocationPlaceType, &location.place_type),
        };
        (projected != Location::default()).then_some(projected)
    });
    let place_of_safety =
        details.place_of_safety.as_ref().filter(|_| has(F::DetailsPlaceOfSafetyKind)).map(|place| PlaceOfSafety {
            kind: place.kind,
            name: keep(allowed, F::DetailsPlaceOfSafetyName, &place.name),
            ods_code: keep(allowed, F::DetailsPlaceOfSafetyOdsCode, &place.ods_code),
        });
    let conveyance =
        details.conveyance.as_ref().filter(|_| has(F::DetailsConveyanceMode)).map(|conveyance| Conveyance {
            mode: conveyance.mode,
            ambulance_not_used_reason: keep(
                allowed,
                F::DetailsConveyanceAmbulanceNotUsedReason,
                &conveyance.ambulance_not_used_reason,
            ),
        });
    let referral = details.referral.as_ref().and_then(|referral| {
        let projected = Referral {
            to_agency: keep(allowed, F::DetailsReferralToAgency, &referral.to_agency),
            service: keep(allowed, F::DetailsReferralService, &referral.service),
            urgency: keep(allowed, F::DetailsReferralUrgency, &referral.urgency),
        };
        (projected != Referral::default()).then_some(projected)
    });
    CrisisEvent {
        event_id: event.event_id,
        kind: event.kind,
        occurred_at: event.occurred_at,
        recorded_at: event.recorded_at,
        source: event.source.clone(),
        episode: event.episode.clone(),
        subject: Subject {
            nhs_number: keep(allowed, F::SubjectNhsNumber, &subject.nhs_number),
            identifiers: keep_all(allowed, F::SubjectIdentifiers, &subject.identifiers),
            name,
            birth_date: keep(allowed, F::SubjectBirthDate, &subject.birth_date),
            gender: keep(allowed, F::SubjectGender, &subject.gender),
            ethnicity,
            postcode_district: keep(allowed, F::SubjectPostcodeDistrict, &subject.postcode_district),
        },
        risk,
        consent: Consent {
            status: event.consent.status,
            scope: keep_all(allowed, F::ConsentScope, &event.consent.scope),
            recorded_at: keep(allowed, F::ConsentRecordedAt, &event.consent.recorded_at),
        },
        details: Details {
            location,
            legal_status: keep(allowed, F::DetailsLegalStatus, &details.legal_status),
            place_of_safety,
            conveyance,
            force_used: keep(allowed, F::DetailsForceUsed, &details.force_used),
            police_action_required: keep(allowed, F::DetailsPoliceActionRequired, &details.police_action_required),
            rcrp_decision: keep(allowed, F::DetailsRcrpDecision, &details.rcrp_decision),
            disposition: keep(allowed, F::DetailsDisposition, &details.disposition),
            referral,
            follow_up_at: keep(allowed, F::DetailsFollowUpAt, &details.follow_up_at),
            outcome_of: keep(allowed, F::DetailsOutcomeOf, &details.outcome_of),
            summary: keep(allowed, F::DetailsSummary, &details.summary),
            notes: keep(allowed, F::DetailsNotes, &details.notes),
            codes: keep_all(allowed, F::DetailsCodes, &details.codes),
        },
        provenance: event.provenance.clone(),
    }
}

fn keep<T: Clone>(allowed: FieldSet, field: Field, value: &Option<T>) -> Option<T> {
    if allowed.contains(field) { value.clone() } else { None }
}

fn keep_all<T: Clone>(allowed: FieldSet, field: Field, value: &[T]) -> Vec<T> {
    if allowed.contains(field) { value.to_vec() } else { Vec::new() }
}
