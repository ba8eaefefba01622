//! The end-to-end harness: one sample area (`deploy/local/concordat.toml` and the Northvale policy) served by
//! a real `concordat run` process, on its own RabbitMQ virtual host and its own store (a fresh SQLite file or a
//! fresh PostgreSQL database), driven the way the agencies' systems drive it: `POST` their native payloads
//! with their development tokens, read their inboxes over AMQP with a plain AMQP client.
//!
//! Each [`Area`] owns a virtual host, so suites running side by side never see each other's queues, and the
//! queue names are the published ones (`agency.northvale-mh.inbox`). Dropping the area stops the process and
//! removes the virtual host and the database.
//!
//! Needs RabbitMQ with `rabbitmqctl` on the path and PostgreSQL (`scripts/test.sh` starts both), and the
//! `concordat` binary: `cargo test --workspace` builds it; `CONCORDAT_BIN` names another one.

pub mod otlp;
pub mod pki;

/// The payloads and values the suites share.
pub mod fixtures {
    /// The Northvale Police s136 incident (a detention and a conveyance).
    pub const POLICE_S136: &str = "schemas/examples/police-incident/valid/s136-public-place-police-vehicle.json";
    /// The trust's assessment outcome, no further action, as a FHIR Bundle.
    pub const OUTCOME_NFA: &str = "adapters/nhs-fhir/tests/fixtures/valid/outcome-no-further-action.json";
    /// The NHS number of the incident's person (a valid, fictional one).
    pub const NHS_NUMBER: &str = "9434765919";
    /// The identifier system of Concordat's episode ids.
    pub const EPISODE_SYSTEM: &str = "urn:concordat:episode";
    /// FHIR's JSON media type.
    pub const FHIR: &str = "application/fhir+json";
}

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::AMQPValue;
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;
use sqlx::Connection as _;

/// The store an area runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded default: a SQLite file.
    Sqlite,
    /// PostgreSQL, a fresh database on the server named by `CONCORDAT_TEST_PG_URL`.
    Postgres,
}

const DEFAULT_PG_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";
const DEFAULT_AMQP_BASE: &str = "amqp://guest:guest@127.0.0.1:5672";

/// The workspace root: the binary runs from here, so the sample configuration's relative paths hold.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the repository, read whole.
///
/// # Panics
/// When the file cannot be read: a test fixture is missing.
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(root().join(path)).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}

/// A JSON fixture, parsed.
///
/// # Panics
/// When the file is missing or is not JSON.
pub fn json_fixture(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap_or_else(|error| panic!("parsing {path}: {error}"))
}

/// The `concordat` binary under test.
fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CONCORDAT_BIN") {
        return Ok(PathBuf::from(path));
    }
    // This test runs as target/<profile>/deps/<name>-<hash>; the binary is target/<profile>/concordat.
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(Path::parent).context("locating the target directory")?;
    let path = profile_dir.join(format!("concordat{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        path.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (which builds it) or set CONCORDAT_BIN",
        path.display()
    );
    Ok(path)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn rabbitmqctl(args: &[&str]) -> Result<String> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .context("running rabbitmqctl (RabbitMQ's CLI must be on the path)")?;
    ensure!(
        output.status.success(),
        "rabbitmqctl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The development tokens of `deploy/local/dev-tokens.env`, by agency id.
fn dev_tokens() -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(root().join("deploy/local/dev-tokens.env"))?;
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix("CONCORDAT_DEV_TOKEN_"))
        .filter_map(|line| line.split_once('='))
        .map(|(agency, token)| (agency.to_ascii_lowercase().replace('_', "-"), token.trim().to_owned()))
        .collect())
}

/// The admin API token every area's process is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-not-for-production";

/// The PostgreSQL admin URL with its database replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |at| at + 3);
    let path = base[authority..].find('/').map_or(base.len(), |at| authority + at);
    match query {
        Some(query) => format!("{}/{name}?{query}", &base[..path]),
        None => format!("{}/{name}", &base[..path]),
    }
}

/// A response to a post, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: String,
    /// The body, parsed when it is JSON (`Value::Null` otherwise).
    pub json: Value,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// Reads a response: its status, media type and body.
    async fn read(response: reqwest::Response) -> Result<Self> {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Self { status, content_type, json, text })
    }

    /// The event ids of a `202` (its `accepted` member).
    pub fn event_ids(&self) -> Vec<String> {
        self.json["accepted"]
            .as_array()
            .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// A message read from an agency's inbox.
#[derive(Debug, Clone)]
pub struct Received {
    /// The AMQP `message_id` (deterministic: a consumer dedupes by it).
    pub message_id: String,
    /// The AMQP `content_type`.
    pub content_type: String,
    /// The string-valued headers.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Errors
    /// The body is not JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).context("an inbox message that is not JSON")
    }

    /// The `concordat-kind` header: the canonical kind the message renders.
    pub fn kind(&self) -> &str {
        self.headers.get("concordat-kind").map_or("", String::as_str)
    }
}

enum Cleanup {
    Dir(tempfile::TempDir),
    Database { admin_url: String, name: String },
}

/// What an area is started with beyond the sample configuration.
#[derive(Debug, Default)]
pub struct Options<'a> {
    /// Added to the process's environment (e.g. `CONCORDAT_OTLP_ENDPOINT`, `CONCORDAT_TLS_CERT`).
    pub env: &'a [(&'a str, &'a str)],
    /// The configuration file's text, used instead of `deploy/local/concordat.toml`; relative paths in it
    /// resolve from the workspace root.
    pub config: Option<String>,
    /// The CA certificate (PEM) of an area served over HTTPS: the harness then speaks HTTPS, trusting only it.
    pub https_ca_pem: Option<String>,
}

/// The sample configuration, `deploy/local/concordat.toml`, with `lines` added to agencies' sections (e.g.
/// `("northvale-mh", "client_cert_sha256 = [\"…\"]")`).
///
/// # Errors
/// The file cannot be read or has no section for an agency.
pub fn sample_config_with(lines: &[(&str, &str)]) -> Result<String> {
    let mut text = std::fs::read_to_string(root().join("deploy/local/concordat.toml"))?;
    for (agency, line) in lines {
        let header = format!("[gateway.agencies.{agency}]\n");
        let at = text.find(&header).with_context(|| format!("no section for {agency}"))? + header.len();
        text.insert_str(at, &format!("{line}\n"));
    }
    Ok(text)
}

/// One sample area served by a running `concordat run`.
pub struct Area {
    vhost: String,
    amqp_url: String,
    store_url: String,
    ingest: u16,
    admin: u16,
    child: Option<Child>,
    logs: tempfile::TempDir,
    starts: u32,
    cleanup: Option<Cleanup>,
    tokens: BTreeMap<String, String>,
    http: reqwest::Client,
    amqp: Option<Connection>,
    env: Vec<(String, String)>,
    config: PathBuf,
    scheme: &'static str,
    https_ca_pem: Option<String>,
}

impl Area {
    /// Creates a virtual host and a store, starts `concordat run` on them and waits until it is ready.
    ///
    /// # Errors
    /// RabbitMQ, PostgreSQL or the binary are missing, or the process did not become ready.
    pub async fn start(store: StoreKind) -> Result<Self> {
        Self::start_with(store, &[]).await
    }

    /// [`Self::start`], with `env` added to the process's environment (e.g. `CONCORDAT_OTLP_ENDPOINT`).
    ///
    /// # Errors
    /// As [`Self::start`].
    pub async fn start_with(store: StoreKind, env: &[(&str, &str)]) -> Result<Self> {
        Self::start_with_options(store, Options { env, ..Options::default() }).await
    }

    /// [`Self::start`], with the [`Options`].
    ///
    /// # Errors
    /// As [`Self::start`], or a CA certificate that cannot be read.
    pub async fn start_with_options(store: StoreKind, options: Options<'_>) -> Result<Self> {
        let env = options.env;
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let vhost = format!("e2e-{unique}");
        rabbitmqctl(&["-q", "add_vhost", &vhost])?;
        rabbitmqctl(&["-q", "set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"])?;
        let base = std::env::var("CONCORDAT_TEST_AMQP_BASE").unwrap_or_else(|_| DEFAULT_AMQP_BASE.to_owned());
        let amqp_url = format!("{base}/{vhost}");
        let (store_url, cleanup) = match store {
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir()?;
                (format!("sqlite://{}", dir.path().join("data/concordat.db").display()), Cleanup::Dir(dir))
            }
            StoreKind::Postgres => {
                let admin_url = std::env::var("CONCORDAT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
                let name = format!("concordat_e2e_{unique}");
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .with_context(|| format!("PostgreSQL is needed at {admin_url}"))?;
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
                admin.close().await?;
                (with_database(&admin_url, &name), Cleanup::Database { admin_url, name })
            }
        };
        let logs = tempfile::tempdir()?;
        let config = match &options.config {
            Some(text) => {
                let path = logs.path().join("concordat.toml");
                std::fs::write(&path, text)?;
                path
            }
            None => PathBuf::from("deploy/local/concordat.toml"),
        };
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = &options.https_ca_pem {
            http = http.tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes())?]);
        }
        let mut area = Self {
            vhost,
            amqp_url,
            store_url,
            ingest: free_port()?,
            admin: free_port()?,
            child: None,
            logs,
            starts: 0,
            cleanup: Some(cleanup),
            tokens: dev_tokens()?,
            http: http.build()?,
            amqp: None,
            env: env.iter().map(|&(name, value)| (name.to_owned(), value.to_owned())).collect(),
            config,
            scheme: if options.https_ca_pem.is_some() { "https" } else { "http" },
            https_ca_pem: options.https_ca_pem,
        };
        area.launch().await?;
        Ok(area)
    }

    /// The store URL, for a test that inspects or tampers with the store.
    pub fn store_url(&self) -> &str {
        &self.store_url
    }

    /// The process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn command(&self) -> Result<Command> {
        let mut command = Command::new(binary()?);
        command
            .current_dir(root())
            .env("CONCORDAT_AMQP_URL", &self.amqp_url)
            .env("CONCORDAT_STORE_URL", &self.store_url)
            .env("CONCORDAT_LISTEN", format!("127.0.0.1:{}", self.ingest))
            .env("CONCORDAT_ADMIN_LISTEN", format!("127.0.0.1:{}", self.admin))
            .env("CONCORDAT_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("CONCORDAT_LOG", "info")
            // `publish_ingest` publishes as the broker's administrative user, without `user_id`: the
            // development allowance. The strict rule has its own tests (`agencies`, the gateway's).
            .env("CONCORDAT_GATEWAY__AMQP__TRUST_ROUTING_KEY", "true")
            .envs(self.env.iter().map(|(name, value)| (name, value)));
        Ok(command)
    }

    /// Starts (or restarts) the process and waits for `/readyz`.
    async fn launch(&mut self) -> Result<()> {
        self.starts += 1;
        let log = File::create(self.logs.path().join(format!("run-{}.log", self.starts)))?;
        let child = self
            .command()?
            .args(["run", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting concordat run")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.admin_url("/readyz");
        loop {
            if let Ok(response) = self.http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("concordat run exited early ({status}):\n{}", self.logs());
            }
            ensure!(Instant::now() < deadline, "concordat run was not ready within 60 s:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The URL of `path` on the admin listener, for a client other than this harness (a browser).
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.admin)
    }

    /// The URL of `path` on the ingest listener.
    pub fn ingest_url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.ingest)
    }

    /// A client of the area's listeners like the harness's own (trusting only the test CA over HTTPS),
    /// presenting `identity` when a listener asks for a client certificate.
    ///
    /// # Errors
    /// The client cannot be built.
    pub fn client_with(&self, identity: Option<reqwest::Identity>) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = &self.https_ca_pem {
            builder = builder.tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes())?]);
        }
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        Ok(builder.build()?)
    }

    /// Posts `body` to `agency`'s ingest endpoint with `client`, and `token` if given.
    ///
    /// # Errors
    /// The request could not be sent (a refused TLS handshake among others).
    pub async fn post_via(
        &self,
        client: &reqwest::Client,
        agency: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Answer> {
        let url = self.ingest_url(&format!("/v1/agencies/{agency}/events"));
        let mut request = client.post(url).header(reqwest::header::CONTENT_TYPE, content_type).body(body.into());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Answer::read(request.send().await?).await
    }

    /// Calls the admin API: `method` on `path` (from `/v1/admin/…`) with `token` (none: no header).
    ///
    /// # Errors
    /// The request could not be sent.
    pub async fn admin(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> Result<Answer> {
        let mut request = self.http.request(method, self.admin_url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        Answer::read(response).await
    }

    /// Calls the admin API with the admin token and a JSON body.
    ///
    /// # Errors
    /// The request could not be sent.
    pub async fn admin_json(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Answer> {
        let response =
            self.http.request(method, self.admin_url(path)).bearer_auth(ADMIN_TOKEN).json(body).send().await?;
        Answer::read(response).await
    }

    /// Everything the process has logged so far, for a failing assertion's message.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .filter_map(|start| std::fs::read_to_string(self.logs.path().join(format!("run-{start}.log"))).ok())
            .collect::<Vec<_>>()
            .join("\n--- restarted ---\n")
    }

    /// Kills the process outright (SIGKILL: no shutdown, no flush), as a crash would.
    ///
    /// # Errors
    /// The process could not be killed.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the process again on the same virtual host and store.
    ///
    /// # Errors
    /// It did not become ready.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.launch().await
    }

    /// Posts `body` as `agency` with its development token.
    ///
    /// # Errors
    /// The request could not be sent.
    pub async fn post(&self, agency: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Result<Answer> {
        let token = self.tokens.get(agency).cloned().unwrap_or_default();
        self.post_with_token(agency, &token, content_type, body).await
    }

    /// Posts `body` to `agency`'s ingest endpoint with `token`.
    ///
    /// # Errors
    /// The request could not be sent.
    pub async fn post_with_token(
        &self,
        agency: &str,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Answer> {
        self.post_with_headers(agency, token, content_type, body, &[]).await
    }

    /// Posts `body` to `agency`'s ingest endpoint with `token` and the extra `headers` (e.g. `traceparent`).
    ///
    /// # Errors
    /// The request could not be sent.
    pub async fn post_with_headers(
        &self,
        agency: &str,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Result<Answer> {
        let url = self.ingest_url(&format!("/v1/agencies/{agency}/events"));
        let mut request = self
            .http
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.into());
        for &(name, value) in headers {
            request = request.header(name, value);
        }
        Answer::read(request.send().await?).await
    }

    /// The development token of `agency` (empty when it has none).
    pub fn token(&self, agency: &str) -> String {
        self.tokens.get(agency).cloned().unwrap_or_default()
    }

    /// Posts and insists on `202 Accepted`; returns the accepted event ids.
    ///
    /// # Errors
    /// Any other answer, with its body.
    pub async fn accepted(
        &self,
        agency: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Vec<String>> {
        let answer = self.post(agency, content_type, body).await?;
        ensure!(answer.status == 202, "{agency}'s post was answered {}: {}", answer.status, answer.text);
        Ok(answer.event_ids())
    }

    async fn channel(&mut self) -> Result<lapin::Channel> {
        if self.amqp.as_ref().is_none_or(|connection| !connection.status().connected()) {
            let properties = ConnectionProperties::default();
            self.amqp = Some(Connection::connect(&self.amqp_url, properties).await.context("connecting to RabbitMQ")?);
        }
        let connection = self.amqp.as_ref().context("no AMQP connection")?;
        Ok(connection.create_channel().await?)
    }

    /// Takes (and acks) the next message of `agency.{agency}.inbox`, waiting up to `wait`; `None` when the
    /// inbox stayed empty.
    ///
    /// # Errors
    /// RabbitMQ could not be asked.
    pub async fn take(&mut self, agency: &str, wait: Duration) -> Result<Option<Received>> {
        let channel = self.channel().await?;
        let queue = format!("agency.{agency}.inbox");
        let deadline = Instant::now() + wait;
        let received = loop {
            if let Some(message) = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await? {
                let delivery = message.delivery;
                let properties = &delivery.properties;
                let headers = properties
                    .headers()
                    .as_ref()
                    .map(|table| {
                        table
                            .inner()
                            .iter()
                            .filter_map(|(name, value)| match value {
                                AMQPValue::LongString(text) => Some((name.to_string(), text.to_string())),
                                AMQPValue::ShortString(text) => Some((name.to_string(), text.to_string())),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let received = Received {
                    message_id: properties.message_id().as_ref().map(ToString::to_string).unwrap_or_default(),
                    content_type: properties.content_type().as_ref().map(ToString::to_string).unwrap_or_default(),
                    headers,
                    body: delivery.data.clone(),
                };
                delivery.ack(BasicAckOptions::default()).await?;
                break Some(received);
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        channel.close(200, "done".into()).await?;
        Ok(received)
    }

    /// Publishes a native payload to `concordat.ingest` as `agency`'s system would over AMQP (routing key =
    /// agency id), persistent, with publisher confirms.
    ///
    /// # Errors
    /// RabbitMQ refused or did not confirm it.
    pub async fn publish_ingest(
        &mut self,
        agency: &str,
        message_id: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<()> {
        self.publish_ingest_with_headers(agency, message_id, content_type, body, &[]).await
    }

    /// [`Self::publish_ingest`], with string `headers` on the message (e.g. `traceparent`).
    ///
    /// # Errors
    /// RabbitMQ refused or did not confirm it.
    pub async fn publish_ingest_with_headers(
        &mut self,
        agency: &str,
        message_id: &str,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<()> {
        let channel = self.channel().await?;
        channel.confirm_select(lapin::options::ConfirmSelectOptions::default()).await?;
        let mut table = lapin::types::FieldTable::default();
        for &(name, value) in headers {
            table.insert(name.into(), AMQPValue::LongString(value.into()));
        }
        let properties = lapin::BasicProperties::default()
            .with_message_id(message_id.into())
            .with_content_type(content_type.into())
            .with_headers(table)
            .with_delivery_mode(2);
        let options = lapin::options::BasicPublishOptions { mandatory: true, immediate: false };
        let confirm =
            channel.basic_publish("concordat.ingest".into(), agency.into(), options, body, properties).await?.await?;
        ensure!(matches!(confirm, lapin::Confirmation::Ack(None)), "the ingest publish was not confirmed: {confirm:?}");
        channel.close(200, "done".into()).await?;
        Ok(())
    }

    /// The next message of `agency`'s inbox, waiting up to 30 s.
    ///
    /// # Errors
    /// Nothing arrived, with the process's logs.
    pub async fn next(&mut self, agency: &str) -> Result<Received> {
        match self.take(agency, Duration::from_secs(30)).await? {
            Some(received) => Ok(received),
            None => Err(anyhow!("nothing reached {agency}'s inbox within 30 s; the logs:\n{}", self.logs())),
        }
    }

    /// Every message that reaches `agency`'s inbox until it has been quiet for `quiet`.
    ///
    /// # Errors
    /// RabbitMQ could not be asked.
    pub async fn drain(&mut self, agency: &str, quiet: Duration) -> Result<Vec<Received>> {
        let mut all = Vec::new();
        while let Some(received) = self.take(agency, quiet).await? {
            all.push(received);
        }
        Ok(all)
    }

    /// Insists that nothing reaches `agency`'s inbox within 3 s.
    ///
    /// # Errors
    /// Something did: its kind.
    pub async fn nothing_for(&mut self, agency: &str) -> Result<()> {
        if let Some(received) = self.take(agency, Duration::from_secs(3)).await? {
            bail!("unexpected delivery to {agency}: kind {:?}", received.kind());
        }
        Ok(())
    }

    /// How many messages each queue of the virtual host holds, by name.
    ///
    /// # Errors
    /// `rabbitmqctl` failed.
    pub fn queue_depths(&self) -> Result<BTreeMap<String, u64>> {
        let listing = rabbitmqctl(&["-q", "list_queues", "-p", &self.vhost, "--no-table-headers", "name", "messages"])?;
        Ok(listing
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
            })
            .collect())
    }

    /// Runs `concordat <args>` against this area's configuration (same store, same broker).
    ///
    /// # Errors
    /// The binary could not be run.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        Ok(self.command()?.args(args).arg("--config").arg(&self.config).output()?)
    }

    /// Rows of a query on the area's store, each column as text (for checks on what was recorded).
    ///
    /// # Errors
    /// The query failed.
    pub async fn query_texts(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        use sqlx::Row as _;
        let rows: Vec<Vec<String>> = if self.store_url.starts_with("sqlite:") {
            let mut connection = sqlx::SqliteConnection::connect(&self.store_url).await?;
            let rows = sqlx::query(sql).fetch_all(&mut connection).await?;
            rows.iter()
                .map(|row| (0..row.len()).map(|at| row.try_get::<String, _>(at).unwrap_or_default()).collect())
                .collect()
        } else {
            let mut connection = sqlx::PgConnection::connect(&self.store_url).await?;
            let rows = sqlx::query(sql).fetch_all(&mut connection).await?;
            rows.iter()
                .map(|row| (0..row.len()).map(|at| row.try_get::<String, _>(at).unwrap_or_default()).collect())
                .collect()
        };
        Ok(rows)
    }

    /// Runs statements on the area's store directly, as someone with database access would.
    ///
    /// # Errors
    /// A statement failed.
    pub async fn execute(&self, statements: &[&str]) -> Result<()> {
        if self.store_url.starts_with("sqlite:") {
            let mut connection = sqlx::SqliteConnection::connect(&self.store_url).await?;
            for statement in statements {
                sqlx::query(statement).execute(&mut connection).await?;
            }
        } else {
            let mut connection = sqlx::PgConnection::connect(&self.store_url).await?;
            for statement in statements {
                sqlx::query(statement).execute(&mut connection).await?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Area {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Area").field("vhost", &self.vhost).field("store_url", &self.store_url).finish_non_exhaustive()
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = rabbitmqctl(&["-q", "delete_vhost", &self.vhost]);
        match self.cleanup.take() {
            Some(Cleanup::Database { admin_url, name }) => {
                // Drop may run inside the test's runtime, which cannot be blocked on: a thread with a small
                // runtime of its own removes the database.
                let dropped = std::thread::spawn(move || -> Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    runtime.block_on(async {
                        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        sqlx::query(&drop).execute(&mut admin).await?;
                        admin.close().await?;
                        Ok(())
                    })
                })
                .join();
                if let Ok(Err(error)) = dropped {
                    eprintln!("could not drop a test database: {error}");
                }
            }
            Some(Cleanup::Dir(dir)) => {
                let _ = dir.close();
            }
            None => {}
        }
    }
}

/// Finds the value of the first FHIR `identifier` (anywhere in `value`) whose system is `system`.
pub fn find_identifier(value: &Value, system: &str) -> Option<String> {
    match value {
        Value::Object(map) => {
            if map.get("system").and_then(Value::as_str) == Some(system)
                && let Some(found) = map.get("value").and_then(Value::as_str)
            {
                return Some(found.to_owned());
            }
            map.values().find_map(|inner| find_identifier(inner, system))
        }
        Value::Array(items) => items.iter().find_map(|inner| find_identifier(inner, system)),
        _ => None,
    }
}

/// Replaces every NHS-number identifier of a FHIR Bundle with `number`.
pub fn set_nhs_number(value: &mut Value, number: &str) {
    match value {
        Value::Object(map) => {
            if map.get("system").and_then(Value::as_str) == Some("https://fhir.nhs.uk/Id/nhs-number") {
                map.insert("value".to_owned(), Value::String(number.to_owned()));
            }
            map.values_mut().for_each(|inner| set_nhs_number(inner, number));
        }
        Value::Array(items) => items.iter_mut().for_each(|inner| set_nhs_number(inner, number)),
        _ => {}
    }
}

/// Every string anywhere in a JSON value, depth first: what a check for personal data must look through.
pub fn string_leaves(value: &Value) -> Vec<String> {
    fn walk(value: &Value, into: &mut Vec<String>) {
        match value {
            Value::String(text) => into.push(text.clone()),
            Value::Array(items) => items.iter().for_each(|item| walk(item, into)),
            Value::Object(map) => map.values().for_each(|item| walk(item, into)),
            _ => {}
        }
    }
    let mut leaves = Vec::new();
    walk(value, &mut leaves);
    leaves
}
