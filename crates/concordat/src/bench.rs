//! `concordat bench`: the whole pipeline, measured against the broker it runs on.
//!
//! It runs the pipeline (gateway, router and relay, wired as `concordat run` wires them) in a child process
//! of its own, so that the pipeline's memory is measured apart from the benchmark's clients, on a topology of
//! its own (a unique prefix, so it can share a RabbitMQ with a running broker) and a fresh store, then:
//!
//! 1. **Throughput**: posts `episodes` synthetic multi-agency episodes over HTTP as fast as `concurrency`
//!    clients can (a police s136 incident, which is a detention and a conveyance; once those are routed, the
//!    trust's assessment outcome against the incident), reads every inbox, and divides the events accepted by
//!    the time from the first post to the last delivery.
//! 2. **Latency**: posts further episodes paced at `rate` events per second and takes each delivery's time
//!    from the start of its HTTP post to its arrival in the inbox (matched by the W3C trace id the post
//!    carries, which every hop keeps), reporting p50 and p99.
//! 3. **Baseline**: moves the same number of messages of the same size through the same number of
//!    confirmed, persistent quorum-queue hops (publish, forward with a confirm, consume) with no processing.
//!
//! It prints what it measured and, last, one machine-readable `result …` line, whose `rss_mb` is the pipeline
//! process's peak resident set. Nothing is asserted: the
//! figures are for people and for comparing runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use concordat_bus::{Outcome, OutgoingMessage, Publisher, Subscription, Topology, TraceParent, consume};
use concordat_episode::NhsNumber;
use concordat_gateway::listener::Listener;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::config::Config;
use crate::run::{Wired, wire};

/// What `concordat bench` is asked to do.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    /// The configuration file (its policy, gateway and adapters; the store is replaced unless `store_url`).
    pub config: Option<PathBuf>,
    /// Episodes in the throughput phase.
    pub episodes: usize,
    /// Events per second in the latency phase.
    pub rate: u32,
    /// Episodes in the latency phase.
    pub latency_episodes: usize,
    /// Concurrent HTTP clients in the throughput phase.
    pub concurrency: usize,
    /// A store to use instead of a fresh SQLite file (say, a fresh PostgreSQL database).
    pub store_url: Option<String>,
}

const POLICE: &str = "northvale-police";
const TRUST: &str = "northvale-mh";
const INCIDENT_SYSTEM: &str = "urn:concordat:police-incident:northvale-police";
const INCIDENT: &str =
    include_str!("../../../schemas/examples/police-incident/valid/s136-public-place-police-vehicle.json");
const OUTCOME: &str = include_str!("../../../adapters/nhs-fhir/tests/fixtures/valid/outcome-no-further-action.json");

/// Runs the benchmark.
///
/// # Errors
/// [`Failure::Input`] for a bad configuration or missing development tokens, [`Failure::Service`] when
/// RabbitMQ or the store cannot be reached or the pipeline stalls.
pub fn bench(args: &BenchArgs, env: &[(String, String)]) -> Result<(), Failure> {
    let (mut config, _) = Config::load(args.config.as_deref(), env).map_err(|error| Failure::Input(error.into()))?;
    let unique = format!(
        "bench-{}-{}",
        std::process::id(),
        TraceParent::new_root().span_id().iter().fold(0u64, |a, b| a << 8 | u64::from(*b))
    );
    let scratch = std::env::temp_dir().join(&unique);
    let store = match &args.store_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", scratch.join("bench.db").display()),
    };
    config.store_url.clone_from(&store);
    let policy = Arc::new(crate::pure::load_policy(&config.policy)?);
    let agencies: Vec<String> = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
    let topology = Topology::with_prefix(unique.clone(), agencies).map_err(|error| Failure::Input(error.into()))?;
    let tokens = dev_tokens(Path::new("deploy/local/dev-tokens.env"))?;
    eprintln!("bench: queues under the prefix {unique}, store {}", concordat_store::redact_url(&store));
    let pipeline = Pipeline::start(args.config.as_deref(), &unique, &store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Service)?;
    let result = runtime.block_on(async {
        let store = crate::run::connect_store(&config.store_url).await?;
        let outcome = measure(args, &config, &topology, &unique, &pipeline.address, &store, &tokens).await;
        store.close().await;
        outcome
    });
    let pipeline_rss = pipeline.peak_rss_mb();
    pipeline.stop();
    runtime.block_on(async {
        if let Err(error) = topology.delete(&config.bus).await {
            eprintln!("bench: could not delete its queues (prefix {unique}): {error}");
        }
    });
    let _ = std::fs::remove_dir_all(&scratch);
    let report = result?;
    let store_kind = if store.starts_with("postgres") { "postgres" } else { "sqlite" };
    let pipeline_rss = pipeline_rss.unwrap_or(f64::NAN);
    eprintln!(
        "bench: peak resident set: pipeline process {pipeline_rss:.0} MB, benchmark clients {:.0} MB",
        peak_rss_mb(std::process::id()).unwrap_or(f64::NAN)
    );
    println!(
        "result events_per_s={:.0} baseline_per_s={:.0} ratio={:.2} p50_ms={:.1} p99_ms={:.1} rss_mb={:.0} store={store_kind}",
        report.events_per_s,
        report.baseline_per_s,
        report.events_per_s / report.baseline_per_s.max(f64::MIN_POSITIVE),
        report.p50.as_secs_f64() * 1000.0,
        report.p99.as_secs_f64() * 1000.0,
        pipeline_rss,
    );
    Ok(())
}

struct Report {
    events_per_s: f64,
    baseline_per_s: f64,
    p50: Duration,
    p99: Duration,
}

fn dev_tokens(path: &Path) -> Result<BTreeMap<String, String>, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| {
            format!("reading the sample area's development tokens {} (run from the repository root)", path.display())
        })
        .map_err(Failure::Input)?;
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix("CONCORDAT_DEV_TOKEN_"))
        .filter_map(|line| line.split_once('='))
        .map(|(agency, token)| (agency.to_ascii_lowercase().replace('_', "-"), token.trim().to_owned()))
        .collect())
}

/// A valid NHS number for synthetic person `index`: distinct for every index below 25 million.
fn nhs_number(index: usize) -> String {
    let base = 400_000_000 + 16 * index as u64;
    (base..base + 16)
        .map(|candidate| candidate.to_string())
        .find_map(|digits| {
            (0..10).map(|check| format!("{digits}{check}")).find(|number| NhsNumber::new(number.clone()).is_ok())
        })
        .unwrap_or_else(|| "9434765919".to_owned())
}

fn incident_ref(index: usize) -> String {
    format!("NV-BENCH-{index:07}")
}

fn incident(template: &Value, index: usize) -> Vec<u8> {
    let mut incident = template.clone();
    incident["incident_number"] = json!(incident_ref(index));
    incident["person"]["nhs_number"] = json!(nhs_number(index));
    serde_json::to_vec(&incident).unwrap_or_default()
}

fn outcome(template: &Value, index: usize) -> Vec<u8> {
    fn patch(value: &mut Value, nhs: &str, incident: &str) {
        match value {
            Value::Object(map) => {
                match map.get("system").and_then(Value::as_str) {
                    Some("https://fhir.nhs.uk/Id/nhs-number") => {
                        map.insert("value".to_owned(), json!(nhs));
                    }
                    Some(system) if system.starts_with("urn:concordat:police-incident:") => {
                        map.insert("system".to_owned(), json!(INCIDENT_SYSTEM));
                        map.insert("value".to_owned(), json!(incident));
                    }
                    // The trust's own encounter id correlates too: each episode needs its own.
                    Some(system) if system.ends_with("/Id/encounter") => {
                        map.insert("value".to_owned(), json!(format!("ENC-{incident}")));
                    }
                    _ => {}
                }
                map.values_mut().for_each(|inner| patch(inner, nhs, incident));
            }
            Value::Array(items) => items.iter_mut().for_each(|inner| patch(inner, nhs, incident)),
            _ => {}
        }
    }
    let mut bundle = template.clone();
    patch(&mut bundle, &nhs_number(index), &incident_ref(index));
    serde_json::to_vec(&bundle).unwrap_or_default()
}

/// Arrival times of inbox messages, by the trace id their post started.
#[derive(Default)]
struct Arrivals {
    by_trace: HashMap<[u8; 16], Vec<Instant>>,
    count: usize,
    last: Option<Instant>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    tokens: BTreeMap<String, String>,
    started: Mutex<HashMap<[u8; 16], Instant>>,
    /// When each post was answered `202`: after the gateway's publish was confirmed.
    answered: Mutex<HashMap<[u8; 16], Instant>>,
}

impl Client {
    /// Posts one payload with a fresh trace id; returns how many events were accepted.
    async fn post(&self, agency: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<usize> {
        let trace = TraceParent::new_root();
        let token = self.tokens.get(agency).ok_or_else(|| anyhow!("no development token for {agency}"))?;
        let started = Instant::now();
        self.started.lock().await.insert(trace.trace_id(), started);
        let response = self
            .http
            .post(format!("{}/v1/agencies/{agency}/events", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .header("traceparent", trace.to_string())
            .body(body)
            .send()
            .await?;
        let status = response.status();
        self.answered.lock().await.insert(trace.trace_id(), Instant::now());
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.as_u16() == 202, "{agency}'s post was answered {status}: {answer}");
        Ok(answer["accepted"].as_array().map_or(0, Vec::len))
    }
}

async fn measure(
    args: &BenchArgs,
    config: &Config,
    topology: &Topology,
    unique: &str,
    address: &str,
    store: &concordat_store::Store,
    tokens: &BTreeMap<String, String>,
) -> Result<Report, Failure> {
    let shutdown = CancellationToken::new();
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let (sender, mut received) = mpsc::unbounded_channel::<(Option<[u8; 16]>, Instant)>();
    for agency in topology.agencies() {
        let subscription = Subscription::inbox(topology.clone(), agency, format!("bench-inbox-{agency}"))
            .map_err(|error| Failure::Input(error.into()))?;
        let sender = sender.clone();
        tokio::spawn(consume(config.bus.clone(), subscription, shutdown.clone(), move |message| {
            let trace = message.traceparent().and_then(Result::ok).map(|parent| parent.trace_id());
            let _ = sender.send((trace, Instant::now()));
            async { Outcome::Ack }
        }));
    }
    {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some((trace, at)) = received.recv().await {
                let mut arrivals = arrivals.lock().await;
                arrivals.count += 1;
                arrivals.last = Some(at);
                if let Some(trace) = trace {
                    arrivals.by_trace.entry(trace).or_default().push(at);
                }
            }
        });
    }

    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        base: format!("http://{address}"),
        tokens: tokens.clone(),
        started: Mutex::new(HashMap::new()),
        answered: Mutex::new(HashMap::new()),
    });
    let incident_template: Value = serde_json::from_str(INCIDENT).map_err(|error| Failure::Input(error.into()))?;
    let outcome_template: Value = serde_json::from_str(OUTCOME).map_err(|error| Failure::Input(error.into()))?;
    let service = |error: anyhow::Error| Failure::Service(error);

    // 1. Throughput.
    let episodes = args.episodes.max(1);
    eprintln!("bench: throughput, {episodes} episodes, {} clients", args.concurrency);
    let first = Instant::now();
    let mut events = 0;
    let mut active = Duration::ZERO;
    let mut posted_bytes = 0;
    for phase in ["incidents", "outcomes"] {
        let start = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..args.concurrency.max(1) {
            let (client, next) = (client.clone(), next.clone());
            let (incident_template, outcome_template) = (incident_template.clone(), outcome_template.clone());
            workers.spawn(async move {
                let (mut events, mut bytes) = (0, 0);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= episodes {
                        return Ok::<_, anyhow::Error>((events, bytes));
                    }
                    let (agency, content_type, body) = if phase == "incidents" {
                        (POLICE, "application/json", incident(&incident_template, index))
                    } else {
                        (TRUST, "application/fhir+json", outcome(&outcome_template, index))
                    };
                    bytes += body.len();
                    events += client.post(agency, content_type, body).await?;
                }
            });
        }
        while let Some(done) = workers.join_next().await {
            let (worker_events, worker_bytes) = done.map_err(|error| service(error.into()))?.map_err(service)?;
            events += worker_events;
            posted_bytes += worker_bytes;
        }
        let last = settle(&arrivals, store).await.map_err(service)?;
        active += last.saturating_duration_since(start);
        eprintln!("bench: {phase} done in {:.2} s", last.saturating_duration_since(start).as_secs_f64());
    }
    let events_per_s = events as f64 / active.as_secs_f64().max(1e-9);
    let delivered = arrivals.lock().await.count;
    eprintln!(
        "bench: {events} events in, {delivered} deliveries out, {:.2} s active ({:.2} s wall): {events_per_s:.0} events/s",
        active.as_secs_f64(),
        first.elapsed().as_secs_f64()
    );

    // 2. Latency at a paced rate.
    let rate = f64::from(args.rate.max(1));
    let latency_episodes = args.latency_episodes.max(1);
    eprintln!("bench: latency, {latency_episodes} episodes paced at {rate:.0} events/s");
    let traces_before: Vec<[u8; 16]> = client.started.lock().await.keys().copied().collect();
    let mut paced = tokio::time::interval(Duration::from_secs_f64(2.0 / rate));
    paced.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = tokio::task::JoinSet::new();
    for offset in 0..latency_episodes {
        paced.tick().await;
        let (client, body) = (client.clone(), incident(&incident_template, episodes + offset));
        pending.spawn(async move { client.post(POLICE, "application/json", body).await });
    }
    while let Some(done) = pending.join_next().await {
        done.map_err(|error| service(error.into()))?.map_err(service)?;
    }
    settle(&arrivals, store).await.map_err(service)?;
    let (latencies, mut ingest, mut onward) = {
        let started = client.started.lock().await;
        let answered = client.answered.lock().await;
        let arrivals = arrivals.lock().await;
        let timed: Vec<(&[u8; 16], &Instant)> =
            started.iter().filter(|(trace, _)| !traces_before.contains(trace)).collect();
        let mut latencies: Vec<Duration> = timed
            .iter()
            .flat_map(|(trace, start)| {
                arrivals.by_trace.get(*trace).into_iter().flatten().map(|at| at.saturating_duration_since(**start))
            })
            .collect();
        latencies.sort_unstable();
        // Where the time went: the post until its `202` (the gateway, and RabbitMQ's confirm of the
        // publish), then the `202` until each delivery (the router, the relay and the inbox).
        let ingest: Vec<Duration> = timed
            .iter()
            .filter_map(|(trace, start)| answered.get(*trace).map(|at| at.saturating_duration_since(**start)))
            .collect();
        let onward: Vec<Duration> = timed
            .iter()
            .filter_map(|(trace, _)| answered.get(*trace).map(|answered| (trace, answered)))
            .flat_map(|(trace, answered)| {
                arrivals.by_trace.get(*trace).into_iter().flatten().map(|at| at.saturating_duration_since(*answered))
            })
            .collect();
        (latencies, ingest, onward)
    };
    ingest.sort_unstable();
    onward.sort_unstable();
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    eprintln!(
        "bench: post to 202: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; 202 to inbox: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&ingest, 0.50)),
        ms(percentile(&ingest, 0.99)),
        ms(ingest.last().copied().unwrap_or_default()),
        ms(percentile(&onward, 0.50)),
        ms(percentile(&onward, 0.99)),
        ms(onward.last().copied().unwrap_or_default()),
    );
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    eprintln!(
        "bench: {} deliveries timed: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    shutdown.cancel();

    // 3. The raw RabbitMQ baseline: as many messages, of the posts' mean size, over two confirmed hops.
    let size = posted_bytes / (2 * episodes).max(1);
    let baseline_per_s = baseline(config, &format!("{unique}-raw"), events, size, args.concurrency).await?;
    eprintln!(
        "bench: raw RabbitMQ, {events} messages of {size} bytes over two quorum hops: {baseline_per_s:.0} messages/s"
    );
    Ok(Report { events_per_s, baseline_per_s, p50, p99 })
}

/// Waits until every inbox has been quiet for a second with nothing left in the outbox; returns when the
/// last delivery arrived.
async fn settle(arrivals: &Mutex<Arrivals>, store: &concordat_store::Store) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let last = arrivals.lock().await.last;
        let quiet = last.is_some_and(|last| last.elapsed() > Duration::from_secs(1));
        if quiet && store.pending_outbox(1).await?.is_empty() {
            return last.ok_or_else(|| anyhow!("nothing was delivered"));
        }
        anyhow::ensure!(Instant::now() < deadline, "the pipeline did not settle within 300 s");
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Publishes `count` messages of `size` bytes to a first quorum queue with confirms, forwards each to a
/// second with a confirm before acking it, consumes the second; returns messages per second end to end.
async fn baseline(
    config: &Config,
    prefix: &str,
    count: usize,
    size: usize,
    concurrency: usize,
) -> Result<f64, Failure> {
    let hops = vec!["hop-1".to_owned(), "hop-2".to_owned()];
    let topology = Topology::with_prefix(prefix, hops).map_err(|error| Failure::Input(error.into()))?;
    topology.declare(&config.bus).await.map_err(|error| Failure::Service(error.into()))?;
    let publisher =
        Arc::new(Publisher::connect(&config.bus, "bench-raw").await.map_err(|error| Failure::Service(error.into()))?);
    let shutdown = CancellationToken::new();
    let exchange = topology.deliver_exchange();
    let message_exchange = exchange.clone();
    let message = move |index: usize, hop: &str| OutgoingMessage {
        exchange: message_exchange.clone(),
        routing_key: hop.to_owned(),
        message_id: format!("raw-{index}"),
        content_type: "application/octet-stream".to_owned(),
        body: vec![b'x'; size],
        headers: BTreeMap::new(),
        traceparent: TraceParent::new_root(),
    };
    let forward = {
        let (publisher, exchange) = (publisher.clone(), exchange.clone());
        move |incoming: concordat_bus::IncomingMessage| {
            let publisher = publisher.clone();
            let outgoing = OutgoingMessage {
                exchange: exchange.clone(),
                routing_key: "hop-2".to_owned(),
                message_id: incoming.message_id().unwrap_or_default().to_owned(),
                content_type: "application/octet-stream".to_owned(),
                body: incoming.body().to_vec(),
                headers: BTreeMap::new(),
                traceparent: TraceParent::new_root(),
            };
            async move {
                match publisher.publish(&outgoing).await {
                    Ok(()) => Outcome::Ack,
                    Err(error) => Outcome::Retry { reason: error.to_string() },
                }
            }
        }
    };
    let hop_one = Subscription::inbox(topology.clone(), "hop-1", "bench-raw-forward")
        .map_err(|error| Failure::Input(error.into()))?;
    tokio::spawn(consume(config.bus.clone(), hop_one, shutdown.clone(), forward));
    let (done_sender, mut done) = mpsc::unbounded_channel();
    let hop_two = Subscription::inbox(topology.clone(), "hop-2", "bench-raw-sink")
        .map_err(|error| Failure::Input(error.into()))?;
    tokio::spawn(consume(config.bus.clone(), hop_two, shutdown.clone(), move |_| {
        let _ = done_sender.send(Instant::now());
        async { Outcome::Ack }
    }));

    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (publisher, next, message) = (publisher.clone(), next.clone(), message.clone());
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return Ok::<_, concordat_bus::PublishError>(());
                }
                publisher.publish(&message(index, "hop-1")).await?;
            }
        });
    }
    while let Some(finished) = workers.join_next().await {
        finished.map_err(|error| Failure::Service(error.into()))?.map_err(|error| Failure::Service(error.into()))?;
    }
    let mut last = start;
    for _ in 0..count {
        match tokio::time::timeout(Duration::from_secs(60), done.recv()).await {
            Ok(Some(at)) => last = at,
            _ => return Err(Failure::Service(anyhow!("the raw baseline stalled"))),
        }
    }
    shutdown.cancel();
    publisher.close().await;
    if let Err(error) = topology.delete(&config.bus).await {
        eprintln!("bench: could not delete the baseline's queues (prefix {prefix}): {error}");
    }
    Ok(count as f64 / last.saturating_duration_since(start).as_secs_f64().max(1e-9))
}

/// A process's peak resident set (`VmHWM`), in MB, where the system reports it.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kilobytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes / 1024.0)
}

/// The pipeline under test, in a child process (`concordat bench-pipeline`).
struct Pipeline {
    child: std::process::Child,
    address: String,
}

impl Pipeline {
    /// Starts the child and waits until it serves ingest; it prints its address when it does.
    fn start(config: Option<&Path>, prefix: &str, store_url: &str) -> Result<Self, Failure> {
        use std::io::BufRead as _;
        let exe = std::env::current_exe().context("finding the concordat binary").map_err(Failure::Service)?;
        let mut command = std::process::Command::new(exe);
        command.arg("bench-pipeline").arg("--prefix").arg(prefix).arg("--store-url").arg(store_url);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting the pipeline process")
            .map_err(Failure::Service)?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        }
        match line.trim().strip_prefix("listening ") {
            Some(address) => Ok(Self { address: address.to_owned(), child }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(Failure::Service(anyhow!("the pipeline process did not start (its error is above)")))
            }
        }
    }

    fn peak_rss_mb(&self) -> Option<f64> {
        peak_rss_mb(self.child.id())
    }

    /// Closes the child's standard input, which shuts it down, and waits for it (killing it after 20 s).
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `concordat bench-pipeline`: the pipeline half of the benchmark. Wires gateway, router and relay as
/// `concordat run` does, on the topology under `prefix` and the store at `store_url`, serves ingest on a free
/// local port, prints `listening ADDRESS` on standard output, and runs until its standard input closes.
///
/// # Errors
/// As `concordat run`.
pub fn pipeline(
    config_file: Option<&Path>,
    prefix: &str,
    store_url: &str,
    env: &[(String, String)],
) -> Result<(), Failure> {
    let (mut config, _) = Config::load(config_file, env).map_err(|error| Failure::Input(error.into()))?;
    config.store_url = store_url.to_owned();
    // The bench offers far more than an area's agencies send: their rate limits would measure themselves.
    config.gateway.rate_limit_per_minute = u32::MAX;
    config.gateway.rate_limit_burst = u32::MAX;
    let policy = Arc::new(crate::pure::load_policy(&config.policy)?);
    let agencies: Vec<String> = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
    let topology = Topology::with_prefix(prefix, agencies).map_err(|error| Failure::Input(error.into()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Service)?;
    runtime.block_on(async {
        let Wired { mut router, gateway, store, publisher } = wire(&config, policy, &topology, env).await?;
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the bench's ingest port")
            .map_err(Failure::Service)?;
        let address = listener.local_addr().context("the bench's ingest port").map_err(Failure::Service)?;
        // Served as `concordat run` serves it, with the configured `[listeners]` limits.
        let listener = Listener { tcp: listener, tls: None, limits: config.listeners, name: "ingest" };
        let serving = tokio::spawn(concordat_gateway::listener::serve(listener, gateway.router(), shutdown.clone()));
        let relay = tokio::spawn(concordat_router::run_relay(
            store.clone(),
            publisher.clone(),
            Some(router.hand_to_relay()),
            shutdown.clone(),
        ));
        let routing = tokio::spawn(concordat_router::run_router(router, config.bus.clone(), shutdown.clone()));
        println!("listening {address}");
        // Standard input closing (the benchmark finished, or died) is the signal to stop.
        let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
        shutdown.cancel();
        let _ = tokio::join!(serving, relay, routing);
        publisher.close().await;
        store.close().await;
        Ok(())
    })
}
