//! Connector wrappers: one timer over the whole connect (DNS, TCP, TLS), and a cap on
//! connections per host.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use hyper_util::client::legacy::connect::{Connected, Connection};
use invoke_layers::timeout::{Elapsed, Timer};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Errors of connectors, as hyper-util takes them.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Fails a connection attempt that takes longer than `timeout`, whatever it is waiting
/// for: the DNS lookup, the TCP connect or the TLS handshake. The error is an
/// [`Elapsed`] of [`Timer::Connect`]; the request was not sent.
///
/// hyper-util's client clones its connector for every request, connection or not, and
/// keeps the clone in the request's future: behind one `Arc`, that is one reference
/// count and a pointer, not the whole connector stack (TLS, proxy, TCP settings). The
/// inner connector is cloned, asked whether it is ready and called only when a
/// connection is made.
#[derive(Debug)]
pub(crate) struct ConnectTimeout<C> {
    inner: Arc<C>,
    timeout: Duration,
}

impl<C> Clone for ConnectTimeout<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            timeout: self.timeout,
        }
    }
}

impl<C> ConnectTimeout<C> {
    pub(crate) fn new(inner: C, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(inner),
            timeout,
        }
    }
}

impl<C> tower_service::Service<http::Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<http::Uri> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner connector's readiness is awaited in the call's future, under the
        // connect timeout.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        // Once per new connection, not per request: a box here costs nothing measurable.
        let connecting = tower::ServiceExt::oneshot(C::clone(&self.inner), uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(Box::new(Elapsed::new(Timer::Connect, timeout, false)) as BoxError),
            }
        })
    }
}

/// Caps on connections per host (scheme and authority, as the connection pool keys
/// them), shared by the transport and its connector:
///
/// - `requests`: requests in flight. An HTTP/1.1 connection carries one at a time, so a
///   request that would need a connection beyond the cap waits here, in its own future:
///   the attempt timeout and the operation deadline keep running, and it is not sent.
/// - `connections`: connections open. The pool may start a connection for a request that
///   then gets an idle one, so capping requests alone would not cap sockets. A connection
///   holds its slot until it is closed; the wait for one counts against the connect
///   timeout (it is short: a request that holds a slot above has an idle connection
///   coming, or one that is closing).
#[derive(Debug)]
pub(crate) struct HostLimits {
    limit: usize,
    hosts: Mutex<HashMap<(Scheme, Authority), HostSlots>>,
}

#[derive(Debug, Clone)]
struct HostSlots {
    requests: Arc<Semaphore>,
    connections: Arc<Semaphore>,
}

/// Hosts remembered before idle ones are forgotten.
const PRUNE_FROM: usize = 64;

impl HostSlots {
    /// No request or connection holds a slot, and no one else holds the semaphores.
    fn is_idle(&self, limit: usize) -> bool {
        Arc::strong_count(&self.requests) == 1
            && Arc::strong_count(&self.connections) == 1
            && self.requests.available_permits() == limit
            && self.connections.available_permits() == limit
    }
}

impl HostLimits {
    pub(crate) fn new(limit: NonZeroUsize) -> Self {
        Self {
            limit: limit.get().min(Semaphore::MAX_PERMITS),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The slots of `uri`'s host (`None` for a URI without scheme or host, which the
    /// client refuses anyway).
    fn slots(&self, uri: &http::Uri) -> Option<HostSlots> {
        let key = (uri.scheme()?.clone(), uri.authority()?.clone());
        // A panic elsewhere while holding the lock leaves a map that is still valid.
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if hosts.len() >= PRUNE_FROM && !hosts.contains_key(&key) {
            // A transport used against many hosts: forget the idle ones (every slot free
            // and nobody holding their semaphores), so the map does not only grow.
            hosts.retain(|_, s| !s.is_idle(self.limit));
        }
        Some(
            hosts
                .entry(key)
                .or_insert_with(|| HostSlots {
                    requests: Arc::new(Semaphore::new(self.limit)),
                    connections: Arc::new(Semaphore::new(self.limit)),
                })
                .clone(),
        )
    }

    /// How many hosts are remembered.
    #[cfg(test)]
    fn hosts(&self) -> usize {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The semaphore of requests in flight to `uri`'s host.
    pub(crate) fn requests(&self, uri: &http::Uri) -> Option<Arc<Semaphore>> {
        self.slots(uri).map(|s| s.requests)
    }
}

/// A connector that opens at most the cap's connections per host at once (see
/// [`HostLimits`]); without a cap, it only passes connections through.
#[derive(Clone, Debug)]
pub(crate) struct HostCap<C> {
    inner: C,
    limits: Option<Arc<HostLimits>>,
}

impl<C> HostCap<C> {
    pub(crate) fn new(inner: C, limits: Option<Arc<HostLimits>>) -> Self {
        Self { inner, limits }
    }
}

impl<C> tower_service::Service<http::Uri> for HostCap<C>
where
    C: tower_service::Service<http::Uri> + Clone + Send + 'static,
    C::Response: Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = CappedIo<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let slots = self
            .limits
            .as_ref()
            .and_then(|l| l.slots(&uri))
            .map(|s| s.connections);
        let Some(slots) = slots else {
            let connecting = self.inner.call(uri);
            return Box::pin(async move {
                let io = connecting.await.map_err(Into::into)?;
                Ok(CappedIo { io, _slot: None })
            });
        };
        // The slot first, then the connect: the inner connector is called (and asked
        // whether it is ready) only once there is one.
        let inner = self.inner.clone();
        Box::pin(async move {
            let slot = slots.acquire_owned().await.ok();
            let io = tower::ServiceExt::oneshot(inner, uri)
                .await
                .map_err(Into::into)?;
            Ok(CappedIo { io, _slot: slot })
        })
    }
}

pin_project! {
    /// A connection that holds its host's slot until it is closed.
    #[derive(Debug)]
    pub(crate) struct CappedIo<T> {
        #[pin]
        io: T,
        _slot: Option<OwnedSemaphorePermit>,
    }
}

impl<T: Connection> Connection for CappedIo<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: hyper::rt::Read> hyper::rt::Read for CappedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write> hyper::rt::Write for CappedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review of issue 16: the map of hosts forgets idle hosts instead of only growing.
    #[test]
    fn idle_hosts_are_forgotten() {
        let limits = HostLimits::new(NonZeroUsize::new(2).unwrap());
        let busy: http::Uri = "https://busy.example".parse().unwrap();
        let held = limits.requests(&busy).unwrap().try_acquire_owned().unwrap();
        for n in 0..1000 {
            let uri: http::Uri = format!("https://host{n}.example").parse().unwrap();
            assert!(limits.requests(&uri).is_some());
        }
        assert!(limits.hosts() <= PRUNE_FROM, "{}", limits.hosts());
        // A host with a slot taken is kept.
        let again = limits.requests(&busy).unwrap();
        assert_eq!(again.available_permits(), 1);
        drop(held);
    }

    /// A plain-http client's connector has no TLS: an https URI that reached it anyway
    /// is an error before any connection, never plain text to a TLS port.
    #[cfg(feature = "rustls")]
    #[tokio::test]
    async fn the_plain_connector_refuses_https_without_connecting() {
        use tower_service::Service;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = super::super::TransportConfig::default();
        let mut plain = MaybeTls::Plain(super::super::proxy::ProxyConnector::new(
            super::super::tcp_connector(&config),
            None,
        ));
        let uri: http::Uri = format!("https://127.0.0.1:{port}/").parse().unwrap();
        let Err(err) = plain.call(uri).await else {
            panic!("an https URI was connected in plain text");
        };
        assert!(err.to_string().contains("plain http"), "{err}");
        for other in ["wss", "ftp"] {
            let uri: http::Uri = format!("{other}://127.0.0.1:{port}/").parse().unwrap();
            assert!(plain.call(uri).await.is_err(), "{other}");
        }
        assert_eq!(
            listener.accept().err().map(|e| e.kind()),
            Some(std::io::ErrorKind::WouldBlock)
        );
        // The same connector connects to an http URI.
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let io = plain.call(uri).await.expect("connected");
        assert!(matches!(io, hyper_rustls::MaybeHttpsStream::Http(_)));
    }
}

/// TLS over the proxy connector, or none at all for a client whose endpoint is plain
/// http (a local endpoint): that client refuses https before the network, so it builds
/// no TLS configuration and never runs rustls's code (about 450 KiB of the process's
/// resident code pages, BENCHMARKS.md).
#[cfg(feature = "rustls")]
#[derive(Clone, Debug)]
pub(crate) enum MaybeTls {
    Plain(super::proxy::ProxyConnector),
    Tls(hyper_rustls::HttpsConnector<super::proxy::ProxyConnector>),
}

#[cfg(feature = "rustls")]
type ProxyIo = <super::proxy::ProxyConnector as tower_service::Service<http::Uri>>::Response;

#[cfg(feature = "rustls")]
impl tower_service::Service<http::Uri> for MaybeTls {
    type Response = hyper_rustls::MaybeHttpsStream<ProxyIo>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Plain(c) => c.poll_ready(cx),
            Self::Tls(c) => c.poll_ready(cx),
        }
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        match self {
            // The transport refuses https first; were another scheme to come here anyway,
            // it gets an error, never a plain-text connection (as hyper-rustls refuses
            // what is neither http nor https).
            Self::Plain(_) if uri.scheme() != Some(&Scheme::HTTP) => Box::pin(async {
                Err("this client's endpoint is plain http: it connects to http URIs only".into())
            }),
            Self::Plain(c) => {
                // Once per connection, not per request.
                let fut = c.call(uri);
                Box::pin(async move { fut.await.map(hyper_rustls::MaybeHttpsStream::Http) })
            }
            Self::Tls(c) => c.call(uri),
        }
    }
}
