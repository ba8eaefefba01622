//! Random bytes for trace and span ids and for reconnect jitter, drawn from the operating system's generator.
//!
//! It goes through `uuid`'s version 4 generator, already a dependency, rather than adding a crate. It is not
//! for keys or tokens.

use uuid::Uuid;

/// The positions of a version 4 UUID that hold random bits only: byte 6 carries the version and byte 8 the
/// variant (RFC 9562 §5.4).
const RANDOM_POSITIONS: [usize; 14] = [0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 13, 14, 15];

/// `N` uniformly random bytes.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0_u8; N];
    let mut filled = 0;
    while filled < N {
        let uuid = Uuid::new_v4();
        let bytes = uuid.as_bytes();
        for &position in &RANDOM_POSITIONS {
            if filled == N {
                break;
            }
            out[filled] = bytes[position];
            filled += 1;
        }
    }
    out
}

/// A uniformly random number in `[0, 1)`.
pub(crate) fn random_unit() -> f64 {
    // 53 random bits fill an f64 mantissa exactly.
    let value = u64::from_le_bytes(random_bytes::<8>()) >> 11;
    value as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_differ_between_calls() {
        let first = random_bytes::<16>();
        let second = random_bytes::<16>();
        assert_ne!(first, second);
        assert_ne!(random_bytes::<40>(), [0_u8; 40]);
    }

    #[test]
    fn unit_stays_in_range() {
        for _ in 0..1000 {
            let unit = random_unit();
            assert!((0.0..1.0).contains(&unit));
        }
    }
}
