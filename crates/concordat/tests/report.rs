//! `concordat report` over a store the router filled: the sample area's s136 detention opens an episode, the
//! trust's assessment outcome in it sends outcome feedback to the police, and the report, in each format,
//! shows the sharing both ways and the feedback, with none of the person's data. Also the exit codes for a
//! bad date, a SQLite store that does not exist and a database that does not answer.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concordat_bus::{Topology, TraceParent};
use concordat_episode::{CrisisEvent, EPISODE_SYSTEM, EpisodeId, Identifier, NonEmptyString, parse_event};
use concordat_router::{Routed, Router};
use concordat_store::{ImpactReport, Store, SubjectKeyer};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> CrisisEvent {
    let path = root().join("schemas/examples/crisis-event/valid").join(format!("{name}.json"));
    parse_event(&std::fs::read(path).unwrap()).unwrap()
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// Routes the detention (received 22:20, the crisis at 22:14 by the event) and then the trust's outcome
/// in the episode it opened (routed 02:46 the next morning), into a SQLite store at `url`.
fn route_the_sample_night(url: &str) -> EpisodeId {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let text = std::fs::read_to_string(root().join("deploy/local/policies/northvale.yaml")).unwrap();
        let policy = Arc::new(concordat_policy::load(Path::new("northvale.yaml"), &text).unwrap());
        let agencies = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
        let topology = Topology::with_prefix("report-test", agencies).unwrap();
        let store = Store::connect(url).await.unwrap();
        let keyer = SubjectKeyer::new(b"concordat-report-test-subject-key").unwrap();
        let router =
            Router::new(policy, &BTreeMap::new(), store.clone(), keyer, topology, Duration::from_secs(72 * 3600));

        let detained = example("police-s136-detention");
        let routed = router.route(detained, time("2026-03-01T22:20:00Z"), &TraceParent::new_root()).await.unwrap();
        let Routed::Done { episode: Some(episode), .. } = routed else { panic!("no episode opened: {routed:?}") };

        let mut outcome = example("nhs-assessment-outcome");
        outcome.episode.episode_id = Some(episode);
        outcome.episode.refs = vec![Identifier {
            system: NonEmptyString::new(EPISODE_SYSTEM).unwrap(),
            value: NonEmptyString::new(episode.to_string()).unwrap(),
        }];
        let routed = router.route(outcome, time("2026-03-02T02:46:00Z"), &TraceParent::new_root()).await.unwrap();
        assert!(matches!(routed, Routed::Done { episode: Some(id), .. } if id == episode), "{routed:?}");
        store.close().await;
        episode
    })
}

fn report(store_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_concordat"))
        .current_dir(root())
        .env("CONCORDAT_STORE_URL", store_url)
        .arg("report")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// What the two example events say about the person and their care: none of it may reach a report.
const PERSONAL: [&str; 9] = [
    "9990000018",
    "Alex",
    "Testperson",
    "1994-06-12",
    "railway bridge",
    "Ashby Suite",
    "Depressive disorder",
    "no grounds for detention",
    "SJ8497",
];

fn assert_no_personal_data(format: &str, text: &str) {
    for personal in PERSONAL {
        assert!(!text.contains(personal), "{personal:?} in the {format} report:\n{text}");
    }
}

#[test]
fn report_shows_sharing_both_ways_and_the_feedback_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("concordat.db").display());
    route_the_sample_night(&url);
    let period = ["--from", "2026-03-01", "--to", "2026-03-03"];

    let output = report(&url, &[&period[..], &["--format", "json"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json = stdout(&output);
    assert_no_personal_data("JSON", &json);
    let figures: ImpactReport = serde_json::from_str(&json).unwrap();
    assert_eq!((figures.from, figures.to), (Some(time("2026-03-01T00:00:00Z")), Some(time("2026-03-03T00:00:00Z"))));
    let flow = |source: &str, recipient: &str| {
        figures
            .pairs
            .iter()
            .find(|pair| pair.source.as_str() == source && pair.recipient.as_str() == recipient)
            .unwrap_or_else(|| panic!("no {source} → {recipient} row in {json}"))
            .clone()
    };
    let police_to_trust = flow("northvale-police", "northvale-mh");
    assert_eq!(police_to_trust.episodes, 1);
    assert!(police_to_trust.shared >= 1, "{police_to_trust:?}");
    let trust_to_police = flow("northvale-mh", "northvale-police");
    assert_eq!(trust_to_police.episodes, 1);
    assert!(trust_to_police.shared >= 1, "the outcome feedback: {trust_to_police:?}");
    // Every other partner was decided on too, each decision counted once.
    let decided: u64 = figures.pairs.iter().map(|pair| pair.shared + pair.withheld).sum();
    assert!(decided > police_to_trust.shared + trust_to_police.shared, "{json}");
    assert!(figures.pairs.iter().all(|pair| pair.dead_deliveries == 0));

    assert_eq!(figures.originators.len(), 1, "{json}");
    let police = &figures.originators[0];
    assert_eq!(police.originator.as_str(), "northvale-police");
    assert_eq!((police.episodes, police.with_feedback), (1, 1));
    assert!((police.feedback_rate - 1.0).abs() < 1e-9);
    // From the detention at 22:14 to the feedback queued at 02:46.
    let four_hours_32 = 4 * 3600 + 32 * 60;
    assert_eq!(
        (police.median_to_feedback_secs, police.p90_to_feedback_secs),
        (Some(four_hours_32), Some(four_hours_32))
    );
    assert_eq!((police.closed_without_feedback, police.overdue, police.crisis_time_from_opening), (0, 0, 0));

    let output = report(&url, &period);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let markdown = stdout(&output);
    assert_no_personal_data("Markdown", &markdown);
    for expected in [
        "# Northvale (fictional sample area): crisis care information sharing impact report",
        "Period: from 1 Mar 2026 up to (not including) 3 Mar 2026.",
        "- Northvale Police started 1 episode; 1 (100%) had outcome feedback, a median 4 h 32 min after the \
         crisis (90% within 4 h 32 min).",
        &format!(
            "| Northvale Police | Northvale Mental Health NHS Foundation Trust | 1 | {} |",
            police_to_trust.shared
        ),
        &format!(
            "| Northvale Mental Health NHS Foundation Trust | Northvale Police | 1 | {} |",
            trust_to_police.shared
        ),
        "| Northvale Police | 1 | 1 | 100% | 4 h 32 min | 4 h 32 min | 0 | 0 |",
        "## How these figures are counted",
    ] {
        assert!(markdown.contains(expected), "missing {expected:?} in\n{markdown}");
    }

    let output = report(&url, &[&period[..], &["--format", "csv"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let csv = stdout(&output);
    assert_no_personal_data("CSV", &csv);
    assert!(csv.starts_with("section,source,recipient,originator,episodes,shared,withheld,"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + figures.pairs.len() + 1, "{csv}");
    assert!(csv.contains("\r\nfeedback,,,northvale-police,1,,,,,1,1.0000,16320,16320,0,0\r\n"), "{csv}");

    // The next day only: the trust's decisions are in it, the episode (opened the night before) is not.
    let output = report(&url, &["--from", "2026-03-02", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let next_day: ImpactReport = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(next_day.originators.is_empty(), "{next_day:?}");
    assert!(next_day.pairs.iter().all(|pair| pair.source.as_str() == "northvale-mh"), "{next_day:?}");
    assert!(next_day.pairs.iter().any(|pair| pair.recipient.as_str() == "northvale-police" && pair.shared >= 1));
}

#[test]
fn a_bad_date_exits_1_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("concordat.db").display());
    for (flag, value) in [("--from", "2026-13-01"), ("--to", "next tuesday")] {
        let output = report(&url, &[flag, value]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(stderr(&output).contains(&format!("{flag} `{value}` is not a date")), "{}", stderr(&output));
    }
    let output = report(&url, &["--from", "2026-04-01", "--to", "2026-04-01"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("must be later than --from"), "{}", stderr(&output));
    assert!(!dir.path().join("concordat.db").exists(), "no store is opened for bad arguments");
}

#[test]
fn a_missing_sqlite_store_exits_1_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mistyped").join("concordat.db");
    let output = report(&format!("sqlite://{}", file.display()), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("there is no store at"), "{}", stderr(&output));
    assert!(!file.exists());
}

#[test]
fn an_unreachable_database_exits_3() {
    // Nothing listens on port 1.
    let output = report("postgres://postgres@127.0.0.1:1/concordat", &["--format", "json"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
}
