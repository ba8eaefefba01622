//! `amqps://` end to end, without reconfiguring the shared broker: a TLS listener made in the test (a
//! private CA and a server certificate for 127.0.0.1, generated here and never written to the repository)
//! terminates TLS and forwards the bytes to the plain AMQP port, as a TLS-terminating proxy in front of
//! RabbitMQ does. The bus must trust the private CA through `amqp_ca_file`, and only then.

#![allow(clippy::unwrap_used, reason = "in tests a failed unwrap is a failed test")]

mod common;

use std::sync::Arc;

use concordat_bus::{BusConfig, Topology, TopologyError};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA's certificate (PEM) and a TLS acceptor whose certificate it signed, for 127.0.0.1.
fn private_ca_and_server() -> (String, TlsAcceptor) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Concordat test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let chain = vec![CertificateDer::from(server_cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let config = ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    (ca_cert.pem(), TlsAcceptor::from(Arc::new(config)))
}

/// Serves TLS on a free port of 127.0.0.1, forwarding each connection to `upstream`; the port.
async fn tls_proxy(acceptor: TlsAcceptor, upstream: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake; nothing to forward then.
                let Ok(mut tls) = acceptor.accept(client).await else { return };
                let Ok(mut broker) = TcpStream::connect(upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });
    port
}

/// The plain broker's `host:port` and credentials from the tests' configuration.
fn upstream(config: &BusConfig) -> (String, String) {
    let uri: lapin::uri::AMQPUri = config.amqp_url.parse().unwrap();
    let userinfo = format!("{}:{}", uri.authority.userinfo.username, uri.authority.userinfo.password);
    (format!("{}:{}", uri.authority.host, uri.authority.port), userinfo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_connects_when_the_private_ca_is_trusted_and_only_then() {
    let plain = common::config();
    let (ca_pem, acceptor) = private_ca_and_server();
    let (address, userinfo) = upstream(&plain);
    let port = tls_proxy(acceptor, address).await;
    let ca_dir = tempfile_dir();
    let ca_file = ca_dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let amqps = BusConfig { amqp_url: format!("amqps://{userinfo}@127.0.0.1:{port}/%2f"), ..plain.clone() };
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let topology = Topology::with_prefix(prefix, vec!["safe-haven".to_owned()]).unwrap();

    // Without the CA, the broker's certificate is refused before any AMQP is spoken.
    let refused = topology.declare(&amqps).await.unwrap_err();
    assert!(matches!(refused, TopologyError::Connect { .. }), "{refused:?}");
    let shown = format!("{refused}: {:?}", std::error::Error::source(&refused));
    assert!(!shown.contains(&userinfo), "the password stays hidden: {shown}");
    assert!(shown.contains("UnknownIssuer"), "refused for its issuer: {shown}");

    // With it, a real session: the topology is declared over TLS, then deleted.
    let trusted = BusConfig { amqp_ca_file: Some(ca_file), ..amqps };
    topology.declare(&trusted).await.unwrap();
    topology.delete(&trusted).await.unwrap();
    let _ = std::fs::remove_dir_all(&ca_dir);
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("concordat-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
