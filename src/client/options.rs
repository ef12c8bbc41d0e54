//! Per-call options: one call's own deadline, attempt timeout, idempotence and attempt
//! limit, over the client's settings.

use std::time::Duration;

use crate::model::{Field, Problem, ValidationError};

/// Options for one call, set on the request
/// ([`InvokeRequestBuilder::options`](crate::model::InvokeRequestBuilder::options) or
/// [`InvokeRequest::with_options`](crate::InvokeRequest::with_options)). Each one left
/// unset keeps the client's setting.
///
/// Unlike wrapping the call in `tokio::time::timeout`, these keep the typed error: a call
/// that runs out of time fails with [`InvokeErrorKind::Timeout`](crate::InvokeErrorKind),
/// with its attempt count and whether the function may have run.
///
/// ```
/// use std::time::Duration;
/// use invoke_stack::{CallOptions, InvokeRequest};
///
/// let req = InvokeRequest::builder("my-function")
///     .payload(r#"{"id":1}"#)
///     .options(
///         CallOptions::new()
///             .timeout(Duration::from_secs(5)) // the whole call, retries included
///             .attempt_timeout(Duration::from_secs(2))
///             .idempotent(true) // safe to repeat after an ambiguous failure
///             .max_attempts(2),
///     )
///     .build()?;
/// assert_eq!(req.options().max_attempts, Some(2));
/// # Ok::<(), invoke_stack::model::ValidationError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// The call's deadline, counted from the call's start (its first poll), as the
    /// client's operation timeout is: every attempt, backoff and rate-limit wait fits in
    /// it. The earlier of this and the client's operation timeout applies. Zero is a
    /// validation error.
    pub timeout: Option<Duration>,
    /// Each attempt's timeout, instead of the one the client derives from the invocation
    /// type and the function's settings. Zero is a validation error.
    pub attempt_timeout: Option<Duration>,
    /// Whether the call may be repeated after a failure that may have reached Lambda
    /// (instead of the function's setting or the retry policy's default).
    pub idempotent: Option<bool>,
    /// The most attempts for this call (`1`: never retried), instead of the retry
    /// policy's. Zero is a validation error.
    pub max_attempts: Option<u32>,
}

impl CallOptions {
    /// No per-call option: the client's settings apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the call's deadline ([`timeout`](Self::timeout)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets each attempt's timeout ([`attempt_timeout`](Self::attempt_timeout)).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Sets whether the call is idempotent ([`idempotent`](Self::idempotent)).
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }

    /// Sets the most attempts ([`max_attempts`](Self::max_attempts)).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Whether every option is unset.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the options: a zero timeout, attempt timeout or attempt limit is an error
    /// (the request builder and `invoke` check it before anything is sent).
    ///
    /// ```
    /// use std::time::Duration;
    /// use invoke_stack::CallOptions;
    ///
    /// assert!(CallOptions::new().timeout(Duration::ZERO).validate().is_err());
    /// assert!(CallOptions::new().max_attempts(0).validate().is_err());
    /// assert!(CallOptions::new().max_attempts(1).validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), ValidationError> {
        let zero = |option| {
            Err(ValidationError::new(
                Field::CallOptions,
                Problem::Zero { option },
            ))
        };
        if self.timeout.is_some_and(|d| d.is_zero()) {
            return zero("timeout");
        }
        if self.attempt_timeout.is_some_and(|d| d.is_zero()) {
            return zero("attempt_timeout");
        }
        if self.max_attempts == Some(0) {
            return zero("max_attempts");
        }
        Ok(())
    }
}
