//! Identifier newtypes that check their own invariants at construction.
//!
//! Each type here can only hold a value the canonical schema accepts, so a `CrisisEvent` built from them
//! serializes to schema-valid JSON. None of them is personal data except [`crate::NhsNumber`], which lives
//! in its own module.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Why a string was refused by one of the identifier newtypes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// An agency id must be 1–64 characters of `a-z`, `0-9` and inner hyphens.
    #[error("agency id must be 1-64 characters of a-z, 0-9 and inner hyphens")]
    AgencyId,
    /// The string was empty.
    #[error("must not be empty")]
    Empty,
    /// A postcode district is the outward code only, upper case.
    #[error("postcode district must be an outward code such as `M13` or `SK8`, upper case")]
    PostcodeDistrict,
    /// A SHA-256 digest is 64 lower-case hexadecimal digits.
    #[error("SHA-256 digest must be 64 lower-case hex digits")]
    Sha256,
}

/// A configured agency's id (`gmp`, `pennine-mh`, `safe-haven-oldham`).
///
/// It appears in queue names (`agency.{id}.inbox`) and routing keys, so it never contains dots.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgencyId(String);

impl AgencyId {
    /// Checks and wraps an agency id.
    ///
    /// # Errors
    /// [`IdError::AgencyId`] unless the id is 1–64 characters of `a-z`, `0-9` and hyphens, with no hyphen at
    /// either end.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        let bytes = id.as_bytes();
        let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        let ok = !bytes.is_empty()
            && bytes.len() <= 64
            && bytes.iter().all(allowed)
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-');
        if ok { Ok(Self(id)) } else { Err(IdError::AgencyId) }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AgencyId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<AgencyId> for String {
    fn from(value: AgencyId) -> Self {
        value.0
    }
}

impl fmt::Display for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgencyId({})", self.0)
    }
}

/// A string of at least one character.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NonEmptyString(String);

impl NonEmptyString {
    /// Checks and wraps a string.
    ///
    /// # Errors
    /// [`IdError::Empty`] when the string is empty.
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if value.is_empty() { Err(IdError::Empty) } else { Ok(Self(value)) }
    }

    /// The string as a slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NonEmptyString {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<NonEmptyString> for String {
    fn from(value: NonEmptyString) -> Self {
        value.0
    }
}

impl fmt::Display for NonEmptyString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NonEmptyString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The outward part of a UK postcode (`M13`, `SK8`, `EC1A`): coarse enough to route on, never an address.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PostcodeDistrict(String);

impl PostcodeDistrict {
    /// Checks and wraps an outward code. Lower case is accepted and upper-cased; a full postcode is refused.
    ///
    /// # Errors
    /// [`IdError::PostcodeDistrict`] unless the value is one or two letters, a digit, and an optional letter
    /// or digit.
    pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
        let value = value.as_ref().trim().to_ascii_uppercase();
        let bytes = value.as_bytes();
        let letters = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
        let rest = &bytes[letters.min(bytes.len())..];
        let ok = (1..=2).contains(&letters)
            && !rest.is_empty()
            && rest.len() <= 2
            && rest[0].is_ascii_digit()
            && rest[1..].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok { Ok(Self(value)) } else { Err(IdError::PostcodeDistrict) }
    }

    /// The district as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PostcodeDistrict {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<PostcodeDistrict> for String {
    fn from(value: PostcodeDistrict) -> Self {
        value.0
    }
}

impl fmt::Debug for PostcodeDistrict {
    // A district is coarse location data about a person; keep it out of debug output all the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostcodeDistrict(..)")
    }
}

/// A SHA-256 digest as 64 lower-case hexadecimal digits.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// The digest of some bytes.
    pub fn digest(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// Checks and wraps a hex digest.
    ///
    /// # Errors
    /// [`IdError::Sha256`] unless the value is 64 lower-case hex digits.
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        let ok = value.len() == 64 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok { Ok(Self(value)) } else { Err(IdError::Sha256) }
    }

    /// The digest as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Sha256Hex> for String {
    fn from(value: Sha256Hex) -> Self {
        value.0
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hex({})", self.0)
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The namespace under which event ids are derived (UUID v5 of the URL namespace and `urn:concordat:event`).
///
/// Changing it would change every event id, so it is fixed here and tested.
pub const EVENT_ID_NAMESPACE: Uuid =
    Uuid::from_bytes([0xd6, 0x7e, 0x31, 0xaa, 0x59, 0xda, 0x5c, 0x01, 0xba, 0x00, 0x09, 0x8e, 0xf7, 0xeb, 0xaa, 0x4a]);

/// A canonical event's id: deterministic, so that a resubmitted payload deduplicates.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// Derives the id of the event that `agency`'s record `record_ref` yields from a payload with digest
    /// `payload_sha256` (UUID v5 under [`EVENT_ID_NAMESPACE`]).
    ///
    /// The three parts are joined with a byte that none of them can hold (`\n`), so that no two different
    /// triples give the same name.
    pub fn derive(agency: &AgencyId, record_ref: &str, payload_sha256: &Sha256Hex) -> Self {
        let mut name = Vec::with_capacity(agency.as_str().len() + record_ref.len() + 66);
        name.extend_from_slice(agency.as_str().as_bytes());
        name.push(b'\n');
        // A record ref is free text from the source system; escape the separator so it cannot forge one.
        for byte in record_ref.bytes() {
            match byte {
                b'\n' => name.extend_from_slice(b"\\n"),
                b'\\' => name.extend_from_slice(b"\\\\"),
                other => name.push(other),
            }
        }
        name.push(b'\n');
        name.extend_from_slice(payload_sha256.as_str().as_bytes());
        Self(Uuid::new_v5(&EVENT_ID_NAMESPACE, &name))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0.hyphenated())
    }
}

/// A Concordat episode's id, assigned by the router.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EpisodeId(pub Uuid);

impl fmt::Display for EpisodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for EpisodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EpisodeId({})", self.0.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_ids() {
        for good in ["gmp", "pennine-mh", "a", "safe-haven-2", &"a".repeat(64)] {
            assert!(AgencyId::new(good).is_ok(), "{good}");
        }
        for bad in ["", "-gmp", "gmp-", "GMP", "gmp.north", "gmp north", "gmp_north", &"a".repeat(65)] {
            assert_eq!(AgencyId::new(bad), Err(IdError::AgencyId), "{bad}");
        }
    }

    #[test]
    fn postcode_districts() {
        for good in ["M13", "SK8", "EC1A", "W1", "ol1", " B33 "] {
            assert!(PostcodeDistrict::new(good).is_ok(), "{good}");
        }
        for bad in ["", "M", "13", "M13 9PL", "ABC1", "M1234", "M-1"] {
            assert!(PostcodeDistrict::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespace_is_v5_of_urn() {
        let expected = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:concordat:event");
        assert_eq!(EVENT_ID_NAMESPACE, expected, "EVENT_ID_NAMESPACE should be {:?}", expected.as_bytes());
    }

    #[test]
    fn event_ids_separate_their_parts() {
        let agency = AgencyId::new("gmp").unwrap();
        let digest = Sha256Hex::digest(b"payload");
        let a = EventId::derive(&agency, "a\nb", &digest);
        let b = EventId::derive(&agency, "a", &digest);
        assert_ne!(a, b);
        assert_eq!(a, EventId::derive(&agency, "a\nb", &digest));
        assert_eq!(a.0.get_version_num(), 5);
    }
}
