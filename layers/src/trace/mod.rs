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

mod describe;
mod future;
mod layer;
mod service;
mod untrusted;

pub use describe::{Describe, HttpDescribe};
pub use future::ResponseFuture;
pub use layer::TraceLayer;
pub use service::Trace;
pub use untrusted::{Untrusted, MAX_UNTRUSTED_CHARS};

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
    use tower_layer::Layer as _;
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
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
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
