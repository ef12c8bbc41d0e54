//! [`Describe`]: what a span says of a call; [`HttpDescribe`] for any HTTP service.

use std::fmt;
use std::time::Duration;

use tracing::Span;

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
        // Error text may carry a server's words: capped and escaped, as in every span.
        span.record(
            "otel.status_description",
            super::Untrusted::new(&err.to_string()).to_string(),
        );
        tracing::debug!(parent: span, elapsed_ms = elapsed.as_secs_f64() * 1e3, error = %err, "failed");
    }
}
