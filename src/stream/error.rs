//! [`StreamError`]: a failure after the response headers, once the function has run.

use std::fmt;
use std::time::Duration;

use super::decoder::DecodeError;
use crate::error::{Fault, RunStatus};

/// What went wrong in the middle of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamErrorKind {
    /// No byte arrived for the idle timeout while the stream waited for the network
    /// (time spent by a slow reader does not count).
    IdleTimeout {
        /// The idle timeout that passed.
        idle: Duration,
    },
    /// The operation deadline passed during the stream.
    Deadline,
    /// The bytes are not a valid event stream of this operation, or a frame is over the
    /// cap (see [`DecodeError`]), or the service sent an `error` or `exception` message.
    Decode(DecodeError),
    /// The body ended without `InvokeComplete`: never a silent short read.
    Truncated {
        /// It ended in the middle of a frame (rather than between two frames).
        inside_frame: bool,
    },
    /// Reading the body failed (a reset, a closed connection, invalid chunked encoding).
    Connection(String),
    /// The content type announced Lambda's HTTP integration, its prelude was to be taken
    /// off, and it did not end (8 NUL bytes) within
    /// [`MAX_HTTP_INTEGRATION_PRELUDE`](super::MAX_HTTP_INTEGRATION_PRELUDE) bytes or
    /// before `InvokeComplete`.
    HttpIntegrationPrelude,
    /// [`collect`](super::InvokeStreamResponse::collect) reached its size cap.
    TooLarge {
        /// The cap.
        max: usize,
    },
}

impl fmt::Display for StreamErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdleTimeout { idle } => {
                write!(f, "stream idle timeout: no data for {idle:?}")
            }
            Self::Deadline => f.write_str("operation deadline passed during the stream"),
            Self::Decode(e) => write!(f, "stream decode error: {e}"),
            Self::Truncated { inside_frame: true } => {
                f.write_str("stream truncated inside a frame, before InvokeComplete")
            }
            Self::Truncated {
                inside_frame: false,
            } => f.write_str("stream ended without InvokeComplete"),
            Self::Connection(e) => write!(f, "stream connection failed: {e}"),
            Self::HttpIntegrationPrelude => {
                f.write_str("HTTP-integration prelude without its end (8 NUL bytes)")
            }
            Self::TooLarge { max } => write!(f, "stream larger than the {max}-byte cap"),
        }
    }
}

/// A stream that failed after its 200: the function ran (or is still running: Lambda
/// does not stop it when the client goes away), so it is never retried automatically.
/// Says what failed, and how much had arrived.
///
/// ```
/// use invoke_stack::stream::{StreamError, StreamErrorKind};
/// use invoke_stack::error::RunStatus;
/// use std::time::Duration;
///
/// let err = StreamError::new(StreamErrorKind::IdleTimeout { idle: Duration::from_secs(5) }, 11, 2);
/// assert_eq!(err.may_have_run(), RunStatus::Ran);
/// assert!(err.data_received());
/// assert_eq!(err.to_string(),
///     "stream idle timeout: no data for 5s (after 11 bytes in 2 chunks; the function ran)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    kind: StreamErrorKind,
    bytes_received: u64,
    chunks_received: u64,
}

impl StreamError {
    /// An error after `bytes_received` payload bytes in `chunks_received` chunks.
    pub fn new(kind: StreamErrorKind, bytes_received: u64, chunks_received: u64) -> Self {
        Self {
            kind,
            bytes_received,
            chunks_received,
        }
    }

    /// What failed.
    pub fn kind(&self) -> &StreamErrorKind {
        &self.kind
    }

    /// Payload bytes delivered before the failure.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Chunks (`PayloadChunk` events) delivered before the failure.
    pub fn chunks_received(&self) -> u64 {
        self.chunks_received
    }

    /// Whether any payload had arrived.
    pub fn data_received(&self) -> bool {
        self.bytes_received > 0
    }

    /// Always [`RunStatus::Ran`]: the 200 headers came, so the function ran (or runs).
    pub fn may_have_run(&self) -> RunStatus {
        RunStatus::Ran
    }

    /// The caller's cap ([`StreamErrorKind::TooLarge`]) is a client fault; the rest are
    /// the server's or the network's.
    pub fn fault(&self) -> Fault {
        match self.kind {
            StreamErrorKind::TooLarge { .. } => Fault::Client,
            _ => Fault::Server,
        }
    }

    /// Whether calling again could succeed (timeouts, truncation, a connection failure,
    /// an `error` message). Never done automatically: a new call runs the function again.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            StreamErrorKind::IdleTimeout { .. }
            | StreamErrorKind::Truncated { .. }
            | StreamErrorKind::Connection(_) => true,
            StreamErrorKind::Decode(DecodeError::ErrorMessage { .. }) => true,
            StreamErrorKind::Decode(_)
            | StreamErrorKind::Deadline
            | StreamErrorKind::HttpIntegrationPrelude
            | StreamErrorKind::TooLarge { .. } => false,
        }
    }

    /// A short name for logs and spans (`aws.lambda.stream.end`).
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            StreamErrorKind::IdleTimeout { .. } => "idle_timeout",
            StreamErrorKind::Deadline => "deadline",
            StreamErrorKind::Decode(DecodeError::ErrorMessage { .. }) => "error_message",
            StreamErrorKind::Decode(DecodeError::Exception { .. }) => "exception",
            StreamErrorKind::Decode(DecodeError::FrameTooLarge { .. }) => "frame_too_large",
            StreamErrorKind::Decode(_) => "decode_error",
            StreamErrorKind::Truncated { .. } => "truncated",
            StreamErrorKind::Connection(_) => "connection",
            StreamErrorKind::HttpIntegrationPrelude => "http_integration_prelude",
            StreamErrorKind::TooLarge { .. } => "too_large",
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.chunks_received == 1 { "" } else { "s" };
        write!(
            f,
            "{} (after {} bytes in {} chunk{plural}; the function ran)",
            self.kind, self.bytes_received, self.chunks_received
        )
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            StreamErrorKind::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StreamError> for std::io::Error {
    fn from(e: StreamError) -> Self {
        let kind = match e.kind {
            StreamErrorKind::IdleTimeout { .. } | StreamErrorKind::Deadline => {
                std::io::ErrorKind::TimedOut
            }
            StreamErrorKind::Truncated { .. } => std::io::ErrorKind::UnexpectedEof,
            StreamErrorKind::Connection(_) => std::io::ErrorKind::ConnectionAborted,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}
