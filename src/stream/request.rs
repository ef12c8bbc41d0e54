//! [`InvokeStreamRequest`]: an [`InvokeRequest`] that `InvokeWithResponseStream` accepts.

use bytes::Bytes;

use crate::codec;
use crate::model::{
    Field, InvocationType, InvokeRequest, InvokeRequestBuilder, LogType, Problem, ValidationError,
};
use crate::transport::Endpoint;

/// The operation's name, for errors and spans.
pub const OPERATION: &str = "InvokeWithResponseStream";

/// A validated `InvokeWithResponseStream` request: every check of [`InvokeRequest`]
/// (function name, qualifier, client context, tenant id, payload size), plus the
/// operation's own: `InvocationType` is `RequestResponse` or `DryRun` (no `Event`), and
/// there is no `DurableExecutionName`.
///
/// ```
/// use invoke_stack::stream::InvokeStreamRequest;
/// use invoke_stack::model::{InvocationType, InvokeRequest, LogType};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let req = InvokeStreamRequest::builder("report:prod")
///     .payload_json(&serde_json::json!({"month": 11}))?
///     .log_type(LogType::Tail)
///     .build()?;
/// assert_eq!(req.request().function_name().qualifier(), Some("prod"));
///
/// let event = InvokeRequest::builder("report").invocation_type(InvocationType::Event).build()?;
/// assert!(InvokeStreamRequest::try_from(event).is_err()); // rejected before sending
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct InvokeStreamRequest {
    request: InvokeRequest,
}

impl InvokeStreamRequest {
    /// Starts a request (the builder of [`InvokeRequest`], checked for this operation by
    /// [`InvokeStreamRequestBuilder::build`]).
    pub fn builder(function_name: impl Into<String>) -> InvokeStreamRequestBuilder {
        InvokeStreamRequestBuilder {
            inner: InvokeRequest::builder(function_name),
        }
    }

    /// The request's fields.
    pub fn request(&self) -> &InvokeRequest {
        &self.request
    }

    /// The request path and query of this operation.
    pub fn path_and_query(base_path: &str, function_name: &str, qualifier: Option<&str>) -> String {
        let name = codec::encode_label(function_name);
        let mut out =
            format!("{base_path}/2021-11-15/functions/{name}/response-streaming-invocations");
        if let Some(q) = qualifier {
            out.push_str("?Qualifier=");
            out.push_str(&codec::encode_label(q));
        }
        out
    }

    /// Encodes the request for `endpoint`: as `Invoke` (headers, body), on this
    /// operation's path.
    ///
    /// # Errors
    ///
    /// Only if the endpoint's base path makes an invalid URI.
    pub fn encode(&self, endpoint: &Endpoint) -> Result<http::Request<Bytes>, http::Error> {
        let mut http = codec::encode(&self.request, endpoint)?;
        let pq = Self::path_and_query(
            endpoint.base_path(),
            self.request.function_name().as_str(),
            self.request.qualifier(),
        );
        let mut parts = http.uri().clone().into_parts();
        parts.path_and_query = Some(http::uri::PathAndQuery::try_from(pq)?);
        *http.uri_mut() = http::Uri::from_parts(parts).map_err(http::Error::from)?;
        Ok(http)
    }
}

impl TryFrom<InvokeRequest> for InvokeStreamRequest {
    type Error = ValidationError;

    fn try_from(request: InvokeRequest) -> Result<Self, ValidationError> {
        if request.invocation_type() == InvocationType::Event {
            return Err(ValidationError::new(
                Field::InvocationType,
                Problem::NotAllowedFor {
                    operation: OPERATION,
                    accepted: "RequestResponse or DryRun",
                },
            ));
        }
        if request.durable_execution_name().is_some() {
            return Err(ValidationError::new(
                Field::DurableExecutionName,
                Problem::NotAllowedFor {
                    operation: OPERATION,
                    accepted: "no DurableExecutionName",
                },
            ));
        }
        Ok(Self { request })
    }
}

/// Builder of [`InvokeStreamRequest`].
#[derive(Debug)]
pub struct InvokeStreamRequestBuilder {
    inner: InvokeRequestBuilder,
}

impl InvokeStreamRequestBuilder {
    /// `RequestResponse` (the default) or `DryRun`; `Event` fails at [`build`](Self::build).
    pub fn invocation_type(mut self, t: InvocationType) -> Self {
        self.inner = self.inner.invocation_type(t);
        self
    }
    /// `Tail` returns the log tail in the completion.
    pub fn log_type(mut self, t: LogType) -> Self {
        self.inner = self.inner.log_type(t);
        self
    }
    /// The client context, already base64-encoded.
    pub fn client_context_base64(mut self, base64: impl Into<String>) -> Self {
        self.inner = self.inner.client_context_base64(base64);
        self
    }
    /// The client context as JSON (encoded here).
    pub fn client_context_json(mut self, value: &serde_json::Value) -> Self {
        self.inner = self.inner.client_context_json(value);
        self
    }
    /// The payload.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.inner = self.inner.payload(payload);
        self
    }
    /// The payload, serialized as JSON.
    ///
    /// # Errors
    ///
    /// When `value` cannot be serialized.
    pub fn payload_json<T: serde::Serialize + ?Sized>(
        mut self,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        self.inner = self.inner.payload_json(value)?;
        Ok(self)
    }
    /// The version or alias.
    pub fn qualifier(mut self, q: impl Into<String>) -> Self {
        self.inner = self.inner.qualifier(q);
        self
    }
    /// The tenant id.
    pub fn tenant_id(mut self, t: impl Into<String>) -> Self {
        self.inner = self.inner.tenant_id(t);
        self
    }
    /// Checks that the payload is JSON (default off).
    pub fn check_payload_is_json(mut self, check: bool) -> Self {
        self.inner = self.inner.check_payload_is_json(check);
        self
    }
    /// Validates the request.
    ///
    /// # Errors
    ///
    /// Any [`InvokeRequestBuilder::build`] error, and `InvocationType=Event`.
    pub fn build(self) -> Result<InvokeStreamRequest, ValidationError> {
        InvokeStreamRequest::try_from(self.inner.build()?)
    }
}
