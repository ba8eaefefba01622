//! The reconnect schedule: exponential backoff with a ceiling, and the jitter applied to it.
//!
//! Pure arithmetic over [`Duration`]s: it neither sleeps nor reads a clock. The consumer's reconnect loop
//! ([`crate::consume`]) sleeps for what it yields.

use std::time::Duration;

/// Why a backoff cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBackoff {
    /// A zero first delay would reconnect in a busy loop.
    #[error("the initial delay must be above zero")]
    ZeroInitial,
    /// The ceiling is below the first delay.
    #[error("the maximum delay ({max_ms} ms) is below the initial delay ({initial_ms} ms)")]
    MaxBelowInitial {
        /// The initial delay in milliseconds.
        initial_ms: u128,
        /// The maximum delay in milliseconds.
        max_ms: u128,
    },
}

/// Delays between reconnection attempts: `initial`, then doubling on each failure, capped at `max`.
///
/// With the defaults (500 ms, 30 s) the waits are 0.5, 1, 2, 4, 8, 16, 30, 30, … seconds. After a connection
/// that worked, [`Backoff::reset`] starts again from `initial`. Callers spread the waits of many processes
/// with [`jittered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A schedule from `initial` doubling up to `max`.
    ///
    /// # Errors
    ///
    /// [`InvalidBackoff`] when `initial` is zero or above `max`.
    pub fn try_new(initial: Duration, max: Duration) -> Result<Self, InvalidBackoff> {
        if initial.is_zero() {
            return Err(InvalidBackoff::ZeroInitial);
        }
        if max < initial {
            return Err(InvalidBackoff::MaxBelowInitial { initial_ms: initial.as_millis(), max_ms: max.as_millis() });
        }
        Ok(Self { initial, max, next: initial })
    }

    /// The delay before the next attempt; each call doubles the one after, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.max);
        debug_assert!(self.initial <= delay && delay <= self.max);
        delay
    }

    /// Starts the schedule again from the initial delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// `delay` scaled into `[delay / 2, delay]` by `unit`, a number in `[0, 1]`.
///
/// When RabbitMQ restarts, every consumer loses its connection at the same instant; drawing each wait from
/// the upper half of the delay spreads their reconnections out while keeping the schedule's growth.
/// Values of `unit` outside `[0, 1]` are clamped.
#[must_use]
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    let unit = if unit.is_nan() { 1.0 } else { unit.clamp(0.0, 1.0) };
    delay.mul_f64(0.5 + unit / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn sequence(initial: u64, max: u64, count: usize) -> Vec<u128> {
        let mut backoff = Backoff::try_new(ms(initial), ms(max)).expect("valid backoff");
        (0..count).map(|_| backoff.next_delay().as_millis()).collect()
    }

    #[test]
    fn doubles_up_to_the_maximum() {
        assert_eq!(sequence(500, 30_000, 9), [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
        assert_eq!(sequence(100, 100, 3), [100, 100, 100]);
        assert_eq!(sequence(300, 1000, 4), [300, 600, 1000, 1000]);
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::try_new(ms(10), ms(1000)).expect("valid backoff");
        backoff.next_delay();
        backoff.next_delay();
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(10));
    }

    #[test]
    fn never_overflows() {
        let mut backoff = Backoff::try_new(ms(1), Duration::MAX).expect("valid backoff");
        for _ in 0..200 {
            assert!(backoff.next_delay() <= Duration::MAX);
        }
    }

    #[test]
    fn rejects_bad_bounds() {
        assert_eq!(Backoff::try_new(Duration::ZERO, ms(10)), Err(InvalidBackoff::ZeroInitial));
        assert_eq!(
            Backoff::try_new(ms(20), ms(10)),
            Err(InvalidBackoff::MaxBelowInitial { initial_ms: 20, max_ms: 10 })
        );
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        assert_eq!(jittered(ms(1000), 0.0), ms(500));
        assert_eq!(jittered(ms(1000), 1.0), ms(1000));
        assert_eq!(jittered(ms(1000), 0.5), ms(750));
        assert_eq!(jittered(ms(1000), -3.0), ms(500));
        assert_eq!(jittered(ms(1000), 7.0), ms(1000));
        assert_eq!(jittered(ms(1000), f64::NAN), ms(1000));
        for step in 0..=100 {
            let delay = jittered(ms(30_000), f64::from(step) / 100.0);
            assert!(ms(15_000) <= delay && delay <= ms(30_000));
        }
    }
}
