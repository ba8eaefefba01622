//! The one code table of the NHS adapter: which FHIR codes (SNOMED CT, NHS Data Dictionary value sets as UK Core
//! publishes them, HL7 terminology, and Concordat's own code systems) mean which canonical facts, plus the
//! default tables an operator may override in [`crate::NhsFhirConfig`].
//!
//! Only codes verified against public NHS or HL7 UK sources are listed as national codes; everything else uses a
//! `urn:concordat:*` code system that a trust's integration maps its local codes onto. A code found in a payload
//! that this table does not know is never dropped: the adapter keeps it, with its system, in `details.codes`.
//!
//! This module is data and lookups only; it is not where resources are read (that is [`crate::ingest`]) or
//! written (that is [`crate::render`]).
//!
//! | system | code | meaning |
//! | --- | --- | --- |
//! | SNOMED CT `http://snomed.info/sct` | `736253002` | mental health crisis plan: a CarePlan in this category is `nhs.crisis_plan` |
//! | SNOMED CT | `225338004` | risk assessment: an Observation with this code carries a risk level |
//! | UK Core Legal Status Classification (England), and (Wales) | `01` `02` `03` `04` `19` `20` | informal, s2, s3, s4, s135 (read as s135(1), the place-of-safety warrant), s136; the other codes but `98` and `99` are kept and still mark the record as crisis care |
//! | UK Core Discharge Destination (England), and the retired NHS Data Dictionary Discharge Destination | see [`default_discharge_destinations`] | a disposition, configurable |
//! | NHS Data Dictionary Treatment Function | see [`MENTAL_HEALTH_TREATMENT_FUNCTIONS`] | a mental-health service: marks the record as crisis care |
//! | BaRS clinical urgency | see [`default_urgency_codes`] | a referral's urgency, configurable |
//! | HL7 v3 ActCode | `EMER` | with s135/s136, the place of safety is an emergency department |
//! | HL7 v3 RoleCode | `ER` | with s135/s136, a Location of this type is an emergency department (alone it is no place of safety) |
//! | `urn:concordat:event-kind` | every `nhs.*` kind | a Communication that names the kind it reports |
//! | `urn:concordat:disposition` | every disposition | the outcome, stated precisely |
//! | `urn:concordat:place-of-safety` | `health_based`, `emergency_department`, `police_station`, `other` | an Encounter type or Location type that marks a place of safety |
//! | `urn:concordat:service` | any service name (`crisis_resolution_home_treatment`, `safe_haven`, ...) | the service referred to or providing care |
//! | `urn:concordat:risk-factor` | every risk factor | what a risk is about (Flag code, Observation component) |
//! | `urn:concordat:risk-level` | `none` ... `imminent` | the common scale itself (default risk table) |
//! | `urn:concordat:rag` | `red`, `amber`, `green` | a trust's red/amber/green grade (default risk table) |
//! | `urn:concordat:consent` | `lacks_capacity`, `not_sought` | a Consent category or policy rule that says why consent is not given |
//!
//! No SNOMED CT concept for "detained under s136" or "place of safety" was verified, so the legal-status codes
//! and the Concordat place-of-safety codes carry those facts until a terminology server confirms one.

use std::collections::BTreeMap;

use concordat_episode::{Disposition, EventKind, LegalStatus, PlaceOfSafetyKind, RiskFactor, RiskLevel, Urgency};
use serde::Deserialize;

/// SNOMED CT.
pub const SNOMED_CT: &str = "http://snomed.info/sct";
/// SNOMED CT 736253002 *Mental health crisis plan (record artifact)*.
pub const SNOMED_CRISIS_PLAN: &str = "736253002";
/// SNOMED CT 225338004 *Risk assessment (procedure)*.
pub const SNOMED_RISK_ASSESSMENT: &str = "225338004";
/// UK Core's legal-status extension on Encounter (a complex extension).
pub const LEGAL_STATUS_EXTENSION: &str = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-LegalStatus";
/// The sub-extension of [`LEGAL_STATUS_EXTENSION`] holding the classification code.
pub const LEGAL_STATUS_CLASSIFICATION: &str = "legalStatusClassification";
/// NHS Data Dictionary Legal Status Classification Code, as UK Core publishes it for England.
pub const LEGAL_STATUS_ENGLAND: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-LegalStatusClassificationEngland";
/// UK Core's ethnic-category extension on Patient.
pub const ETHNIC_CATEGORY_EXTENSION: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory";
/// NHS Wales Data Dictionary Legal Status, as UK Core publishes it for Wales (UK Core's own legal-status example
/// uses it). Its codes for informal, s2, s3, s4, s135 and s136 are those of England.
pub const LEGAL_STATUS_WALES: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-LegalStatusClassificationWales";
/// NHS Data Dictionary Discharge Destination, as UK Core publishes it for England.
pub const DISCHARGE_DESTINATION_ENGLAND: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestinationEngland";
/// The same Discharge Destination codes under the code system UK Core first published (now retired), which
/// older EPR interfaces still send.
pub const DISCHARGE_DESTINATION_DATA_DICTIONARY: &str =
    "https://fhir.hl7.org.uk/CodeSystem/NHSDataModelAndDictionary-DischargeDestination";
/// NHS Data Dictionary Treatment Function Code (Encounter.serviceType, HealthcareService.type).
pub const TREATMENT_FUNCTION: &str = "https://fhir.nhs.uk/CodeSystem/NHSDataModelAndDictionary-treatment-function";
/// The Booking and Referral Standard's clinical urgency (a BaRS ServiceRequest's `reasonCode`).
pub const BARS_CLINICAL_URGENCY: &str = "https://fhir.nhs.uk/CodeSystem/BARS-clinical-urgency";

/// The NHS Data Dictionary treatment functions that are mental-health services, each of which marks a record
/// as crisis care (the 7xx psychiatry functions). Learning disability (700), dementia assessment (727) and
/// neuropsychiatry (730) are left out on purpose: most of their records are not crisis care, and a trust whose
/// crisis pathway runs through them lists their codes in `crisis_codes`.
pub const MENTAL_HEALTH_TREATMENT_FUNCTIONS: &[(&str, &str)] = &[
    ("710", "Adult Mental Illness"),
    ("711", "Child and Adolescent Psychiatry"),
    ("712", "Forensic Psychiatry"),
    ("713", "Medical Psychotherapy"),
    ("715", "Old Age Psychiatry"),
    ("720", "Eating Disorders"),
    ("721", "Addiction Services"),
    ("722", "Liaison Psychiatry"),
    ("723", "Psychiatric Intensive Care"),
    ("724", "Perinatal Psychiatry"),
    ("725", "Mental Health Recovery and Rehabilitation"),
    ("726", "Mental Health Dual Diagnosis"),
];
/// HL7 v3 ActCode (Encounter.class).
pub const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// HL7 v3 RoleCode (Location.type).
pub const V3_ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
/// The ODS organisation code identifier system.
pub const ODS_ORGANIZATION: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// The ODS site code identifier system.
pub const ODS_SITE: &str = "https://fhir.nhs.uk/Id/ods-site-code";
/// Concordat: the agency id as an identifier system (Organization.identifier).
pub const CONCORDAT_AGENCY: &str = "urn:concordat:agency";
/// Concordat: a canonical event id as an identifier system.
pub const CONCORDAT_EVENT: &str = "urn:concordat:event";
/// Concordat: a policy decision id as an identifier system.
pub const CONCORDAT_DECISION: &str = "urn:concordat:decision";
/// Concordat: event kinds as a code system.
pub const CONCORDAT_EVENT_KIND: &str = "urn:concordat:event-kind";
/// Concordat: dispositions as a code system.
pub const CONCORDAT_DISPOSITION: &str = "urn:concordat:disposition";
/// Concordat: places of safety as a code system.
pub const CONCORDAT_PLACE_OF_SAFETY: &str = "urn:concordat:place-of-safety";
/// Concordat: services as a code system.
pub const CONCORDAT_SERVICE: &str = "urn:concordat:service";
/// Concordat: risk factors as a code system.
pub const CONCORDAT_RISK_FACTOR: &str = "urn:concordat:risk-factor";
/// Concordat: the common risk scale as a code system.
pub const CONCORDAT_RISK_LEVEL: &str = "urn:concordat:risk-level";
/// Concordat: red/amber/green risk grades as a code system.
pub const CONCORDAT_RAG: &str = "urn:concordat:rag";
/// Concordat: reasons consent is not given, as a code system.
pub const CONCORDAT_CONSENT: &str = "urn:concordat:consent";
/// Concordat: legal status (the canonical names) as a code system, used when rendering.
pub const CONCORDAT_LEGAL_STATUS: &str = "urn:concordat:legal-status";
/// The service name of a crisis resolution and home treatment team.
pub const SERVICE_CRHT: &str = "crisis_resolution_home_treatment";

/// What a code means to Concordat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// A mental health crisis plan (CarePlan category).
    CrisisPlan,
    /// A risk assessment (Observation code).
    RiskAssessment,
    /// A legal status.
    LegalStatus(LegalStatus),
    /// A place of safety of this kind.
    PlaceOfSafety(PlaceOfSafetyKind),
    /// An emergency department: the kind of place of safety when a detention makes it one, and no place of
    /// safety on its own (most people in an emergency department are not in crisis).
    EmergencyDepartment,
    /// An outcome.
    Disposition(Disposition),
    /// An event kind (Communication category).
    Kind(EventKind),
    /// A risk factor.
    RiskFactor(RiskFactor),
    /// The person could not consent (Mental Capacity Act).
    LacksCapacity,
    /// Nobody sought consent.
    ConsentNotSought,
}

/// Looks a code up in the table. `None` means "keep the code, it has no Concordat meaning".
pub fn lookup(system: &str, code: &str) -> Option<Meaning> {
    match system {
        SNOMED_CT => match code {
            SNOMED_CRISIS_PLAN => Some(Meaning::CrisisPlan),
            SNOMED_RISK_ASSESSMENT => Some(Meaning::RiskAssessment),
            _ => None,
        },
        LEGAL_STATUS_ENGLAND | LEGAL_STATUS_WALES => legal_status_england(code).map(Meaning::LegalStatus),
        CONCORDAT_LEGAL_STATUS => legal_status_name(code).map(Meaning::LegalStatus),
        V3_ROLE_CODE if code == "ER" => Some(Meaning::EmergencyDepartment),
        CONCORDAT_PLACE_OF_SAFETY => place_of_safety_name(code).map(Meaning::PlaceOfSafety),
        CONCORDAT_DISPOSITION => disposition_name(code).map(Meaning::Disposition),
        CONCORDAT_EVENT_KIND => code.parse::<EventKind>().ok().map(Meaning::Kind),
        CONCORDAT_RISK_FACTOR => risk_factor_name(code).map(Meaning::RiskFactor),
        CONCORDAT_CONSENT => match code {
            "lacks_capacity" => Some(Meaning::LacksCapacity),
            "not_sought" => Some(Meaning::ConsentNotSought),
            _ => None,
        },
        _ => None,
    }
}

/// NHS Data Dictionary Legal Status Classification Code (England) to the canonical legal status.
///
/// Code 19 covers both subsections of s135; it is read as s135(1), the warrant that brings a person to a place
/// of safety, because that is the case in which a place of safety receives them.
pub fn legal_status_england(code: &str) -> Option<LegalStatus> {
    match code {
        "01" => Some(LegalStatus::Informal),
        "02" => Some(LegalStatus::S2),
        "03" => Some(LegalStatus::S3),
        "04" => Some(LegalStatus::S4),
        "19" => Some(LegalStatus::S135_1),
        "20" => Some(LegalStatus::S136),
        _ => None,
    }
}

/// Whether a code is a Mental Health Act legal status (England or Wales): any code of either system but `98`
/// (not applicable, a non-psychiatric specialty) and `99` (not known). Codes without a canonical legal status
/// (s5(2), s37, a community treatment order, ...) still say that the record is about mental-health care.
pub fn is_mental_health_act_status(system: &str, code: &str) -> bool {
    matches!(system, LEGAL_STATUS_ENGLAND | LEGAL_STATUS_WALES) && !code.is_empty() && !matches!(code, "98" | "99")
}

/// Whether a code, by itself, marks a record as mental-health crisis care: a crisis plan or a risk assessment
/// (SNOMED CT), a Mental Health Act legal status, a mental-health treatment function, or any code of a
/// Concordat code system (`urn:concordat:*`), which a trust's integration uses only to map crisis data.
/// A trust's own signals (`crisis_codes`) are checked by the caller.
pub fn is_crisis_code(system: &str, code: &str) -> bool {
    match system {
        SNOMED_CT => matches!(code, SNOMED_CRISIS_PLAN | SNOMED_RISK_ASSESSMENT),
        LEGAL_STATUS_ENGLAND | LEGAL_STATUS_WALES => is_mental_health_act_status(system, code),
        TREATMENT_FUNCTION => MENTAL_HEALTH_TREATMENT_FUNCTIONS.iter().any(|(known, _)| *known == code),
        _ => system.starts_with("urn:concordat:") && !code.is_empty(),
    }
}

/// The canonical legal status back to the England code, where it has one (render).
pub fn legal_status_england_code(status: LegalStatus) -> Option<&'static str> {
    match status {
        LegalStatus::Informal => Some("01"),
        LegalStatus::S2 => Some("02"),
        LegalStatus::S3 => Some("03"),
        LegalStatus::S4 => Some("04"),
        LegalStatus::S135_1 | LegalStatus::S135_2 => Some("19"),
        LegalStatus::S136 => Some("20"),
        LegalStatus::Mca | LegalStatus::None => None,
    }
}

/// The wire name of a legal status (as in the canonical schema).
pub fn legal_status_wire(status: LegalStatus) -> &'static str {
    match status {
        LegalStatus::Informal => "informal",
        LegalStatus::S2 => "s2",
        LegalStatus::S3 => "s3",
        LegalStatus::S4 => "s4",
        LegalStatus::S135_1 => "s135_1",
        LegalStatus::S135_2 => "s135_2",
        LegalStatus::S136 => "s136",
        LegalStatus::Mca => "mca",
        LegalStatus::None => "none",
    }
}

fn legal_status_name(code: &str) -> Option<LegalStatus> {
    [
        LegalStatus::Informal,
        LegalStatus::S2,
        LegalStatus::S3,
        LegalStatus::S4,
        LegalStatus::S135_1,
        LegalStatus::S135_2,
        LegalStatus::S136,
        LegalStatus::Mca,
        LegalStatus::None,
    ]
    .into_iter()
    .find(|status| legal_status_wire(*status) == code)
}

/// Whether a legal status is a police power that brings a person to a place of safety.
pub fn is_place_of_safety_power(status: LegalStatus) -> bool {
    matches!(status, LegalStatus::S135_1 | LegalStatus::S135_2 | LegalStatus::S136)
}

/// Whether a legal status is a formal admission under the Mental Health Act.
pub fn is_formal_admission(status: LegalStatus) -> bool {
    matches!(status, LegalStatus::S2 | LegalStatus::S3 | LegalStatus::S4)
}

/// The wire name of a place-of-safety kind.
pub fn place_of_safety_wire(kind: PlaceOfSafetyKind) -> &'static str {
    match kind {
        PlaceOfSafetyKind::HealthBased => "health_based",
        PlaceOfSafetyKind::EmergencyDepartment => "emergency_department",
        PlaceOfSafetyKind::PoliceStation => "police_station",
        PlaceOfSafetyKind::Other => "other",
    }
}

fn place_of_safety_name(code: &str) -> Option<PlaceOfSafetyKind> {
    [
        PlaceOfSafetyKind::HealthBased,
        PlaceOfSafetyKind::EmergencyDepartment,
        PlaceOfSafetyKind::PoliceStation,
        PlaceOfSafetyKind::Other,
    ]
    .into_iter()
    .find(|kind| place_of_safety_wire(*kind) == code)
}

fn disposition_name(code: &str) -> Option<Disposition> {
    [
        Disposition::AdmittedFormal,
        Disposition::AdmittedInformal,
        Disposition::DischargedWithFollowUp,
        Disposition::ReferredHomeTreatment,
        Disposition::NoFurtherAction,
        Disposition::ReferredElsewhere,
    ]
    .into_iter()
    .find(|disposition| disposition.as_str() == code)
}

/// Every risk factor with its wire name.
pub const RISK_FACTORS: &[(RiskFactor, &str)] = &[
    (RiskFactor::SelfHarm, "self_harm"),
    (RiskFactor::SuicidalIdeation, "suicidal_ideation"),
    (RiskFactor::HarmToOthers, "harm_to_others"),
    (RiskFactor::HarmFromOthers, "harm_from_others"),
    (RiskFactor::SubstanceUse, "substance_use"),
    (RiskFactor::SafeguardingChild, "safeguarding_child"),
    (RiskFactor::SafeguardingAdult, "safeguarding_adult"),
    (RiskFactor::PhysicalHealth, "physical_health"),
    (RiskFactor::Weapons, "weapons"),
    (RiskFactor::MissingPerson, "missing_person"),
    (RiskFactor::DomesticAbuse, "domestic_abuse"),
];

fn risk_factor_name(code: &str) -> Option<RiskFactor> {
    RISK_FACTORS.iter().find(|(_, name)| *name == code).map(|(factor, _)| *factor)
}

/// The wire name of a risk factor.
pub fn risk_factor_wire(factor: RiskFactor) -> &'static str {
    RISK_FACTORS.iter().find(|(known, _)| *known == factor).map_or("other", |(_, name)| name)
}

/// One row of the risk table: a grade in some scheme and the level it means on the common scale.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskGrade {
    /// The code system of the grade (an Observation's `valueCodeableConcept.coding.system`, or a Flag code's).
    pub system: String,
    /// The grade's code.
    pub code: String,
    /// The level on the common scale.
    pub level: RiskLevel,
}

/// The default risk table: the common scale under `urn:concordat:risk-level`, and red/amber/green under
/// `urn:concordat:rag` (red high, amber moderate, green low).
pub fn default_risk_grades() -> Vec<RiskGrade> {
    let mut grades: Vec<RiskGrade> = RiskLevel::ALL
        .iter()
        .map(|level| RiskGrade {
            system: CONCORDAT_RISK_LEVEL.to_owned(),
            code: level.as_str().to_owned(),
            level: *level,
        })
        .collect();
    for (code, level) in [("red", RiskLevel::High), ("amber", RiskLevel::Moderate), ("green", RiskLevel::Low)] {
        grades.push(RiskGrade { system: CONCORDAT_RAG.to_owned(), code: code.to_owned(), level });
    }
    grades
}

/// One row of the urgency table: a code and the urgency of the referral that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrgencyCode {
    /// The code system (a ServiceRequest `reasonCode` or `category` coding's system).
    pub system: String,
    /// The code.
    pub code: String,
    /// The referral's urgency.
    pub urgency: Urgency,
}

/// The default urgency table: BaRS clinical urgency `clin-1` ("progress urgently", as NHS England's published
/// BaRS examples code it) is `urgent`. BaRS defines more codes than were verified here; a trust maps the ones
/// its system sends in `urgency_codes`. A ServiceRequest's own `priority` is read first.
pub fn default_urgency_codes() -> Vec<UrgencyCode> {
    vec![UrgencyCode { system: BARS_CLINICAL_URGENCY.to_owned(), code: "clin-1".to_owned(), urgency: Urgency::Urgent }]
}

/// The default Discharge Destination (England) table, read under both [`DISCHARGE_DESTINATION_ENGLAND`] and
/// [`DISCHARGE_DESTINATION_DATA_DICTIONARY`]. A finished Encounter that is an assessment outcome (at a place of
/// safety, or with a legal status) and whose `dischargeDisposition` has one of these codes yields that
/// disposition; an admission (53) is `admitted_formal` instead of `admitted_informal`
/// when the Encounter's legal status is s2, s3 or s4. Codes not listed (79 died, 98 not applicable, 99 not
/// known, ...) give no disposition and are kept in `details.codes`.
///
/// | code | Data Dictionary meaning | disposition |
/// | --- | --- | --- |
/// | 19 | usual place of residence | `no_further_action` |
/// | 29 | temporary place of residence | `no_further_action` |
/// | 53 | NHS ward for mental illness or learning disabilities | `admitted_informal` |
/// | 49, 50, 84 | high security or medium secure unit | `admitted_formal` |
/// | 51, 87 | another hospital (general ward, non-NHS hospital) | `referred_elsewhere` |
/// | 54, 65, 85 | care home, local-authority residential accommodation | `discharged_with_follow_up` |
///
/// A trust that knows more than the destination (a CRHT referral, follow-up arranged) says so with a second
/// coding in `urn:concordat:disposition`, which takes precedence.
pub fn default_discharge_destinations() -> BTreeMap<String, Disposition> {
    [
        ("19", Disposition::NoFurtherAction),
        ("29", Disposition::NoFurtherAction),
        ("53", Disposition::AdmittedInformal),
        ("49", Disposition::AdmittedFormal),
        ("50", Disposition::AdmittedFormal),
        ("84", Disposition::AdmittedFormal),
        ("51", Disposition::ReferredElsewhere),
        ("87", Disposition::ReferredElsewhere),
        ("54", Disposition::DischargedWithFollowUp),
        ("65", Disposition::DischargedWithFollowUp),
        ("85", Disposition::DischargedWithFollowUp),
    ]
    .into_iter()
    .map(|(code, disposition)| (code.to_owned(), disposition))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_status_codes_round_trip() {
        for code in ["01", "02", "03", "04", "19", "20"] {
            let status = legal_status_england(code).unwrap();
            assert_eq!(legal_status_england_code(status), Some(code));
            assert_eq!(lookup(CONCORDAT_LEGAL_STATUS, legal_status_wire(status)), Some(Meaning::LegalStatus(status)));
        }
        assert_eq!(legal_status_england("99"), None);
    }

    #[test]
    fn concordat_code_systems_cover_every_value() {
        for kind in EventKind::ALL {
            assert_eq!(lookup(CONCORDAT_EVENT_KIND, kind.as_str()), Some(Meaning::Kind(*kind)));
        }
        for (factor, name) in RISK_FACTORS {
            assert_eq!(lookup(CONCORDAT_RISK_FACTOR, name), Some(Meaning::RiskFactor(*factor)));
            assert_eq!(risk_factor_wire(*factor), *name);
        }
        for disposition in default_discharge_destinations().values() {
            assert_eq!(lookup(CONCORDAT_DISPOSITION, disposition.as_str()), Some(Meaning::Disposition(*disposition)));
        }
        assert_eq!(lookup(SNOMED_CT, "999999999"), None);
    }

    #[test]
    fn default_risk_table_covers_the_scale() {
        let grades = default_risk_grades();
        for level in RiskLevel::ALL {
            assert!(grades.iter().any(|grade| grade.level == *level && grade.system == CONCORDAT_RISK_LEVEL));
        }
    }
}
