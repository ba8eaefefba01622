//! Standard Webhooks signing (<https://www.standardwebhooks.com>): the secret and the `webhook-signature`
//! value, so that a receiver can verify a delivery with any of that specification's libraries.
//!
//! A delivery carries `webhook-id` (the message id), `webhook-timestamp` (Unix seconds of the attempt) and
//! `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the key is the
//! base64 decoding of the secret after its `whsec_` prefix. Pure: no clock, no I/O; the worker passes the
//! time in. It does not post anything.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret.
const PREFIX: &str = "whsec_";
/// The shortest key accepted, in bytes: the specification asks for 24 to 64 random bytes; below 16 an
/// HMAC key is too easy to guess.
const MIN_KEY_BYTES: usize = 16;

/// Why a webhook secret cannot be used. Never quotes the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    /// The text does not start with `whsec_`.
    #[error("a webhook secret starts with `whsec_`")]
    MissingPrefix,
    /// What follows the prefix is not standard base64.
    #[error("a webhook secret is `whsec_` followed by standard base64")]
    NotBase64,
    /// The key is too short.
    #[error("a webhook secret's key must be at least {MIN_KEY_BYTES} bytes, not {bytes}")]
    TooShort {
        /// The decoded key's length.
        bytes: usize,
    },
}

/// The key a webhook agency shares with Concordat. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Reads a secret written as the specification writes it: `whsec_` + base64 of the key. Surrounding
    /// whitespace (a file's last newline) is ignored.
    ///
    /// # Errors
    /// [`WebhookSecretError`] naming what is wrong, never the secret.
    pub fn parse(text: &str) -> Result<Self, WebhookSecretError> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(WebhookSecretError::MissingPrefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| WebhookSecretError::NotBase64)?;
        if key.len() < MIN_KEY_BYTES {
            return Err(WebhookSecretError::TooShort { bytes: key.len() });
        }
        Ok(Self(key))
    }

    /// The `webhook-signature` header value for message `id` sent at `timestamp` (Unix seconds) with `body`.
    #[must_use]
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length, so building it cannot fail; an empty MAC would only fail to verify.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else { return String::from("v1,") };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_specifications_example() {
        // The example of the Standard Webhooks specification's reference implementations.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_or_else(|e| panic!("{e}"));
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_secrets_it_cannot_use_without_quoting_them() {
        assert_eq!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(WebhookSecretError::MissingPrefix));
        assert_eq!(WebhookSecret::parse("whsec_not base64!"), Err(WebhookSecretError::NotBase64));
        assert_eq!(WebhookSecret::parse("whsec_c2hvcnQ="), Err(WebhookSecretError::TooShort { bytes: 5 }));
        let secret =
            WebhookSecret::parse(" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{secret:?}"), "WebhookSecret(…)");
    }
}
