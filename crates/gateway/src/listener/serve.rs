//! The accept loop and each connection: the cap on connections, the TLS handshake within the header-read
//! timeout, hyper's HTTP/1 with its header-read timeout, the idle timeout, and graceful shutdown.
//!
//! It serves whatever axum router it is given and adds only the [`ClientCertificate`] extension; limits on
//! requests (body size, per-request deadline, rates) are the router's layers.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::config::ListenerConfig;
use super::tls::{ClientCertificate, TlsAcceptor};

/// How long to wait after the operating system refuses an accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound listener and how it serves.
#[derive(Debug)]
pub struct Listener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// HTTPS when set; plain HTTP otherwise.
    pub tls: Option<TlsAcceptor>,
    /// The limits of `[listeners]`.
    pub limits: ListenerConfig,
    /// What it serves, for the logs (`ingest`, `admin`).
    pub name: &'static str,
}

/// Serves `app` on `listener` until `shutdown` fires, then lets each open connection finish the request in
/// hand (closing idle ones at once) and returns when all have closed.
///
/// At most `max_connections` connections are open at once: the next is accepted only when one closes, so
/// the rest wait in the operating system's accept queue. A failed accept is logged and retried after
/// [`ACCEPT_BACKOFF`].
pub async fn serve(listener: Listener, app: Router, shutdown: CancellationToken) {
    let Listener { tcp, tls, limits, name } = listener;
    let slots = limits.max_connections;
    let permits = Arc::new(Semaphore::new(usize::try_from(slots).unwrap_or(usize::MAX)));
    loop {
        // A slot first, then the accept: each connection holds its permit until it closes.
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(listener = name, %error, "Accepting a connection failed; trying again shortly.");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            debug!(listener = name, %error, "Could not set TCP_NODELAY.");
        }
        let connection = Connection { peer, app: app.clone(), limits, name, shutdown: shutdown.clone() };
        let tls = tls.clone();
        tokio::spawn(async move {
            connection.run(stream, tls).await;
            drop(permit);
        });
    }
    // Every permit back means every connection closed.
    let _all = permits.acquire_many(slots).await;
}

/// One accepted connection.
struct Connection {
    peer: SocketAddr,
    app: Router,
    limits: ListenerConfig,
    name: &'static str,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let activity = Arc::new(Activity::new());
        let stream = Watched { inner: stream, activity: activity.clone() };
        let Some(acceptor) = tls else {
            return self.http(stream, None, &activity).await;
        };
        // A client that never completes the handshake holds its slot no longer than one that never sends
        // its headers.
        let handshake = tokio::select! {
            () = self.shutdown.cancelled() => return,
            done = tokio::time::timeout(self.limits.header_read_timeout(), acceptor.0.accept(stream)) => done,
        };
        match handshake {
            Ok(Ok(stream)) => {
                let (_, session) = stream.get_ref();
                let certificate = session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|der| ClientCertificate::of_der(der));
                self.http(stream, certificate, &activity).await;
            }
            Ok(Err(error)) => {
                let refused_certificate = error
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|inner| matches!(inner, rustls::Error::InvalidCertificate(_)));
                if refused_certificate {
                    warn!(listener = self.name, peer = %self.peer, %error, "Client certificate refused.");
                } else {
                    debug!(listener = self.name, peer = %self.peer, %error, "TLS handshake failed.");
                }
            }
            Err(_elapsed) => debug!(listener = self.name, peer = %self.peer, "TLS handshake not completed in time."),
        }
    }

    /// Serves HTTP/1.1 on an established connection until it ends, is idle too long, or shutdown has let
    /// its request in hand finish.
    async fn http<IO>(self, io: IO, certificate: Option<ClientCertificate>, activity: &Activity)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app;
        let service = service_fn(move |mut request: hyper::Request<Incoming>| {
            if let Some(certificate) = certificate {
                request.extensions_mut().insert(certificate);
            }
            app.clone().oneshot(request.map(Body::new))
        });
        // hyper starts the header-read clock whenever it waits for a request's headers, the first or the next.
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout())
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let idle = self.limits.idle_timeout();
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(error) = ended {
                        debug!(listener = self.name, peer = %self.peer, %error, "Connection closed.");
                    }
                    return;
                }
                () = self.shutdown.cancelled(), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = tokio::time::sleep_until(activity.last() + idle) => {
                    if activity.last() + idle > Instant::now() {
                        continue; // Bytes moved meanwhile.
                    }
                    if closing {
                        debug!(listener = self.name, peer = %self.peer, "Idle connection dropped.");
                        return;
                    }
                    // Finish the request in hand, if any, then close; drop it if it stays idle as long again.
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    activity.touch();
                }
            }
        }
    }
}

/// When bytes last moved on a connection.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last read or write that moved bytes.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(elapsed, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that notes in its [`Activity`] every read or write that moves bytes.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
