//! `InvokeWithResponseStream`: the function's response as chunks, as they arrive, up to
//! Lambda's 200 MB, in bounded memory (cargo feature `stream`, on by default).
//!
//! [`InvokeClient::invoke_stream`](crate::InvokeClient::invoke_stream) sends an
//! [`InvokeStreamRequest`] through the same layers as `invoke` (signing, deadline, rate
//! limit, retry, attempt timeout, tracing, circuit breaker) and returns an
//! [`InvokeStreamResponse`] once the response headers have arrived:
//!
//! - **Before the headers**, failures are classified and retried as for `Invoke` (a
//!   throttle, a 5xx, a connect failure). The attempt timeout is the time allowed to
//!   the headers, which Lambda sends when the function starts its response.
//! - **After a 200**, the function has run, or is still running: Lambda does not stop it
//!   when the client goes away. Nothing is retried; a failure is a [`StreamError`] that
//!   says what failed (idle timeout, operation deadline, truncation, a corrupted or
//!   oversized frame, an `error` or `exception` message, the connection) and how many
//!   bytes and chunks had arrived.
//!
//! The body is decoded with `aws-smithy-eventstream` (framing and CRCs); each frame's
//! prelude is checked against a cap ([`StreamConfig::max_frame_bytes`]) before the frame
//! is buffered ([`decoder`]). A slow reader slows the connection: the client reads the
//! socket only when asked for the next chunk, so memory stays bounded by the frame cap
//! plus hyper's read buffer, whatever the size of the response.
//!
//! Timers: the attempt timeout bounds the wait for the headers; the idle timeout
//! ([`StreamConfig::idle_timeout`]) bounds each wait for the next bytes while the caller
//! is waiting for them; the operation deadline
//! ([`InvokeClientBuilder::operation_timeout`](crate::InvokeClientBuilder::operation_timeout))
//! covers the whole call, headers and stream.
//!
//! ```
//! use invoke_stack::stream::InvokeStreamRequest;
//! use invoke_stack::testing::{LocalLambda, StreamFunction};
//! use invoke_stack::InvokeClient;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lambda = LocalLambda::builder()
//!     .stream_function("words", StreamFunction::chunks(["Hello", ", ", "world"]))
//!     .start()
//!     .await?;
//! let client = InvokeClient::builder()
//!     .endpoint_url(lambda.endpoint_url())
//!     .credentials(lambda.credentials())
//!     .build()?;
//!
//! let mut resp = client.invoke_stream(InvokeStreamRequest::builder("words").build()?).await?;
//! let mut text = String::new();
//! while let Some(chunk) = resp.next_chunk().await {
//!     text.push_str(std::str::from_utf8(&chunk?)?);
//! }
//! assert_eq!(text, "Hello, world");
//! assert!(!resp.completion().expect("InvokeComplete").is_function_error());
//! # Ok(()) }
//! ```

pub mod decoder;
mod error;
mod request;
mod response;

pub use decoder::{Completion, DecodeError, Event, EventDecoder, DEFAULT_MAX_FRAME_BYTES};
pub use error::{StreamError, StreamErrorKind};
pub use request::{InvokeStreamRequest, InvokeStreamRequestBuilder, OPERATION};
pub use response::{
    CollectedStream, InvokeStreamResponse, StreamConfig, StreamReader,
    HTTP_INTEGRATION_CONTENT_TYPE, MAX_HTTP_INTEGRATION_PRELUDE,
};
