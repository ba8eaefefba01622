//! The NHS number: ten digits, the last a modulus-11 check digit.
//!
//! A valid check digit says the number is well formed, not that it belongs to this person.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not an NHS number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    /// Not exactly ten ASCII digits (spaces are not accepted here; adapters strip them first).
    #[error("NHS number must be exactly 10 digits")]
    Format,
    /// The computed check digit is 10, which the scheme never issues.
    #[error("NHS number is invalid: its check digit would be 10")]
    CheckDigitTen,
    /// The last digit does not match the modulus-11 check.
    #[error("NHS number fails the modulus-11 check")]
    CheckDigitMismatch,
}

/// A well-formed NHS number. Its `Debug` hides all but the last two digits: it is personal data.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Checks ten digits against the modulus-11 rule: weights 10 down to 2 on the first nine digits, the sum
    /// modulo 11 subtracted from 11; 11 becomes 0 and 10 is invalid.
    ///
    /// # Errors
    /// [`NhsNumberError`] saying which rule the value broke.
    pub fn new(value: impl Into<String>) -> Result<Self, NhsNumberError> {
        let value = value.into();
        let digits: Vec<u32> =
            value.chars().map(|c| c.to_digit(10)).collect::<Option<_>>().ok_or(NhsNumberError::Format)?;
        if digits.len() != 10 || !value.is_ascii() {
            return Err(NhsNumberError::Format);
        }
        let sum: u32 = digits[..9].iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return Err(NhsNumberError::CheckDigitTen),
            other => other,
        };
        if check == digits[9] { Ok(Self(value)) } else { Err(NhsNumberError::CheckDigitMismatch) }
    }

    /// Parses the forms people write: `943 476 5919` and `943-476-5919` as well as `9434765919`.
    ///
    /// # Errors
    /// As [`NhsNumber::new`], after spaces and hyphens are removed.
    pub fn parse_lenient(value: &str) -> Result<Self, NhsNumberError> {
        Self::new(value.chars().filter(|c| !matches!(c, ' ' | '-')).collect::<String>())
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NhsNumber {
    type Error = NhsNumberError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<NhsNumber> for String {
    fn from(value: NhsNumber) -> Self {
        value.0
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(********")?;
        f.write_str(&self.0[8..])?;
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Result<(), NhsNumberError>)] = &[
            ("9434765919", Ok(())),
            ("4010232137", Ok(())),
            ("9876543210", Ok(())),
            ("9990000018", Ok(())),
            ("9991111115", Ok(())),
            // Check digit 11 becomes 0: 0000000000 sums to 0, 11 - 0 = 11 -> 0.
            ("0000000000", Ok(())),
            ("9434765918", Err(NhsNumberError::CheckDigitMismatch)),
            ("9434765910", Err(NhsNumberError::CheckDigitMismatch)),
            ("4010232138", Err(NhsNumberError::CheckDigitMismatch)),
            // 100000001: 1*10 + 1*2 = 12, 12 mod 11 = 1, 11 - 1 = 10: no last digit makes it valid.
            ("1000000010", Err(NhsNumberError::CheckDigitTen)),
            ("1000000019", Err(NhsNumberError::CheckDigitTen)),
            ("943476591", Err(NhsNumberError::Format)),
            ("94347659190", Err(NhsNumberError::Format)),
            ("943476591X", Err(NhsNumberError::Format)),
            ("943 476 5919", Err(NhsNumberError::Format)),
            ("", Err(NhsNumberError::Format)),
            ("٩٤٣٤٧٦٥٩١٩", Err(NhsNumberError::Format)),
        ];
        for (input, expected) in cases {
            assert_eq!(NhsNumber::new(*input).map(|_| ()), *expected, "{input}");
        }
    }

    #[test]
    fn lenient_parsing_accepts_written_forms() {
        assert_eq!(NhsNumber::parse_lenient("943 476 5919").unwrap().as_str(), "9434765919");
        assert_eq!(NhsNumber::parse_lenient("943-476-5919").unwrap().as_str(), "9434765919");
    }

    #[test]
    fn debug_hides_the_number() {
        let shown = format!("{:?}", NhsNumber::new("9434765919").unwrap());
        assert!(!shown.contains("94347659"), "{shown}");
    }

    /// Computes the check digit independently, by a different route (explicit weights table).
    fn check_digit(first_nine: &[u32; 9]) -> Option<u32> {
        const WEIGHTS: [u32; 9] = [10, 9, 8, 7, 6, 5, 4, 3, 2];
        let sum: u32 = first_nine.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
        match (11 - sum % 11) % 11 {
            10 => None,
            c => Some(c),
        }
    }

    proptest! {
        #[test]
        fn exactly_one_last_digit_is_valid(first in proptest::array::uniform9(0u32..10)) {
            let prefix: String = first.iter().map(|d| char::from_digit(*d, 10).unwrap()).collect();
            let valid: Vec<u32> = (0..10).filter(|last| NhsNumber::new(format!("{prefix}{last}")).is_ok()).collect();
            match check_digit(&first) {
                Some(c) => prop_assert_eq!(valid, vec![c]),
                None => prop_assert!(valid.is_empty()),
            }
        }
    }
}
