//! Incremental decoding of the event-stream body of `InvokeWithResponseStream`.
//!
//! The framing and both CRCs are `aws-smithy-eventstream`'s job
//! ([`read_message_from`]). What this module adds is what that crate leaves to its
//! caller: a frame is only buffered once its prelude has been checked (prelude CRC, then
//! `total_length` against a cap), so a hostile or garbled prelude cannot make the client
//! wait for, or allocate, gigabytes; and the messages of this operation are turned into
//! typed [`Event`]s.

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the prelude: `total_length`, `headers_length`, `prelude_crc`.
pub const PRELUDE_LEN: usize = 12;
/// The smallest valid message: a prelude, no headers, no payload, the message CRC.
pub const MIN_FRAME_LEN: usize = 16;
/// The default cap on one frame: the event-stream limits (128 KiB of headers, 24 MiB of
/// payload) plus prelude and CRC. Lambda sends far smaller frames.
pub const DEFAULT_MAX_FRAME_BYTES: usize = MIN_FRAME_LEN + 128 * 1024 + 24 * 1024 * 1024;

/// One message of the stream, as this operation defines them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `PayloadChunk`: the next bytes of the function's response (possibly empty).
    Chunk(Bytes),
    /// `InvokeComplete`: the end of the invocation, with its JSON payload.
    Complete(Completion),
    /// An `event` of a type this client does not know (skipped by the stream).
    Unknown {
        /// Its `:event-type`.
        event_type: String,
    },
}

/// What `InvokeComplete` says: the function's error, if it failed, and the log tail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Completion {
    /// `ErrorCode`: set when the function failed (for example `Unhandled`).
    pub error_code: Option<String>,
    /// `ErrorDetails`: what the runtime said about the failure.
    pub error_details: Option<String>,
    /// `LogResult`: the base64 of the last 4 KB of the function's log (`LogType=Tail`).
    pub log_result: Option<String>,
}

impl Completion {
    /// The function failed: `ErrorCode` is set and not empty.
    pub fn is_function_error(&self) -> bool {
        self.error_code.as_deref().is_some_and(|c| !c.is_empty())
    }

    /// The log tail, decoded from base64 (lossy UTF-8); `None` without one or when it is
    /// not valid base64.
    pub fn log_tail(&self) -> Option<String> {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.log_result.as_deref()?.trim())
            .ok()?;
        Some(String::from_utf8_lossy(&raw).into_owned())
    }

    fn from_payload(payload: &[u8]) -> Result<Self, DecodeError> {
        // Every field is optional and an empty payload is `{}` (spec §3.4).
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let [error_code, error_details, log_result] =
            crate::json_fields::string_fields(payload, ["ErrorCode", "ErrorDetails", "LogResult"])
                .map_err(|e| DecodeError::InvalidCompletion(e.to_string()))?;
        Ok(Self {
            error_code,
            error_details,
            log_result,
        })
    }
}

/// Why the stream's bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A prelude announced a frame larger than the cap.
    #[error("a frame of {len} bytes announced, at most {max} allowed")]
    FrameTooLarge {
        /// `total_length` of the prelude.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// The prelude's CRC does not match: the bytes are not an event stream, or are
    /// corrupted.
    #[error("prelude checksum mismatch (not an event stream, or corrupted)")]
    PreludeChecksum,
    /// The event-stream decoder refused the frame (message CRC, headers, lengths).
    #[error("invalid frame: {0}")]
    Frame(String),
    /// A message without a string `:message-type` (or `:event-type` on an event).
    #[error("a message without {0}")]
    MissingHeader(&'static str),
    /// `InvokeComplete` whose payload is not the expected JSON object.
    #[error("InvokeComplete is not valid JSON: {0}")]
    InvalidCompletion(String),
    /// An `error` message: a service failure in the middle of the stream.
    #[error("error message in the stream: {code}: {message}")]
    ErrorMessage {
        /// `:error-code`.
        code: String,
        /// `:error-message`.
        message: String,
    },
    /// An `exception` message (this operation models none).
    #[error("exception message in the stream: {exception_type}: {message}")]
    Exception {
        /// `:exception-type`.
        exception_type: String,
        /// The payload, as text.
        message: String,
    },
}

/// Frames bytes into [`Event`]s: feed it what arrives with [`push`](Self::push), take
/// events with [`next_event`](Self::next_event).
///
/// Memory: the buffer holds at most one frame (bounded by the cap) plus the bytes that
/// arrived with it.
///
/// ```
/// use invoke_stack::stream::decoder::{EventDecoder, Event};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The spec's example A: a PayloadChunk with `Hello`, fed one byte at a time.
/// let frame = hex_literal(concat!(
///     "0000006f0000005af5fe871f0b3a6576656e742d747970650700",
///     "0c5061796c6f61644368756e6b0d3a636f6e74656e742d7479706507001861",
///     "70706c69636174696f6e2f6f637465742d73747265616d0d3a6d6573736167",
///     "652d747970650700056576656e7448656c6c6fe8263d64"));
/// let mut decoder = EventDecoder::default();
/// let mut events = Vec::new();
/// for b in frame {
///     decoder.push(&[b])?;
///     while let Some(e) = decoder.next_event()? { events.push(e); }
/// }
/// assert_eq!(events, [Event::Chunk("Hello".into())]);
/// # Ok(()) }
/// # fn hex_literal(s: &str) -> Vec<u8> {
/// #     (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
/// # }
/// ```
#[derive(Debug)]
pub struct EventDecoder {
    // Received bytes not yet decoded: `input` as it arrived (frames in it are decoded
    // without a copy), `buf` once bytes of a frame must be joined. At most one of them
    // holds data.
    input: Bytes,
    buf: BytesMut,
    max_frame: usize,
    // `total_length` of the frame at the front, once its prelude has been checked.
    pending: Option<usize>,
}

impl Default for EventDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl EventDecoder {
    /// A decoder that refuses frames over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            input: Bytes::new(),
            buf: BytesMut::new(),
            max_frame: max_frame.max(MIN_FRAME_LEN),
            pending: None,
        }
    }

    /// Appends received bytes. Fails at once when a prelude is complete and wrong, so
    /// a hostile length is refused before its frame is buffered.
    pub fn push(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        self.spill(data.len());
        self.buf.extend_from_slice(data);
        self.check_prelude().map(|_| ())
    }

    /// As [`push`](Self::push), without copying `data` when no partial frame is held:
    /// the whole frames in it are then decoded from it directly.
    pub fn push_bytes(&mut self, data: Bytes) -> Result<(), DecodeError> {
        if self.is_empty() {
            self.input = data;
        } else {
            self.spill(data.len());
            self.buf.extend_from_slice(&data);
        }
        self.check_prelude().map(|_| ())
    }

    /// Moves undecoded input into the joining buffer, before `more` bytes are added.
    fn spill(&mut self, more: usize) {
        if self.input.is_empty() {
            return;
        }
        let need = self.input.len() + more;
        self.buf
            .reserve(need.max(self.pending.unwrap_or(0)).min(self.max_frame));
        self.buf.extend_from_slice(&self.input);
        self.input = Bytes::new();
    }

    /// The undecoded bytes, in order.
    fn front(&self) -> &[u8] {
        if self.input.is_empty() {
            &self.buf
        } else {
            &self.input
        }
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.input.len()
    }

    /// Bytes of memory the decoder's joining buffer holds (its capacity, not its
    /// length): what a hostile prelude would have made it allocate. For tests and
    /// diagnostics.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// True when no bytes of an unfinished frame are held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.input.is_empty()
    }

    /// `total_length` of the frame at the front, once its prelude is in and valid.
    fn check_prelude(&mut self) -> Result<Option<usize>, DecodeError> {
        if let Some(len) = self.pending {
            return Ok(Some(len));
        }
        let front = self.front();
        if front.len() < PRELUDE_LEN {
            return Ok(None);
        }
        let prelude = &front[..PRELUDE_LEN];
        // Only the prelude's own CRC is checked here, so that a garbled length is
        // reported as corruption rather than as a size; the frame itself is parsed and
        // checked by aws-smithy-eventstream.
        let crc = crc32fast::hash(&prelude[..8]);
        if crc != (&prelude[8..12]).get_u32() {
            return Err(DecodeError::PreludeChecksum);
        }
        let total = (&prelude[..4]).get_u32();
        let len = usize::try_from(total).unwrap_or(usize::MAX);
        if len < MIN_FRAME_LEN {
            return Err(DecodeError::Frame(format!(
                "a frame of {len} bytes announced, below the {MIN_FRAME_LEN}-byte minimum"
            )));
        }
        if len > self.max_frame {
            return Err(DecodeError::FrameTooLarge {
                len: u64::from(total),
                max: self.max_frame,
            });
        }
        // The buffer grows to the frame at most once, not by doubling past it.
        if self.input.is_empty() {
            self.buf.reserve(len.saturating_sub(self.buf.len()));
        }
        self.pending = Some(len);
        Ok(Some(len))
    }

    /// The next complete message as an event, `None` until one is complete.
    pub fn next_event(&mut self) -> Result<Option<Event>, DecodeError> {
        let Some(len) = self.check_prelude()? else {
            return Ok(None);
        };
        let frame = if !self.input.is_empty() {
            if self.input.len() < len {
                return Ok(None);
            }
            self.input.split_to(len)
        } else {
            if self.buf.len() < len {
                return Ok(None);
            }
            self.buf.split_to(len).freeze()
        };
        self.pending = None;
        let message = read_message_from(frame).map_err(|e| DecodeError::Frame(e.to_string()))?;
        // A fresh small buffer once a large frame has gone, so a big frame's capacity
        // is not kept for the rest of the stream.
        if self.buf.is_empty() && self.buf.capacity() > 1 << 20 {
            self.buf = BytesMut::new();
        }
        interpret(&message).map(Some)
    }
}

fn string_header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .rev()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

fn interpret(message: &Message) -> Result<Event, DecodeError> {
    let message_type = string_header(message, ":message-type")
        .ok_or(DecodeError::MissingHeader(":message-type"))?;
    match message_type {
        "event" => {
            let event_type = string_header(message, ":event-type")
                .ok_or(DecodeError::MissingHeader(":event-type"))?;
            match event_type {
                "PayloadChunk" => {
                    // The Rust SDK refuses a chunk whose `:content-type` is not
                    // `application/octet-stream`; botocore and JS accept it, and so do we.
                    if string_header(message, ":content-type") != Some("application/octet-stream") {
                        tracing::debug!(
                            "PayloadChunk without :content-type application/octet-stream"
                        );
                    }
                    Ok(Event::Chunk(message.payload().clone()))
                }
                "InvokeComplete" => {
                    Completion::from_payload(message.payload()).map(Event::Complete)
                }
                other => Ok(Event::Unknown {
                    event_type: other.to_owned(),
                }),
            }
        }
        // The server's text: capped and escaped, as everywhere in errors and logs (an
        // exception's payload may be megabytes, or carry control characters).
        "error" => Err(DecodeError::ErrorMessage {
            code: untrusted(string_header(message, ":error-code").unwrap_or_default()),
            message: untrusted(string_header(message, ":error-message").unwrap_or_default()),
        }),
        "exception" => Err(DecodeError::Exception {
            exception_type: untrusted(
                string_header(message, ":exception-type").unwrap_or_default(),
            ),
            message: invoke_layers::trace::Untrusted::bytes(message.payload()).to_string(),
        }),
        _ => Err(DecodeError::MissingHeader("a known :message-type")),
    }
}

/// Server text for an error: at most [`MAX_UNTRUSTED_CHARS`](invoke_layers::trace::MAX_UNTRUSTED_CHARS), escaped.
fn untrusted(text: &str) -> String {
    invoke_layers::trace::Untrusted::new(text).to_string()
}

/// Encodes messages of this operation (for the local endpoint and for tests), with
/// aws-smithy-eventstream's encoder.
pub mod encode {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    use bytes::Bytes;

    fn string(name: &'static str, value: impl Into<String>) -> Header {
        Header::new(name, HeaderValue::String(value.into().into()))
    }

    fn write(message: &Message) -> Bytes {
        let mut out = Vec::with_capacity(message.payload().len() + 128);
        // Headers and payloads written here are within the format's limits; a value
        // over them would come from a test, and an empty frame shows it.
        if write_message_to(message, &mut out).is_err() {
            return Bytes::new();
        }
        Bytes::from(out)
    }

    /// A `PayloadChunk` event carrying `payload`.
    pub fn payload_chunk(payload: impl Into<Bytes>) -> Bytes {
        write(&Message::new_from_parts(
            vec![
                string(":event-type", "PayloadChunk"),
                string(":content-type", "application/octet-stream"),
                string(":message-type", "event"),
            ],
            payload,
        ))
    }

    /// An `InvokeComplete` event with this JSON payload.
    pub fn invoke_complete(json: impl Into<Bytes>) -> Bytes {
        write(&Message::new_from_parts(
            vec![
                string(":event-type", "InvokeComplete"),
                string(":content-type", "application/json"),
                string(":message-type", "event"),
            ],
            json,
        ))
    }

    /// An unmodeled `error` message.
    pub fn error_message(code: &str, message: &str) -> Bytes {
        write(&Message::new_from_parts(
            vec![
                string(":message-type", "error"),
                string(":error-code", code),
                string(":error-message", message),
            ],
            Bytes::new(),
        ))
    }

    /// An `exception` message with a JSON payload.
    pub fn exception(exception_type: &str, json: impl Into<Bytes>) -> Bytes {
        write(&Message::new_from_parts(
            vec![
                string(":message-type", "exception"),
                string(":exception-type", exception_type),
                string(":content-type", "application/json"),
            ],
            json,
        ))
    }
}
