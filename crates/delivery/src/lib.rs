//! Concordat's delivery worker: for each agency whose `[delivery.agencies.{id}] channel` is `webhook` or
//! `fhir`, it consumes the agency's inbox queue (`agency.{id}.inbox`) and pushes each message to the
//! agency's own endpoint, acking it only after the endpoint answered 2xx.
//!
//! - [`DeliveryConfig`] is the `[delivery]` configuration section; [`DeliveryConfig::validate`] checks it
//!   into [`Deliveries`] (secrets read from their files, URLs parsed).
//! - [`WebhookSecret`] signs webhook deliveries as the Standard Webhooks specification says.
//! - [`classify`] turns an endpoint's answer into an [`Answer`]: accepted, retry (and when), or refused.
//! - [`run_delivery`] runs the worker until shutdown.
//!
//! Channels `amqp` (the default) and `portal` are left alone: the agency reads its inbox itself, or the
//! agency portal holds it. This crate is not the relay (which fills the inboxes from the outbox) and
//! decides nothing about sharing: what reaches an inbox was already permitted and rendered.
//!
//! **Architecture invariant:** a message leaves an inbox only after its endpoint answered 2xx (then it is
//! recorded and acked) or refused it for good (then it is dead-lettered with the reason); while an endpoint
//! is down the worker holds the one message in hand and retries it, so the queue buffers the rest in order.

mod answer;
mod config;
mod webhook;
mod worker;

pub use answer::{Answer, classify, operation_outcome_reason, retry_after};
pub use config::{AgencyDelivery, Channel, Deliveries, DeliveryConfig, DeliveryConfigError, Endpoint, Push};
pub use webhook::{WebhookSecret, WebhookSecretError};
pub use worker::{DeliveryError, run_delivery};
