//! `concordat agencies provision` against the real RabbitMQ (`CONCORDAT_TEST_AMQP_BASE`, default
//! `amqp://guest:guest@127.0.0.1:5672`) and its management API (port 15672, `deploy/local/services.sh`
//! enables it): each agency's user reads its own inbox only, publishes to `concordat.ingest` as itself
//! only, and a rotated password stops working.
//!
//! Each test provisions into a virtual host of its own, under a user prefix of its own (RabbitMQ users are
//! not per virtual host), and deletes both afterwards, even after a failed assertion.

#![allow(clippy::unwrap_used, reason = "in tests a failed unwrap is a failed test")]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use concordat_bus::{BusConfig, Topology};
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

const BASE: &str = "amqp://guest:guest@127.0.0.1:5672";
const MANAGEMENT: &str = "http://127.0.0.1:15672/api";
const AGENCIES: [&str; 8] = [
    "northvale-police",
    "transport-police",
    "northvale-mh",
    "northvale-acute",
    "northvale-ambulance",
    "northvale-council",
    "safe-haven",
    "listening-line",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A virtual host with the sample area's topology, a user prefix and a secrets directory, all removed
/// when dropped.
struct Area {
    vhost: String,
    prefix: String,
    amqp_url: String,
    secrets: tempfile::TempDir,
}

impl Area {
    async fn new() -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let vhost = format!("t-agencies-{unique}");
        let base = std::env::var("CONCORDAT_TEST_AMQP_BASE").unwrap_or_else(|_| BASE.to_owned());
        let area = Self {
            prefix: format!("t{}-agency-", &unique[..12]),
            amqp_url: format!("{base}/{vhost}"),
            vhost,
            secrets: tempfile::tempdir().unwrap(),
        };
        rabbitmqctl(&["add_vhost", &area.vhost]);
        rabbitmqctl(&["set_permissions", "-p", &area.vhost, "guest", ".*", ".*", ".*"]);
        let mut bus: BusConfig = serde_json::from_str("{}").unwrap();
        bus.amqp_url = area.amqp_url.clone();
        let topology = Topology::new(AGENCIES.iter().map(|agency| (*agency).to_owned()).collect()).unwrap();
        topology.declare(&bus).await.unwrap();
        area
    }

    fn user(&self, agency: &str) -> String {
        format!("{}{agency}", self.prefix)
    }

    /// Runs `concordat agencies provision` on this area with `extra` arguments.
    fn provision(&self, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_concordat"))
            .current_dir(root())
            .env("CONCORDAT_AMQP_URL", &self.amqp_url)
            .env("CONCORDAT_GATEWAY__AMQP__USER_PREFIX", &self.prefix)
            .args(["agencies", "provision", "--config", "deploy/local/concordat.toml", "--secrets-dir"])
            .arg(self.secrets.path())
            .args(extra)
            .output()
            .unwrap()
    }

    fn secrets_file(&self, agency: &str) -> PathBuf {
        self.secrets.path().join(format!("{}.amqp", self.user(agency)))
    }

    /// The AMQP URL written for `agency`.
    fn url(&self, agency: &str) -> String {
        std::fs::read_to_string(self.secrets_file(agency)).unwrap().trim().to_owned()
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        let users: Vec<String> = AGENCIES.iter().map(|agency| self.user(agency)).collect();
        let vhost = self.vhost.clone();
        // A blocking client may not run on the test's runtime thread.
        let cleanup = std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            for user in users {
                let _ = http.delete(format!("{MANAGEMENT}/users/{user}")).basic_auth("guest", Some("guest")).send();
            }
            let _ = http.delete(format!("{MANAGEMENT}/vhosts/{vhost}")).basic_auth("guest", Some("guest")).send();
        });
        let _ = cleanup.join();
    }
}

fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl").arg("-q").args(args).output().expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn connect(url: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(url, ConnectionProperties::default()).await
}

/// Publishes to `exchange` with `routing_key` as `user_id`, with confirms: the broker's answer, or its
/// refusal as text.
async fn publish(connection: &Connection, exchange: &str, routing_key: &str, user_id: &str) -> Result<(), String> {
    let channel = connection.create_channel().await.map_err(|error| error.to_string())?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(|error| error.to_string())?;
    let properties = BasicProperties::default()
        .with_message_id("m-1".into())
        .with_content_type("application/json".into())
        .with_user_id(user_id.into());
    let options = BasicPublishOptions { mandatory: true, immediate: false };
    let confirm = channel.basic_publish(exchange.into(), routing_key.into(), options, b"{}", properties).await;
    match confirm.map_err(|error| error.to_string())?.await {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(other) => Err(format!("{other:?}")),
        Err(error) => Err(error.to_string()),
    }
}

/// Takes one message from `queue` as the connection's user: whether there was one, or the refusal.
async fn get(connection: &Connection, queue: &str) -> Result<bool, String> {
    let channel = connection.create_channel().await.map_err(|error| error.to_string())?;
    let got = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await;
    got.map(|message| message.is_some()).map_err(|error| error.to_string())
}

/// The password in `url`, whose user is `user`.
fn password_of(url: &str, user: &str) -> String {
    url.split_once(&format!("{user}:")).unwrap().1.split_once('@').unwrap().0.to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agency_reads_its_own_inbox_and_publishes_as_itself_only() {
    let area = Area::new().await;
    let output = area.provision(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let shown = text(&output.stdout);
    let trust = area.user("northvale-mh");
    let url = area.url("northvale-mh");
    let password = password_of(&url, &trust);
    assert_eq!(url, format!("amqp://{trust}:{password}@127.0.0.1:5672/{}", area.vhost));
    assert!(shown.contains(&format!("{trust}: created, password {password} (shown once")), "{shown}");
    for agency in AGENCIES {
        assert_eq!(mode(&area.secrets_file(agency)), 0o600, "{agency}'s URL is for its owner only");
    }
    assert!(!text(&output.stderr).contains(&password), "the password is shown on standard output only");

    // Something for the trust, as the relay would put it there.
    let admin = connect(&area.amqp_url).await.unwrap();
    publish(&admin, "concordat.deliver", "northvale-mh", "guest").await.unwrap();

    let trust_connection = connect(&url).await.unwrap();
    assert_eq!(get(&trust_connection, "agency.northvale-mh.inbox").await, Ok(true), "its own inbox");
    let refused = get(&trust_connection, "agency.northvale-police.inbox").await.unwrap_err();
    assert!(refused.contains("ACCESS_REFUSED"), "another agency's inbox: {refused}");
    let refused = publish(&trust_connection, "concordat.ingest", "northvale-police", &trust).await.unwrap_err();
    assert!(refused.contains("ACCESS_REFUSED"), "publishing as the police: {refused}");
    assert_eq!(publish(&trust_connection, "concordat.ingest", "northvale-mh", &trust).await, Ok(()), "as itself");
    let refused = publish(&trust_connection, "concordat.events", "nhs.northvale-mh.x", &trust).await.unwrap_err();
    assert!(refused.contains("ACCESS_REFUSED"), "any other exchange: {refused}");
    let _ = trust_connection.close(200, "done".into()).await;

    // Again: nothing changes, no password is shown.
    let again = area.provision(&[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains(&format!("{trust}: exists, password unchanged")), "{}", text(&again.stdout));
    assert!(!text(&again.stdout).contains(&password), "a password is shown once only");
    assert_eq!(area.url("northvale-mh"), url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_password_invalidates_the_old_one() {
    let area = Area::new().await;
    assert_eq!(area.provision(&[]).status.code(), Some(0));
    let old = area.url("safe-haven");
    let police = area.url("northvale-police");
    connect(&old).await.unwrap().close(200, "done".into()).await.unwrap();

    let output = area.provision(&["--rotate", "safe-haven"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let shown = text(&output.stdout);
    assert!(shown.contains(&format!("{}: rotated, password ", area.user("safe-haven"))), "{shown}");
    assert!(!shown.contains(&area.user("northvale-police")), "only the rotated agency is touched: {shown}");
    let new = area.url("safe-haven");
    assert_ne!(new, old);
    assert_eq!(mode(&area.secrets_file("safe-haven")), 0o600);

    let refused = connect(&old).await.map(drop).unwrap_err().to_string();
    assert!(refused.contains("ACCESS_REFUSED") || refused.contains("authentication"), "the old password: {refused}");
    let connection = connect(&new).await.unwrap();
    assert_eq!(get(&connection, "agency.safe-haven.inbox").await, Ok(false), "the new password reads the inbox");
    connect(&police).await.unwrap().close(200, "done".into()).await.unwrap();

    let unknown = area.provision(&["--rotate", "northvale-fire"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no agency `northvale-fire`"), "{}", text(&unknown.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definitions_file_imports_the_same_users() {
    let area = Area::new().await;
    let file = area.secrets.path().join("definitions.json");
    let output = area.provision(&["--emit-definitions", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(mode(&file), 0o600, "the definitions hold password hashes");
    let definitions: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(definitions["users"].as_array().unwrap().len(), AGENCIES.len());
    let url = area.url("listening-line");
    let password = password_of(&url, &area.user("listening-line"));
    assert!(!std::fs::read_to_string(&file).unwrap().contains(&password), "hashes only, never a password");

    // From standard input: the node reads a named file itself, as its own system user, and this one is
    // the operator's alone.
    let import = Command::new("rabbitmqctl")
        .args(["-q", "import_definitions", "--format", "json"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", text(&import.stderr));
    // The node finishes an import from standard input after the command returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let connection = loop {
        match connect(&url).await {
            Ok(connection) => break connection,
            Err(error) if std::time::Instant::now() > deadline => panic!("the imported user cannot connect: {error}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    };
    assert_eq!(get(&connection, "agency.listening-line.inbox").await, Ok(false));
    let refused = get(&connection, "agency.safe-haven.inbox").await.unwrap_err();
    assert!(refused.contains("ACCESS_REFUSED"), "{refused}");
    let user = area.user("listening-line");
    let refused = publish(&connection, "concordat.ingest", "safe-haven", &user).await.unwrap_err();
    assert!(refused.contains("ACCESS_REFUSED"), "{refused}");

    // Emitting again keeps the passwords the secrets directory holds.
    assert_eq!(area.provision(&["--emit-definitions", file.to_str().unwrap()]).status.code(), Some(0));
    assert_eq!(area.url("listening-line"), url);
}
