//! `concordat run` as an operator meets it: against the real RabbitMQ it declares the topology and answers
//! `/readyz`, stops cleanly on SIGTERM, and against an unreachable broker exits 3 quickly with one clear line
//! that hides the password.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn concordat() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_concordat"));
    command.current_dir(workspace_root()).env_remove("CONCORDAT_LOG");
    command
}

fn amqp_url() -> String {
    std::env::var("CONCORDAT_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::blocking::get(url).ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().ok()?))
}

#[test]
fn run_declares_the_topology_answers_readyz_and_stops_on_sigterm() {
    let port = free_port();
    let ingest_port = free_port();
    let data = tempfile::tempdir().unwrap();
    let child = concordat()
        .args(["run", "--config", "deploy/local/concordat.toml"])
        .env("CONCORDAT_AMQP_URL", amqp_url())
        .env("CONCORDAT_ADMIN_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONCORDAT_LISTEN", format!("127.0.0.1:{ingest_port}"))
        .env("CONCORDAT_STORE_URL", format!("sqlite://{}", data.path().join("concordat.db").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);

    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Some(answer) = get(&format!("http://127.0.0.1:{port}/readyz")) {
            break answer;
        }
        assert!(running.0.try_wait().unwrap().is_none(), "concordat run exited early");
        assert!(Instant::now() < deadline, "concordat run did not answer /readyz in time");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert!(ready.1.contains("\"rabbitmq\":true"), "{}", ready.1);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/healthz")).unwrap().0, 200);

    // The ingest gateway is served: a post with a wrong token is refused as RFC 9457 problem details.
    let refused = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{ingest_port}/v1/agencies/northvale-police/events"))
        .bearer_auth("not-a-token")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(refused.headers()["content-type"], "application/problem+json");

    let queues = Command::new("rabbitmqctl").args(["-q", "list_queues", "name", "type"]).output().unwrap();
    let queues = String::from_utf8_lossy(&queues.stdout);
    for queue in ["concordat.router", "concordat.ingest", "agency.northvale-mh.inbox", "concordat.dead.router"] {
        let line = queues.lines().find(|line| line.split_whitespace().next() == Some(queue));
        let line = line.unwrap_or_else(|| panic!("queue {queue} was not declared:\n{queues}"));
        assert!(line.contains("quorum"), "{line}");
    }

    let pid = running.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "concordat run did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn run_against_an_unreachable_broker_exits_3_quickly_with_a_clear_line() {
    // Nothing listens on a port we just released: the same answer as a stopped RabbitMQ.
    let port = free_port();
    let started = Instant::now();
    let output = concordat()
        .args(["run"])
        .env("CONCORDAT_AMQP_URL", format!("amqp://guest:hunter2@127.0.0.1:{port}/%2f"))
        .env("CONCORDAT_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("CONCORDAT_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().find(|line| line.starts_with("concordat: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(&format!("amqp://guest:***@127.0.0.1:{port}/%2f")), "{line}");
    assert!(line.contains("services.sh"), "{line}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_missing_config_file_is_invalid_input() {
    let output = concordat().args(["run", "--config", "/nonexistent/concordat.toml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn bad_tls_settings_stop_the_start_with_exit_1_before_any_service_is_tried() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key\n").unwrap();
    let missing_text = missing.display().to_string();
    let key_text = key.display().to_string();
    let cases: [(&[(&str, &str)], String); 3] = [
        (
            &[("CONCORDAT_TLS_CERT", &missing_text), ("CONCORDAT_TLS_KEY", &key_text)],
            format!("tls_cert {missing_text}: "),
        ),
        (&[("CONCORDAT_TLS_KEY", &key_text)], "tls_cert and tls_key must be set together".to_owned()),
        (&[("CONCORDAT_LISTENERS__MAX_CONNECTIONS", "0")], "listeners.max_connections must be at least 1".to_owned()),
    ];
    for (env, expected) in cases {
        // An unreachable broker: had the settings been accepted, the exit status would be 3.
        let output = concordat()
            .args(["run"])
            .env("CONCORDAT_AMQP_URL", format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port()))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{env:?}: {stderr}");
        assert!(stderr.contains(&expected), "{env:?}: {stderr}");
    }
}

#[test]
fn a_usage_error_exits_2() {
    let output = concordat().args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bench_drives_a_few_episodes_and_ends_with_a_machine_readable_result_line() {
    let output = concordat()
        .args(["bench", "--config", "deploy/local/concordat.toml"])
        .args(["--episodes", "3", "--latency-episodes", "3", "--rate", "50", "--concurrency", "2"])
        .env("CONCORDAT_AMQP_URL", amqp_url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    let fields: Vec<(&str, &str)> =
        last.strip_prefix("result ").unwrap().split(' ').map(|field| field.split_once('=').unwrap()).collect();
    let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["events_per_s", "baseline_per_s", "ratio", "p50_ms", "p99_ms", "rss_mb", "store"]);
    for (name, value) in &fields[..6] {
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{name}={value} is not a number"));
        assert!(value > 0.0, "{name} was measured: {last}");
    }
    assert_eq!(fields[6].1, "sqlite");
    // It cleans up after itself: no queue of its prefix is left behind.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let prefix = stderr.split("queues under the prefix ").nth(1).and_then(|rest| rest.split(',').next()).unwrap();
    let queues = Command::new("rabbitmqctl").args(["-q", "list_queues", "name"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&queues.stdout).contains(prefix), "the bench left queues {prefix}.* behind");
}
