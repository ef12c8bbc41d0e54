//! [`InvokeStreamResponse`]: the headers at once, then the chunks as they arrive, then
//! the completion.

use std::fmt;
use std::future::{poll_fn, Future as _};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use super::decoder::{Completion, DecodeError, Event, EventDecoder};
use super::error::{StreamError, StreamErrorKind};
use crate::transport::StreamingBody;

/// How a stream is read: the idle timeout and the frame cap (see
/// [`InvokeClient::invoke_stream`](crate::InvokeClient::invoke_stream) for the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConfig {
    /// Longest wait for the response headers, per attempt (the attempt timeout of the
    /// stream's calls; a [`TimeoutError`](crate::error::TimeoutError) of
    /// [`Timer::Attempt`](crate::error::Timer::Attempt) when it passes); `None` for the
    /// client's attempt timeout of a synchronous call (the function's maximum duration
    /// plus the sync margin; 10 s for `DryRun`).
    pub header_timeout: Option<Duration>,
    /// Longest wait for the next bytes while the caller is waiting for them; `None` for
    /// none (the operation deadline, if any, still applies).
    pub idle_timeout: Option<Duration>,
    /// Largest frame accepted: a prelude announcing more fails at once, before any of
    /// the frame is buffered. This bounds the memory a stream holds.
    pub max_frame_bytes: usize,
    /// Take off the HTTP-integration prelude (the JSON with `statusCode` and `headers`
    /// that a handler using Lambda's `HttpResponseStream` writes first, then 8 NUL
    /// bytes) when, and only when, the content type is
    /// [`HTTP_INTEGRATION_CONTENT_TYPE`]; it is then
    /// [`InvokeStreamResponse::http_integration_prelude`]. Default off: the chunks are
    /// the function's bytes as they are, as with the AWS SDKs.
    pub strip_http_integration_prelude: bool,
}

/// The content type of a function using Lambda's HTTP integration (a JSON prelude,
/// 8 NUL bytes, then the body).
pub const HTTP_INTEGRATION_CONTENT_TYPE: &str =
    "application/vnd.awslambda.http-integration-response";

/// The longest HTTP-integration prelude looked for (status, headers and cookies).
pub const MAX_HTTP_INTEGRATION_PRELUDE: usize = 64 * 1024;

/// Where the search for the HTTP-integration prelude stands.
#[derive(Debug)]
enum Prelude {
    /// Not looked for.
    Off,
    /// The bytes so far, without the delimiter yet.
    Seeking(BytesMut),
    /// Found (the JSON, without the delimiter).
    Found(Bytes),
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            header_timeout: None,
            idle_timeout: None,
            max_frame_bytes: super::decoder::DEFAULT_MAX_FRAME_BYTES,
            strip_http_integration_prelude: false,
        }
    }
}

/// The answer of `InvokeWithResponseStream`: the response headers (available at once),
/// the function's output as a [`Stream`](futures_core::Stream) of [`Bytes`] chunks read
/// as the caller asks for them (a slow reader slows the connection: nothing is read
/// ahead beyond one frame), then the [`Completion`] (function error, log tail).
///
/// The stream ends (`None`) after `InvokeComplete`, or with one [`StreamError`] when
/// anything else happens: a body that ends without `InvokeComplete`, a corrupted or
/// oversized frame, an `error` or `exception` message, the idle timeout, the operation
/// deadline, a connection failure. Either way the function ran.
///
/// ```no_run
/// # async fn f(client: invoke_stack::InvokeClient) -> Result<(), Box<dyn std::error::Error>> {
/// use invoke_stack::stream::InvokeStreamRequest;
/// let req = InvokeStreamRequest::builder("report").payload(r#"{"month":11}"#).build()?;
/// let mut resp = client.invoke_stream(req).await?;
/// println!("version {:?}, type {:?}", resp.executed_version(), resp.content_type());
/// while let Some(chunk) = resp.next_chunk().await {
///     let chunk = chunk?; // a StreamError says what failed and how much had arrived
///     print!("{}", String::from_utf8_lossy(&chunk));
/// }
/// if let Some(done) = resp.completion() {
///     if done.is_function_error() {
///         eprintln!("the function failed: {:?} {:?}", done.error_code, done.error_details);
///     }
/// }
/// # Ok(()) }
/// ```
pub struct InvokeStreamResponse {
    status: u16,
    executed_version: Option<String>,
    content_type: Option<String>,
    request_id: Option<String>,
    attempts: u32,
    body: Option<Incoming>,
    decoder: EventDecoder,
    idle: Option<Duration>,
    // Armed while waiting for the network (not while the caller is busy).
    idle_timer: Option<Pin<Box<Sleep>>>,
    deadline: Option<Pin<Box<Sleep>>>,
    completion: Option<Completion>,
    state: ReadState,
    bytes: u64,
    chunks: u64,
    started: Instant,
    first_chunk: Option<Duration>,
    // The connection slot of a capped transport, held while the body is read.
    slot: Option<OwnedSemaphorePermit>,
    span: Option<tracing::Span>,
    prelude: Prelude,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Reading,
    Done,
    Failed,
}

impl fmt::Debug for InvokeStreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeStreamResponse")
            .field("status", &self.status)
            .field("executed_version", &self.executed_version)
            .field("content_type", &self.content_type)
            .field("request_id", &self.request_id)
            .field("bytes", &self.bytes)
            .field("chunks", &self.chunks)
            .field("completion", &self.completion)
            .finish_non_exhaustive()
    }
}

fn header(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(1024).collect())
}

impl InvokeStreamResponse {
    /// The response of a successful status (2xx), its body unread.
    pub(crate) fn new(
        resp: http::Response<StreamingBody>,
        config: StreamConfig,
        attempts: u32,
    ) -> Self {
        let (parts, body) = resp.into_parts();
        let body = body.into_parts();
        let started = Instant::now();
        let deadline = body
            .deadline
            .map(|d| Box::pin(tokio::time::sleep_until(d.at())));
        // 204 (DryRun): there is no stream, and no InvokeComplete to wait for.
        let (body_stream, state) = if parts.status == http::StatusCode::NO_CONTENT {
            (None, ReadState::Done)
        } else {
            (body.body, ReadState::Reading)
        };
        let content_type = header(&parts.headers, "content-type");
        let prelude = if config.strip_http_integration_prelude
            && content_type.as_deref() == Some(HTTP_INTEGRATION_CONTENT_TYPE)
        {
            Prelude::Seeking(BytesMut::new())
        } else {
            Prelude::Off
        };
        let mut this = Self {
            status: parts.status.as_u16(),
            executed_version: header(&parts.headers, "x-amz-executed-version"),
            content_type,
            request_id: header(&parts.headers, "x-amzn-requestid"),
            attempts,
            body: body_stream,
            decoder: EventDecoder::new(config.max_frame_bytes),
            idle: config.idle_timeout,
            idle_timer: None,
            deadline,
            completion: None,
            state,
            bytes: 0,
            chunks: 0,
            started,
            first_chunk: None,
            slot: body.slot,
            span: body.span,
            prelude,
        };
        if this.state == ReadState::Done {
            this.record_end("dry_run");
        }
        this
    }

    /// The HTTP status: 200, or 204 for `DryRun` (no stream).
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// `X-Amz-Executed-Version`: the version that ran.
    pub fn executed_version(&self) -> Option<&str> {
        self.executed_version.as_deref()
    }

    /// The function's content type (`ResponseStreamContentType`, the HTTP
    /// `Content-Type`): `application/octet-stream` unless the function set one. The body
    /// is event-stream framed whatever it says.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// `x-amzn-RequestId`.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Attempts made before the stream started (retries happen only before the headers).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Payload bytes delivered so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes
    }

    /// Chunks delivered so far.
    pub fn chunks_received(&self) -> u64 {
        self.chunks
    }

    /// Time from the headers to the first chunk, once one has arrived.
    pub fn time_to_first_chunk(&self) -> Option<Duration> {
        self.first_chunk
    }

    /// The HTTP-integration prelude (its JSON), once it has been taken off the stream
    /// (see [`StreamConfig::strip_http_integration_prelude`]).
    pub fn http_integration_prelude(&self) -> Option<&Bytes> {
        match &self.prelude {
            Prelude::Found(json) => Some(json),
            _ => None,
        }
    }

    /// `InvokeComplete`, once the stream has ended with it.
    pub fn completion(&self) -> Option<&Completion> {
        self.completion.as_ref()
    }

    /// True once the stream has ended (with `InvokeComplete`, a 204, or an error).
    pub fn is_finished(&self) -> bool {
        self.state != ReadState::Reading
    }

    /// The next chunk; `None` at the end (then see [`completion`](Self::completion)).
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, StreamError>> {
        poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Reads the whole stream into memory, failing with [`StreamErrorKind::TooLarge`]
    /// past `max_bytes` (the chunks up to there are dropped).
    ///
    /// # Errors
    ///
    /// Any [`StreamError`] of the stream, or the cap.
    pub async fn collect(mut self, max_bytes: usize) -> Result<CollectedStream, StreamError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await {
            let chunk = chunk?;
            if buf.len().saturating_add(chunk.len()) > max_bytes {
                let err = self.error(StreamErrorKind::TooLarge { max: max_bytes });
                self.fail(&err);
                return Err(err);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(CollectedStream {
            payload: buf.freeze(),
            completion: self.completion.take(),
            executed_version: self.executed_version.take(),
            content_type: self.content_type.take(),
            request_id: self.request_id.take(),
        })
    }

    /// The stream as a [`tokio::io::AsyncRead`]; a [`StreamError`] becomes an
    /// [`std::io::Error`] whose inner error is the `StreamError`.
    pub fn into_async_read(self) -> StreamReader {
        StreamReader {
            stream: self,
            current: Bytes::new(),
        }
    }

    fn error(&self, kind: StreamErrorKind) -> StreamError {
        StreamError::new(kind, self.bytes, self.chunks)
    }

    fn fail(&mut self, err: &StreamError) {
        self.state = ReadState::Failed;
        // The body is dropped unfinished: hyper closes the connection unless the rest of
        // the body is already in its buffer (then the next request may reuse it).
        self.body = None;
        self.slot = None;
        self.idle_timer = None;
        self.deadline = None;
        if let Some(span) = &self.span {
            span.record("error.type", err.type_name());
            span.record("aws.lambda.may_have_run", "ran");
            span.record("otel.status_code", "ERROR");
            span.record(
                "otel.status_description",
                crate::layers::trace::Untrusted::new(&format!("{}: {err}", err.type_name()))
                    .to_string(),
            );
            tracing::info!(parent: span, error = %err, "stream failed");
        }
        self.record_end(err.type_name());
    }

    fn finish(&mut self, completion: Completion, cx: &mut Context<'_>) {
        self.state = ReadState::Done;
        let end = if completion.is_function_error() {
            "function_error"
        } else {
            "complete"
        };
        if let (Some(span), Some(code)) = (&self.span, &completion.error_code) {
            let code = crate::layers::trace::Untrusted::new(code).to_string();
            span.record("aws.lambda.function_error", &*code);
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", format!("function error: {code}"));
        }
        self.completion = Some(completion);
        // InvokeComplete is the last message. What is already there of the body's end
        // is read, so that the connection can go back to the pool; anything else (more
        // data, or an end still on its way) is not waited for: dropping the body then
        // closes the connection.
        let mut ended = self.decoder.is_empty();
        if let Some(body) = self.body.as_mut() {
            ended &=
                body.is_end_stream() || matches!(Pin::new(body).poll_frame(cx), Poll::Ready(None));
        }
        if !ended {
            tracing::debug!(
                "no end of body yet after InvokeComplete: the body is dropped (hyper reads \
                 the rest if it can, and otherwise closes the connection)"
            );
        }
        self.body = None;
        self.slot = None;
        self.idle_timer = None;
        self.deadline = None;
        self.record_end(end);
    }

    fn record_end(&mut self, end: &'static str) {
        let Some(span) = self.span.take() else {
            return;
        };
        span.record("aws.lambda.stream.bytes", self.bytes);
        span.record("aws.lambda.stream.chunks", self.chunks);
        if let Some(t) = self.first_chunk {
            span.record("aws.lambda.stream.first_chunk_ms", t.as_secs_f64() * 1e3);
        }
        span.record("aws.lambda.stream.end", end);
        tracing::info!(
            parent: &span,
            bytes = self.bytes,
            chunks = self.chunks,
            elapsed_ms = self.started.elapsed().as_secs_f64() * 1e3,
            end,
            "stream finished"
        );
    }

    /// Polls for the next chunk (the [`Stream`](futures_core::Stream) implementation).
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamError>>> {
        if self.state != ReadState::Reading {
            return Poll::Ready(None);
        }
        // The deadline counts whatever the caller does; it is checked on every poll.
        if let Some(d) = &mut self.deadline {
            if d.as_mut().poll(cx).is_ready() {
                return self.failed(StreamErrorKind::Deadline);
            }
        }
        loop {
            match self.decoder.next_event() {
                Err(e) => return self.failed(StreamErrorKind::Decode(e)),
                Ok(Some(Event::Chunk(data))) => {
                    self.idle_timer = None;
                    if self.first_chunk.is_none() {
                        self.first_chunk = Some(self.started.elapsed());
                    }
                    self.chunks += 1;
                    self.bytes += data.len() as u64;
                    let data = match self.take_prelude(data) {
                        Ok(data) => data,
                        Err(kind) => return self.failed(kind),
                    };
                    // An empty chunk is valid; it is counted, not handed out.
                    if data.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Ok(Some(Event::Complete(c))) => {
                    if matches!(self.prelude, Prelude::Seeking(_)) {
                        return self.failed(StreamErrorKind::HttpIntegrationPrelude);
                    }
                    self.finish(c, cx);
                    return Poll::Ready(None);
                }
                Ok(Some(Event::Unknown { event_type })) => {
                    tracing::debug!(%event_type, "unknown event skipped");
                    continue;
                }
                Ok(None) => {}
            }
            let Some(body) = self.body.as_mut() else {
                return self.failed(StreamErrorKind::Truncated {
                    inside_frame: !self.decoder.is_empty(),
                });
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.idle_timer = None;
                    if let Ok(data) = frame.into_data() {
                        if let Err(e) = self.decoder.push_bytes(data) {
                            return self.failed(StreamErrorKind::Decode(e));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let mut detail = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        detail.push_str(": ");
                        detail.push_str(&s.to_string());
                        src = s.source();
                    }
                    return self.failed(StreamErrorKind::Connection(detail));
                }
                Poll::Ready(None) => {
                    return self.failed(StreamErrorKind::Truncated {
                        inside_frame: !self.decoder.is_empty(),
                    });
                }
                Poll::Pending => {
                    let Some(idle) = self.idle else {
                        return Poll::Pending;
                    };
                    let timer = self
                        .idle_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if timer.as_mut().poll(cx).is_ready() {
                        return self.failed(StreamErrorKind::IdleTimeout { idle });
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// While the HTTP-integration prelude is looked for: the chunk's bytes after it
    /// (empty while it has not ended). The delimiter may span chunks.
    fn take_prelude(&mut self, data: Bytes) -> Result<Bytes, StreamErrorKind> {
        let Prelude::Seeking(buf) = &mut self.prelude else {
            return Ok(data);
        };
        // Only the last 7 bytes already held can start a delimiter that ends in `data`.
        let from = buf.len().saturating_sub(7);
        buf.extend_from_slice(&data);
        let Some(at) = buf[from..].windows(8).position(|w| w == [0u8; 8]) else {
            if buf.len() > MAX_HTTP_INTEGRATION_PRELUDE {
                return Err(StreamErrorKind::HttpIntegrationPrelude);
            }
            return Ok(Bytes::new());
        };
        let mut all = std::mem::take(buf).freeze();
        let rest = all.split_off(from + at + 8);
        all.truncate(from + at);
        self.prelude = Prelude::Found(all);
        Ok(rest)
    }

    fn failed(&mut self, kind: StreamErrorKind) -> Poll<Option<Result<Bytes, StreamError>>> {
        let err = self.error(kind);
        self.fail(&err);
        Poll::Ready(Some(Err(err)))
    }
}

impl Drop for InvokeStreamResponse {
    fn drop(&mut self) {
        if self.state == ReadState::Reading {
            self.record_end("abandoned");
        }
    }
}

impl futures_core::Stream for InvokeStreamResponse {
    type Item = Result<Bytes, StreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_chunk(cx)
    }
}

/// A whole stream, read by [`InvokeStreamResponse::collect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CollectedStream {
    /// The concatenated chunks.
    pub payload: Bytes,
    /// `InvokeComplete` (`None` only for a `DryRun`).
    pub completion: Option<Completion>,
    /// `X-Amz-Executed-Version`.
    pub executed_version: Option<String>,
    /// The function's content type.
    pub content_type: Option<String>,
    /// `x-amzn-RequestId`.
    pub request_id: Option<String>,
}

impl CollectedStream {
    /// The function's error code, when it failed.
    pub fn function_error(&self) -> Option<&str> {
        self.completion
            .as_ref()
            .filter(|c| c.is_function_error())
            .and_then(|c| c.error_code.as_deref())
    }
}

/// [`InvokeStreamResponse`] as a [`tokio::io::AsyncRead`].
#[derive(Debug)]
pub struct StreamReader {
    stream: InvokeStreamResponse,
    current: Bytes,
}

impl StreamReader {
    /// The response (its headers, counters and, at the end, the completion).
    pub fn response(&self) -> &InvokeStreamResponse {
        &self.stream
    }

    /// Back to the response.
    pub fn into_inner(self) -> InvokeStreamResponse {
        self.stream
    }
}

impl tokio::io::AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.current.is_empty() {
            match std::task::ready!(this.stream.poll_chunk(cx)) {
                Some(Ok(chunk)) => this.current = chunk,
                Some(Err(e)) => return Poll::Ready(Err(e.into())),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.current.len().min(buf.remaining());
        buf.put_slice(&this.current.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl From<DecodeError> for StreamErrorKind {
    fn from(e: DecodeError) -> Self {
        StreamErrorKind::Decode(e)
    }
}
