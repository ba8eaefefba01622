//! Opening AMQP connections that RabbitMQ can tell apart, over TCP (`amqp://`) or TLS (`amqps://`).
//!
//! Every connection carries a `connection_name` client property, shown by the management UI and
//! `rabbitmqctl list_connections name client_properties`, so an operator (or a test) can find and close
//! one. lapin's own connection recovery stays off: [`crate::consume`] and [`crate::Publisher`] own their
//! reconnection, which lets them redeclare the topology and report failures to their callers.
//!
//! An `amqps://` URL is verified against the system's trust store and, when `amqp_ca_file` is set, the
//! certificates of that PEM file too (a private CA). This module does not present client certificates.

use std::path::Path;
use std::time::Duration;

use lapin::tcp::OwnedTLSConfig;
use lapin::types::LongString;
use lapin::{Connect as _, Connection, ConnectionProperties};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::config::{BusConfig, ConfigError};

/// How long opening a connection may take before the attempt counts as failed. A broker that accepts TCP
/// but never answers the handshake must not stall a reconnect loop.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens a connection to `config`'s broker named `connection_name`, trusting `config`'s CA file if any.
pub(crate) async fn open(config: &BusConfig, connection_name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(LongString::from(connection_name));
    // The file is read again on each connection, so a CA renewed on disk is picked up by the next reconnect.
    let tls = tls_config(config).map_err(|error| lapin::Error::from(std::io::Error::other(error.to_string())))?;
    let runtime = lapin::runtime::default_runtime()?;
    let connecting = config.amqp_url.as_str().connect_with_config(properties, tls, runtime);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(connected) => connected,
        Err(_elapsed) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the AMQP handshake did not complete in time",
        ))),
    }
}

/// The TLS settings for `config`: the certificates of `amqp_ca_file` as extra trust anchors, or none.
///
/// # Errors
/// [`ConfigError::CaFile`] when the file cannot be read, holds no PEM certificate, or holds one that is
/// not a usable X.509 trust anchor.
pub(crate) fn tls_config(config: &BusConfig) -> Result<OwnedTLSConfig, ConfigError> {
    let Some(path) = &config.amqp_ca_file else { return Ok(OwnedTLSConfig::default()) };
    let pem = read_ca_file(path)?;
    Ok(OwnedTLSConfig { identity: None, cert_chain: Some(pem) })
}

/// Reads a CA file and checks that every certificate in it can serve as a trust anchor: rustls would
/// otherwise skip a bad one silently and fail every handshake later with a vaguer message.
fn read_ca_file(path: &Path) -> Result<String, ConfigError> {
    let fail = |reason: String| ConfigError::CaFile { path: path.to_path_buf(), reason };
    let pem = std::fs::read_to_string(path).map_err(|error| fail(format!("cannot be read: {error}")))?;
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| fail(format!("is not PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(fail("holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".to_owned()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (index, certificate) in certificates.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|error| fail(format!("certificate {} is not a usable CA certificate: {error}", index + 1)))?;
    }
    Ok(pem)
}
