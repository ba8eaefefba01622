//! The messages the bus moves: what a caller publishes ([`OutgoingMessage`]) and what a handler receives
//! ([`IncomingMessage`]), with their AMQP properties and headers.
//!
//! Bodies are opaque bytes: this module never parses, logs or prints them (`Debug` shows their length
//! only). It knows nothing of canonical events or native formats.

use std::collections::BTreeMap;
use std::fmt;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::trace_context::{TRACEPARENT_HEADER, TraceParent};

/// Header naming why a message was dead-lettered, set on the copy in `concordat.dead.{stage}`.
pub const ERROR_HEADER: &str = "x-concordat-error";
/// Header naming the stage (`ingest`, `router`, `deliver`) that dead-lettered a message.
pub const STAGE_HEADER: &str = "x-concordat-stage";
/// Header holding the exchange a dead-lettered message was first published to.
pub const ORIGINAL_EXCHANGE_HEADER: &str = "x-concordat-original-exchange";
/// Header holding the routing key a dead-lettered message was first published with.
pub const ORIGINAL_ROUTING_KEY_HEADER: &str = "x-concordat-original-routing-key";
/// Header holding how many times a dead-lettered message had been delivered.
pub const DELIVERY_COUNT_HEADER: &str = "x-concordat-delivery-count";
/// Header holding when a message was dead-lettered, as an AMQP timestamp (seconds since the Unix epoch).
pub const DEAD_LETTERED_AT_HEADER: &str = "x-concordat-dead-lettered-at";
/// Header holding the `user_id` property a dead-lettered message carried: the copy cannot keep the property
/// itself, since RabbitMQ refuses a publish whose `user_id` is not the publishing connection's user.
pub const ORIGINAL_USER_ID_HEADER: &str = "x-concordat-original-user-id";
/// Header set by quorum queues: how many earlier deliveries of the message were not acknowledged.
pub const QUORUM_DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// AMQP delivery mode 2: the broker writes the message to disk before confirming it.
const PERSISTENT: u8 = 2;

/// A message to publish. Every message is persistent and carries a `traceparent`.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The exchange, e.g. `concordat.events`.
    pub exchange: String,
    /// The routing key, e.g. `police.met.police.s136_detention`.
    pub routing_key: String,
    /// The AMQP `message-id`: deterministic, so that a republished message is recognised downstream.
    pub message_id: String,
    /// The AMQP `content-type` of the body, e.g. `application/json`.
    pub content_type: String,
    /// The payload, moved as opaque bytes.
    pub body: Vec<u8>,
    /// String headers (`concordat-kind`, `concordat-episode`, CloudEvents attributes, …), sent as an AMQP
    /// field table of long strings. A `traceparent` entry here is replaced by [`Self::traceparent`].
    pub headers: BTreeMap<String, String>,
    /// The W3C trace context, sent as the `traceparent` header.
    pub traceparent: TraceParent,
}

/// Why an [`OutgoingMessage`] cannot be put on the wire; checked before any I/O.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    /// `message_id` is empty.
    #[error("message_id must not be empty")]
    EmptyMessageId,
    /// A field that AMQP carries as a short string exceeds 255 bytes.
    #[error("{field} is longer than 255 bytes")]
    TooLong {
        /// The field: `exchange`, `routing_key`, `message_id`, `content_type` or `header name`.
        field: &'static str,
    },
}

/// An [`OutgoingMessage`] converted to AMQP types, borrowing its body.
pub(crate) struct WireMessage<'a> {
    pub(crate) exchange: ShortString,
    pub(crate) routing_key: ShortString,
    pub(crate) message_id: String,
    pub(crate) body: &'a [u8],
    pub(crate) properties: BasicProperties,
}

fn short(value: &str, field: &'static str) -> Result<ShortString, InvalidMessage> {
    ShortString::try_new(value).map_err(|_| InvalidMessage::TooLong { field })
}

impl OutgoingMessage {
    /// Converts to AMQP types.
    pub(crate) fn to_wire(&self) -> Result<WireMessage<'_>, InvalidMessage> {
        if self.message_id.is_empty() {
            return Err(InvalidMessage::EmptyMessageId);
        }
        let mut headers = FieldTable::default();
        for (name, value) in &self.headers {
            headers.insert(short(name, "header name")?, AMQPValue::LongString(LongString::from(value.as_str())));
        }
        headers
            .insert(TRACEPARENT_HEADER.into(), AMQPValue::LongString(LongString::from(self.traceparent.to_string())));
        let properties = BasicProperties::default()
            .with_message_id(short(&self.message_id, "message_id")?)
            .with_content_type(short(&self.content_type, "content_type")?)
            .with_delivery_mode(PERSISTENT)
            .with_headers(headers);
        Ok(WireMessage {
            exchange: short(&self.exchange, "exchange")?,
            routing_key: short(&self.routing_key, "routing_key")?,
            message_id: self.message_id.clone(),
            body: &self.body,
            properties,
        })
    }
}

// Bodies may hold personal data: `Debug` shows their size only.
impl fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("message_id", &self.message_id)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .field("headers", &self.headers)
            .field("traceparent", &self.traceparent)
            .finish()
    }
}

/// A message delivered to a handler by [`crate::consume`].
#[derive(Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    body: Vec<u8>,
    message_id: Option<String>,
    content_type: Option<String>,
    user_id: Option<String>,
    headers: BTreeMap<String, String>,
    exchange: String,
    routing_key: String,
    redelivered: bool,
    delivery_count: u32,
}

impl IncomingMessage {
    pub(crate) fn new(
        body: Vec<u8>,
        properties: &BasicProperties,
        exchange: &str,
        routing_key: &str,
        redelivered: bool,
    ) -> Self {
        let table = properties.headers().as_ref();
        let headers = table.map(string_headers).unwrap_or_default();
        // Quorum queues count earlier deliveries that were not acknowledged; this one is the next.
        let previous = table
            .and_then(|table| table.inner().get(QUORUM_DELIVERY_COUNT_HEADER))
            .and_then(integer)
            .and_then(|count| u32::try_from(count).ok())
            .unwrap_or(0);
        Self {
            body,
            message_id: properties.message_id().as_ref().map(|id| id.as_str().to_owned()),
            content_type: properties.content_type().as_ref().map(|value| value.as_str().to_owned()),
            user_id: properties.user_id().as_ref().map(|value| value.as_str().to_owned()),
            headers,
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            redelivered,
            delivery_count: previous.saturating_add(1),
        }
    }

    /// The payload.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The AMQP `message-id`, if the publisher set one (Concordat's publishers always do).
    #[must_use]
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// The AMQP `content-type`, if set.
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The AMQP `user-id`, if the publisher set one. RabbitMQ refuses a publish whose `user_id` is not the
    /// user the publishing connection authenticated as (unless that user is tagged `impersonator`), so a
    /// present value names the publisher.
    #[must_use]
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The headers whose values are strings, numbers or booleans, as strings. Arrays, tables and byte
    /// arrays (such as RabbitMQ's `x-death`) are left out.
    #[must_use]
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    /// One header, as in [`Self::headers`].
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The exchange the message was published to.
    #[must_use]
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The routing key the message was published with.
    #[must_use]
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// Whether the broker delivered this message before, to this or another consumer, without an ack.
    #[must_use]
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// How many times the message has been delivered, this delivery included: 1 the first time. Read from
    /// the quorum queue's `x-delivery-count`.
    #[must_use]
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// The `traceparent` header, if present.
    ///
    /// # Errors
    ///
    /// [`crate::TraceParentError`] when the header is present but malformed; a handler then starts a new
    /// trace with [`TraceParent::new_root`].
    pub fn traceparent(&self) -> Option<Result<TraceParent, crate::TraceParentError>> {
        self.header(TRACEPARENT_HEADER).map(TraceParent::parse)
    }
}

// Bodies may hold personal data: `Debug` shows their size only.
impl fmt::Debug for IncomingMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingMessage")
            .field("message_id", &self.message_id)
            .field("content_type", &self.content_type)
            .field("user_id", &self.user_id)
            .field("body_len", &self.body.len())
            .field("headers", &self.headers)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .finish()
    }
}

/// The entries of `table` that read naturally as strings.
fn string_headers(table: &FieldTable) -> BTreeMap<String, String> {
    table.inner().iter().filter_map(|(name, value)| Some((name.as_str().to_owned(), header_string(value)?))).collect()
}

fn header_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        AMQPValue::Boolean(flag) => Some(flag.to_string()),
        AMQPValue::Float(number) => Some(number.to_string()),
        AMQPValue::Double(number) => Some(number.to_string()),
        AMQPValue::Timestamp(seconds) => Some(seconds.to_string()),
        other => integer(other).map(|number| number.to_string()),
    }
}

pub(crate) fn integer(value: &AMQPValue) -> Option<i128> {
    match *value {
        AMQPValue::ShortShortInt(n) => Some(n.into()),
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        AMQPValue::ShortInt(n) => Some(n.into()),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::LongInt(n) => Some(n.into()),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::LongLongInt(n) => Some(n.into()),
        _ => None,
    }
}

/// The properties of the dead-letter copy of a message: the original ones with the reason, stage, original
/// route, delivery count and time (`dead_lettered_at`, seconds since the Unix epoch) added, and the quorum
/// queue's own count removed so that it restarts in the dead-letter queue. A `user_id` moves to
/// [`ORIGINAL_USER_ID_HEADER`]: Concordat publishes the copy as its own user, which RabbitMQ would refuse
/// with another user's id.
pub(crate) fn dead_letter_properties(
    original: &BasicProperties,
    reason: &str,
    stage: &str,
    exchange: &str,
    routing_key: &str,
    delivery_count: u32,
    dead_lettered_at: u64,
) -> BasicProperties {
    let mut headers: BTreeMap<ShortString, AMQPValue> =
        original.headers().as_ref().map(|table| table.inner().clone()).unwrap_or_default();
    headers.remove(QUORUM_DELIVERY_COUNT_HEADER);
    let mut text = |name: &str, value: &str| {
        headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    };
    text(ERROR_HEADER, truncate(reason, MAX_REASON_BYTES));
    text(STAGE_HEADER, stage);
    text(ORIGINAL_EXCHANGE_HEADER, exchange);
    text(ORIGINAL_ROUTING_KEY_HEADER, routing_key);
    headers.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongLongInt(delivery_count.into()));
    headers.insert(DEAD_LETTERED_AT_HEADER.into(), AMQPValue::Timestamp(dead_lettered_at));
    if let Some(user_id) = original.user_id() {
        headers.insert(ORIGINAL_USER_ID_HEADER.into(), AMQPValue::LongString(LongString::from(user_id.as_str())));
    }
    without_user_id(original).with_delivery_mode(PERSISTENT).with_headers(FieldTable::from(headers))
}

/// `properties` without `user_id`, for a copy Concordat publishes as its own user.
pub(crate) fn without_user_id(properties: &BasicProperties) -> BasicProperties {
    if properties.user_id().is_none() {
        return properties.clone();
    }
    // lapin's properties have no way to unset one field, so the copy is built from the others.
    let mut copy = BasicProperties::default();
    let text = |value: &Option<ShortString>| value.clone();
    if let Some(value) = text(properties.content_type()) {
        copy = copy.with_content_type(value);
    }
    if let Some(value) = text(properties.content_encoding()) {
        copy = copy.with_content_encoding(value);
    }
    if let Some(value) = properties.headers().clone() {
        copy = copy.with_headers(value);
    }
    if let Some(value) = *properties.delivery_mode() {
        copy = copy.with_delivery_mode(value);
    }
    if let Some(value) = *properties.priority() {
        copy = copy.with_priority(value);
    }
    if let Some(value) = text(properties.correlation_id()) {
        copy = copy.with_correlation_id(value);
    }
    if let Some(value) = text(properties.reply_to()) {
        copy = copy.with_reply_to(value);
    }
    if let Some(value) = text(properties.expiration()) {
        copy = copy.with_expiration(value);
    }
    if let Some(value) = text(properties.message_id()) {
        copy = copy.with_message_id(value);
    }
    if let Some(value) = *properties.timestamp() {
        copy = copy.with_timestamp(value);
    }
    if let Some(value) = text(properties.kind()) {
        copy = copy.with_type(value);
    }
    if let Some(value) = text(properties.app_id()) {
        copy = copy.with_app_id(value);
    }
    if let Some(value) = text(properties.cluster_id()) {
        copy = copy.with_cluster_id(value);
    }
    copy
}

/// Reasons are for people reading the dead-letter queue; a runaway one must not outgrow a frame.
const MAX_REASON_BYTES: usize = 1024;

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> OutgoingMessage {
        OutgoingMessage {
            exchange: "concordat.events".to_owned(),
            routing_key: "police.met.police.s136_detention".to_owned(),
            message_id: "6f1c0d3e-0000-5000-8000-000000000001".to_owned(),
            content_type: "application/json".to_owned(),
            body: b"{\"secret\":\"Jane Doe\"}".to_vec(),
            headers: BTreeMap::from([("concordat-kind".to_owned(), "police.s136_detention".to_owned())]),
            traceparent: TraceParent::new_root(),
        }
    }

    #[test]
    fn debug_hides_the_body() {
        let shown = format!("{:?}", message());
        assert!(!shown.contains("Jane"), "{shown}");
        assert!(shown.contains("body_len: 21"), "{shown}");
    }

    #[test]
    fn wire_form_carries_properties_and_headers() -> Result<(), InvalidMessage> {
        let outgoing = message();
        let wire = outgoing.to_wire()?;
        assert_eq!(wire.exchange.as_str(), "concordat.events");
        assert_eq!(wire.properties.delivery_mode(), &Some(PERSISTENT));
        let incoming = IncomingMessage::new(
            wire.body.to_vec(),
            &wire.properties,
            wire.exchange.as_str(),
            wire.routing_key.as_str(),
            false,
        );
        assert_eq!(incoming.message_id(), Some(outgoing.message_id.as_str()));
        assert_eq!(incoming.content_type(), Some("application/json"));
        assert_eq!(incoming.header("concordat-kind"), Some("police.s136_detention"));
        assert_eq!(incoming.traceparent(), Some(Ok(outgoing.traceparent)));
        assert_eq!(incoming.delivery_count(), 1);
        Ok(())
    }

    #[test]
    fn rejects_what_amqp_cannot_carry() {
        let mut empty = message();
        empty.message_id.clear();
        assert_eq!(empty.to_wire().err(), Some(InvalidMessage::EmptyMessageId));
        let mut long = message();
        long.routing_key = "k".repeat(256);
        assert_eq!(long.to_wire().err(), Some(InvalidMessage::TooLong { field: "routing_key" }));
        let mut header = message();
        header.headers.insert("h".repeat(300), String::new());
        assert_eq!(header.to_wire().err(), Some(InvalidMessage::TooLong { field: "header name" }));
    }

    #[test]
    fn delivery_count_follows_the_quorum_header() {
        let mut table = FieldTable::default();
        table.insert(QUORUM_DELIVERY_COUNT_HEADER.into(), AMQPValue::LongLongInt(2));
        table.insert("x-death".into(), AMQPValue::FieldArray(Vec::new().into()));
        let properties = BasicProperties::default().with_headers(table);
        let incoming = IncomingMessage::new(Vec::new(), &properties, "e", "k", true);
        assert_eq!(incoming.delivery_count(), 3);
        assert_eq!(incoming.header(QUORUM_DELIVERY_COUNT_HEADER), Some("2"));
        assert_eq!(incoming.header("x-death"), None);
    }

    #[test]
    fn dead_letter_copy_keeps_headers_and_adds_the_reason() -> Result<(), InvalidMessage> {
        let outgoing = message();
        let mut original = outgoing.to_wire()?.properties;
        let mut table = original.headers().clone().unwrap_or_default();
        table.insert(QUORUM_DELIVERY_COUNT_HEADER.into(), AMQPValue::LongLongInt(4));
        original = original.with_headers(table);
        let reason = "é".repeat(MAX_REASON_BYTES);
        let copy = dead_letter_properties(&original, &reason, "router", "ex", "rk", 5, 1_700_000_000);
        let incoming = IncomingMessage::new(Vec::new(), &copy, "dlx", "router", false);
        assert_eq!(incoming.header("concordat-kind"), Some("police.s136_detention"));
        assert_eq!(incoming.header(STAGE_HEADER), Some("router"));
        assert_eq!(incoming.header(ORIGINAL_EXCHANGE_HEADER), Some("ex"));
        assert_eq!(incoming.header(ORIGINAL_ROUTING_KEY_HEADER), Some("rk"));
        assert_eq!(incoming.header(DELIVERY_COUNT_HEADER), Some("5"));
        assert_eq!(incoming.header(DEAD_LETTERED_AT_HEADER), Some("1700000000"));
        assert_eq!(incoming.header(QUORUM_DELIVERY_COUNT_HEADER), None);
        assert_eq!(incoming.message_id(), Some(outgoing.message_id.as_str()));
        let stored = incoming.header(ERROR_HEADER).unwrap_or_default();
        assert!(stored.len() <= MAX_REASON_BYTES && stored.starts_with('é'));
        Ok(())
    }

    #[test]
    fn the_publisher_user_id_is_read_and_moves_to_a_header_in_the_dead_letter_copy() {
        let original = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_content_type("application/json".into())
            .with_user_id("agency-safe-haven".into())
            .with_app_id("helpline".into());
        let incoming = IncomingMessage::new(Vec::new(), &original, "concordat.ingest", "safe-haven", false);
        assert_eq!(incoming.user_id(), Some("agency-safe-haven"));
        let copy = dead_letter_properties(&original, "refused", "ingest", "concordat.ingest", "safe-haven", 1, 0);
        assert_eq!(copy.user_id(), &None, "RabbitMQ refuses another user's id from Concordat's own user");
        let dead = IncomingMessage::new(Vec::new(), &copy, "concordat.dlx", "ingest", false);
        assert_eq!(dead.header(ORIGINAL_USER_ID_HEADER), Some("agency-safe-haven"));
        assert_eq!(dead.message_id(), Some("m-1"));
        assert_eq!(dead.content_type(), Some("application/json"));
        assert_eq!(copy.app_id().as_ref().map(ShortString::as_str), Some("helpline"));
        assert_eq!(copy.delivery_mode(), &Some(PERSISTENT));
    }
}
