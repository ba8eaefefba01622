//! W3C Trace Context `traceparent` values, as carried in the `traceparent` AMQP header.
//!
//! `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>` (W3C Trace Context Level 1 §3.2): parse and
//! check one, start a fresh trace, derive a child span. Pure values and functions; it knows nothing of
//! OpenTelemetry, spans or exporters, which come later and only need to map to and from this type.

use std::fmt;
use std::str::FromStr;

use crate::random::random_bytes;

/// The AMQP header that carries the value.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// A checked `traceparent`: a trace id and span id that are not all zeros, and the trace flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` value was rejected. Per the W3C recommendation, a receiver that gets one starts a
/// new trace rather than failing the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Version `00` is exactly 55 characters; later versions at least that, with `-` after them.
    #[error("traceparent must be 55 characters (`00-<trace id>-<span id>-<flags>`), not {0}")]
    Length(usize),
    /// The fields are not separated by `-` where the format puts them.
    #[error("traceparent fields must be separated by `-`")]
    Separator,
    /// The version is not two lowercase hex digits, or is the forbidden `ff`.
    #[error("traceparent version must be two lowercase hex digits other than `ff`")]
    Version,
    /// The trace id is not 32 lowercase hex digits, or is all zeros.
    #[error("traceparent trace id must be 32 lowercase hex digits, not all zero")]
    TraceId,
    /// The span (parent) id is not 16 lowercase hex digits, or is all zeros.
    #[error("traceparent span id must be 16 lowercase hex digits, not all zero")]
    SpanId,
    /// The flags are not two lowercase hex digits.
    #[error("traceparent flags must be two lowercase hex digits")]
    Flags,
}

impl TraceParent {
    /// Builds a value from its parts.
    ///
    /// # Errors
    ///
    /// [`TraceParentError::TraceId`] or [`TraceParentError::SpanId`] when an id is all zeros, which the
    /// specification reserves as invalid.
    pub fn from_parts(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Result<Self, TraceParentError> {
        if trace_id == [0; 16] {
            return Err(TraceParentError::TraceId);
        }
        if span_id == [0; 8] {
            return Err(TraceParentError::SpanId);
        }
        Ok(Self { trace_id, span_id, flags })
    }

    /// Parses and checks a `traceparent` header value.
    ///
    /// Version `00` must match exactly. A later version is read for its first four fields, as the
    /// specification asks, and is written back as version `00`.
    ///
    /// # Errors
    ///
    /// A [`TraceParentError`] naming the first field that is wrong.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return Err(TraceParentError::Length(bytes.len()));
        }
        let version: [u8; 1] = decode_hex(&bytes[0..2]).ok_or(TraceParentError::Version)?;
        if version[0] == 0xff {
            return Err(TraceParentError::Version);
        }
        if version[0] == 0x00 && bytes.len() != 55 {
            return Err(TraceParentError::Length(bytes.len()));
        }
        if bytes.len() > 55 && bytes[55] != b'-' {
            return Err(TraceParentError::Separator);
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(TraceParentError::Separator);
        }
        let trace_id = decode_hex(&bytes[3..35]).ok_or(TraceParentError::TraceId)?;
        let span_id = decode_hex(&bytes[36..52]).ok_or(TraceParentError::SpanId)?;
        let [flags] = decode_hex(&bytes[53..55]).ok_or(TraceParentError::Flags)?;
        Self::from_parts(trace_id, span_id, flags)
    }

    /// Starts a new trace: random trace and span ids, flagged as sampled.
    #[must_use]
    pub fn new_root() -> Self {
        Self { trace_id: nonzero_random(), span_id: nonzero_random(), flags: SAMPLED }
    }

    /// A child of this span: the same trace id and flags, a new random span id.
    #[must_use]
    pub fn child(&self) -> Self {
        let mut span_id = nonzero_random();
        while span_id == self.span_id {
            span_id = nonzero_random();
        }
        Self { span_id, ..*self }
    }

    /// The 16-byte trace id.
    #[must_use]
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The 8-byte span id (the specification's `parent-id`).
    #[must_use]
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace flags byte.
    #[must_use]
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller may have recorded this trace (the `sampled` flag).
    #[must_use]
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        write_hex(f, &self.trace_id)?;
        f.write_str("-")?;
        write_hex(f, &self.span_id)?;
        write!(f, "-{:02x}", self.flags)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let bytes = random_bytes::<N>();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

/// Decodes exactly `2 * N` lowercase hex digits; uppercase is invalid in a `traceparent`.
fn decode_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0_u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn check_invalid(value: &str, expected: TraceParentError) {
        assert_eq!(TraceParent::parse(value), Err(expected), "parsing {value:?}");
    }

    #[test]
    fn parses_and_prints_the_specification_example() -> Result<(), TraceParentError> {
        let parsed = TraceParent::parse(EXAMPLE)?;
        assert_eq!(parsed.to_string(), EXAMPLE);
        assert_eq!(parsed.trace_id()[0], 0x4b);
        assert_eq!(parsed.span_id()[7], 0xb7);
        assert!(parsed.sampled());
        assert_eq!(EXAMPLE.parse::<TraceParent>()?, parsed);
        let unsampled = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?;
        assert!(!unsampled.sampled());
        Ok(())
    }

    #[test]
    fn rejects_malformed_values() {
        check_invalid("", TraceParentError::Length(0));
        check_invalid(&EXAMPLE[..54], TraceParentError::Length(54));
        check_invalid(&format!("{EXAMPLE}-extra"), TraceParentError::Length(61));
        check_invalid("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceParentError::Version);
        check_invalid("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceParentError::Version);
        check_invalid("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceParentError::Separator);
        check_invalid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", TraceParentError::TraceId);
        check_invalid("00-00000000000000000000000000000000-00f067aa0ba902b7-01", TraceParentError::TraceId);
        check_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", TraceParentError::SpanId);
        check_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01", TraceParentError::SpanId);
        check_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x", TraceParentError::Flags);
    }

    #[test]
    fn reads_later_versions_as_version_00() -> Result<(), TraceParentError> {
        let later = TraceParent::parse(&format!("cc{}-what-comes-next", &EXAMPLE[2..]))?;
        assert_eq!(later.to_string(), EXAMPLE);
        check_invalid(&format!("cc{}x", &EXAMPLE[2..]), TraceParentError::Separator);
        Ok(())
    }

    #[test]
    fn a_root_is_valid_and_fresh() -> Result<(), TraceParentError> {
        let root = TraceParent::new_root();
        assert_eq!(TraceParent::parse(&root.to_string())?, root);
        assert!(root.sampled());
        assert_ne!(TraceParent::new_root().trace_id(), root.trace_id());
        Ok(())
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags() -> Result<(), TraceParentError> {
        let parent = TraceParent::parse(EXAMPLE)?;
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_eq!(child.flags(), parent.flags());
        assert_ne!(child.span_id(), parent.span_id());
        assert_eq!(TraceParent::parse(&child.to_string())?, child);
        Ok(())
    }

    #[test]
    fn parts_must_not_be_zero() {
        assert_eq!(TraceParent::from_parts([0; 16], [1; 8], 0), Err(TraceParentError::TraceId));
        assert_eq!(TraceParent::from_parts([1; 16], [0; 8], 0), Err(TraceParentError::SpanId));
        assert!(TraceParent::from_parts([1; 16], [1; 8], 0).is_ok());
    }
}
