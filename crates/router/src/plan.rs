//! The router's functional core: from one correlated event and a snapshot of its episode to the decisions and
//! rendered deliveries the shell writes in one transaction (the store audits each write).
//!
//! It reads no clock and does no I/O: `now` comes in, and every id it makes is derived from the ids it was
//! given, so a redelivered event plans the same deliveries with the same message ids.

use std::collections::{BTreeMap, BTreeSet};

use concordat_episode::{
    AgencyId, AgencyKind, CrisisEvent, Details, EpisodeId, EpisodeLink, EventId, EventKind, Identifier, NonEmptyString,
    OdsCode, Phase, RenderContext, RenderError, Timestamp, derived_id,
};
use concordat_formats::Format;
use concordat_policy::{Decision, EpisodeContext, EpisodeState, Policy, Relation, decide, project};
use uuid::Uuid;

/// What the router knows of every agency: its kind, display name, ODS code and the format it receives.
#[derive(Debug, Clone)]
pub struct AgencyDirectory {
    entries: BTreeMap<AgencyId, Party>,
}

/// One agency of the directory.
#[derive(Debug, Clone)]
struct Party {
    kind: AgencyKind,
    name: String,
    ods_code: Option<OdsCode>,
    format: Format,
}

impl AgencyDirectory {
    /// The policy's parties, each receiving `formats[id]` or the default format for its kind.
    pub fn new(policy: &Policy, formats: &BTreeMap<AgencyId, Format>) -> Self {
        let entries = policy
            .agencies()
            .iter()
            .map(|agency| {
                let format = formats.get(&agency.id).copied().unwrap_or(Format::default_for(agency.kind));
                let party =
                    Party { kind: agency.kind, name: agency.name.clone(), ods_code: agency.ods_code.clone(), format };
                (agency.id.clone(), party)
            })
            .collect();
        Self { entries }
    }

    fn name(&self, id: &AgencyId) -> String {
        self.entries.get(id).map_or_else(|| id.to_string(), |party| party.name.clone())
    }

    fn ods_code(&self, id: &AgencyId) -> Option<OdsCode> {
        self.entries.get(id).and_then(|party| party.ods_code.clone())
    }
}

/// The episode as the store knows it once this event's correlation is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeSnapshot {
    /// The episode.
    pub id: EpisodeId,
    /// Open or closed.
    pub state: EpisodeState,
    /// Every member and its relations, this event's source included.
    pub members: BTreeMap<AgencyId, BTreeSet<Relation>>,
    /// Every correlating identifier of the episode, its own id among them.
    pub refs: Vec<Identifier>,
    /// Whether this event opened it.
    pub opened_now: bool,
}

impl EpisodeSnapshot {
    fn context_for(&self, recipient: &AgencyId) -> EpisodeContext {
        EpisodeContext {
            state: self.state,
            recipient_relations: self.members.get(recipient).cloned().unwrap_or_default(),
        }
    }

    /// The agency whose event opened the episode.
    pub fn originator(&self) -> Option<&AgencyId> {
        self.members.iter().find(|(_, relations)| relations.contains(&Relation::Originator)).map(|(id, _)| id)
    }
}

/// One message to an agency's inbox, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The AMQP message id: derived from the event and the recipient, so a redelivery dedupes downstream.
    pub message_id: Uuid,
    /// The decision that permitted it.
    pub decision_id: Uuid,
    /// The event whose view it carries.
    pub event_id: EventId,
    /// That event's kind.
    pub kind: EventKind,
    /// The recipient agency (the routing key on `concordat.deliver`).
    pub recipient: AgencyId,
    /// The episode, when there is one.
    pub episode_id: Option<EpisodeId>,
    /// The native media type.
    pub content_type: &'static str,
    /// The native message.
    pub body: Vec<u8>,
}

/// A permitted view that the recipient's adapter could not render. The shell dead-letters the whole event with
/// the reason and commits nothing, so nothing is lost and the event can be replayed once the cause is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFailure {
    /// The decision that permitted it.
    pub decision_id: Uuid,
    /// The recipient.
    pub recipient: AgencyId,
    /// Why not.
    pub error: RenderError,
}

/// Everything one event leads to.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Events the router made (outcome feedback, pre-crisis context), to be stored with the episode.
    pub derived: Vec<CrisisEvent>,
    /// Every decision, permit and deny.
    pub decisions: Vec<Decision>,
    /// Rendered messages for the outbox.
    pub deliveries: Vec<Delivery>,
    /// Permitted views that could not be rendered.
    pub render_failures: Vec<RenderFailure>,
    /// Whether outcome feedback reached the episode's originator.
    pub feedback_to_originator: bool,
}

/// Plans what `event` leads to.
///
/// `event` carries its episode id already (when it has an episode). `episode` is the snapshot after this
/// event's correlation, `None` for an unattached event. `prior` holds earlier unattached events about the
/// same subject (crisis plans, risk flags, VCS contacts), offered as pre-crisis context when this event
/// opened the episode. Every agency of the policy except the source is decided on.
pub fn plan(
    policy: &Policy,
    directory: &AgencyDirectory,
    event: &CrisisEvent,
    episode: Option<&EpisodeSnapshot>,
    prior: &[CrisisEvent],
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    share(policy, directory, event, episode, now, &mut plan);

    if let Some(episode) = episode {
        if episode.opened_now {
            for earlier in prior.iter().filter(|earlier| earlier.kind.phase() == Phase::Before) {
                let context = pre_crisis_context(earlier, episode);
                derive(policy, directory, context, Some(episode), now, &mut plan);
            }
        }
        if event.kind.is_outcome() {
            let feedback = feedback_outcome(event, episode);
            let before = plan.deliveries.len();
            derive(policy, directory, feedback, Some(episode), now, &mut plan);
            let originator = episode.originator();
            plan.feedback_to_originator |=
                plan.deliveries[before..].iter().any(|delivery| Some(&delivery.recipient) == originator);
        }
    }
    plan
}

fn derive(
    policy: &Policy,
    directory: &AgencyDirectory,
    made: CrisisEvent,
    episode: Option<&EpisodeSnapshot>,
    now: Timestamp,
    plan: &mut Plan,
) {
    share(policy, directory, &made, episode, now, plan);
    plan.derived.push(made);
}

/// Decides `event` for every agency but its source, and renders each permitted view.
fn share(
    policy: &Policy,
    directory: &AgencyDirectory,
    event: &CrisisEvent,
    episode: Option<&EpisodeSnapshot>,
    now: Timestamp,
    plan: &mut Plan,
) {
    for (recipient, Party { kind, format, .. }) in &directory.entries {
        if recipient == &event.source.agency {
            continue;
        }
        let context = episode.map_or_else(
            || EpisodeContext { state: EpisodeState::Open, recipient_relations: BTreeSet::new() },
            |episode| episode.context_for(recipient),
        );
        let decision = decide(policy, event, &context, recipient);
        if decision.is_permit() {
            let view = project(event, &decision);
            let cx = RenderContext {
                recipient: recipient.clone(),
                recipient_kind: *kind,
                source_name: directory.name(&event.source.agency),
                source_ods: directory.ods_code(&event.source.agency),
                recipient_ods: directory.ods_code(recipient),
                episode_id: episode.map(|episode| episode.id),
                episode_refs: episode.map_or_else(|| event.episode.refs.clone(), |episode| episode.refs.clone()),
                decision_id: decision.decision_id,
                purpose: decision.purpose(),
                lawful_basis: decision.lawful_basis(),
                sent_at: now,
            };
            match format.render(&view, &cx) {
                Ok(rendered) => {
                    let message_id = derived_id("delivery", &[&event.event_id.to_string(), recipient.as_str()]);
                    plan.deliveries.push(Delivery {
                        message_id,
                        decision_id: decision.decision_id,
                        event_id: event.event_id,
                        kind: event.kind,
                        recipient: recipient.clone(),
                        episode_id: episode.map(|episode| episode.id),
                        content_type: rendered.content_type,
                        body: rendered.body,
                    });
                }
                Err(error) => {
                    plan.render_failures.push(RenderFailure {
                        decision_id: decision.decision_id,
                        recipient: recipient.clone(),
                        error,
                    });
                }
            }
        }
        plan.decisions.push(decision);
    }
}

fn link(episode: &EpisodeSnapshot) -> EpisodeLink {
    EpisodeLink { episode_id: Some(episode.id), refs: episode.refs.clone() }
}

fn suffixed(record_ref: &NonEmptyString, suffix: &str) -> NonEmptyString {
    NonEmptyString::new(format!("{record_ref}#{suffix}")).unwrap_or_else(|_| record_ref.clone())
}

/// `feedback.outcome` from an outcome event: the disposition and what follows, never the clinical detail
/// (notes, codes, summary), whatever an agreement might allow, because feedback exists to close the loop,
/// not to share a record.
fn feedback_outcome(outcome: &CrisisEvent, episode: &EpisodeSnapshot) -> CrisisEvent {
    let mut source = outcome.source.clone();
    source.record_ref = suffixed(&source.record_ref, "feedback");
    let details = Details {
        disposition: outcome.details.disposition,
        legal_status: outcome.details.legal_status,
        referral: outcome.details.referral.clone(),
        follow_up_at: outcome.details.follow_up_at,
        place_of_safety: outcome.details.place_of_safety.clone(),
        outcome_of: Some(outcome.event_id),
        ..Details::default()
    };
    CrisisEvent {
        event_id: EventId(derived_id("feedback", &[&outcome.event_id.to_string()])),
        kind: EventKind::FeedbackOutcome,
        occurred_at: outcome.occurred_at,
        recorded_at: outcome.recorded_at,
        source,
        episode: link(episode),
        subject: outcome.subject.clone(),
        risk: None,
        consent: outcome.consent.clone(),
        details,
        provenance: router_provenance(outcome),
    }
}

/// `context.pre_crisis` from an earlier event about the subject, for the responders of a new episode.
fn pre_crisis_context(earlier: &CrisisEvent, episode: &EpisodeSnapshot) -> CrisisEvent {
    let mut source = earlier.source.clone();
    source.record_ref = suffixed(&source.record_ref, "context");
    CrisisEvent {
        event_id: EventId(derived_id("context", &[&earlier.event_id.to_string(), &episode.id.to_string()])),
        kind: EventKind::ContextPreCrisis,
        occurred_at: earlier.occurred_at,
        recorded_at: earlier.recorded_at,
        source,
        episode: link(episode),
        subject: earlier.subject.clone(),
        risk: earlier.risk.clone(),
        consent: earlier.consent.clone(),
        details: earlier.details.clone(),
        provenance: router_provenance(earlier),
    }
}

fn router_provenance(from: &CrisisEvent) -> concordat_episode::Provenance {
    let mut provenance = from.provenance.clone();
    provenance.adapter = NonEmptyString::new("router").unwrap_or_else(|_| provenance.adapter.clone());
    provenance.adapter_version =
        NonEmptyString::new(env!("CARGO_PKG_VERSION")).unwrap_or_else(|_| provenance.adapter_version.clone());
    provenance
}
