//! Which episode an event belongs to (DESIGN.md §3), and the relations its source earns by sending it.
//!
//! Never fuzzy: an event joins an episode only through an identifier it carries (the episode id or a
//! correlating ref) or an exact NHS-number match with an open episode. A false merge would show one
//! person's crisis to another person's responders.

use std::collections::BTreeSet;

use concordat_episode::{CrisisEvent, Disposition, EpisodeId, EventKind, Phase};
use concordat_policy::Relation;

/// The outcome of correlation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correlation {
    /// The event joins this existing episode.
    Join(EpisodeId),
    /// The event opens a new episode whose originator is its source.
    Open,
    /// The event's identifiers point at more than one episode. Merging would risk joining two people's
    /// crises, so the router dead-letters the event for a person to resolve.
    Conflict(Vec<EpisodeId>),
    /// Nothing correlates and the kind does not open an episode (a crisis plan before any crisis): the event
    /// is kept, unattached, as pre-crisis context and decided on its own.
    Unattached,
}

/// Chooses the episode for `event`, given the episodes its refs (and stated episode id) point at and the
/// open episode its NHS number matches, as the store found them.
pub fn correlate(event: &CrisisEvent, by_refs: &[EpisodeId], by_subject: Option<EpisodeId>) -> Correlation {
    let mut distinct: BTreeSet<EpisodeId> = by_refs.iter().copied().chain(event.episode.episode_id).collect();
    if distinct.len() > 1 {
        return Correlation::Conflict(distinct.into_iter().collect());
    }
    if let Some(episode) = distinct.pop_first() {
        return Correlation::Join(episode);
    }
    if let Some(episode) = by_subject {
        return Correlation::Join(episode);
    }
    if event.kind.opens_episode() { Correlation::Open } else { Correlation::Unattached }
}

/// The relations an event's source earns in its episode by sending it: always contributor; responder for a
/// during-crisis event; originator when the event opened the episode. The agency a referral names becomes a
/// responder too (returned separately, since it is not the source).
pub fn relations_earned(event: &CrisisEvent, opened: bool) -> BTreeSet<Relation> {
    let mut relations = BTreeSet::from([Relation::Contributor]);
    if event.kind.phase() == Phase::During {
        relations.insert(Relation::Responder);
    }
    if opened {
        relations.insert(Relation::Originator);
    }
    relations
}

/// Whether `event` concludes its episode: a discharge, or an assessment that ended in no further action.
/// Other outcomes (an admission, a referral to home treatment) leave the episode open for what follows;
/// the quiet period closes it in the end. A closed episode still takes events that carry its ids, and
/// agreements limited to open episodes stop applying to it.
pub fn concludes(event: &CrisisEvent) -> bool {
    match event.kind {
        EventKind::NhsDischarge => true,
        EventKind::NhsAssessmentOutcome => event.details.disposition == Some(Disposition::NoFurtherAction),
        _ => false,
    }
}
