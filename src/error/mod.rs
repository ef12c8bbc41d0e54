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

use std::fmt;
use std::time::Duration;

pub use api::{
    ApiError, ApiErrorKind, ShapeInfo, StandardClass, ThrottleReason, CLOCK_SKEW_CODES, SHAPES,
    THROTTLING_CODES, TRANSIENT_CODES,
};
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
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
    /// The connection failed while sending the request or reading the response head
    /// (reset, closed, malformed response).
    Exchange,
    /// The response body could not be read completely (truncated, reset).
    ResponseBody,
    /// The response body is larger than the configured cap.
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

    /// Client fault for requests this transport cannot send, server fault otherwise.
    pub fn fault(&self) -> Fault {
        match self.kind {
            TransportErrorKind::InvalidRequest => Fault::Client,
            _ => Fault::Server,
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TransportErrorKind::Connect => "connect failed",
            TransportErrorKind::ConnectTimeout => "connect timed out",
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

/// Any failure of an Invoke call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
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
}

impl<E: Into<InvokeError>> From<invoke_layers::timeout::TimeoutError<E>> for InvokeError {
    fn from(e: invoke_layers::timeout::TimeoutError<E>) -> Self {
        match e {
            invoke_layers::timeout::TimeoutError::Elapsed(e) => InvokeError::Timeout(e),
            invoke_layers::timeout::TimeoutError::Inner(e) => e.into(),
        }
    }
}

impl<E: Into<InvokeError>> From<invoke_layers::sigv4::SigV4Error<E>> for InvokeError {
    fn from(e: invoke_layers::sigv4::SigV4Error<E>) -> Self {
        use invoke_layers::sigv4::SigV4Error;
        match e {
            SigV4Error::Credentials(e) => InvokeError::Credentials(e),
            SigV4Error::Signing(e) => InvokeError::Signing(e),
            SigV4Error::Inner(e) => e.into(),
        }
    }
}

impl InvokeError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            InvokeError::Validation(_) | InvokeError::Credentials(_) | InvokeError::Signing(_) => {
                Fault::Client
            }
            InvokeError::Api(e) => e.fault(),
            InvokeError::Transport(e) => e.fault(),
            InvokeError::Timeout(_) => Fault::Server,
        }
    }

    /// True for throttling errors.
    pub fn is_throttle(&self) -> bool {
        matches!(self, InvokeError::Api(e) if e.is_throttle())
    }

    /// Whether trying again, unchanged, can succeed. This says nothing of whether it is
    /// safe: check [`may_have_run`](Self::may_have_run) before repeating a call that is
    /// not idempotent.
    pub fn is_retryable(&self) -> bool {
        match self {
            InvokeError::Validation(_) | InvokeError::Signing(_) => false,
            InvokeError::Api(e) => e.is_retryable(),
            InvokeError::Transport(e) => e.kind() != TransportErrorKind::InvalidRequest,
            InvokeError::Timeout(_) => true,
            InvokeError::Credentials(e) => e.is_retryable(),
        }
    }

    /// Whether the function may have run.
    pub fn may_have_run(&self) -> RunStatus {
        match self {
            InvokeError::Validation(_) | InvokeError::Credentials(_) | InvokeError::Signing(_) => {
                RunStatus::NotRun
            }
            InvokeError::Api(e) => e.may_have_run(),
            InvokeError::Transport(e) if e.request_sent() => RunStatus::Unknown,
            InvokeError::Timeout(e) if e.request_sent() => RunStatus::Unknown,
            InvokeError::Transport(_) | InvokeError::Timeout(_) => RunStatus::NotRun,
        }
    }

    /// The server's hint of when to try again, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            InvokeError::Api(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The API error, if this is one.
    pub fn as_api(&self) -> Option<&ApiError> {
        match self {
            InvokeError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// A short name of the error's type, for logs and command-line output
    /// (the API error code, or `Validation`, `Transport`, ...).
    pub fn type_name(&self) -> &str {
        match self {
            InvokeError::Validation(_) => "ValidationError",
            InvokeError::Api(e) => e.code(),
            InvokeError::Transport(_) => "TransportError",
            InvokeError::Timeout(_) => "TimeoutError",
            InvokeError::Credentials(_) => "CredentialsError",
            InvokeError::Signing(_) => "SigningError",
        }
    }
}
