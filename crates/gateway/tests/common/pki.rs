//! Certificates for the TLS tests, made fresh by each test and never committed: a certificate authority, a
//! server certificate for `127.0.0.1` and `localhost` signed by it, and client certificates, signed or
//! self-signed. Files the server reads live in a temporary directory that goes with the value.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use sha2::{Digest as _, Sha256};

/// A certificate with its private key.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Identity {
    fn new(params: &CertificateParams, issuer: Option<&CertifiedIssuer<'static, KeyPair>>) -> Self {
        let key = KeyPair::generate().expect("a key pair");
        let certificate = match issuer {
            Some(issuer) => params.signed_by(&key, issuer).expect("a signed certificate"),
            None => params.self_signed(&key).expect("a self-signed certificate"),
        };
        Self { cert_pem: certificate.pem(), key_pem: key.serialize_pem(), der: certificate.der().to_vec() }
    }

    /// The lower-case hex SHA-256 of the DER certificate, as `client_cert_sha256` lists it.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }

    /// The identity for a reqwest client.
    pub fn reqwest(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.cert_pem, self.key_pem).as_bytes()).expect("an identity")
    }
}

/// A test certificate authority and the server's certificate.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub server: Identity,
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Concordat test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key pair")).expect("a CA");
        let server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("server parameters");
        let server = Identity::new(&server_params, Some(&ca));
        Self { ca, server, dir: tempfile::tempdir().expect("a temporary directory") }
    }

    /// A client certificate named `name`, signed by the CA.
    pub fn client(&self, name: &str) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        Identity::new(&params, Some(&self.ca))
    }

    /// A self-signed client certificate named `name`.
    pub fn self_signed(name: &str) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        Identity::new(&params, None)
    }

    /// Writes `cert` and `key` as PEM files named `stem.crt` and `stem.key`.
    pub fn write(&self, stem: &str, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let cert_path = self.dir.path().join(format!("{stem}.crt"));
        let key_path = self.dir.path().join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert).expect("write the certificate");
        std::fs::write(&key_path, key).expect("write the key");
        (cert_path, key_path)
    }

    /// The server's certificate and key files.
    pub fn server_files(&self) -> (PathBuf, PathBuf) {
        self.write("server", &self.server.cert_pem, &self.server.key_pem)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// An HTTPS client that trusts only the test CA, presenting `identity` when asked for a certificate.
    pub fn https_client(&self, identity: Option<&Identity>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).expect("the CA certificate");
        let mut builder = reqwest::Client::builder().tls_certs_only([ca]);
        if let Some(identity) = identity {
            builder = builder.identity(identity.reqwest());
        }
        builder.build().expect("an HTTPS client")
    }
}
