//! `concordat report`: the impact report of the configured store, as Markdown for a crisis-care partnership's
//! meeting, CSV for a spreadsheet, or JSON.
//!
//! The shell reads the arguments, the configuration, the policy (for the area's and the agencies' names)
//! and the store; the renderers below are pure functions of the report and those names. The store decides
//! what each figure counts (`concordat_store::ImpactReport`); this module only words and lays them out. It
//! is not a dashboard: it reads the store once and prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, anyhow};
use chrono::{DateTime, NaiveDate, Timelike as _, Utc};
use concordat_episode::AgencyId;
use concordat_policy::Policy;
use concordat_store::{ImpactReport, OriginatorFeedback, PairFlow};

use crate::Failure;
use crate::cli::ReportFormat;
use crate::config::Config;
use crate::ops::require_existing_store;
use crate::pure::{load_policy, write_stdout};
use crate::run::connect_store;

/// `concordat report`. Bad dates, a period that ends before it starts, a bad configuration or a SQLite
/// store file that does not exist exit 1; an unreachable store exits 3.
///
/// # Errors
/// See above.
pub fn report(
    config_file: Option<&Path>,
    from: Option<&str>,
    to: Option<&str>,
    format: ReportFormat,
    env: &[(String, String)],
) -> Result<(), Failure> {
    let from = from.map(|text| parse_date("--from", text)).transpose().map_err(Failure::Input)?;
    let to = to.map(|text| parse_date("--to", text)).transpose().map_err(Failure::Input)?;
    if let (Some(start), Some(end)) = (from, to)
        && start >= end
    {
        return Err(Failure::Input(anyhow!("--to ({end}) must be later than --from ({start})")));
    }
    let (config, _) = Config::load(config_file, env).map_err(|error| Failure::Input(error.into()))?;
    require_existing_store(&config.store_url, "nothing to report on")?;
    // The policy only lends the report its names; without it the agencies appear by id.
    let partnership = match load_policy(&config.policy) {
        Ok(policy) => Partnership::from_policy(&policy),
        Err(failure) => {
            tracing::warn!(message = "Naming agencies by id: the policy did not load.", error = %failure_message(&failure));
            Partnership::default()
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Service)?;
    let report =
        runtime.block_on(async {
            let store = connect_store(&config.store_url).await?;
            let report = store.impact_report(from, to, Utc::now()).await;
            store.close().await;
            report.map_err(|error| {
                if error.is_transient() { Failure::Service(error.into()) } else { Failure::Input(error.into()) }
            })
        })?;
    let text = match format {
        ReportFormat::Md => markdown(&report, &partnership),
        ReportFormat::Csv => csv(&report).map_err(Failure::Input)?,
        ReportFormat::Json => json(&report).map_err(Failure::Input)?,
    };
    write_stdout(text.as_bytes())
}

fn failure_message(failure: &Failure) -> String {
    match failure {
        Failure::Input(error) | Failure::Service(error) => format!("{error:#}"),
    }
}

/// A `--from` or `--to` value: `YYYY-MM-DD` is midnight UTC at the start of that day; otherwise RFC 3339
/// with an offset.
///
/// # Errors
/// Names the flag and the accepted forms.
pub fn parse_date(flag: &str, text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text).map(|at| at.to_utc()).map_err(|_| {
        anyhow!("{flag} `{text}` is not a date: write YYYY-MM-DD (midnight UTC) or RFC 3339, e.g. 2026-04-01T00:00:00Z")
    })
}

/// The names the readable report uses: the agreement's title and area, and each agency's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partnership {
    /// The information sharing agreement's title.
    pub title: Option<String>,
    /// The area it covers.
    pub area: Option<String>,
    /// Agencies' names by id; an agency not listed appears by its id.
    pub names: BTreeMap<AgencyId, String>,
}

impl Partnership {
    /// The names in a loaded policy.
    pub fn from_policy(policy: &Policy) -> Self {
        Self {
            title: Some(policy.title().to_owned()),
            area: Some(policy.area().to_owned()),
            names: policy.agencies().iter().map(|agency| (agency.id.clone(), agency.name.clone())).collect(),
        }
    }

    fn name<'a>(&'a self, id: &'a AgencyId) -> &'a str {
        self.names.get(id).map_or(id.as_str(), String::as_str)
    }
}

/// A deny reason's wire name, a short label for tables, and what it means in words.
const REASONS: &[(&str, &str, &str)] = &[
    (
        "no_agreement",
        "no agreement",
        "no agreement in the sharing policy covers this sender, recipient and kind of event. Most of these are \
         the policy working as signed: partners receive only what an agreement says they need.",
    ),
    (
        "consent_required",
        "consent not recorded",
        "an agreement covers the flow only with the person's consent, and the event did not record consent.",
    ),
    (
        "below_risk_threshold",
        "risk below threshold",
        "an agreement covers the flow only at or above a stated risk level, and the event's risk was lower or \
         not recorded.",
    ),
    (
        "age_outside_band",
        "age outside band",
        "an agreement covers the flow only for people in an age band, and the person was outside it or their age \
         was not known.",
    ),
    (
        "episode_state",
        "episode state",
        "an agreement covers the flow only while the episode is open (or only once it has closed), and it was \
         not.",
    ),
    ("own_event", "own event", "the recipient is the agency that sent the event."),
    ("unknown_recipient", "recipient not in policy", "the recipient is not a party to the sharing policy."),
    (
        "unknown_source",
        "sender not in policy",
        "the sender is not a party to the sharing policy, so no agreement can cover its events.",
    ),
];

fn reason_label(reason: &str) -> &str {
    REASONS.iter().find(|(wire, ..)| *wire == reason).map_or(reason, |(_, label, _)| label)
}

fn reason_explanation(reason: &str) -> String {
    REASONS.iter().find(|(wire, ..)| *wire == reason).map_or_else(
        || format!("recorded by the policy engine as `{reason}`; `concordat policy explain` says more."),
        |(_, _, words)| (*words).to_owned(),
    )
}

/// A duration for people: `45 s`, `12 min`, `3 h 10 min`, `2 d 4 h`.
pub fn human_duration(secs: i64) -> String {
    if secs < 0 {
        return format!("-{}", human_duration(secs.saturating_neg()));
    }
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A day at midnight as `1 Apr 2026`, any other time with its hour and minute; always UTC.
fn when(at: DateTime<Utc>) -> String {
    if at.time().num_seconds_from_midnight() == 0 && at.time().nanosecond() == 0 {
        at.format("%-d %b %Y").to_string()
    } else {
        at.format("%-d %b %Y %H:%M UTC").to_string()
    }
}

fn period(report: &ImpactReport) -> String {
    match (report.from, report.to) {
        (Some(from), Some(to)) => format!("from {} up to (not including) {}", when(from), when(to)),
        (Some(from), None) => format!("from {} to the latest record", when(from)),
        (None, Some(to)) => format!("from the first record up to (not including) {}", when(to)),
        (None, None) => "all records".to_owned(),
    }
}

/// A table cell: no line breaks, and `|` escaped so it cannot split the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn withheld_because(pair: &PairFlow) -> String {
    if pair.withheld_by_reason.is_empty() {
        return "–".to_owned();
    }
    let mut reasons: Vec<(&String, &u64)> = pair.withheld_by_reason.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    reasons.iter().map(|(reason, n)| format!("{} ({n})", reason_label(reason))).collect::<Vec<_>>().join(", ")
}

fn originator_sentence(row: &OriginatorFeedback, names: &Partnership) -> String {
    let mut sentence =
        format!("{} started {}", names.name(&row.originator), plural(row.episodes, "episode", "episodes"));
    match (row.with_feedback, row.median_to_feedback_secs, row.p90_to_feedback_secs) {
        (0, ..) => sentence.push_str("; none has had outcome feedback yet."),
        (n, Some(median), Some(p90)) => {
            let _ = write!(
                sentence,
                "; {n} ({}) had outcome feedback, a median {} after the crisis (90% within {}).",
                percent(row.feedback_rate),
                human_duration(median),
                human_duration(p90)
            );
        }
        (n, ..) => {
            let _ = write!(sentence, "; {n} ({}) had outcome feedback.", percent(row.feedback_rate));
        }
    }
    let mut waiting = Vec::new();
    if row.closed_without_feedback > 0 {
        waiting.push(format!("{} closed with no feedback", plural(row.closed_without_feedback, "episode", "episodes")));
    }
    if row.overdue > 0 {
        let verb = if row.overdue == 1 { "is" } else { "are" };
        waiting.push(format!("{} {verb} still open past the feedback deadline", row.overdue));
    }
    if !waiting.is_empty() {
        let _ = write!(sentence, " {}.", capitalize(&waiting.join("; ")));
    }
    sentence
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The report as a Markdown document a crisis-care partnership can read at its meeting.
pub fn markdown(report: &ImpactReport, names: &Partnership) -> String {
    let mut out = String::new();
    let title = names.area.as_ref().map_or_else(
        || "Crisis care information sharing: impact report".to_owned(),
        |area| format!("{area}: crisis care information sharing impact report"),
    );
    let _ = writeln!(out, "# {}\n", cell(&title));
    if let Some(agreement) = &names.title {
        let _ = writeln!(out, "Under the *{}*.  ", cell(agreement));
    }
    let _ = writeln!(out, "Period: {}. Figures as they stood on {}.\n", period(report), when(report.as_of));

    out.push_str("## Summary\n\n");
    let shared: u64 = report.pairs.iter().map(|pair| pair.shared).sum();
    let withheld: u64 = report.pairs.iter().map(|pair| pair.withheld).sum();
    let dead: u64 = report.pairs.iter().map(|pair| pair.dead_deliveries).sum();
    if report.pairs.is_empty() && report.originators.is_empty() {
        out.push_str("No episode was opened and no sharing decision was made in this period.\n\n");
    }
    for row in &report.originators {
        let _ = writeln!(out, "- {}", originator_sentence(row, names));
    }
    if !report.pairs.is_empty() {
        let _ = write!(
            out,
            "- Across all partners, {} shared and {} withheld",
            plural(shared, "event was", "events were"),
            withheld
        );
        if dead > 0 {
            let _ = write!(
                out,
                "; {} failed and {} an operator",
                plural(dead, "delivery", "deliveries"),
                if dead == 1 { "waits for" } else { "wait for" }
            );
        }
        out.push_str(".\n");
    }
    out.push('\n');

    out.push_str("## Sharing between partners\n\n");
    if report.pairs.is_empty() {
        out.push_str("No sharing decisions in this period.\n\n");
    } else {
        out.push_str("| From | To | Episodes | Shared | Withheld | Withheld because | Failed deliveries |\n");
        out.push_str("| --- | --- | ---: | ---: | ---: | --- | ---: |\n");
        for pair in &report.pairs {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(names.name(&pair.source)),
                cell(names.name(&pair.recipient)),
                pair.episodes,
                pair.shared,
                pair.withheld,
                cell(&withheld_because(pair)),
                pair.dead_deliveries
            );
        }
        out.push('\n');
    }

    out.push_str("## Outcome feedback to the agencies that started episodes\n\n");
    if report.originators.is_empty() {
        out.push_str("No episodes were opened in this period.\n\n");
    } else {
        out.push_str(
            "| Agency | Episodes started | With feedback | Rate | Median time to feedback | 90% within | \
             Closed without feedback | Overdue |\n",
        );
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for row in &report.originators {
            let duration = |secs: Option<i64>| secs.map_or_else(|| "–".to_owned(), human_duration);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(names.name(&row.originator)),
                row.episodes,
                row.with_feedback,
                percent(row.feedback_rate),
                duration(row.median_to_feedback_secs),
                duration(row.p90_to_feedback_secs),
                row.closed_without_feedback,
                row.overdue
            );
        }
        out.push('\n');
    }

    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for pair in &report.pairs {
        for (reason, n) in &pair.withheld_by_reason {
            *totals.entry(reason.as_str()).or_default() += n;
        }
    }
    if !totals.is_empty() {
        out.push_str("## Why information was withheld\n\n");
        let mut totals: Vec<(&str, u64)> = totals.into_iter().collect();
        totals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (reason, n) in totals {
            let _ = writeln!(
                out,
                "- **{}** ({}): {}",
                capitalize(reason_label(reason)),
                plural(n, "event", "events"),
                reason_explanation(reason)
            );
        }
        out.push('\n');
    }

    out.push_str("## How these figures are counted\n\n");
    out.push_str(
        "- Every event a partner sends is decided on once for every other partner: shared (a permitted, \
         redacted view) or withheld (no view at all), with the reason. Outcome feedback and pre-crisis \
         context that Concordat makes from a partner's event count as that partner's events.\n\
         - Decisions count in the period in which they were made; episodes in the period in which they \
         opened. Feedback, closure and overdue count as things stood when the report was made, so an \
         episode opened late in the period may still get its feedback.\n\
         - *Episodes* in the sharing table are the episodes with at least one decision between those two \
         partners. Events held before any episode existed count as shared or withheld, not as episodes.\n\
         - *Outcome feedback* is the outcome message Concordat sends to the agency whose event started the \
         episode. Its time runs from the crisis (when the opening event says it happened) to when Concordat \
         queued the feedback for delivery. The median is the middle time; 90% of episodes with feedback \
         had it within the time in the next column.\n\
         - *Overdue* episodes are still open, with no feedback, past the deadline set when they opened.\n\
         - *Failed deliveries* are messages for that recipient that could not be delivered after repeated \
         attempts and wait for an operator; messages refused before they reached Concordat's store are \
         not counted here.\n\
         - The report holds counts and durations only: no names, NHS numbers or other personal data.\n",
    );
    if report.decisions_without_source > 0 {
        let _ = writeln!(
            out,
            "- {} in the period concerned events whose sender is no longer known (held before any episode, \
             since deleted on schedule); they are left out of the table above.",
            plural(report.decisions_without_source, "decision", "decisions")
        );
    }
    out
}

/// The CSV header: one row per pair of partners (`section` = `sharing`) and per originator (`section` =
/// `feedback`); a column that does not apply to a row's section is empty.
pub const CSV_HEADER: [&str; 15] = [
    "section",
    "source",
    "recipient",
    "originator",
    "episodes",
    "shared",
    "withheld",
    "withheld_by_reason",
    "dead_deliveries",
    "with_feedback",
    "feedback_rate",
    "median_to_feedback_secs",
    "p90_to_feedback_secs",
    "closed_without_feedback",
    "overdue",
];

/// The report as CSV (RFC 4180), with [`CSV_HEADER`]. `withheld_by_reason` is `reason=count` pairs
/// separated by `;`.
///
/// # Errors
/// Only if writing to memory fails.
pub fn csv(report: &ImpactReport) -> anyhow::Result<String> {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for pair in &report.pairs {
        let reasons: Vec<String> = pair.withheld_by_reason.iter().map(|(reason, n)| format!("{reason}={n}")).collect();
        writer.write_record([
            "sharing",
            pair.source.as_str(),
            pair.recipient.as_str(),
            "",
            &pair.episodes.to_string(),
            &pair.shared.to_string(),
            &pair.withheld.to_string(),
            &reasons.join(";"),
            &pair.dead_deliveries.to_string(),
            "",
            "",
            "",
            "",
            "",
            "",
        ])?;
    }
    let optional = |secs: Option<i64>| secs.map(|secs| secs.to_string()).unwrap_or_default();
    for row in &report.originators {
        writer.write_record([
            "feedback",
            "",
            "",
            row.originator.as_str(),
            &row.episodes.to_string(),
            "",
            "",
            "",
            "",
            &row.with_feedback.to_string(),
            &format!("{:.4}", row.feedback_rate),
            &optional(row.median_to_feedback_secs),
            &optional(row.p90_to_feedback_secs),
            &row.closed_without_feedback.to_string(),
            &row.overdue.to_string(),
        ])?;
    }
    let bytes = writer.into_inner().map_err(|error| anyhow!("writing CSV: {}", error.error()))?;
    String::from_utf8(bytes).context("writing CSV")
}

/// The report as pretty JSON, exactly the store's `ImpactReport`.
///
/// # Errors
/// Only if serializing fails, which the report's plain types do not.
pub fn json(report: &ImpactReport) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(report).context("writing JSON")?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone as _;

    use super::*;

    fn agency(id: &str) -> AgencyId {
        AgencyId::new(id).unwrap()
    }

    fn sample() -> ImpactReport {
        ImpactReport {
            from: Some(Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap()),
            to: Some(Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap()),
            as_of: Utc.with_ymd_and_hms(2026, 7, 2, 9, 30, 0).unwrap(),
            pairs: vec![
                PairFlow {
                    source: agency("northvale-mh"),
                    recipient: agency("northvale-police"),
                    episodes: 9,
                    shared: 18,
                    withheld: 0,
                    withheld_by_reason: BTreeMap::new(),
                    dead_deliveries: 0,
                },
                PairFlow {
                    source: agency("northvale-police"),
                    recipient: agency("northvale-mh"),
                    episodes: 12,
                    shared: 30,
                    withheld: 3,
                    withheld_by_reason: BTreeMap::from([
                        ("below_risk_threshold".to_owned(), 1),
                        ("no_agreement".to_owned(), 2),
                    ]),
                    dead_deliveries: 1,
                },
            ],
            originators: vec![OriginatorFeedback {
                originator: agency("northvale-police"),
                episodes: 12,
                with_feedback: 9,
                feedback_rate: 0.75,
                median_to_feedback_secs: Some(3 * 3600 + 10 * 60),
                p90_to_feedback_secs: Some(9 * 3600 + 5 * 60),
                closed_without_feedback: 2,
                overdue: 1,
                crisis_time_from_opening: 0,
            }],
            decisions_without_source: 0,
        }
    }

    fn northvale() -> Partnership {
        Partnership {
            title: Some("Northvale Crisis Care ISA".to_owned()),
            area: Some("Northvale".to_owned()),
            names: BTreeMap::from([
                (agency("northvale-police"), "Northvale Police".to_owned()),
                (agency("northvale-mh"), "Northvale Mental Health NHS Foundation Trust".to_owned()),
            ]),
        }
    }

    #[test]
    fn markdown_has_the_summary_the_pairs_and_the_reasons_in_words() {
        let text = markdown(&sample(), &northvale());
        for expected in [
            "# Northvale: crisis care information sharing impact report",
            "Under the *Northvale Crisis Care ISA*.",
            "Period: from 1 Apr 2026 up to (not including) 1 Jul 2026.",
            "- Northvale Police started 12 episodes; 9 (75%) had outcome feedback, a median 3 h 10 min after the \
             crisis (90% within 9 h 5 min). 2 episodes closed with no feedback; 1 is still open past the feedback \
             deadline.",
            "- Across all partners, 48 events were shared and 3 withheld; 1 delivery failed and waits for an operator.",
            "| Northvale Police | Northvale Mental Health NHS Foundation Trust | 12 | 30 | 3 | no agreement (2), \
             risk below threshold (1) | 1 |",
            "| Northvale Mental Health NHS Foundation Trust | Northvale Police | 9 | 18 | 0 | – | 0 |",
            "| Northvale Police | 12 | 9 | 75% | 3 h 10 min | 9 h 5 min | 2 | 1 |",
            "- **No agreement** (2 events): no agreement in the sharing policy covers",
            "- **Risk below threshold** (1 event): an agreement covers the flow only at or above",
            "## How these figures are counted",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn markdown_without_a_policy_names_agencies_by_id_and_says_when_there_is_nothing() {
        let text = markdown(&sample(), &Partnership::default());
        assert!(text.starts_with("# Crisis care information sharing: impact report\n"));
        assert!(text.contains("| northvale-police | northvale-mh | 12 |"));
        let empty = ImpactReport { pairs: Vec::new(), originators: Vec::new(), from: None, to: None, ..sample() };
        let text = markdown(&empty, &Partnership::default());
        assert!(text.contains("Period: all records."));
        assert!(text.contains("No episode was opened and no sharing decision was made in this period."));
        assert!(!text.contains("## Why information was withheld"));
    }

    #[test]
    fn a_pipe_in_a_name_cannot_break_the_table() {
        let mut names = northvale();
        names.names.insert(agency("northvale-police"), "Police | Northvale".to_owned());
        let text = markdown(&sample(), &names);
        assert!(text.contains("| Police \\| Northvale | 12 |"));
    }

    #[test]
    fn csv_parses_back_with_one_row_per_pair_and_originator() {
        let text = csv(&sample()).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), CSV_HEADER);
        let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(rows.len(), 3);
        let pair = rows.iter().find(|row| &row[0] == "sharing" && &row[1] == "northvale-police").unwrap();
        assert_eq!(&pair[2], "northvale-mh");
        assert_eq!((&pair[4], &pair[5], &pair[6], &pair[8]), ("12", "30", "3", "1"));
        assert_eq!(&pair[7], "below_risk_threshold=1;no_agreement=2");
        let feedback = rows.iter().find(|row| &row[0] == "feedback").unwrap();
        assert_eq!(&feedback[3], "northvale-police");
        assert_eq!((&feedback[9], &feedback[10], &feedback[11], &feedback[12]), ("9", "0.7500", "11400", "32700"));
        assert_eq!((&feedback[13], &feedback[14]), ("2", "1"));
        assert!(text.ends_with("\r\n"), "RFC 4180 lines end in CRLF");
    }

    #[test]
    fn json_round_trips() {
        let report = sample();
        let back: ImpactReport = serde_json::from_str(&json(&report).unwrap()).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        for (secs, expected) in [
            (0, "0 s"),
            (45, "45 s"),
            (60, "1 min"),
            (12 * 60 + 30, "12 min"),
            (3 * 3600, "3 h"),
            (3 * 3600 + 10 * 60, "3 h 10 min"),
            (86_400, "1 d"),
            (2 * 86_400 + 4 * 3600 + 59 * 60, "2 d 4 h"),
            (-90, "-1 min"),
        ] {
            assert_eq!(human_duration(secs), expected, "{secs}");
        }
    }

    #[test]
    fn dates_are_days_at_midnight_utc_or_rfc_3339() {
        assert_eq!(parse_date("--from", "2026-04-01").unwrap(), Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap());
        assert_eq!(
            parse_date("--to", "2026-04-01T01:30:00+01:00").unwrap(),
            Utc.with_ymd_and_hms(2026, 4, 1, 0, 30, 0).unwrap()
        );
        for bad in ["2026-13-01", "yesterday", "2026-04-01T00:00:00", ""] {
            let error = parse_date("--from", bad).unwrap_err().to_string();
            assert!(error.starts_with("--from `"), "{error}");
        }
    }

    #[test]
    fn every_deny_reason_the_policy_engine_gives_is_explained() {
        use concordat_policy::DenyReason;
        for reason in [
            DenyReason::NoAgreement,
            DenyReason::ConsentRequired,
            DenyReason::BelowRiskThreshold,
            DenyReason::AgeOutsideBand,
            DenyReason::EpisodeState,
            DenyReason::OwnEvent,
            DenyReason::UnknownRecipient,
            DenyReason::UnknownSource,
        ] {
            assert!(REASONS.iter().any(|(wire, ..)| *wire == reason.as_str()), "{reason} is not explained");
        }
    }
}
