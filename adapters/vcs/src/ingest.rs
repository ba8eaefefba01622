//! `vcs-contact.v1` (JSON or CSV) to canonical events.
//!
//! Both bodies take one path: a CSV row becomes the JSON object it stands for (cells trimmed, blank cells
//! left out, list cells split on `;`), every contact is checked against the published schema, then the rules
//! a schema cannot state are checked and each contact is mapped. Every problem in the payload is reported,
//! at a JSON Pointer or a CSV row and column, never quoting a value. This module reads no clock: times come
//! from the payload and the context.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use concordat_episode::{
    AgencyId, Coding, Consent, ConsentStatus as CanonicalConsent, CrisisEvent, Details, EPISODE_SYSTEM, EpisodeLink,
    EventId, EventKind, Gender as CanonicalGender, Identifier, IngestContext, IngestError, InputLocation, InputProblem,
    Name, NhsNumber, NonEmptyString, PostcodeDistrict, Provenance, Referral, Risk, Sha256Hex, Source, Subject,
    Timestamp,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::format::{
    Concern, ConsentStatus, Contact, ContactType, FIELDS, FORMAT_CSV, FORMAT_JSON, Gender, LIST_FIELDS,
    REQUIRED_FIELDS, Service,
};
use crate::mapping::{self, CONCERN_SYSTEM, SERVICE_SYSTEM, VcsConfig};
use crate::schema;
use crate::table::{RecordError, Records};
use crate::uk_time::{self, LocalTimeError};

/// The media types the adapter reads.
pub const CONTENT_TYPES: &[&str] = &["application/json", "text/csv"];

const ADAPTER: &str = "vcs";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) fn ingest(payload: &[u8], cx: &IngestContext, config: &VcsConfig) -> Result<Vec<CrisisEvent>, IngestError> {
    // The context's type is already bare and lower case; strip again so a caller that forgot cannot get a 415.
    let media_type = cx.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let run = Run { cx, config, format: FORMAT_JSON };
    // Excel writes a byte-order mark at the start of "CSV UTF-8" files, and some JSON exporters do too.
    let body = payload.strip_prefix(UTF8_BOM).unwrap_or(payload);
    match media_type.as_str() {
        "application/json" => run.json(body),
        "text/csv" => Run { format: FORMAT_CSV, ..run }.csv(body),
        _ => Err(IngestError::UnsupportedContentType {
            content_type: media_type,
            expected: CONTENT_TYPES.iter().map(|&name| name.to_owned()).collect(),
        }),
    }
}

/// One ingest call's fixed inputs.
struct Run<'a> {
    cx: &'a IngestContext,
    config: &'a VcsConfig,
    format: &'static str,
}

/// Where a contact sits in the payload, so that problems can name the field the sender must fix.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// The whole JSON body is one contact.
    JsonSingle,
    /// The JSON body is an array; this is its element at the index.
    JsonItem(usize),
    /// A CSV row (1-based, the header is row 1).
    CsvRow(usize),
}

impl Origin {
    fn problem(self, field: &str, detail: impl Into<String>) -> InputProblem {
        let location = match self {
            Self::JsonSingle => InputLocation::Pointer(format!("/{field}")),
            Self::JsonItem(index) => InputLocation::Pointer(format!("/{index}/{field}")),
            Self::CsvRow(row) => InputLocation::Cell { row, column: field.to_owned() },
        };
        InputProblem { location, detail: detail.into() }
    }

    /// How a message names this contact ("row 3", "/2").
    fn name(self) -> String {
        match self {
            Self::JsonSingle => "/".to_owned(),
            Self::JsonItem(index) => format!("/{index}"),
            Self::CsvRow(row) => format!("row {row}"),
        }
    }
}

impl Run<'_> {
    fn json(&self, body: &[u8]) -> Result<Vec<CrisisEvent>, IngestError> {
        // A key named twice is refused: which value counts would otherwise depend on the parser.
        let value: Value = concordat_episode::read_json(body).map_err(|error| IngestError::json_syntax(&error))?;
        let mut by_item: HashMap<Option<usize>, Vec<InputProblem>> = HashMap::new();
        let single = !value.is_array();
        for problem in schema::check(&value) {
            // In a single contact every problem is that contact's; in an array, `/2/...` is the third one's.
            let item = if single { None } else { item_of(&problem.pointer) };
            by_item.entry(item).or_default().push(InputProblem::at(problem.pointer, problem.detail));
        }
        let mut problems = by_item.remove(&None).unwrap_or_default();
        let mut checked = Vec::new();
        match &value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    match by_item.remove(&Some(index)) {
                        Some(item_problems) => problems.extend(item_problems),
                        None => checked.push((Origin::JsonItem(index), item)),
                    }
                }
            }
            contact if problems.is_empty() => checked.push((Origin::JsonSingle, contact)),
            _ => {}
        }
        self.map_all(checked, problems)
    }

    fn csv(&self, body: &[u8]) -> Result<Vec<CrisisEvent>, IngestError> {
        let mut records = Records::new(body);
        let header = match records.next() {
            Some(record) => record.map_err(|error| quote_problem(&error, &[]))?.1,
            None => return Err(IngestError::Invalid(vec![document("holds no header row")])),
        };
        let columns = header_columns(&header)?;
        let mut rows: Vec<(Origin, Value)> = Vec::new();
        let mut problems: Vec<InputProblem> = Vec::new();
        for (index, record) in records.enumerate() {
            // An unreadable record refuses the whole payload: nothing after it can be trusted.
            let (line, record) = record.map_err(|error| quote_problem(&error, &columns))?;
            // Row numbers count records as a spreadsheet shows them: a quoted cell with a line break is one row.
            let row = index + 2;
            if record.len() != columns.len() {
                let detail = format!("has {} cells but the header row has {}", record.len(), columns.len());
                problems.push(InputProblem { location: InputLocation::Row(row), detail });
                continue;
            }
            let mut object = Map::new();
            for (column, cell) in columns.iter().zip(record.iter()) {
                let text = std::str::from_utf8(cell).map_err(|_| not_utf8(line))?.trim();
                if text.is_empty() {
                    continue;
                }
                let value = if LIST_FIELDS.contains(&column.as_str()) {
                    let items = text.split(';').map(str::trim).filter(|item| !item.is_empty());
                    Value::Array(items.map(|item| Value::String(item.to_owned())).collect())
                } else {
                    Value::String(text.to_owned())
                };
                object.insert(column.clone(), value);
            }
            // Spreadsheets export trailing rows of empty cells; they hold no contact.
            if !object.is_empty() {
                rows.push((Origin::CsvRow(row), Value::Object(object)));
            }
        }
        if rows.is_empty() && problems.is_empty() {
            return Err(IngestError::Invalid(vec![document("holds no contacts, only a header row")]));
        }
        let mut checked = Vec::with_capacity(rows.len());
        for (origin, object) in &rows {
            let row_problems = schema::check(object);
            if row_problems.is_empty() {
                checked.push((*origin, object));
            }
            for problem in row_problems {
                let column = problem.pointer.trim_start_matches('/').split('/').next().unwrap_or_default();
                problems.push(origin.problem(column, problem.detail));
            }
        }
        self.map_all(checked, problems)
    }

    /// Maps contacts that passed the schema, adding every further problem to those already found.
    fn map_all(
        &self,
        contacts: Vec<(Origin, &Value)>,
        mut problems: Vec<InputProblem>,
    ) -> Result<Vec<CrisisEvent>, IngestError> {
        let mut events = Vec::with_capacity(contacts.len() * 2);
        let mut first_seen: HashMap<String, Origin> = HashMap::new();
        for (origin, value) in contacts {
            let contact =
                match Contact::deserialize(value) {
                    Ok(contact) => contact,
                    // The schema and the types describe the same shape; a gap between them is a bug, reported as such.
                    Err(_) => {
                        problems.push(origin.problem(
                            "",
                            "passes the schema but not the adapter's contact type (a bug: please report it)",
                        ));
                        continue;
                    }
                };
            if let Some(earlier) = first_seen.get(&contact.contact_id) {
                let detail = format!("repeats the contact_id of {}; each contact needs its own", earlier.name());
                problems.push(origin.problem("contact_id", detail));
                continue;
            }
            first_seen.insert(contact.contact_id.clone(), origin);
            // Each contact's events derive their ids from the contact's own fields in canonical form
            // (RFC 8785), so re-sending it reformatted, in another order or beside other contacts dedupes,
            // and a changed contact makes new events.
            let digest = concordat_episode::canonical_digest(value);
            match self.map_contact(&contact, origin, &digest) {
                Ok(mapped) => events.extend(mapped),
                Err(found) => problems.extend(found),
            }
        }
        if problems.is_empty() { Ok(events) } else { Err(IngestError::Invalid(problems)) }
    }

    /// One contact's events: `vcs.contact` or `vcs.follow_up`, and `vcs.referral` when it made a referral.
    fn map_contact(
        &self,
        contact: &Contact,
        origin: Origin,
        digest: &Sha256Hex,
    ) -> Result<Vec<CrisisEvent>, Vec<InputProblem>> {
        let agency = &self.cx.agency;
        let mut problems = Vec::new();
        let mut fail = |field: &str, detail: &str| problems.push(origin.problem(field, detail));

        if contact.organisation.as_deref().is_some_and(|organisation| organisation != agency.as_str()) {
            fail("organisation", "does not match the agency the payload was sent as");
        }
        let occurred_at = match instant(&contact.contact_date, &contact.contact_time) {
            Ok(at) => Some(at),
            Err(rule) => {
                fail("contact_time", rule);
                None
            }
        };
        let nhs_number = contact.nhs_number.as_deref().and_then(|text| match NhsNumber::parse_lenient(text) {
            Ok(number) => Some(number),
            Err(error) => {
                fail("nhs_number", &error.to_string());
                None
            }
        });
        let birth_date = contact.birth_date.as_deref().and_then(|text| {
            date(text).or_else(|| {
                fail("birth_date", "must be a real date written YYYY-MM-DD");
                None
            })
        });
        if let (Some(birth), Some(contact_day)) = (birth_date, date(&contact.contact_date))
            && birth > contact_day
        {
            fail("birth_date", "must not be after the contact date");
        }
        let postcode_district =
            contact.postcode_district.as_deref().and_then(|text| match PostcodeDistrict::new(text) {
                Ok(district) => Some(district),
                Err(error) => {
                    fail("postcode_district", &error.to_string());
                    None
                }
            });
        let follow_up_at = contact.follow_up_date.as_deref().and_then(|day| {
            let time = contact.follow_up_time.as_deref().unwrap_or("00:00");
            match instant(day, time) {
                Ok(at) => Some(at),
                Err(rule) => {
                    fail(if contact.follow_up_time.is_some() { "follow_up_time" } else { "follow_up_date" }, rule);
                    None
                }
            }
        });
        if let (Some(follow_up), Some(occurred)) = (follow_up_at, occurred_at)
            && follow_up.0 < occurred.0
        {
            fail("follow_up_date", "must not be before the contact");
        }
        let referral_to = contact.referral_to.as_deref().and_then(|id| match AgencyId::new(id) {
            Ok(id) if self.config.referral_agencies.is_empty() || self.config.referral_agencies.contains(&id) => {
                Some(id)
            }
            Ok(_) => {
                fail("referral_to", "is not an agency this service is configured to refer to");
                None
            }
            Err(error) => {
                fail("referral_to", &error.to_string());
                None
            }
        });
        if contact.referral_urgency.is_some() && contact.referral_to.is_none() && contact.referral_service.is_none() {
            fail("referral_urgency", "needs referral_to or referral_service (whom the referral was made to)");
        }
        if contact.follow_up_of.as_deref() == Some(contact.contact_id.as_str()) {
            fail("follow_up_of", "must name an earlier contact, not this one");
        }
        let episode_id = contact.episode_id.as_deref().and_then(|text| {
            NonEmptyString::new(text.to_ascii_lowercase()).ok().or_else(|| {
                fail("episode_id", "must not be empty");
                None
            })
        });
        let (Some(occurred_at), true) = (occurred_at, problems.is_empty()) else {
            return Err(problems);
        };

        let contact_system = NonEmptyString::new(mapping::contact_system(agency));
        let mut refs = Vec::new();
        for reference in std::iter::once(&contact.contact_id).chain(contact.follow_up_of.as_ref()) {
            if let (Ok(system), Ok(value)) = (contact_system.clone(), NonEmptyString::new(reference.clone())) {
                refs.push(Identifier { system, value });
            }
        }
        if let (Some(value), Ok(system)) = (episode_id, NonEmptyString::new(EPISODE_SYSTEM)) {
            refs.push(Identifier { system, value });
        }

        let subject = if contact.consent_status.allows_personal_fields() {
            subject(contact, agency, nhs_number, birth_date, postcode_district)
        } else {
            Subject::default()
        };
        let consent = Consent {
            status: consent_status(contact.consent_status),
            scope: contact.consent_scope.iter().map(|scope| scope.as_str().to_owned()).collect(),
            recorded_at: Some(occurred_at),
        };
        let mut factors: Vec<_> =
            contact.concerns.iter().filter_map(|concern| self.config.concern_factors.get(concern).copied()).collect();
        factors.sort();
        factors.dedup();
        let risk = Risk { level: contact.risk, factors, source_scale: None };
        let codes = codes(contact.service, &contact.concerns);

        let main_kind = match contact.contact_type {
            ContactType::Contact => EventKind::VcsContact,
            ContactType::FollowUp => EventKind::VcsFollowUp,
        };
        let main_details = Details {
            disposition: contact.outcome.map(mapping::disposition),
            follow_up_at,
            notes: contact.notes.clone(),
            codes: codes.clone(),
            ..Details::default()
        };
        let event = |kind: EventKind, record_ref: String, details: Details| -> Option<CrisisEvent> {
            let record_ref = NonEmptyString::new(record_ref).ok()?;
            Some(CrisisEvent {
                event_id: EventId::derive(agency, record_ref.as_str(), digest),
                kind,
                occurred_at,
                // A spreadsheet row has no separate entry time; services record the contact as it happens.
                recorded_at: occurred_at,
                source: Source {
                    agency: agency.clone(),
                    agency_kind: self.cx.agency_kind,
                    system: self.config.system.clone(),
                    record_ref,
                },
                episode: EpisodeLink { episode_id: None, refs: refs.clone() },
                subject: subject.clone(),
                risk: Some(risk.clone()),
                consent: consent.clone(),
                details,
                provenance: Provenance {
                    adapter: NonEmptyString::new(ADAPTER).ok()?,
                    adapter_version: NonEmptyString::new(env!("CARGO_PKG_VERSION")).ok()?,
                    format: NonEmptyString::new(self.format).ok()?,
                    payload_sha256: digest.clone(),
                    received_at: self.cx.received_at,
                },
            })
        };
        let mut events: Vec<CrisisEvent> =
            event(main_kind, contact.contact_id.clone(), main_details).into_iter().collect();
        if referral_to.is_some() || contact.referral_service.is_some() {
            let referral = Referral {
                to_agency: referral_to,
                service: contact.referral_service.map(|service| service.as_str().to_owned()),
                urgency: contact.referral_urgency.map(mapping::urgency),
            };
            let details =
                Details { referral: Some(referral), notes: contact.notes.clone(), codes, ..Details::default() };
            events.extend(event(EventKind::VcsReferral, format!("{}#referral", contact.contact_id), details));
        }
        Ok(events)
    }
}

fn subject(
    contact: &Contact,
    agency: &AgencyId,
    nhs_number: Option<NhsNumber>,
    birth_date: Option<NaiveDate>,
    postcode_district: Option<PostcodeDistrict>,
) -> Subject {
    let name = (contact.given_name.is_some() || contact.family_name.is_some()).then(|| Name {
        given: contact.given_name.as_deref().map(|given| given.trim().to_owned()),
        family: contact.family_name.as_deref().map(|family| family.trim().to_owned()),
    });
    // The NHS number has its own field; `identifiers` holds the service's own person reference only.
    let mut identifiers = Vec::new();
    if let Some(person) = &contact.person_ref
        && let (Ok(system), Ok(value)) =
            (NonEmptyString::new(mapping::person_system(agency)), NonEmptyString::new(person.clone()))
    {
        identifiers.push(Identifier { system, value });
    }
    Subject {
        nhs_number,
        identifiers,
        name,
        birth_date,
        gender: contact.gender.map(gender),
        ethnicity: None,
        postcode_district,
    }
}

fn codes(service: Service, concerns: &[Concern]) -> Vec<Coding> {
    let coding = |system: &str, code: &str, words: &str| {
        Some(Coding {
            system: NonEmptyString::new(system).ok()?,
            code: NonEmptyString::new(code).ok()?,
            display: Some(words.to_owned()),
        })
    };
    std::iter::once(coding(SERVICE_SYSTEM, service.as_str(), service.words()))
        .chain(concerns.iter().map(|concern| coding(CONCERN_SYSTEM, concern.as_str(), concern.words())))
        .flatten()
        .collect()
}

const fn consent_status(status: ConsentStatus) -> CanonicalConsent {
    match status {
        ConsentStatus::Given => CanonicalConsent::Given,
        ConsentStatus::Refused => CanonicalConsent::Refused,
        ConsentStatus::NotSought => CanonicalConsent::NotSought,
        ConsentStatus::LacksCapacity => CanonicalConsent::LacksCapacity,
    }
}

const fn gender(gender: Gender) -> CanonicalGender {
    match gender {
        Gender::Male => CanonicalGender::Male,
        Gender::Female => CanonicalGender::Female,
        Gender::Other => CanonicalGender::Other,
        Gender::Unknown => CanonicalGender::Unknown,
    }
}

fn date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// A date and a wall-clock time (UK local unless it carries an offset) as an instant.
fn instant(day: &str, time: &str) -> Result<Timestamp, &'static str> {
    const MALFORMED: &str = "must be a 24-hour time HH:MM, optionally with seconds and a UTC offset";
    let day = date(day).ok_or("must be a real date written YYYY-MM-DD")?;
    let split = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let (clock, offset) = (time.get(..split).unwrap_or_default(), time.get(split..).unwrap_or_default());
    let format = if clock.len() == 5 { "%H:%M" } else { "%H:%M:%S" };
    let clock = NaiveTime::parse_from_str(clock, format).map_err(|_| MALFORMED)?;
    let local = day.and_time(clock);
    let instant: DateTime<FixedOffset> = if offset.is_empty() {
        uk_time::resolve(local).map_err(|error| match error {
            LocalTimeError::Skipped => {
                "does not exist in UK time on that date (the clocks went forward from 01:00 to 02:00)"
            }
            LocalTimeError::Repeated => {
                "happened twice on that date (the clocks went back from 02:00 to 01:00): add the offset, +01:00 for the first time or Z for the second"
            }
            LocalTimeError::OutOfRange => "is out of range",
        })?
    } else {
        let offset = parse_offset(offset).ok_or(MALFORMED)?;
        offset.from_local_datetime(&local).single().ok_or("is out of range")?
    };
    Ok(Timestamp(instant))
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    if text == "Z" {
        return FixedOffset::east_opt(0);
    }
    let sign = match text.get(..1)? {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let hours: i32 = text.get(1..3)?.parse().ok()?;
    let minutes: i32 = text.get(4..6)?.parse().ok()?;
    (text.get(3..4)? == ":" && text.len() == 6).then_some(())?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// Which top-level array element a pointer falls in (`/2/nhs_number` → 2); `None` for the document itself
/// or a single contact.
fn item_of(pointer: &str) -> Option<usize> {
    pointer.strip_prefix('/')?.split('/').next()?.parse().ok()
}

fn header_columns(header: &[Vec<u8>]) -> Result<Vec<String>, IngestError> {
    let mut columns = Vec::with_capacity(header.len());
    let mut problems = Vec::new();
    for (index, cell) in header.iter().enumerate() {
        let name = std::str::from_utf8(cell).map_err(|_| not_utf8(1))?.trim().to_ascii_lowercase();
        let problem = |detail: &str| InputProblem::cell(1, name.clone(), detail);
        if name.is_empty() {
            let detail = "has no name; every column needs one of the documented header names";
            problems.push(InputProblem::cell(1, format!("#{}", index + 1), detail));
        } else if !FIELDS.contains(&name.as_str()) {
            problems.push(problem("unknown column (see the column list in the adapter's README)"));
        } else if columns.contains(&name) {
            problems.push(problem("appears twice in the header row"));
        }
        columns.push(name);
    }
    for required in REQUIRED_FIELDS {
        if !columns.iter().any(|column| column == required) {
            problems.push(InputProblem::cell(1, *required, "required column is missing from the header row"));
        }
    }
    if problems.is_empty() { Ok(columns) } else { Err(IngestError::Invalid(problems)) }
}

fn document(detail: &str) -> InputProblem {
    InputProblem { location: InputLocation::Document, detail: detail.to_owned() }
}

fn not_utf8(line: usize) -> IngestError {
    let reason = "text is not UTF-8 (save the sheet as \"CSV UTF-8\")".to_owned();
    IngestError::Syntax { format: "CSV", reason, line, column: 1 }
}

/// A record the strict reader refused, at its row and the cell's header name (or `#n` where there is none).
fn quote_problem(error: &RecordError, columns: &[String]) -> IngestError {
    let column = columns.get(error.cell).cloned().unwrap_or_else(|| format!("#{}", error.cell + 1));
    IngestError::Invalid(vec![InputProblem::cell(error.record, column, error.error.detail(error.line))])
}
