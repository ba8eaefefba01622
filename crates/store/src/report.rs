//! The impact report: what flowed between partners over a period, what was withheld and why, and whether
//! the agencies that started episodes heard how they ended.
//!
//! Counts come from SQL that both databases run as written; durations are computed here from the rows, and
//! percentiles by nearest rank, so SQLite and PostgreSQL give the same figures. The report holds ids,
//! agencies, deny reasons, counts and durations: no personal data, and nothing read from event payloads,
//! so it is the same before and after a purge.
//!
//! This module is not the readable report: rendering it as Markdown, CSV or JSON is the command line's job.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone as _, Utc};
use concordat_episode::AgencyId;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::{EpisodeState, micros};
use crate::rows::{self, Cols};
use crate::store::Store;
use crate::tx::{Tx, on};

/// The impact report over a period. Serializable because `concordat report --format json` prints it as it
/// is: its field names are a promise to whoever reads that output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactReport {
    /// The period's start (inclusive); none means from the first record.
    pub from: Option<DateTime<Utc>>,
    /// The period's end (exclusive); none means up to the last record.
    pub to: Option<DateTime<Utc>>,
    /// The time "overdue" was judged at.
    pub as_of: DateTime<Utc>,
    /// Sharing between partners, one entry per source and recipient that had any decision or dead
    /// delivery in the period, by source then recipient.
    pub pairs: Vec<PairFlow>,
    /// Outcome feedback to the agencies that started episodes, one entry per originator with an episode
    /// opened in the period, by originator.
    pub originators: Vec<OriginatorFeedback>,
    /// Decisions in the period whose event's source is no longer known (an event held before any episode
    /// and since purged). Counted here so the totals still add up.
    pub decisions_without_source: u64,
}

/// What one agency's events did for one recipient over the period.
///
/// An event counts once per recipient: the router makes one decision per event and recipient. Events the
/// router makes itself (`feedback.outcome`, `context.pre_crisis`) count under the agency whose event they
/// came from, as they carry its information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairFlow {
    /// The agency whose events these are.
    pub source: AgencyId,
    /// The agency decided on.
    pub recipient: AgencyId,
    /// Distinct episodes with at least one decision for this pair (events held before any episode count in
    /// `shared` and `withheld` but not here).
    pub episodes: u64,
    /// Events shared (verdict permit).
    pub shared: u64,
    /// Events withheld (verdict deny), all reasons together.
    pub withheld: u64,
    /// Events withheld by the policy engine's reason (`no_agreement`, `consent_required` …).
    pub withheld_by_reason: BTreeMap<String, u64>,
    /// Deliveries for this pair created in the period that are dead: publishing them failed too often
    /// and they wait for an operator (`dlq`). Events dead-lettered before they reached the store are on the
    /// broker's dead-letter queues and are not counted here.
    pub dead_deliveries: u64,
}

/// Whether the agency that started episodes heard how they ended.
///
/// The time to feedback runs from the crisis, which is the `occurred_at` of the event that opened the
/// episode, to the moment the router queued `feedback.outcome` for the originator. When the opening event's
/// row is missing, the episode's `opened_at` stands in for the crisis time (counted in
/// `crisis_time_from_opening`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginatorFeedback {
    /// The agency whose events opened the episodes.
    pub originator: AgencyId,
    /// Episodes opened in the period.
    pub episodes: u64,
    /// Of those, episodes whose originator has had outcome feedback (at any time up to now).
    pub with_feedback: u64,
    /// `with_feedback / episodes`, from 0 to 1.
    pub feedback_rate: f64,
    /// Median time from the crisis to feedback, in seconds, over the episodes with feedback.
    pub median_to_feedback_secs: Option<i64>,
    /// 90th percentile (nearest rank) of the same times, in seconds.
    pub p90_to_feedback_secs: Option<i64>,
    /// Episodes now closed whose originator never had feedback.
    pub closed_without_feedback: u64,
    /// Episodes still open, with no feedback, past their feedback deadline at `as_of`.
    pub overdue: u64,
    /// Of the episodes with feedback, those whose crisis time was taken from `opened_at` because the
    /// opening event's row was not found.
    pub crisis_time_from_opening: u64,
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `percent`% of the values
/// at or below it. `None` for no values.
fn nearest_rank(sorted: &[i64], percent: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (usize::try_from(percent).unwrap_or(100).saturating_mul(n)).div_ceil(100).clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// The far ends used for an open window, so both databases compare against a bound value. Both are inside
/// the range of PostgreSQL's `timestamptz` and sort correctly as SQLite text.
fn window_bounds(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> (DateTime<Utc>, DateTime<Utc>) {
    let earliest = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC);
    let latest = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single().unwrap_or(DateTime::<Utc>::MAX_UTC);
    (from.map_or(earliest, micros), to.map_or(latest, micros))
}

/// One group of decisions: source (none when unknown), recipient, verdict, reason and how many.
struct DecisionCount {
    source: Option<String>,
    recipient: AgencyId,
    permit: bool,
    reason: String,
    n: u64,
}

/// Distinct episodes per source and recipient.
struct EpisodeCount {
    source: AgencyId,
    recipient: AgencyId,
    n: u64,
}

/// One episode opened in the window, as the feedback figures need it.
struct OpenedEpisode {
    originator: AgencyId,
    state: EpisodeState,
    opened_at: DateTime<Utc>,
    crisis_at: Option<DateTime<Utc>>,
    feedback_due_at: Option<DateTime<Utc>>,
    feedback_delivered_at: Option<DateTime<Utc>>,
}

fn n(row: &impl Cols, table: &'static str) -> Result<u64, StoreError> {
    u64::try_from(row.int("n")?).map_err(|_| StoreError::Corrupt { table, column: "n" })
}

fn decision_count(row: &impl Cols) -> Result<DecisionCount, StoreError> {
    Ok(DecisionCount {
        source: row.opt_text("source")?,
        recipient: rows::agency(row, "decisions", "recipient")?,
        permit: row.text("verdict")? == "permit",
        reason: row.text("reason")?,
        n: n(row, "decisions")?,
    })
}

fn episode_count(row: &impl Cols) -> Result<EpisodeCount, StoreError> {
    Ok(EpisodeCount {
        source: rows::agency(row, "events", "source")?,
        recipient: rows::agency(row, "decisions", "recipient")?,
        n: n(row, "decisions")?,
    })
}

fn dead_count(row: &impl Cols) -> Result<EpisodeCount, StoreError> {
    Ok(EpisodeCount {
        source: rows::agency(row, "events", "source")?,
        recipient: rows::agency(row, "outbox", "recipient")?,
        n: n(row, "outbox")?,
    })
}

fn opened_episode(row: &impl Cols) -> Result<OpenedEpisode, StoreError> {
    const T: &str = "episodes";
    Ok(OpenedEpisode {
        originator: rows::agency(row, T, "originator")?,
        state: EpisodeState::parse(&row.text("state")?).ok_or(StoreError::Corrupt { table: T, column: "state" })?,
        opened_at: row.time("opened_at")?,
        crisis_at: row.opt_time("crisis_at")?,
        feedback_due_at: row.opt_time("feedback_due_at")?,
        feedback_delivered_at: row.opt_time("feedback_delivered_at")?,
    })
}

// The source of a decision's event: the episode's event row, else the row of an event held before any
// episode. Both joins are on the primary key.
const DECISION_SOURCE: &str = "decisions d LEFT JOIN events e ON e.event_id = d.event_id \
     LEFT JOIN unattached_events u ON u.event_id = d.event_id";

impl Tx {
    async fn decision_counts(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DecisionCount>, StoreError> {
        let sql = format!(
            "SELECT COALESCE(e.source_agency, u.source_agency) AS source, d.recipient, d.verdict, d.reason, \
             CAST(COUNT(*) AS BIGINT) AS n FROM {DECISION_SOURCE} \
             WHERE d.decided_at >= $1 AND d.decided_at < $2 \
             GROUP BY COALESCE(e.source_agency, u.source_agency), d.recipient, d.verdict, d.reason"
        );
        on!(self, |c| sqlx::query(&sql)
            .bind(from)
            .bind(to)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(decision_count)
            .collect())
    }

    async fn episode_counts(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EpisodeCount>, StoreError> {
        let sql = "SELECT e.source_agency AS source, d.recipient, CAST(COUNT(DISTINCT d.episode_id) AS BIGINT) AS n \
                   FROM decisions d JOIN events e ON e.event_id = d.event_id \
                   WHERE d.decided_at >= $1 AND d.decided_at < $2 AND d.episode_id IS NOT NULL \
                   GROUP BY e.source_agency, d.recipient";
        on!(self, |c| sqlx::query(sql)
            .bind(from)
            .bind(to)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(episode_count)
            .collect())
    }

    async fn dead_counts(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<EpisodeCount>, StoreError> {
        let sql = "SELECT COALESCE(e.source_agency, u.source_agency) AS source, o.recipient, \
                   CAST(COUNT(*) AS BIGINT) AS n FROM outbox o \
                   LEFT JOIN events e ON e.event_id = o.event_id \
                   LEFT JOIN unattached_events u ON u.event_id = o.event_id \
                   WHERE o.status = 'dead' AND o.created_at >= $1 AND o.created_at < $2 \
                   AND COALESCE(e.source_agency, u.source_agency) IS NOT NULL \
                   GROUP BY COALESCE(e.source_agency, u.source_agency), o.recipient";
        on!(self, |c| sqlx::query(sql).bind(from).bind(to).fetch_all(&mut **c).await?.iter().map(dead_count).collect())
    }

    async fn opened_episodes(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OpenedEpisode>, StoreError> {
        let sql = "SELECT ep.originator, ep.state, ep.opened_at, ev.occurred_at AS crisis_at, ep.feedback_due_at, \
                   ep.feedback_delivered_at FROM episodes ep LEFT JOIN events ev ON ev.event_id = ep.opened_by_event \
                   WHERE ep.opened_at >= $1 AND ep.opened_at < $2 ORDER BY ep.originator, ep.opened_at, ep.id";
        on!(self, |c| sqlx::query(sql)
            .bind(from)
            .bind(to)
            .fetch_all(&mut **c)
            .await?
            .iter()
            .map(opened_episode)
            .collect())
    }
}

impl Store {
    /// The impact report for decisions made and episodes opened from `from` (inclusive) to `to`
    /// (exclusive); `None` leaves that end open. Decisions and dead deliveries are placed in the period by
    /// when they were made (`decided_at`, `created_at`), episodes by `opened_at`. Feedback and closure are
    /// counted as they stand now, so an episode opened late in the period may still get its feedback
    /// after it; `now` decides which episodes are overdue. See [`PairFlow`] and [`OriginatorFeedback`]
    /// for what each figure counts.
    ///
    /// Reads one consistent snapshot, without SQLite's write lock.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for an unreadable row.
    pub async fn impact_report(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<ImpactReport, StoreError> {
        let (start, end) = window_bounds(from, to);
        let mut tx = self.begin_read().await?;
        let decisions = tx.decision_counts(start, end).await?;
        let episodes = tx.episode_counts(start, end).await?;
        let dead = tx.dead_counts(start, end).await?;
        let opened = tx.opened_episodes(start, end).await?;
        tx.rollback().await?;

        let mut pairs: BTreeMap<(AgencyId, AgencyId), PairFlow> = BTreeMap::new();
        let mut decisions_without_source = 0;
        for group in decisions {
            let Some(source) = group.source else {
                decisions_without_source += group.n;
                continue;
            };
            let source =
                AgencyId::new(source).map_err(|_| StoreError::Corrupt { table: "events", column: "source_agency" })?;
            let flow = pair(&mut pairs, source, group.recipient);
            if group.permit {
                flow.shared += group.n;
            } else {
                flow.withheld += group.n;
                *flow.withheld_by_reason.entry(group.reason).or_default() += group.n;
            }
        }
        for group in episodes {
            pair(&mut pairs, group.source, group.recipient).episodes = group.n;
        }
        for group in dead {
            pair(&mut pairs, group.source, group.recipient).dead_deliveries = group.n;
        }

        Ok(ImpactReport {
            from: from.map(micros),
            to: to.map(micros),
            as_of: micros(now),
            pairs: pairs.into_values().collect(),
            originators: feedback_by_originator(opened, now),
            decisions_without_source,
        })
    }
}

/// The pair's entry, made empty on first use.
fn pair(pairs: &mut BTreeMap<(AgencyId, AgencyId), PairFlow>, source: AgencyId, recipient: AgencyId) -> &mut PairFlow {
    pairs.entry((source.clone(), recipient.clone())).or_insert_with(|| PairFlow {
        source,
        recipient,
        episodes: 0,
        shared: 0,
        withheld: 0,
        withheld_by_reason: BTreeMap::new(),
        dead_deliveries: 0,
    })
}

fn feedback_by_originator(opened: Vec<OpenedEpisode>, now: DateTime<Utc>) -> Vec<OriginatorFeedback> {
    let mut by_originator: BTreeMap<AgencyId, Vec<OpenedEpisode>> = BTreeMap::new();
    for episode in opened {
        by_originator.entry(episode.originator.clone()).or_default().push(episode);
    }
    by_originator
        .into_iter()
        .map(|(originator, episodes)| {
            let mut delays = Vec::new();
            let (mut closed_without_feedback, mut overdue, mut crisis_time_from_opening) = (0, 0, 0);
            for episode in &episodes {
                match episode.feedback_delivered_at {
                    Some(delivered) => {
                        let crisis = episode.crisis_at.unwrap_or(episode.opened_at);
                        crisis_time_from_opening += u64::from(episode.crisis_at.is_none());
                        delays.push((delivered - crisis).num_seconds());
                    }
                    None if episode.state == EpisodeState::Closed => closed_without_feedback += 1,
                    None => overdue += u64::from(episode.feedback_due_at.is_some_and(|due| due <= now)),
                }
            }
            delays.sort_unstable();
            let total = episodes.len() as u64;
            let with_feedback = delays.len() as u64;
            OriginatorFeedback {
                originator,
                episodes: total,
                with_feedback,
                // Both counts are far below 2^53, so the division is exact enough to print.
                feedback_rate: if total == 0 { 0.0 } else { with_feedback as f64 / total as f64 },
                median_to_feedback_secs: nearest_rank(&delays, 50),
                p90_to_feedback_secs: nearest_rank(&delays, 90),
                closed_without_feedback,
                overdue,
                crisis_time_from_opening,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_a_value_that_was_observed() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        // Ten values: the median is the 5th, the 90th percentile the 9th.
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5));
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        assert_eq!(nearest_rank(&ten, 100), Some(10));
        // Three values: ranks 2 and 3.
        assert_eq!(nearest_rank(&[10, 20, 30], 50), Some(20));
        assert_eq!(nearest_rank(&[10, 20, 30], 90), Some(30));
        assert_eq!(nearest_rank(&[10, 20, 30, 40], 50), Some(20));
    }
}
