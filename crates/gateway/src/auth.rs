//! Agency bearer tokens: reading the `Authorization` header and finding which agency, if any, a token
//! belongs to.
//!
//! Tokens are never stored: the configuration holds their SHA-256 digests, and a presented token is hashed
//! and compared with every digest in constant time, so neither the comparison's duration nor its order says
//! how much of a digest matched or which agency's it was. This module decides who is calling; what the
//! caller may do (its own path only) is [`crate::http`]'s rule. The admin listener reads its bearer token
//! with the same parser ([`bearer_token`]) and compares it with [`secret_matches`].

use std::fmt;

use concordat_episode::AgencyId;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Why an `Authorization` header carries no usable bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No `Authorization` header.
    #[error("the request has no Authorization header; send `Authorization: Bearer <token>`")]
    Missing,
    /// A header that is not `Bearer <token>` with a token of RFC 6750 `b64token` characters.
    #[error("the Authorization header is not `Bearer <token>`")]
    Malformed,
}

/// The token of an `Authorization: Bearer <token>` header value (RFC 6750 §2.1; the scheme is
/// case-insensitive, RFC 9110 §11.1).
///
/// # Errors
/// [`BearerError::Missing`] for `None`, [`BearerError::Malformed`] for any other scheme, an empty token, or a
/// token with characters outside `b64token`.
pub fn bearer_token(header: Option<&[u8]>) -> Result<&[u8], BearerError> {
    let header = header.ok_or(BearerError::Missing)?;
    let scheme = b"bearer ";
    let (prefix, rest) = header.split_at_checked(scheme.len()).ok_or(BearerError::Malformed)?;
    if !prefix.eq_ignore_ascii_case(scheme) {
        return Err(BearerError::Malformed);
    }
    let token = rest.trim_ascii();
    let b64token = |byte: &u8| byte.is_ascii_alphanumeric() || b"-._~+/".contains(byte);
    // Trailing `=` padding only, as the grammar says.
    let body_len = token.iter().rposition(|byte| *byte != b'=').map_or(0, |last| last + 1);
    let (body, padding) = token.split_at(body_len);
    if body.is_empty() || !body.iter().all(b64token) || !padding.iter().all(|byte| *byte == b'=') {
        return Err(BearerError::Malformed);
    }
    Ok(token)
}

/// Whether a presented secret equals the expected one, in time that depends on neither where they first
/// differ nor their lengths: both are hashed with SHA-256 and the digests compared in constant time. For a
/// secret held in plain form, such as the admin token.
pub fn secret_matches(presented: &[u8], expected: &[u8]) -> bool {
    let presented: [u8; 32] = Sha256::digest(presented).into();
    let expected: [u8; 32] = Sha256::digest(expected).into();
    bool::from(presented.ct_eq(&expected))
}

/// The digests of every agency's accepted tokens.
#[derive(Clone, Default)]
pub(crate) struct TokenTable {
    entries: Vec<([u8; 32], AgencyId)>,
}

// Digests are not secrets, but there is no reason to print them.
impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTable").field("tokens", &self.entries.len()).finish()
    }
}

impl TokenTable {
    /// Adds a token digest of `agency`. The caller ensures that no digest is listed for two agencies.
    pub(crate) fn insert(&mut self, digest: [u8; 32], agency: AgencyId) {
        self.entries.push((digest, agency));
    }

    /// The agency whose digest list holds `token`'s SHA-256, if any.
    ///
    /// Every digest is compared, whatever matched, and the match is picked without branching on a
    /// comparison, so the time taken depends only on the table's size.
    pub fn agency_of(&self, token: &[u8]) -> Option<&AgencyId> {
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0_u64;
        for (position, (digest, _)) in self.entries.iter().enumerate() {
            let matches = digest.ct_eq(&presented);
            // A table has far fewer than 2^64 entries.
            let position = u64::try_from(position).unwrap_or(u64::MAX);
            index.conditional_assign(&position, matches);
            found |= matches;
        }
        if bool::from(found) {
            usize::try_from(index).ok().and_then(|index| self.entries.get(index)).map(|(_, agency)| agency)
        } else {
            None
        }
    }

    /// Whether `agency` has at least one token.
    pub fn has_token(&self, agency: &AgencyId) -> bool {
        self.entries.iter().any(|(_, holder)| holder == agency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secret_matches(b"admin-token", b"admin-token"));
        assert!(!secret_matches(b"admin-token", b"admin-tokem"));
        assert!(!secret_matches(b"admin-token", b"admin-token-longer"));
        assert!(!secret_matches(b"", b"admin-token"));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let ok = |header: &str, token: &str| assert_eq!(bearer_token(Some(header.as_bytes())), Ok(token.as_bytes()));
        ok("Bearer abc.DEF-123_~+/", "abc.DEF-123_~+/");
        ok("bearer abc==", "abc==");
        ok("BEARER   abc  ", "abc");
        let bad = |header: Option<&str>, error: BearerError| {
            assert_eq!(bearer_token(header.map(str::as_bytes)), Err(error), "{header:?}");
        };
        bad(None, BearerError::Missing);
        for header in [
            "",
            "Bearer",
            "Bearer ",
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            "Bearerabc",
            "Bearer a b",
            "Bearer a=b",
            "Bearer ==",
            "Bearer é",
        ] {
            bad(Some(header), BearerError::Malformed);
        }
    }

    #[test]
    fn a_token_finds_its_agency_only() {
        let digest = |token: &str| -> [u8; 32] { Sha256::digest(token.as_bytes()).into() };
        let police = AgencyId::new("northvale-police").unwrap();
        let haven = AgencyId::new("safe-haven").unwrap();
        let mut table = TokenTable::default();
        table.insert(digest("old-police-token"), police.clone());
        table.insert(digest("police-token"), police.clone());
        table.insert(digest("haven-token"), haven.clone());
        assert_eq!(table.agency_of(b"police-token"), Some(&police));
        assert_eq!(table.agency_of(b"old-police-token"), Some(&police));
        assert_eq!(table.agency_of(b"haven-token"), Some(&haven));
        assert_eq!(table.agency_of(b"police-token "), None);
        assert_eq!(table.agency_of(b""), None);
        assert!(table.has_token(&haven));
        assert!(!table.has_token(&AgencyId::new("listening-line").unwrap()));
        assert_eq!(TokenTable::default().agency_of(b"police-token"), None);
    }
}
