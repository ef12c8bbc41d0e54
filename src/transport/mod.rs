//! The transport: a hyper 1.x client as a `tower::Service<http::Request<Bytes>>` that
//! answers `http::Response<Bytes>` (the body read in full, up to a cap).
//!
//! - HTTPS with rustls (ring provider, webpki roots; certificate verification is always
//!   on), plain HTTP to loopback hosts, and to other hosts only when explicitly allowed.
//! - `TCP_NODELAY`, a connect timeout over DNS, TCP and TLS, pooled keep-alive
//!   connections, TCP keep-alive probes (see [`KeepAlive`]), and an optional cap on the
//!   connections per host ([`TransportConfig::max_connections_per_host`]).
//! - A [`TransportError`] says whether any byte of the request may have been written
//!   ([`TransportError::request_sent`]), so "may the function have run?" has an answer.
//!
//! ```no_run
//! use bytes::Bytes;
//! use tower::ServiceExt;
//! use invoke_stack::transport::{HyperTransport, TransportConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = HyperTransport::new(TransportConfig::default())?;
//! let req = http::Request::post("http://127.0.0.1:9001/2015-03-31/functions/f/invocations")
//!     .body(Bytes::from_static(b"{}"))?;
//! let resp = transport.oneshot(req).await?;
//! println!("{}", resp.status());
//! # Ok(()) }
//! ```

mod connect;
mod endpoint;
mod proxy;
#[cfg(feature = "stream")]
mod stream;
mod tls;

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

pub use endpoint::{is_loopback_host, Endpoint, EndpointError, EndpointVariant};
#[cfg(feature = "stream")]
pub use stream::{StreamingBody, StreamingFuture, StreamingTransport, MAX_ERROR_BODY_BYTES};

pub use invoke_layers::keepalive::KeepAlive;
pub use invoke_layers::sigv4::Env;
use invoke_layers::timeout::SendProgress;
pub use proxy::ProxyConfig;
pub use tls::{TlsConfig, TlsRoots};

use crate::error::{TransportError, TransportErrorKind};

/// Lambda's synchronous response limit is 6,291,556 bytes; the default cap leaves room
/// for error objects and headers, and stops a misbehaving endpoint from filling memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 6_553_600;

/// Settings of [`HyperTransport`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Time allowed to establish a connection: the DNS lookup, the TCP connect and the
    /// TLS handshake together (default 3.1 s, as the AWS SDKs). When it passes, the call
    /// fails with [`TransportErrorKind::ConnectTimeout`] (its source is an
    /// [`Elapsed`](invoke_layers::timeout::Elapsed) of
    /// [`Timer::Connect`](invoke_layers::timeout::Timer::Connect)); the request was not
    /// sent.
    pub connect_timeout: Duration,
    /// TCP keep-alive on every connection, `None` to switch it off. The defaults (first
    /// probe after 60 s, then every 15 s, 4 probes) keep flows alive through the 350 s
    /// idle timers of NAT gateways and NLBs; see [`KeepAlive`] and
    /// [`invoke_layers::keepalive`]. Set through hyper-util's connector, which ignores a
    /// socket option the operating system refuses (the connection is made without it).
    pub keepalive: Option<KeepAlive>,
    /// `TCP_NODELAY` (default on: requests are written whole, Nagle only adds latency).
    pub nodelay: bool,
    /// Idle pooled connections are closed after this (default 20 s, below the 60 s
    /// idle timeout of ALBs and most HTTP servers, so the pool never hands out a
    /// connection the other side is about to close).
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (default 64).
    pub pool_max_idle_per_host: usize,
    /// Response bodies larger than this fail with [`TransportErrorKind::ResponseTooLarge`].
    pub max_response_bytes: usize,
    /// Allow plain HTTP to hosts that are not loopback (default off: payloads and
    /// signed requests would cross the network in clear text).
    pub allow_insecure_http: bool,
    /// At most this many connections open to one host (scheme and authority) at once;
    /// default `None`, no cap.
    ///
    /// Without a cap, a burst of 10,000 calls opens 10,000 sockets (and TLS handshakes)
    /// at once. Each is a file descriptor: a process may hold `ulimit -n` of them (often
    /// 1,024 by default), and past that every call fails. Set a cap below that limit,
    /// leaving room for the rest of the process, or raise the limit (`ulimit -n`,
    /// `LimitNOFILE=` in a systemd unit).
    ///
    /// A call over the cap waits for a connection of its host. The wait counts against
    /// its attempt timeout and the operation deadline, like the rest of the attempt; a
    /// call that times out while waiting was not sent ("not run"). A synchronous call
    /// holds its connection while the function runs (up to 15 minutes), so a cap also
    /// caps the number of functions running at once from this client.
    pub max_connections_per_host: Option<NonZeroUsize>,
    /// Which certificates are trusted (default: the platform's roots). Certificates are
    /// always verified.
    pub tls: TlsConfig,
    /// The proxy (default: from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).
    pub proxy: ProxyConfig,
    /// Where the proxy variables are read (default: the process environment; the client
    /// builder passes its own, see
    /// [`InvokeClientBuilder::env`](crate::InvokeClientBuilder::env)).
    pub env: Env,
    // Set by the client builder when its endpoint is plain http (only http:// proxies are
    // supported, so no connection of that client can use TLS): the trusted roots are then
    // not read (the platform's store and `AWS_CA_BUNDLE` are parsed at build time, which
    // costs a loopback client a few hundred KiB of heap and a millisecond per build).
    pub(crate) plain_http_only: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(3_100),
            keepalive: Some(KeepAlive::default()),
            nodelay: true,
            pool_idle_timeout: Duration::from_secs(20),
            pool_max_idle_per_host: 64,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            allow_insecure_http: false,
            max_connections_per_host: None,
            tls: TlsConfig::default(),
            proxy: ProxyConfig::default(),
            env: Env::process(),
            plain_http_only: false,
        }
    }
}

impl TransportConfig {
    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets (or with `None` switches off) TCP keep-alive.
    pub fn keepalive(mut self, k: Option<KeepAlive>) -> Self {
        self.keepalive = k;
        self
    }
    /// Sets the pool idle timeout.
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.pool_idle_timeout = d;
        self
    }
    /// Sets the response body cap.
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }
    /// Allows plain HTTP to non-loopback hosts.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }
    /// Caps the connections open to one host at once (0: no cap, the default). See
    /// [`max_connections_per_host`](Self::max_connections_per_host) for the
    /// file-descriptor limit it guards.
    ///
    /// ```
    /// use invoke_stack::transport::TransportConfig;
    /// let config = TransportConfig::default().max_connections_per_host(256);
    /// assert_eq!(config.max_connections_per_host.map(|n| n.get()), Some(256));
    /// ```
    pub fn max_connections_per_host(mut self, limit: usize) -> Self {
        self.max_connections_per_host = NonZeroUsize::new(limit);
        self
    }
    /// Sets the TLS trust settings.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }
    /// Sets the proxy.
    pub fn proxy(mut self, proxy: ProxyConfig) -> Self {
        self.proxy = proxy;
        self
    }
    /// Reads the proxy variables from `env`.
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }
}

/// The transport could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTPS transport: {0}")]
pub struct TransportBuildError(pub(crate) String);

/// The TCP connector: hyper-util's own, with TCP keep-alive configured through its
/// setters (`set_keepalive`, `set_keepalive_interval`, `set_keepalive_retries`) when
/// [`TransportConfig::keepalive`] is set. invoke-layers' `KeepAliveLayer` stays for
/// connectors that have no such settings.
pub type TcpConnector = HttpConnector;

/// The TCP connector the transport uses for `config` (exposed so tests and users can
/// check the socket options it sets).
pub fn tcp_connector(config: &TransportConfig) -> TcpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(config.nodelay);
    // The transport's own timer covers the whole connect; this one also lets the
    // connector move on to the next address of a name that has several.
    http.set_connect_timeout(Some(config.connect_timeout));
    if let Some(k) = config.keepalive {
        http.set_keepalive(Some(k.idle));
        http.set_keepalive_interval(Some(k.interval));
        http.set_keepalive_retries(Some(k.retries));
    }
    http
}

#[cfg(feature = "rustls")]
type Connector = connect::ConnectTimeout<connect::HostCap<connect::MaybeTls>>;
#[cfg(not(feature = "rustls"))]
type Connector = connect::ConnectTimeout<connect::HostCap<proxy::ProxyConnector>>;

/// The hyper client as a tower service. Clones share one connection pool.
#[derive(Clone, Debug)]
pub struct HyperTransport {
    // One reference count to clone (the stack is cloned per call), not the client's
    // several.
    shared: Arc<Shared>,
    max_response_bytes: usize,
    allow_insecure_http: bool,
    // Built without TLS (a plain-http client): https is refused before the network, as
    // an invalid request, rather than failing in the connector as a connect error that
    // would be retried.
    #[cfg_attr(not(feature = "rustls"), allow(dead_code))]
    plain_http_only: bool,
}

#[derive(Debug)]
struct Shared {
    client: Client<Connector, RequestBody>,
    // The first plain-http authority found to be loopback, so that the same endpoint
    // is not parsed again on every call.
    loopback: OnceLock<http::uri::Authority>,
    // The cap on connections per host, when there is one.
    limits: Option<Arc<connect::HostLimits>>,
}

impl HyperTransport {
    /// Builds the client and its connector.
    pub fn new(config: TransportConfig) -> Result<Self, TransportBuildError> {
        let http =
            proxy::ProxyConnector::new(tcp_connector(&config), config.proxy.matcher(&config.env));
        #[cfg(feature = "rustls")]
        let connector = if config.plain_http_only {
            connect::MaybeTls::Plain(http)
        } else {
            connect::MaybeTls::Tls(
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config.tls.build()?)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http),
            )
        };
        #[cfg(not(feature = "rustls"))]
        let connector = http;
        let limits = config
            .max_connections_per_host
            .map(|n| Arc::new(connect::HostLimits::new(n)));
        let connector = connect::HostCap::new(connector, limits.clone());
        // Over the whole connect: a middlebox that accepts TCP and stalls the handshake
        // must not hold a call for its attempt timeout (15 minutes for a synchronous one).
        let connector = connect::ConnectTimeout::new(connector, config.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                loopback: OnceLock::new(),
                limits,
            }),
            max_response_bytes: config.max_response_bytes,
            allow_insecure_http: config.allow_insecure_http,
            plain_http_only: config.plain_http_only,
        })
    }

    fn refuse(&self, uri: &http::Uri) -> Option<TransportError> {
        let invalid = |detail: String| {
            Some(TransportError::new(
                TransportErrorKind::InvalidRequest,
                false,
                detail,
                None,
            ))
        };
        // A port that does not parse would be replaced by the default port.
        let bad_port = |uri: &http::Uri| {
            uri.authority()
                .filter(|a| !endpoint::has_valid_port(a))
                // The host only: the authority may carry user info.
                .and_then(|a| {
                    invalid(format!(
                        "invalid port for host {}: expected 1 to 65535",
                        a.host()
                    ))
                })
        };
        match uri.scheme_str() {
            Some("http") => {
                if self.allow_insecure_http {
                    return bad_port(uri);
                }
                let known = self.shared.loopback.get();
                // Byte equality, not `Authority`'s case-insensitive comparison: the same
                // endpoint spells its authority the same way on every call, and one that
                // differs in case is still checked below.
                if let (Some(k), Some(a)) = (known, uri.authority()) {
                    if k.as_str() == a.as_str() {
                        return None;
                    }
                }
                if let Some(err) = bad_port(uri) {
                    return Some(err);
                }
                let host = uri.host().unwrap_or_default();
                if !is_loopback_host(host) {
                    return invalid(format!(
                        "plain http to non-loopback host {host:?}; use https, or allow insecure http explicitly"
                    ));
                }
                if let (None, Some(authority)) = (known, uri.authority()) {
                    let _ = self.shared.loopback.set(authority.clone());
                }
                None
            }
            #[cfg(feature = "rustls")]
            Some("https") if self.plain_http_only => invalid(format!(
                "https request to {} on a client built for a plain-http endpoint (it has no TLS)",
                uri.host().unwrap_or_default()
            )),
            #[cfg(feature = "rustls")]
            Some("https") => bad_port(uri),
            #[cfg(not(feature = "rustls"))]
            Some("https") => invalid("https needs the `rustls` feature of invoke-stack".into()),
            _ => invalid(format!("unsupported URI {uri}")),
        }
    }
}

impl tower_service::Service<http::Request<Bytes>> for HyperTransport {
    type Response = http::Response<Bytes>;
    type Error = TransportError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The legacy client queues requests on its pool; it is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        if let Some(err) = self.refuse(req.uri()) {
            return TransportFuture {
                state: State::Failed { error: Some(err) },
                slot: None,
            };
        }
        // Nothing is written until a connection takes the request: see `RequestBody`.
        // Progress is reported to the timeout layer's `SendProgress` when there is one.
        let sent = req
            .extensions()
            .get::<SendProgress>()
            .cloned()
            .unwrap_or_default();
        sent.mark_not_sent();
        let req = req.map(|data| RequestBody {
            data: (!data.is_empty()).then_some(data),
            sent: sent.clone(),
        });
        let limit = self.max_response_bytes;
        let slots = self
            .shared
            .limits
            .as_ref()
            .and_then(|l| l.requests(req.uri()));
        let Some(slots) = slots else {
            return TransportFuture {
                state: State::Sending {
                    fut: self.shared.client.request(req),
                    sent,
                    limit,
                },
                slot: None,
            };
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => TransportFuture {
                state: State::Sending {
                    fut: self.shared.client.request(req),
                    sent,
                    limit,
                },
                slot: Some(slot),
            },
            // Over the cap: wait for a slot in this future, so the timers outside keep
            // running (a closed semaphore cannot happen: nothing closes it).
            Err(_) => {
                let shared = self.shared.clone();
                TransportFuture {
                    state: State::Waiting {
                        fut: Box::pin(async move {
                            let slot = slots.acquire_owned().await.ok();
                            (slot, shared.client.request(req))
                        }),
                        sent,
                        limit,
                    },
                    slot: None,
                }
            }
        }
    }
}

/// The request body: one chunk, and the request's [`SendProgress`], marked sent when a
/// connection takes the request (never before a connection exists).
//
// A connection's writer (hyper's dispatcher, in the connection's own task) is the only
// one that polls or drops the body outside `TransportFuture`: it polls a non-empty body
// right after it queues the request head, and drops an empty one right after queueing
// the head, in both cases before anything is flushed. Either marks the request sent. The
// caller's side drops the body only when the request never reached a connection (a
// connect error, a timeout or a cancellation while connecting); it does so inside
// `TransportFuture`'s poll or drop, which tells the body so through `CallerScope`. So
// "sent" never comes before a connection exists, and never after a byte may have been
// written.
#[derive(Debug)]
pub struct RequestBody {
    data: Option<Bytes>,
    sent: SendProgress,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.sent.mark_sent();
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if !CallerScope::active() {
            self.sent.mark_sent();
        }
    }
}

thread_local! {
    static IN_CALLER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While alive, a request body dropped on this thread is dropped by the caller's
/// [`TransportFuture`] (the request never reached a connection), not by a connection.
struct CallerScope(bool);

impl CallerScope {
    fn enter() -> Self {
        Self(IN_CALLER.with(|c| c.replace(true)))
    }

    fn active() -> bool {
        IN_CALLER.with(std::cell::Cell::get)
    }
}

impl Drop for CallerScope {
    fn drop(&mut self) {
        IN_CALLER.with(|c| c.set(self.0));
    }
}

pin_project! {
    /// Response future of [`HyperTransport`].
    pub struct TransportFuture {
        #[pin]
        state: State,
        // The host's slot of a capped transport, held until the response is read.
        slot: Option<OwnedSemaphorePermit>,
    }

    impl PinnedDrop for TransportFuture {
        fn drop(this: Pin<&mut Self>) {
            // A request still on its way to a connection is dropped here: it was not sent.
            let mut state = this.project().state;
            if matches!(
                state.as_mut().project(),
                StateProj::Sending { .. } | StateProj::Waiting { .. }
            ) {
                let _caller = CallerScope::enter();
                state.set(State::Failed { error: None });
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Failed { error: Option<TransportError> },
        Waiting {
            // The host's slot, then the request sent with it (boxed: only a capped
            // transport over its cap waits).
            fut: Pin<Box<dyn Future<Output = (Option<OwnedSemaphorePermit>, legacy::ResponseFuture)> + Send>>,
            sent: SendProgress,
            limit: usize,
        },
        Sending {
            #[pin]
            fut: legacy::ResponseFuture,
            sent: SendProgress,
            limit: usize,
        },
        Reading {
            #[pin]
            body: Incoming,
            parts: Option<http::response::Parts>,
            limit: usize,
            // The body as read: most responses come in one chunk, kept as it is; a
            // second chunk starts a buffer sized from the declared length.
            first: Option<Bytes>,
            more: Option<BytesMut>,
        },
    }
}

/// The error of a response future polled again after it returned its result.
pub(crate) fn polled_after_completion(request_sent: bool) -> TransportError {
    TransportError::new(
        TransportErrorKind::InvalidRequest,
        request_sent,
        "future polled after completion",
        None,
    )
}

fn too_large(limit: usize) -> TransportError {
    TransportError::new(
        TransportErrorKind::ResponseTooLarge,
        true,
        format!("the response body exceeds {limit} bytes"),
        None,
    )
}

/// True when a connect timer fired: ours (over DNS, TCP and TLS), or the TCP connector's
/// own (per address).
fn has_timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    sources(err).any(|e| {
        e.is::<invoke_layers::timeout::Elapsed>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// `err` and its sources, looking inside `io::Error`s too (whose `source()` skips the
/// error they wrap).
fn sources<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

/// True when the TLS handshake failed on the server's certificate: a configuration fault
/// (wrong host name, a proxy's certificate, a private CA), not a transient one.
#[cfg(feature = "rustls")]
fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    sources(err).any(|e| {
        matches!(
            e.downcast_ref::<rustls::Error>(),
            Some(
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType
                    | rustls::Error::InvalidCertRevocationList(_)
            )
        )
    })
}

#[cfg(not(feature = "rustls"))]
fn is_certificate_error(_: &(dyn std::error::Error + 'static)) -> bool {
    false
}

fn send_error(err: legacy::Error, sent: bool) -> TransportError {
    if err.is_connect() {
        let mut detail = error_chain(&err);
        let kind = if has_timed_out(&err) {
            TransportErrorKind::ConnectTimeout
        } else if is_certificate_error(&err) {
            detail.push_str(
                "; check the endpoint URL: the certificate must be valid for its host name \
                 and chain to a trusted root (the platform's; for a private CA, set \
                 AWS_CA_BUNDLE or TransportConfig::tls; certificates are always verified)",
            );
            TransportErrorKind::Certificate
        } else {
            TransportErrorKind::Connect
        };
        return TransportError::new(kind, false, detail, Some(Box::new(err)));
    }
    let detail = error_chain(&err);
    TransportError::new(
        TransportErrorKind::Exchange,
        sent,
        detail,
        Some(Box::new(err)),
    )
}

/// "a: b: c" from an error and its sources, for messages that say what really happened.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

impl Future for TransportFuture {
    type Output = Result<http::Response<Bytes>, TransportError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(poll_state(this.state, this.slot, cx));
        // The response is read (or the call failed): the host's slot is free.
        *this.slot = None;
        Poll::Ready(out)
    }
}

fn poll_state(
    mut state: Pin<&mut State>,
    slot: &mut Option<OwnedSemaphorePermit>,
    cx: &mut Context<'_>,
) -> Poll<Result<http::Response<Bytes>, TransportError>> {
    {
        loop {
            match state.as_mut().project() {
                StateProj::Waiting { fut, sent, limit } => {
                    let (acquired, fut) = {
                        let _caller = CallerScope::enter();
                        std::task::ready!(fut.as_mut().poll(cx))
                    };
                    *slot = acquired;
                    let (sent, limit) = (sent.clone(), *limit);
                    state.set(State::Sending { fut, sent, limit });
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| polled_after_completion(false))));
                }
                StateProj::Sending { fut, sent, limit } => {
                    let polled = {
                        let _caller = CallerScope::enter();
                        fut.poll(cx)
                    };
                    let resp = match polled {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(resp)) => resp,
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Err(send_error(e, sent.may_have_been_sent())))
                        }
                    };
                    let limit = *limit;
                    let (parts, body) = resp.into_parts();
                    // A declared length over the cap fails before any of the body is read.
                    if body.size_hint().lower() > limit as u64 {
                        return Poll::Ready(Err(too_large(limit)));
                    }
                    state.set(State::Reading {
                        body,
                        parts: Some(parts),
                        limit,
                        first: None,
                        more: None,
                    });
                }
                StateProj::Reading {
                    mut body,
                    parts,
                    limit,
                    first,
                    more,
                } => loop {
                    let frame = match body.as_mut().poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(frame))) => frame,
                        Poll::Ready(Some(Err(e))) => {
                            return Poll::Ready(Err(TransportError::new(
                                TransportErrorKind::ResponseBody,
                                true,
                                error_chain(&e),
                                Some(Box::new(e)),
                            )))
                        }
                        Poll::Ready(None) => {
                            let Some(parts) = parts.take() else {
                                return Poll::Ready(Err(polled_after_completion(true)));
                            };
                            let data = match (more.take(), first.take()) {
                                (Some(buf), _) => buf.freeze(),
                                (None, Some(chunk)) => chunk,
                                (None, None) => Bytes::new(),
                            };
                            let mut resp = http::Response::from_parts(parts, data);
                            // Decoded once here, read by every classifier and span.
                            crate::codec::keep_decoded_error(&mut resp);
                            return Poll::Ready(Ok(resp));
                        }
                    };
                    // Trailers carry nothing Lambda uses; only data counts.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let so_far = match (&*more, &*first) {
                        (Some(buf), _) => buf.len(),
                        (None, Some(chunk)) => chunk.len(),
                        (None, None) => 0,
                    };
                    let received = so_far.saturating_add(data.len());
                    if received > *limit {
                        return Poll::Ready(Err(too_large(*limit)));
                    }
                    if let Some(buf) = more {
                        buf.extend_from_slice(&data);
                    } else if let Some(chunk) = first.take() {
                        let expected =
                            usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
                        let mut buf =
                            BytesMut::with_capacity(received.saturating_add(expected).min(*limit));
                        buf.extend_from_slice(&chunk);
                        buf.extend_from_slice(&data);
                        *more = Some(buf);
                    } else {
                        *first = Some(data);
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(t: &HyperTransport, uri: &str) -> bool {
        t.refuse(&uri.parse().expect("a URI")).is_some()
    }

    #[test]
    fn plain_http_only_to_loopback_and_the_remembered_endpoint_does_not_widen_it() {
        let t = HyperTransport::new(TransportConfig::default()).expect("a transport");
        assert!(refused(&t, "http://203.0.113.10:9000/f"));
        assert!(!refused(&t, "http://127.0.0.1:9000/f"));
        // Now remembered: the same authority passes again, others are checked afresh.
        assert!(!refused(&t.clone(), "http://127.0.0.1:9000/g"));
        assert!(refused(&t, "http://127.0.0.1.example.com:9000/f"));
        assert!(refused(&t, "http://203.0.113.10:9000/f"));
        assert!(!refused(&t, "http://[::1]:9000/f"));
        assert!(!refused(&t, "http://LocalHost:9000/f"));
        assert!(refused(&t, "ftp://127.0.0.1/f"));
        // A port out of range would go to the default port: refused.
        assert!(refused(&t, "http://127.0.0.1:99999/f"));
        assert!(refused(&t, "https://lambda.us-east-1.amazonaws.com:0/f"));
        assert!(!refused(&t, "https://lambda.us-east-1.amazonaws.com:443/f"));
        let open = HyperTransport::new(TransportConfig::default().allow_insecure_http(true))
            .expect("a transport");
        assert!(!refused(&open, "http://203.0.113.10:9000/f"));
        assert!(refused(&open, "http://203.0.113.10:65536/f"));
    }

    /// Review of issue 21: a transport built for a plain-http endpoint has no trusted
    /// roots; an https request (a custom layer rewriting the URI) is refused before the
    /// network as an invalid request, not failed as a retryable connect error.
    #[test]
    fn a_plain_http_transport_refuses_https_before_the_network() {
        let config = TransportConfig {
            plain_http_only: true,
            ..TransportConfig::default()
        };
        let t = HyperTransport::new(config).expect("a transport");
        let err = t
            .refuse(
                &"https://lambda.us-east-1.amazonaws.com/f"
                    .parse()
                    .expect("a URI"),
            )
            .expect("refused");
        assert_eq!(err.kind(), TransportErrorKind::InvalidRequest);
        assert!(!refused(&t, "http://127.0.0.1:9000/f"));
    }

    /// Serves one canned HTTP/1.1 response per connection, after reading the request head.
    async fn canned(response: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream.write_all(response).await;
                    // Keep the connection open: the client decides when the body ends.
                    let _ = stream.read(&mut buf).await;
                });
            }
        });
        format!("http://{addr}/f")
    }

    async fn fetch(
        uri: &str,
        max_response_bytes: usize,
    ) -> Result<http::Response<Bytes>, TransportError> {
        use tower_service::Service as _;
        let mut t =
            HyperTransport::new(TransportConfig::default().max_response_bytes(max_response_bytes))
                .expect("a transport");
        let req = http::Request::post(uri)
            .body(Bytes::from_static(b"{}"))
            .expect("a request");
        t.call(req).await
    }

    #[tokio::test]
    async fn a_body_in_several_chunks_is_read_whole_and_in_order() {
        let uri = canned(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await;
        let resp = fetch(&uri, 100).await.expect("a response");
        assert_eq!(resp.body().as_ref(), b"hello, world");
    }

    #[tokio::test]
    async fn one_chunk_and_empty_bodies_are_read() {
        let uri = canned(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        assert_eq!(
            fetch(&uri, 5).await.expect("a response").body().as_ref(),
            b"hello"
        );
        let uri = canned(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert!(fetch(&uri, 5).await.expect("a response").body().is_empty());
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_fails_before_the_body_is_read() {
        // The server sends the head only: reading the body would wait forever.
        let uri = canned(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n").await;
        let err = fetch(&uri, 1000).await.expect_err("too large");
        assert_eq!(err.kind(), TransportErrorKind::ResponseTooLarge);
        assert!(err.request_sent());
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_cap_fails_as_too_large() {
        let uri = canned(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              6\r\n123456\r\n6\r\n789012\r\n0\r\n\r\n",
        )
        .await;
        let err = fetch(&uri, 10).await.expect_err("too large");
        assert_eq!(err.kind(), TransportErrorKind::ResponseTooLarge);
        // Exactly at the cap is allowed.
        let resp = fetch(&uri, 12).await.expect("a response");
        assert_eq!(resp.body().as_ref(), b"123456789012");
    }
}
