//! Subject keys: what the store keeps instead of an NHS number to correlate events about the same person.
//!
//! A subject key is HMAC-SHA256 (RFC 2104) of the ten-digit NHS number under a deployment secret. Without
//! the secret the key cannot be reversed by trying all 10^9 valid numbers, so a copy of the database alone
//! does not reveal who the episodes are about. It is still pseudonymous personal data, so it is purged
//! with the episode's other personal data. This module is not a general-purpose MAC library.

use std::fmt;

use concordat_episode::NhsNumber;
use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// The shortest secret accepted, in bytes: 128 bits.
pub const MIN_SECRET_LEN: usize = 16;

/// A subject key secret shorter than [`MIN_SECRET_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the subject key secret must be at least 16 bytes")]
pub struct WeakSecret;

/// Computes subject keys under one secret. Build it once from configuration.
#[derive(Clone)]
pub struct SubjectKeyer {
    inner_pad: [u8; BLOCK],
    outer_pad: [u8; BLOCK],
}

impl SubjectKeyer {
    /// Prepares the keyer.
    ///
    /// # Errors
    /// [`WeakSecret`] when the secret is shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self, WeakSecret> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(WeakSecret);
        }
        let mut key = [0_u8; BLOCK];
        if secret.len() > BLOCK {
            let digest = Sha256::digest(secret);
            for (slot, byte) in key.iter_mut().zip(digest.iter()) {
                *slot = *byte;
            }
        } else {
            for (slot, byte) in key.iter_mut().zip(secret) {
                *slot = *byte;
            }
        }
        let mut inner_pad = [0x36_u8; BLOCK];
        let mut outer_pad = [0x5c_u8; BLOCK];
        for ((inner, outer), byte) in inner_pad.iter_mut().zip(outer_pad.iter_mut()).zip(key) {
            *inner ^= byte;
            *outer ^= byte;
        }
        Ok(Self { inner_pad, outer_pad })
    }

    /// The subject key of an NHS number.
    pub fn key(&self, nhs_number: &NhsNumber) -> SubjectKey {
        SubjectKey(self.mac(nhs_number.as_str().as_bytes()))
    }

    fn mac(&self, message: &[u8]) -> [u8; 32] {
        let inner = Sha256::new().chain_update(self.inner_pad).chain_update(message).finalize();
        Sha256::new().chain_update(self.outer_pad).chain_update(inner).finalize().into()
    }
}

impl fmt::Debug for SubjectKeyer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKeyer(..)")
    }
}

/// The keyed hash of a subject's NHS number. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubjectKey([u8; 32]);

impl SubjectKey {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(secret: &[u8], message: &[u8], expected_hex: &str) {
        let keyer = SubjectKeyer::new(secret).unwrap();
        assert_eq!(hex::encode(keyer.mac(message)), expected_hex);
    }

    // RFC 4231 test cases 2 is too short a key for our minimum, so use cases 1 (20-byte key), 4 (25 bytes)
    // and 6 (131 bytes, hashed first).
    #[test]
    fn matches_rfc_4231() {
        check(&[0x0b; 20], b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        check(
            &(1_u8..=25).collect::<Vec<_>>(),
            &[0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        );
        check(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        );
    }

    #[test]
    fn keys_depend_on_number_and_secret() {
        let first = SubjectKeyer::new(b"northvale-test-secret-1").unwrap();
        let second = SubjectKeyer::new(b"northvale-test-secret-2").unwrap();
        let number = NhsNumber::new("9990000018").unwrap();
        let other = NhsNumber::new("9991111115").unwrap();
        assert_eq!(first.key(&number), first.key(&number));
        assert_ne!(first.key(&number), first.key(&other));
        assert_ne!(first.key(&number), second.key(&number));
        assert_eq!(format!("{:?}", first.key(&number)), "SubjectKey(..)");
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(SubjectKeyer::new(b"too-short").map(|_| ()), Err(WeakSecret));
    }
}
