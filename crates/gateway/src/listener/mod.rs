//! Serving HTTP on Concordat's listeners: the ingest listener (`listen`), the admin listener
//! (`admin_listen`) and any later one (the portal), each with the same limits and, when `tls_cert` and
//! `tls_key` are set, HTTPS.
//!
//! - [`ListenerConfig`] is the `[listeners]` section: the header-read and idle timeouts and the cap on
//!   concurrent connections, the same on every listener.
//! - [`TlsIdentity`] is the server's certificate chain and key, read once from PEM files;
//!   [`TlsIdentity::acceptor`] makes a [`TlsAcceptor`] per listener, with or without client certificates.
//! - [`ClientCertificates`] pins client certificates by the SHA-256 of their DER: a presented certificate whose
//!   digest is not pinned fails the handshake. The digest of the one presented reaches every request of the
//!   connection as a [`ClientCertificate`] extension, for the application to map to a caller.
//! - [`serve`] runs an axum router on a bound TCP listener until shutdown.
//!
//! This module knows nothing of agencies, tokens or routes: who a certificate belongs to and what a caller
//! may do is the application's business ([`crate::Gateway`] for ingest). It speaks HTTP/1.1 only, where the
//! header-read timeout is defined; agencies' systems and browsers all speak it.

mod config;
mod serve;
mod tls;

pub use config::{ListenerConfig, ListenerConfigError};
pub use serve::{Listener, serve};
pub use tls::{ClientCertificate, ClientCertificates, TlsAcceptor, TlsError, TlsIdentity};
