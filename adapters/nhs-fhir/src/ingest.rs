//! FHIR R4 (UK Core) into canonical crisis events: a pure function over the payload bytes.
//!
//! The payload is a Bundle of type `message`, `transaction`, `collection` or `batch`, or a single resource. Each
//! entry is parsed on its own with the `fhir-sdk` R4B models (see the crate docs for why R4B reads R4), so one
//! bad entry is reported at its JSON Pointer without hiding problems in the others. Every problem found is
//! listed; none quotes a value.
//!
//! First, the crisis-care gate (`gate.rs`): a resource that carries no mental-health or crisis signal yields
//! no event, whatever its status, because an event can reach police and councils. Then, which resource yields
//! which event (the codes are those of [`crate::mapping`]):
//!
//! | resource | when (and crisis care) | event |
//! | --- | --- | --- |
//! | Encounter | at a place of safety (legal status s135/s136, or a Concordat place-of-safety type or Location), status `arrived`, `triaged`, `in-progress` or `onleave` | `nhs.place_of_safety_arrival`, with `legal_status` and `place_of_safety` |
//! | Encounter | `finished`, at a place of safety, with a legal status, or with an outcome coded in `urn:concordat:disposition` | `nhs.assessment_outcome`, with `disposition` |
//! | Encounter | `finished`, otherwise | `nhs.discharge` |
//! | EpisodeOfCare | `planned`, `waitlist`; or `active`/`onhold` for a service other than CRHT | `nhs.referral` |
//! | EpisodeOfCare | `active`/`onhold` for CRHT (`urn:concordat:service#crisis_resolution_home_treatment`) | `nhs.assessment_outcome`, `referred_home_treatment` |
//! | EpisodeOfCare | `finished` | `nhs.discharge` |
//! | ServiceRequest | `active`, `completed`, `draft`, `on-hold` | `nhs.referral` with `details.referral` (urgency from `priority`, else the urgency table: BaRS clinical urgency) |
//! | Flag | with a risk code (a grade of the risk table, or a Concordat risk factor): `active` (risk at its grade; no grade is refused, never guessed) or `inactive` (no risk) | `nhs.risk_flag` |
//! | CarePlan | category SNOMED CT 736253002 | `nhs.crisis_plan`, `summary` from `description` (or `title`) |
//! | Communication | a category, topic or reason coded `urn:concordat:event-kind#nhs.*` | that kind, `notes` from the payload strings |
//! | Observation | code SNOMED CT 225338004 | its risk applies to every other event about the same patient; alone, it is an `nhs.risk_flag` |
//! | Consent | any | its status applies to every event about the same patient (the latest Consent wins) |
//! | Condition | any | its codes join `details.codes` of its Encounter's event, or of every event about the patient |
//! | Patient | any | its demographics become the `subject` of the events that reference it |
//! | Organization, Location, MessageHeader, Practitioner, PractitionerRole | any | read where referenced; no event |
//! | any other FHIR R4 resource (AllergyIntolerance, MedicationStatement, QuestionnaireResponse, ...) | any | none: skipped |
//!
//! A whole message is read: an entry that yields no event (not crisis care, a status with no event, a vital
//! sign, a context Encounter, an allergy, a resource nothing reads) is skipped and named in a warning at its
//! JSON Pointer, which the gateway returns in its `202` body and `translate` prints on stderr. The payload is
//! refused only when an entry that would be an event is broken (an unresolvable or mistyped reference, an
//! invalid NHS number, no time), or when nothing in it is a crisis event; then every reason is listed. Patients
//! are found through `subject`/`patient` references resolved inside the Bundle (`urn:uuid:` fullUrls,
//! `Type/id` relative references, absolute URLs, a bare id that one entry has) or a logical reference by NHS
//! number. Correlation refs: each event carries its resource's identifiers, plus every identifier in the
//! payload in the episode or a police-incident system.
//!
//! This module does not validate events against the canonical schema (the gateway does, and the tests check that
//! every event passes), and does not deduplicate: `event_id` is derived from the agency, the resource's
//! reference and the payload digest, so a resubmission yields the same ids.

use std::borrow::Cow;

use chrono::{DateTime as ChronoDateTime, FixedOffset, NaiveDate};
use concordat_episode::{
    AgencyId, Coding, Consent, ConsentStatus, CrisisEvent, Details, Disposition, EPISODE_SYSTEM, EpisodeLink, EventId,
    EventKind, Gender, Identifier, IngestContext, IngestError, Ingested, InputLocation, InputProblem, LegalStatus,
    NHS_NUMBER_SYSTEM, Name, NhsNumber, NonEmptyString, OdsCode, POLICE_INCIDENT_SYSTEM_PREFIX, PlaceOfSafety,
    PlaceOfSafetyKind, PostcodeDistrict, Provenance, Referral, Risk, RiskFactor, Sha256Hex, Source, SourceScale,
    Subject, Timestamp, Urgency,
};
use fhir_sdk::r4b::codes::{
    AddressUse, AdministrativeGender, BundleType, ConsentProvisionType, ConsentState, EncounterStatus,
    EpisodeOfCareStatus, EventStatus, FlagStatus, NameUse, ObservationStatus, RequestPriority, RequestStatus,
};
use fhir_sdk::r4b::resources::{
    CarePlan, Communication, CommunicationPayloadContent, Condition, Consent as FhirConsent, Encounter, EpisodeOfCare,
    Flag, Location, MessageHeader, Observation, ObservationComponentValue, ObservationEffective, ObservationValue,
    Organization, Patient, ServiceRequest, ServiceRequestOccurrence,
};
use fhir_sdk::r4b::types::{
    Annotation, CodeableConcept, Coding as FhirCoding, Extension, ExtensionValue, Identifier as FhirIdentifier, Meta,
    Reference,
};
use fhir_sdk::{Date, Instant};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::gate::{self, Moment};
use crate::mapping::{self, Meaning};
use crate::{ADAPTER_NAME, CONTENT_TYPES, FORMAT, NhsFhirConfig};

/// See [`crate::ingest`].
pub(crate) fn ingest(payload: &[u8], cx: &IngestContext, config: &NhsFhirConfig) -> Result<Ingested, IngestError> {
    check_content_type(&cx.content_type)?;
    // A key named twice is refused; the digest is of the document's meaning (RFC 8785), so a reformatted resend
    // derives the same event ids.
    let digest = concordat_episode::json_payload_digest(payload).map_err(|error| IngestError::json_syntax(&error))?;
    let document = read_document(payload)?;
    let mut reader = Reader::new(document, config);
    let drafts = reader.translate();
    if !reader.problems.is_empty() {
        return Err(IngestError::Invalid(reader.problems));
    }
    let system = reader.system.take().unwrap_or_else(|| config.system.clone());
    let events = drafts.into_iter().map(|draft| draft.into_event(cx, &system, &digest)).collect::<Vec<_>>();
    Ok(Ingested { events, warnings: reader.warnings })
}

fn check_content_type(content_type: &str) -> Result<(), IngestError> {
    // The shell strips parameters (`; fhirVersion=4.0`), but a direct caller may not have.
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if CONTENT_TYPES.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(IngestError::UnsupportedContentType {
            content_type: essence,
            expected: CONTENT_TYPES.iter().map(|media| (*media).to_owned()).collect(),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the document: JSON, the Bundle envelope, and each resource with the fhir-sdk models.

/// The first look at a document: only its type.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "resourceType", borrow, default)]
    resource_type: Option<Cow<'a, str>>,
}

/// A Bundle, read only as far as its entries: each resource is parsed on its own so that one unsupported or
/// broken entry is reported at its pointer (the R4B `Resource` enum would fail the whole Bundle).
#[derive(Deserialize)]
struct Envelope<'a> {
    /// Read with the rest so that a Bundle, the common case, is read in one pass (see [`read_document`]).
    #[serde(rename = "resourceType", borrow, default)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(rename = "type", default)]
    bundle_type: Option<BundleType>,
    #[serde(default)]
    timestamp: Option<Instant>,
    #[serde(default)]
    identifier: Option<FhirIdentifier>,
    #[serde(borrow, default)]
    entry: Vec<RawEntry<'a>>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "fullUrl", default)]
    full_url: Option<String>,
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
}

/// One resource of the payload, parsed.
enum Parsed {
    Patient(Patient),
    Encounter(Encounter),
    EpisodeOfCare(EpisodeOfCare),
    ServiceRequest(ServiceRequest),
    Condition(Condition),
    Flag(Flag),
    CarePlan(CarePlan),
    Consent(FhirConsent),
    Observation(Observation),
    Communication(Communication),
    Organization(Organization),
    Location(Location),
    MessageHeader(MessageHeader),
    /// Read for completeness of references only (Practitioner, PractitionerRole).
    Other,
    /// A FHIR resource this adapter does not read (an AllergyIntolerance, a MedicationStatement, a
    /// QuestionnaireResponse, ...): it travels beside the crisis content and is skipped with a warning.
    Unread,
}

struct Entry {
    /// JSON Pointer of the resource (`/entry/2/resource`, or empty for a single resource).
    pointer: String,
    full_url: Option<String>,
    resource_type: String,
    id: Option<String>,
    meta_updated: Option<Timestamp>,
    parsed: Parsed,
}

struct Document {
    entries: Vec<Entry>,
    timestamp: Option<Timestamp>,
    identifier: Option<Identifier>,
    is_bundle: bool,
    problems: Vec<InputProblem>,
}

const SUPPORTED: &[&str] = &[
    "Patient",
    "Encounter",
    "EpisodeOfCare",
    "ServiceRequest",
    "Condition",
    "Flag",
    "CarePlan",
    "Consent",
    "Observation",
    "Communication",
    "Organization",
    "Location",
    "MessageHeader",
    "Practitioner",
    "PractitionerRole",
];

fn read_document(payload: &[u8]) -> Result<Document, IngestError> {
    // A Bundle whose envelope reads is the common case: read it in one pass. Whenever this fails, the document is
    // read again step by step below, which finds the same Bundle or reports the same problem as before.
    if let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(payload)
        && envelope.resource_type.as_deref() == Some("Bundle")
    {
        return read_bundle(envelope);
    }
    let peek: Peek<'_> = serde_json::from_slice(payload).map_err(|error| json_error(&error))?;
    let Some(resource_type) = peek.resource_type else {
        return Err(IngestError::invalid("", "not a FHIR resource: the document has no resourceType"));
    };
    if resource_type != "Bundle" {
        let mut document =
            Document { entries: Vec::new(), timestamp: None, identifier: None, is_bundle: false, problems: Vec::new() };
        // The payload is valid JSON (the peek read all of it), so UTF-8 errors cannot occur here.
        let text = std::str::from_utf8(payload).map_err(|_| IngestError::invalid("", "not UTF-8 text"))?;
        match read_entry(text, &resource_type, String::new(), None) {
            Ok(entry) => document.entries.push(entry),
            Err(problem) => return Err(IngestError::Invalid(vec![problem])),
        }
        return Ok(document);
    }
    let envelope: Envelope<'_> = match serde_json::from_slice(payload) {
        Ok(envelope) => envelope,
        Err(_) => {
            let mut deserializer = serde_json::Deserializer::from_slice(payload);
            let error = match serde_path_to_error::deserialize::<_, Envelope<'_>>(&mut deserializer) {
                Err(error) => path_problem("", &error, "Bundle"),
                Ok(_) => InputProblem::at("", "invalid value for this FHIR R4 Bundle element"),
            };
            return Err(IngestError::Invalid(vec![error]));
        }
    };
    read_bundle(envelope)
}

fn read_bundle(envelope: Envelope<'_>) -> Result<Document, IngestError> {
    let mut document =
        Document { entries: Vec::new(), timestamp: None, identifier: None, is_bundle: true, problems: Vec::new() };
    match envelope.bundle_type {
        Some(BundleType::Message | BundleType::Transaction | BundleType::Collection | BundleType::Batch) => {}
        Some(_) => {
            return Err(IngestError::invalid(
                "/type",
                "unsupported Bundle type: expected message, transaction, collection or batch",
            ));
        }
        None => return Err(IngestError::invalid("/type", "a Bundle must have a type (FHIR R4 Bundle.type 1..1)")),
    }
    document.timestamp = envelope.timestamp.as_ref().and_then(instant);
    document.identifier = envelope.identifier.as_ref().and_then(identifier);
    for (index, raw) in envelope.entry.into_iter().enumerate() {
        let pointer = format!("/entry/{index}/resource");
        let Some(resource) = raw.resource else {
            document.problems.push(InputProblem::at(format!("/entry/{index}"), "Bundle entry has no resource"));
            continue;
        };
        // Most entries start with their resourceType; parsing such an entry straight away saves reading it
        // twice. Should that parse fail, the entry is read again below, which reports exactly as before.
        if let Some(resource_type) = leading_resource_type(resource.get())
            && let Ok(entry) = read_entry(resource.get(), resource_type, pointer.clone(), raw.full_url.clone())
        {
            document.entries.push(entry);
            continue;
        }
        let peek: Peek<'_> = match serde_json::from_str(resource.get()) {
            Ok(peek) => peek,
            Err(_) => {
                document.problems.push(InputProblem::at(pointer, "not a FHIR resource: expected a JSON object"));
                continue;
            }
        };
        let Some(resource_type) = peek.resource_type else {
            document.problems.push(InputProblem::at(pointer, "not a FHIR resource: the entry has no resourceType"));
            continue;
        };
        match read_entry(resource.get(), &resource_type, pointer, raw.full_url) {
            Ok(entry) => document.entries.push(entry),
            Err(problem) => document.problems.push(problem),
        }
    }
    Ok(document)
}

/// The resourceType of a resource whose first member names one of the types parsed with a model, without
/// reading further. Resources read without a model (Practitioner, PractitionerRole) are left to the full read,
/// because only a model's parse also rejects a second resourceType member later in the object.
fn leading_resource_type(text: &str) -> Option<&str> {
    let rest = text.trim_start_matches(JSON_WHITESPACE).strip_prefix('{')?;
    let rest = rest.trim_start_matches(JSON_WHITESPACE).strip_prefix("\"resourceType\"")?;
    let rest = rest.trim_start_matches(JSON_WHITESPACE).strip_prefix(':')?;
    let rest = rest.trim_start_matches(JSON_WHITESPACE).strip_prefix('"')?;
    let (resource_type, _) = rest.split_once('"')?;
    let modelled = SUPPORTED.contains(&resource_type) && !matches!(resource_type, "Practitioner" | "PractitionerRole");
    modelled.then_some(resource_type)
}

const JSON_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

fn read_entry(
    text: &str,
    resource_type: &str,
    pointer: String,
    full_url: Option<String>,
) -> Result<Entry, InputProblem> {
    if !SUPPORTED.contains(&resource_type) {
        if !is_fhir_resource_type(resource_type) {
            return Err(InputProblem::at(
                format!("{pointer}/resourceType"),
                "unknown resource type: not a FHIR R4 resource",
            ));
        }
        let id = other_id(text);
        return Ok(Entry {
            pointer,
            full_url,
            resource_type: resource_type.to_owned(),
            id,
            meta_updated: None,
            parsed: Parsed::Unread,
        });
    }
    let parsed = match resource_type {
        "Patient" => Parsed::Patient(typed(text, &pointer, resource_type)?),
        "Encounter" => Parsed::Encounter(typed(text, &pointer, resource_type)?),
        "EpisodeOfCare" => Parsed::EpisodeOfCare(typed(text, &pointer, resource_type)?),
        "ServiceRequest" => Parsed::ServiceRequest(typed(text, &pointer, resource_type)?),
        "Condition" => Parsed::Condition(typed(text, &pointer, resource_type)?),
        "Flag" => Parsed::Flag(typed(text, &pointer, resource_type)?),
        "CarePlan" => Parsed::CarePlan(typed(text, &pointer, resource_type)?),
        "Consent" => Parsed::Consent(typed(text, &pointer, resource_type)?),
        "Observation" => Parsed::Observation(typed(text, &pointer, resource_type)?),
        "Communication" => Parsed::Communication(typed(text, &pointer, resource_type)?),
        "Organization" => Parsed::Organization(typed(text, &pointer, resource_type)?),
        "Location" => Parsed::Location(typed(text, &pointer, resource_type)?),
        "MessageHeader" => Parsed::MessageHeader(typed(text, &pointer, resource_type)?),
        _ => Parsed::Other,
    };
    let (id, meta) = match &parsed {
        Parsed::Patient(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::Encounter(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::EpisodeOfCare(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::ServiceRequest(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::Condition(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::Flag(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::CarePlan(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::Consent(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::Observation(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::Communication(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::Organization(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::Location(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::MessageHeader(r) => (r.id.clone(), r.meta.as_ref()),
        Parsed::Other | Parsed::Unread => (other_id(text), None),
    };
    let meta_updated = meta.and_then(|meta: &Meta| meta.last_updated.as_ref()).and_then(instant);
    Ok(Entry { pointer, full_url, resource_type: resource_type.to_owned(), id, meta_updated, parsed })
}

/// A resource type with its indefinite article, for messages ("an Organization", "a Patient").
fn with_article(resource_type: &str) -> String {
    let vowel = resource_type.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {resource_type}", if vowel { "an" } else { "a" })
}

/// Whether a name is a FHIR R4 resource type: one the R4B models know, or one of the thirteen that R4 has and
/// R4B removed (which no model here can parse, and which carry no crisis content anyway).
fn is_fhir_resource_type(name: &str) -> bool {
    const R4_ONLY: &[&str] = &[
        "EffectEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceSpecification",
    ];
    name.parse::<fhir_sdk::r4b::resources::ResourceType>().is_ok() || R4_ONLY.contains(&name)
}

fn other_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(text).ok().and_then(|only| only.id)
}

/// Parses one resource with its `fhir-sdk` model, naming the element that breaks it. Tracking the path costs a
/// third of the parse, so it is done only for a resource that failed.
fn typed<T: DeserializeOwned>(text: &str, pointer: &str, resource_type: &str) -> Result<T, InputProblem> {
    serde_json::from_str(text).or_else(|_| {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| path_problem(pointer, &error, resource_type))
    })
}

fn path_problem(pointer: &str, error: &serde_path_to_error::Error<serde_json::Error>, what: &str) -> InputProblem {
    let mut location = pointer.to_owned();
    for segment in error.path().iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => location.push_str(&format!("/{index}")),
            serde_path_to_error::Segment::Map { key } => {
                location.push('/');
                location.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    InputProblem::at(location, rule_of(error.inner(), what))
}

/// Says which rule a serde error broke without repeating serde's message, which can quote the input.
fn rule_of(error: &serde_json::Error, what: &str) -> String {
    let message = error.to_string();
    if let Some(field) = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
        // The field name comes from the model, not from the input.
        return format!("{what} lacks the element `{field}`, required by FHIR R4");
    }
    // serde's enums say "unknown variant", fhir-sdk's code enums "Unknown value".
    if message.starts_with("unknown variant") || message.starts_with("Unknown value") {
        return format!("code is not in the FHIR R4 value set bound to this {what} element");
    }
    if message.starts_with("invalid type") {
        return format!("wrong JSON type for this FHIR R4 {what} element");
    }
    format!("invalid value for this FHIR R4 {what} element")
}

fn json_error(error: &serde_json::Error) -> IngestError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => IngestError::Syntax {
            format: "JSON",
            reason: match error.classify() {
                Category::Eof => "unexpected end of input".to_owned(),
                _ => "syntax error".to_owned(),
            },
            line: error.line(),
            column: error.column(),
        },
        Category::Data => IngestError::invalid("", "not a FHIR resource: expected a JSON object with a resourceType"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Translating: resources to drafts, then the facts that qualify them (consent, risk, codes).

/// Who an event is about: a Patient entry, or a person known only by NHS number (a logical reference).
#[derive(Clone, PartialEq, Eq)]
enum PatientKey {
    Nhs(String),
    Entry(usize),
}

struct Draft {
    entry: usize,
    kind: EventKind,
    occurred_at: Timestamp,
    recorded_at: Timestamp,
    record_ref: String,
    patient: Option<PatientKey>,
    subject: Subject,
    risk: Option<Risk>,
    consent: Option<(Consent, usize)>,
    details: Details,
    refs: Vec<Identifier>,
}

impl Draft {
    fn into_event(self, cx: &IngestContext, system: &str, digest: &Sha256Hex) -> CrisisEvent {
        let record_ref = non_empty(self.record_ref);
        CrisisEvent {
            event_id: EventId::derive(&cx.agency, record_ref.as_str(), digest),
            kind: self.kind,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            source: Source {
                agency: cx.agency.clone(),
                agency_kind: cx.agency_kind,
                system: system.to_owned(),
                record_ref,
            },
            episode: EpisodeLink { episode_id: None, refs: self.refs },
            subject: self.subject,
            risk: self.risk,
            consent: self.consent.map_or_else(Consent::unknown, |(consent, _)| consent),
            details: self.details,
            provenance: Provenance {
                adapter: non_empty(ADAPTER_NAME.to_owned()),
                adapter_version: non_empty(env!("CARGO_PKG_VERSION").to_owned()),
                format: non_empty(FORMAT.to_owned()),
                payload_sha256: digest.clone(),
                received_at: cx.received_at,
            },
        }
    }
}

/// Record refs always start with a resource type and the other callers pass constants, so the text is never
/// empty; the match keeps that reasoning visible instead of hiding it in an `expect`.
fn non_empty(text: String) -> NonEmptyString {
    match NonEmptyString::new(text) {
        Ok(text) => text,
        Err(_) => unreachable!("record refs and adapter constants are never empty"),
    }
}

struct RiskFact {
    patient: Option<PatientKey>,
    risk: Option<Risk>,
    draft: Draft,
}

struct CodesFact {
    /// The Condition's entry.
    entry: usize,
    patient: Option<PatientKey>,
    encounter: Option<usize>,
    codes: Vec<Coding>,
}

struct Reader<'c> {
    document: Document,
    config: &'c NhsFhirConfig,
    problems: Vec<InputProblem>,
    /// What was left out, and why: the sender's to read, the payload's to keep.
    warnings: Vec<InputProblem>,
    /// Per entry: whether it yielded an event, was read for one, or was already named in a warning. What is
    /// none of these by the end is named in a warning of its own, so nothing is left out silently.
    handled: Vec<bool>,
    /// The Subject of each Patient entry (by entry index), built once.
    subjects: Vec<Option<Subject>>,
    /// Patient entries whose NHS number was already reported as invalid.
    invalid_numbers: Vec<usize>,
    /// Identifiers in the episode and police-incident systems anywhere in the payload.
    correlation: Vec<Identifier>,
    system: Option<String>,
    consents: Vec<(Option<PatientKey>, Consent, usize)>,
    risks: Vec<RiskFact>,
    codes: Vec<CodesFact>,
}

impl<'c> Reader<'c> {
    fn new(mut document: Document, config: &'c NhsFhirConfig) -> Self {
        let problems = std::mem::take(&mut document.problems);
        let handled = vec![false; document.entries.len()];
        Self {
            document,
            config,
            problems,
            warnings: Vec::new(),
            handled,
            subjects: Vec::new(),
            invalid_numbers: Vec::new(),
            correlation: Vec::new(),
            system: None,
            consents: Vec::new(),
            risks: Vec::new(),
            codes: Vec::new(),
        }
    }

    fn translate(&mut self) -> Vec<Draft> {
        self.read_patients();
        self.read_correlation();
        self.check_duplicate_ids();
        let mut drafts = Vec::new();
        for index in 0..self.document.entries.len() {
            if let Some(draft) = self.translate_entry(index) {
                self.mark(index);
                drafts.push(draft);
            }
        }
        self.qualify(&mut drafts);
        self.name_the_rest();
        if drafts.is_empty() && self.problems.is_empty() {
            // Nothing to share, and nothing broken: the reasons each entry was left out are the refusal.
            self.problems.push(InputProblem {
                location: InputLocation::Document,
                detail: "nothing in the payload is a crisis event: every entry was left out, as listed".to_owned(),
            });
            self.problems.append(&mut self.warnings);
        }
        drafts
    }

    /// Applies the facts that qualify events (a risk assessment, a Consent, a Condition's codes, correlating
    /// identifiers) to the events about the same patient; a risk assessment with no other event is the event.
    fn qualify(&mut self, drafts: &mut Vec<Draft>) {
        let risks = std::mem::take(&mut self.risks);
        // Entries read for an event; marked once the loops below no longer borrow the facts.
        let mut read = Vec::new();
        if drafts.is_empty() {
            for fact in risks {
                read.push(fact.draft.entry);
                let mut draft = fact.draft;
                draft.risk = fact.risk;
                drafts.push(draft);
            }
        } else {
            for fact in &risks {
                for draft in drafts.iter_mut().filter(|draft| draft.risk.is_none() && draft.patient == fact.patient) {
                    draft.risk.clone_from(&fact.risk);
                    read.push(fact.draft.entry);
                }
            }
        }
        for draft in drafts.iter_mut() {
            for (patient, consent, entry) in &self.consents {
                let later = draft.consent.as_ref().is_none_or(|(current, current_entry)| {
                    (consent.recorded_at, *entry) >= (current.recorded_at, *current_entry)
                });
                if *patient == draft.patient && later {
                    draft.consent = Some((consent.clone(), *entry));
                }
                if *patient == draft.patient {
                    read.push(*entry);
                }
            }
            for fact in &self.codes {
                let applies = match fact.encounter {
                    Some(encounter) => encounter == draft.entry,
                    None => fact.patient == draft.patient,
                };
                if applies {
                    read.push(fact.entry);
                    for code in &fact.codes {
                        if !draft.details.codes.contains(code) {
                            draft.details.codes.push(code.clone());
                        }
                    }
                }
            }
            for reference in &self.correlation {
                if !draft.refs.contains(reference) {
                    draft.refs.push(reference.clone());
                }
            }
        }
        for index in read {
            self.mark(index);
        }
    }

    /// Names in a warning every entry that neither yielded an event, nor was read for one, nor was left out
    /// with a reason already.
    fn name_the_rest(&mut self) {
        for index in 0..self.document.entries.len() {
            if self.handled[index] {
                continue;
            }
            let Some(entry) = self.document.entries.get(index) else { continue };
            let detail = match entry.parsed {
                Parsed::Unread => format!("{} carries no crisis event: skipped", entry.resource_type),
                Parsed::Consent(_) | Parsed::Condition(_) | Parsed::Observation(_) => format!(
                    "{} qualifies only the events about its patient, and this payload has none: skipped",
                    entry.resource_type
                ),
                _ => format!("{} yields no event and no event reads it: skipped", entry.resource_type),
            };
            let warning = InputProblem::at(entry.pointer.clone(), detail);
            self.warnings.push(warning);
        }
    }

    /// Records that an entry yielded an event or was read for one.
    fn mark(&mut self, index: usize) {
        if let Some(handled) = self.handled.get_mut(index) {
            *handled = true;
        }
    }

    /// Leaves an entry out with a reason the sender is told.
    fn skip(&mut self, index: usize, pointer: impl Into<String>, detail: impl Into<String>) {
        self.mark(index);
        self.warnings.push(InputProblem::at(pointer, detail));
    }

    fn read_patients(&mut self) {
        let mut subjects = Vec::with_capacity(self.document.entries.len());
        for (index, entry) in self.document.entries.iter().enumerate() {
            subjects.push(match &entry.parsed {
                Parsed::Patient(patient) => {
                    let before = self.problems.len();
                    let subject = patient_subject(patient, &entry.pointer, &mut self.problems);
                    if self.problems.len() > before {
                        self.invalid_numbers.push(index);
                    }
                    Some(subject)
                }
                _ => None,
            });
        }
        self.subjects = subjects;
    }

    fn read_correlation(&mut self) {
        let mut found = Vec::new();
        if let Some(identifier) = &self.document.identifier {
            found.push(identifier.clone());
        }
        for (index, entry) in self.document.entries.iter().enumerate() {
            if let Parsed::MessageHeader(header) = &entry.parsed {
                let source = &header.source;
                self.system = source.name.clone().or_else(|| source.software.clone()).filter(|name| !name.is_empty());
                // The envelope is read for every event, and so are the parties it names: never left out.
                let parties =
                    header.sender.iter().chain(header.responsible.iter()).chain(header.author.iter()).chain(
                        header.destination.iter().flatten().filter_map(|destination| destination.receiver.as_ref()),
                    );
                let named = parties
                    .filter_map(|party| party.reference.as_deref())
                    .filter_map(|target| find_entry(&self.document.entries, target));
                for read in std::iter::once(index).chain(named) {
                    if let Some(handled) = self.handled.get_mut(read) {
                        *handled = true;
                    }
                }
            }
            found.extend(identifiers(entry_identifiers(&entry.parsed)));
        }
        for identifier in found {
            let system = identifier.system.as_str();
            let correlates = system == EPISODE_SYSTEM || system.starts_with(POLICE_INCIDENT_SYSTEM_PREFIX);
            if correlates && !self.correlation.contains(&identifier) {
                self.correlation.push(identifier);
            }
        }
    }

    /// Two entries with the same id (or, lacking ids, the same fullUrl) would yield the same record ref and so
    /// the same event id.
    fn check_duplicate_ids(&mut self) {
        let entries = &self.document.entries;
        for (index, entry) in entries.iter().enumerate() {
            let earlier = || entries.iter().take(index);
            if let Some(id) = &entry.id {
                if earlier().any(|other| other.resource_type == entry.resource_type && other.id.as_ref() == Some(id)) {
                    self.problems.push(InputProblem::at(
                        format!("{}/id", entry.pointer),
                        "duplicates the id of an earlier resource of the same type in this Bundle",
                    ));
                }
            } else if let Some(full_url) = &entry.full_url
                && earlier().any(|other| other.full_url.as_ref() == Some(full_url))
            {
                let pointer = entry.pointer.strip_suffix("/resource").unwrap_or(&entry.pointer);
                self.problems.push(InputProblem::at(
                    format!("{pointer}/fullUrl"),
                    "duplicates the fullUrl of an earlier entry in this Bundle",
                ));
            }
        }
    }

    fn translate_entry(&mut self, index: usize) -> Option<Draft> {
        // The entries are lent out while one is translated, so that the translation may record problems and
        // facts on `self` while it reads any entry it references.
        let entries = std::mem::take(&mut self.document.entries);
        let result = entries.get(index).and_then(|entry| self.translate_resource(&entries, index, entry));
        self.document.entries = entries;
        result
    }

    fn translate_resource(&mut self, entries: &[Entry], index: usize, entry: &Entry) -> Option<Draft> {
        let pointer = entry.pointer.as_str();
        match &entry.parsed {
            Parsed::Encounter(encounter) => self.encounter(entries, index, entry, encounter),
            Parsed::EpisodeOfCare(episode) => self.episode_of_care(entries, index, entry, episode),
            Parsed::ServiceRequest(request) => self.service_request(entries, index, entry, request),
            Parsed::Flag(flag) => self.flag(entries, index, entry, flag),
            Parsed::CarePlan(plan) => self.care_plan(entries, index, entry, plan),
            Parsed::Communication(communication) => self.communication(entries, index, entry, communication),
            Parsed::Observation(observation) => {
                self.observation(entries, index, entry, observation);
                None
            }
            Parsed::Consent(consent) => {
                self.consent(entries, index, entry, consent);
                None
            }
            Parsed::Condition(condition) => {
                let patient = self.patient(entries, Some(&condition.subject), &format!("{pointer}/subject"))?.0;
                let encounter = match &condition.encounter {
                    Some(reference) => {
                        self.resolve(entries, reference, &format!("{pointer}/encounter"), &["Encounter"]).flatten()
                    }
                    None => None,
                };
                let mut codes = Vec::new();
                push_codings(&mut codes, condition.code.as_ref());
                self.codes.push(CodesFact { entry: index, patient: Some(patient), encounter, codes });
                None
            }
            // Read where an event refers to them, or named in a warning at the end.
            Parsed::Patient(_)
            | Parsed::Organization(_)
            | Parsed::Location(_)
            | Parsed::MessageHeader(_)
            | Parsed::Other
            | Parsed::Unread => None,
        }
    }

    // --- references -----------------------------------------------------------------------------------------

    /// Resolves a reference inside the payload to an entry of one of the `expected` types (the first is named
    /// in messages). `Some(Some(i))`: entry `i`, now marked as read; `Some(None)`: nothing to resolve (a
    /// logical or display-only reference); `None`: a literal reference that does not resolve, or resolves to
    /// a resource of another type (reported).
    fn resolve(
        &mut self,
        entries: &[Entry],
        reference: &Reference,
        pointer: &str,
        expected: &[&str],
    ) -> Option<Option<usize>> {
        let Some(target) = reference.reference.as_deref() else { return Some(None) };
        if target.starts_with('#') {
            // A contained resource: nothing this adapter reads lives there.
            return Some(None);
        }
        let wanted = expected.first().copied().unwrap_or("resource");
        if let Some(found) = find_entry(entries, target) {
            let actual = entries.get(found).map_or("", |entry| entry.resource_type.as_str());
            if !expected.is_empty() && !expected.contains(&actual) {
                self.problems.push(InputProblem::at(
                    format!("{pointer}/reference"),
                    format!(
                        "reference resolves to {}, where {} is expected",
                        with_article(actual),
                        with_article(wanted)
                    ),
                ));
                return None;
            }
            self.mark(found);
            return Some(Some(found));
        }
        if reference.identifier.is_some() {
            return Some(None);
        }
        let detail = if self.document.is_bundle {
            format!("reference does not resolve to any entry of this Bundle (expected {})", with_article(wanted))
        } else if wanted == "Patient" {
            "a single resource cannot resolve references: name the patient by identifier (NHS number) instead"
                .to_owned()
        } else {
            format!(
                "a single resource cannot resolve references: send the {wanted} in a Bundle with it, or name it by \
                 identifier"
            )
        };
        self.problems.push(InputProblem::at(format!("{pointer}/reference"), detail));
        None
    }

    /// The patient an event is about, and its Subject. Reports a missing or unresolved patient.
    fn patient(
        &mut self,
        entries: &[Entry],
        reference: Option<&Reference>,
        pointer: &str,
    ) -> Option<(PatientKey, Subject)> {
        let resolved = match reference {
            Some(reference) => match self.resolve(entries, reference, pointer, &["Patient"])? {
                Some(index) => Some((index, self.subjects.get(index).cloned().flatten()?)),
                None => None,
            },
            None => {
                let mut patients = self.subjects.iter().enumerate().filter_map(|(i, s)| s.clone().map(|s| (i, s)));
                match (patients.next(), patients.next()) {
                    (Some(only), None) => Some(only),
                    _ => {
                        self.problems.push(InputProblem::at(
                            pointer,
                            "missing: the resource names no patient and the payload holds no single Patient",
                        ));
                        return None;
                    }
                }
            }
        };
        match resolved {
            Some((index, subject)) => {
                let reported = self.invalid_numbers.contains(&index);
                if subject.nhs_number.is_none() && self.config.require_nhs_number && !reported {
                    let at = entries.get(index).map_or("", |entry| entry.pointer.as_str());
                    self.problems.push(InputProblem::at(
                        format!("{at}/identifier"),
                        format!(
                            "Patient has no NHS number (identifier system {NHS_NUMBER_SYSTEM}), which every event needs"
                        ),
                    ));
                    return None;
                }
                if subject.nhs_number.is_none() && reported {
                    return None;
                }
                let key = subject
                    .nhs_number
                    .as_ref()
                    .map_or(PatientKey::Entry(index), |number| PatientKey::Nhs(number.as_str().to_owned()));
                Some((key, subject))
            }
            None => {
                // A logical reference: the NHS number, if any, is all that is known of the person.
                let logical = reference.and_then(|reference| reference.identifier.as_ref());
                let system = logical.and_then(|identifier| identifier.system.as_deref());
                let value = logical.and_then(|identifier| identifier.value.as_deref());
                match (system, value) {
                    (Some(NHS_NUMBER_SYSTEM), Some(value)) => match NhsNumber::parse_lenient(value) {
                        Ok(number) => {
                            let key = PatientKey::Nhs(number.as_str().to_owned());
                            Some((key, Subject { nhs_number: Some(number), ..Subject::default() }))
                        }
                        Err(error) => {
                            self.problems
                                .push(InputProblem::at(format!("{pointer}/identifier/value"), error.to_string()));
                            None
                        }
                    },
                    _ => {
                        self.problems.push(InputProblem::at(
                            pointer,
                            format!(
                                "missing NHS number: the patient reference neither resolves to a Patient nor \
                                 carries an identifier in {NHS_NUMBER_SYSTEM}"
                            ),
                        ));
                        None
                    }
                }
            }
        }
    }

    /// The Concordat agency an Organization reference names, when it names one.
    fn agency(&mut self, entries: &[Entry], reference: &Reference, pointer: &str) -> Option<AgencyId> {
        let mut found = Vec::new();
        if let Some(identifier) = &reference.identifier {
            found.push(identifier);
        }
        // A performer, recipient or managing organisation may be any of these; only an Organization names an agency.
        let parties = ["Organization", "HealthcareService", "PractitionerRole", "Practitioner", "CareTeam"];
        let resolved = self.resolve(entries, reference, pointer, &parties).flatten();
        if let Some(Parsed::Organization(organization)) =
            resolved.and_then(|index| entries.get(index)).map(|e| &e.parsed)
        {
            found.extend(organization.identifier.iter().flatten());
        }
        found.into_iter().find_map(|identifier| {
            let value = identifier.value.as_deref()?;
            match identifier.system.as_deref()? {
                mapping::CONCORDAT_AGENCY => AgencyId::new(value).ok(),
                mapping::ODS_ORGANIZATION => self.config.ods_agencies.get(value).cloned(),
                _ => None,
            }
        })
    }

    fn when(&mut self, entry: &Entry, own: Moment, element: &str) -> Option<(Timestamp, Timestamp)> {
        let Some(occurred) = own.time().or(entry.meta_updated).or(self.document.timestamp) else {
            let detail = if own == Moment::DateOnly {
                format!(
                    "{element} is a date without a time: an event needs a dateTime with a time and an offset \
                     (or meta.lastUpdated or Bundle.timestamp)"
                )
            } else {
                format!("no time for the event: expected {element}, meta.lastUpdated or Bundle.timestamp")
            };
            self.problems.push(InputProblem::at(entry.pointer.clone(), detail));
            return None;
        };
        let recorded = entry.meta_updated.or(self.document.timestamp).unwrap_or(occurred);
        Some((occurred, recorded))
    }

    #[allow(clippy::too_many_arguments)]
    fn draft(
        &mut self,
        entry: &Entry,
        index: usize,
        kind: EventKind,
        times: (Timestamp, Timestamp),
        patient: (PatientKey, Subject),
        own_identifiers: &[Option<FhirIdentifier>],
        details: Details,
    ) -> Draft {
        let record_ref = match (&entry.id, &entry.full_url) {
            (Some(id), _) => format!("{}/{id}", entry.resource_type),
            (None, Some(full_url)) if !full_url.is_empty() => full_url.clone(),
            (None, _) => format!("{}#entry{index}", entry.resource_type),
        };
        Draft {
            entry: index,
            kind,
            occurred_at: times.0,
            recorded_at: times.1,
            record_ref,
            patient: Some(patient.0),
            subject: patient.1,
            risk: None,
            consent: None,
            details,
            refs: identifiers(own_identifiers),
        }
    }

    // --- one function per resource type ---------------------------------------------------------------------

    fn encounter(&mut self, entries: &[Entry], index: usize, entry: &Entry, encounter: &Encounter) -> Option<Draft> {
        let pointer = entry.pointer.as_str();
        let in_progress = match encounter.status {
            EncounterStatus::Arrived
            | EncounterStatus::Triaged
            | EncounterStatus::InProgress
            | EncounterStatus::Onleave => true,
            EncounterStatus::Finished => false,
            _ => {
                let detail = "Encounter status yields no Concordat event (expected arrived, triaged, in-progress, \
                              onleave or finished): skipped";
                self.skip(index, format!("{pointer}/status"), detail);
                return None;
            }
        };
        if !self.encounter_is_crisis_care(entries, encounter) {
            self.skip(index, pointer, format!("Encounter {}: skipped", gate::NOT_CRISIS_CARE));
            return None;
        }
        let mut codes = Vec::new();
        let legal_status = legal_status(&encounter.extension, &mut codes);
        let concepts = encounter_concepts(encounter);
        for concept in &concepts {
            push_codings(&mut codes, Some(concept));
        }
        let disposition_concept = encounter.hospitalization.as_ref().and_then(|h| h.discharge_disposition.as_ref());
        push_codings(&mut codes, disposition_concept);
        let place_of_safety = self.place_of_safety(entries, entry, encounter, legal_status);
        if in_progress && place_of_safety.is_none() {
            let detail = "an Encounter in progress yields an event only at a place of safety (legal status s135 or \
                          s136, or a place-of-safety type or Location): skipped";
            self.skip(index, pointer, detail);
            return None;
        }
        let period = encounter.period.as_ref();
        let start = Moment::of(period.and_then(|p| p.start.as_ref()));
        let end = Moment::of(period.and_then(|p| p.end.as_ref()));
        let (kind, own_time, element, disposition) = if in_progress {
            (EventKind::NhsPlaceOfSafetyArrival, start, "Encounter.period.start", None)
        } else if place_of_safety.is_some() || legal_status.is_some() || stated_disposition(disposition_concept) {
            // An assessment's outcome: at a place of safety, under the Act, or stated in Concordat's own terms.
            let disposition = self.disposition(disposition_concept, legal_status);
            (EventKind::NhsAssessmentOutcome, end.or(start), "Encounter.period.end", disposition)
        } else {
            (EventKind::NhsDischarge, end.or(start), "Encounter.period.end", None)
        };
        let patient = self.patient(entries, encounter.subject.as_ref(), &format!("{pointer}/subject"))?;
        let times = self.when(entry, own_time, element)?;
        let details = Details { legal_status, place_of_safety, disposition, codes, ..Details::default() };
        Some(self.draft(entry, index, kind, times, patient, &encounter.identifier, details))
    }

    /// The gate for an Encounter: its legal status, codes and own identifiers, and the Locations it names
    /// (found without reporting anything, since a record that fails the gate is skipped, not refused).
    fn encounter_is_crisis_care(&self, entries: &[Entry], encounter: &Encounter) -> bool {
        let legal_status = encounter
            .extension
            .iter()
            .filter(|extension| extension.url == mapping::LEGAL_STATUS_EXTENSION)
            .flat_map(|extension| legal_status_concepts(extension))
            .any(|concept| gate::in_codes(self.config, [concept]));
        let location = encounter.location.iter().flatten().any(|location| {
            let found = location.location.reference.as_deref().and_then(|target| find_entry(entries, target));
            matches!(found.and_then(|i| entries.get(i)).map(|e| &e.parsed), Some(Parsed::Location(location))
                if gate::at_location(self.config, location))
        });
        legal_status
            || location
            || gate::in_codes(self.config, encounter_concepts(encounter))
            || gate::in_identifiers(&encounter.identifier)
    }

    /// Where the Encounter is a place of safety: under s135 or s136, or with a place-of-safety type or Location.
    /// An emergency department (class `EMER`, or an `ER` type or Location) is not one by itself; it says which
    /// kind of place of safety a detention brought the person to.
    fn place_of_safety(
        &mut self,
        entries: &[Entry],
        entry: &Entry,
        encounter: &Encounter,
        legal_status: Option<LegalStatus>,
    ) -> Option<PlaceOfSafety> {
        let pointer = entry.pointer.as_str();
        let mut place = PlaceFacts::default();
        for concept in encounter.r#type.iter().flatten() {
            place.read_type(concept);
        }
        for (position, location) in encounter.location.iter().enumerate() {
            let Some(location) = location else { continue };
            let at = format!("{pointer}/location/{position}/location");
            if let Some(found) = self.resolve(entries, &location.location, &at, &["Location"]).flatten()
                && let Some(Parsed::Location(location)) = entries.get(found).map(|entry| &entry.parsed)
                && let Some(managing) = place.read_location(entries, location)
            {
                self.mark(managing);
            }
        }
        if let Some(provider) = &encounter.service_provider {
            let at = format!("{pointer}/serviceProvider");
            let found = self.resolve(entries, provider, &at, &["Organization"]).flatten();
            let organization = match found.and_then(|i| entries.get(i)).map(|entry| &entry.parsed) {
                Some(Parsed::Organization(organization)) => ods_code(&organization.identifier),
                _ => provider.identifier.as_ref().and_then(|identifier| ods_of(identifier, mapping::ODS_ORGANIZATION)),
            };
            place.ods_code = place.ods_code.take().or(organization);
        }
        let power = legal_status.is_some_and(mapping::is_place_of_safety_power);
        if !power && place.kind.is_none() {
            return None;
        }
        let emergency = place.emergency
            || (encounter.class.code.as_deref() == Some("EMER")
                && encounter.class.system.as_deref() == Some(mapping::V3_ACT_CODE));
        let fallback = if emergency { PlaceOfSafetyKind::EmergencyDepartment } else { PlaceOfSafetyKind::HealthBased };
        Some(PlaceOfSafety { kind: place.kind.unwrap_or(fallback), name: place.name, ods_code: place.ods_code })
    }

    fn disposition(&self, concept: Option<&CodeableConcept>, legal_status: Option<LegalStatus>) -> Option<Disposition> {
        let codings = || concept.into_iter().flat_map(|concept| concept.coding.iter().flatten());
        let stated = codings().find_map(|coding| match meaning(coding) {
            Some(Meaning::Disposition(disposition)) => Some(disposition),
            _ => None,
        });
        let from_destination = || {
            codings()
                .filter(|coding| {
                    matches!(
                        coding.system.as_deref(),
                        Some(mapping::DISCHARGE_DESTINATION_ENGLAND | mapping::DISCHARGE_DESTINATION_DATA_DICTIONARY)
                    )
                })
                .find_map(|coding| coding.code.as_deref().and_then(|code| self.config.discharge_destinations.get(code)))
                .copied()
        };
        let disposition = stated.or_else(from_destination)?;
        // A ward admission is formal when the Encounter's legal status is a detention for assessment or treatment.
        Some(match disposition {
            Disposition::AdmittedInformal if legal_status.is_some_and(mapping::is_formal_admission) => {
                Disposition::AdmittedFormal
            }
            other => other,
        })
    }

    fn episode_of_care(
        &mut self,
        entries: &[Entry],
        index: usize,
        entry: &Entry,
        episode: &EpisodeOfCare,
    ) -> Option<Draft> {
        let pointer = entry.pointer.as_str();
        if matches!(episode.status, EpisodeOfCareStatus::Cancelled | EpisodeOfCareStatus::EnteredInError) {
            let detail = "EpisodeOfCare status yields no Concordat event (expected planned, waitlist, active, onhold \
                          or finished): skipped";
            self.skip(index, format!("{pointer}/status"), detail);
            return None;
        }
        if !gate::in_codes(self.config, episode.r#type.iter().flatten()) && !gate::in_identifiers(&episode.identifier) {
            self.skip(index, pointer, format!("EpisodeOfCare {}: skipped", gate::NOT_CRISIS_CARE));
            return None;
        }
        let patient = self.patient(entries, Some(&episode.patient), &format!("{pointer}/patient"));
        let mut codes = Vec::new();
        for concept in episode.r#type.iter().flatten() {
            push_codings(&mut codes, Some(concept));
        }
        let service = service(episode.r#type.iter().flatten());
        let to_agency = match &episode.managing_organization {
            Some(reference) => self.agency(entries, reference, &format!("{pointer}/managingOrganization")),
            None => None,
        };
        let crht = service.as_deref() == Some(mapping::SERVICE_CRHT);
        let period = episode.period.as_ref();
        let start = Moment::of(period.and_then(|p| p.start.as_ref()));
        let end = Moment::of(period.and_then(|p| p.end.as_ref()));
        let (kind, own_time, disposition) = match episode.status {
            EpisodeOfCareStatus::Active | EpisodeOfCareStatus::Onhold if crht => {
                (EventKind::NhsAssessmentOutcome, start, Some(Disposition::ReferredHomeTreatment))
            }
            EpisodeOfCareStatus::Finished => (EventKind::NhsDischarge, end.or(start), None),
            // Planned, waitlist, and active or on hold for another service; cancelled ones were skipped above.
            _ => (EventKind::NhsReferral, start, None),
        };
        let patient = patient?;
        let times = self.when(entry, own_time, "EpisodeOfCare.period")?;
        let referral = (kind == EventKind::NhsReferral || disposition.is_some()).then_some(Referral {
            to_agency,
            service,
            urgency: None,
        });
        let details = Details { disposition, referral, codes, ..Details::default() };
        Some(self.draft(entry, index, kind, times, patient, &episode.identifier, details))
    }

    fn service_request(
        &mut self,
        entries: &[Entry],
        index: usize,
        entry: &Entry,
        request: &ServiceRequest,
    ) -> Option<Draft> {
        let pointer = entry.pointer.as_str();
        if !matches!(
            request.status,
            RequestStatus::Active | RequestStatus::Completed | RequestStatus::Draft | RequestStatus::OnHold
        ) {
            let detail = "ServiceRequest status yields no Concordat event (expected active, completed, draft or on-hold): skipped";
            self.skip(index, format!("{pointer}/status"), detail);
            return None;
        }
        let concepts: Vec<&CodeableConcept> = request
            .code
            .iter()
            .chain(request.category.iter().flatten())
            .chain(request.performer_type.iter())
            .chain(request.reason_code.iter().flatten())
            .collect();
        if !gate::in_codes(self.config, concepts.iter().copied()) && !gate::in_identifiers(&request.identifier) {
            self.skip(index, pointer, format!("ServiceRequest {}: skipped", gate::NOT_CRISIS_CARE));
            return None;
        }
        let patient = self.patient(entries, Some(&request.subject), &format!("{pointer}/subject"));
        let mut codes = Vec::new();
        for concept in &concepts {
            push_codings(&mut codes, Some(concept));
        }
        let service = service(concepts.iter().copied());
        let mut to_agency = None;
        for (position, performer) in request.performer.iter().enumerate() {
            let Some(performer) = performer else { continue };
            let found = self.agency(entries, performer, &format!("{pointer}/performer/{position}"));
            to_agency = to_agency.or(found);
        }
        let urgency = request
            .priority
            .map(|priority| match priority {
                RequestPriority::Routine => Urgency::Routine,
                RequestPriority::Urgent => Urgency::Urgent,
                RequestPriority::Asap | RequestPriority::Stat => Urgency::Emergency,
            })
            .or_else(|| self.urgency(concepts.iter().copied()));
        let occurrence = match &request.occurrence {
            Some(ServiceRequestOccurrence::DateTime(when)) => Moment::of(Some(when)),
            Some(ServiceRequestOccurrence::Period(period)) => Moment::of(period.start.as_ref()),
            _ => Moment::Missing,
        };
        let own_time = Moment::of(request.authored_on.as_ref()).or(occurrence);
        let patient = patient?;
        let times = self.when(entry, own_time, "ServiceRequest.authoredOn")?;
        let mut details = Details {
            referral: Some(Referral { to_agency, service, urgency }),
            summary: request.code.as_ref().and_then(|code| code.text.clone()),
            notes: notes(&request.note),
            codes,
            ..Details::default()
        };
        for coding in concepts.iter().flat_map(|concept| concept.coding.iter().flatten()) {
            apply_meaning(&mut details, meaning(coding));
        }
        Some(self.draft(entry, index, EventKind::NhsReferral, times, patient, &request.identifier, details))
    }

    fn flag(&mut self, entries: &[Entry], index: usize, entry: &Entry, flag: &Flag) -> Option<Draft> {
        let pointer = entry.pointer.as_str();
        let active = match flag.status {
            FlagStatus::Active => true,
            FlagStatus::Inactive => false,
            FlagStatus::EnteredInError => {
                self.skip(
                    index,
                    format!("{pointer}/status"),
                    "Flag status entered-in-error yields no Concordat event: skipped",
                );
                return None;
            }
        };
        // Only a mapped risk code (a grade of the risk table, or a Concordat risk factor) makes a Flag a risk
        // flag: a Flag about a diet or an allergy is not one. No level is ever guessed: an active risk flag
        // whose grade the trust has not mapped is refused, so that the trust maps it.
        let graded = self.grade(std::iter::once(&flag.code));
        let factors = risk_factors(std::iter::once(&flag.code).chain(flag.category.iter().flatten()));
        let risk_code = graded.is_some() || !risk_factors(std::iter::once(&flag.code)).is_empty();
        if !risk_code {
            let detail = "Flag is not a risk flag: none of its codes is a risk grade (risk_grades) or a Concordat risk \
                          factor, so it is not shared: skipped";
            self.skip(index, format!("{pointer}/code"), detail);
            return None;
        }
        let risk = match (active, graded) {
            (false, _) => None,
            (true, Some((level, source_scale))) => Some(Risk { level, factors, source_scale }),
            (true, None) => {
                self.problems.push(InputProblem::at(
                    format!("{pointer}/code"),
                    "an active risk Flag needs a grade: add a coding in urn:concordat:risk-level, or map the trust's \
                     grade in risk_grades (no level is assumed)",
                ));
                return None;
            }
        };
        let patient = self.patient(entries, Some(&flag.subject), &format!("{pointer}/subject"));
        let mut codes = Vec::new();
        push_codings(&mut codes, Some(&flag.code));
        for concept in flag.category.iter().flatten() {
            push_codings(&mut codes, Some(concept));
        }
        let own_time = Moment::of(flag.period.as_ref().and_then(|p| p.start.as_ref()));
        let patient = patient?;
        let times = self.when(entry, own_time, "Flag.period.start")?;
        let details = Details { summary: flag.code.text.clone(), codes, ..Details::default() };
        let mut draft = self.draft(entry, index, EventKind::NhsRiskFlag, times, patient, &flag.identifier, details);
        draft.risk = risk;
        Some(draft)
    }

    fn care_plan(&mut self, entries: &[Entry], index: usize, entry: &Entry, plan: &CarePlan) -> Option<Draft> {
        let pointer = entry.pointer.as_str();
        let crisis_plan = plan
            .category
            .iter()
            .flatten()
            .flat_map(|concept| concept.coding.iter().flatten())
            .any(|coding| meaning(coding) == Some(Meaning::CrisisPlan));
        if !crisis_plan {
            let detail = "CarePlan is not a mental health crisis plan (category SNOMED CT 736253002), so it is not \
                          shared: skipped";
            self.skip(index, format!("{pointer}/category"), detail);
            return None;
        }
        if matches!(plan.status, RequestStatus::Revoked | RequestStatus::EnteredInError) {
            let detail = "CarePlan status yields no Concordat event (expected active, completed, draft, on-hold or \
                          unknown): skipped";
            self.skip(index, format!("{pointer}/status"), detail);
            return None;
        }
        let patient = self.patient(entries, Some(&plan.subject), &format!("{pointer}/subject"));
        let mut codes = Vec::new();
        for concept in plan.category.iter().flatten() {
            push_codings(&mut codes, Some(concept));
        }
        let own_time =
            Moment::of(plan.period.as_ref().and_then(|p| p.start.as_ref())).or(Moment::of(plan.created.as_ref()));
        let patient = patient?;
        let times = self.when(entry, own_time, "CarePlan.period.start or CarePlan.created")?;
        let details = Details {
            summary: plan.description.clone().or_else(|| plan.title.clone()),
            notes: notes(&plan.note),
            codes,
            ..Details::default()
        };
        Some(self.draft(entry, index, EventKind::NhsCrisisPlan, times, patient, &plan.identifier, details))
    }

    fn communication(
        &mut self,
        entries: &[Entry],
        index: usize,
        entry: &Entry,
        communication: &Communication,
    ) -> Option<Draft> {
        let pointer = entry.pointer.as_str();
        if !matches!(
            communication.status,
            EventStatus::Completed | EventStatus::InProgress | EventStatus::Preparation | EventStatus::OnHold
        ) {
            let detail = "Communication status yields no Concordat event (expected completed, in-progress, \
                          preparation or on-hold): skipped";
            self.skip(index, format!("{pointer}/status"), detail);
            return None;
        }
        let concepts: Vec<&CodeableConcept> = communication
            .category
            .iter()
            .flatten()
            .chain(communication.topic.iter())
            .chain(communication.reason_code.iter().flatten())
            .collect();
        let mut kind = None;
        let mut details = Details::default();
        let mut codes = Vec::new();
        for concept in &concepts {
            for coding in concept.coding.iter().flatten() {
                match meaning(coding) {
                    Some(Meaning::Kind(found)) => {
                        if found.as_str().starts_with("nhs.") {
                            kind = kind.or(Some(found));
                        }
                        continue;
                    }
                    found => apply_meaning(&mut details, found),
                }
                push_coding(&mut codes, coding);
            }
        }
        let Some(kind) = kind else {
            let detail = format!(
                "Communication names no NHS event kind (a category coded in {} with an nhs.* kind), so it is not \
                 shared: skipped",
                mapping::CONCORDAT_EVENT_KIND
            );
            self.skip(index, format!("{pointer}/category"), detail);
            return None;
        };
        let patient = self.patient(entries, communication.subject.as_ref(), &format!("{pointer}/subject"));
        if kind == EventKind::NhsReferral {
            let service = service(concepts.iter().copied());
            let mut to_agency = None;
            for (position, recipient) in communication.recipient.iter().enumerate() {
                let Some(recipient) = recipient else { continue };
                let found = self.agency(entries, recipient, &format!("{pointer}/recipient/{position}"));
                to_agency = to_agency.or(found);
            }
            details.referral = Some(Referral { to_agency, service, urgency: None });
        }
        let mut texts: Vec<String> = communication
            .payload
            .iter()
            .flatten()
            .filter_map(|payload| match &payload.content {
                CommunicationPayloadContent::String(text) => Some(text.clone()),
                _ => None,
            })
            .collect();
        texts.extend(notes(&communication.note));
        details.notes = (!texts.is_empty()).then(|| texts.join("\n"));
        details.codes = codes;
        let own_time = Moment::of(communication.sent.as_ref()).or(Moment::of(communication.received.as_ref()));
        let patient = patient?;
        let times = self.when(entry, own_time, "Communication.sent")?;
        Some(self.draft(entry, index, kind, times, patient, &communication.identifier, details))
    }

    fn observation(&mut self, entries: &[Entry], index: usize, entry: &Entry, observation: &Observation) {
        let pointer = entry.pointer.as_str();
        let assessment = observation.code.coding.iter().flatten().any(|c| meaning(c) == Some(Meaning::RiskAssessment));
        if !assessment {
            let detail =
                "Observation is not a risk assessment (code SNOMED CT 225338004), so it is not shared: skipped";
            self.skip(index, format!("{pointer}/code"), detail);
            return;
        }
        if matches!(
            observation.status,
            ObservationStatus::Cancelled | ObservationStatus::EnteredInError | ObservationStatus::Unknown
        ) {
            let detail = "Observation status yields no Concordat event (expected registered, preliminary, final, \
                          amended or corrected): skipped";
            self.skip(index, format!("{pointer}/status"), detail);
            return;
        }
        let patient = self.patient(entries, observation.subject.as_ref(), &format!("{pointer}/subject"));
        let mut codes = Vec::new();
        push_codings(&mut codes, Some(&observation.code));
        let value = match &observation.value {
            Some(ObservationValue::CodeableConcept(concept)) => Some(concept),
            _ => None,
        };
        push_codings(&mut codes, value);
        let mut factor_concepts: Vec<&CodeableConcept> = Vec::new();
        for component in observation.component.iter().flatten() {
            let present = !matches!(component.value, Some(ObservationComponentValue::Boolean(false)));
            if present {
                factor_concepts.push(&component.code);
            }
        }
        let factors = risk_factors(factor_concepts.into_iter());
        let risk = self.grade(value.into_iter()).map(|(level, source_scale)| Risk {
            level,
            factors: factors.clone(),
            source_scale,
        });
        let issued = observation.issued.as_ref().and_then(instant).map_or(Moment::Missing, Moment::At);
        let own_time = match &observation.effective {
            Some(ObservationEffective::DateTime(when)) => Moment::of(Some(when)),
            Some(ObservationEffective::Instant(when)) => instant(when).map_or(Moment::Missing, Moment::At),
            Some(ObservationEffective::Period(period)) => Moment::of(period.start.as_ref()),
            _ => Moment::Missing,
        }
        .or(issued);
        let Some(patient) = patient else { return };
        let Some(times) = self.when(entry, own_time, "Observation.effective") else { return };
        let details = Details { codes, ..Details::default() };
        let key = patient.0.clone();
        let draft = self.draft(entry, index, EventKind::NhsRiskFlag, times, patient, &observation.identifier, details);
        self.risks.push(RiskFact { patient: Some(key), risk, draft });
    }

    fn consent(&mut self, entries: &[Entry], index: usize, entry: &Entry, consent: &FhirConsent) {
        let pointer = entry.pointer.as_str();
        let Some((patient, _)) = self.patient(entries, consent.patient.as_ref(), &format!("{pointer}/patient")) else {
            return;
        };
        let stated = consent
            .category
            .iter()
            .flatten()
            .chain(consent.policy_rule.iter())
            .flat_map(|concept| concept.coding.iter().flatten())
            .find_map(|coding| match meaning(coding) {
                Some(Meaning::LacksCapacity) => Some(ConsentStatus::LacksCapacity),
                Some(Meaning::ConsentNotSought) => Some(ConsentStatus::NotSought),
                _ => None,
            });
        let provision = consent.provision.as_ref();
        let status = match (stated, consent.status) {
            (_, ConsentState::EnteredInError | ConsentState::Inactive) => return,
            (Some(stated), _) => stated,
            (None, ConsentState::Active) => match provision.and_then(|provision| provision.r#type) {
                Some(ConsentProvisionType::Deny) => ConsentStatus::Refused,
                Some(ConsentProvisionType::Permit) | None => ConsentStatus::Given,
            },
            (None, ConsentState::Rejected) => ConsentStatus::Refused,
            (None, ConsentState::Proposed | ConsentState::Draft) => ConsentStatus::NotSought,
        };
        let scope = provision
            .into_iter()
            .flat_map(|provision| provision.purpose.iter().flatten())
            .filter_map(|coding| coding.code.clone())
            .collect();
        let recorded_at = Moment::of(consent.date_time.as_ref()).time();
        self.consents.push((Some(patient), Consent { status, scope, recorded_at }, index));
    }

    /// The urgency a coding of the urgency table states (BaRS clinical urgency, by default).
    fn urgency<'a>(&self, concepts: impl Iterator<Item = &'a CodeableConcept>) -> Option<Urgency> {
        concepts.flat_map(|concept| concept.coding.iter().flatten()).find_map(|coding| {
            let (system, code) = (coding.system.as_deref()?, coding.code.as_deref()?);
            let row = self.config.urgency_codes.iter().find(|row| row.system == system && row.code == code)?;
            Some(row.urgency)
        })
    }

    /// The first coding found in the risk table, with the grade as the agency gave it.
    fn grade<'a>(
        &self,
        concepts: impl Iterator<Item = &'a CodeableConcept>,
    ) -> Option<(concordat_episode::RiskLevel, Option<SourceScale>)> {
        concepts.flat_map(|concept| concept.coding.iter().flatten()).find_map(|coding| {
            let system = coding.system.as_deref()?;
            let code = coding.code.as_deref()?;
            let grade = self.config.risk_grades.iter().find(|grade| grade.system == system && grade.code == code)?;
            let source_scale = match (NonEmptyString::new(system), NonEmptyString::new(code)) {
                (Ok(scheme), Ok(value)) => Some(SourceScale { scheme, value }),
                _ => None,
            };
            Some((grade.level, source_scale))
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Small readers over FHIR data types.

#[derive(Default)]
struct PlaceFacts {
    /// A place of safety stated in Concordat's code system.
    kind: Option<PlaceOfSafetyKind>,
    /// An emergency department, by type or Location type.
    emergency: bool,
    name: Option<String>,
    ods_code: Option<OdsCode>,
}

impl PlaceFacts {
    fn read_type(&mut self, concept: &CodeableConcept) {
        for coding in concept.coding.iter().flatten() {
            match meaning(coding) {
                Some(Meaning::PlaceOfSafety(kind)) => self.kind = self.kind.or(Some(kind)),
                Some(Meaning::EmergencyDepartment) => self.emergency = true,
                _ => {}
            }
        }
    }

    /// Reads a Location's place-of-safety type, name and ODS code; returns the entry of its managing
    /// Organization when that was read for the code.
    fn read_location(&mut self, entries: &[Entry], location: &Location) -> Option<usize> {
        for concept in location.r#type.iter().flatten() {
            self.read_type(concept);
        }
        self.name = self.name.take().or_else(|| location.name.clone());
        let site = location.identifier.iter().flatten().find_map(|identifier| ods_of(identifier, mapping::ODS_SITE));
        let managing = location
            .managing_organization
            .as_ref()
            .and_then(|reference| reference.reference.as_deref())
            .and_then(|target| find_entry(entries, target));
        let managing_code = managing.and_then(|index| entries.get(index)).and_then(|entry| match &entry.parsed {
            Parsed::Organization(organization) => ods_code(&organization.identifier),
            _ => None,
        });
        self.ods_code = self.ods_code.take().or(site).or(managing_code);
        managing
    }
}

/// The concepts of an Encounter that the gate and `details.codes` read: its type, service type and reasons.
fn encounter_concepts(encounter: &Encounter) -> Vec<&CodeableConcept> {
    encounter
        .r#type
        .iter()
        .flatten()
        .chain(encounter.service_type.iter())
        .chain(encounter.reason_code.iter().flatten())
        .collect()
}

/// Whether a discharge disposition states the outcome in Concordat's own code system.
fn stated_disposition(concept: Option<&CodeableConcept>) -> bool {
    concept
        .into_iter()
        .flat_map(|concept| concept.coding.iter().flatten())
        .any(|coding| matches!(meaning(coding), Some(Meaning::Disposition(_))))
}

fn ods_code(identifiers: &[Option<FhirIdentifier>]) -> Option<OdsCode> {
    identifiers.iter().flatten().find_map(|identifier| ods_of(identifier, mapping::ODS_ORGANIZATION))
}

fn ods_of(identifier: &FhirIdentifier, system: &str) -> Option<OdsCode> {
    if identifier.system.as_deref() != Some(system) {
        return None;
    }
    identifier.value.as_deref().and_then(|value| OdsCode::new(value).ok())
}

fn find_entry(entries: &[Entry], target: &str) -> Option<usize> {
    if let Some(found) = entries.iter().position(|entry| entry.full_url.as_deref() == Some(target)) {
        return Some(found);
    }
    // `Type/id`, `Type/id/_history/n`, or an absolute URL ending in either.
    let without_history = target.split("/_history/").next().unwrap_or(target);
    let mut parts = without_history.rsplit('/');
    let id = parts.next()?;
    let Some(resource_type) = parts.next() else {
        // A bare id, as some senders write (`"reference": "d5ff…"`): it resolves when exactly one entry has it.
        let mut matching = entries.iter().enumerate().filter(|(_, entry)| entry.id.as_deref() == Some(id));
        return match (matching.next(), matching.next()) {
            (Some((found, _)), None) if !id.contains(':') => Some(found),
            _ => None,
        };
    };
    entries.iter().position(|entry| entry.resource_type == resource_type && entry.id.as_deref() == Some(id))
}

fn entry_identifiers(parsed: &Parsed) -> &[Option<FhirIdentifier>] {
    match parsed {
        Parsed::Encounter(r) => &r.identifier,
        Parsed::EpisodeOfCare(r) => &r.identifier,
        Parsed::ServiceRequest(r) => &r.identifier,
        Parsed::Condition(r) => &r.identifier,
        Parsed::Flag(r) => &r.identifier,
        Parsed::CarePlan(r) => &r.identifier,
        Parsed::Consent(r) => &r.identifier,
        Parsed::Observation(r) => &r.identifier,
        Parsed::Communication(r) => &r.identifier,
        Parsed::Patient(_)
        | Parsed::Organization(_)
        | Parsed::Location(_)
        | Parsed::MessageHeader(_)
        | Parsed::Other
        | Parsed::Unread => &[],
    }
}

fn identifier(identifier: &FhirIdentifier) -> Option<Identifier> {
    let system = NonEmptyString::new(identifier.system.clone()?).ok()?;
    let value = NonEmptyString::new(identifier.value.clone()?).ok()?;
    Some(Identifier { system, value })
}

/// Identifiers usable as refs: with a system and a value, never the NHS number (that is the subject's).
fn identifiers(list: &[Option<FhirIdentifier>]) -> Vec<Identifier> {
    let mut found: Vec<Identifier> = Vec::new();
    for item in list.iter().flatten().filter_map(identifier) {
        if item.system.as_str() != NHS_NUMBER_SYSTEM && !found.contains(&item) {
            found.push(item);
        }
    }
    found
}

fn patient_subject(patient: &Patient, pointer: &str, problems: &mut Vec<InputProblem>) -> Subject {
    let mut subject = Subject::default();
    for (position, item) in patient.identifier.iter().enumerate() {
        let Some(item) = item else { continue };
        if item.system.as_deref() == Some(NHS_NUMBER_SYSTEM) {
            let Some(value) = item.value.as_deref() else {
                problems.push(InputProblem::at(format!("{pointer}/identifier/{position}"), "NHS number has no value"));
                continue;
            };
            match NhsNumber::parse_lenient(value) {
                Ok(number) if subject.nhs_number.is_none() => subject.nhs_number = Some(number),
                Ok(number) if subject.nhs_number.as_ref() == Some(&number) => {}
                Ok(_) => problems.push(InputProblem::at(
                    format!("{pointer}/identifier/{position}/value"),
                    "a second, different NHS number for the same Patient",
                )),
                Err(error) => {
                    problems
                        .push(InputProblem::at(format!("{pointer}/identifier/{position}/value"), error.to_string()));
                }
            }
        } else if let Some(other) = identifier(item)
            && !subject.identifiers.contains(&other)
        {
            subject.identifiers.push(other);
        }
    }
    let names: Vec<_> = patient.name.iter().flatten().collect();
    let chosen = names
        .iter()
        .find(|name| matches!(name.r#use, Some(NameUse::Official)))
        .or_else(|| names.iter().find(|name| matches!(name.r#use, Some(NameUse::Usual))))
        .or_else(|| names.first());
    if let Some(name) = chosen {
        let given = name.given.iter().flatten().map(String::as_str).collect::<Vec<_>>().join(" ");
        let given = (!given.is_empty()).then_some(given);
        let family = name.family.clone().filter(|family| !family.is_empty());
        if given.is_some() || family.is_some() {
            subject.name = Some(Name { given, family });
        }
    }
    subject.birth_date = match &patient.birth_date {
        Some(Date::Date(date)) => {
            NaiveDate::from_ymd_opt(date.year(), u32::from(u8::from(date.month())), u32::from(date.day()))
        }
        _ => None,
    };
    subject.gender = patient.gender.map(|gender| match gender {
        AdministrativeGender::Male => Gender::Male,
        AdministrativeGender::Female => Gender::Female,
        AdministrativeGender::Other => Gender::Other,
        AdministrativeGender::Unknown => Gender::Unknown,
    });
    subject.ethnicity =
        patient.extension.iter().filter(|extension| extension.url == mapping::ETHNIC_CATEGORY_EXTENSION).find_map(
            |extension| match &extension.value {
                Some(ExtensionValue::CodeableConcept(concept)) => {
                    concept.coding.iter().flatten().find_map(canonical_coding)
                }
                Some(ExtensionValue::Coding(coding)) => canonical_coding(coding),
                _ => None,
            },
        );
    let addresses: Vec<_> = patient.address.iter().flatten().collect();
    let address =
        addresses.iter().find(|address| matches!(address.r#use, Some(AddressUse::Home))).or_else(|| addresses.first());
    subject.postcode_district = address.and_then(|address| address.postal_code.as_deref()).and_then(postcode_district);
    subject
}

/// The outward code of a postcode (`NV4 7QA` to `NV4`); a postcode that does not parse is left out rather than
/// guessed at.
fn postcode_district(postcode: &str) -> Option<PostcodeDistrict> {
    let compact: String = postcode.split_whitespace().collect();
    let outward = match postcode.split_whitespace().count() {
        0 => return None,
        1 if compact.len() >= 5 => compact.get(..compact.len() - 3)?.to_owned(),
        1 => compact,
        _ => postcode.split_whitespace().next()?.to_owned(),
    };
    PostcodeDistrict::new(outward).ok()
}

/// The classification concepts of one UK Core legal-status extension: its `legalStatusClassification` part,
/// and, leniently, a simple extension's own CodeableConcept value.
fn legal_status_concepts(extension: &Extension) -> Vec<&CodeableConcept> {
    let mut concepts: Vec<&CodeableConcept> = Vec::new();
    if let Some(ExtensionValue::CodeableConcept(concept)) = &extension.value {
        concepts.push(concept);
    }
    for part in extension.extension.iter().filter(|part| part.url == mapping::LEGAL_STATUS_CLASSIFICATION) {
        if let Some(ExtensionValue::CodeableConcept(concept)) = &part.value {
            concepts.push(concept);
        }
    }
    concepts
}

/// Reads UK Core's complex legal-status extension (England or Wales codes) into the canonical legal status,
/// keeping every code found.
fn legal_status(extensions: &[Extension], codes: &mut Vec<Coding>) -> Option<LegalStatus> {
    let mut found = None;
    for extension in extensions.iter().filter(|extension| extension.url == mapping::LEGAL_STATUS_EXTENSION) {
        let concepts = legal_status_concepts(extension);
        for coding in concepts.into_iter().flat_map(|concept| concept.coding.iter().flatten()) {
            push_coding(codes, coding);
            if let Some(Meaning::LegalStatus(status)) = meaning(coding) {
                found = found.or(Some(status));
            }
        }
    }
    found
}

fn service<'a>(concepts: impl Iterator<Item = &'a CodeableConcept>) -> Option<String> {
    let mut concepts = concepts;
    concepts.find_map(|concept| {
        concept
            .coding
            .iter()
            .flatten()
            .find(|coding| coding.system.as_deref() == Some(mapping::CONCORDAT_SERVICE))
            .and_then(|coding| coding.code.clone())
    })
}

fn risk_factors<'a>(concepts: impl Iterator<Item = &'a CodeableConcept>) -> Vec<RiskFactor> {
    let mut factors = Vec::new();
    for coding in concepts.flat_map(|concept| concept.coding.iter().flatten()) {
        if let Some(Meaning::RiskFactor(factor)) = meaning(coding)
            && !factors.contains(&factor)
        {
            factors.push(factor);
        }
    }
    factors
}

/// Fills the details a coded fact states (a Communication's or ServiceRequest's category and reasons).
fn apply_meaning(details: &mut Details, meaning: Option<Meaning>) {
    match meaning {
        Some(Meaning::Disposition(disposition)) => details.disposition = Some(disposition),
        Some(Meaning::LegalStatus(status)) => details.legal_status = Some(status),
        Some(Meaning::PlaceOfSafety(kind)) => {
            details.place_of_safety = Some(PlaceOfSafety { kind, name: None, ods_code: None });
        }
        _ => {}
    }
}

fn meaning(coding: &FhirCoding) -> Option<Meaning> {
    mapping::lookup(coding.system.as_deref()?, coding.code.as_deref()?)
}

fn canonical_coding(coding: &FhirCoding) -> Option<Coding> {
    Some(Coding {
        system: NonEmptyString::new(coding.system.clone()?).ok()?,
        code: NonEmptyString::new(coding.code.clone()?).ok()?,
        display: coding.display.clone(),
    })
}

fn push_coding(codes: &mut Vec<Coding>, coding: &FhirCoding) {
    if let Some(coding) = canonical_coding(coding)
        && !codes.contains(&coding)
    {
        codes.push(coding);
    }
}

fn push_codings(codes: &mut Vec<Coding>, concept: Option<&CodeableConcept>) {
    for coding in concept.into_iter().flat_map(|concept| concept.coding.iter().flatten()) {
        push_coding(codes, coding);
    }
}

fn notes(annotations: &[Option<Annotation>]) -> Option<String> {
    let texts: Vec<&str> = annotations.iter().flatten().map(|note| note.text.as_str()).collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

pub(crate) fn instant(instant: &Instant) -> Option<Timestamp> {
    let value = instant.0;
    let offset = FixedOffset::east_opt(value.offset().whole_seconds())?;
    let utc = ChronoDateTime::from_timestamp(value.unix_timestamp(), value.nanosecond())?;
    Some(Timestamp(utc.with_timezone(&offset)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postcode_districts_are_outward_codes() {
        let district = |text| postcode_district(text).map(|district| district.as_str().to_owned());
        assert_eq!(district("NV4 7QA"), Some("NV4".to_owned()));
        assert_eq!(district("nv47qa"), Some("NV4".to_owned()));
        assert_eq!(district("NV4"), Some("NV4".to_owned()));
        assert_eq!(district("EC1A 1BB"), Some("EC1A".to_owned()));
        assert_eq!(district("not a postcode"), None);
        assert_eq!(district(""), None);
    }

    #[test]
    fn content_types_ignore_parameters_and_case() {
        assert!(check_content_type("application/fhir+json; fhirVersion=4.0").is_ok());
        assert!(check_content_type("Application/JSON").is_ok());
        assert!(matches!(check_content_type("text/csv"), Err(IngestError::UnsupportedContentType { .. })));
    }
}
