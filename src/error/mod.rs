//! Typed errors: every failure says whose fault it is, whether it is a throttle,
//! whether retrying can help, and whether the function may have run.
//!
//! ```
//! use invoke_stack::error::{ApiError, ApiErrorKind, Fault, InvokeError, RunStatus};
//!
//! let err = InvokeError::from(ApiError::new(ApiErrorKind::Service, 500, None));
//! assert_eq!(err.fault(), Fault::Server);
//! assert!(err.is_retryable());
//! // A 500 may come after the function ran: retrying it is only safe when idempotent.
//! assert_eq!(err.may_have_run(), RunStatus::Unknown);
//! ```
//!
//! A function error (HTTP 200 with `X-Amz-Function-Error`) is not an error here: the
//! call succeeded and [`crate::model::InvokeResponse::function_error`] carries it.

mod api;

pub use invoke_layers::retry::{RetryStats, StopReason};

use std::fmt;
use std::time::Duration;

pub use api::{
    ApiError, ApiErrorKind, ShapeInfo, StandardClass, ThrottleReason, CLOCK_SKEW_CODES, SHAPES,
    THROTTLING_CODES, TRANSIENT_CODES,
};
pub use invoke_layers::circuit_breaker::CircuitOpen;
pub use invoke_layers::rate_limit::RateLimited;
pub use invoke_layers::sigv4::{CredentialsError, SigningError};

use crate::model::ValidationError;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The request (or the caller's configuration) must change.
    Client,
    /// The service or the network failed; the same request may succeed later.
    Server,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Client => "client",
            Fault::Server => "server",
        })
    }
}

/// Whether the function may have run when the call failed (spec §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Certainly not: the request never reached the function.
    NotRun,
    /// It ran (a result or a function error came back).
    Ran,
    /// Perhaps: the request was (or may have been) sent and the answer was lost.
    Unknown,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::NotRun => "not run",
            RunStatus::Ran => "ran",
            RunStatus::Unknown => "may have run",
        })
    }
}

/// What went wrong in the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No connection could be made (DNS, refused, unreachable, TLS handshake).
    Connect,
    /// Connecting (DNS lookup, TCP connect and TLS handshake together) took longer than
    /// the connect timeout.
    ConnectTimeout,
    /// The server's TLS certificate was rejected (untrusted issuer, expired, not valid
    /// for the host name, none presented). A configuration fault: trying again cannot
    /// succeed. Certificates are always verified.
    Certificate,
    /// The connection failed while sending the request or reading the response head
    /// (reset, closed, malformed response).
    Exchange,
    /// The response body could not be read completely (truncated, reset).
    ResponseBody,
    /// The response body is larger than the configured cap. Not retried: the same call
    /// would download the same response again.
    ResponseTooLarge,
    /// The request cannot be sent with this transport (e.g. plain HTTP to a remote host).
    InvalidRequest,
}

/// A failure below HTTP: connecting, sending, or reading the response.
#[derive(Debug)]
pub struct TransportError {
    kind: TransportErrorKind,
    request_sent: bool,
    detail: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TransportError {
    /// Builds a transport error.
    ///
    /// `request_sent` is true when any byte of the request may have been written.
    pub fn new(
        kind: TransportErrorKind,
        request_sent: bool,
        detail: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            request_sent,
            detail: detail.into(),
            source,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// True when any byte of the request may have been written to the connection.
    /// False means the request certainly never left this machine.
    pub fn request_sent(&self) -> bool {
        self.request_sent
    }

    /// Client fault for requests this transport cannot send and for a certificate it
    /// cannot trust (the configuration must change), server fault otherwise.
    pub fn fault(&self) -> Fault {
        match self.kind {
            TransportErrorKind::InvalidRequest | TransportErrorKind::Certificate => Fault::Client,
            _ => Fault::Server,
        }
    }

    /// Whether trying again, unchanged, can succeed: not for a request this transport
    /// cannot send, a certificate it cannot trust, or a response over the size cap.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self.kind,
            TransportErrorKind::InvalidRequest
                | TransportErrorKind::Certificate
                | TransportErrorKind::ResponseTooLarge
        )
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TransportErrorKind::Connect => "connect failed",
            TransportErrorKind::ConnectTimeout => "connect timed out",
            TransportErrorKind::Certificate => "the server's TLS certificate was rejected",
            TransportErrorKind::Exchange => "connection failed during the exchange",
            TransportErrorKind::ResponseBody => "reading the response body failed",
            TransportErrorKind::ResponseTooLarge => "response body too large",
            TransportErrorKind::InvalidRequest => "request cannot be sent",
        };
        write!(f, "{what}: {}", self.detail)?;
        if self.request_sent {
            f.write_str(" (after the request was sent)")
        } else {
            f.write_str(" (the request was not sent)")
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A timer fired: which one, after how long, and whether the request may have been sent
/// (the timeout layer's [`Elapsed`](invoke_layers::timeout::Elapsed)).
pub use invoke_layers::timeout::{Elapsed as TimeoutError, Timer};

/// What kind of failure an [`InvokeError`] is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeErrorKind {
    /// The request is invalid; found before any network I/O.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Lambda (or something in front of it) answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Connecting, sending or receiving failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A timer fired.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
    /// No credentials could be loaded.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The request could not be signed.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// The client-side rate limiter refused the call (it never left the machine).
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The function's circuit is open: the call failed at once, without an attempt
    /// (see [`crate::circuit_breaker`]).
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
    /// A layer of the caller's (a named-stack slot, or tower middleware) failed with an
    /// error of its own, kept as the source.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// The error of a layer that is not invoke-stack's: a named-stack slot, or tower
/// middleware, whose error converts into a boxed error (tower's `BoxError`).
///
/// Nothing is known of it, so it is taken at its most careful: not retryable, and the
/// function may have run. The layer's own error is the [`source`](std::error::Error::source)
/// (or [`inner`](Self::inner)) for the caller to downcast.
///
/// ```
/// use invoke_stack::{InvokeError, InvokeErrorKind};
///
/// let boxed: Box<dyn std::error::Error + Send + Sync> = "shed: overloaded".into();
/// let err = InvokeError::from(boxed);
/// assert!(matches!(err.kind(), InvokeErrorKind::Layer(_)));
/// assert!(err.to_string().starts_with("a layer failed: shed: overloaded"));
/// ```
#[derive(Debug)]
pub struct LayerError {
    inner: invoke_layers::BoxError,
}

impl LayerError {
    /// Wraps a layer's error.
    pub fn new(inner: impl Into<invoke_layers::BoxError>) -> Self {
        Self {
            inner: inner.into(),
        }
    }

    /// The layer's error.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }

    /// The layer's error, owned.
    pub fn into_inner(self) -> invoke_layers::BoxError {
        self.inner
    }
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a layer failed: {}", self.inner)
    }
}

impl std::error::Error for LayerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.inner)
    }
}

/// A boxed error from a layer or tower middleware. An [`InvokeError`] that was boxed
/// (by `tower::buffer`, `tower::timeout` or a `map_err(Into::into)`) comes back as
/// itself; any other error becomes [`InvokeErrorKind::Layer`].
impl From<invoke_layers::BoxError> for InvokeError {
    fn from(e: invoke_layers::BoxError) -> Self {
        match e.downcast::<InvokeError>() {
            Ok(invoke) => *invoke,
            Err(other) => InvokeErrorKind::Layer(LayerError { inner: other }).into(),
        }
    }
}

/// Any failure of an Invoke call: what failed last ([`kind`](Self::kind)), how many
/// attempts were made, and whether the function may have run in any of them.
#[derive(Debug)]
pub struct InvokeError {
    kind: InvokeErrorKind,
    attempts: u32,
    stop: Option<StopReason>,
    earlier_may_have_run: bool,
    dead_lettered: bool,
    /// The sink refused the letter of this failed `Event`: here it is, with the reason.
    dead_letter_error: Option<Box<crate::dead_letter::DeadLetterError>>,
}

impl fmt::Display for InvokeError {
    /// The failure, then the attempts and why the retries stopped:
    /// `… (after 3 attempts; retries stopped: all attempts were used)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)?;
        if self.attempts == 0 && self.stop.is_none() {
            return Ok(());
        }
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(f, " (after {} attempt{plural}", self.attempts)?;
        if let Some(stop) = self.stop.filter(|s| *s != StopReason::Done) {
            write!(f, "; retries stopped: {stop}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for InvokeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

impl From<InvokeErrorKind> for InvokeError {
    fn from(kind: InvokeErrorKind) -> Self {
        let attempts = u32::from(!matches!(
            kind,
            InvokeErrorKind::Validation(_)
                | InvokeErrorKind::RateLimited(_)
                | InvokeErrorKind::CircuitOpen(_)
        ));
        // An operation deadline that fired outside the retry layer counted the attempts
        // made inside it, and it is why they stopped.
        let (attempts, stop) = match &kind {
            InvokeErrorKind::Timeout(e) if e.timer() == Timer::Operation => {
                (e.attempts().unwrap_or(attempts), Some(StopReason::Deadline))
            }
            _ => (attempts, None),
        };
        Self {
            kind,
            attempts,
            stop,
            earlier_may_have_run: false,
            dead_lettered: false,
            dead_letter_error: None,
        }
    }
}

macro_rules! from_kind {
    ($($t:ty),*) => {$(
        impl From<$t> for InvokeError {
            fn from(e: $t) -> Self {
                InvokeErrorKind::from(e).into()
            }
        }
    )*};
}
from_kind!(
    ValidationError,
    ApiError,
    TransportError,
    TimeoutError,
    CredentialsError,
    SigningError,
    RateLimited,
    CircuitOpen
);

impl<E: Into<InvokeError>> From<invoke_layers::rate_limit::RateLimitError<E>> for InvokeError {
    fn from(e: invoke_layers::rate_limit::RateLimitError<E>) -> Self {
        use invoke_layers::rate_limit::RateLimitError;
        match e {
            RateLimitError::Inner(e) => e.into(),
            RateLimitError::Limited(refused) => refused.into(),
            RateLimitError::PolledAfterCompletion(p) => p.into(),
            _ => crate::transport::polled_after_completion(false).into(),
        }
    }
}

impl<E: Into<InvokeError>> From<invoke_layers::timeout::TimeoutError<E>> for InvokeError {
    fn from(e: invoke_layers::timeout::TimeoutError<E>) -> Self {
        match e {
            invoke_layers::timeout::TimeoutError::Elapsed(e) => e.into(),
            invoke_layers::timeout::TimeoutError::Inner(e) => e.into(),
            invoke_layers::timeout::TimeoutError::PolledAfterCompletion(p) => p.into(),
            _ => crate::transport::polled_after_completion(true).into(),
        }
    }
}

impl From<invoke_layers::PolledAfterCompletion> for InvokeError {
    fn from(_: invoke_layers::PolledAfterCompletion) -> Self {
        crate::transport::polled_after_completion(true).into()
    }
}

impl<E: Into<InvokeError>> From<invoke_layers::sigv4::SigV4Error<E>> for InvokeError {
    fn from(e: invoke_layers::sigv4::SigV4Error<E>) -> Self {
        use invoke_layers::sigv4::SigV4Error;
        match e {
            SigV4Error::Credentials(e) => e.into(),
            SigV4Error::Signing(e) => e.into(),
            SigV4Error::Inner(e) => e.into(),
            // `SigV4Error` is non-exhaustive: a new kind fails before sending.
            _ => invoke_layers::sigv4::SigningError::new("unrecognized SigV4 error").into(),
        }
    }
}

impl<E: Into<InvokeError>> From<invoke_layers::retry::RetryError<E>> for InvokeError {
    fn from(e: invoke_layers::retry::RetryError<E>) -> Self {
        match e.into_parts() {
            Ok((error, stats)) => error.into().with_retry_stats(stats),
            Err(p) => p.into(),
        }
    }
}

impl InvokeError {
    /// What failed (in the last attempt).
    pub fn kind(&self) -> &InvokeErrorKind {
        &self.kind
    }

    /// Consumes the error, returning its kind.
    pub fn into_kind(self) -> InvokeErrorKind {
        self.kind
    }

    /// Attempts made (0 when the request was invalid, or refused by the rate limiter or
    /// an open circuit, or when the operation deadline passed before the first).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records the attempts of a retried operation.
    pub fn with_attempts(mut self, attempts: u32, earlier_may_have_run: bool) -> Self {
        if attempts > 0 {
            self.attempts = attempts;
        }
        self.earlier_may_have_run |= earlier_may_have_run;
        self
    }

    /// Records what the retry layer did: the attempts, and why it stopped (an operation
    /// deadline that fired during the last attempt is the reason, whatever the retry
    /// layer thought of that timeout).
    pub fn with_retry_stats(self, stats: RetryStats) -> Self {
        let mut err = self.with_attempts(stats.attempts, stats.earlier_may_have_reached);
        if err.stop != Some(StopReason::Deadline) {
            err.stop = Some(stats.stop);
        }
        err
    }

    /// Why the retries stopped, when a retry layer (or the operation deadline) decided
    /// it: all attempts used, not retryable, may have run, the deadline, the quota, a
    /// `Retry-After` over the limit.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// True when the failed `Event` was stored by the client's dead-letter sink.
    pub fn dead_lettered(&self) -> bool {
        self.dead_lettered
    }

    pub(crate) fn mark_dead_lettered(&mut self) {
        self.dead_lettered = true;
    }

    /// When the dead-letter sink refused this failed `Event` (spool full, disk full...):
    /// why, and the letter itself ([`DeadLetterError::letter`]), so that the caller can
    /// keep it some other way.
    ///
    /// [`DeadLetterError::letter`]: crate::dead_letter::DeadLetterError::letter
    pub fn dead_letter_error(&self) -> Option<&crate::dead_letter::DeadLetterError> {
        self.dead_letter_error.as_deref()
    }

    /// Takes the sink's refusal, with its letter, out of the error.
    pub fn take_dead_letter_error(&mut self) -> Option<crate::dead_letter::DeadLetterError> {
        self.dead_letter_error.take().map(|b| *b)
    }

    pub(crate) fn set_dead_letter_error(&mut self, e: crate::dead_letter::DeadLetterError) {
        self.dead_letter_error = Some(Box::new(e));
    }

    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match &self.kind {
            InvokeErrorKind::Validation(_)
            | InvokeErrorKind::Credentials(_)
            | InvokeErrorKind::Signing(_)
            | InvokeErrorKind::RateLimited(_) => Fault::Client,
            InvokeErrorKind::Api(e) => e.fault(),
            InvokeErrorKind::Transport(e) => e.fault(),
            InvokeErrorKind::Timeout(_) => Fault::Server,
            // The request needs no change: the function is failing.
            InvokeErrorKind::CircuitOpen(_) => Fault::Server,
            // A layer of the caller's refused or failed the call.
            InvokeErrorKind::Layer(_) => Fault::Client,
        }
    }

    /// True for throttling errors.
    pub fn is_throttle(&self) -> bool {
        match &self.kind {
            InvokeErrorKind::Api(e) => e.is_throttle(),
            InvokeErrorKind::RateLimited(_) => true,
            _ => false,
        }
    }

    /// Whether trying again, unchanged, can succeed. This says nothing of whether it is
    /// safe: check [`may_have_run`](Self::may_have_run) before repeating a call that is
    /// not idempotent.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            InvokeErrorKind::Validation(_) | InvokeErrorKind::Signing(_) => false,
            InvokeErrorKind::Api(e) => e.is_retryable() || e.is_clock_skew(),
            InvokeErrorKind::Transport(e) => e.is_retryable(),
            InvokeErrorKind::Timeout(_) => true,
            InvokeErrorKind::Credentials(e) => e.is_retryable(),
            InvokeErrorKind::RateLimited(_) => true,
            InvokeErrorKind::CircuitOpen(_) => true,
            InvokeErrorKind::Layer(_) => false,
        }
    }

    /// Whether the function may have run, in the last attempt or an earlier one.
    pub fn may_have_run(&self) -> RunStatus {
        let last = match &self.kind {
            InvokeErrorKind::Validation(_)
            | InvokeErrorKind::Credentials(_)
            | InvokeErrorKind::Signing(_)
            | InvokeErrorKind::RateLimited(_) => RunStatus::NotRun,
            InvokeErrorKind::CircuitOpen(_) => RunStatus::NotRun,
            InvokeErrorKind::Api(e) => e.may_have_run(),
            InvokeErrorKind::Transport(e) if e.request_sent() => RunStatus::Unknown,
            InvokeErrorKind::Timeout(e) if e.request_sent() => RunStatus::Unknown,
            InvokeErrorKind::Transport(_) | InvokeErrorKind::Timeout(_) => RunStatus::NotRun,
            // Where the layer sits, and whether it had sent the request, is unknown.
            InvokeErrorKind::Layer(_) => RunStatus::Unknown,
        };
        if self.earlier_may_have_run && last == RunStatus::NotRun {
            RunStatus::Unknown
        } else {
            last
        }
    }

    /// The server's hint of when to try again, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.kind {
            InvokeErrorKind::RateLimited(r) => r.earliest,
            InvokeErrorKind::CircuitOpen(c) => c.retry_after,
            _ => self.as_api().and_then(ApiError::retry_after),
        }
    }

    /// The API error, if this is one.
    pub fn as_api(&self) -> Option<&ApiError> {
        match &self.kind {
            InvokeErrorKind::Api(e) => Some(e),
            _ => None,
        }
    }

    /// A short name of the error's type, for logs and command-line output
    /// (the API error code, or `ValidationError`, `TransportError`, ...).
    pub fn type_name(&self) -> &str {
        match &self.kind {
            InvokeErrorKind::Validation(_) => "ValidationError",
            InvokeErrorKind::Api(e) => e.code(),
            InvokeErrorKind::Transport(_) => "TransportError",
            InvokeErrorKind::Timeout(_) => "TimeoutError",
            InvokeErrorKind::Credentials(_) => "CredentialsError",
            InvokeErrorKind::Signing(_) => "SigningError",
            InvokeErrorKind::RateLimited(_) => "RateLimited",
            InvokeErrorKind::CircuitOpen(_) => "CircuitOpen",
            InvokeErrorKind::Layer(_) => "LayerError",
        }
    }
}
