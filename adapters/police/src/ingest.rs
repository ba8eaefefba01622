//! `police-incident.v1` → canonical crisis events.
//!
//! A payload is read in three passes, each reporting every problem it finds: JSON syntax (line and column),
//! the published schema (JSON Pointers), then the rules a schema cannot state (the NHS number's check
//! digit, the configured risk tables, the sending force), checked while mapping. Events are returned only
//! when all three passes found nothing.
//! This module reads no clock and does no I/O; it does not decide who may see what (the policy does).

use concordat_episode::{
    AgencyId, Coding, Consent, Conveyance, CrisisEvent, Details, EPISODE_SYSTEM, EpisodeLink, EventId, EventKind,
    GridRef, Identifier, IngestContext, IngestError, InputProblem, Location, NHS_NUMBER_SYSTEM, Name, NhsNumber,
    NonEmptyString, OdsCode, PlaceOfSafety, PostcodeDistrict, Provenance, Referral, Risk, RiskLevel, Sha256Hex, Source,
    SourceScale, Subject, Timestamp, age_on, police_incident_system,
};
use serde_json::Value;

use crate::format::{FORMAT, Incident, NativeCoding, NativeIdentifier, NativeRisk, Person, Report};
use crate::mapping::{self, PoliceConfig, THRIVE, ThriveLetter};
use crate::schema;

/// The adapter's name in `provenance.adapter`.
pub const ADAPTER: &str = "police";

/// The media types `ingest` reads.
pub const CONTENT_TYPES: &[&str] = &["application/json"];

pub(crate) fn ingest(
    payload: &[u8],
    cx: &IngestContext,
    config: &PoliceConfig,
) -> Result<Vec<CrisisEvent>, IngestError> {
    check_content_type(&cx.content_type)?;
    // A key named twice is refused: which value counts would otherwise depend on the parser.
    let value: Value = concordat_episode::read_json(payload).map_err(|error| IngestError::json_syntax(&error))?;
    // The digest is of the incident's meaning (RFC 8785), so a resend with other whitespace or key order
    // derives the same event ids and dedupes; any change to a value derives new ones.
    let payload_sha256 = concordat_episode::canonical_digest(&value);
    let problems = schema::check(&value);
    if !problems.is_empty() {
        return Err(IngestError::Invalid(problems));
    }
    let incident: Incident = serde_json::from_value(value).map_err(|error| {
        IngestError::invalid(
            "",
            format!(
                "valid against police-incident.v1 but not the adapter's types ({})",
                concordat_episode::json_error_category(&error)
            ),
        )
    })?;
    let Some(provenance) = provenance(cx, payload_sha256.clone()) else {
        return Err(IngestError::invalid("", "the adapter's own name, version or format is empty"));
    };
    let mut problems = Vec::new();
    let events = Mapper { incident: &incident, cx, config, payload_sha256, provenance }.events(&mut problems);
    if problems.is_empty() { Ok(events) } else { Err(IngestError::Invalid(problems)) }
}

fn check_content_type(content_type: &str) -> Result<(), IngestError> {
    // The contract says parameters are stripped, but a stray `; charset=utf-8` must not turn into a 415.
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if CONTENT_TYPES.iter().any(|known| known.eq_ignore_ascii_case(essence)) {
        Ok(())
    } else {
        Err(IngestError::UnsupportedContentType {
            content_type: content_type.to_owned(),
            expected: CONTENT_TYPES.iter().map(|known| (*known).to_owned()).collect(),
        })
    }
}

/// Everything one incident's events share, built once.
struct Mapper<'a> {
    incident: &'a Incident,
    cx: &'a IngestContext,
    config: &'a PoliceConfig,
    payload_sha256: Sha256Hex,
    provenance: Provenance,
}

/// The parts every event of one incident carries.
struct Common {
    refs: Vec<Identifier>,
    subject: Subject,
    risk: Option<Risk>,
    consent: Consent,
}

impl Mapper<'_> {
    fn events(&self, problems: &mut Vec<InputProblem>) -> Vec<CrisisEvent> {
        let incident = self.incident;
        if incident.force != self.cx.agency.as_str() {
            problems.push(InputProblem::at("/force", "does not match the agency that sent the payload"));
        }
        let common = Common {
            refs: self.refs(problems),
            subject: incident
                .person
                .as_ref()
                .map(|person| subject(person, incident.occurred_at, problems))
                .unwrap_or_default(),
            risk: incident.risk.as_ref().and_then(|risk| self.risk(risk, problems)),
            consent: incident.consent.as_ref().map_or_else(Consent::unknown, |consent| Consent {
                status: consent.status,
                scope: consent.scope.clone(),
                recorded_at: consent.recorded_at,
            }),
        };
        let legal_status = Some(mapping::legal_status(incident.power_used));
        let place_of_safety = incident.place_of_safety.as_ref().map(|place| PlaceOfSafety {
            kind: place.kind,
            name: place.name.clone(),
            ods_code: place.ods_code.as_ref().and_then(|code| {
                OdsCode::new(code.clone())
                    .map_err(|error| problems.push(InputProblem::at("/place_of_safety/ods_code", error.to_string())))
                    .ok()
            }),
        });
        let mut events = Vec::with_capacity(3);
        if incident.report == Report::Incident {
            let mut codes: Vec<Coding> =
                coding(mapping::INCIDENT_TYPE_SYSTEM, incident.incident_type.as_str(), None).into_iter().collect();
            codes.extend(incident.codes.iter().filter_map(native_coding));
            let details = Details {
                location: incident.location.as_ref().map(|location| Location {
                    postcode_district: location
                        .postcode_district
                        .as_ref()
                        .and_then(|district| postcode_district(district, "/location/postcode_district", problems)),
                    grid_ref: location.grid_ref.as_ref().and_then(|grid| {
                        GridRef::new(grid)
                            .map_err(|error| problems.push(InputProblem::at("/location/grid_ref", error.to_string())))
                            .ok()
                    }),
                    place_type: location.place_type,
                }),
                legal_status,
                place_of_safety: place_of_safety.clone(),
                force_used: incident.force_used,
                rcrp_decision: incident.rcrp_decision,
                notes: incident.notes.clone(),
                codes,
                ..Details::default()
            };
            let kind = mapping::primary_kind(incident.power_used);
            events.extend(self.event(&common, kind, None, incident.occurred_at, details, problems));
            if let Some(conveyance) = &incident.conveyance {
                let details = Details {
                    legal_status,
                    place_of_safety: place_of_safety.clone(),
                    conveyance: Some(Conveyance {
                        mode: conveyance.mode,
                        ambulance_not_used_reason: conveyance.ambulance_not_used_reason,
                    }),
                    ..Details::default()
                };
                let at = conveyance.started_at.unwrap_or(incident.occurred_at);
                events.extend(self.event(
                    &common,
                    EventKind::PoliceConveyance,
                    Some("conveyance"),
                    at,
                    details,
                    problems,
                ));
            }
        }
        if let Some(outcome) = &incident.outcome {
            let referral = outcome.referral.as_ref().map(|referral| Referral {
                to_agency: referral.to_agency.as_ref().and_then(|agency| {
                    AgencyId::new(agency.clone())
                        .map_err(|error| {
                            problems.push(InputProblem::at("/outcome/referral/to_agency", error.to_string()))
                        })
                        .ok()
                }),
                service: referral.service.clone(),
                urgency: referral.urgency,
            });
            let result = outcome.result.as_str();
            let details = Details {
                legal_status,
                disposition: Some(mapping::disposition(outcome.result)),
                referral,
                notes: outcome.notes.clone(),
                codes: coding(mapping::OUTCOME_SYSTEM, result, None).into_iter().collect(),
                ..Details::default()
            };
            events.extend(self.event(
                &common,
                EventKind::PoliceOutcome,
                Some("outcome"),
                outcome.closed_at,
                details,
                problems,
            ));
        }
        events
    }

    fn event(
        &self,
        common: &Common,
        kind: EventKind,
        part: Option<&str>,
        occurred_at: Timestamp,
        details: Details,
        problems: &mut Vec<InputProblem>,
    ) -> Option<CrisisEvent> {
        let number = &self.incident.incident_number;
        let record_ref = match part {
            Some(part) => format!("{number}#{part}"),
            None => number.clone(),
        };
        let event_id = EventId::derive(&self.cx.agency, &record_ref, &self.payload_sha256);
        Some(CrisisEvent {
            event_id,
            kind,
            occurred_at,
            recorded_at: self.incident.recorded_at,
            source: Source {
                agency: self.cx.agency.clone(),
                agency_kind: self.cx.agency_kind,
                system: self.incident.system.clone(),
                record_ref: non_empty(record_ref, "/incident_number", problems)?,
            },
            episode: EpisodeLink { episode_id: None, refs: common.refs.clone() },
            subject: common.subject.clone(),
            risk: common.risk.clone(),
            consent: common.consent.clone(),
            details,
            provenance: self.provenance.clone(),
        })
    }

    /// The incident's own reference first, then what the force quotes back, without repeats.
    fn refs(&self, problems: &mut Vec<InputProblem>) -> Vec<Identifier> {
        let mut refs = Vec::with_capacity(1 + self.incident.related_refs.len());
        let system = non_empty(police_incident_system(&self.cx.agency), "/force", problems);
        let value = non_empty(self.incident.incident_number.clone(), "/incident_number", problems);
        if let (Some(system), Some(value)) = (system, value) {
            refs.push(Identifier { system, value });
        }
        for (index, related) in self.incident.related_refs.iter().enumerate() {
            let pointer = format!("/related_refs/{index}");
            if related.system == NHS_NUMBER_SYSTEM {
                problems.push(InputProblem::at(
                    format!("{pointer}/system"),
                    "an NHS number is not an episode reference: send it as /person/nhs_number",
                ));
                continue;
            }
            if related.system == EPISODE_SYSTEM && uuid::Uuid::try_parse(&related.value).is_err() {
                problems.push(InputProblem::at(format!("{pointer}/value"), "a Concordat episode id must be a UUID"));
                continue;
            }
            if let Some(identifier) = identifier(related, &pointer, problems)
                && !refs.contains(&identifier)
            {
                refs.push(identifier);
            }
        }
        refs
    }

    fn risk(&self, risk: &NativeRisk, problems: &mut Vec<InputProblem>) -> Option<Risk> {
        let config = self.config;
        let is_thrive = risk.scheme.eq_ignore_ascii_case(THRIVE);
        let scheme_known = is_thrive || config.force_grades.keys().any(|name| name.eq_ignore_ascii_case(&risk.scheme));
        let mut unknown = |pointer: &str, detail: &str| {
            if config.unknown_grade.is_none() {
                problems.push(InputProblem::at(pointer, detail));
            }
        };
        if !scheme_known {
            unknown("/risk/scheme", "scheme is not `thrive` nor a force grading scheme in the adapter's configuration");
        }
        let overall = risk.grade.as_ref().map(|grade| {
            let level = config.level(&risk.scheme, grade);
            if level.is_none() && scheme_known {
                unknown("/risk/grade", "grade is not in the configured table for this scheme");
            }
            level
        });
        let mut letters = Vec::new();
        let mut counted: Option<Option<RiskLevel>> = None;
        if let Some(thrive) = &risk.thrive {
            for letter in ThriveLetter::ALL {
                let Some(grade) = thrive_grade(thrive, letter) else { continue };
                letters.push(format!("{}:{grade}", letter.initial()));
                let level = config.level(THRIVE, grade);
                if level.is_none() {
                    unknown(
                        &format!("/risk/thrive/{}", letter.as_str()),
                        "judgement is not in the configured THRIVE table",
                    );
                }
                if config.thrive_letters.contains(&letter) {
                    // An unknown judgement among the counted letters makes the whole level unknown.
                    counted = Some(match (counted, level) {
                        (None, level) => level,
                        (Some(Some(so_far)), Some(level)) => Some(so_far.max(level)),
                        (Some(_), _) => None,
                    });
                }
            }
            if overall.is_none() && counted.is_none() {
                unknown(
                    "/risk/thrive",
                    "none of the THRIVE letters that set the level is given, and there is no overall grade",
                );
            }
        }
        let level = match (overall, counted) {
            (Some(level), _) | (None, Some(level)) => level,
            (None, None) => None,
        }
        .or(config.unknown_grade)?;
        let value = match (&risk.grade, letters.is_empty()) {
            (Some(grade), true) => grade.clone(),
            (Some(grade), false) => format!("{grade} ({})", letters.join(" ")),
            (None, _) => letters.join(" "),
        };
        let scheme = non_empty(risk.scheme.clone(), "/risk/scheme", problems);
        let value = non_empty(value, "/risk/grade", problems);
        Some(Risk {
            level,
            factors: risk.factors.clone(),
            source_scale: scheme.zip(value).map(|(scheme, value)| SourceScale { scheme, value }),
        })
    }
}

fn thrive_grade(thrive: &crate::format::Thrive, letter: ThriveLetter) -> Option<&str> {
    match letter {
        ThriveLetter::Threat => thrive.threat.as_deref(),
        ThriveLetter::Harm => thrive.harm.as_deref(),
        ThriveLetter::Risk => thrive.risk.as_deref(),
        ThriveLetter::Investigation => thrive.investigation.as_deref(),
        ThriveLetter::Vulnerability => thrive.vulnerability.as_deref(),
        ThriveLetter::Engagement => thrive.engagement.as_deref(),
    }
}

fn subject(person: &Person, occurred_at: Timestamp, problems: &mut Vec<InputProblem>) -> Subject {
    let nhs_number = person.nhs_number.as_ref().and_then(|number| {
        NhsNumber::parse_lenient(number)
            .map_err(|error| problems.push(InputProblem::at("/person/nhs_number", error.to_string())))
            .ok()
    });
    if let Some(birth) = person.birth_date
        && age_on(birth, occurred_at.date()).is_none()
    {
        problems.push(InputProblem::at("/person/birth_date", "date of birth is after the incident"));
    }
    let identifiers = person
        .identifiers
        .iter()
        .enumerate()
        .filter_map(|(index, id)| identifier(id, &format!("/person/identifiers/{index}"), problems))
        .collect();
    Subject {
        nhs_number,
        identifiers,
        name: person
            .name
            .as_ref()
            .filter(|name| name.given.is_some() || name.family.is_some())
            .map(|name| Name { given: name.given.clone(), family: name.family.clone() }),
        birth_date: person.birth_date,
        gender: person.gender,
        ethnicity: person.self_defined_ethnicity.as_ref().and_then(|code| {
            let display = mapping::ethnicity_display(code);
            if display.is_none() {
                problems.push(InputProblem::at("/person/self_defined_ethnicity", "not a self-defined ethnicity code"));
            }
            coding(mapping::SELF_DEFINED_ETHNICITY_SYSTEM, code, display)
        }),
        postcode_district: person
            .postcode_district
            .as_ref()
            .and_then(|district| postcode_district(district, "/person/postcode_district", problems)),
    }
}

fn postcode_district(value: &str, pointer: &str, problems: &mut Vec<InputProblem>) -> Option<PostcodeDistrict> {
    PostcodeDistrict::new(value).map_err(|error| problems.push(InputProblem::at(pointer, error.to_string()))).ok()
}

fn identifier(native: &NativeIdentifier, pointer: &str, problems: &mut Vec<InputProblem>) -> Option<Identifier> {
    let system = NonEmptyString::new(native.system.clone());
    let value = NonEmptyString::new(native.value.clone());
    match (system, value) {
        (Ok(system), Ok(value)) => Some(Identifier { system, value }),
        _ => {
            problems.push(InputProblem::at(pointer, "identifier needs a non-empty system and value"));
            None
        }
    }
}

fn native_coding(native: &NativeCoding) -> Option<Coding> {
    coding(&native.system, &native.code, native.display.as_deref())
}

fn coding(system: &str, code: &str, display: Option<&str>) -> Option<Coding> {
    Some(Coding {
        system: NonEmptyString::new(system).ok()?,
        code: NonEmptyString::new(code).ok()?,
        display: display.map(str::to_owned),
    })
}

/// Wraps a string the schema already guarantees non-empty; should the two ever disagree, the payload is
/// refused at `pointer` rather than the adapter panicking.
fn non_empty(value: String, pointer: &str, problems: &mut Vec<InputProblem>) -> Option<NonEmptyString> {
    NonEmptyString::new(value).map_err(|_| problems.push(InputProblem::at(pointer, "must not be empty"))).ok()
}

/// The provenance every event of a payload carries.
fn provenance(cx: &IngestContext, payload_sha256: Sha256Hex) -> Option<Provenance> {
    Some(Provenance {
        adapter: NonEmptyString::new(ADAPTER).ok()?,
        adapter_version: NonEmptyString::new(env!("CARGO_PKG_VERSION")).ok()?,
        format: NonEmptyString::new(FORMAT).ok()?,
        payload_sha256,
        received_at: cx.received_at,
    })
}
