//! Concordat's RabbitMQ layer: the topology, a confirmed publisher, an acking consumer with retry and
//! dead-lettering, reconnection, and W3C trace context in headers.
//!
//! **Architecture invariant:** this crate moves bytes and headers. It knows nothing of canonical events,
//! native formats, SQL or HTTP; what a body means is the caller's business, and bodies never reach a log.
//!
//! - [`Topology`] names the exchanges and queues of DESIGN.md §5 and declares them idempotently.
//! - [`Publisher`] publishes with `mandatory` and publisher confirms: `Ok` means RabbitMQ took the
//!   message; nacks, returns, timeouts and lost connections are errors.
//! - [`consume`] feeds a handler with bounded prefetch and settles each message by its [`Outcome`]: ack,
//!   requeue, or dead-letter with the reason in `x-concordat-error`. It owns its reconnect loop.
//! - [`list_dead_letters`] and [`retry_dead_letters`] show what the dead-letter queues hold, by metadata only, and republish dead
//!   letters to their original route, one by id ([`DeadLetterId`]) or by [`Filter`].
//! - [`TraceParent`] parses, creates and derives `traceparent` values.
//! - [`BusConfig`] is the configuration section; [`redact_url`] keeps passwords out of messages.

mod backoff;
mod config;
mod connection;
mod consumer;
mod dead_letters;
mod depths;
mod message;
mod publisher;
mod random;
mod topology;
mod trace_context;

pub use backoff::{Backoff, InvalidBackoff, jittered};
pub use config::{BusConfig, ConfigError, redact_url};
pub use consumer::{ConsumeError, Outcome, consume, consume_batches};
pub use dead_letters::{
    DeadLetter, DeadLetterError, DeadLetterId, Filter, NotRetried, REFRESH_AT, RetryReport, Selector,
    expire_dead_letters, list_dead_letters, retry_dead_letters,
};
pub use depths::{QueueDepth, count_dead_letters, queue_depths};
pub use message::{
    DEAD_LETTERED_AT_HEADER, DELIVERY_COUNT_HEADER, ERROR_HEADER, IncomingMessage, InvalidMessage,
    ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER, ORIGINAL_USER_ID_HEADER, OutgoingMessage,
    QUORUM_DELIVERY_COUNT_HEADER, STAGE_HEADER,
};
pub use publisher::{PublishError, Publisher};
pub use topology::{Stage, Subscription, Topology, TopologyError};
pub use trace_context::{TRACEPARENT_HEADER, TraceParent, TraceParentError};
