//! A loaded policy: the parties, the agreements and the version hash. Immutable once built; only
//! [`crate::load`] builds one.
//!
//! This module holds data and the small predicates on it; deciding is in `decide`, checking in `load`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use concordat_episode::{AgencyId, AgencyKind, ConsentStatus, EventKind, OdsCode, RiskLevel, Sha256Hex};
use serde::{Deserialize, Serialize};

use crate::fields::{Field, FieldSet};
use crate::lawful::LawfulBasis;

/// A loaded, checked sharing policy. It cannot be changed after loading, and carries the SHA-256 of the
/// file it came from, which every decision records.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) file: PathBuf,
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) area: String,
    pub(crate) description: Option<String>,
    pub(crate) effective_from: Option<String>,
    pub(crate) review_by: Option<String>,
    pub(crate) agencies: Vec<Agency>,
    pub(crate) agreements: Vec<Agreement>,
    pub(crate) version: Sha256Hex,
}

impl Policy {
    /// The file the policy was loaded from (as given to [`crate::load`]).
    pub fn file(&self) -> &Path {
        &self.file
    }
    /// The agreement document's id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Its title.
    pub fn title(&self) -> &str {
        &self.title
    }
    /// The area it covers.
    pub fn area(&self) -> &str {
        &self.area
    }
    /// Its introduction, when it has one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// The date it takes effect (`YYYY-MM-DD`), when stated.
    pub fn effective_from(&self) -> Option<&str> {
        self.effective_from.as_deref()
    }
    /// The date by which it must be reviewed (`YYYY-MM-DD`), when stated.
    pub fn review_by(&self) -> Option<&str> {
        self.review_by.as_deref()
    }
    /// The parties, in file order.
    pub fn agencies(&self) -> &[Agency] {
        &self.agencies
    }
    /// The agreements, in file order.
    pub fn agreements(&self) -> &[Agreement] {
        &self.agreements
    }
    /// The SHA-256 of the policy file's bytes.
    pub fn version(&self) -> &Sha256Hex {
        &self.version
    }
    /// A party by id.
    pub fn agency(&self, id: &AgencyId) -> Option<&Agency> {
        self.agencies.iter().find(|agency| &agency.id == id)
    }
    /// An agreement by id.
    pub fn agreement(&self, id: &str) -> Option<&Agreement> {
        self.agreements.iter().find(|agreement| agreement.id == id)
    }
    /// One line for `concordat policy check`: file, id, counts and version.
    pub fn summary(&self) -> String {
        format!(
            "{}: ok: policy `{}` ({}), {} agencies, {} agreements, version sha256:{}",
            self.file.display(),
            self.id,
            self.area,
            self.agencies.len(),
            self.agreements.len(),
            self.version.as_str()
        )
    }
}

/// A party to the agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agency {
    /// Its Concordat id.
    pub id: AgencyId,
    /// What kind of agency it is.
    pub kind: AgencyKind,
    /// Its name.
    pub name: String,
    /// Its ODS code, for NHS bodies.
    pub ods_code: Option<OdsCode>,
    /// What it does in the crisis pathway, for the rendered agreement.
    pub description: Option<String>,
}

/// A recipient's relation to an episode, computed by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// Its event opened the episode.
    Originator,
    /// It has sent an event in the episode.
    Contributor,
    /// It has sent a during-crisis event in the episode, or an event named it as `details.referral.to_agency`.
    Responder,
}

impl Relation {
    /// Every relation.
    pub const ALL: &'static [Relation] = &[Self::Originator, Self::Contributor, Self::Responder];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Originator => "originator",
            Self::Contributor => "contributor",
            Self::Responder => "responder",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|relation| relation.as_str() == text)
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an episode is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeState {
    /// The crisis is in progress.
    Open,
    /// The episode has been closed.
    Closed,
}

impl EpisodeState {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// What the router knows about the episode and the recipient, given to [`crate::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeContext {
    /// Whether the episode is open.
    pub state: EpisodeState,
    /// The recipient's relations to the episode (possibly none).
    pub recipient_relations: BTreeSet<Relation>,
}

/// Which senders an agreement covers: every non-empty list must contain the sender.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FromParty {
    /// Sender agency ids; empty means any.
    pub agencies: Vec<AgencyId>,
    /// Sender kinds; empty means any.
    pub kinds: Vec<AgencyKind>,
}

impl FromParty {
    pub(crate) fn matches(&self, agency: &Agency) -> bool {
        (self.agencies.is_empty() || self.agencies.contains(&agency.id))
            && (self.kinds.is_empty() || self.kinds.contains(&agency.kind))
    }
}

/// Which recipients an agreement covers: every non-empty list must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToParty {
    /// Recipient agency ids; empty means any.
    pub agencies: Vec<AgencyId>,
    /// Recipient kinds; empty means any.
    pub kinds: Vec<AgencyKind>,
    /// The recipient must hold at least one of these relations; empty means no relation is needed.
    pub relations: Vec<Relation>,
}

/// A band of ages in whole years on the day of the event: `at_least <= age < under`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgeBand {
    /// Upper bound, exclusive.
    pub under: Option<u32>,
    /// Lower bound, inclusive.
    pub at_least: Option<u32>,
}

impl AgeBand {
    pub(crate) fn contains(self, age: u32) -> bool {
        self.under.is_none_or(|under| age < under) && self.at_least.is_none_or(|at_least| age >= at_least)
    }
}

impl fmt::Display for AgeBand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.at_least, self.under) {
            (Some(low), Some(high)) => write!(f, "aged at least {low} and under {high}"),
            (Some(low), None) => write!(f, "aged {low} or over"),
            (None, Some(high)) => write!(f, "aged under {high}"),
            (None, None) => f.write_str("of any age"),
        }
    }
}

/// Conditions on an event and its episode; all that are set must hold. Empty means none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conditions {
    /// The consent status must be one of these.
    pub consent: Option<Vec<ConsentStatus>>,
    /// The risk level must be at or above this; an event with no risk never meets it.
    pub risk_at_least: Option<RiskLevel>,
    /// The subject's age on the event day must fall in this band; an unknown birth date never meets it.
    pub age: Option<AgeBand>,
    /// The episode must be in this state.
    pub episode_state: Option<EpisodeState>,
    /// At least one of these must hold (when non-empty).
    pub any_of: Vec<Conditions>,
}

impl Conditions {
    /// True when there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.consent.is_none()
            && self.risk_at_least.is_none()
            && self.age.is_none()
            && self.episode_state.is_none()
            && self.any_of.is_empty()
    }
}

/// One permitted flow: from senders to recipients, for event kinds, for a purpose, under a lawful basis, on
/// conditions, sharing the envelope plus the named fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// Its id, unique in the policy.
    pub id: String,
    /// A short heading.
    pub title: String,
    /// A longer explanation, when given.
    pub description: Option<String>,
    /// Which senders.
    pub from: FromParty,
    /// Which recipients.
    pub to: ToParty,
    /// Which event kinds.
    pub kinds: Vec<EventKind>,
    /// Why the data is shared.
    pub purpose: String,
    /// Under what law.
    pub lawful_basis: LawfulBasis,
    /// When.
    pub conditions: Conditions,
    /// The fields named in the allow-list, in file order.
    pub fields: Vec<Field>,
    /// The line of the agreement in the policy file.
    pub line: usize,
    pub(crate) covered: FieldSet,
    pub(crate) basis_line: String,
    pub(crate) kind_mask: u32,
}

impl Agreement {
    /// True when the agreement requires consent outright: a consent condition at its top level, not inside an
    /// `any_of` alternative.
    pub fn requires_consent(&self) -> bool {
        self.conditions.consent.is_some()
    }

    /// The fields this agreement shares beyond the envelope: those named and everything inside them.
    pub fn covered_fields(&self) -> FieldSet {
        self.covered
    }

    /// True when the agreement covers this event kind.
    pub fn covers_kind(&self, kind: EventKind) -> bool {
        self.kind_mask & kind_bit(kind) != 0
    }
}

pub(crate) const fn kind_bit(kind: EventKind) -> u32 {
    1u32 << (kind as u32)
}
