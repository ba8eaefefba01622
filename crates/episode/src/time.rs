//! RFC 3339 timestamps with a required offset, kept as the source wrote them.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant with the UTC offset it was recorded in. Serializes as RFC 3339 (`Z` for a zero offset,
/// fractional seconds only when present), so a parsed timestamp writes back the same.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<FixedOffset>);

impl Timestamp {
    /// Parses RFC 3339 with an explicit offset.
    ///
    /// # Errors
    /// The value is not RFC 3339 with an offset.
    pub fn parse(value: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(value).map(Self)
    }

    /// The same instant in UTC.
    pub fn to_utc(self) -> DateTime<Utc> {
        self.0.with_timezone(&Utc)
    }

    /// The calendar date in the timestamp's own offset.
    pub fn date(self) -> NaiveDate {
        self.0.date_naive()
    }

    /// RFC 3339 text as written on the wire.
    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Self(value.fixed_offset())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|_| serde::de::Error::custom("expected an RFC 3339 timestamp with a UTC offset"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_write_back_as_read() {
        for text in [
            "2026-03-01T22:14:00Z",
            "2026-07-01T23:05:30+01:00",
            "2026-03-01T22:14:00.250Z",
            "2026-03-01T22:14:00.123456789-05:30",
        ] {
            assert_eq!(Timestamp::parse(text).unwrap().to_rfc3339(), text);
        }
    }

    #[test]
    fn an_offset_is_required() {
        assert!(Timestamp::parse("2026-03-01T22:14:00").is_err());
        assert!(Timestamp::parse("2026-03-01").is_err());
    }
}
