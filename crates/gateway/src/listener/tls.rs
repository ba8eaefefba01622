//! HTTPS for the listeners: the server's certificate chain and key from PEM files, an acceptor per listener,
//! and client certificates pinned by digest.
//!
//! Client certificates are trusted by pinning, not by a certificate authority: the operator lists the
//! SHA-256 of each agency's DER certificate, a client that presents one whose digest is not listed fails the
//! handshake, and the handshake's signature check proves that the client holds the certificate's key. Chains,
//! issuers and validity dates are not consulted (the pin is the trust; removing the digest revokes it), so an
//! agency may use a self-signed certificate or one from its own network's authority alike. Presenting a
//! certificate is optional, so that bearer tokens keep working on the same listener.
//!
//! This module reads files and builds rustls configurations; it does not serve ([`super::serve`]) and knows
//! nothing of agencies.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use sha2::{Digest as _, Sha256};

/// Why the TLS files cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// Only one of `tls_cert` and `tls_key` is set.
    #[error("tls_cert and tls_key must be set together; only {set} is set")]
    Incomplete {
        /// The one that is set.
        set: &'static str,
    },
    /// `tls_cert` cannot be read, or holds no PEM certificate.
    #[error("tls_cert {}: {reason}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `tls_key` cannot be read, or holds no PEM private key.
    #[error("tls_key {}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the one of the certificate's public key.
    #[error("tls_key {} is not the private key of the certificate in tls_cert {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the pair for another reason (an unsupported key type, a malformed certificate).
    #[error("tls_cert {} and tls_key {}: {reason}", cert.display(), key.display())]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        reason: String,
    },
}

/// The server's certificate chain and private key, read once and shared by every listener.
#[derive(Clone)]
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
}

// The key is a secret: never print it.
impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert", &self.cert_path)
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// `tls_cert` and `tls_key` as configured: `None` when neither is set (plain HTTP), the identity when both
    /// are.
    ///
    /// # Errors
    /// [`TlsError::Incomplete`] when only one is set; otherwise as [`Self::load`].
    pub fn from_config(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Incomplete { set: "tls_cert" }),
            (None, Some(_)) => Err(TlsError::Incomplete { set: "tls_key" }),
            (Some(cert), Some(key)) => Self::load(cert, key).map(Some),
        }
    }

    /// Reads the certificate chain (PEM `CERTIFICATE` blocks, the server's own first) and the private key
    /// (PEM PKCS#8, PKCS#1 or SEC1), and checks that the key is the certificate's.
    ///
    /// # Errors
    /// A file that cannot be read or holds nothing usable, or a key that does not match.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_error = |reason: String| TlsError::Certificate { path: cert.to_path_buf(), reason };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|error| cert_error(error.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| cert_error(error.to_string()))?;
        if chain.is_empty() {
            return Err(cert_error("holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".to_owned()));
        }
        let private_key = PrivateKeyDer::from_pem_file(key)
            .map_err(|error| TlsError::Key { path: key.to_path_buf(), reason: error.to_string() })?;
        let identity = Self {
            chain,
            key: Arc::new(private_key),
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        };
        // Building a configuration checks the pair now, at start-up, rather than at the first handshake.
        identity.acceptor(None)?;
        Ok(identity)
    }

    /// An acceptor for one listener. With `clients` pinning at least one certificate, clients are asked for
    /// a certificate (optionally) and one that is not pinned fails the handshake; otherwise none is asked for.
    ///
    /// # Errors
    /// [`TlsError::KeyMismatch`] or [`TlsError::Refused`] when rustls refuses the certificate and key.
    pub fn acceptor(&self, clients: Option<&ClientCertificates>) -> Result<TlsAcceptor, TlsError> {
        let refused = |error: rustls::Error| match error {
            rustls::Error::InconsistentKeys(_) => {
                TlsError::KeyMismatch { cert: self.cert_path.clone(), key: self.key_path.clone() }
            }
            other => TlsError::Refused {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
                reason: other.to_string(),
            },
        };
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(refused)?;
        let builder = match clients {
            Some(pins) if !pins.digests.is_empty() => builder.with_client_cert_verifier(Arc::new(PinnedClients {
                pins: pins.clone(),
                provider: self.provider.clone(),
            })),
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(self.chain.clone(), self.key.clone_key()).map_err(refused)?;
        // Only HTTP/1.1 is served (see the module documentation of `listener`).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

/// A listener's TLS configuration, cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor(pub(super) tokio_rustls::TlsAcceptor);

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

/// The client certificates a listener accepts, by the SHA-256 of their DER encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificates {
    digests: BTreeSet<[u8; 32]>,
}

impl ClientCertificates {
    /// The certificates whose digests are `digests`.
    pub fn new(digests: impl IntoIterator<Item = [u8; 32]>) -> Self {
        Self { digests: digests.into_iter().collect() }
    }

    /// Whether no certificate is pinned (clients are then not asked for one).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `certificate` is pinned.
    pub fn contains(&self, certificate: &ClientCertificate) -> bool {
        self.digests.contains(&certificate.sha256)
    }
}

/// The certificate a client presented in the TLS handshake, by its SHA-256: set as a request extension on
/// every request of a connection that presented one. Only pinned certificates get this far.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientCertificate {
    sha256: [u8; 32],
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientCertificate({})", hex::encode(self.sha256))
    }
}

impl ClientCertificate {
    /// The certificate whose DER encoding is `der`.
    pub fn of_der(der: &[u8]) -> Self {
        Self { sha256: Sha256::digest(der).into() }
    }

    /// The SHA-256 of its DER encoding.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }
}

/// Asks for a client certificate without requiring one, and accepts only pinned ones.
#[derive(Debug)]
struct PinnedClients {
    pins: ClientCertificates,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for PinnedClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    // Optional: a client without a certificate goes on to authenticate with a bearer token.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    // No hints: a client with a certificate should send it (RFC 8446 §4.2.4).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.pins.contains(&ClientCertificate::of_der(end_entity)) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    // The signatures prove that the client holds the pinned certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
