//! Loading a policy file: YAML, then the JSON Schema, then the meaning (known agencies, kinds, relations and
//! fields; complete lawful bases; sound allow-lists and conditions). Every problem found is reported, each
//! with the file, line and column and a plain explanation.
//!
//! Loading reads no file: the caller passes the text and the name to report. It is not where decisions are
//! made (`decide`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use concordat_episode::{AgencyId, AgencyKind, ConsentStatus, EventKind, OdsCode, RiskLevel, Sha256Hex};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::fields::{CANONICAL, Field, FieldSet};
use crate::lawful::{Article6, Article9, LawfulBasis, Schedule1, Schedule8};
use crate::model::{
    AgeBand, Agency, Agreement, Conditions, EpisodeState, FromParty, Policy, Relation, ToParty, kind_bit,
};
use crate::yaml::{self, Positions};

/// The sharing-policy schema, as published.
pub const SHARING_POLICY_SCHEMA: &str = include_str!("../../../schemas/sharing-policy.v1.json");

static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SHARING_POLICY_SCHEMA).map_err(|error| error.to_string())?;
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).map_err(|error| error.to_string())
});

/// One problem with a policy file, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {problem}", file.display())]
pub struct PolicyError {
    /// The file, as given to [`load`].
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub problem: PolicyProblem,
}

/// What is wrong with a policy file, in words an information-governance lead can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    /// The text is not YAML.
    #[error("not valid YAML: {message}")]
    Syntax {
        /// The parser's explanation.
        message: String,
    },
    /// The document breaks `schemas/sharing-policy.v1.json`.
    #[error("{pointer}: {message}")]
    Schema {
        /// Where, as a JSON Pointer into the document.
        pointer: String,
        /// The rule broken.
        message: String,
    },
    /// An agency id that is not declared under `agencies`.
    #[error("unknown agency `{agency}`; declare it under `agencies` first")]
    UnknownAgency {
        /// The id used.
        agency: String,
    },
    /// Not an agency kind.
    #[error("unknown agency kind `{kind}`; expected police, nhs, vcs, ambulance or local_authority")]
    UnknownAgencyKind {
        /// The kind used.
        kind: String,
    },
    /// Not a relation.
    #[error("unknown relation `{relation}`; expected originator, contributor or responder")]
    UnknownRelation {
        /// The relation used.
        relation: String,
    },
    /// Not an event kind of crisis-event.v1.
    #[error("unknown event kind `{kind}`; it is not in crisis-event.v1")]
    UnknownEventKind {
        /// The kind used.
        kind: String,
    },
    /// A JSON Pointer that names no field of the canonical event.
    #[error("field `{pointer}` is not in crisis-event.v1")]
    UnknownField {
        /// The pointer used.
        pointer: String,
    },
    /// The canonical schema has the field but this build cannot project it (the crates have drifted apart).
    #[error("field `{pointer}` is in crisis-event.v1 but this version of Concordat cannot share it")]
    UnprojectableField {
        /// The pointer used.
        pointer: String,
    },
    /// An always-shared envelope field named in an allow-list.
    #[error("field `{pointer}` is part of the envelope, which is always shared; remove it from the list")]
    EnvelopeField {
        /// The pointer used.
        pointer: String,
    },
    /// A pointer that would share sensitive fields by implication.
    #[error(
        "field `{pointer}` would share sensitive fields ({sensitive}) by implication; name each field the purpose needs"
    )]
    ImpliedSensitive {
        /// The pointer used.
        pointer: String,
        /// The sensitive fields inside it.
        sensitive: String,
    },
    /// A field whose enclosing object needs another field the list does not share.
    #[error("field `{pointer}` also needs `{required}` in the list: without it the shared event would not be valid")]
    IncompleteObject {
        /// The pointer used.
        pointer: String,
        /// The required field missing.
        required: String,
    },
    /// Two agencies with one id.
    #[error("agency `{agency}` is declared twice (first on line {first_line})")]
    DuplicateAgency {
        /// The id.
        agency: String,
        /// Where it was first declared.
        first_line: usize,
    },
    /// Two agreements with one id.
    #[error("agreement id `{agreement}` is used twice (first on line {first_line})")]
    DuplicateAgreement {
        /// The id.
        agreement: String,
        /// Where it was first used.
        first_line: usize,
    },
    /// A UK GDPR flow without an Art. 6 basis.
    #[error("no UK GDPR Art. 6(1) basis (`article6`); every UK GDPR flow needs one")]
    MissingArticle6,
    /// A UK GDPR flow without an Art. 9 condition.
    #[error(
        "no UK GDPR Art. 9(2) condition (`article9`); every Concordat flow carries mental-health data, which is special category"
    )]
    MissingArticle9,
    /// An Art. 9 condition that needs a Schedule 1 condition and has none.
    #[error("Art. 9(2)({article9}) needs a DPA 2018 Schedule 1 condition (`schedule1`): {expected}")]
    MissingSchedule1 {
        /// The Art. 9 letter.
        article9: &'static str,
        /// The conditions that would do.
        expected: String,
    },
    /// A Schedule 1 condition that does not go with the Art. 9 condition.
    #[error("Schedule 1 condition `{schedule1}` does not go with Art. 9(2)({article9}); expected {expected}")]
    WrongSchedule1 {
        /// The Art. 9 letter.
        article9: &'static str,
        /// The Schedule 1 condition given.
        schedule1: &'static str,
        /// The conditions that would do.
        expected: String,
    },
    /// A Schedule 1 condition with an Art. 9 condition that takes none.
    #[error("Art. 9(2)({article9}) takes no DPA 2018 Schedule 1 condition; remove `schedule1`")]
    UnneededSchedule1 {
        /// The Art. 9 letter.
        article9: &'static str,
    },
    /// Not a Schedule 1 condition this format knows.
    #[error("unknown DPA 2018 Schedule 1 condition `{condition}`; expected one of {expected}")]
    UnknownSchedule1 {
        /// The name used.
        condition: String,
        /// The names known.
        expected: String,
    },
    /// Not a Schedule 8 condition.
    #[error("unknown DPA 2018 Schedule 8 condition `{condition}`; expected para1 to para9")]
    UnknownSchedule8 {
        /// The name used.
        condition: String,
    },
    /// A Part 3 flow without its Schedule 8 condition.
    #[error("a dpa2018_part3 flow needs a DPA 2018 Schedule 8 condition (`schedule8`)")]
    MissingSchedule8,
    /// A key that belongs to the other regime.
    #[error("`{key}` does not apply under regime `{regime}`; {hint}")]
    WrongRegime {
        /// The key.
        key: &'static str,
        /// The regime declared.
        regime: &'static str,
        /// What to use instead.
        hint: &'static str,
    },
    /// Art. 6(1)(f) for a flow sent by a public authority.
    #[error(
        "Art. 6(1)(f) legitimate interests is not available to public authorities performing their tasks, and this flow's senders include one; use (e) public task or another basis"
    )]
    LegitimateInterestsForPublicAuthority,
    /// A consent-based basis without a consent condition.
    #[error(
        "the lawful basis rests on consent, so the agreement must require it: add `consent: [given]` to its conditions"
    )]
    ConsentBasisWithoutConsentCondition,
    /// A consent condition that admits refusal.
    #[error("a consent condition that admits `refused` does not require consent; remove `refused`")]
    ConsentConditionAdmitsRefused,
    /// An age band no age falls in.
    #[error("age band is empty: no age is at least {at_least} and under {under}")]
    EmptyAgeBand {
        /// Lower bound.
        at_least: u32,
        /// Upper bound.
        under: u32,
    },
    /// The document passed the schema but not the policy types (the two have drifted apart).
    #[error("does not match the policy format: {message}")]
    Format {
        /// The deserializer's category of error.
        message: String,
    },
}

/// Loads and checks a policy. `file` is only used in messages and kept on the policy; `text` is the file's
/// contents, whose SHA-256 becomes the policy version.
///
/// # Errors
/// Every problem found, in line order: YAML syntax (the first only, as parsing stops there), else every schema
/// violation, else every semantic problem.
pub fn load(file: &Path, text: &str) -> Result<Policy, Vec<PolicyError>> {
    let (value, positions) = yaml::parse(text).map_err(|error| {
        vec![PolicyError {
            file: file.to_owned(),
            line: error.position.line,
            column: error.position.column,
            problem: PolicyProblem::Syntax { message: error.message },
        }]
    })?;
    let mut report = Report { file: file.to_owned(), positions, errors: Vec::new() };
    check_schema(&value, &mut report);
    if !report.errors.is_empty() {
        return Err(report.finish());
    }
    let raw: RawPolicy = match serde_json::from_value(value) {
        Ok(raw) => raw,
        Err(error) => {
            report.push("", PolicyProblem::Format { message: error.to_string() });
            return Err(report.finish());
        }
    };
    let policy = build(file, text, raw, &mut report);
    if report.errors.is_empty() { Ok(policy) } else { Err(report.finish()) }
}

/// The problems as `concordat policy check` prints them: one per line, each `file:line:column: message`.
pub fn problems_report(errors: &[PolicyError]) -> String {
    let mut out = String::new();
    for error in errors {
        out.push_str(&error.to_string());
        out.push('\n');
    }
    let noun = if errors.len() == 1 { "problem" } else { "problems" };
    out.push_str(&format!("{} {noun} found\n", errors.len()));
    out
}

struct Report {
    file: PathBuf,
    positions: Positions,
    errors: Vec<PolicyError>,
}

impl Report {
    fn push(&mut self, pointer: &str, problem: PolicyProblem) {
        let position = self.positions.of(pointer);
        self.errors.push(PolicyError {
            file: self.file.clone(),
            line: position.line,
            column: position.column,
            problem,
        });
    }

    fn line(&self, pointer: &str) -> usize {
        self.positions.of(pointer).line
    }

    fn finish(mut self) -> Vec<PolicyError> {
        // Stable: problems on one line keep the order they were found in.
        self.errors.sort_by_key(|error| (error.line, error.column));
        self.errors
    }
}

fn check_schema(value: &Value, report: &mut Report) {
    let validator = match &*VALIDATOR {
        Ok(validator) => validator,
        Err(message) => {
            report
                .push("", PolicyProblem::Format { message: format!("the policy schema does not compile: {message}") });
            return;
        }
    };
    for error in validator.iter_errors(value) {
        let mut pointer = error.instance_path().to_string();
        // Point an unexpected key at its own line rather than at the object holding it.
        if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } = error.kind()
            && let Some(first) = unexpected.first()
        {
            pointer = format!("{pointer}/{first}");
        }
        let shown = if error.instance_path().to_string().is_empty() {
            "/".to_owned()
        } else {
            error.instance_path().to_string()
        };
        report.push(&pointer, PolicyProblem::Schema { pointer: shown, message: error.to_string() });
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[allow(dead_code)]
    format: String,
    id: String,
    title: String,
    area: String,
    description: Option<String>,
    effective_from: Option<String>,
    review_by: Option<String>,
    agencies: Vec<RawAgency>,
    agreements: Vec<RawAgreement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgency {
    id: String,
    kind: String,
    name: String,
    ods_code: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values with the pointer of each.
    fn items(&self, pointer: &str) -> Vec<(String, String)> {
        match self {
            Self::One(value) => vec![(pointer.to_owned(), value.clone())],
            Self::Many(values) => {
                values.iter().enumerate().map(|(index, value)| (format!("{pointer}/{index}"), value.clone())).collect()
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParty {
    agency: Option<OneOrMany>,
    kind: Option<OneOrMany>,
    relation: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLawfulBasis {
    regime: String,
    article6: Option<String>,
    article9: Option<String>,
    schedule1: Option<String>,
    schedule8: Option<String>,
    #[serde(default)]
    statute: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditions {
    consent: Option<Vec<String>>,
    risk_at_least: Option<String>,
    age: Option<RawAge>,
    episode_state: Option<String>,
    any_of: Option<Vec<RawConditions>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAge {
    under: Option<u32>,
    at_least: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgreement {
    id: String,
    title: String,
    description: Option<String>,
    from: RawParty,
    to: RawParty,
    kinds: Vec<String>,
    purpose: String,
    lawful_basis: RawLawfulBasis,
    conditions: Option<RawConditions>,
    fields: Vec<String>,
}

/// Parses a wire name through the type's own serde form, so names stay those of the canonical schema.
fn wire<T: DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(Value::String(text.to_owned())).ok()
}

fn build(file: &Path, text: &str, raw: RawPolicy, report: &mut Report) -> Policy {
    let agencies = build_agencies(&raw.agencies, report);
    let mut first_lines: HashMap<&str, usize> = HashMap::new();
    let mut agreements = Vec::new();
    for (index, agreement) in raw.agreements.iter().enumerate() {
        let pointer = format!("/agreements/{index}");
        let line = report.line(&pointer);
        if let Some(first_line) = first_lines.get(agreement.id.as_str()) {
            let problem =
                PolicyProblem::DuplicateAgreement { agreement: agreement.id.clone(), first_line: *first_line };
            report.push(&format!("{pointer}/id"), problem);
        } else {
            first_lines.insert(&agreement.id, line);
        }
        if let Some(built) = build_agreement(agreement, &pointer, line, &agencies, report) {
            agreements.push(built);
        }
    }
    Policy {
        file: file.to_owned(),
        id: raw.id,
        title: raw.title,
        area: raw.area,
        description: raw.description,
        effective_from: raw.effective_from,
        review_by: raw.review_by,
        agencies,
        agreements,
        version: Sha256Hex::digest(text.as_bytes()),
    }
}

fn build_agencies(raw: &[RawAgency], report: &mut Report) -> Vec<Agency> {
    let mut agencies: Vec<Agency> = Vec::new();
    let mut first_lines: HashMap<&str, usize> = HashMap::new();
    for (index, agency) in raw.iter().enumerate() {
        let pointer = format!("/agencies/{index}");
        // The schema has already checked the id pattern, kind and ODS code; these only fail if it drifts.
        let (Ok(id), Some(kind)) = (AgencyId::new(&agency.id), wire::<AgencyKind>(&agency.kind)) else {
            report.push(&pointer, PolicyProblem::Format { message: "agency id or kind".to_owned() });
            continue;
        };
        if let Some(first_line) = first_lines.get(agency.id.as_str()) {
            let problem = PolicyProblem::DuplicateAgency { agency: agency.id.clone(), first_line: *first_line };
            report.push(&format!("{pointer}/id"), problem);
            continue;
        }
        first_lines.insert(&agency.id, report.line(&pointer));
        let ods_code = agency.ods_code.as_ref().and_then(|code| OdsCode::new(code.clone()).ok());
        agencies.push(Agency {
            id,
            kind,
            name: agency.name.clone(),
            ods_code,
            description: agency.description.clone(),
        });
    }
    agencies
}

fn build_agreement(
    raw: &RawAgreement,
    pointer: &str,
    line: usize,
    agencies: &[Agency],
    report: &mut Report,
) -> Option<Agreement> {
    let errors_before = report.errors.len();
    let from = FromParty {
        agencies: party_agencies(raw.from.agency.as_ref(), &format!("{pointer}/from/agency"), agencies, report),
        kinds: party_kinds(raw.from.kind.as_ref(), &format!("{pointer}/from/kind"), report),
    };
    if raw.from.relation.is_some() {
        // The schema forbids this key already; kept so that a schema change cannot silently widen a flow.
        report.push(
            &format!("{pointer}/from/relation"),
            PolicyProblem::Format { message: "`from` takes no relation".to_owned() },
        );
    }
    let mut relations = Vec::new();
    if let Some(values) = &raw.to.relation {
        for (item, value) in values.items(&format!("{pointer}/to/relation")) {
            match Relation::parse(&value) {
                Some(relation) => relations.push(relation),
                None => report.push(&item, PolicyProblem::UnknownRelation { relation: value }),
            }
        }
    }
    let to = ToParty {
        agencies: party_agencies(raw.to.agency.as_ref(), &format!("{pointer}/to/agency"), agencies, report),
        kinds: party_kinds(raw.to.kind.as_ref(), &format!("{pointer}/to/kind"), report),
        relations,
    };
    let mut kinds = Vec::new();
    let mut kind_mask = 0;
    for (index, text) in raw.kinds.iter().enumerate() {
        match text.parse::<EventKind>() {
            Ok(kind) => {
                kinds.push(kind);
                kind_mask |= kind_bit(kind);
            }
            Err(_) => {
                report.push(&format!("{pointer}/kinds/{index}"), PolicyProblem::UnknownEventKind { kind: text.clone() })
            }
        }
    }
    let lawful_basis = build_lawful_basis(&raw.lawful_basis, &format!("{pointer}/lawful_basis"), report);
    let conditions = match &raw.conditions {
        Some(conditions) => build_conditions(conditions, &format!("{pointer}/conditions"), report),
        None => Conditions::default(),
    };
    if let Some(basis) = &lawful_basis {
        check_basis_against_flow(basis, &from, agencies, &conditions, pointer, report);
    }
    if conditions.consent.as_ref().is_some_and(|list| list.contains(&ConsentStatus::Refused)) {
        report.push(&format!("{pointer}/conditions/consent"), PolicyProblem::ConsentConditionAdmitsRefused);
    }
    let fields = build_fields(&raw.fields, &format!("{pointer}/fields"), report);
    if report.errors.len() > errors_before {
        return None;
    }
    let lawful_basis = lawful_basis?;
    let basis_line = lawful_basis.to_string();
    Some(Agreement {
        id: raw.id.clone(),
        title: raw.title.clone(),
        description: raw.description.clone(),
        from,
        to,
        kinds,
        purpose: raw.purpose.clone(),
        lawful_basis,
        conditions,
        covered: FieldSet::covering(&fields),
        fields,
        line,
        basis_line,
        kind_mask,
    })
}

fn party_agencies(
    values: Option<&OneOrMany>,
    pointer: &str,
    agencies: &[Agency],
    report: &mut Report,
) -> Vec<AgencyId> {
    let mut ids = Vec::new();
    for (item, value) in values.map(|values| values.items(pointer)).unwrap_or_default() {
        match agencies.iter().find(|agency| agency.id.as_str() == value) {
            Some(agency) => ids.push(agency.id.clone()),
            None => report.push(&item, PolicyProblem::UnknownAgency { agency: value }),
        }
    }
    ids
}

fn party_kinds(values: Option<&OneOrMany>, pointer: &str, report: &mut Report) -> Vec<AgencyKind> {
    let mut kinds = Vec::new();
    for (item, value) in values.map(|values| values.items(pointer)).unwrap_or_default() {
        match wire::<AgencyKind>(&value) {
            Some(kind) => kinds.push(kind),
            None => report.push(&item, PolicyProblem::UnknownAgencyKind { kind: value }),
        }
    }
    kinds
}

fn build_lawful_basis(raw: &RawLawfulBasis, pointer: &str, report: &mut Report) -> Option<LawfulBasis> {
    let statute = raw.statute.clone();
    match raw.regime.as_str() {
        "uk_gdpr" => {
            if raw.schedule8.is_some() {
                let hint = "Schedule 8 conditions belong to dpa2018_part3 flows";
                let problem = PolicyProblem::WrongRegime { key: "schedule8", regime: "uk_gdpr", hint };
                report.push(&format!("{pointer}/schedule8"), problem);
            }
            let article6 = raw.article6.as_deref().and_then(Article6::parse);
            if article6.is_none() {
                report.push(pointer, PolicyProblem::MissingArticle6);
            }
            let article9 = raw.article9.as_deref().and_then(Article9::parse);
            if article9.is_none() {
                report.push(pointer, PolicyProblem::MissingArticle9);
            }
            let schedule1 = match raw.schedule1.as_deref() {
                None => None,
                Some(text) => match Schedule1::parse(text) {
                    Some(condition) => Some(condition),
                    None => {
                        let expected = Schedule1::ALL.iter().map(|(_, name)| *name).collect::<Vec<_>>().join(", ");
                        let problem = PolicyProblem::UnknownSchedule1 { condition: text.to_owned(), expected };
                        report.push(&format!("{pointer}/schedule1"), problem);
                        return None;
                    }
                },
            };
            let article9 = article9?;
            check_schedule1(article9, schedule1, pointer, report);
            Some(LawfulBasis::UkGdpr { article6: article6?, article9, schedule1, statute })
        }
        _ => {
            let hint = "Part 3 flows name a `schedule8` condition";
            for (key, present) in [
                ("article6", raw.article6.is_some()),
                ("article9", raw.article9.is_some()),
                ("schedule1", raw.schedule1.is_some()),
            ] {
                if present {
                    let problem = PolicyProblem::WrongRegime { key, regime: "dpa2018_part3", hint };
                    report.push(&format!("{pointer}/{key}"), problem);
                }
            }
            let Some(text) = raw.schedule8.as_deref() else {
                report.push(pointer, PolicyProblem::MissingSchedule8);
                return None;
            };
            let Some(schedule8) = Schedule8::parse(text) else {
                report.push(
                    &format!("{pointer}/schedule8"),
                    PolicyProblem::UnknownSchedule8 { condition: text.to_owned() },
                );
                return None;
            };
            Some(LawfulBasis::Dpa2018Part3 { schedule8, statute })
        }
    }
}

fn check_schedule1(article9: Article9, schedule1: Option<Schedule1>, pointer: &str, report: &mut Report) {
    let letter = article9.letter();
    match (article9.schedule1_needed(), schedule1) {
        (None, Some(_)) => {
            report.push(&format!("{pointer}/schedule1"), PolicyProblem::UnneededSchedule1 { article9: letter })
        }
        (Some(expected), None) => {
            let expected = expected.iter().map(|condition| condition.name()).collect::<Vec<_>>().join(" or ");
            report.push(&format!("{pointer}/article9"), PolicyProblem::MissingSchedule1 { article9: letter, expected });
        }
        (Some(expected), Some(given)) if !expected.contains(&given) => {
            let names = expected.iter().map(|condition| condition.name()).collect::<Vec<_>>().join(" or ");
            let problem = PolicyProblem::WrongSchedule1 { article9: letter, schedule1: given.name(), expected: names };
            report.push(&format!("{pointer}/schedule1"), problem);
        }
        _ => {}
    }
}

fn check_basis_against_flow(
    basis: &LawfulBasis,
    from: &FromParty,
    agencies: &[Agency],
    conditions: &Conditions,
    pointer: &str,
    report: &mut Report,
) {
    if let LawfulBasis::UkGdpr { article6: Article6::F, .. } = basis {
        // UK GDPR Art. 6(1), final sentence: (f) does not apply to public authorities performing their tasks.
        // Every kind but the voluntary sector is a public authority.
        let public = |kind: AgencyKind| kind != AgencyKind::Vcs;
        let senders_public = agencies.iter().filter(|agency| from.matches(agency)).any(|agency| public(agency.kind))
            || from.kinds.iter().any(|kind| public(*kind));
        if senders_public {
            report.push(
                &format!("{pointer}/lawful_basis/article6"),
                PolicyProblem::LegitimateInterestsForPublicAuthority,
            );
        }
    }
    if basis.rests_on_consent() && conditions.consent.as_deref() != Some(&[ConsentStatus::Given]) {
        report.push(&format!("{pointer}/lawful_basis"), PolicyProblem::ConsentBasisWithoutConsentCondition);
    }
}

fn build_conditions(raw: &RawConditions, pointer: &str, report: &mut Report) -> Conditions {
    // The schema has checked every enumerated value; `wire` only fails if the two drift apart.
    let consent =
        raw.consent.as_ref().map(|list| list.iter().filter_map(|status| wire::<ConsentStatus>(status)).collect());
    let risk_at_least = raw.risk_at_least.as_deref().and_then(wire::<RiskLevel>);
    let episode_state = raw.episode_state.as_deref().and_then(wire::<EpisodeState>);
    let age = raw.age.as_ref().map(|age| AgeBand { under: age.under, at_least: age.at_least });
    if let Some(AgeBand { under: Some(under), at_least: Some(at_least) }) = age
        && at_least >= under
    {
        report.push(&format!("{pointer}/age"), PolicyProblem::EmptyAgeBand { at_least, under });
    }
    let any_of = raw
        .any_of
        .as_ref()
        .map(|alternatives| {
            alternatives
                .iter()
                .enumerate()
                .map(|(index, alternative)| build_conditions(alternative, &format!("{pointer}/any_of/{index}"), report))
                .collect()
        })
        .unwrap_or_default();
    Conditions { consent, risk_at_least, age, episode_state, any_of }
}

fn build_fields(raw: &[String], pointer: &str, report: &mut Report) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut item_pointers = Vec::new();
    for (index, text) in raw.iter().enumerate() {
        let item = format!("{pointer}/{index}");
        if !CANONICAL.0.contains_key(text) {
            report.push(&item, PolicyProblem::UnknownField { pointer: text.clone() });
            continue;
        }
        let Some(field) = Field::from_pointer(text) else {
            report.push(&item, PolicyProblem::UnprojectableField { pointer: text.clone() });
            continue;
        };
        if field.is_envelope() {
            report.push(&item, PolicyProblem::EnvelopeField { pointer: text.clone() });
            continue;
        }
        if !field.is_sensitive() {
            let sensitive: Vec<&str> = Field::ALL
                .iter()
                .filter(|inner| inner.is_sensitive() && inner.parent().is_some_and(|parent| !parent.is_sensitive()))
                .filter(|inner| inner.is_within(field))
                .map(|inner| inner.pointer())
                .collect();
            if !sensitive.is_empty() {
                report.push(
                    &item,
                    PolicyProblem::ImpliedSensitive { pointer: text.clone(), sensitive: sensitive.join(", ") },
                );
                continue;
            }
        }
        fields.push(field);
        item_pointers.push(item);
    }
    // Every object the list reaches into must keep the fields the canonical schema requires of it, or the
    // projected view would not be a valid event.
    let covered = FieldSet::covering(&fields).union(FieldSet::envelope());
    for (field, item) in fields.iter().zip(&item_pointers) {
        let mut current = Some(*field);
        while let Some(inner) = current {
            let Some(parent) = inner.parent() else { break };
            for sibling in Field::ALL.iter().filter(|sibling| sibling.parent() == Some(parent)) {
                let required = CANONICAL.0.get(sibling.pointer()).is_some_and(|schema| schema.required);
                if required && !covered.contains(*sibling) {
                    let problem = PolicyProblem::IncompleteObject {
                        pointer: field.pointer().to_owned(),
                        required: sibling.pointer().to_owned(),
                    };
                    report.push(item, problem);
                }
            }
            current = Some(parent);
        }
    }
    fields
}
