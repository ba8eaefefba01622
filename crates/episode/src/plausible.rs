//! Whether the times an adapter read are ones a crisis record can have: the same rules for every format,
//! applied once to the canonical events (by `formats`, so the gateway and `concordat translate` agree).
//!
//! Refused, because no sending system means them: an event or record time before 2000 or more than a day
//! after Concordat received it, a leap second (`23:59:60`, which most systems cannot store and no clinical
//! or police system records), a birth date before 1900 or after the day of receipt. Flagged as a warning,
//! because systems differ in what their "recorded" time means (an EPR's `meta.lastUpdated` can precede a
//! planned end): a record made before the event it records.
//!
//! Pure: the time of receipt comes in; nothing here reads a clock. Messages name the event by its position
//! and the source's own record reference, never by a value of the record.

use chrono::{DateTime, Duration, NaiveDate, Timelike as _, Utc};

use crate::adapter::{IngestError, Ingested, InputProblem};
use crate::event::CrisisEvent;
use crate::time::Timestamp;

/// The earliest event time accepted: 2000-01-01T00:00:00Z.
pub const EARLIEST_EVENT: DateTime<Utc> = DateTime::from_timestamp_nanos(946_684_800_000_000_000);
/// How far after its receipt an event may be stamped (clock skew between systems): one day.
pub const FUTURE_SKEW: Duration = Duration::days(1);

/// Checks every event's times against `received_at`; refuses implausible ones and flags records made
/// before their event in `ingested.warnings`.
///
/// # Errors
/// [`IngestError::Invalid`] listing every implausible time.
pub fn check_times(ingested: &mut Ingested, received_at: Timestamp) -> Result<(), IngestError> {
    let received = received_at.0.with_timezone(&Utc);
    let mut problems = Vec::new();
    for (position, event) in ingested.events.iter().enumerate() {
        let name = |field: &str| format!("event {position} ({}): {field}", event.source.record_ref.as_str());
        for (field, time) in [("occurred_at", event.occurred_at), ("recorded_at", event.recorded_at)] {
            if let Some(rule) = implausible(time, received) {
                problems.push(InputProblem {
                    location: crate::InputLocation::Document,
                    detail: format!("{} {rule}", name(field)),
                });
            }
        }
        if let Some(rule) = implausible_birth(event, received.date_naive()) {
            problems.push(InputProblem {
                location: crate::InputLocation::Document,
                detail: format!("{} {rule}", name("subject.birth_date")),
            });
        }
        if event.recorded_at.0 < event.occurred_at.0 {
            let detail = format!(
                "{} is before occurred_at: recorded before the event it records; check the sending system's times",
                name("recorded_at")
            );
            ingested.warnings.push(InputProblem { location: crate::InputLocation::Document, detail });
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(IngestError::Invalid(problems)) }
}

fn implausible(time: Timestamp, received: DateTime<Utc>) -> Option<&'static str> {
    let utc = time.0.with_timezone(&Utc);
    if time.0.nanosecond() >= 1_000_000_000 {
        Some("is a leap second, which no crisis record is stamped with")
    } else if utc < EARLIEST_EVENT {
        Some("is before 2000-01-01, earlier than any crisis record Concordat takes")
    } else if utc > received + FUTURE_SKEW {
        Some("is more than a day after the record was received")
    } else {
        None
    }
}

fn implausible_birth(event: &CrisisEvent, today: NaiveDate) -> Option<&'static str> {
    let born = event.subject.birth_date?;
    if born < NaiveDate::from_ymd_opt(1900, 1, 1)? {
        Some("is before 1900")
    } else if born > today {
        Some("is after the day the record was received")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn example() -> CrisisEvent {
        let text = include_str!("../../../schemas/examples/crisis-event/valid/police-s136-detention.json");
        crate::parse_event(text.as_bytes()).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn check(event: CrisisEvent, received: &str) -> Result<Vec<InputProblem>, Vec<InputProblem>> {
        let mut ingested = Ingested::events(vec![event]);
        match check_times(&mut ingested, at(received)) {
            Ok(()) => Ok(ingested.warnings),
            Err(IngestError::Invalid(problems)) => Err(problems),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_plausible_event_passes_without_warnings() {
        let event = example();
        let received = event.recorded_at.0 + Duration::minutes(5);
        assert_eq!(check(event, &received.to_rfc3339()), Ok(Vec::new()));
    }

    #[test]
    fn ancient_future_and_leap_second_times_are_refused() {
        for (occurred, rule) in [
            ("0001-01-01T00:00:00Z", "before 2000"),
            ("9999-12-31T23:59:59Z", "more than a day after"),
            ("2026-03-01T23:59:60Z", "leap second"),
        ] {
            let mut event = example();
            event.occurred_at = at(occurred);
            let problems = check(event, "2026-03-02T08:00:00Z").unwrap_err();
            assert!(problems.iter().any(|problem| problem.detail.contains(rule)), "{occurred}: {problems:?}");
        }
    }

    #[test]
    fn impossible_birth_dates_are_refused() {
        for born in [NaiveDate::from_ymd_opt(1850, 1, 1), NaiveDate::from_ymd_opt(2027, 1, 1)] {
            let mut event = example();
            event.subject.birth_date = born;
            let problems = check(event, "2026-03-02T08:00:00Z").unwrap_err();
            assert!(problems.iter().any(|problem| problem.detail.contains("subject.birth_date")), "{problems:?}");
            assert!(problems.iter().all(|problem| !problem.detail.contains("1850")), "values are never quoted");
        }
    }

    #[test]
    fn a_record_made_before_its_event_is_flagged_not_refused() {
        let mut event = example();
        event.recorded_at = Timestamp(event.occurred_at.0 - Duration::hours(2));
        let warnings = check(event, "2026-03-02T08:00:00Z").unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].detail.contains("recorded before the event"), "{warnings:?}");
    }
}
