//! Retention (DESIGN.md §7, invariant 7): personal data are kept only as long as configured. On a schedule,
//! the store purges what has outlived its kind's period (event payloads and events held for pre-crisis
//! context, sent deliveries, closed episodes' subject keys and refs, dead deliveries' bodies) and the
//! dead-letter queues lose the dead letters older than theirs. The audit chain holds none of these, so it
//! still verifies; each purge is itself audited, by counts and cut-offs.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use concordat_bus::{BusConfig, Topology, expire_dead_letters};
use concordat_store::{PurgeCutoffs, PurgeReport, Store};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A length of time written the way operators write it: a whole number and a unit, `s`, `m`, `h` or `d`
/// (`90d`, `12h`, `30m`, `45s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(Duration);

impl Period {
    /// A period of `days` days.
    #[must_use]
    pub const fn days(days: u64) -> Self {
        Self(Duration::from_secs(days.saturating_mul(86_400)))
    }

    /// The period as a [`Duration`].
    #[must_use]
    pub const fn duration(self) -> Duration {
        self.0
    }

    /// `now` less this period (the earliest time when the period is longer than time itself).
    fn before(self, now: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(self.0)
            .ok()
            .and_then(|period| now.checked_sub_signed(period))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// Why a text is not a [`Period`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a period: write a whole number and a unit, s, m, h or d (e.g. `90d`, `12h`)")]
pub struct InvalidPeriod(String);

impl FromStr for Period {
    type Err = InvalidPeriod;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidPeriod(text.to_owned());
        let trimmed = text.trim();
        let split = trimmed.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        let (number, unit) = trimmed.split_at(split);
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(invalid()),
        };
        number.checked_mul(seconds).map(|total| Self(Duration::from_secs(total))).ok_or_else(invalid)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.as_secs();
        match seconds {
            0 => write!(f, "0s"),
            _ if seconds.is_multiple_of(86_400) => write!(f, "{}d", seconds / 86_400),
            _ if seconds.is_multiple_of(3_600) => write!(f, "{}h", seconds / 3_600),
            _ if seconds.is_multiple_of(60) => write!(f, "{}m", seconds / 60),
            _ => write!(f, "{seconds}s"),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Period;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a period such as \"90d\", \"12h\", \"30m\" or \"45s\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Period, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// How long each kind of record is kept, and how often the purge runs (`[retention]`). The sharing
/// agreements set these; the defaults are a starting point, not advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Canonical event payloads, and the events held for pre-crisis context, after they were received.
    /// A crisis plan older than this is no longer offered as context.
    pub events: Period,
    /// Sent deliveries (the outbox copy of what an inbox received), after they were made.
    pub deliveries: Period,
    /// Closed episodes' subject keys and correlation refs, after the episode closed.
    pub episodes: Period,
    /// Dead letters in RabbitMQ, after they were dead-lettered, and the bodies of deliveries that could not
    /// be delivered.
    pub dead_letters: Period,
    /// How often the purge runs.
    pub every: Period,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events: Period::days(90),
            deliveries: Period::days(30),
            episodes: Period::days(90),
            dead_letters: Period::days(30),
            every: Period(Duration::from_secs(3_600)),
        }
    }
}

impl RetentionConfig {
    /// The store's cut-offs at `now`.
    #[must_use]
    pub fn cutoffs(&self, now: DateTime<Utc>) -> PurgeCutoffs {
        PurgeCutoffs {
            events: self.events.before(now),
            deliveries: self.deliveries.before(now),
            dead_deliveries: self.dead_letters.before(now),
            episodes: self.episodes.before(now),
        }
    }

    /// The dead letters' cut-off at `now`, in seconds since the Unix epoch (how RabbitMQ stamps them).
    #[must_use]
    pub fn dead_letter_cutoff(&self, now: SystemTime) -> u64 {
        now.checked_sub(self.dead_letters.0)
            .and_then(|cutoff| cutoff.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_secs())
    }
}

/// What one round of retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// What the store purged.
    pub store: PurgeReport,
    /// How many dead letters left their queues.
    pub dead_letters: usize,
}

/// Why a round of retention did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The store's purge failed; nothing of it was purged.
    #[error("purging the store: {0}")]
    Store(#[from] concordat_store::StoreError),
    /// The dead-letter queues could not be read.
    #[error("expiring dead letters: {0}")]
    DeadLetters(#[from] concordat_bus::DeadLetterError),
}

/// One round: purges the store and expires dead letters as `config` says, at `now`. The store goes first;
/// a store failure stops the round.
///
/// # Errors
/// [`RetentionError`].
pub async fn apply_retention(
    store: &Store,
    bus: &BusConfig,
    topology: &Topology,
    config: &RetentionConfig,
    now: DateTime<Utc>,
) -> Result<RetentionReport, RetentionError> {
    let purged = store.purge_personal_data(&config.cutoffs(now), now).await?;
    let expired = expire_dead_letters(bus, topology, config.dead_letter_cutoff(SystemTime::from(now))).await?;
    let report = RetentionReport { store: purged, dead_letters: expired.len() };
    count(&report);
    Ok(report)
}

/// What a round removed, by kind of record: the metric's label values and counts.
fn purged(report: &RetentionReport) -> [(&'static str, u64); 7] {
    let PurgeReport { event_payloads, unattached_events, deliveries_deleted, dead_bodies_cleared, subject_keys, refs } =
        report.store;
    [
        ("event_payload", event_payloads),
        ("unattached_event", unattached_events),
        ("delivery", deliveries_deleted),
        ("dead_delivery_body", dead_bodies_cleared),
        ("subject_key", subject_keys),
        ("ref", refs),
        ("dead_letter", report.dead_letters as u64),
    ]
}

fn count(report: &RetentionReport) {
    for (record, n) in purged(report) {
        concordat_telemetry::add("concordat_retention_purged_total", &[("record", record)], n);
    }
}

/// Runs [`apply_retention`] at start and then every `config.every` until `shutdown` fires. A failed round
/// is logged and tried again at the next.
pub async fn run_retention(
    store: Store,
    bus: BusConfig,
    topology: Topology,
    config: RetentionConfig,
    shutdown: CancellationToken,
) {
    loop {
        match apply_retention(&store, &bus, &topology, &config, Utc::now()).await {
            Ok(report) => {
                let removed: Vec<String> = purged(&report).iter().map(|(record, n)| format!("{record}={n}")).collect();
                info!(message = "Retention applied.", removed = %removed.join(" "));
            }
            Err(error) => warn!(message = "Retention failed; trying again next round.", %error),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(config.every.duration().max(Duration::from_secs(1))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_and_write_in_operators_units() {
        for (text, seconds) in [("90d", 90 * 86_400), ("12h", 43_200), ("30m", 1_800), ("45s", 45), (" 2d ", 172_800)] {
            let period: Period = text.parse().unwrap();
            assert_eq!(period.duration(), Duration::from_secs(seconds), "{text}");
            assert_eq!(period.to_string().parse::<Period>().unwrap(), period, "{text} round-trips");
        }
        assert_eq!(Period::days(30).to_string(), "30d");
        assert_eq!("90m".parse::<Period>().unwrap().to_string(), "90m");
        for bad in ["", "d", "90", "90 days", "-1d", "1.5d", "1w", "99999999999999999999d", "18446744073709551615d"] {
            let error = bad.parse::<Period>().unwrap_err().to_string();
            assert!(error.contains("not a period"), "{bad}: {error}");
        }
    }

    #[test]
    fn cutoffs_count_back_from_now_per_kind() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").unwrap().to_utc();
        let config = RetentionConfig {
            events: "1d".parse().unwrap(),
            deliveries: "2h".parse().unwrap(),
            episodes: "30m".parse().unwrap(),
            dead_letters: "10s".parse().unwrap(),
            every: "1m".parse().unwrap(),
        };
        let cutoffs = config.cutoffs(now);
        assert_eq!(cutoffs.events.to_rfc3339(), "2026-11-26T12:00:00+00:00");
        assert_eq!(cutoffs.deliveries.to_rfc3339(), "2026-11-27T10:00:00+00:00");
        assert_eq!(cutoffs.episodes.to_rfc3339(), "2026-11-27T11:30:00+00:00");
        assert_eq!(cutoffs.dead_deliveries.to_rfc3339(), "2026-11-27T11:59:50+00:00");
        let now_secs = u64::try_from(now.timestamp()).unwrap();
        assert_eq!(config.dead_letter_cutoff(SystemTime::from(now)), now_secs - 10);
        let forever = RetentionConfig { events: Period::days(u64::MAX / 86_400), ..config };
        assert_eq!(forever.cutoffs(now).events, DateTime::<Utc>::MIN_UTC, "a period longer than time keeps all");
    }

    #[test]
    fn the_section_reads_from_toml_like_values_with_defaults_for_what_is_left_out() {
        let config: RetentionConfig = serde_json::from_str(r#"{"events": "7d", "dead_letters": "12h"}"#).unwrap();
        assert_eq!(config.events, Period::days(7));
        assert_eq!(config.dead_letters.duration(), Duration::from_secs(43_200));
        assert_eq!(config.deliveries, RetentionConfig::default().deliveries);
        let error = serde_json::from_str::<RetentionConfig>(r#"{"events": 7}"#).unwrap_err().to_string();
        assert!(error.contains("a period such as"), "{error}");
        let error = serde_json::from_str::<RetentionConfig>(r#"{"event": "7d"}"#).unwrap_err().to_string();
        assert!(error.contains("unknown field"), "{error}");
    }
}
