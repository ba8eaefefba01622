//! UK local time (Europe/London) to an instant with its offset, by the rule in force since 1996: British
//! Summer Time (UTC+01:00) from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of
//! October, Greenwich Mean Time (UTC+00:00) otherwise.
//!
//! This is not a time-zone database: it knows one zone and its current rule, which is all a UK service's
//! spreadsheet needs, and so it needs no tz data. Dates before 1996 are converted by the same rule.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Weekday};

/// Why a UK local time does not name exactly one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalTimeError {
    /// The time falls in the hour skipped when the clocks go forward (01:00-02:00 on the last Sunday of March).
    Skipped,
    /// The time falls in the hour repeated when the clocks go back (01:00-02:00 on the last Sunday of October).
    Repeated,
    /// The date is too far from today for the calendar arithmetic.
    OutOfRange,
}

const GMT: i32 = 0;
const BST: i32 = 3600;

/// The UTC offset in force in the UK at a UTC instant.
pub fn offset_at(utc: NaiveDateTime) -> Option<FixedOffset> {
    let year = utc.year();
    let start = last_sunday(year, 3)?.and_time(one_am());
    let end = last_sunday(year, 10)?.and_time(one_am());
    let seconds = if start <= utc && utc < end { BST } else { GMT };
    FixedOffset::east_opt(seconds)
}

/// The instant a UK wall-clock time names.
///
/// # Errors
/// [`LocalTimeError`] when the time was skipped or repeated by a clock change, or out of range.
pub fn resolve(local: NaiveDateTime) -> Result<DateTime<FixedOffset>, LocalTimeError> {
    // Try each offset the UK uses: a reading is right when the rule gives that offset at the instant it
    // names. Both right means the hour repeats; neither means the hour was skipped.
    let mut readings = Vec::with_capacity(2);
    for seconds in [GMT, BST] {
        let offset = FixedOffset::east_opt(seconds).ok_or(LocalTimeError::OutOfRange)?;
        let utc = local.checked_sub_signed(Duration::seconds(i64::from(seconds))).ok_or(LocalTimeError::OutOfRange)?;
        if offset_at(utc).ok_or(LocalTimeError::OutOfRange)? == offset {
            readings.push(DateTime::from_naive_utc_and_offset(utc, offset));
        }
    }
    match readings.as_slice() {
        [only] => Ok(*only),
        [] => Err(LocalTimeError::Skipped),
        _ => Err(LocalTimeError::Repeated),
    }
}

/// The same instant as UK wall-clock time.
pub fn to_local(instant: DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
    let utc = instant.naive_utc();
    Some(instant.with_timezone(&offset_at(utc)?))
}

fn one_am() -> NaiveTime {
    NaiveTime::MIN + Duration::hours(1)
}

fn last_sunday(year: i32, month: u32) -> Option<NaiveDate> {
    let last_day = NaiveDate::from_ymd_opt(year, month + 1, 1)?.pred_opt()?;
    let back = last_day.weekday().num_days_from_sunday();
    last_day.checked_sub_signed(Duration::days(i64::from(back))).filter(|day| day.weekday() == Weekday::Sun)
}

#[cfg(test)]
mod tests {
    use chrono::Timelike;
    use proptest::prelude::*;

    use super::*;

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn known_clock_changes() {
        // Published UK clock changes: 31 Mar / 27 Oct 2024, 30 Mar / 26 Oct 2025, 29 Mar / 25 Oct 2026.
        for (spring, autumn) in
            [("2024-03-31", "2024-10-27"), ("2025-03-30", "2025-10-26"), ("2026-03-29", "2026-10-25")]
        {
            let at = |day: &str, time: &str| resolve(local(&format!("{day} {time}")));
            assert_eq!(at(spring, "00:59").unwrap().to_rfc3339(), format!("{spring}T00:59:00+00:00"));
            assert_eq!(at(spring, "01:00"), Err(LocalTimeError::Skipped));
            assert_eq!(at(spring, "01:59"), Err(LocalTimeError::Skipped));
            assert_eq!(at(spring, "02:00").unwrap().to_rfc3339(), format!("{spring}T02:00:00+01:00"));
            assert_eq!(at(autumn, "00:59").unwrap().to_rfc3339(), format!("{autumn}T00:59:00+01:00"));
            assert_eq!(at(autumn, "01:00"), Err(LocalTimeError::Repeated));
            assert_eq!(at(autumn, "01:59"), Err(LocalTimeError::Repeated));
            assert_eq!(at(autumn, "02:00").unwrap().to_rfc3339(), format!("{autumn}T02:00:00+00:00"));
        }
        assert_eq!(resolve(local("2026-07-01 23:05")).unwrap().to_rfc3339(), "2026-07-01T23:05:00+01:00");
        assert_eq!(resolve(local("2026-01-15 09:30")).unwrap().to_rfc3339(), "2026-01-15T09:30:00+00:00");
    }

    proptest! {
        #[test]
        fn every_instant_reads_back(seconds in 0i64..4_102_444_800) {
            let utc = DateTime::from_timestamp(seconds, 0).unwrap().naive_utc();
            let offset = offset_at(utc).unwrap();
            let wall = utc + Duration::seconds(i64::from(offset.local_minus_utc()));
            match resolve(wall) {
                Ok(instant) => prop_assert_eq!(instant.naive_utc(), utc),
                // Only the repeated hour is ambiguous, and only in October between 01:00 and 02:00 local.
                Err(error) => {
                    prop_assert_eq!(error, LocalTimeError::Repeated);
                    prop_assert_eq!(wall.month(), 10);
                    prop_assert_eq!(wall.hour(), 1);
                }
            }
        }
    }
}
