//! What a response or error means for retrying, shared by the layers that ask it (the
//! retry layer, the rate limiter's feedback, the circuit breaker): [`Classification`],
//! the [`ClassifyRetry`] trait, the generic [`HttpClassifier`], `Retry-After`.
//!
//! Always compiled, like tower-http's `classify` module, so a layer that only reads a
//! classification does not compile the retry layer.

use std::time::Duration;

mod retry_after;

use retry_after::retry_after_header;
pub use retry_after::{parse_retry_after, RETRY_AFTER_CAP};

/// Why a failure may succeed when tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryKind {
    /// The server is throttling: slow down.
    Throttling,
    /// A transient fault: 5xx, timeouts, connection errors.
    Transient,
}

/// Whether a failed request may have reached its target (for Lambda: whether the
/// function may have run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reached {
    /// Certainly not (refused before it ran, or never left the machine).
    No,
    /// Perhaps (sent, and the answer was lost; or the server said it does not know).
    Maybe,
    /// Ask the transport: the attempt's [`SendProgress`](crate::deadline::SendProgress).
    IfSent,
}

/// What a response or error means for retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Classification {
    /// Done: success, or a result to hand back as it is.
    Final,
    /// A failure that cannot succeed unchanged (client fault, configuration error).
    NotRetryable,
    /// A failure that may succeed when tried again.
    Retryable {
        /// Throttle or transient.
        kind: RetryKind,
        /// The server's hint of when to try again.
        retry_after: Option<Duration>,
        /// Whether this attempt may have reached the target.
        reached: Reached,
    },
}

/// Classifies the outcome of one attempt. The retry layer asks only this; implement it to
/// use the layer on any service.
///
/// ```
/// use std::time::Duration;
/// use invoke_layers::retry::{Classification, ClassifyRetry, Reached, RetryKind, RetryLayer};
///
/// /// A service that answers 503 while it warms up: safe to retry, it did nothing.
/// #[derive(Clone)]
/// struct WarmingUp;
///
/// impl<B, E> ClassifyRetry<http::Response<B>, E> for WarmingUp {
///     fn classify(&self, result: &Result<http::Response<B>, E>) -> Classification {
///         match result {
///             Ok(r) if r.status() == 503 => Classification::Retryable {
///                 kind: RetryKind::Transient,
///                 retry_after: Some(Duration::from_millis(200)),
///                 reached: Reached::No,
///             },
///             Ok(r) if r.status().is_success() => Classification::Final,
///             Ok(_) => Classification::NotRetryable,
///             // A connection error: ask the transport whether the request left.
///             Err(_) => Classification::Retryable {
///                 kind: RetryKind::Transient,
///                 retry_after: None,
///                 reached: Reached::IfSent,
///             },
///         }
///     }
/// }
///
/// let retry = RetryLayer::new(WarmingUp);
/// # let _ = retry;
/// ```
pub trait ClassifyRetry<Res, E>: Send + Sync + 'static {
    /// What this outcome means.
    fn classify(&self, result: &Result<Res, E>) -> Classification;

    /// Identifies this classifier's settings, when two classifiers of the same type with
    /// the same key classify every outcome alike. Then the first layer to classify an
    /// attempt's response keeps the answer in its extensions ([`Classified`]) and the
    /// layers outside it reuse it instead of classifying again (see [`classify_once`]).
    /// `None` (the default) never shares. A layer between them that rewrites responses
    /// must remove the [`Classified`] extension of those it changes.
    fn cache_key(&self) -> Option<u64> {
        None
    }
}

/// One attempt's classification, kept in its response's extensions by the first layer
/// that made it, with the classifier that did (its type and [`cache_key`]), so that the
/// layers outside (rate-limit feedback, retry, circuit breaker) reuse it.
///
/// [`cache_key`]: ClassifyRetry::cache_key
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// What the response means.
    pub classification: Classification,
    classifier: (std::any::TypeId, u64),
}

/// The classification of `result` by `classifier`: the one kept in the response's
/// extensions by an inner layer with the same classifier, or a new one, then kept there
/// for the layers outside. Only failed responses are kept: a 2xx is classified from its
/// status line each time, for less than keeping it costs; an error result is classified
/// each time too (errors carry no extensions, and classifying one reads no body).
///
/// ```
/// use invoke_layers::retry::{classify_once, Classification, ClassifyRetry};
///
/// struct Counting(std::sync::atomic::AtomicU32);
/// impl<B, E> ClassifyRetry<http::Response<B>, E> for Counting {
///     fn classify(&self, _: &Result<http::Response<B>, E>) -> Classification {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///         Classification::Final
///     }
///     fn cache_key(&self) -> Option<u64> {
///         Some(0)
///     }
/// }
/// let c = Counting(Default::default());
/// let mut result: Result<_, ()> = Ok(http::Response::builder().status(503).body(()).unwrap());
/// classify_once(&c, &mut result);
/// classify_once(&c, &mut result); // a layer outside: reused
/// assert_eq!(c.0.into_inner(), 1);
/// ```
pub fn classify_once<C, B, E>(
    classifier: &C,
    result: &mut Result<http::Response<B>, E>,
) -> Classification
where
    C: ClassifyRetry<http::Response<B>, E>,
{
    let Some(key) = classifier.cache_key() else {
        return classifier.classify(result);
    };
    // A success is classified from its status line, for less than keeping the answer
    // would cost (the response's first extension allocates): only failures are kept.
    if result.as_ref().is_ok_and(|r| r.status().is_success()) {
        return classifier.classify(result);
    }
    let id = (std::any::TypeId::of::<C>(), key);
    if let Ok(resp) = &*result {
        if let Some(c) = resp.extensions().get::<Classified>() {
            if c.classifier == id {
                return c.classification;
            }
        }
    }
    let classification = classifier.classify(result);
    if let Ok(resp) = result {
        resp.extensions_mut().insert(Classified {
            classification,
            classifier: id,
        });
    }
    classification
}

/// The classification kept in a response's extensions by `classifier`'s type and
/// settings, if an inner layer made one.
#[cfg(feature = "circuit-breaker")]
pub(crate) fn cached<C, B, E>(classifier: &C, resp: &http::Response<B>) -> Option<Classification>
where
    C: ClassifyRetry<http::Response<B>, E>,
{
    let key = classifier.cache_key()?;
    resp.extensions()
        .get::<Classified>()
        .filter(|c| c.classifier == (std::any::TypeId::of::<C>(), key))
        .map(|c| c.classification)
}

/// AWS throttling error codes (standard retry mode).
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// A classifier for any HTTP or AWS-JSON service: the status, `x-amzn-ErrorType` and
/// `Retry-After` (seconds or an HTTP date, see [`parse_retry_after`]). 429 and the AWS throttling codes are throttles; 500, 502, 503
/// and 504 (and `RequestTimeout` codes) are transient and may have reached the server;
/// other statuses are final. Errors of the inner service are transient, reached if sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClassifier;

impl<B, E> ClassifyRetry<http::Response<B>, E> for HttpClassifier {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Classification {
        let resp = match result {
            Err(_) => {
                return Classification::Retryable {
                    kind: RetryKind::Transient,
                    retry_after: None,
                    reached: Reached::IfSent,
                }
            }
            Ok(r) => r,
        };
        let status = resp.status().as_u16();
        if status < 400 {
            return Classification::Final;
        }
        let code = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(':').next().unwrap_or(c));
        let retry_after = retry_after_header(resp.headers());
        if status == 429 || code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
            return Classification::Retryable {
                kind: RetryKind::Throttling,
                retry_after,
                reached: Reached::No,
            };
        }
        if matches!(status, 500 | 502 | 503 | 504)
            || code.is_some_and(|c| c == "RequestTimeout" || c == "RequestTimeoutException")
        {
            return Classification::Retryable {
                kind: RetryKind::Transient,
                retry_after,
                reached: Reached::Maybe,
            };
        }
        Classification::NotRetryable
    }
}
