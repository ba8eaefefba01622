//! `explain`: a plain-text account of one decision, for an information-governance lead or a subject access
//! request. It lists every agreement in the policy with whether it covered the delivery and, if not, why
//! not; then every field present in the event with whether it was shared and by which agreement or rule.
//!
//! The text quotes the event's kind, agencies and consent status (all in the always-shared envelope) and
//! never any personal data: conditions on risk and age are reported as met or not, without the value.

use std::fmt::Write as _;

use concordat_episode::{AgencyId, CrisisEvent};

use crate::decide::{DenyReason, Evaluation, Finding, NotCovered, Verdict, decision_from, evaluate};
use crate::fields::{Field, FieldSet};
use crate::model::{Agreement, EpisodeContext, Policy};
use crate::render::{describe_conditions, describe_from, describe_to};

/// Explains the decision [`crate::decide`] makes for this delivery, in plain text.
pub fn explain(policy: &Policy, event: &CrisisEvent, context: &EpisodeContext, recipient: &AgencyId) -> String {
    let evaluation = evaluate(policy, event, context, recipient);
    let decision = decision_from(policy, event, recipient, &evaluation);
    let mut out = String::new();
    let verdict = match decision.verdict {
        Verdict::Permit => "PERMIT".to_owned(),
        Verdict::Deny(reason) => format!("DENY ({})", reason_text(reason)),
    };
    let relations: Vec<&str> = context.recipient_relations.iter().map(|relation| relation.as_str()).collect();
    let _ = writeln!(out, "Decision {}: {verdict}", decision.decision_id);
    let _ = writeln!(out, "  event      {} ({}) from {}", event.event_id, event.kind, event.source.agency);
    let _ = writeln!(out, "  recipient  {recipient}");
    let _ = writeln!(
        out,
        "  episode    {}; recipient's relations: {}",
        context.state.as_str(),
        if relations.is_empty() { "none".to_owned() } else { relations.join(", ") }
    );
    let _ = writeln!(out, "  consent    {}", event.consent.status.as_str());
    let _ = writeln!(out, "  policy     {} version sha256:{}", policy.id(), policy.version().as_str());
    out.push('\n');

    let _ = writeln!(out, "Agreements:");
    match &evaluation {
        Evaluation::Early(reason) => {
            let _ = writeln!(out, "  none considered: {}", reason_text(*reason));
        }
        Evaluation::Findings(findings) => {
            if findings.is_empty() {
                let _ = writeln!(out, "  the policy has no agreements (default deny)");
            }
            for (agreement, finding) in policy.agreements().iter().zip(findings) {
                let _ = writeln!(
                    out,
                    "  {} (line {}): {}",
                    agreement.id,
                    agreement.line,
                    finding_text(agreement, *finding, event)
                );
                if *finding == Finding::Permits {
                    let _ = writeln!(out, "      purpose: {}", agreement.purpose);
                    let _ = writeln!(out, "      lawful basis: {}", agreement.basis_line);
                }
            }
        }
    }
    out.push('\n');

    let _ = writeln!(out, "Fields:");
    let permitting: Vec<&Agreement> = match &evaluation {
        Evaluation::Findings(findings) => policy
            .agreements()
            .iter()
            .zip(findings)
            .filter(|(_, finding)| **finding == Finding::Permits)
            .map(|(agreement, _)| agreement)
            .collect(),
        Evaluation::Early(_) => Vec::new(),
    };
    let shared: FieldSet = decision.fields_shared.iter().fold(FieldSet::EMPTY, |mut set, field| {
        set.insert(*field);
        set
    });
    for field in decision.fields_shared.iter().chain(&decision.fields_withheld) {
        let line = if shared.contains(*field) {
            shared_text(*field, &permitting)
        } else {
            withheld_text(*field, &decision.verdict)
        };
        let _ = writeln!(out, "  {:<45} {line}", field.pointer());
    }
    out
}

fn reason_text(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::NoAgreement => "no agreement covers this sender, recipient and event kind",
        DenyReason::ConsentRequired => "an agreement covers the flow but needs consent the event does not record",
        DenyReason::BelowRiskThreshold => "an agreement covers the flow but the risk level is below its threshold",
        DenyReason::AgeOutsideBand => {
            "an agreement covers the flow but the subject's age is outside its band or unknown"
        }
        DenyReason::EpisodeState => "an agreement covers the flow but not in the episode's current state",
        DenyReason::OwnEvent => "the recipient sent this event",
        DenyReason::UnknownRecipient => "the recipient is not a party to this policy",
        DenyReason::UnknownSource => "the sender is not a party to this policy",
    }
}

fn finding_text(agreement: &Agreement, finding: Finding, event: &CrisisEvent) -> String {
    match finding {
        Finding::Permits => "PERMITS".to_owned(),
        Finding::NotCovered(NotCovered::Kind) => {
            let kinds: Vec<&str> = agreement.kinds.iter().map(|kind| kind.as_str()).collect();
            format!("not applicable: it covers {}, not {}", kinds.join(", "), event.kind)
        }
        Finding::NotCovered(NotCovered::Sender) => {
            format!("not applicable: the sender is not {}", describe_from(&agreement.from))
        }
        Finding::NotCovered(
            NotCovered::RecipientAgency | NotCovered::RecipientKind | NotCovered::RecipientRelation,
        ) => {
            format!("not applicable: the recipient is not {}", describe_to(&agreement.to))
        }
        Finding::Unmet(reason) => {
            format!(
                "covers the flow, but its conditions are not met ({}); it requires {}",
                unmet_text(reason, event),
                describe_conditions(&agreement.conditions)
            )
        }
    }
}

fn unmet_text(reason: DenyReason, event: &CrisisEvent) -> String {
    match reason {
        DenyReason::ConsentRequired => format!("consent is {}", event.consent.status.as_str()),
        DenyReason::BelowRiskThreshold if event.risk.is_none() => "no risk level is recorded".to_owned(),
        DenyReason::BelowRiskThreshold => "the risk level is below the threshold".to_owned(),
        DenyReason::AgeOutsideBand if event.subject.birth_date.is_none() => "the birth date is unknown".to_owned(),
        DenyReason::AgeOutsideBand => "the subject's age is outside the band".to_owned(),
        DenyReason::EpisodeState => "the episode is in the other state".to_owned(),
        other => reason_text(other).to_owned(),
    }
}

fn shared_text(field: Field, permitting: &[&Agreement]) -> String {
    if field.is_envelope() {
        return "shared: always (envelope)".to_owned();
    }
    let naming: Vec<String> = permitting
        .iter()
        .filter_map(|agreement| {
            let named = agreement.fields.iter().find(|named| field.is_within(**named))?;
            Some(format!("{} (names {})", agreement.id, named.pointer()))
        })
        .collect();
    format!("shared: {}", naming.join(", "))
}

fn withheld_text(field: Field, verdict: &Verdict) -> String {
    match verdict {
        Verdict::Deny(_) => "withheld: the delivery is denied".to_owned(),
        Verdict::Permit if field.is_sensitive() => {
            "withheld: sensitive, and no permitting agreement names it".to_owned()
        }
        Verdict::Permit => "withheld: no permitting agreement names it (default deny)".to_owned(),
    }
}
