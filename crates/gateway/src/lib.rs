//! Concordat's ingest gateway: where agencies' native payloads come in, over HTTP
//! (`POST /v1/agencies/{agency}/events`) or AMQP (`concordat.ingest`), and leave as validated canonical events
//! on `concordat.events`, confirmed by RabbitMQ.
//!
//! - [`GatewayConfig`] is the `[gateway]` configuration section: limits, rate limits, and each agency's token
//!   and client-certificate digests.
//! - [`Gateway::new`] checks it against the sharing policy; [`Gateway::router`] is the axum router the binary
//!   serves on `listen`; [`consume_amqp_ingest`] runs the AMQP path until shutdown.
//! - [`listener`] serves a router on a TCP listener, over HTTPS when configured, with the connection limits of
//!   `[listeners]`; every HTTP listener of the binary (ingest, admin) uses it.
//! - Refusals are RFC 9457 problems (`urn:concordat:problem:*`), or FHIR `OperationOutcome`s for FHIR clients.
//!
//! **Architecture invariant:** a `202` (or an AMQP ack) is given only after RabbitMQ confirmed every event of
//! the payload (DESIGN.md §7, invariant 1). The gateway translates with the adapters and validates, but holds
//! no state: it neither deduplicates nor correlates (the router does), reads no policy file and serves no
//! admin API. It never logs payloads or anything from them but event ids and kinds.
//!
//! Wiring it up, as the binary does:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use concordat_bus::{BusConfig, Publisher, Topology};
//! use concordat_formats::AdapterConfigs;
//! use concordat_gateway::listener::{self, Listener, ListenerConfig};
//! use concordat_gateway::{Gateway, GatewayConfig, consume_amqp_ingest};
//! use concordat_policy::Policy;
//! use tokio_util::sync::CancellationToken;
//!
//! async fn serve(
//!     config: GatewayConfig,
//!     adapters: AdapterConfigs,
//!     policy: &Policy,
//!     bus: BusConfig,
//!     shutdown: CancellationToken,
//! ) -> Result<(), Box<dyn std::error::Error>> {
//!     let topology = Topology::new(policy.agencies().iter().map(|agency| agency.id.to_string()).collect())?;
//!     topology.declare(&bus).await?;
//!     let publisher = Arc::new(Publisher::connect(&bus, "concordat-gateway").await?);
//!     let gateway = Gateway::new(config, policy, adapters, publisher, topology)?;
//!     let amqp = tokio::spawn(consume_amqp_ingest(gateway.clone(), bus, shutdown.clone()));
//!     let tcp = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     // Plain HTTP here; `listener::TlsIdentity::acceptor` gives the `tls` of an HTTPS listener.
//!     let listener = Listener { tcp, tls: None, limits: ListenerConfig::default(), name: "ingest" };
//!     listener::serve(listener, gateway.router(), shutdown.clone()).await;
//!     shutdown.cancel();
//!     amqp.await??;
//!     Ok(())
//! }
//! ```

mod amqp;
mod auth;
mod certificates;
mod config;
mod gateway;
mod http;
mod ingest;
pub mod listener;
mod problem;
mod rate;

pub use amqp::{AmqpIngestConfig, CONNECTION_NAME, IdentityRefusal, check_sender, consume_amqp_ingest};
pub use auth::{BearerError, bearer_token, secret_matches};
pub use config::{AgencyAccess, GatewayConfig};
pub use gateway::{Gateway, GatewayError};
pub use http::EVENTS_ROUTE;
pub use ingest::{EPISODE_HEADER, KIND_HEADER, Refusal, Submission, Translated, translate};
pub use problem::{FHIR_JSON, PROBLEM_JSON, Problem, ProblemKind, RETRY_AFTER_SECONDS, Representation, media_type};
