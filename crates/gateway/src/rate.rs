//! Per-agency rate limits on HTTP ingest: how many requests an authenticated agency may make, as a rate
//! with a burst, and how long a refused caller should wait.
//!
//! Each agency has its own allowance, kept as the generic cell rate algorithm (GCRA, the token bucket
//! written as one instant per agency): requests are spaced `60 s / per_minute` apart on average, and up to
//! `burst` may come at once after a quiet spell. [`Allowance::admit`] is pure (the caller passes the time);
//! [`RateLimits`] keeps one allowance per agency behind a lock. A refused request changes nothing, so a
//! client that retries too early does not push its own wait further out. This module decides only whether
//! to admit; the 429 is [`crate::http`]'s.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use concordat_episode::AgencyId;

/// A rate: requests per minute on average, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// The spacing of requests at the sustained rate.
    interval: Duration,
    /// How far ahead of the sustained rate a caller may run: `interval × (burst − 1)`.
    tolerance: Duration,
}

impl Rate {
    /// `per_minute` requests a minute with bursts of `burst`; `None` when either is zero.
    pub(crate) fn new(per_minute: u32, burst: u32) -> Option<Self> {
        if per_minute == 0 || burst == 0 {
            return None;
        }
        let interval = Duration::from_secs(60) / per_minute;
        Some(Self { interval, tolerance: interval.saturating_mul(burst - 1) })
    }
}

/// One agency's allowance: the theoretical arrival time of its next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allowance {
    next: Instant,
}

impl Allowance {
    /// A full allowance at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self { next: now }
    }

    /// Admits a request at `now` and spends its share, or refuses it with how long until one would be
    /// admitted (and spends nothing).
    pub(crate) fn admit(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let next = self.next.max(now);
        let ahead = next.duration_since(now);
        if ahead > rate.tolerance {
            return Err(ahead - rate.tolerance);
        }
        self.next = next + rate.interval;
        Ok(())
    }
}

/// The allowances of every agency that has made a request, with each agency's rate.
#[derive(Debug)]
pub(crate) struct RateLimits {
    default: Rate,
    own: BTreeMap<AgencyId, Rate>,
    allowances: Mutex<BTreeMap<AgencyId, Allowance>>,
}

impl RateLimits {
    /// `default` for every agency but those in `own`.
    pub(crate) fn new(default: Rate, own: BTreeMap<AgencyId, Rate>) -> Self {
        Self { default, own, allowances: Mutex::new(BTreeMap::new()) }
    }

    /// Admits a request of `agency` at `now`, or says how long it should wait.
    pub(crate) fn admit(&self, agency: &AgencyId, now: Instant) -> Result<(), Duration> {
        let rate = self.own.get(agency).copied().unwrap_or(self.default);
        // A poisoned lock only means another request panicked mid-update; the map is still usable.
        let mut allowances = self.allowances.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        allowances.entry(agency.clone()).or_insert_with(|| Allowance::new(now)).admit(rate, now)
    }
}

/// Whole seconds for `Retry-After` (RFC 9110 §10.2.3): rounded up, at least 1.
pub(crate) fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rate(per_minute: u32, burst: u32) -> Rate {
        Rate::new(per_minute, burst).unwrap()
    }

    #[test]
    fn a_burst_is_admitted_then_the_rate_holds() {
        let start = Instant::now();
        let rate = rate(60, 3);
        let mut allowance = Allowance::new(start);
        for _ in 0..3 {
            assert_eq!(allowance.admit(rate, start), Ok(()));
        }
        assert_eq!(allowance.admit(rate, start), Err(Duration::from_secs(1)), "the fourth waits one interval");
        assert_eq!(allowance.admit(rate, start + Duration::from_millis(400)), Err(Duration::from_millis(600)));
        assert_eq!(allowance.admit(rate, start + Duration::from_secs(1)), Ok(()), "refusals cost nothing");
        assert!(allowance.admit(rate, start + Duration::from_secs(1)).is_err());
        assert_eq!(allowance.admit(rate, start + Duration::from_secs(60)), Ok(()));
        for _ in 0..2 {
            assert_eq!(allowance.admit(rate, start + Duration::from_secs(60)), Ok(()), "a quiet spell refills");
        }
        assert!(allowance.admit(rate, start + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn agencies_have_their_own_allowances_and_rates() {
        let start = Instant::now();
        let police = AgencyId::new("northvale-police").unwrap();
        let haven = AgencyId::new("safe-haven").unwrap();
        let limits = RateLimits::new(rate(1, 1), BTreeMap::from([(police.clone(), rate(1, 2))]));
        assert!(limits.admit(&haven, start).is_ok());
        assert_eq!(limits.admit(&haven, start), Err(Duration::from_secs(60)));
        assert!(limits.admit(&police, start).is_ok(), "another agency is not held back");
        assert!(limits.admit(&police, start).is_ok(), "its own burst");
        assert!(limits.admit(&police, start).is_err());
    }

    #[test]
    fn zero_rates_are_not_rates_and_waits_round_up() {
        assert_eq!(Rate::new(0, 5), None);
        assert_eq!(Rate::new(5, 0), None);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(59)), 59);
        assert_eq!(retry_after_seconds(Duration::from_millis(59_001)), 60);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }

    proptest! {
        /// In any window, no more requests are admitted than the burst plus the rate over the window, and
        /// a refused caller that comes back after the wait it was given is admitted.
        #[test]
        fn admitted_requests_never_exceed_burst_plus_rate(
            per_minute in 1_u32..6000,
            burst in 1_u32..50,
            gaps in proptest::collection::vec(0_u64..2000, 1..300),
        ) {
            let rate = rate(per_minute, burst);
            let start = Instant::now();
            let mut allowance = Allowance::new(start);
            let mut now = start;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                match allowance.admit(rate, now) {
                    Ok(()) => admitted.push(now),
                    Err(wait) => {
                        prop_assert!(wait > Duration::ZERO);
                        let mut retry = allowance;
                        prop_assert!(retry.admit(rate, now + wait).is_ok(), "admitted after the wait it was told");
                    }
                }
            }
            let interval = rate.interval.as_nanos();
            for (index, first) in admitted.iter().enumerate() {
                for (later, last) in admitted[index..].iter().enumerate() {
                    // The request `later` places after `first` comes no earlier than `(later + 1 − burst)`
                    // intervals after it.
                    let whole_intervals = last.duration_since(*first).as_nanos() / interval;
                    let count = u128::try_from(later + 1).unwrap();
                    prop_assert!(count <= u128::from(burst) + whole_intervals, "{count} admitted in {whole_intervals} intervals");
                }
            }
        }
    }
}
