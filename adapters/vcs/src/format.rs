//! The native `vcs-contact.v1` format as Rust types, and its published JSON Schema.
//!
//! These types mirror `schemas/vcs-contact.v1.json` field for field; the schema is checked first, so by the
//! time a contact deserializes here its shape is known to be right. They say nothing about what a contact
//! means in canonical terms: that is `mapping.rs` and `ingest.rs`. Types holding personal data have a
//! redacting `Debug`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The published schema of the native contact format.
pub const CONTACT_SCHEMA: &str = include_str!("../../../schemas/vcs-contact.v1.json");

/// The format name as it appears in `provenance.format` for a JSON body.
pub const FORMAT_JSON: &str = "vcs-contact.v1+json";
/// The format name as it appears in `provenance.format` for a CSV body.
pub const FORMAT_CSV: &str = "vcs-contact.v1+csv";

/// Every field (JSON property, CSV column) in the order the README documents them.
pub const FIELDS: &[&str] = &[
    "contact_id",
    "organisation",
    "service",
    "contact_type",
    "follow_up_of",
    "contact_date",
    "contact_time",
    "episode_id",
    "consent_status",
    "consent_scope",
    "nhs_number",
    "given_name",
    "family_name",
    "birth_date",
    "gender",
    "postcode_district",
    "person_ref",
    "concerns",
    "risk",
    "referral_to",
    "referral_service",
    "referral_urgency",
    "follow_up_date",
    "follow_up_time",
    "outcome",
    "notes",
];

/// The fields every contact must have (and so the columns every CSV header must have).
pub const REQUIRED_FIELDS: &[&str] =
    &["contact_id", "service", "contact_date", "contact_time", "consent_status", "risk"];

/// The fields that hold a list: a JSON array, or `;`-separated values in one CSV cell.
pub const LIST_FIELDS: &[&str] = &["consent_scope", "concerns"];

/// The fields about the person, which must be left out unless the person agreed to share them (or could not
/// decide).
pub const PERSONAL_FIELDS: &[&str] =
    &["nhs_number", "given_name", "family_name", "birth_date", "gender", "postcode_district", "person_ref", "notes"];

/// One contact, as the service sent it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// The service's own reference for the contact.
    pub contact_id: String,
    /// The sending agency's id, when the sender states it.
    pub organisation: Option<String>,
    /// Which service the contact was with.
    pub service: Service,
    /// A new contact or a follow-up.
    #[serde(default)]
    pub contact_type: ContactType,
    /// On a follow-up, the earlier contact's id.
    pub follow_up_of: Option<String>,
    /// The day of the contact (`YYYY-MM-DD`).
    pub contact_date: String,
    /// The time of the contact (`HH:MM`, UK local unless an offset is given).
    pub contact_time: String,
    /// A Concordat episode id the service was given.
    pub episode_id: Option<String>,
    /// Whether the person agreed to sharing.
    pub consent_status: ConsentStatus,
    /// What the person agreed to.
    #[serde(default)]
    pub consent_scope: Vec<ConsentScope>,
    /// Personal: NHS number, as written.
    pub nhs_number: Option<String>,
    /// Personal: given name(s).
    pub given_name: Option<String>,
    /// Personal: family name.
    pub family_name: Option<String>,
    /// Personal: date of birth.
    pub birth_date: Option<String>,
    /// Personal: gender.
    pub gender: Option<Gender>,
    /// Personal: outward postcode.
    pub postcode_district: Option<String>,
    /// Personal: the service's reference for the person.
    pub person_ref: Option<String>,
    /// What the person was worried about or at risk from.
    #[serde(default)]
    pub concerns: Vec<Concern>,
    /// Risk on the common scale.
    pub risk: concordat_episode::RiskLevel,
    /// The agency referred to.
    pub referral_to: Option<String>,
    /// The kind of service referred to.
    pub referral_service: Option<ReferralService>,
    /// How urgent the referral is.
    pub referral_urgency: Option<ReferralUrgency>,
    /// The planned follow-up day.
    pub follow_up_date: Option<String>,
    /// The planned follow-up time.
    pub follow_up_time: Option<String>,
    /// How the contact ended.
    pub outcome: Option<Outcome>,
    /// Personal, sensitive free text.
    pub notes: Option<String>,
}

impl fmt::Debug for Contact {
    // Only the fields that are not about the person; the rest show as present or absent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = |field: &Option<String>| field.as_ref().map(|_| "..");
        f.debug_struct("Contact")
            .field("contact_id", &self.contact_id)
            .field("service", &self.service)
            .field("contact_type", &self.contact_type)
            .field("consent_status", &self.consent_status)
            .field("risk", &self.risk)
            .field("concerns", &self.concerns)
            .field("nhs_number", &present(&self.nhs_number))
            .field("given_name", &present(&self.given_name))
            .field("family_name", &present(&self.family_name))
            .field("birth_date", &present(&self.birth_date))
            .field("gender", &self.gender.map(|_| ".."))
            .field("postcode_district", &present(&self.postcode_district))
            .field("person_ref", &present(&self.person_ref))
            .field("notes", &present(&self.notes))
            .finish_non_exhaustive()
    }
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $( $(#[$variant_meta:meta])* $variant:ident = $wire:literal, $words:literal; )* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( #[doc = $words] $(#[$variant_meta])* #[serde(rename = $wire)] $variant, )*
        }

        impl $name {
            /// Every value, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The wire name.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)* }
            }

            /// The value in plain words.
            pub const fn words(self) -> &'static str {
                match self { $($name::$variant => $words,)* }
            }
        }
    };
}

wire_enum! {
    /// Which of the organisation's services the contact was with.
    Service {
        SafeHaven = "safe_haven", "Safe Haven or crisis café";
        Helpline = "helpline", "helpline";
        Outreach = "outreach", "outreach";
        PeerSupport = "peer_support", "peer support";
    }
}

wire_enum! {
    /// A new contact or a follow-up.
    #[derive(Default)]
    ContactType {
        #[default]
        Contact = "contact", "contact";
        FollowUp = "follow_up", "follow-up contact";
    }
}

wire_enum! {
    /// Consent to sharing as a voluntary-sector service records it (`unknown` is not offered: say `not_sought`).
    ConsentStatus {
        Given = "given", "the person agreed to share";
        Refused = "refused", "the person refused";
        NotSought = "not_sought", "nobody asked";
        LacksCapacity = "lacks_capacity", "the person could not decide at the time";
    }
}

impl ConsentStatus {
    /// Whether the contact may carry the person's details.
    pub const fn allows_personal_fields(self) -> bool {
        matches!(self, Self::Given | Self::LacksCapacity)
    }
}

wire_enum! {
    /// What the person agreed to.
    ConsentScope {
        Referral = "referral", "sharing to make a referral";
        FollowUp = "follow_up", "sharing to follow up";
        ShareWithNhs = "share_with_nhs", "sharing with NHS services";
        ShareWithPolice = "share_with_police", "sharing with the police";
        ShareWithLocalAuthority = "share_with_local_authority", "sharing with the council";
        ShareWithAmbulance = "share_with_ambulance", "sharing with the ambulance service";
        ShareWithVcs = "share_with_vcs", "sharing with other voluntary services";
    }
}

wire_enum! {
    /// Gender on the NHS's four-value list.
    Gender {
        Male = "male", "male";
        Female = "female", "female";
        Other = "other", "other";
        Unknown = "unknown", "not known";
    }
}

wire_enum! {
    /// What the person was worried about or at risk from.
    Concern {
        SelfHarm = "self_harm", "self-harm";
        SuicidalThoughts = "suicidal_thoughts", "thoughts of suicide";
        SubstanceUse = "substance_use", "alcohol or drug use";
        HarmFromOthers = "harm_from_others", "harm from other people";
        HarmToOthers = "harm_to_others", "harm to other people";
        DomesticAbuse = "domestic_abuse", "domestic abuse";
        ChildSafeguarding = "child_safeguarding", "a child at risk";
        AdultSafeguarding = "adult_safeguarding", "an adult at risk";
        PhysicalHealth = "physical_health", "physical health";
        Housing = "housing", "housing";
        Money = "money", "money or debt";
        Loneliness = "loneliness", "loneliness";
    }
}

wire_enum! {
    /// The kind of service a person was referred to.
    ReferralService {
        CrisisResolutionHomeTreatment = "crisis_resolution_home_treatment", "the crisis resolution and home treatment team";
        CommunityMentalHealth = "community_mental_health", "the community mental health team";
        EmergencyDepartment = "emergency_department", "the emergency department";
        Gp = "gp", "their GP";
        Nhs111 = "nhs_111", "NHS 111";
        Ambulance = "ambulance", "the ambulance service";
        Police = "police", "the police";
        AdultSocialCare = "adult_social_care", "adult social care";
        ChildrenSocialCare = "children_social_care", "children's social care";
        SafeHaven = "safe_haven", "a Safe Haven or crisis café";
        Helpline = "helpline", "a helpline";
        PeerSupport = "peer_support", "peer support";
        Outreach = "outreach", "an outreach service";
        Housing = "housing", "a housing service";
        SubstanceUse = "substance_use", "a drug and alcohol service";
        Other = "other", "another service";
    }
}

wire_enum! {
    /// How urgent a referral is.
    ReferralUrgency {
        Emergency = "emergency", "emergency";
        Urgent = "urgent", "urgent";
        Routine = "routine", "routine";
    }
}

wire_enum! {
    /// How a contact ended.
    Outcome {
        NoFurtherAction = "no_further_action", "no further action";
        FollowUpPlanned = "follow_up_planned", "follow-up planned";
        ReferredElsewhere = "referred_elsewhere", "referred to another service";
    }
}
