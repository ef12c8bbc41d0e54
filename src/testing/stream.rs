//! Streaming functions of the local endpoint (`InvokeWithResponseStream`), and the
//! faults it can inject in the middle of a stream.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::function::{FunctionFailure, Invocation, LocalFunction};

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), FunctionFailure>> + Send>>;
pub(crate) type StreamHandler = Arc<dyn Fn(Invocation, ChunkSender) -> BoxFuture + Send + Sync>;

pub use crate::stream::HTTP_INTEGRATION_CONTENT_TYPE;

/// Where a streaming function writes its response: each [`send`](Self::send) becomes one
/// `PayloadChunk`, written to the connection as soon as the client reads (the channel
/// holds one chunk: a slow client slows the function, as with Lambda's streams).
#[derive(Debug, Clone)]
pub struct ChunkSender {
    tx: mpsc::Sender<Bytes>,
}

/// The client went away; the function may stop (Lambda would keep running it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client is gone")]
pub struct ClientGone;

impl ChunkSender {
    /// Sends one chunk; waits while the previous one has not been written.
    ///
    /// # Errors
    ///
    /// [`ClientGone`] when the connection has been closed.
    pub async fn send(&self, chunk: impl Into<Bytes>) -> Result<(), ClientGone> {
        self.tx.send(chunk.into()).await.map_err(|_| ClientGone)
    }
}

/// A function that streams its response, for
/// [`LocalLambdaBuilder::stream_function`](super::LocalLambdaBuilder::stream_function).
/// Invoked with `Invoke`, its chunks are concatenated into one response, as Lambda does.
///
/// ```
/// use std::time::Duration;
/// use invoke_stack::testing::{FunctionFailure, StreamFunction};
///
/// let tokens = StreamFunction::new(|inv, out| async move {
///     for word in ["one ", "two ", "three"] {
///         out.send(word).await.ok();
///         tokio::time::sleep(Duration::from_millis(5)).await;
///     }
///     if inv.payload().as_ref() == b"\"fail\"" {
///         return Err(FunctionFailure::unhandled("Error", "asked to fail"));
///     }
///     Ok(())
/// })
/// .content_type("text/plain");
/// # let _ = tokens;
/// ```
#[derive(Clone)]
pub struct StreamFunction {
    pub(crate) handler: StreamHandler,
    pub(crate) content_type: String,
}

impl fmt::Debug for StreamFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamFunction")
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl StreamFunction {
    /// A function running `handler`, which writes chunks to its [`ChunkSender`]; an
    /// `Err` becomes `InvokeComplete`'s `ErrorCode` and `ErrorDetails`.
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(Invocation, ChunkSender) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), FunctionFailure>> + Send + 'static,
    {
        Self {
            handler: Arc::new(move |inv, out| Box::pin(handler(inv, out))),
            content_type: "application/octet-stream".to_owned(),
        }
    }

    /// A function that sends these chunks, then returns.
    pub fn chunks<I, C>(chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<Bytes>,
    {
        let chunks: Arc<Vec<Bytes>> = Arc::new(chunks.into_iter().map(Into::into).collect());
        Self::new(move |_, out| {
            let chunks = Arc::clone(&chunks);
            async move {
                for c in chunks.iter() {
                    if out.send(c.clone()).await.is_err() {
                        break;
                    }
                }
                Ok(())
            }
        })
    }

    /// A function that sends `total` bytes (a repeating pattern) in chunks of
    /// `chunk_size`, waiting `pause` between chunks.
    pub fn sized(total: u64, chunk_size: usize, pause: Duration) -> Self {
        let chunk_size = chunk_size.max(1);
        let block: Bytes = (0..chunk_size)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        Self::new(move |_, out| {
            let block = block.clone();
            async move {
                let mut left = total;
                while left > 0 {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(block.len());
                    if out.send(block.slice(..n)).await.is_err() {
                        break;
                    }
                    left -= n as u64;
                    if !pause.is_zero() && left > 0 {
                        tokio::time::sleep(pause).await;
                    }
                }
                Ok(())
            }
        })
    }

    /// An HTTP-integration handler, as `awslambda.HttpResponseStream.from` writes it:
    /// content type [`HTTP_INTEGRATION_CONTENT_TYPE`], then the prelude JSON
    /// (`statusCode`, `headers`), 8 NUL bytes, then `body`.
    pub fn http_integration(
        status: u16,
        headers: serde_json::Value,
        body: impl Into<Bytes>,
    ) -> Self {
        let prelude = serde_json::json!({ "statusCode": status, "headers": headers }).to_string();
        let body = body.into();
        Self::new(move |_, out| {
            let (prelude, body) = (prelude.clone(), body.clone());
            async move {
                let _ = out.send(prelude).await;
                let _ = out.send(Bytes::from_static(&[0u8; 8])).await;
                let _ = out.send(body).await;
                Ok(())
            }
        })
        .content_type(HTTP_INTEGRATION_CONTENT_TYPE)
    }

    /// The `Content-Type` of the response (default `application/octet-stream`).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// As a [`LocalFunction`]: `Invoke` gets the chunks concatenated.
    pub(crate) fn into_local(self) -> LocalFunction {
        let handler = Arc::clone(&self.handler);
        let mut f = LocalFunction::new(move |inv| {
            let handler = Arc::clone(&handler);
            async move {
                let (tx, mut rx) = mpsc::channel::<Bytes>(1);
                let run = tokio::spawn(handler(inv, ChunkSender { tx }));
                let mut out = Vec::new();
                while let Some(chunk) = rx.recv().await {
                    out.extend_from_slice(&chunk);
                }
                match run.await {
                    Ok(Ok(())) => Ok(Bytes::from(out)),
                    Ok(Err(failure)) => Err(failure),
                    Err(_) => Err(FunctionFailure::unhandled(
                        "Runtime.Crash",
                        "the handler panicked",
                    )),
                }
            }
        });
        f.stream = Some(self);
        f
    }

    pub(crate) fn start(&self, inv: Invocation) -> RunningStream {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let run = tokio::spawn((self.handler)(inv, ChunkSender { tx }));
        RunningStream { chunks: rx, run }
    }
}

/// A streaming function started by the endpoint.
pub(crate) struct RunningStream {
    pub(crate) chunks: mpsc::Receiver<Bytes>,
    pub(crate) run: tokio::task::JoinHandle<Result<(), FunctionFailure>>,
}

/// A fault in the middle of a stream, for [`Fault::Stream`](super::Fault::Stream).
/// `after` counts the chunks written before the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamFault {
    /// Send nothing more (the connection stays open).
    Stall {
        /// Chunks sent first.
        after: usize,
    },
    /// End the body cleanly, without `InvokeComplete`.
    CloseWithoutComplete {
        /// Chunks sent first.
        after: usize,
    },
    /// End the body in the middle of a frame.
    CutFrame {
        /// Chunks sent first.
        after: usize,
    },
    /// Send the next chunk with a message CRC one bit off.
    CorruptCrc {
        /// Chunks sent first.
        after: usize,
    },
    /// Send an `error` message (`InternalFailure`), then end the body.
    ErrorMessage {
        /// Chunks sent first.
        after: usize,
    },
    /// Send an `exception` message, then end the body.
    Exception {
        /// Chunks sent first.
        after: usize,
    },
    /// Send a prelude (with a valid CRC) announcing a frame of `len` bytes, then stall.
    OversizedPrelude {
        /// Chunks sent first.
        after: usize,
        /// The announced `total_length`.
        len: u32,
    },
    /// Reset the connection (TCP RST).
    Reset {
        /// Chunks sent first.
        after: usize,
    },
}

impl StreamFault {
    pub(crate) fn after(&self) -> usize {
        match self {
            StreamFault::Stall { after }
            | StreamFault::CloseWithoutComplete { after }
            | StreamFault::CutFrame { after }
            | StreamFault::CorruptCrc { after }
            | StreamFault::ErrorMessage { after }
            | StreamFault::Exception { after }
            | StreamFault::OversizedPrelude { after, .. }
            | StreamFault::Reset { after } => *after,
        }
    }
}

/// A prelude announcing `len` bytes, with a valid prelude CRC, and no frame after it.
pub(crate) fn oversized_prelude(len: u32) -> Bytes {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}
