//! The Invoke request and response, with validation before any network I/O.
//!
//! [`InvokeRequest::builder`] takes every input field of the API (spec §1) and
//! [`InvokeRequestBuilder::build`] checks every constraint of spec §1.4–1.5, so a request
//! that exists is one Lambda can accept:
//!
//! ```
//! use invoke_stack::model::{InvocationType, InvokeRequest, LogType};
//!
//! let req = InvokeRequest::builder("arn:aws:lambda:us-east-1:123456789012:function:orders:prod")
//!     .payload_json(&serde_json::json!({"id": 7}))?
//!     .log_type(LogType::Tail)
//!     .build()?;
//! assert_eq!(req.function_name().name(), "orders");
//! assert_eq!(req.function_name().qualifier(), Some("prod"));
//! assert_eq!(req.invocation_type(), InvocationType::RequestResponse);
//!
//! let err = InvokeRequest::builder("my fn%").build().unwrap_err();
//! assert_eq!(err.field(), invoke_stack::model::Field::FunctionName);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod validation;

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use bytes::Bytes;
use invoke_layers::trace::Untrusted;

use crate::client::CallOptions;

use validation::{check_length, parse_function_name, FUNCTION_NAME_FORMS};
pub use validation::{
    Field, PayloadLimits, Problem, ValidationError, MAX_CLIENT_CONTEXT_LEN, MAX_DURABLE_NAME_LEN,
    MAX_FUNCTION_NAME_LEN, MAX_NAME_LEN, MAX_QUALIFIER_LEN, MAX_TENANT_ID_LEN,
};

/// How Lambda runs the function (`X-Amz-Invocation-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum InvocationType {
    /// Synchronous: the response carries the function's result (status 200).
    #[default]
    RequestResponse,
    /// Asynchronous: Lambda queues the event and answers 202 at once.
    Event,
    /// Validate parameters and permissions only; the function does not run (204).
    DryRun,
}

impl InvocationType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationType::RequestResponse => "RequestResponse",
            InvocationType::Event => "Event",
            InvocationType::DryRun => "DryRun",
        }
    }
}

impl fmt::Display for InvocationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown enum value given as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of {expected}")]
pub struct ParseEnumError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl FromStr for InvocationType {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RequestResponse" => Ok(Self::RequestResponse),
            "Event" => Ok(Self::Event),
            "DryRun" => Ok(Self::DryRun),
            _ => Err(ParseEnumError {
                what: "invocation type",
                value: s.to_owned(),
                expected: "RequestResponse, Event, DryRun",
            }),
        }
    }
}

/// Whether to return the tail of the execution log (`X-Amz-Log-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum LogType {
    /// No log tail.
    #[default]
    None,
    /// The last 4 KB of the log, base64, in `X-Amz-Log-Result` (synchronous calls only).
    Tail,
}

impl LogType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogType::None => "None",
            LogType::Tail => "Tail",
        }
    }
}

impl FromStr for LogType {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "None" => Ok(Self::None),
            "Tail" => Ok(Self::Tail),
            _ => Err(ParseEnumError {
                what: "log type",
                value: s.to_owned(),
                expected: "None, Tail",
            }),
        }
    }
}

/// A validated `FunctionName` in one of its three forms, with an optional `:qualifier`.
///
/// ```
/// use invoke_stack::model::FunctionName;
/// let f: FunctionName = "123456789012:function:resize:$LATEST".parse()?;
/// assert_eq!(f.name(), "resize");
/// assert_eq!(f.account(), Some("123456789012"));
/// assert_eq!(f.qualifier(), Some("$LATEST"));
/// assert_eq!(f.as_str(), "123456789012:function:resize:$LATEST");
/// # Ok::<(), invoke_stack::model::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FunctionName {
    raw: String,
    // Byte ranges into `raw`; kept as offsets so the type stays one allocation.
    name: (usize, usize),
    qualifier: Option<(usize, usize)>,
    account: Option<(usize, usize)>,
    region: Option<(usize, usize)>,
    partition: Option<(usize, usize)>,
}

impl FunctionName {
    /// Parses and validates a function name.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let raw = value.into();
        check_length(Field::FunctionName, &raw, 1, MAX_FUNCTION_NAME_LEN)?;
        let parts = parse_function_name(&raw).ok_or_else(|| {
            ValidationError::new(
                Field::FunctionName,
                Problem::Pattern {
                    expected: FUNCTION_NAME_FORMS,
                },
            )
        })?;
        if parts.name.len() > MAX_NAME_LEN {
            return Err(ValidationError::new(
                Field::FunctionName,
                Problem::TooLong {
                    len: parts.name.len(),
                    max: MAX_NAME_LEN,
                },
            ));
        }
        let base = raw.as_ptr() as usize;
        let span = |s: &str| {
            let start = s.as_ptr() as usize - base;
            (start, start + s.len())
        };
        let name = span(parts.name);
        let qualifier = parts.qualifier.map(span);
        let account = parts.account.map(span);
        let region = parts.region.map(span);
        let partition = parts.partition.map(span);
        Ok(Self {
            name,
            qualifier,
            account,
            region,
            partition,
            raw,
        })
    }

    fn part(&self, span: (usize, usize)) -> &str {
        &self.raw[span.0..span.1]
    }

    /// The whole value, as given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The function's name (without account, region or qualifier).
    pub fn name(&self) -> &str {
        self.part(self.name)
    }

    /// The `:version` or `:alias` suffix, if any.
    pub fn qualifier(&self) -> Option<&str> {
        self.qualifier.map(|s| self.part(s))
    }

    /// The account id of a partial or full ARN.
    pub fn account(&self) -> Option<&str> {
        self.account.map(|s| self.part(s))
    }

    /// The region of a full ARN.
    pub fn region(&self) -> Option<&str> {
        self.region.map(|s| self.part(s))
    }

    /// The partition of a full ARN (`aws`, `aws-cn`, ...).
    pub fn partition(&self) -> Option<&str> {
        self.partition.map(|s| self.part(s))
    }
}

impl fmt::Debug for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FunctionName").field(&self.raw).finish()
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for FunctionName {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A validated Invoke request. Build one with [`InvokeRequest::builder`].
///
/// Cloning is cheap: the payload is reference-counted [`Bytes`].
#[derive(Clone)]
pub struct InvokeRequest {
    function_name: FunctionName,
    invocation_type: InvocationType,
    log_type: LogType,
    client_context: Option<String>,
    payload: Bytes,
    qualifier: Option<String>,
    tenant_id: Option<String>,
    durable_execution_name: Option<String>,
    options: CallOptions,
}

impl fmt::Debug for InvokeRequest {
    // The payload is sensitive (a `sensitive` blob in the model): only its size is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeRequest")
            .field("function_name", &self.function_name.as_str())
            .field("invocation_type", &self.invocation_type)
            .field("log_type", &self.log_type)
            .field("qualifier", &self.qualifier)
            .field(
                "client_context_len",
                &self.client_context.as_ref().map(String::len),
            )
            .field("payload_len", &self.payload.len())
            .field("tenant_id", &self.tenant_id)
            .field("durable_execution_name", &self.durable_execution_name)
            .field("options", &self.options)
            .finish()
    }
}

impl InvokeRequest {
    /// Starts a request for a function name, partial ARN or ARN (optionally `:qualifier`).
    pub fn builder(function_name: impl Into<String>) -> InvokeRequestBuilder {
        InvokeRequestBuilder {
            function_name: function_name.into(),
            invocation_type: InvocationType::default(),
            log_type: None,
            client_context: None,
            payload: Bytes::new(),
            qualifier: None,
            tenant_id: None,
            durable_execution_name: None,
            limits: PayloadLimits::default(),
            check_json: false,
            options: CallOptions::default(),
        }
    }

    /// This call's own options (deadline, attempt timeout, idempotence, attempts).
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    /// The same request with other per-call options (not part of the wire request: only
    /// they are checked, by `invoke`, before anything is sent).
    ///
    /// ```
    /// use std::time::Duration;
    /// use invoke_stack::{CallOptions, InvokeRequest};
    ///
    /// let req = InvokeRequest::builder("my-function").build()?;
    /// let quick = req.with_options(CallOptions::new().timeout(Duration::from_secs(1)));
    /// assert_eq!(quick.options().timeout, Some(Duration::from_secs(1)));
    /// # Ok::<(), invoke_stack::model::ValidationError>(())
    /// ```
    pub fn with_options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }

    /// The function to invoke.
    pub fn function_name(&self) -> &FunctionName {
        &self.function_name
    }
    /// Synchronous, asynchronous or dry run.
    pub fn invocation_type(&self) -> InvocationType {
        self.invocation_type
    }
    /// Whether a log tail is requested.
    pub fn log_type(&self) -> LogType {
        self.log_type
    }
    /// The base64 client context, if any.
    pub fn client_context(&self) -> Option<&str> {
        self.client_context.as_deref()
    }
    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
    /// The `Qualifier` field (not the suffix of the function name).
    pub fn qualifier(&self) -> Option<&str> {
        self.qualifier.as_deref()
    }
    /// The qualifier that applies: the `Qualifier` field or the function name's suffix.
    pub fn effective_qualifier(&self) -> Option<&str> {
        self.qualifier
            .as_deref()
            .or_else(|| self.function_name.qualifier())
    }
    /// The tenant id of a multi-tenant function.
    pub fn tenant_id(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }
    /// The durable execution name.
    pub fn durable_execution_name(&self) -> Option<&str> {
        self.durable_execution_name.as_deref()
    }
}

/// Builder for [`InvokeRequest`]; [`build`](Self::build) validates every field.
#[derive(Debug, Clone)]
pub struct InvokeRequestBuilder {
    function_name: String,
    invocation_type: InvocationType,
    log_type: Option<LogType>,
    client_context: Option<String>,
    payload: Bytes,
    qualifier: Option<String>,
    tenant_id: Option<String>,
    durable_execution_name: Option<String>,
    limits: PayloadLimits,
    check_json: bool,
    options: CallOptions,
}

impl InvokeRequestBuilder {
    /// Sets this call's own options: deadline, attempt timeout, idempotence, attempts
    /// (see [`CallOptions`]).
    pub fn options(mut self, options: CallOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the invocation type (default `RequestResponse`).
    pub fn invocation_type(mut self, t: InvocationType) -> Self {
        self.invocation_type = t;
        self
    }
    /// Asks for the log tail (synchronous calls only).
    pub fn log_type(mut self, t: LogType) -> Self {
        self.log_type = Some(t);
        self
    }
    /// Sets the client context as base64 text, as it goes on the wire.
    pub fn client_context_base64(mut self, base64: impl Into<String>) -> Self {
        self.client_context = Some(base64.into());
        self
    }
    /// Sets the client context from a JSON object (it is base64-encoded here).
    ///
    /// ```
    /// use invoke_stack::model::InvokeRequest;
    /// let req = InvokeRequest::builder("f")
    ///     .client_context_json(&serde_json::json!({"custom": {"tenant": "a"}}))
    ///     .build()?;
    /// assert!(req.client_context().is_some());
    /// # Ok::<(), invoke_stack::model::ValidationError>(())
    /// ```
    pub fn client_context_json(mut self, value: &serde_json::Value) -> Self {
        let text = value.to_string();
        self.client_context = Some(base64::engine::general_purpose::STANDARD.encode(text));
        self
    }
    /// Sets the payload bytes (must be JSON for Lambda to accept them).
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }
    /// Serializes any `Serialize` value as the JSON payload.
    pub fn payload_json<T: serde::Serialize + ?Sized>(
        mut self,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        self.payload = Bytes::from(serde_json::to_vec(value)?);
        Ok(self)
    }
    /// Sets the `Qualifier` (version or alias).
    pub fn qualifier(mut self, q: impl Into<String>) -> Self {
        self.qualifier = Some(q.into());
        self
    }
    /// Sets the tenant id.
    pub fn tenant_id(mut self, t: impl Into<String>) -> Self {
        self.tenant_id = Some(t.into());
        self
    }
    /// Sets the durable execution name.
    pub fn durable_execution_name(mut self, n: impl Into<String>) -> Self {
        self.durable_execution_name = Some(n.into());
        self
    }
    /// Overrides the payload limits (see [`PayloadLimits`]).
    pub fn payload_limits(mut self, limits: PayloadLimits) -> Self {
        self.limits = limits;
        self
    }
    /// Also checks that the payload is valid JSON before sending (costs one parse of the
    /// payload; Lambda rejects non-JSON with `InvalidRequestContentException` otherwise).
    pub fn check_payload_is_json(mut self, check: bool) -> Self {
        self.check_json = check;
        self
    }

    /// Validates every field and builds the request.
    pub fn build(self) -> Result<InvokeRequest, ValidationError> {
        self.options.validate()?;
        let function_name = FunctionName::new(self.function_name)?;
        if let Some(q) = &self.qualifier {
            validation::check_qualifier(q)?;
            if let Some(in_name) = function_name.qualifier() {
                if in_name != q {
                    return Err(ValidationError::new(
                        Field::Qualifier,
                        Problem::QualifierConflict {
                            in_function_name: in_name.to_owned(),
                            in_qualifier: q.clone(),
                        },
                    ));
                }
            }
        }
        if let Some(cc) = &self.client_context {
            validation::check_client_context(cc)?;
        }
        if let Some(t) = &self.tenant_id {
            validation::check_tenant_id(t)?;
        }
        if let Some(n) = &self.durable_execution_name {
            validation::check_durable_execution_name(n)?;
        }
        let log_type = self.log_type.unwrap_or_default();
        if log_type == LogType::Tail && self.invocation_type != InvocationType::RequestResponse {
            return Err(ValidationError::new(
                Field::LogType,
                Problem::TailRequiresRequestResponse {
                    invocation_type: self.invocation_type,
                },
            ));
        }
        let limit = self.limits.for_type(self.invocation_type);
        if self.payload.len() > limit {
            return Err(ValidationError::new(
                Field::Payload,
                Problem::PayloadTooLarge {
                    len: self.payload.len(),
                    limit,
                    invocation_type: self.invocation_type,
                },
            ));
        }
        if self.check_json
            && !self.payload.is_empty()
            && serde_json::from_slice::<serde::de::IgnoredAny>(&self.payload).is_err()
        {
            return Err(ValidationError::new(Field::Payload, Problem::NotJson));
        }
        Ok(InvokeRequest {
            function_name,
            invocation_type: self.invocation_type,
            log_type,
            client_context: self.client_context,
            payload: self.payload,
            qualifier: self.qualifier,
            tenant_id: self.tenant_id,
            durable_execution_name: self.durable_execution_name,
            options: self.options,
        })
    }
}

/// A function error: the call succeeded (HTTP 200) but the function failed
/// (`X-Amz-Function-Error`). Not an API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    kind: String,
    error_type: Option<String>,
    error_message: Option<String>,
}

impl FunctionError {
    /// Builds one from the header value and the response payload (parsed when it is JSON).
    pub fn from_parts(header: &str, payload: &[u8]) -> Self {
        // All three are the server's (or the function's) text: capped and escaped.
        fn clean(text: String) -> String {
            if Untrusted::new(&text).is_clean() {
                text
            } else {
                Untrusted::new(&text).to_string()
            }
        }
        let [error_type, error_message] =
            crate::json_fields::string_fields(payload, ["errorType", "errorMessage"])
                .unwrap_or_default();
        Self {
            kind: Untrusted::new(header).to_cow().into_owned(),
            error_type: error_type.map(clean),
            error_message: error_message.map(clean),
        }
    }

    /// The header value: `Handled` (reported by the function) or `Unhandled`
    /// (detected by Lambda: timeout, out of memory, crash), or whatever Lambda sends
    /// (bytes that are not UTF-8 written as `\xNN`: the header's presence, not its value,
    /// makes a function error).
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// True when Lambda, not the function, detected the failure.
    pub fn is_unhandled(&self) -> bool {
        self.kind == "Unhandled"
    }
    /// `errorType` from the payload, e.g. `Runtime.ExitError`.
    pub fn error_type(&self) -> Option<&str> {
        self.error_type.as_deref()
    }
    /// `errorMessage` from the payload.
    pub fn error_message(&self) -> Option<&str> {
        self.error_message.as_deref()
    }
}

impl fmt::Display for FunctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "function error ({})", self.kind)?;
        if let Some(t) = &self.error_type {
            write!(f, " {t}")?;
        }
        if let Some(m) = &self.error_message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

/// A response header's value as text, present whatever its bytes: kept as received (no
/// copy) when it needs no escaping, the usual case; otherwise capped and escaped
/// ([`Untrusted`]), so that it neither vanishes nor carries control characters.
#[derive(Clone)]
pub(crate) enum HeaderText {
    Ascii(http::HeaderValue),
    Escaped(Box<str>),
}

impl HeaderText {
    pub(crate) fn new(value: &http::HeaderValue) -> Self {
        let text = Untrusted::bytes(value.as_bytes());
        if text.is_clean() {
            Self::Ascii(value.clone())
        } else {
            Self::Escaped(text.to_string().into())
        }
    }

    /// As `new`, but visible ASCII is kept whole, however long.
    pub(crate) fn uncapped(value: &http::HeaderValue) -> Self {
        if value.to_str().is_ok() {
            Self::Ascii(value.clone())
        } else {
            Self::new(value)
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Visible ASCII, checked when made.
            Self::Ascii(v) => v.to_str().unwrap_or_default(),
            Self::Escaped(text) => text,
        }
    }
}

impl fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A successful Invoke response (any 2xx), possibly carrying a [`FunctionError`].
///
/// The text fields read from headers (request id, executed version, durable execution
/// ARN, function error) and the function error's type and message are present whatever
/// their bytes, capped and escaped ([`Untrusted`]): safe to log. The payload and the
/// log tail are kept as they are.
#[derive(Clone)]
pub struct InvokeResponse {
    pub(crate) status: u16,
    pub(crate) function_error: Option<FunctionError>,
    pub(crate) log_result: Option<HeaderText>,
    pub(crate) log_tail: Option<String>,
    pub(crate) payload: Bytes,
    pub(crate) executed_version: Option<HeaderText>,
    pub(crate) durable_execution_arn: Option<HeaderText>,
    pub(crate) request_id: Option<HeaderText>,
}

impl fmt::Debug for InvokeResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeResponse")
            .field("status", &self.status)
            .field("function_error", &self.function_error)
            .field("executed_version", &self.executed_version)
            .field("request_id", &self.request_id)
            .field("durable_execution_arn", &self.durable_execution_arn)
            .field("log_result_len", &self.log_result().map(str::len))
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl InvokeResponse {
    /// HTTP status: 200 (sync), 202 (`Event`), 204 (`DryRun`).
    pub fn status_code(&self) -> u16 {
        self.status
    }
    /// The function error, when the function failed.
    pub fn function_error(&self) -> Option<&FunctionError> {
        self.function_error.as_ref()
    }
    /// `X-Amz-Log-Result` as sent: base64 of the last 4 KB of the log.
    pub fn log_result(&self) -> Option<&str> {
        self.log_result.as_ref().map(HeaderText::as_str)
    }
    /// The decoded log tail (lossy UTF-8), when the header was valid base64.
    ///
    /// Unlike the other fields, it is kept whole, newlines and all: it is what the
    /// function wrote, and may hold its secrets. Escape it before logging it, e.g. with
    /// [`Untrusted`].
    pub fn log_tail(&self) -> Option<&str> {
        self.log_tail.as_deref()
    }
    /// The function's result (or error object) bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
    /// Deserializes the payload as JSON.
    pub fn payload_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
    /// The version that ran (alias resolved).
    pub fn executed_version(&self) -> Option<&str> {
        self.executed_version.as_ref().map(HeaderText::as_str)
    }
    /// ARN of a started durable execution.
    pub fn durable_execution_arn(&self) -> Option<&str> {
        self.durable_execution_arn.as_ref().map(HeaderText::as_str)
    }
    /// `x-amzn-RequestId`.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_ref().map(HeaderText::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(b: InvokeRequestBuilder) -> (Field, Problem) {
        let e = b.build().unwrap_err();
        (e.field(), e.problem().clone())
    }

    #[test]
    fn validation_table() {
        let long_name = "a".repeat(65);
        assert_eq!(
            field_of(InvokeRequest::builder(long_name.as_str())),
            (Field::FunctionName, Problem::TooLong { len: 65, max: 64 })
        );
        let long_arn = format!(
            "arn:aws:lambda:us-east-1:123456789012:function:f:{}",
            "q".repeat(220)
        );
        assert_eq!(
            field_of(InvokeRequest::builder(long_arn)).1,
            Problem::TooLong { len: 269, max: 256 }
        );
        assert_eq!(
            field_of(InvokeRequest::builder("")).1,
            Problem::TooShort { len: 0, min: 1 }
        );
        assert!(matches!(
            field_of(InvokeRequest::builder("my fn%")),
            (Field::FunctionName, Problem::Pattern { .. })
        ));
        assert_eq!(
            field_of(InvokeRequest::builder("f").qualifier("")),
            (Field::Qualifier, Problem::TooShort { len: 0, min: 1 })
        );
        assert_eq!(
            field_of(InvokeRequest::builder("f").qualifier("q".repeat(129))),
            (Field::Qualifier, Problem::TooLong { len: 129, max: 128 })
        );
        assert!(matches!(
            field_of(InvokeRequest::builder("f").qualifier("a b")),
            (Field::Qualifier, Problem::Pattern { .. })
        ));
        assert!(matches!(
            field_of(InvokeRequest::builder("f:1").qualifier("2")),
            (Field::Qualifier, Problem::QualifierConflict { .. })
        ));
        assert!(InvokeRequest::builder("f:1").qualifier("1").build().is_ok());
        assert_eq!(
            field_of(InvokeRequest::builder("f").client_context_base64("***")),
            (Field::ClientContext, Problem::InvalidBase64)
        );
        assert_eq!(
            field_of(InvokeRequest::builder("f").client_context_base64("WzFd")), // [1]
            (Field::ClientContext, Problem::NotJsonObject)
        );
        assert_eq!(
            field_of(InvokeRequest::builder("f").client_context_base64("A".repeat(3584))),
            (
                Field::ClientContext,
                Problem::TooLong {
                    len: 3584,
                    max: 3583
                }
            )
        );
        assert!(matches!(
            field_of(InvokeRequest::builder("f").tenant_id("a|b")),
            (Field::TenantId, Problem::Pattern { .. })
        ));
        assert_eq!(
            field_of(InvokeRequest::builder("f").tenant_id("t".repeat(257))),
            (Field::TenantId, Problem::TooLong { len: 257, max: 256 })
        );
        assert!(InvokeRequest::builder("f")
            .tenant_id("user@example.com/a=b+c:d e")
            .build()
            .is_ok());
        assert!(matches!(
            field_of(InvokeRequest::builder("f").durable_execution_name("a.b")),
            (Field::DurableExecutionName, Problem::Pattern { .. })
        ));
        assert_eq!(
            field_of(InvokeRequest::builder("f").durable_execution_name("d".repeat(65))),
            (
                Field::DurableExecutionName,
                Problem::TooLong { len: 65, max: 64 }
            )
        );
        assert_eq!(
            field_of(
                InvokeRequest::builder("f")
                    .invocation_type(InvocationType::Event)
                    .log_type(LogType::Tail)
            ),
            (
                Field::LogType,
                Problem::TailRequiresRequestResponse {
                    invocation_type: InvocationType::Event
                }
            )
        );
        assert_eq!(
            field_of(
                InvokeRequest::builder("f")
                    .invocation_type(InvocationType::Event)
                    .payload(vec![b' '; 1_048_577])
            ),
            (
                Field::Payload,
                Problem::PayloadTooLarge {
                    len: 1_048_577,
                    limit: 1_048_576,
                    invocation_type: InvocationType::Event
                }
            )
        );
        assert!(InvokeRequest::builder("f")
            .invocation_type(InvocationType::Event)
            .payload(vec![b' '; 1_048_576])
            .build()
            .is_ok());
        assert!(matches!(
            field_of(InvokeRequest::builder("f").payload(vec![b' '; 6_291_456])).1,
            Problem::PayloadTooLarge {
                limit: 6_291_455,
                ..
            }
        ));
        assert_eq!(
            field_of(
                InvokeRequest::builder("f")
                    .payload("{nope")
                    .check_payload_is_json(true)
            ),
            (Field::Payload, Problem::NotJson)
        );
    }

    #[test]
    fn error_messages_name_field_and_limit() {
        let e = InvokeRequest::builder("f")
            .invocation_type(InvocationType::Event)
            .payload(vec![b' '; 1_048_577])
            .build()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid Payload: 1048577 bytes, at most 1048576 bytes allowed for Event invocations"
        );
        // Every length names its unit: characters, except the client context's bytes.
        let message = |b: InvokeRequestBuilder| b.build().unwrap_err().to_string();
        assert_eq!(
            message(InvokeRequest::builder("a".repeat(65))),
            "invalid FunctionName: 65 characters, at most 64 characters allowed"
        );
        assert_eq!(
            message(InvokeRequest::builder("f").qualifier("q".repeat(129))),
            "invalid Qualifier: 129 characters, at most 128 characters allowed"
        );
        assert_eq!(
            message(InvokeRequest::builder("f").tenant_id("")),
            "invalid TenantId: 0 characters, at least 1 character required"
        );
        assert_eq!(
            message(InvokeRequest::builder("f").client_context_base64("A".repeat(3584))),
            "invalid ClientContext: 3584 bytes, at most 3583 bytes allowed"
        );
    }

    #[test]
    fn latest_published_is_a_qualifier() {
        // `\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+`, as a field and as a name suffix.
        for q in ["$LATEST", "$LATEST.PUBLISHED", "prod", "7", "a-b_c$d"] {
            let req = InvokeRequest::builder("f").qualifier(q).build();
            assert_eq!(
                req.map(|r| r.qualifier().map(str::to_owned)),
                Ok(Some(q.to_owned()))
            );
        }
        let req = InvokeRequest::builder("f:$LATEST.PUBLISHED")
            .qualifier("$LATEST.PUBLISHED")
            .build()
            .unwrap();
        assert_eq!(req.effective_qualifier(), Some("$LATEST.PUBLISHED"));
        for bad in [
            "$LATEST.",
            "$LATEST.X",
            "a.b",
            ".PUBLISHED",
            "$LATEST.PUBLISHED.",
            "x$LATEST.PUBLISHED",
        ] {
            assert!(
                matches!(
                    field_of(InvokeRequest::builder("f").qualifier(bad)),
                    (Field::Qualifier, Problem::Pattern { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn function_error_parses_json_payload() {
        let fe = FunctionError::from_parts(
            "Unhandled",
            br#"{"errorType":"Runtime.ExitError","errorMessage":"exited"}"#,
        );
        assert!(fe.is_unhandled());
        assert_eq!(fe.error_type(), Some("Runtime.ExitError"));
        assert_eq!(fe.error_message(), Some("exited"));
        let fe = FunctionError::from_parts("Handled", b"not json");
        assert_eq!((fe.error_type(), fe.kind()), (None, "Handled"));
    }

    #[test]
    fn debug_hides_payload() {
        let req = InvokeRequest::builder("f")
            .payload(r#"{"password":"hunter2"}"#)
            .build()
            .unwrap();
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("payload_len"));
    }
}
