//! Spans for operations and attempts, described by a pluggable [`Describe`].
//!
//! [`TraceLayer`] wraps a service in a span per call and reports the outcome into it.
//! What the span is called, which fields it has and what a response or error adds is
//! asked of a [`Describe`] implementation: [`HttpDescribe`] here (method, host, status;
//! OpenTelemetry HTTP names), and `invoke-stack`'s Lambda description (`Lambda.Invoke`,
//! `rpc.*`, `faas.*`, fault, may-have-run, and the log tail when asked for). Use it
//! twice in a stack: once outermost for the operation, once inside the retry layer for
//! each attempt.
//!
//! The retry and timeout layers of this crate emit their decisions as events (`retry
//! scheduled`, `throttled`, `timed out`), which land in these spans.
//!
//! # Relation to tower-http's `TraceLayer`
//!
//! tower-http's `TraceLayer` makes one span per HTTP request and classifies responses
//! with its `ClassifyResponse` traits (success or failure, by status or gRPC code). That
//! fits generic HTTP, but not a call that is one operation of several attempts, whose
//! outcome needs more than success/failure (fault, throttle reason, whether the function
//! may have run) and whose errors are typed errors of the stack rather than HTTP
//! statuses. So this layer takes a describer for spans and outcomes instead of a
//! classifier; the retry decision has its own trait (`retry::ClassifyRetry`).
//!
//! # Secrets
//!
//! Nothing here records a header value or a body; describers decide what to record and
//! the provided ones record only allowlisted headers.
//!
//! # Text from the server
//!
//! Whatever a describer records of a response (headers, an error message) is the
//! server's text, or a proxy's: record it through [`Untrusted`], which caps it at
//! [`MAX_UNTRUSTED_CHARS`] and escapes control characters, so that it can neither flood
//! a log nor forge lines in it.
//!
//! # Example
//!
//! ```
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use invoke_layers::trace::{HttpDescribe, TraceLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(TraceLayer::new(HttpDescribe::default()))
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     }));
//! svc.oneshot(http::Request::new(())).await.unwrap();
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

mod untrusted;

pub use untrusted::{Untrusted, MAX_UNTRUSTED_CHARS};

/// Describes calls of a service in spans.
///
/// ```
/// use std::time::Duration;
/// use invoke_layers::trace::{Describe, TraceLayer, Untrusted};
/// use tracing::{field::Empty, Span};
///
/// /// A span per call of a queue API, with the queue's name and the answer's status.
/// #[derive(Clone)]
/// struct QueueCalls;
///
/// impl<B, RB, E: std::fmt::Display> Describe<B, RB, E> for QueueCalls {
///     fn make_span(&self, req: &http::Request<B>) -> Span {
///         tracing::info_span!(
///             "queue.send",
///             queue = req.uri().path(),
///             otel.kind = "client",
///             http.response.status_code = Empty,
///             otel.status_code = Empty,
///         )
///     }
///     fn on_response(&self, span: &Span, resp: &http::Response<RB>, elapsed: Duration) {
///         span.record("http.response.status_code", resp.status().as_u16());
///         if !resp.status().is_success() {
///             span.record("otel.status_code", "ERROR");
///         }
///         // Text from the server goes through `Untrusted` (capped, escaped).
///         let request_id = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok());
///         tracing::debug!(parent: span, elapsed_ms = elapsed.as_millis() as u64,
///             request_id = request_id.map(|v| Untrusted::new(v).to_string()), "sent");
///     }
///     fn on_error(&self, span: &Span, err: &E, _elapsed: Duration) {
///         span.record("otel.status_code", "ERROR");
///         tracing::debug!(parent: span, error = %err, "failed");
///     }
/// }
///
/// let trace = TraceLayer::new(QueueCalls);
/// # let _ = trace;
/// ```
pub trait Describe<B, RB, E>: Clone + Send + Sync + 'static {
    /// The span for this call. Fields to fill later are declared `tracing::field::Empty`.
    fn make_span(&self, req: &http::Request<B>) -> Span;
    /// Records a response (and may emit events) in the span.
    fn on_response(&self, span: &Span, resp: &http::Response<RB>, elapsed: Duration);
    /// Records an error in the span.
    fn on_error(&self, span: &Span, err: &E, elapsed: Duration);
}

/// A describer for any HTTP service: a DEBUG span `http.request` with
/// `http.request.method`, `server.address` and, later, `http.response.status_code`.
/// For OpenTelemetry (through `tracing-opentelemetry`) the span is of kind client
/// (`otel.kind`), and a failure (an error, or a 4xx/5xx response) sets
/// `otel.status_code = "ERROR"` with a description and `error.type`, as the HTTP
/// semantic conventions say.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpDescribe;

impl<B, RB, E: fmt::Display> Describe<B, RB, E> for HttpDescribe {
    fn make_span(&self, req: &http::Request<B>) -> Span {
        tracing::debug_span!(
            "http.request",
            "http.request.method" = %req.method(),
            "server.address" = req.uri().host().unwrap_or_default(),
            "http.response.status_code" = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            "otel.kind" = "client",
            "otel.status_code" = tracing::field::Empty,
            "otel.status_description" = tracing::field::Empty,
        )
    }

    fn on_response(&self, span: &Span, resp: &http::Response<RB>, elapsed: Duration) {
        let status = resp.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_client_error() || status.is_server_error() {
            span.record("error.type", status.as_str());
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", status.as_str());
        }
        tracing::debug!(parent: span, elapsed_ms = elapsed.as_secs_f64() * 1e3, "response");
    }

    fn on_error(&self, span: &Span, err: &E, elapsed: Duration) {
        span.record("error.type", "error");
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_description", tracing::field::display(err));
        tracing::debug!(parent: span, elapsed_ms = elapsed.as_secs_f64() * 1e3, error = %err, "failed");
    }
}

/// The tracing layer; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct TraceLayer<D> {
    describe: D,
}

impl<D> TraceLayer<D> {
    /// Traces calls with `describe`.
    pub fn new(describe: D) -> Self {
        Self { describe }
    }
}

impl<S, D: Clone> Layer<S> for TraceLayer<D> {
    type Service = Trace<S, D>;
    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            describe: self.describe.clone(),
        }
    }
}

/// Service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Trace<S, D> {
    inner: S,
    describe: D,
}

impl<S, D> Trace<S, D> {
    /// Traces the calls of `inner` with `describe`.
    pub fn new(inner: S, describe: D) -> Self {
        Self { inner, describe }
    }

    /// A [`TraceLayer`] with `describe`.
    pub fn layer(describe: D) -> TraceLayer<D> {
        TraceLayer::new(describe)
    }

    inner_service_accessors!();
}

impl<S, D, B, RB> Service<http::Request<B>> for Trace<S, D>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    D: Describe<B, RB, S::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, D, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = self.describe.make_span(&req);
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        // No clock read for a span nobody records.
        let start = (!span.is_disabled()).then(Instant::now);
        ResponseFuture {
            inner: fut,
            span,
            describe: self.describe.clone(),
            start,
            done: false,
            _body: std::marker::PhantomData,
        }
    }
}

pin_project! {
    /// Response future of [`Trace`].
    pub struct ResponseFuture<F, D, B> {
        #[pin]
        inner: F,
        span: Span,
        describe: D,
        start: Option<Instant>,
        done: bool,
        _body: std::marker::PhantomData<fn(B)>,
    }
}

impl<F, D, B, RB, E> Future for ResponseFuture<F, D, B>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    D: Describe<B, RB, E>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            std::task::ready!(this.inner.poll(cx))
        };
        // Recorded once: a poll after completion is the inner future's to answer (this
        // crate's futures answer it with an error), and is not a second outcome.
        if !std::mem::replace(this.done, true) {
            let elapsed = this.start.map_or(Duration::ZERO, |s| s.elapsed());
            match &result {
                Ok(resp) => this.describe.on_response(this.span, resp, elapsed),
                Err(e) => this.describe.on_error(this.span, e, elapsed),
            }
        }
        Poll::Ready(result)
    }
}

/// Response headers safe to record: no credentials, signatures or user data.
pub const SAFE_HEADERS: &[&str] = &[
    "content-length",
    "content-type",
    "date",
    "retry-after",
    "x-amzn-requestid",
    "x-amzn-errortype",
    "x-amz-executed-version",
    "x-amz-function-error",
    "x-amz-invocation-type",
    "x-amz-log-type",
    "x-amz-date",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
];

/// Emits one TRACE event per header: the value for [`SAFE_HEADERS`] (as [`Untrusted`]
/// text), the name only for the rest (so `authorization` and `x-amz-security-token` never
/// appear).
pub fn trace_headers(direction: &'static str, headers: &http::HeaderMap) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    for (name, value) in headers {
        if SAFE_HEADERS.contains(&name.as_str()) {
            tracing::trace!(direction, header = %name, value = %Untrusted::bytes(value.as_bytes()), "header");
        } else {
            tracing::trace!(direction, header = %name, value = "<redacted>", "header");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Names(Arc<Mutex<Vec<String>>>);
    impl<S> tracing_subscriber::Layer<S> for Names
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(attrs.metadata().name().to_owned());
        }
        fn on_event(&self, e: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
            let parent = ctx
                .event_span(e)
                .map(|s| s.name().to_owned())
                .unwrap_or_default();
            self.0.lock().unwrap().push(format!("event in {parent}"));
        }
    }

    #[tokio::test]
    async fn spans_wrap_the_call_and_record_the_outcome() {
        let names = Names::default();
        let subscriber = tracing_subscriber::registry().with(names.clone());
        let _g = tracing::subscriber::set_default(subscriber);
        let svc =
            TraceLayer::new(HttpDescribe).layer(tower::service_fn(|_r: http::Request<()>| async {
                tracing::info!("inside");
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            }));
        svc.oneshot(http::Request::new(())).await.unwrap();
        let seen = names.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "http.request",
                "event in http.request",
                "event in http.request"
            ]
        );
    }

    /// Issue 16, item 2: a poll after completion goes to the inner future (which
    /// answers it) and records no second outcome.
    #[cfg(feature = "timeout")]
    #[tokio::test]
    async fn polled_after_completion_records_one_outcome() {
        use tower::{Layer, Service};
        let names = Names::default();
        let subscriber = tracing_subscriber::registry().with(names.clone());
        let _g = tracing::subscriber::set_default(subscriber);
        let (mock, mut handle) = tower_test::mock::pair::<http::Request<()>, http::Response<()>>();
        handle.allow(1);
        // The timeout future answers a poll after completion with an error.
        let mut traced = TraceLayer::new(HttpDescribe)
            .layer(crate::timeout::TimeoutLayer::per_request().layer(mock));
        std::future::poll_fn(|cx| traced.poll_ready(cx))
            .await
            .unwrap();
        let mut fut = tokio_test::task::spawn(traced.call(http::Request::new(())));
        tokio_test::assert_pending!(fut.poll());
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(http::Response::new(()));
        tokio_test::assert_ready_ok!(fut.poll());
        let events = |n: &Names| {
            n.0.lock()
                .unwrap()
                .iter()
                .filter(|e| e.starts_with("event"))
                .count()
        };
        let once = events(&names);
        let again = tokio_test::assert_ready_err!(fut.poll());
        assert!(
            again.to_string().contains("polled after completion"),
            "{again}"
        );
        assert_eq!(events(&names), once, "no second outcome recorded");
    }

    #[test]
    fn traced_header_values_are_capped_and_escaped() {
        #[derive(Clone, Default)]
        struct Values(Arc<Mutex<Vec<String>>>);
        struct Visit<'a>(&'a mut Vec<String>);
        impl tracing::field::Visit for Visit<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn fmt::Debug) {
                if f.name() == "value" {
                    self.0.push(format!("{v:?}"));
                }
            }
        }
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Values {
            fn on_event(
                &self,
                e: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                e.record(&mut Visit(&mut self.0.lock().unwrap()));
            }
        }
        let values = Values::default();
        let _g =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(values.clone()));
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-amz-function-error",
            http::HeaderValue::from_bytes(b"Unhandled\xff\tx").unwrap(),
        );
        let long = "r".repeat(5000);
        h.insert("x-amzn-requestid", long.parse().unwrap());
        trace_headers("response", &h);
        let seen = values.0.lock().unwrap().clone();
        assert_eq!(seen[0], r"Unhandled\xff\tx");
        assert!(
            seen[1].len() < MAX_UNTRUSTED_CHARS + 32,
            "{}",
            seen[1].len()
        );
        assert!(seen[1].ends_with(&format!("[{} more bytes]", 5000 - MAX_UNTRUSTED_CHARS)));
    }
}
