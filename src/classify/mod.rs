//! How the retry layer should treat each Lambda outcome: [`LambdaClassifier`], the
//! Lambda implementation of [`ClassifyRetry`].
//!
//! | outcome | class | may have reached the function? |
//! |---|---|---|
//! | 2xx | final (a function error is a result) | — |
//! | 200 + `X-Amz-Function-Error: Unhandled`, with [`LambdaClassifier::retry_unhandled`] | transient | yes: retried only when idempotent |
//! | `TooManyRequestsException`, any 429, other AWS throttling codes | throttle (honours `Retry-After`) | no |
//! | `EC2ThrottledException` (502) | throttle | no |
//! | `ResourceNotReady`, `EC2Unexpected`, `ENILimitReached`, `SubnetIPAddressLimitReached` (502) | transient: these heal | no |
//! | `EC2AccessDenied`, `InvalidSubnetID`, `InvalidSecurityGroupID`, `KMS*`, `InvalidRuntime`, `InvalidZipFile` (502) | not retried: configuration errors never heal by themselves (AWS standard mode retries them) | no |
//! | 500 `ServiceException`, unmodeled 5xx (503/504 from a proxy, HTML pages) | transient | maybe |
//! | signature expired / not yet current (clock skew) | transient when the signer corrected its offset from the answer ([`ClockSkewCorrected`]); not retried when it refused the offset (beyond its limit) | no |
//! | other 4xx | not retried | no |
//! | connect refused, DNS, TLS handshake cut, connect timeout (DNS + TCP + TLS) | transient | no |
//! | TLS certificate rejected (untrusted, expired, wrong name) | not retried: a configuration fault | no |
//! | response body over the size cap | not retried: the same response would come again | maybe |
//! | reset, truncated body, attempt timeout after the request was written | transient | maybe |
//! | request rejected locally (invalid, unsigned) | not retried | no |
//!
//! With the `tower-http` feature, [`LambdaClassifier`] is also a tower-http
//! `ClassifyResponse` and `MakeClassifier` (failure class [`LambdaFailureClass`]), for
//! tower-http's `TraceLayer` and anything else built on its `classify` module.

#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
mod tower_http_impl;
#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
pub use tower_http_impl::LambdaFailureClass;

use invoke_layers::retry::{Classification, ClassifyRetry, Reached, RetryKind};
use invoke_layers::sigv4::{ClockSkewCorrected, CredentialsError, SigV4Error, SigningError};
use invoke_layers::timeout::TimeoutError as LayerTimeoutError;

use crate::codec::{self, BufferedBody};
use crate::error::{ApiError, RunStatus, TimeoutError, Timer, TransportError};

/// Classifies a failure of the stack below the retry layer, for [`LambdaClassifier`].
/// Implement it for the error of a layer of your own that sits under the retry layer.
///
/// ```
/// use invoke_stack::classify::ClassifyError;
/// use invoke_stack::layers::retry::{Classification, Reached, RetryKind};
///
/// /// A layer of the caller's that waits for a token and may give up.
/// #[derive(Debug)]
/// enum TokenError {
///     /// No token in time: nothing was sent, trying again may work.
///     Busy,
///     /// The token store refused: trying again will not help.
///     Denied,
/// }
///
/// impl ClassifyError for TokenError {
///     fn classification(&self) -> Classification {
///         match self {
///             TokenError::Busy => Classification::Retryable {
///                 kind: RetryKind::Throttling,
///                 retry_after: None,
///                 reached: Reached::No,
///             },
///             TokenError::Denied => Classification::NotRetryable,
///         }
///     }
/// }
/// assert_eq!(TokenError::Denied.classification(), Classification::NotRetryable);
/// ```
pub trait ClassifyError {
    /// What this error means for retrying.
    fn classification(&self) -> Classification;
}

fn transient(reached: bool) -> Classification {
    Classification::Retryable {
        kind: RetryKind::Transient,
        retry_after: None,
        reached: if reached { Reached::Maybe } else { Reached::No },
    }
}

impl ClassifyError for TransportError {
    fn classification(&self) -> Classification {
        if self.is_retryable() {
            transient(self.request_sent())
        } else {
            Classification::NotRetryable
        }
    }
}

impl ClassifyError for TimeoutError {
    fn classification(&self) -> Classification {
        match self.timer() {
            // The operation's time is up: nothing left to retry with.
            Timer::Operation => Classification::NotRetryable,
            _ => transient(self.request_sent()),
        }
    }
}

impl ClassifyError for CredentialsError {
    fn classification(&self) -> Classification {
        if self.is_retryable() {
            transient(false)
        } else {
            Classification::NotRetryable
        }
    }
}

impl ClassifyError for SigningError {
    fn classification(&self) -> Classification {
        Classification::NotRetryable
    }
}

impl<E: ClassifyError> ClassifyError for LayerTimeoutError<E> {
    fn classification(&self) -> Classification {
        match self {
            LayerTimeoutError::Elapsed(e) => e.classification(),
            LayerTimeoutError::Inner(e) => e.classification(),
            // A misused future: repeating the call cannot help.
            _ => Classification::NotRetryable,
        }
    }
}

impl<E: ClassifyError> ClassifyError for SigV4Error<E> {
    fn classification(&self) -> Classification {
        match self {
            SigV4Error::Credentials(e) => e.classification(),
            SigV4Error::Signing(e) => e.classification(),
            SigV4Error::Inner(e) => e.classification(),
            _ => Classification::NotRetryable,
        }
    }
}

impl<E: ClassifyError> ClassifyError for invoke_layers::rate_limit::RateLimitError<E> {
    fn classification(&self) -> Classification {
        match self {
            // The attempt gate refused (fail-fast, or no slot before the deadline).
            invoke_layers::rate_limit::RateLimitError::Limited(_) => Classification::NotRetryable,
            invoke_layers::rate_limit::RateLimitError::Inner(e) => e.classification(),
            // A refusal of a kind added later.
            _ => Classification::NotRetryable,
        }
    }
}

impl ClassifyError for crate::error::InvokeError {
    fn classification(&self) -> Classification {
        use crate::error::InvokeErrorKind as K;
        match self.kind() {
            K::Api(e) => e.classification(),
            K::Transport(e) => e.classification(),
            K::Timeout(e) => e.classification(),
            K::Credentials(e) => e.classification(),
            _ => Classification::NotRetryable,
        }
    }
}

impl ClassifyError for ApiError {
    fn classification(&self) -> Classification {
        let reached = if self.may_have_run() == RunStatus::Unknown {
            Reached::Maybe
        } else {
            Reached::No
        };
        if self.is_clock_skew() {
            transient(false)
        } else if self.is_throttle() {
            Classification::Retryable {
                kind: RetryKind::Throttling,
                retry_after: self.retry_after(),
                reached: Reached::No,
            }
        } else if self.is_retryable() {
            Classification::Retryable {
                kind: RetryKind::Transient,
                retry_after: self.retry_after(),
                reached,
            }
        } else {
            Classification::NotRetryable
        }
    }
}

/// The Lambda classifier (see the [module docs](self) for the table).
///
/// ```
/// use invoke_stack::classify::LambdaClassifier;
/// use invoke_stack::layers::retry::RetryLayer;
/// let retry = RetryLayer::new(LambdaClassifier::default().retry_unhandled(true));
/// # let _ = retry;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LambdaClassifier {
    retry_unhandled: bool,
}

impl LambdaClassifier {
    /// Also retry `Unhandled` function errors (crash, timeout, out of memory). They ran
    /// the function, so they are retried only for requests marked idempotent.
    pub fn retry_unhandled(mut self, yes: bool) -> Self {
        self.retry_unhandled = yes;
        self
    }
}

impl<E: ClassifyError, RB: BufferedBody> ClassifyRetry<http::Response<RB>, E> for LambdaClassifier {
    fn classify(&self, result: &Result<http::Response<RB>, E>) -> Classification {
        let resp = match result {
            Ok(r) => r,
            Err(e) => return e.classification(),
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            let unhandled = resp
                .headers()
                .get(codec::X_AMZ_FUNCTION_ERROR)
                .is_some_and(|v| v == "Unhandled");
            return if unhandled && self.retry_unhandled {
                transient(true)
            } else {
                Classification::Final
            };
        }
        match codec::api_error(resp) {
            // Signing again helps only when the signer corrected its clock offset from
            // this answer; one beyond its limit (or no signer) would fail the same way.
            Some(api) if api.is_clock_skew() => {
                let corrected = resp
                    .extensions()
                    .get::<ClockSkewCorrected>()
                    .is_some_and(|c| c.0);
                if corrected {
                    api.classification()
                } else {
                    Classification::NotRetryable
                }
            }
            Some(api) => api.classification(),
            None => Classification::Final,
        }
    }

    /// Two Lambda classifiers with the same settings classify alike: an attempt is
    /// classified once, by the innermost layer, and the others reuse it.
    fn cache_key(&self) -> Option<u64> {
        Some(u64::from(self.retry_unhandled))
    }
}
