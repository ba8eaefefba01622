//! `concordat agencies provision`: one RabbitMQ user per agency of the sharing policy, with least
//! privilege. Agency X's user (`{user_prefix}X`, `agency-X` by default) may read `agency.X.inbox` only,
//! write to `concordat.ingest` only, with routing key `X` only (a topic permission), and configure nothing.
//!
//! Users are created through RabbitMQ's management HTTP API, or written as a definitions file for
//! `rabbitmqctl import_definitions` (`--emit-definitions`). Provisioning is idempotent: an existing user
//! keeps its password and gets its permissions set again; `--rotate AGENCY` replaces one password and
//! closes that user's open connections. A generated password is shown once, on standard output, and written
//! to `--secrets-dir` as `{user}.amqp` (mode 0600): the agency's AMQP URL, the broker's host and virtual
//! host taken from `amqp_url`. Only the salted SHA-256 hash RabbitMQ stores ever reaches the broker.
//!
//! This module does not declare the topology (`concordat run` does) and deletes no user.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use base64::Engine as _;
use concordat_bus::{Topology, redact_url};
use lapin::uri::{AMQPScheme, AMQPUri};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::Failure;
use crate::config::Config;

/// What `concordat agencies provision` was asked to do.
#[derive(Debug)]
pub struct ProvisionArgs {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--secrets-dir`: where each agency's `{user}.amqp` file is written.
    pub secrets_dir: PathBuf,
    /// `--rotate`: the agency whose password is replaced; the others are left alone.
    pub rotate: Option<String>,
    /// `--emit-definitions`: write a definitions file instead of calling the management API.
    pub emit_definitions: Option<PathBuf>,
}

/// The permissions of one agency's user, as RabbitMQ's regular expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The agency id.
    pub agency: String,
    /// The RabbitMQ user.
    pub user: String,
    /// Which resources it may configure (declare, delete): none.
    pub configure: String,
    /// Which exchanges it may publish to: the ingest exchange.
    pub write: String,
    /// Which queues it may read: its inbox.
    pub read: String,
    /// The topic exchange its topic permission applies to: the ingest exchange.
    pub topic_exchange: String,
    /// The routing keys it may publish with there: its own id.
    pub topic_write: String,
}

/// Matches exactly `name` in RabbitMQ's permission regular expressions.
fn exactly(name: &str) -> String {
    let mut pattern = String::from("^");
    for character in name.chars() {
        if !character.is_ascii_alphanumeric() && character != '-' && character != '_' {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('$');
    pattern
}

/// The least-privilege grant of `agency`, whose user is `user`, in `topology`.
#[must_use]
pub fn grant(topology: &Topology, agency: &str, user: &str) -> Grant {
    Grant {
        agency: agency.to_owned(),
        user: user.to_owned(),
        configure: "^$".to_owned(),
        write: exactly(&topology.ingest_exchange()),
        read: exactly(&topology.inbox_queue(agency)),
        topic_exchange: topology.ingest_exchange(),
        topic_write: exactly(agency),
    }
}

/// RabbitMQ's `rabbit_password_hashing_sha256`: base64 of the 4-byte salt followed by SHA-256 of the salt
/// and the password.
#[must_use]
pub fn password_hash(password: &str, salt: [u8; 4]) -> String {
    let digest = Sha256::new().chain_update(salt).chain_update(password.as_bytes()).finalize();
    let mut salted = salt.to_vec();
    salted.extend_from_slice(&digest);
    base64::engine::general_purpose::STANDARD.encode(salted)
}

/// A fresh password: 32 letters and digits from the operating system's generator (about 190 bits).
fn new_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut password = String::with_capacity(32);
    while password.len() < 32 {
        let mut bytes = [0_u8; 64];
        getrandom::fill(&mut bytes).map_err(|error| anyhow!("the system's random generator failed: {error}"))?;
        // 248 is the largest multiple of 62 under 256: rejecting the rest keeps every letter equally likely.
        for byte in bytes.into_iter().filter(|byte| *byte < 248) {
            if password.len() < 32 {
                password.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
    }
    Ok(password)
}

fn new_salt() -> anyhow::Result<[u8; 4]> {
    let mut salt = [0_u8; 4];
    getrandom::fill(&mut salt).map_err(|error| anyhow!("the system's random generator failed: {error}"))?;
    Ok(salt)
}

/// `amqp_url` with its user and password replaced: the agency's own URL, same broker, port, virtual host
/// and query. Only the first of several comma-separated URLs is kept.
///
/// # Errors
/// `amqp_url` has no `scheme://`.
pub fn agency_url(amqp_url: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let first = amqp_url.split(',').next().unwrap_or(amqp_url).trim();
    let (scheme, rest) =
        first.split_once("://").with_context(|| format!("amqp_url `{}` has no scheme", redact_url(first)))?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    // Users and generated passwords are letters, digits, `-` and `_`; anything else is percent-encoded.
    Ok(format!("{scheme}://{}:{}@{host}{tail}", encode(user), encode(password)))
}

fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The management API's base URL for `amqp_url`: the same host, port 15672 (`http`) or 15671 (`https` for
/// an `amqps://` broker).
///
/// # Errors
/// `amqp_url` does not parse.
pub fn management_url_for(amqp_url: &str) -> anyhow::Result<Url> {
    let uri = parse_amqp(amqp_url)?;
    let (scheme, port) = match uri.scheme {
        AMQPScheme::AMQP => ("http", 15672),
        AMQPScheme::AMQPS => ("https", 15671),
    };
    let host = &uri.authority.host;
    let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    Url::parse(&format!("{scheme}://{host}:{port}/")).context("building the management API's URL")
}

fn parse_amqp(amqp_url: &str) -> anyhow::Result<AMQPUri> {
    let first = amqp_url.split(',').next().unwrap_or(amqp_url).trim();
    first.parse::<AMQPUri>().map_err(|_| anyhow!("amqp_url `{}` is not an AMQP URL", redact_url(first)))
}

/// The definitions file for `rabbitmqctl import_definitions`: the virtual host, each user (by password
/// hash) and its permissions and topic permission.
#[must_use]
pub fn definitions(vhost: &str, users: &[(Grant, String)]) -> Value {
    let hashing = "rabbit_password_hashing_sha256";
    json!({
        "vhosts": [{ "name": vhost }],
        "users": users.iter().map(|(grant, hash)| json!({
            "name": grant.user, "password_hash": hash, "hashing_algorithm": hashing, "tags": [],
        })).collect::<Vec<_>>(),
        "permissions": users.iter().map(|(grant, _)| json!({
            "user": grant.user, "vhost": vhost,
            "configure": grant.configure, "write": grant.write, "read": grant.read,
        })).collect::<Vec<_>>(),
        "topic_permissions": users.iter().map(|(grant, _)| json!({
            "user": grant.user, "vhost": vhost, "exchange": grant.topic_exchange,
            "write": grant.topic_write, "read": "^$",
        })).collect::<Vec<_>>(),
    })
}

/// `concordat agencies provision`.
///
/// # Errors
/// [`Failure::Input`] for a bad configuration, policy, `--rotate` or a refusal by the broker;
/// [`Failure::Service`] when the management API cannot be reached.
pub fn provision(args: &ProvisionArgs, env: &[(String, String)]) -> Result<(), Failure> {
    let input = Failure::Input;
    let (config, _) = Config::load(args.config.as_deref(), env).map_err(|error| input(error.into()))?;
    let policy = crate::pure::load_policy(&config.policy)?;
    let agencies: Vec<String> = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
    if let Some(rotate) = &args.rotate
        && !agencies.contains(rotate)
    {
        return Err(input(anyhow!("--rotate {rotate}: the sharing policy has no agency `{rotate}`")));
    }
    let topology = Topology::new(agencies.clone()).map_err(|error| input(error.into()))?;
    let vhost = parse_amqp(&config.amqp_url).map_err(input)?.vhost;
    let secrets = Secrets::open(&args.secrets_dir).map_err(input)?;
    let prefix = &config.gateway.amqp.user_prefix;
    let grants: Vec<Grant> =
        agencies.iter().map(|agency| grant(&topology, agency, &format!("{prefix}{agency}"))).collect();
    match &args.emit_definitions {
        Some(file) => emit(file, &vhost, &grants, &secrets, args.rotate.as_deref(), &config.amqp_url).map_err(input),
        None => {
            let api = Management::new(&config).map_err(input)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")
                .map_err(Failure::Service)?;
            runtime.block_on(through_api(&api, &vhost, &grants, &secrets, args.rotate.as_deref(), &config.amqp_url))
        }
    }
}

/// The secrets directory: one `{user}.amqp` file per agency user, each readable by its owner only.
struct Secrets {
    dir: PathBuf,
}

impl Secrets {
    fn open(dir: &Path) -> anyhow::Result<Self> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating --secrets-dir {}", dir.display()))?;
            // A directory made here is its owner's alone; one that existed keeps the mode it was given.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn path(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.amqp"))
    }

    /// The password of `user`'s file, when it has one.
    fn password(&self, user: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.path(user)).ok()?;
        let uri: AMQPUri = text.trim().parse().ok()?;
        Some(uri.authority.userinfo.password).filter(|password| !password.is_empty())
    }

    /// Writes `url` to `user`'s file, created with mode 0600 (and set to it when it already existed).
    fn write(&self, user: &str, url: &str) -> anyhow::Result<PathBuf> {
        let path = self.path(user);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        writeln!(file, "{url}").with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// Writes the definitions file: an agency whose secrets file holds a password keeps it, the others (and
/// the one rotated) get a new one.
fn emit(
    file: &Path,
    vhost: &str,
    grants: &[Grant],
    secrets: &Secrets,
    rotate: Option<&str>,
    amqp_url: &str,
) -> anyhow::Result<()> {
    let mut users = Vec::with_capacity(grants.len());
    for grant in grants {
        let kept = secrets.password(&grant.user).filter(|_| rotate != Some(grant.agency.as_str()));
        let password = match kept {
            Some(password) => {
                println!("{}: password kept from {}", grant.user, secrets.path(&grant.user).display());
                password
            }
            None => {
                let password = new_password()?;
                let path = secrets.write(&grant.user, &agency_url(amqp_url, &grant.user, &password)?)?;
                println!("{}: new password {password} (shown once; also in {})", grant.user, path.display());
                password
            }
        };
        users.push((grant.clone(), password_hash(&password, new_salt()?)));
    }
    let text = serde_json::to_string_pretty(&definitions(vhost, &users))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("writing {}", file.display()))?;
    out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(out, "{text}").with_context(|| format!("writing {}", file.display()))?;
    // `rabbitmqctl import_definitions FILE` has the node read the file as its own system user, which may
    // not read a file that is its owner's alone; standard input avoids that.
    println!(
        "wrote {} users to {}; import it with `rabbitmqctl import_definitions --format json < {}`",
        users.len(),
        file.display(),
        file.display()
    );
    Ok(())
}

/// Provisions every agency through the management API.
async fn through_api(
    api: &Management,
    vhost: &str,
    grants: &[Grant],
    secrets: &Secrets,
    rotate: Option<&str>,
    amqp_url: &str,
) -> Result<(), Failure> {
    api.check_vhost(vhost).await?;
    for grant in grants {
        let rotating = rotate == Some(grant.agency.as_str());
        if rotate.is_some() && !rotating {
            continue;
        }
        let exists = api.user_exists(&grant.user).await?;
        if exists && !rotating {
            let note =
                if secrets.path(&grant.user).exists() { "" } else { "; its URL file is missing: --rotate replaces it" };
            println!("{}: exists, password unchanged{note}", grant.user);
        } else {
            let password = new_password().map_err(Failure::Input)?;
            api.put_user(&grant.user, &password).await?;
            let url = agency_url(amqp_url, &grant.user, &password).map_err(Failure::Input)?;
            let path = secrets.write(&grant.user, &url).map_err(Failure::Input)?;
            let done = if exists { "rotated" } else { "created" };
            println!("{}: {done}, password {password} (shown once; also in {})", grant.user, path.display());
        }
        api.put_permissions(vhost, grant).await?;
        if rotating {
            let closed = api.close_connections(&grant.user).await?;
            println!("{}: closed {closed} open connection(s) that used the old password", grant.user);
        }
    }
    Ok(())
}

/// The management HTTP API of the broker: its base URL and credentials.
struct Management {
    http: reqwest::Client,
    base: Url,
    user: String,
    password: String,
}

impl Management {
    /// The API named by `management_url` (`CONCORDAT_MANAGEMENT_URL`), else derived from `amqp_url`; the
    /// credentials are the URL's own, else `amqp_url`'s.
    fn new(config: &Config) -> anyhow::Result<Self> {
        let amqp = parse_amqp(&config.amqp_url)?;
        let mut base = match &config.management_url {
            Some(url) => Url::parse(url).map_err(|error| anyhow!("management_url `{}`: {error}", redact_url(url)))?,
            None => management_url_for(&config.amqp_url)?,
        };
        let (mut user, mut password) = (amqp.authority.userinfo.username, amqp.authority.userinfo.password);
        if !base.username().is_empty() {
            user = decode(base.username());
            password = decode(base.password().unwrap_or_default());
        }
        // Credentials travel in the Authorization header, never in a URL that could be printed.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(Self { http, base, user, password })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("api").extend(segments);
        }
        url
    }

    /// Sends a request; `Ok` with the status for 2xx and 404, an error naming the call otherwise.
    async fn call(&self, method: Method, segments: &[&str], body: Option<Value>) -> Result<StatusCode, Failure> {
        let url = self.url(segments);
        let what = format!("{method} {}", url.path());
        let put = method == Method::PUT;
        let mut request = self.http.request(method, url).basic_auth(&self.user, Some(&self.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|error| {
            Failure::Service(anyhow!(
                "RabbitMQ's management API at {} cannot be reached ({error}); is the rabbitmq_management plugin \
                 enabled (deploy/local/services.sh enables it)? management_url names another address",
                self.base
            ))
        })?;
        let status = response.status();
        // A missing user or vhost is an answer to a GET, and a connection already gone is fine to a
        // DELETE; a PUT that finds nothing to write to is an error.
        if status.is_success() || (status == StatusCode::NOT_FOUND && !put) {
            return Ok(status);
        }
        let reason = response.json::<Value>().await.ok().and_then(|body| body["reason"].as_str().map(str::to_owned));
        let reason = reason.unwrap_or_default();
        Err(Failure::Input(match status {
            StatusCode::UNAUTHORIZED => {
                anyhow!("the management API at {} refused user `{}`: {reason}", self.base, self.user)
            }
            _ => anyhow!("{what} answered {status}: {reason}"),
        }))
    }

    async fn check_vhost(&self, vhost: &str) -> Result<(), Failure> {
        match self.call(Method::GET, &["vhosts", vhost], None).await? {
            StatusCode::NOT_FOUND => Err(Failure::Input(anyhow!(
                "the broker has no virtual host `{vhost}` (from amqp_url); create it with `rabbitmqctl add_vhost {vhost}`"
            ))),
            _ => Ok(()),
        }
    }

    async fn user_exists(&self, user: &str) -> Result<bool, Failure> {
        Ok(self.call(Method::GET, &["users", user], None).await? != StatusCode::NOT_FOUND)
    }

    async fn put_user(&self, user: &str, password: &str) -> Result<(), Failure> {
        let hash = password_hash(password, new_salt().map_err(Failure::Input)?);
        let body = json!({ "password_hash": hash, "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "" });
        self.call(Method::PUT, &["users", user], Some(body)).await.map(drop)
    }

    async fn put_permissions(&self, vhost: &str, grant: &Grant) -> Result<(), Failure> {
        let permissions = json!({ "configure": grant.configure, "write": grant.write, "read": grant.read });
        self.call(Method::PUT, &["permissions", vhost, &grant.user], Some(permissions)).await?;
        let topic = json!({ "exchange": grant.topic_exchange, "write": grant.topic_write, "read": "^$" });
        self.call(Method::PUT, &["topic-permissions", vhost, &grant.user], Some(topic)).await.map(drop)
    }

    /// Closes every open connection of `user`; how many.
    async fn close_connections(&self, user: &str) -> Result<usize, Failure> {
        let url = self.url(&["connections"]);
        let response = self.http.get(url).basic_auth(&self.user, Some(&self.password)).send().await;
        let connections: Vec<Value> = match response {
            Ok(response) if response.status().is_success() => response.json().await.unwrap_or_default(),
            Ok(response) => return Err(Failure::Input(anyhow!("listing connections answered {}", response.status()))),
            Err(error) => return Err(Failure::Service(anyhow!("listing connections failed: {error}"))),
        };
        let names: Vec<String> = connections
            .iter()
            .filter(|connection| connection["user"] == user)
            .filter_map(|connection| connection["name"].as_str().map(str::to_owned))
            .collect();
        for name in &names {
            self.call(Method::DELETE, &["connections", name], None).await?;
        }
        Ok(names.len())
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes.get(index + 1..index + 3).and_then(|pair| std::str::from_utf8(pair).ok());
        match (bytes[index], hex.and_then(|pair| u8::from_str_radix(pair, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology::new(vec!["northvale-mh".to_owned(), "safe-haven".to_owned()]).unwrap()
    }

    #[test]
    fn an_agency_reads_its_inbox_and_publishes_as_itself_only() {
        let grant = grant(&topology(), "northvale-mh", "agency-northvale-mh");
        assert_eq!(grant.configure, "^$");
        assert_eq!(grant.write, r"^concordat\.ingest$");
        assert_eq!(grant.read, r"^agency\.northvale-mh\.inbox$");
        assert_eq!(grant.topic_exchange, "concordat.ingest");
        assert_eq!(grant.topic_write, "^northvale-mh$");
    }

    #[test]
    fn the_password_hash_is_rabbitmq_s_salted_sha256() {
        // Computed apart: base64(salt + sha256(salt + "concordat")).
        assert_eq!(password_hash("concordat", [1, 2, 3, 4]), "AQIDBAI9S+rLAGQlSupIglDl5b8t6+0lUmULhfAeHNYFAte8");
    }

    #[test]
    fn passwords_are_long_fresh_and_plain() {
        let first = new_password().unwrap();
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|byte| byte.is_ascii_alphanumeric()), "{first}");
        assert_ne!(first, new_password().unwrap());
    }

    #[test]
    fn the_agency_url_keeps_the_broker_and_replaces_the_credentials() {
        let check = |amqp_url: &str, expected: &str| {
            assert_eq!(agency_url(amqp_url, "agency-safe-haven", "pw").unwrap(), expected, "{amqp_url}");
        };
        check("amqp://guest:guest@127.0.0.1:5672/%2f", "amqp://agency-safe-haven:pw@127.0.0.1:5672/%2f");
        check(
            "amqps://admin:s3cr%40t@rabbit.example:5671/area?heartbeat=30",
            "amqps://agency-safe-haven:pw@rabbit.example:5671/area?heartbeat=30",
        );
        check("amqp://rabbit.example", "amqp://agency-safe-haven:pw@rabbit.example");
        check("amqp://a:b@one:5672/v,amqp://a:b@two:5672/v", "amqp://agency-safe-haven:pw@one:5672/v");
        assert_eq!(
            agency_url("amqp://h/v", "user with space", "p@ss").unwrap(),
            "amqp://user%20with%20space:p%40ss@h/v"
        );
        let error = agency_url("guest:secret@host", "u", "p").unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn the_management_api_is_found_beside_the_broker() {
        let check =
            |amqp_url: &str, expected: &str| assert_eq!(management_url_for(amqp_url).unwrap().as_str(), expected);
        check("amqp://guest:guest@127.0.0.1:5672/%2f", "http://127.0.0.1:15672/");
        check("amqps://u:p@rabbit.example:5671/area", "https://rabbit.example:15671/");
    }

    #[test]
    fn the_definitions_hold_hashes_and_every_permission() {
        let grant = grant(&topology(), "safe-haven", "agency-safe-haven");
        let definitions = definitions("area", &[(grant, "HASH".to_owned())]);
        assert_eq!(definitions["vhosts"], json!([{ "name": "area" }]));
        assert_eq!(
            definitions["users"],
            json!([{ "name": "agency-safe-haven", "password_hash": "HASH",
                     "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [] }])
        );
        assert_eq!(
            definitions["permissions"],
            json!([{ "user": "agency-safe-haven", "vhost": "area", "configure": "^$",
                     "write": r"^concordat\.ingest$", "read": r"^agency\.safe-haven\.inbox$" }])
        );
        assert_eq!(
            definitions["topic_permissions"],
            json!([{ "user": "agency-safe-haven", "vhost": "area", "exchange": "concordat.ingest",
                     "write": "^safe-haven$", "read": "^$" }])
        );
    }

    #[test]
    fn percent_decoding_reads_credentials() {
        assert_eq!(decode("s3cr%40t"), "s3cr@t");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
