//! Concordat's sharing policy: information sharing agreements written as data (YAML), loaded and checked
//! ([`load`]), applied to each delivery ([`decide`], [`project`]), explained ([`explain`]) and rendered as the
//! document partners sign ([`render_markdown`], [`render_html`]).
//!
//! The policy is default deny. An [`Agreement`] permits one flow: from senders (agency or kind) to recipients
//! (agency, kind and/or relation to the episode), for event kinds, for a purpose, under a lawful basis, on
//! conditions (consent, risk threshold, age band, episode state, `any_of` alternatives), sharing a field
//! allow-list of JSON Pointers into the canonical event. The envelope ([`Field::is_envelope`]: event id, kind,
//! times, source, episode, consent status, provenance) is always shared; sensitive fields (the subject, summary,
//! notes, codes) only when named themselves.
//!
//! This crate is pure: it reads no files, clock or environment, and knows nothing of AMQP, SQL or HTTP. The
//! caller reads the policy file; the router stamps and stores decisions.

mod decide;
mod explain;
mod fields;
mod lawful;
mod load;
mod model;
mod render;
mod yaml;

pub use decide::{Decision, DenyReason, Ground, Verdict, decide, present_fields, project};
pub use explain::explain;
pub use fields::{Field, FieldSet};
pub use lawful::{Article6, Article9, LawfulBasis, Regime, Schedule1, Schedule8};
pub use load::{PolicyError, PolicyProblem, SHARING_POLICY_SCHEMA, load, problems_report};
pub use model::{
    AgeBand, Agency, Agreement, Conditions, EpisodeContext, EpisodeState, FromParty, Policy, Relation, ToParty,
};
pub use render::{html_escape, kind_description, render_html, render_markdown};
