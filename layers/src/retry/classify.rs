use std::time::Duration;

use super::retry_after::retry_after_header;

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
    /// Ask the transport: the attempt's [`SendProgress`](crate::timeout::SendProgress).
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
/// `Retry-After` (seconds or an HTTP date, see [`parse_retry_after`](super::parse_retry_after)). 429 and the AWS throttling codes are throttles; 500, 502, 503
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
