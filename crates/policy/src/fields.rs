//! The canonical event's fields as the policy sees them: every JSON Pointer an allow-list may name, which of
//! them form the always-shared envelope, which are sensitive, and sets of fields as bit masks.
//!
//! The table here mirrors `schemas/crisis-event.v1.json` (a test walks the schema and compares), so that
//! deciding and projecting never parse pointers at run time. It is not the schema: loading still checks every
//! pointer against the schema itself ([`CanonicalFields`]).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::Value;

macro_rules! fields {
    ($( $variant:ident = $pointer:literal, $parent:ident, $class:ident, $label:literal; )*) => {
        /// A field of the canonical event, named by its JSON Pointer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[allow(missing_docs)]
        pub enum Field {
            $( $variant, )*
        }

        impl Field {
            /// Every field, parents before children, in schema order.
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];

            /// The JSON Pointer.
            pub const fn pointer(self) -> &'static str {
                match self { $(Field::$variant => $pointer,)* }
            }

            /// The enclosing field; `None` for top-level fields.
            pub const fn parent(self) -> Option<Field> {
                match self { $(Field::$variant => fields!(@parent $parent),)* }
            }

            /// What the field holds, in plain words (for the rendered agreement).
            pub const fn label(self) -> &'static str {
                match self { $(Field::$variant => $label,)* }
            }

            const fn class(self) -> Class {
                match self { $(Field::$variant => Class::$class,)* }
            }
        }
    };
    (@parent Root) => { None };
    (@parent $parent:ident) => { Some(Field::$parent) };
}

/// How the policy treats a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Part of the envelope: always shared so that the message can be filed and correlated.
    Envelope,
    /// Shared only when an allow-list names it.
    Ordinary,
    /// Personal or clinical detail: shared only when named by itself or by one of its own ancestors that is
    /// also sensitive, never by implication from a parent such as `/details`.
    Sensitive,
}

fields! {
    EventId = "/event_id", Root, Envelope, "event id";
    Kind = "/kind", Root, Envelope, "event kind";
    OccurredAt = "/occurred_at", Root, Envelope, "when it happened";
    RecordedAt = "/recorded_at", Root, Envelope, "when the source recorded it";
    Source = "/source", Root, Envelope, "sending agency and its record reference";
    SourceAgency = "/source/agency", Source, Envelope, "sending agency";
    SourceAgencyKind = "/source/agency_kind", Source, Envelope, "kind of sending agency";
    SourceSystem = "/source/system", Source, Envelope, "sending system";
    SourceRecordRef = "/source/record_ref", Source, Envelope, "sender's record reference";
    Episode = "/episode", Root, Envelope, "episode id and correlating references";
    EpisodeEpisodeId = "/episode/episode_id", Episode, Envelope, "episode id";
    EpisodeRefs = "/episode/refs", Episode, Envelope, "correlating references (incident numbers, encounter ids)";
    Subject = "/subject", Root, Ordinary, "the person";
    SubjectNhsNumber = "/subject/nhs_number", Subject, Sensitive, "NHS number";
    SubjectIdentifiers = "/subject/identifiers", Subject, Sensitive, "other identifiers of the person";
    SubjectName = "/subject/name", Subject, Sensitive, "name";
    SubjectNameGiven = "/subject/name/given", SubjectName, Sensitive, "given names";
    SubjectNameFamily = "/subject/name/family", SubjectName, Sensitive, "family name";
    SubjectBirthDate = "/subject/birth_date", Subject, Sensitive, "date of birth";
    SubjectGender = "/subject/gender", Subject, Sensitive, "gender";
    SubjectEthnicity = "/subject/ethnicity", Subject, Sensitive, "ethnic category";
    SubjectEthnicitySystem = "/subject/ethnicity/system", SubjectEthnicity, Sensitive, "ethnic category code system";
    SubjectEthnicityCode = "/subject/ethnicity/code", SubjectEthnicity, Sensitive, "ethnic category code";
    SubjectEthnicityDisplay = "/subject/ethnicity/display", SubjectEthnicity, Sensitive, "ethnic category text";
    SubjectPostcodeDistrict = "/subject/postcode_district", Subject, Sensitive, "home postcode district";
    Risk = "/risk", Root, Ordinary, "risk on the common scale";
    RiskLevel = "/risk/level", Risk, Ordinary, "risk level";
    RiskFactors = "/risk/factors", Risk, Ordinary, "risk factors";
    RiskSourceScale = "/risk/source_scale", Risk, Ordinary, "the sender's own risk grade";
    RiskSourceScaleScheme = "/risk/source_scale/scheme", RiskSourceScale, Ordinary, "risk grading scheme";
    RiskSourceScaleValue = "/risk/source_scale/value", RiskSourceScale, Ordinary, "risk grade";
    Consent = "/consent", Root, Ordinary, "consent to sharing";
    ConsentStatus = "/consent/status", Consent, Envelope, "consent status";
    ConsentScope = "/consent/scope", Consent, Ordinary, "what the consent covers";
    ConsentRecordedAt = "/consent/recorded_at", Consent, Ordinary, "when consent was recorded";
    Details = "/details", Root, Ordinary, "event details";
    DetailsLocation = "/details/location", Details, Ordinary, "where, coarsely";
    DetailsLocationPostcodeDistrict = "/details/location/postcode_district", DetailsLocation, Ordinary, "postcode district of the place";
    DetailsLocationGridRef = "/details/location/grid_ref", DetailsLocation, Ordinary, "coarse grid reference";
    DetailsLocationPlaceType = "/details/location/place_type", DetailsLocation, Ordinary, "kind of place";
    DetailsLegalStatus = "/details/legal_status", Details, Ordinary, "power or legal status used";
    DetailsPlaceOfSafety = "/details/place_of_safety", Details, Ordinary, "place of safety";
    DetailsPlaceOfSafetyKind = "/details/place_of_safety/kind", DetailsPlaceOfSafety, Ordinary, "kind of place of safety";
    DetailsPlaceOfSafetyName = "/details/place_of_safety/name", DetailsPlaceOfSafety, Ordinary, "name of the place of safety";
    DetailsPlaceOfSafetyOdsCode = "/details/place_of_safety/ods_code", DetailsPlaceOfSafety, Ordinary, "ODS code of the place of safety";
    DetailsConveyance = "/details/conveyance", Details, Ordinary, "conveyance";
    DetailsConveyanceMode = "/details/conveyance/mode", DetailsConveyance, Ordinary, "vehicle used";
    DetailsConveyanceAmbulanceNotUsedReason = "/details/conveyance/ambulance_not_used_reason", DetailsConveyance, Ordinary, "why an ambulance was not used";
    DetailsForceUsed = "/details/force_used", Details, Ordinary, "whether force was used";
    DetailsPoliceActionRequired = "/details/police_action_required", Details, Ordinary, "whether police action is asked for";
    DetailsRcrpDecision = "/details/rcrp_decision", Details, Ordinary, "Right Care, Right Person decision";
    DetailsDisposition = "/details/disposition", Details, Ordinary, "outcome (admitted, discharged, no further action)";
    DetailsReferral = "/details/referral", Details, Ordinary, "referral";
    DetailsReferralToAgency = "/details/referral/to_agency", DetailsReferral, Ordinary, "agency referred to";
    DetailsReferralService = "/details/referral/service", DetailsReferral, Ordinary, "service referred to";
    DetailsReferralUrgency = "/details/referral/urgency", DetailsReferral, Ordinary, "urgency of the referral";
    DetailsFollowUpAt = "/details/follow_up_at", Details, Ordinary, "when follow-up is planned";
    DetailsOutcomeOf = "/details/outcome_of", Details, Ordinary, "which outcome event feedback reports";
    DetailsSummary = "/details/summary", Details, Sensitive, "summary (e.g. of a crisis plan)";
    DetailsNotes = "/details/notes", Details, Sensitive, "free-text notes";
    DetailsCodes = "/details/codes", Details, Sensitive, "clinical and other codes";
    Provenance = "/provenance", Root, Envelope, "how the event was made";
    ProvenanceAdapter = "/provenance/adapter", Provenance, Envelope, "adapter";
    ProvenanceAdapterVersion = "/provenance/adapter_version", Provenance, Envelope, "adapter version";
    ProvenanceFormat = "/provenance/format", Provenance, Envelope, "native format";
    ProvenancePayloadSha256 = "/provenance/payload_sha256", Provenance, Envelope, "payload digest";
    ProvenanceReceivedAt = "/provenance/received_at", Provenance, Envelope, "when Concordat received it";
}

impl Field {
    const fn bit(self) -> u128 {
        1u128 << (self as u32)
    }

    /// Looks a field up by its JSON Pointer.
    pub fn from_pointer(pointer: &str) -> Option<Field> {
        Self::ALL.iter().copied().find(|field| field.pointer() == pointer)
    }

    /// True when the field is part of the always-shared envelope.
    pub fn is_envelope(self) -> bool {
        self.class() == Class::Envelope
    }

    /// True for personal and clinical detail that must be named by itself or its own sensitive subtree.
    pub fn is_sensitive(self) -> bool {
        self.class() == Class::Sensitive
    }

    /// True when `self` is `other` or lies inside it.
    pub fn is_within(self, other: Field) -> bool {
        let mut current = Some(self);
        while let Some(field) = current {
            if field == other {
                return true;
            }
            current = field.parent();
        }
        false
    }

    /// True when the field has no children in the table.
    pub fn is_leaf(self) -> bool {
        !Self::ALL.iter().any(|other| other.parent() == Some(self))
    }

    /// True when decisions list this field: the envelope's top-level parts (and `/consent/status`) and every
    /// non-envelope leaf.
    pub fn is_reported(self) -> bool {
        if self.is_envelope() { self.parent().is_none_or(|parent| !parent.is_envelope()) } else { self.is_leaf() }
    }
}

/// A set of fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FieldSet(u128);

impl FieldSet {
    /// No fields.
    pub const EMPTY: FieldSet = FieldSet(0);

    /// The fields named and everything inside them.
    pub fn covering(fields: &[Field]) -> Self {
        let mut set = Self::EMPTY;
        for field in Field::ALL {
            if fields.iter().any(|named| field.is_within(*named)) {
                set.insert(*field);
            }
        }
        set
    }

    /// The always-shared envelope.
    pub fn envelope() -> Self {
        *ENVELOPE
    }

    /// Adds a field.
    pub fn insert(&mut self, field: Field) {
        self.0 |= field.bit();
    }

    /// True when the field is in the set.
    pub const fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    /// Both sets' fields.
    #[must_use]
    pub const fn union(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 | other.0)
    }

    /// The fields of `self` not in `other`.
    #[must_use]
    pub const fn difference(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 & !other.0)
    }

    /// True when the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The fields in table order.
    pub fn iter(self) -> impl Iterator<Item = Field> {
        Field::ALL.iter().copied().filter(move |field| self.contains(*field))
    }
}

static ENVELOPE: LazyLock<FieldSet> = LazyLock::new(|| {
    let mut set = FieldSet::EMPTY;
    for field in Field::ALL.iter().filter(|field| field.is_envelope()) {
        set.insert(*field);
    }
    set
});

/// What the canonical schema says about one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaField {
    /// True when the enclosing object lists it under `required`.
    pub(crate) required: bool,
}

/// Every JSON Pointer of `schemas/crisis-event.v1.json` an allow-list may name: object properties, walked
/// through `$ref`s; arrays are named as a whole.
#[derive(Debug)]
pub(crate) struct CanonicalFields(pub(crate) BTreeMap<String, SchemaField>);

/// The canonical schema's fields, walked once.
pub(crate) static CANONICAL: LazyLock<CanonicalFields> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(concordat_episode::CRISIS_EVENT_SCHEMA).unwrap_or(Value::Null);
    let mut fields = BTreeMap::new();
    walk(&schema, &schema, "", &mut fields, 0);
    CanonicalFields(fields)
});

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str).and_then(|reference| reference.strip_prefix('#')) {
        Some(pointer) => root.pointer(pointer).unwrap_or(node),
        None => node,
    }
}

fn walk(root: &Value, node: &Value, prefix: &str, out: &mut BTreeMap<String, SchemaField>, depth: usize) {
    // The schema has no recursive object types; the bound only guards against a future one.
    if depth > 16 {
        return;
    }
    let node = resolve(root, node);
    let Some(properties) = node.get("properties").and_then(Value::as_object) else { return };
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, child) in properties {
        let pointer = format!("{prefix}/{name}");
        out.insert(pointer.clone(), SchemaField { required: required.contains(&name.as_str()) });
        walk(root, child, &pointer, out, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_mirrors_the_canonical_schema() {
        let schema: Vec<&str> = CANONICAL.0.keys().map(String::as_str).collect();
        let mut table: Vec<&str> = Field::ALL.iter().map(|field| field.pointer()).collect();
        table.sort_unstable();
        assert_eq!(table, schema);
        assert!(Field::ALL.len() <= 128, "FieldSet is a u128");
    }

    #[test]
    fn parents_come_first_and_match_the_pointer() {
        for (index, field) in Field::ALL.iter().enumerate() {
            assert_eq!(*field as usize, index);
            let expected = field.pointer().rsplit_once('/').map(|(parent, _)| parent).unwrap_or_default();
            assert_eq!(field.parent().map(Field::pointer).unwrap_or_default(), expected, "{field:?}");
            if let Some(parent) = field.parent() {
                assert!(parent < *field);
            }
        }
    }

    #[test]
    fn covering_takes_subtrees() {
        let set = FieldSet::covering(&[Field::DetailsPlaceOfSafety, Field::SubjectNameFamily]);
        let names: Vec<&str> = set.iter().map(Field::pointer).collect();
        assert_eq!(
            names,
            [
                "/subject/name/family",
                "/details/place_of_safety",
                "/details/place_of_safety/kind",
                "/details/place_of_safety/name",
                "/details/place_of_safety/ods_code"
            ]
        );
    }

    #[test]
    fn reported_fields() {
        let reported: Vec<&str> = Field::ALL.iter().filter(|f| f.is_reported()).map(|f| f.pointer()).collect();
        assert!(reported.contains(&"/source"));
        assert!(reported.contains(&"/consent/status"));
        assert!(!reported.contains(&"/source/agency"));
        assert!(!reported.contains(&"/subject/name"));
        assert!(reported.contains(&"/subject/name/given"));
    }
}
