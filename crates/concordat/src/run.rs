//! `concordat run`: load the configuration and the policy, connect to RabbitMQ, declare the topology, serve
//! the gateway, route and deliver, serve the admin listener, and stop cleanly on SIGINT or SIGTERM.
//!
//! One process holds every component for a small area: the ingest gateway (HTTP on `listen`, AMQP on
//! `concordat.ingest`), the router on `concordat.router` with the store, and the relay that publishes the
//! outbox to the agencies' inboxes. Both HTTP listeners are served by `concordat_gateway::listener`: HTTPS
//! when `tls_cert` and `tls_key` are set (client certificates on the ingest listener only), and the
//! `[listeners]` limits on each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use concordat_bus::{Publisher, Topology, redact_url};
use concordat_delivery::run_delivery;
use concordat_gateway::listener::{self, Listener, TlsIdentity};
use concordat_gateway::{Gateway, consume_amqp_ingest};
use concordat_policy::Policy;
use concordat_router::{Router, run_housekeeping, run_relay, run_retention, run_router};
use concordat_store::{Store, StoreError, SubjectKeyer};
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::admin::{self, Readiness};
use crate::config::{Config, ConfigError};

/// How long start-up may wait for RabbitMQ before giving up with a clear message.
const CONNECT_DEADLINE: Duration = Duration::from_secs(8);

/// How often quiet episodes are closed and overdue feedback is looked for.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// Runs the broker, as `loaded` configures it (`Config::load`), until SIGINT or SIGTERM.
///
/// # Errors
/// [`Failure::Input`] for a bad configuration, policy or TLS files, [`Failure::Service`] when RabbitMQ
/// cannot be reached within [`CONNECT_DEADLINE`] or a listener cannot bind.
pub fn run(loaded: Result<(Config, Vec<String>), ConfigError>, env: &[(String, String)]) -> Result<(), Failure> {
    let (config, warnings) = loaded.map_err(|error| Failure::Input(error.into()))?;
    for warning in warnings {
        tracing::warn!(message = "Ignoring an environment variable.", detail = %warning);
    }
    let policy = crate::pure::load_policy(&config.policy)?;
    let agencies: Vec<String> = policy.agencies().iter().map(|agency| agency.id.to_string()).collect();
    let topology = Topology::new(agencies).map_err(|error| Failure::Input(error.into()))?;
    // Read before any service is contacted, so that bad TLS files fail the start at once (exit 1).
    let tls = TlsIdentity::from_config(config.tls_cert.as_deref(), config.tls_key.as_deref())
        .map_err(|error| Failure::Input(error.into()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Service)?;
    runtime.block_on(serve(config, policy, topology, tls, env))
}

/// The pipeline's parts, connected and ready to run: what `run` serves and what `bench` drives.
pub struct Wired {
    /// The router, on `concordat.router`.
    pub router: Router,
    /// The ingest gateway.
    pub gateway: Gateway,
    /// The store, migrated.
    pub store: Store,
    /// The confirmed publisher the gateway and the relay share.
    pub publisher: Arc<Publisher>,
}

/// Declares `topology`, connects the publisher and the store, and builds the router and the gateway.
///
/// # Errors
/// [`Failure::Service`] when RabbitMQ or the database cannot be reached, [`Failure::Input`] for a
/// configuration they refuse.
pub async fn wire(
    config: &Config,
    policy: Arc<Policy>,
    topology: &Topology,
    env: &[(String, String)],
) -> Result<Wired, Failure> {
    let url = redact_url(&config.amqp_url);
    let declared = tokio::time::timeout(CONNECT_DEADLINE, topology.declare(&config.bus)).await;
    match declared {
        Ok(Ok(())) => {}
        Ok(Err(error)) if error.is_permanent() => return Err(Failure::Input(error.into())),
        Ok(Err(error)) => return Err(Failure::Service(unreachable_broker(&url, &error.to_string()))),
        Err(_) => return Err(Failure::Service(unreachable_broker(&url, "no answer within 8 seconds"))),
    }
    tracing::info!(message = "Declared the RabbitMQ topology.", agencies = topology.agencies().len());
    let publisher = Arc::new(
        Publisher::connect(&config.bus, "concordat")
            .await
            .map_err(|error| Failure::Service(unreachable_broker(&url, &error.to_string())))?,
    );
    let store = connect_store(&config.store_url).await?;
    let (secret, development) = config.subject_key(env).map_err(|error| Failure::Input(error.into()))?;
    if development {
        tracing::warn!(
            message = "No subject key is configured (CONCORDAT_SUBJECT_KEY or subject_key_file): using the development key, which must never be used with real data."
        );
    }
    let keyer = SubjectKeyer::new(&secret).map_err(|error| Failure::Input(anyhow!("the subject key: {error}")))?;
    let formats =
        config.gateway.agencies.iter().filter_map(|(id, access)| Some((id.clone(), access.format?))).collect();
    let router = Router::new(
        policy.clone(),
        &formats,
        store.clone(),
        keyer,
        topology.clone(),
        Duration::from_secs(config.feedback_due_hours.saturating_mul(3600)),
    );
    let gateway =
        Gateway::new(config.gateway.clone(), &policy, config.adapters.clone(), publisher.clone(), topology.clone())
            .map_err(|error| Failure::Input(error.into()))?;
    Ok(Wired { router, gateway, store, publisher })
}

async fn serve(
    config: Config,
    policy: Policy,
    topology: Topology,
    tls: Option<TlsIdentity>,
    env: &[(String, String)],
) -> Result<(), Failure> {
    let policy = Arc::new(policy);
    let Wired { mut router, gateway, store, publisher } = wire(&config, policy.clone(), &topology, env).await?;

    let readiness = Arc::new(Readiness::default());
    readiness.broker.store(true, Ordering::Release);
    let (admin, ingest) = listeners(&config, tls.as_ref(), &gateway).await?;
    tracing::info!(message = "Listening.", ingest = %config.listen, admin = %config.admin_listen, https = tls.is_some());

    let shutdown = CancellationToken::new();
    let delivery = start_delivery(&config, &topology, &store, shutdown.clone())?;
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let amqp_ingest = tokio::spawn(consume_amqp_ingest(gateway.clone(), config.bus.clone(), shutdown.clone()));
    let relay = tokio::spawn(run_relay(store.clone(), publisher, Some(router.hand_to_relay()), shutdown.clone()));
    let routing = tokio::spawn(run_router(router, config.bus.clone(), shutdown.clone()));
    let retention = tokio::spawn(run_retention(
        store.clone(),
        config.bus.clone(),
        topology.clone(),
        config.retention,
        shutdown.clone(),
    ));
    let depths = tokio::spawn(watch_queue_depths(config.bus.clone(), topology.clone(), shutdown.clone()));
    let housekeeping = tokio::spawn(run_housekeeping(
        store.clone(),
        Duration::from_secs(config.episode_quiet_hours.saturating_mul(3600)),
        HOUSEKEEPING_EVERY,
        shutdown.clone(),
    ));
    let token = config.admin_token(env).map_err(|error| Failure::Input(error.into()))?;
    if token.is_none() {
        tracing::warn!(
            message = "No admin token is configured (CONCORDAT_ADMIN_TOKEN or admin_token_file): the admin API under /v1/admin is off."
        );
    }
    let api = crate::admin_api::AdminApi {
        token: token.map(Arc::from),
        store: store.clone(),
        bus: config.bus.clone(),
        topology: topology.clone(),
        policy,
        hosts: config.admin_hosts.clone().into(),
    };
    let admin = listener::serve(admin, admin::router(readiness, Some(api)), shutdown.clone());
    let ingest = listener::serve(ingest, gateway.router(), shutdown.clone());
    tokio::join!(admin, ingest);
    shutdown.cancel();
    for (what, consumer) in [("the AMQP ingest consumer", amqp_ingest), ("the router", routing)] {
        match consumer.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(Failure::Service(error.into())),
            Err(error) => return Err(Failure::Service(anyhow!("{what} failed: {error}"))),
        }
    }
    relay.await.map_err(|error| Failure::Service(anyhow!("the outbox relay failed: {error}")))?;
    delivery.await.map_err(|error| Failure::Service(anyhow!("the delivery worker failed: {error}")))??;
    housekeeping.await.map_err(|error| Failure::Service(anyhow!("episode housekeeping failed: {error}")))?;
    retention.await.map_err(|error| Failure::Service(anyhow!("retention failed: {error}")))?;
    depths.await.map_err(|error| Failure::Service(anyhow!("reading queue depths failed: {error}")))?;
    store.close().await;
    tracing::info!(message = "Stopped.");
    Ok(())
}

/// The delivery role: checks `[delivery]` against the policy's agencies (reading each webhook's secret file)
/// and spawns the worker that pushes the inboxes of `webhook` and `fhir` agencies until `shutdown`. A
/// `delivery` role would start this alone; `amqp` and `portal` agencies' inboxes are left to them.
///
/// # Errors
/// [`Failure::Input`] for a `[delivery]` section that cannot be used.
fn start_delivery(
    config: &Config,
    topology: &Topology,
    store: &Store,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<(), Failure>>, Failure> {
    let deliveries = config.delivery.validate(topology.agencies()).map_err(|error| Failure::Input(error.into()))?;
    let worker = run_delivery(deliveries, config.bus.clone(), topology.clone(), store.clone(), shutdown);
    Ok(tokio::spawn(async move { worker.await.map_err(|error| Failure::Service(error.into())) }))
}

/// Opens the store (running its migrations), waiting at most [`CONNECT_DEADLINE`].
///
/// # Errors
/// [`Failure::Service`] when the database cannot be reached in time, [`Failure::Input`] for a bad URL or a
/// failed migration.
pub async fn connect_store(url: &str) -> Result<Store, Failure> {
    tokio::time::timeout(CONNECT_DEADLINE, Store::connect(url))
        .await
        .map_err(|_| {
            Failure::Service(anyhow!(
                "the store at {} did not answer within 8 seconds",
                concordat_store::redact_url(url)
            ))
        })?
        .map_err(|error| match error {
            StoreError::Unreachable { .. } => Failure::Service(error.into()),
            other => Failure::Input(other.into()),
        })
}

/// Binds the admin and ingest listeners, each with its TLS acceptor when `tls` is given: the ingest
/// listener asks for the agencies' pinned client certificates, the admin listener for none.
async fn listeners(
    config: &Config,
    tls: Option<&TlsIdentity>,
    gateway: &Gateway,
) -> Result<(Listener, Listener), Failure> {
    let acceptor =
        |pins| tls.map(|identity| identity.acceptor(pins)).transpose().map_err(|error| Failure::Input(error.into()));
    let pins = gateway.client_certificates();
    let admin = Listener {
        tcp: bind(config.admin_listen, "the admin listener").await?,
        tls: acceptor(None)?,
        limits: config.listeners,
        name: "admin",
    };
    let ingest = Listener {
        tcp: bind(config.listen, "the ingest listener").await?,
        tls: acceptor(Some(&pins))?,
        limits: config.listeners,
        name: "ingest",
    };
    Ok((admin, ingest))
}

async fn bind(address: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {what} to {address}"))
        .map_err(Failure::Service)
}

fn unreachable_broker(url: &str, reason: &str) -> anyhow::Error {
    anyhow!(
        "cannot reach RabbitMQ at {url}: {reason}. Start it with `deploy/local/services.sh` (or `rabbitmq-server -detached`), or point CONCORDAT_AMQP_URL at a running broker"
    )
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(message = "Cannot listen for SIGTERM.", %error);
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        () = terminate => {},
    }
    tracing::info!(message = "Shutting down.");
    shutdown.cancel();
}

/// How often the queues' depths are read for `/metrics`.
const QUEUE_DEPTHS_EVERY: Duration = Duration::from_secs(15);

/// Reads the depth of every queue of the topology into the `concordat_queue_messages` and
/// `concordat_queue_consumers` gauges until `shutdown` fires. A queue that does not exist is left out; a
/// failed reading is logged and tried again next time.
async fn watch_queue_depths(bus: concordat_bus::BusConfig, topology: Topology, shutdown: CancellationToken) {
    loop {
        match concordat_bus::queue_depths(&bus, &topology).await {
            Ok(depths) => {
                for depth in depths {
                    if let (Some(messages), Some(consumers)) = (depth.messages, depth.consumers) {
                        let queue = [("queue", depth.queue.as_str())];
                        concordat_telemetry::set("concordat_queue_messages", &queue, f64::from(messages));
                        concordat_telemetry::set("concordat_queue_consumers", &queue, f64::from(consumers));
                    }
                }
            }
            Err(error) => tracing::warn!(message = "Reading queue depths failed; trying again later.", %error),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(QUEUE_DEPTHS_EVERY) => {}
        }
    }
}
