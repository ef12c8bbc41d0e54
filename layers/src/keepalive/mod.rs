//! TCP keep-alive on every connection a connector opens, so long-idle requests survive
//! NAT gateways and load balancers.
//!
//! A synchronous Lambda invocation may wait up to 15 minutes with no byte on the wire.
//! NAT gateways, Network Load Balancers, Gateway Load Balancers, AWS Network Firewall and
//! (on Nitro v6 instances) security-group connection tracking drop a TCP flow that has
//! been idle for 350 s; the answer then never arrives and the call hangs until a timeout.
//! Linux sends its first keep-alive probe after 7200 s, and only on sockets that ask for
//! it. [`KeepAliveLayer`] wraps any connector (a `tower::Service<Uri>` such as hyper-util's
//! `HttpConnector`) and turns keep-alive on for each new socket.
//!
//! # Defaults and why
//!
//! | setting | default | why |
//! |---|---|---|
//! | `idle` (`TCP_KEEPIDLE`) | 60 s | far below the 350 s idle timers; a probe every minute costs nothing |
//! | `interval` (`TCP_KEEPINTVL`) | 15 s | a lost probe is retried well before the next idle period |
//! | `retries` (`TCP_KEEPCNT`) | 4 | a dead peer is detected after 60 + 4 × 15 = 120 s, not 2 h |
//!
//! What it cannot defeat: L7 proxies (Application and Classic Load Balancers, HTTP
//! proxies) ignore TCP keep-alive, since probes carry no data; behind them, the proxy's
//! idle timeout must exceed the function's duration.
//!
//! # Example
//!
//! ```
//! use hyper_util::client::legacy::connect::HttpConnector;
//! use invoke_layers::keepalive::{KeepAlive, KeepAliveLayer};
//! use tower::Layer;
//!
//! let connector = KeepAliveLayer::new(KeepAlive::default()).layer(HttpConnector::new());
//! # let _ = connector;
//! ```
//!
//! # Testing
//!
//! Connect through the wrapped connector to a local listener and read the options back
//! with [`KeepAlive::read_from`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use socket2::{SockRef, TcpKeepalive};
use tower_layer::Layer;
use tower_service::Service;

/// Keep-alive probe settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Silence before the first probe (`TCP_KEEPIDLE`).
    pub idle: Duration,
    /// Time between probes (`TCP_KEEPINTVL`).
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`).
    pub retries: u32,
}

impl Default for KeepAlive {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(15),
            retries: 4,
        }
    }
}

impl KeepAlive {
    /// Turns keep-alive on for a socket with these settings.
    pub fn apply(&self, socket: &SockRef<'_>) -> std::io::Result<()> {
        let ka = TcpKeepalive::new()
            .with_time(self.idle)
            .with_interval(self.interval);
        #[cfg(not(any(
            target_os = "openbsd",
            target_os = "redox",
            target_os = "solaris",
            target_os = "windows"
        )))]
        let ka = ka.with_retries(self.retries);
        socket.set_tcp_keepalive(&ka)
    }

    /// Reads a socket's settings back (`None` when keep-alive is off).
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    ))]
    pub fn read_from(socket: &SockRef<'_>) -> std::io::Result<Option<KeepAlive>> {
        if !socket.keepalive()? {
            return Ok(None);
        }
        Ok(Some(KeepAlive {
            idle: socket.tcp_keepalive_time()?,
            interval: socket.tcp_keepalive_interval()?,
            retries: socket.tcp_keepalive_retries()?,
        }))
    }
}

/// A connection type that has a TCP socket to configure.
///
/// ```
/// use invoke_layers::keepalive::TcpSocket;
/// use socket2::SockRef;
///
/// /// A connection of the application's, over a TCP stream.
/// struct Metered {
///     stream: tokio::net::TcpStream,
///     bytes: u64,
/// }
///
/// impl TcpSocket for Metered {
///     fn socket(&self) -> SockRef<'_> {
///         SockRef::from(&self.stream)
///     }
/// }
/// ```
pub trait TcpSocket {
    /// The socket.
    fn socket(&self) -> SockRef<'_>;
}

impl TcpSocket for tokio::net::TcpStream {
    fn socket(&self) -> SockRef<'_> {
        SockRef::from(self)
    }
}

impl<T: TcpSocket> TcpSocket for hyper_util::rt::TokioIo<T> {
    fn socket(&self) -> SockRef<'_> {
        self.inner().socket()
    }
}

/// Wraps a connector so every connection it opens has TCP keep-alive on.
#[derive(Debug, Clone, Copy)]
pub struct KeepAliveLayer {
    settings: KeepAlive,
}

impl KeepAliveLayer {
    /// Uses these settings.
    pub fn new(settings: KeepAlive) -> Self {
        Self { settings }
    }
}

impl<S> Layer<S> for KeepAliveLayer {
    type Service = KeepAliveConnector<S>;
    fn layer(&self, inner: S) -> Self::Service {
        KeepAliveConnector {
            inner,
            settings: self.settings,
        }
    }
}

/// A connector that turns keep-alive on for the connections of the one it wraps.
#[derive(Debug, Clone)]
pub struct KeepAliveConnector<S> {
    inner: S,
    settings: KeepAlive,
}

impl<S> KeepAliveConnector<S> {
    /// Turns keep-alive on for the connections of `inner`.
    pub fn new(inner: S, settings: KeepAlive) -> Self {
        Self { inner, settings }
    }

    /// A [`KeepAliveLayer`] with these settings.
    pub fn layer(settings: KeepAlive) -> KeepAliveLayer {
        KeepAliveLayer::new(settings)
    }

    inner_service_accessors!();
}

/// Errors of the wrapped connector, or of setting the socket options.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, Req> Service<Req> for KeepAliveConnector<S>
where
    S: Service<Req>,
    S::Response: TcpSocket,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            settings: self.settings,
            done: false,
        }
    }
}

pin_project! {
    /// Future of [`KeepAliveConnector`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        settings: KeepAlive,
        done: bool,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    T: TcpSocket,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(Err(crate::PolledAfterCompletion.into()));
        }
        let conn = std::task::ready!(this.inner.poll(cx));
        *this.done = true;
        let conn = conn.map_err(Into::into)?;
        // Asked-for keep-alive that cannot be set is an error, not a silent downgrade.
        this.settings.apply(&conn.socket())?;
        Poll::Ready(Ok(conn))
    }
}
