//! Generic tower middleware for AWS-style HTTP services.
//!
//! Each layer lives in its own module behind its own cargo feature (like tower-http) and
//! works on any `tower::Service<http::Request<B>>`: nothing here knows about Lambda. What
//! a layer needs to know about a response it asks through a small trait that the caller
//! implements.
//!
//! | module | feature | what it does |
//! |---|---|---|
//! | [`sigv4`] | `sigv4` | signs requests with AWS SigV4 (`aws-sigv4`), credentials from providers |
//! | [`rate_limit`] | `rate-limit` | rates (global, per key; GCRA), per-key concurrency caps, adaptive limits |
//! | `rate_limit::redis` | `redis` | the rates and concurrency caps shared by many processes through Redis |
//! | [`circuit_breaker`] | `circuit-breaker` | fails fast per key while a target is broken, probes, recovers |
//! | [`retry`] | `retry` | retries by failure class, backoff with jitter, `Retry-After`, quota, may-have-run |
//! | [`timeout`] | `timeout` | operation deadline (in the extensions) and per-attempt timeouts |
//! | [`trace`] | `trace` | operation and attempt spans with pluggable descriptions, no secrets |
//! | [`keepalive`] | `keepalive` | TCP keep-alive on the connections a connector opens |
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `get_ref`, `get_mut` and `into_inner` for a service wrapping `inner` (as tower-http's
/// `define_inner_service_accessors!`).
#[allow(unused_macros)]
macro_rules! inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes this service, returning the wrapped one.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub mod circuit_breaker;
pub mod classify;
pub mod deadline;
#[cfg(feature = "keepalive")]
#[cfg_attr(docsrs, doc(cfg(feature = "keepalive")))]
pub mod keepalive;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
#[cfg(feature = "sigv4")]
#[cfg_attr(docsrs, doc(cfg(feature = "sigv4")))]
pub mod sigv4;
#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
pub mod timeout;
#[cfg(feature = "trace")]
#[cfg_attr(docsrs, doc(cfg(feature = "trace")))]
pub mod trace;

#[cfg(any(feature = "rate-limit", feature = "circuit-breaker"))]
mod maintenance;

/// A response future was polled again after it had returned its result.
///
/// tower's own futures panic then; every future of this crate answers with this error
/// instead (inside its layer's error type), so a careless caller gets an error, not a
/// panic or a future that never wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolledAfterCompletion;

impl std::fmt::Display for PolledAfterCompletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("future polled after completion")
    }
}

impl std::error::Error for PolledAfterCompletion {}

/// A boxed error, the error type tower's middleware speaks (`tower::BoxError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The inner error of one of this crate's error wrappers, as an error source.
///
/// The wrappers (`RetryError<E>`, `TimeoutError<E>`, ...) implement `Error` for every
/// inner error that is `Debug + Display`, so that they also do for a boxed inner error
/// (which does not implement `Error` itself): a layer over a service failing with
/// [`BoxError`] can be `?`-ed into a boxed error and sit under `tower::buffer`.
/// Coherence allows no impl that also forwards a typed inner error as the source, so a
/// boxed inner error is the source, and a typed one is reached with the wrapper's
/// accessors (`error()`, `into_parts()`, matching on the variant); the wrapper's
/// `Display` always includes the inner error's message.
#[cfg(any(
    feature = "sigv4",
    feature = "timeout",
    feature = "retry",
    feature = "rate-limit",
    feature = "circuit-breaker"
))]
pub(crate) fn inner_source<E: 'static>(error: &E) -> Option<&(dyn std::error::Error + 'static)> {
    let any: &dyn std::any::Any = error;
    if let Some(b) = any.downcast_ref::<BoxError>() {
        return Some(&**b);
    }
    if let Some(b) = any.downcast_ref::<Box<dyn std::error::Error + Send>>() {
        return Some(&**b);
    }
    if let Some(b) = any.downcast_ref::<Box<dyn std::error::Error>>() {
        return Some(&**b);
    }
    None
}

#[cfg(all(
    test,
    feature = "sigv4",
    feature = "timeout",
    feature = "retry",
    feature = "rate-limit",
    feature = "circuit-breaker",
    feature = "trace",
    feature = "keepalive"
))]
mod contract_tests;

#[cfg(all(
    test,
    feature = "sigv4",
    feature = "timeout",
    feature = "retry",
    feature = "rate-limit",
    feature = "circuit-breaker"
))]
mod box_error_tests {
    use super::BoxError;

    fn boxed(msg: &str) -> BoxError {
        std::io::Error::other(msg.to_owned()).into()
    }

    /// `?` into a boxed error, and the inner boxed error is the source.
    fn into_box<E: std::error::Error + Send + Sync + 'static>(e: E) -> BoxError {
        let r: Result<(), E> = Err(e);
        let f = || -> Result<(), BoxError> {
            r?;
            Ok(())
        };
        f().unwrap_err()
    }

    fn source_text(e: &BoxError) -> String {
        e.source().map(ToString::to_string).unwrap_or_default()
    }

    #[test]
    fn wrappers_of_a_boxed_error_are_errors_with_it_as_source() {
        use crate::circuit_breaker::CircuitBreakerError;
        use crate::rate_limit::RateLimitError;
        use crate::sigv4::SigV4Error;
        use crate::timeout::TimeoutError;

        let e = into_box(TimeoutError::Inner(boxed("t")));
        assert_eq!((e.to_string(), source_text(&e)), ("t".into(), "t".into()));
        let e = into_box(SigV4Error::Inner(boxed("s")));
        assert_eq!(source_text(&e), "s");
        let e = into_box(RateLimitError::Inner(boxed("r")));
        assert_eq!(source_text(&e), "r");
        let e = into_box(CircuitBreakerError::Inner(boxed("c")));
        assert_eq!(source_text(&e), "c");
        // Nested wrappers are errors too; the outer one shows the inner's message.
        let e = into_box(TimeoutError::Inner(SigV4Error::Inner(boxed("deep"))));
        assert_eq!(e.to_string(), "deep");
        // The inner error can be downcast from the source.
        let e = into_box(TimeoutError::Inner(boxed("io")));
        let io = e
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::Other);
    }

    #[tokio::test]
    async fn a_retry_over_a_boxed_error_service_sits_under_tower_buffer() {
        use tower::{ServiceBuilder, ServiceExt};

        use crate::retry::{HttpClassifier, RetryLayer, RetryPolicy};

        let inner = tower::service_fn(|_req: http::Request<bytes::Bytes>| async {
            Err::<http::Response<()>, BoxError>(boxed("refused"))
        });
        let svc = ServiceBuilder::new()
            .buffer(4)
            .layer(RetryLayer::new(HttpClassifier).policy(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            }))
            .service(inner);
        let err = svc
            .oneshot(http::Request::new(bytes::Bytes::new()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
    }
}
