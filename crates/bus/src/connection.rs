//! Opening AMQP connections that RabbitMQ can tell apart.
//!
//! Every connection carries a `connection_name` client property, shown by the management UI and
//! `rabbitmqctl list_connections name client_properties`, so an operator (or a test) can find and close
//! one. lapin's own connection recovery stays off: [`crate::consume`] and [`crate::Publisher`] own their
//! reconnection, which lets them redeclare the topology and report failures to their callers.

use std::time::Duration;

use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};

/// How long opening a connection may take before the attempt counts as failed. A broker that accepts TCP
/// but never answers the handshake must not stall a reconnect loop.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens a connection named `connection_name`.
pub(crate) async fn open(url: &str, connection_name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(LongString::from(connection_name));
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties)).await {
        Ok(connected) => connected,
        Err(_elapsed) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the AMQP handshake did not complete in time",
        ))),
    }
}
