//! The flow dashboard on the admin listener's `/`, in a real browser: headless Chromium (Debian's `chromium`
//! package, which `deploy/local/services.sh` installs) loads the page while the s136 story runs, its script
//! refreshes the figures, the flow from the police to the place of safety shows, and a screenshot is kept
//! as a test artefact (`target/test-artefacts/dashboard.png`, or under `CARGO_TARGET_DIR`).
//!
//! Without `chromium` on the path the test fails, saying how to install it: it never passes unseen.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use concordat_e2e::fixtures::{EPISODE_SYSTEM, FHIR, NHS_NUMBER, OUTCOME_NFA, POLICE_S136};
use concordat_e2e::{Area, StoreKind, find_identifier, fixture, json_fixture, root};
use reqwest::Method;
use serde_json::{Value, json};

/// How long one Chromium run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// Headless Chromium, run once per page load with a profile directory of its own.
struct Browser {
    program: PathBuf,
    profiles: tempfile::TempDir,
    runs: u32,
}

impl Browser {
    /// Finds `chromium` on the path.
    ///
    /// # Panics
    /// When it is not there, saying how to install it.
    fn find() -> Self {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let program =
            std::env::split_paths(&path).map(|dir| dir.join("chromium")).find(|candidate| candidate.is_file());
        let Some(program) = program else {
            panic!(
                "`chromium` is not on the path; the dashboard test needs it: run deploy/local/services.sh \
                 (as root it installs Debian's chromium package), then run the tests again"
            );
        };
        Self { program, profiles: tempfile::tempdir().unwrap(), runs: 0 }
    }

    /// Loads `url`, lets its scripts run for 8 s of virtual time, and does what `action` asks
    /// (`--dump-dom` or `--screenshot=…`). Returns what Chromium wrote on standard output.
    async fn run(&mut self, url: &str, action: &str) -> String {
        self.runs += 1;
        let profile = self.profiles.path().join(format!("profile-{}", self.runs));
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--virtual-time-budget=8000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(action)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // Dropping the unfinished run on timeout kills the browser.
        let output = match tokio::time::timeout(BROWSER_TIMEOUT, command.output()).await {
            Ok(output) => output.unwrap_or_else(|error| panic!("running {}: {error}", self.program.display())),
            Err(_) => panic!("chromium did not finish {action} {url} within {BROWSER_TIMEOUT:?}"),
        };
        assert!(
            output.status.success(),
            "chromium {action} {url} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Where test artefacts go: `test-artefacts/` under the target directory.
fn artefacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| if dir.is_relative() { root().join(dir) } else { dir })
        .or_else(|| {
            // This test runs as <target>/<profile>/deps/<name>-<hash>.
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| root().join("target"));
    let dir = target.join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
    dir
}

/// Replaces every NHS-number identifier of a FHIR Bundle with `number`.
fn set_nhs_number(value: &mut Value, number: &str) {
    match value {
        Value::Object(map) => {
            if map.get("system").and_then(Value::as_str) == Some("https://fhir.nhs.uk/Id/nhs-number") {
                map.insert("value".to_owned(), json!(number));
            }
            map.values_mut().for_each(|inner| set_nhs_number(inner, number));
        }
        Value::Array(items) => items.iter_mut().for_each(|inner| set_nhs_number(inner, number)),
        _ => {}
    }
}

/// The trust's assessment outcome for the episode: no further action.
fn assessment_outcome(episode_id: &str) -> Vec<u8> {
    let mut bundle = json_fixture(OUTCOME_NFA);
    set_nhs_number(&mut bundle, NHS_NUMBER);
    bundle["identifier"] = json!({ "system": EPISODE_SYSTEM, "value": episode_id });
    for entry in bundle["entry"].as_array_mut().unwrap() {
        if entry["resource"]["resourceType"] == "Encounter" {
            // Keep only the trust's own encounter id: the episode id is the correlating reference.
            entry["resource"]["identifier"].as_array_mut().unwrap().truncate(1);
        }
    }
    serde_json::to_vec(&bundle).unwrap()
}

/// `GET /dashboard/data`, insisting on a JSON `200`.
async fn data(area: &Area) -> Value {
    let answer = area.admin(Method::GET, "/dashboard/data", None).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.content_type.starts_with("application/json"), "{}", answer.content_type);
    answer.json
}

/// The data's edge from `source` to `recipient`, if any.
fn edge<'a>(data: &'a Value, source: &str, recipient: &str) -> Option<&'a Value> {
    data["flows"]["edges"].as_array()?.iter().find(|edge| edge["source"] == source && edge["recipient"] == recipient)
}

/// Polls the data until `ready` holds, for up to 30 s.
async fn data_until(area: &Area, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let data = data(area).await;
        if ready(&data) {
            return data;
        }
        assert!(Instant::now() < deadline, "the dashboard never showed {what}: {data}\n{}", area.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The value of attribute `name` in the start tag of the element whose `id` is `id`, in a DOM dump.
fn attribute<'a>(dom: &'a str, id: &str, name: &str) -> Option<&'a str> {
    let at = dom.find(&format!(r#"id="{id}""#))?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let value = tag.split(&format!(r#" {name}=""#)).nth(1)?;
    value.split('"').next()
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    // A blank 1280×900 page compresses to a few kilobytes; the drawn dashboard is well above that.
    assert!(bytes.len() > 20_000, "{} is only {} bytes: was anything drawn?", path.display(), bytes.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_s136_flow_live_in_a_browser() {
    let mut browser = Browser::find();
    let mut area = Area::start(StoreKind::Sqlite).await.unwrap();

    // Before anything flows, the page already shows every agency of the policy, with no token asked.
    let page = area.admin(Method::GET, "/", None).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    for agency in ["northvale-police", "northvale-mh", "northvale-ambulance", "safe-haven"] {
        assert!(page.text.contains(&format!(r#"data-agency="{agency}""#)), "{agency} is not on the page");
    }
    assert!(page.text.contains(r#"data-empty="flows""#), "no flow yet");

    // The police detain the person under s136; the place of safety is told.
    let police = fixture(POLICE_S136);
    area.accepted("northvale-police", "application/json", police.clone()).await.unwrap();
    let notification = area.next("northvale-mh").await.unwrap();
    let episode = find_identifier(&notification.json().unwrap(), EPISODE_SYSTEM).unwrap();

    // The page, rendered on the server, and its data both show the flow, once the few seconds that a
    // gathered view serves every caller have passed.
    let started = Instant::now();
    let mut page = area.admin(Method::GET, "/", None).await.unwrap();
    while !page.text.contains(r#"id="edge-northvale-police-northvale-mh""#)
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        page = area.admin(Method::GET, "/", None).await.unwrap();
    }
    assert!(page.text.contains(r#"id="edge-northvale-police-northvale-mh""#), "{}", page.text);
    let shown =
        data_until(&area, "the police to trust flow", |data| edge(data, "northvale-police", "northvale-mh").is_some())
            .await;
    let police_to_trust = edge(&shown, "northvale-police", "northvale-mh").unwrap();
    assert!(police_to_trust["shared"].as_u64().unwrap() >= 1, "{police_to_trust}");
    assert!(police_to_trust["shared_per_minute"].as_f64().unwrap() > 0.0, "{police_to_trust}");
    assert_eq!(shown["overdue_feedback"]["episodes"], json!([]), "the deadline is a day away");

    // A day goes by without feedback: the deadline is moved back to the opening, so it has passed.
    area.execute(&["UPDATE episodes SET feedback_due_at = opened_at WHERE feedback_delivered_at IS NULL"])
        .await
        .unwrap();
    // A payload the police adapter refuses (a wrong NHS number check digit), sent over AMQP, is a dead letter.
    let refused = String::from_utf8(police.clone()).unwrap().replace(NHS_NUMBER, "9434765918");
    area.publish_ingest("northvale-police", "dashboard-e2e-1", "application/json", refused.as_bytes()).await.unwrap();
    let shown = data_until(&area, "the overdue episode and the dead letter", |data| {
        data["overdue_feedback"]["episodes"].as_array().is_some_and(|episodes| !episodes.is_empty())
            && data["dead_letters"]["stages"][0] == json!({ "stage": "ingest", "messages": 1 })
    })
    .await;
    // The open feed names no episode; with the admin token it does.
    assert_eq!(shown["overdue_feedback"]["episodes"][0]["id"], Value::Null, "{shown}");
    assert_eq!(shown["overdue_feedback"]["episodes"][0]["originator"], "northvale-police", "{shown}");
    let answer = area.admin(Method::GET, "/dashboard/data", Some(concordat_e2e::ADMIN_TOKEN)).await.unwrap();
    assert_eq!(answer.json["overdue_feedback"]["episodes"][0]["id"], episode.as_str(), "{}", answer.text);

    // In the browser, after the script has fetched the data and swapped it in: the flow with its count, the
    // overdue episode, the dead letter, and the time of the refresh.
    let dom = browser.run(&area.admin_url("/"), "--dump-dom").await;
    assert_eq!(attribute(&dom, "updated-at", "data-by"), Some("script"), "the script did not refresh:\n{dom}");
    let shared = attribute(&dom, "edge-northvale-police-northvale-mh", "data-shared");
    assert!(shared.and_then(|count| count.parse::<u64>().ok()).is_some_and(|count| count >= 1), "{shared:?}:\n{dom}");
    assert!(
        dom.contains(r#"data-originator="northvale-police" data-state="open""#),
        "the overdue episode is not listed:\n{dom}"
    );
    assert!(!dom.contains(episode.as_str()), "the open page shows the episode id:\n{dom}");
    assert!(dom.contains(r#"data-stage="ingest" data-messages="1""#), "the dead letter is not counted:\n{dom}");
    assert!(!dom.contains(r#"class="unavailable""#), "a part of the dashboard is unavailable:\n{dom}");

    // The page as an operator sees it mid-story, kept for whoever reads the test run.
    let screenshot = artefacts().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    browser.run(&area.admin_url("/"), &format!("--screenshot={}", screenshot.display())).await;
    assert_png(&screenshot);
    println!("dashboard screenshot: {}", screenshot.display());

    // The trust posts the outcome and the police hear it: the next refresh shows the flow back, and the
    // episode no longer awaits feedback.
    area.accepted("northvale-mh", FHIR, assessment_outcome(&episode)).await.unwrap();
    loop {
        if area.next("northvale-police").await.unwrap().kind() == "feedback.outcome" {
            break;
        }
    }
    let shown = data_until(&area, "the feedback flow", |data| {
        edge(data, "northvale-mh", "northvale-police").is_some_and(|edge| edge["shared"].as_u64() >= Some(1))
            && data["overdue_feedback"]["episodes"] == json!([])
    })
    .await;
    assert!(shown["html"].as_str().unwrap().contains(r#"id="edge-northvale-mh-northvale-police""#), "{shown}");

    // Aggregates and identifiers only: nothing of the person reaches the page or its data.
    let page = area.admin(Method::GET, "/", None).await.unwrap().text;
    let data = data(&area).await.to_string();
    for personal in [NHS_NUMBER, "Testperson"] {
        assert!(!page.contains(personal) && !data.contains(personal), "the dashboard shows `{personal}`");
        assert!(!dom.contains(personal), "the browser showed `{personal}`");
    }
}
