//! Nothing lost for `Event`: when an asynchronous invocation finally fails, the request
//! goes to a [`DeadLetterSink`], an asynchronous destination: [`FileSpool`] (a durable
//! local spool, with [`FileSpool::replay`]), a queue service, or your own.
//!
//! - **The client's part** (see [`InvokeClient::invoke`]): for an `Event` with a sink,
//!   the delivery and, if it fails, the hand-over to the sink run in a task of their own
//!   once the future is first polled, so they finish even when the caller drops the
//!   future (a `timeout`, a losing `select!` branch). [`InvokeClient::dead_letters_settled`]
//!   waits for those still running (call it before shutting the runtime down). When the
//!   sink refuses a letter, the caller's [`InvokeError`] carries a [`DeadLetterError`]
//!   with the letter ([`InvokeError::dead_letter_error`]): nothing is dropped silently.
//! - **[`FileSpool`]** never blocks the runtime: letters go through a bounded channel to
//!   a writer thread that commits them in groups (one `fdatasync` per batch); each
//!   caller's future resolves when its own letter is durable. Records are checksummed
//!   lines, so a crash at any instant loses no acknowledged letter and a torn last
//!   record is skipped. Appends take an advisory lock, so several spools, in this and
//!   other processes, may append to one file and replay it at once. The file is created
//!   `0600`, its directory `0700`. It has a size bound (default 1 GiB): over it, or with
//!   the disk full, the letter comes back in a [`DeadLetterError`].
//! - **[`FileSpool::replay`]** re-submits letters through the client's stack, records
//!   each batch of deliveries as it goes, and leaves out by default the letters whose
//!   first try may have reached Lambda ([`ReplayOptions::include_may_have_run`]).
//!
//! ```
//! use invoke_stack::dead_letter::FileSpool;
//! use invoke_stack::InvokeClient;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::env::temp_dir().join(format!("doc-spool-{}.spool", std::process::id()));
//! let spool = FileSpool::open(&path)?;
//! let client = InvokeClient::builder()
//!     .region("us-east-1")
//!     .dead_letter_sink(spool.clone())
//!     .build()?;
//! // Later (e.g. at start-up): client-side redelivery of what could not be delivered.
//! // let report = spool.replay(&client).await?;
//! # let _ = client; drop(spool); std::fs::remove_file(&path)?;
//! # let _ = std::fs::remove_file(path.with_extension("spool.lock"));
//! # let _ = std::fs::remove_file(path.with_extension("spool.replay.lock"));
//! # Ok(()) }
//! ```
//!
//! # Writing a sink
//!
//! A sink returns a future that resolves once the letter is stored (durably, as far as
//! the destination can say), or with a [`DeadLetterError`] that hands the letter back:
//!
//! ```
//! use std::sync::Arc;
//! use invoke_stack::dead_letter::{DeadLetter, DeadLetterError, DeadLetterErrorKind, DeadLetterSink, SinkFuture};
//! use tokio::sync::mpsc;
//!
//! /// Sends letters to a task that forwards them to a queue service.
//! #[derive(Debug)]
//! struct QueueSink(mpsc::Sender<DeadLetter>);
//!
//! impl DeadLetterSink for QueueSink {
//!     fn send(&self, letter: DeadLetter) -> SinkFuture {
//!         let tx = self.0.clone();
//!         Box::pin(async move {
//!             tx.send(letter).await.map_err(|mpsc::error::SendError(letter)| {
//!                 DeadLetterError::new(DeadLetterErrorKind::Closed, letter, "the forwarder stopped")
//!             })
//!         })
//!     }
//! }
//! # let (tx, _rx) = mpsc::channel(16);
//! # let _ = invoke_stack::InvokeClient::builder().region("us-east-1").dead_letter_sink(QueueSink(tx));
//! ```
//!
//! [`InvokeClient::invoke`]: crate::InvokeClient::invoke
//! [`InvokeClient::dead_letters_settled`]: crate::InvokeClient::dead_letters_settled
//! [`InvokeError`]: crate::InvokeError
//! [`InvokeError::dead_letter_error`]: crate::InvokeError::dead_letter_error

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::{InvokeError, RunStatus};
use crate::model::{InvocationType, InvokeRequest};

mod frame;
mod replay;
mod serde_impl;
mod spool;

pub use replay::{ReplayOptions, ReplayReport};
pub use spool::{FileSpool, FileSpoolBuilder, SpoolContents, SyncFn};

/// An `Event` invocation that could not be delivered.
///
/// It implements serde's `Serialize` and `Deserialize` (the spool's format: its fields by
/// name, the payload in base64).
#[derive(Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Unique id of this letter.
    pub id: String,
    /// The function, as the request named it.
    pub function_name: String,
    /// The `Qualifier` field, if any.
    pub qualifier: Option<String>,
    /// The payload (base64 in the spool).
    pub payload: Bytes,
    /// The base64 client context, if any.
    pub client_context: Option<String>,
    /// The tenant id, if any.
    pub tenant_id: Option<String>,
    /// The error's type (its code).
    pub error_type: String,
    /// The error's message.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// Whether the event may have been queued anyway: `NotRun`, `Ran` or `Unknown`
    /// ([`InvokeError::may_have_run`] of the final failure). Replays leave out letters
    /// other than `NotRun` unless told otherwise ([`ReplayOptions::include_may_have_run`]).
    pub may_have_run: String,
    /// When the operation started (milliseconds since the Unix epoch).
    pub started_at_ms: u64,
    /// When it failed (milliseconds since the Unix epoch).
    pub failed_at_ms: u64,
}

impl fmt::Debug for DeadLetter {
    // The payload is sensitive: only its size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("id", &self.id)
            .field("function_name", &self.function_name)
            .field("qualifier", &self.qualifier)
            .field("payload_len", &self.payload.len())
            .field("error_type", &self.error_type)
            .field("attempts", &self.attempts)
            .field("may_have_run", &self.may_have_run)
            .finish_non_exhaustive()
    }
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl DeadLetter {
    /// A letter for a failed request.
    pub fn new(req: &InvokeRequest, err: &InvokeError, started_at: SystemTime) -> Self {
        Self {
            id: crate::id::uuid_v4(),
            function_name: req.function_name().to_string(),
            qualifier: req.qualifier().map(str::to_owned),
            payload: req.payload().clone(),
            client_context: req.client_context().map(str::to_owned),
            tenant_id: req.tenant_id().map(str::to_owned),
            error_type: err.type_name().to_owned(),
            error: err.to_string(),
            attempts: err.attempts(),
            may_have_run: match err.may_have_run() {
                RunStatus::NotRun => "NotRun",
                RunStatus::Ran => "Ran",
                RunStatus::Unknown => "Unknown",
            }
            .to_owned(),
            started_at_ms: millis(started_at),
            failed_at_ms: millis(SystemTime::now()),
        }
    }

    /// Whether the first try certainly did not reach the function (`may_have_run` is
    /// `NotRun`): only such letters are replayed by default.
    pub fn certainly_not_run(&self) -> bool {
        self.may_have_run == "NotRun"
    }

    /// The `Event` request to deliver it again.
    pub fn to_request(&self) -> Result<InvokeRequest, crate::model::ValidationError> {
        let mut b = InvokeRequest::builder(self.function_name.as_str())
            .invocation_type(InvocationType::Event)
            .payload(self.payload.clone());
        if let Some(q) = &self.qualifier {
            b = b.qualifier(q);
        }
        if let Some(cc) = &self.client_context {
            b = b.client_context_base64(cc);
        }
        if let Some(t) = &self.tenant_id {
            b = b.tenant_id(t);
        }
        b.build()
    }
}

/// The future a [`DeadLetterSink`] returns.
pub type SinkFuture = Pin<Box<dyn Future<Output = Result<(), DeadLetterError>> + Send + 'static>>;

/// Where undeliverable `Event` invocations go. See the [module documentation](self) for
/// how to write one.
pub trait DeadLetterSink: Send + Sync + fmt::Debug + 'static {
    /// Stores a letter; the future resolves once it is stored, or with an error that
    /// hands the letter back. It must not block the thread that polls it.
    fn send(&self, letter: DeadLetter) -> SinkFuture;
}

/// Why a sink could not store a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterErrorKind {
    /// The spool reached its size bound.
    Full,
    /// The disk (or a file-size or quota limit) refused the write.
    DiskFull,
    /// Any other I/O error (the write or the sync failed; the letter is not stored).
    Io,
    /// The sink stopped (its writer is gone).
    Closed,
    /// A sink-specific failure.
    Other,
}

impl fmt::Display for DeadLetterErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeadLetterErrorKind::Full => "the dead-letter spool is full",
            DeadLetterErrorKind::DiskFull => "the disk is full",
            DeadLetterErrorKind::Io => "I/O error",
            DeadLetterErrorKind::Closed => "the dead-letter sink is closed",
            DeadLetterErrorKind::Other => "the dead-letter sink failed",
        })
    }
}

/// A letter a sink could not store, handed back with the reason.
pub struct DeadLetterError {
    kind: DeadLetterErrorKind,
    letter: Box<DeadLetter>,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl DeadLetterError {
    /// An error carrying `letter` back.
    pub fn new(
        kind: DeadLetterErrorKind,
        letter: DeadLetter,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            letter: Box::new(letter),
            source: source.into(),
        }
    }

    /// Why.
    pub fn kind(&self) -> DeadLetterErrorKind {
        self.kind
    }

    /// The letter that was not stored.
    pub fn letter(&self) -> &DeadLetter {
        &self.letter
    }

    /// Takes the letter back (to store it elsewhere).
    pub fn into_letter(self) -> DeadLetter {
        *self.letter
    }
}

impl fmt::Debug for DeadLetterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterError")
            .field("kind", &self.kind)
            .field("letter", &self.letter)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for DeadLetterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: letter {} not stored: {}",
            self.kind, self.letter.id, self.source
        )
    }
}

impl std::error::Error for DeadLetterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl DeadLetterErrorKind {
    /// The kind of an I/O error.
    pub(crate) fn of_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => DeadLetterErrorKind::DiskFull,
            _ => DeadLetterErrorKind::Io,
        }
    }
}
