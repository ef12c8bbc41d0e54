//! The wire codec: [`InvokeRequest`] → `http::Request<Bytes>`, and
//! `http::Response<Bytes>` → [`InvokeResponse`] or [`ApiError`] (spec §1–3).
//!
//! ```
//! use bytes::Bytes;
//! use invoke_stack::codec;
//! use invoke_stack::model::InvokeRequest;
//! use invoke_stack::transport::Endpoint;
//!
//! let endpoint = Endpoint::for_region("us-east-1")?;
//! let req = InvokeRequest::builder("arn:aws:lambda:us-east-1:123456789012:function:f:prod").build()?;
//! let http = codec::encode(&req, &endpoint)?;
//! assert_eq!(
//!     http.uri().path(),
//!     "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af%3Aprod/invocations"
//! );
//!
//! let resp = http::Response::builder()
//!     .status(404)
//!     .header("x-amzn-ErrorType", "ResourceNotFoundException")
//!     .body(Bytes::from_static(br#"{"Message":"Function not found: f","Type":"User"}"#))?;
//! let err = codec::decode(resp).unwrap_err();
//! assert_eq!(err.code(), "ResourceNotFoundException");
//! assert_eq!(err.message(), Some("Function not found: f"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::error::{ApiError, ApiErrorKind, ThrottleReason};
use crate::model::{
    FunctionError, HeaderText, InvocationType, InvokeRequest, InvokeResponse, LogType,
};
use crate::transport::Endpoint;
use invoke_layers::trace::Untrusted;

/// RFC 3986 unreserved characters stay; every other byte is percent-encoded (spec §1.1).
const LABEL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `X-Amz-Invocation-Type`.
pub const X_AMZ_INVOCATION_TYPE: HeaderName = HeaderName::from_static("x-amz-invocation-type");
/// `X-Amz-Log-Type`.
pub const X_AMZ_LOG_TYPE: HeaderName = HeaderName::from_static("x-amz-log-type");
/// `X-Amz-Client-Context`.
pub const X_AMZ_CLIENT_CONTEXT: HeaderName = HeaderName::from_static("x-amz-client-context");
/// `X-Amz-Tenant-Id`.
pub const X_AMZ_TENANT_ID: HeaderName = HeaderName::from_static("x-amz-tenant-id");
/// `X-Amz-Durable-Execution-Name`.
pub const X_AMZ_DURABLE_EXECUTION_NAME: HeaderName =
    HeaderName::from_static("x-amz-durable-execution-name");
/// `X-Amz-Function-Error`.
pub const X_AMZ_FUNCTION_ERROR: HeaderName = HeaderName::from_static("x-amz-function-error");
/// `X-Amz-Log-Result`.
pub const X_AMZ_LOG_RESULT: HeaderName = HeaderName::from_static("x-amz-log-result");
/// `X-Amz-Executed-Version`.
pub const X_AMZ_EXECUTED_VERSION: HeaderName = HeaderName::from_static("x-amz-executed-version");
/// `X-Amz-Durable-Execution-Arn`.
pub const X_AMZ_DURABLE_EXECUTION_ARN: HeaderName =
    HeaderName::from_static("x-amz-durable-execution-arn");
/// `x-amzn-RequestId`.
pub const X_AMZN_REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
/// `x-amzn-ErrorType`.
pub const X_AMZN_ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// Percent-encodes one path label or query value exactly as spec §1.1.
///
/// ```
/// assert_eq!(invoke_stack::codec::encode_label("f:$LATEST"), "f%3A%24LATEST");
/// ```
pub fn encode_label(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, LABEL).to_string()
}

/// The request path and query for a function and optional qualifier.
pub fn path_and_query(base_path: &str, function_name: &str, qualifier: Option<&str>) -> String {
    const FUNCTIONS: &str = "/2015-03-31/functions/";
    const INVOCATIONS: &str = "/invocations";
    const QUALIFIER: &str = "?Qualifier=";
    // One pass over each label: a label with nothing to encode (the usual case) is
    // borrowed as it is.
    let name: Cow<'_, str> = percent_encoding::utf8_percent_encode(function_name, LABEL).into();
    let qualifier: Option<Cow<'_, str>> =
        qualifier.map(|q| percent_encoding::utf8_percent_encode(q, LABEL).into());
    // The exact length, so that the URI takes the buffer as it is (`Bytes::from` a
    // `Vec` whose capacity exceeds its length allocates a second block).
    let len = base_path.len()
        + FUNCTIONS.len()
        + name.len()
        + INVOCATIONS.len()
        + qualifier.as_ref().map_or(0, |q| QUALIFIER.len() + q.len());
    let mut out = String::with_capacity(len);
    out.push_str(base_path);
    out.push_str(FUNCTIONS);
    out.push_str(&name);
    out.push_str(INVOCATIONS);
    if let Some(q) = qualifier {
        out.push_str(QUALIFIER);
        out.push_str(&q);
    }
    debug_assert_eq!(out.len(), len);
    out
}

/// Encodes a validated request as an HTTP request for `endpoint`.
///
/// The body is the payload handle (no copy). `Host`, `Content-Length` and
/// `Content-Type: application/octet-stream` (as the Rust SDK) are set; signing headers
/// are added later by the signing layer.
///
/// # Errors
///
/// Only if the endpoint's base path makes an invalid URI, which [`Endpoint`] prevents.
pub fn encode(
    req: &InvokeRequest,
    endpoint: &Endpoint,
) -> Result<http::Request<Bytes>, http::Error> {
    let pq = path_and_query(
        endpoint.base_path(),
        req.function_name().as_str(),
        req.qualifier(),
    );
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(endpoint.scheme().clone());
    parts.authority = Some(endpoint.authority().clone());
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(pq)?);
    let uri = http::Uri::from_parts(parts).map_err(http::Error::from)?;
    let mut http_req = http::Request::new(req.payload().clone());
    // Room for the headers of a typical call (these four, the retry layer's two, the
    // signature's two or three) so that no layer grows and rehashes the map.
    *http_req.headers_mut() = HeaderMap::with_capacity(12);
    *http_req.method_mut() = http::Method::POST;
    *http_req.uri_mut() = uri;
    let h = http_req.headers_mut();
    h.insert(HOST, endpoint.host_header().clone());
    h.insert(
        X_AMZ_INVOCATION_TYPE,
        HeaderValue::from_static(req.invocation_type().as_str()),
    );
    if req.log_type() == LogType::Tail {
        h.insert(X_AMZ_LOG_TYPE, HeaderValue::from_static("Tail"));
    }
    // Validated values contain only visible ASCII, so these conversions cannot fail;
    // a failure would drop the header and the server would reject the request visibly.
    if let Some(cc) = req.client_context() {
        if let Ok(v) = HeaderValue::from_str(cc) {
            h.insert(X_AMZ_CLIENT_CONTEXT, v);
        }
    }
    if let Some(t) = req.tenant_id() {
        if let Ok(v) = HeaderValue::from_str(t) {
            h.insert(X_AMZ_TENANT_ID, v);
        }
    }
    if let Some(n) = req.durable_execution_name() {
        if let Ok(v) = HeaderValue::from_str(n) {
            h.insert(X_AMZ_DURABLE_EXECUTION_NAME, v);
        }
    }
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(req.payload().len()));
    Ok(http_req)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header's value as text, present whatever its bytes, capped and escaped
/// ([`Untrusted`]).
fn header_string(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| Untrusted::bytes(v.as_bytes()).to_cow().into_owned())
}

/// Server text as kept in errors and responses: capped and escaped ([`Untrusted`]).
fn clean(text: &str) -> String {
    Untrusted::new(text).to_cow().into_owned()
}

/// What the stack's classifiers and tracing need of a response body: its bytes when they
/// were read (always for `Invoke`; for an error answer of `InvokeWithResponseStream`,
/// whose successful bodies are read later, by the caller).
pub trait BufferedBody {
    /// The body, if it has been read.
    fn buffered_bytes(&self) -> Option<&Bytes>;
    /// Gives the operation span to a body read later, so that it can record how the
    /// reading ended (nothing to do for a body already read).
    fn attach_span(&self, _span: &tracing::Span) {}
}

impl BufferedBody for Bytes {
    fn buffered_bytes(&self) -> Option<&Bytes> {
        Some(self)
    }
}

/// An error response's [`ApiError`], decoded once by the transport when the body
/// arrived and kept in the response's extensions, so that the classifiers (retry, rate
/// limit, circuit breaker), the spans and the final decoding read it instead of parsing
/// the body again. A layer of the caller's that rewrites an error response (redacts its
/// body, say) must remove this extension, or the original error is what is reported.
#[derive(Debug, Clone)]
pub struct DecodedError(pub std::sync::Arc<ApiError>);

/// Decodes an error response once, into its extensions ([`DecodedError`]); a success
/// response is left alone.
pub fn keep_decoded_error<RB: BufferedBody>(resp: &mut http::Response<RB>) {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) || resp.extensions().get::<DecodedError>().is_some() {
        return;
    }
    let body = resp.body().buffered_bytes().cloned().unwrap_or_default();
    if let Err(api) = decode_parts(status, resp.headers(), body) {
        resp.extensions_mut()
            .insert(DecodedError(std::sync::Arc::new(api)));
    }
}

/// The error of an error response: the one kept by [`keep_decoded_error`], or decoded
/// now (from the body if it was read, else from the headers); `None` for a success.
pub fn api_error<RB: BufferedBody>(
    resp: &http::Response<RB>,
) -> Option<std::borrow::Cow<'_, ApiError>> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return None;
    }
    if let Some(DecodedError(api)) = resp.extensions().get::<DecodedError>() {
        return Some(std::borrow::Cow::Borrowed(&**api));
    }
    let body = resp.body().buffered_bytes().cloned().unwrap_or_default();
    decode_parts(status, resp.headers(), body)
        .err()
        .map(std::borrow::Cow::Owned)
}

/// Decodes a response: any 2xx is success; anything else is an [`ApiError`] (the one
/// the transport kept, if it did).
pub fn decode(mut resp: http::Response<Bytes>) -> Result<InvokeResponse, ApiError> {
    if let Some(DecodedError(api)) = resp.extensions_mut().remove::<DecodedError>() {
        if !(200..300).contains(&resp.status().as_u16()) {
            return Err(std::sync::Arc::try_unwrap(api).unwrap_or_else(|shared| (*shared).clone()));
        }
    }
    let (parts, body) = resp.into_parts();
    decode_parts(parts.status.as_u16(), &parts.headers, body)
}

/// Decodes a response from its parts.
pub fn decode_parts(
    status: u16,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<InvokeResponse, ApiError> {
    decode_parts_at(status, headers, body, SystemTime::now())
}

/// As [`decode_parts`], with the current time given (for `Retry-After` HTTP dates).
pub fn decode_parts_at(
    status: u16,
    headers: &HeaderMap,
    body: Bytes,
    now: SystemTime,
) -> Result<InvokeResponse, ApiError> {
    // One pass over the headers instead of a hashed lookup per field; the first value
    // of a name counts, as `HeaderMap::get`.
    // The values are kept without a copy when they need no escaping (`HeaderText`).
    let mut fields: [Option<HeaderText>; 5] = [None, None, None, None, None];
    for (name, value) in headers {
        let slot = match name.as_str() {
            "x-amzn-requestid" => 0,
            "x-amz-function-error" => 1,
            "x-amz-log-result" => 2,
            "x-amz-executed-version" => 3,
            "x-amz-durable-execution-arn" => 4,
            _ => continue,
        };
        fields[slot].get_or_insert_with(|| {
            if slot == 2 {
                // Base64 of up to 4 KB of log: not capped, so that it can be decoded.
                HeaderText::uncapped(value)
            } else {
                HeaderText::new(value)
            }
        });
    }
    let [request_id, function_error, log_result, executed_version, durable_execution_arn] = fields;
    if !(200..300).contains(&status) {
        let request_id = request_id.as_ref().map(|id| id.as_str().to_owned());
        return Err(decode_error(status, headers, &body, now).with_request_id(request_id));
    }
    // The header's presence is what makes this a function error, whatever its value.
    let function_error = function_error
        .as_ref()
        .map(|kind| FunctionError::from_parts(kind.as_str(), &body));
    let log_tail = log_result.as_ref().map(HeaderText::as_str).and_then(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    });
    Ok(InvokeResponse {
        status,
        function_error,
        log_result,
        log_tail,
        payload: body,
        executed_version,
        durable_execution_arn,
        request_id,
    })
}

/// Cuts a URL suffix (`Foo:http://…`) and a namespace prefix (`ns#Foo`), spec §3.1.
pub fn sanitize_error_code(code: &str) -> &str {
    let code = code.split_once(':').map_or(code, |(head, _)| head);
    code.split_once('#').map_or(code, |(_, tail)| tail).trim()
}

fn decode_error(status: u16, headers: &HeaderMap, body: &[u8], now: SystemTime) -> ApiError {
    let skip_body = status >= 500 && {
        let trimmed = body.trim_ascii_start();
        trimmed.is_empty() || trimmed.len() >= 5 && trimmed[..5].eq_ignore_ascii_case(b"<html")
    };
    let fields = if skip_body {
        None
    } else {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            _ => None,
        }
    };
    // Auth front ends (and query-protocol services) answer in XML:
    // `<ErrorResponse><Error><Code>…</Code><Message>…</Message>`.
    let xml = if fields.is_none() && !skip_body {
        std::str::from_utf8(body)
            .ok()
            .filter(|t| t.trim_start().starts_with('<'))
    } else {
        None
    };
    let field = |names: &[&str]| -> Option<String> {
        if let Some(xml) = xml {
            return names.iter().find_map(|n| xml_element(xml, n));
        }
        let map = fields.as_ref()?;
        names
            .iter()
            .find_map(|n| map.get(*n).and_then(|v| v.as_str()).map(clean))
    };
    // Every text below comes from the server: capped and escaped as it is read.
    let raw_code = header_string(headers, &X_AMZN_ERROR_TYPE)
        .or_else(|| field(&["code"]))
        .or_else(|| field(&["__type"]))
        .or_else(|| field(&["Code"]));
    let code = match &raw_code {
        Some(c) if !sanitize_error_code(c).is_empty() => sanitize_error_code(c).to_owned(),
        _ => status.to_string(),
    };
    let mut kind = ApiErrorKind::from_code(&code, status);
    match &mut kind {
        ApiErrorKind::TooManyRequests {
            reason,
            retry_after,
        } => {
            *reason = field(&["Reason"]).map(|r| ThrottleReason::from(r.as_str()));
            *retry_after = header_str(headers, &http::header::RETRY_AFTER)
                .and_then(|v| parse_retry_after(v, now));
        }
        ApiErrorKind::EC2Unexpected { ec2_error_code } => {
            *ec2_error_code = field(&["EC2ErrorCode"]);
        }
        _ => {}
    }
    ApiError::new(kind, status, field(&["message", "Message", "errorMessage"]))
        .with_error_type(field(&["Type"]))
}

/// The text of the first `<name>…</name>` element, if it holds no markup.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find("</")?;
    let text = xml[start..start + len].trim();
    (!text.is_empty() && !text.contains('<')).then(|| clean(text))
}

/// Parses `Retry-After`: delay-seconds or an HTTP date, capped, nonsense ignored. The
/// one parser of the generic and the Lambda classifiers alike (see
/// [`invoke_layers::retry::parse_retry_after`]).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use invoke_stack::codec::parse_retry_after;
/// assert_eq!(parse_retry_after("2", SystemTime::now()), Some(Duration::from_secs(2)));
/// assert_eq!(parse_retry_after("0.5", SystemTime::now()), Some(Duration::from_millis(500)));
/// ```
pub use invoke_layers::retry::parse_retry_after;

/// Whether a response status is a success for this invocation type's model
/// (200 sync, 202 `Event`, 204 `DryRun`). Any 2xx is decoded as success regardless.
pub fn expected_status(t: InvocationType) -> u16 {
    match t {
        InvocationType::RequestResponse => 200,
        InvocationType::Event => 202,
        InvocationType::DryRun => 204,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InvocationType, InvokeRequest, LogType};
    use std::time::Duration;

    fn endpoint() -> Endpoint {
        Endpoint::for_region("us-east-1").unwrap()
    }

    #[test]
    fn encodes_every_field() {
        let req = InvokeRequest::builder("arn:aws:lambda:us-east-1:123456789012:function:f")
            .qualifier("$LATEST")
            .log_type(LogType::Tail)
            .client_context_json(&serde_json::json!({"a": 1}))
            .tenant_id("tenant 1")
            .durable_execution_name("run-1")
            .payload(r#"{"k":"v"}"#)
            .build()
            .unwrap();
        let http = encode(&req, &endpoint()).unwrap();
        assert_eq!(http.method(), http::Method::POST);
        assert_eq!(
            http.uri().to_string(),
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/invocations?Qualifier=%24LATEST"
        );
        let h = http.headers();
        assert_eq!(h["host"], "lambda.us-east-1.amazonaws.com");
        assert_eq!(h["x-amz-invocation-type"], "RequestResponse");
        assert_eq!(h["x-amz-log-type"], "Tail");
        assert_eq!(h["x-amz-client-context"], "eyJhIjoxfQ==");
        assert_eq!(h["x-amz-tenant-id"], "tenant 1");
        assert_eq!(h["x-amz-durable-execution-name"], "run-1");
        assert_eq!(h["content-length"], "9");
        assert_eq!(http.body().as_ref(), br#"{"k":"v"}"#);
        // The body is the same allocation as the request's payload.
        assert_eq!(http.body().as_ptr(), req.payload().as_ptr());
    }

    #[test]
    fn optional_headers_absent() {
        let req = InvokeRequest::builder("f")
            .invocation_type(InvocationType::Event)
            .build()
            .unwrap();
        let http = encode(&req, &endpoint()).unwrap();
        let h = http.headers();
        assert_eq!(h["x-amz-invocation-type"], "Event");
        for absent in [
            "x-amz-log-type",
            "x-amz-client-context",
            "x-amz-tenant-id",
            "x-amz-durable-execution-name",
        ] {
            assert!(!h.contains_key(absent), "{absent}");
        }
        assert_eq!(http.uri().query(), None);
    }

    #[test]
    fn label_encoding_matches_spec() {
        assert_eq!(encode_label("a b/c%d~e.f_g-h"), "a%20b%2Fc%25d~e.f_g-h");
        assert_eq!(encode_label("é"), "%C3%A9");
    }

    #[test]
    fn the_path_is_built_at_its_exact_length() {
        // Every byte value: names that need encoding and names that do not (borrowed).
        let all: String = (0u8..=127).map(char::from).chain(['é', '€']).collect();
        for (base, name, q) in [
            ("", "f", None),
            (
                "/base",
                "arn:aws:lambda:us-east-1:123456789012:function:f",
                Some("$LATEST"),
            ),
            ("", all.as_str(), Some(all.as_str())),
        ] {
            let p = path_and_query(base, name, q);
            assert_eq!(p.len(), p.capacity(), "{p}");
            let expected = format!(
                "{base}/2015-03-31/functions/{}/invocations{}",
                encode_label(name),
                q.map_or(String::new(), |q| format!("?Qualifier={}", encode_label(q)))
            );
            assert_eq!(p, expected);
        }
        assert_eq!(
            path_and_query("/base", "a:b", Some("$LATEST")),
            "/base/2015-03-31/functions/a%3Ab/invocations?Qualifier=%24LATEST"
        );
    }

    #[test]
    fn header_values_that_are_not_utf8_are_kept_escaped() {
        // Bytes 0x80-0xFF are legal in a header value (obs-text) but not text: the field
        // is still there, its invalid bytes escaped, its valid UTF-8 kept.
        let odd = HeaderValue::from_bytes(b"r\xffd-\xc3\xa9").unwrap();
        let mut h = HeaderMap::new();
        for name in [
            "x-amzn-requestid",
            "x-amz-executed-version",
            "x-amz-log-result",
            "x-amz-durable-execution-arn",
            "x-amz-function-error",
        ] {
            h.insert(name, odd.clone());
        }
        let r = decode_parts(200, &h, Bytes::new()).unwrap();
        let escaped = String::from(r"r\xffd-é");
        assert_eq!(r.request_id(), Some(escaped.as_str()));
        assert_eq!(r.executed_version(), Some(escaped.as_str()));
        assert_eq!(r.log_result(), Some(escaped.as_str()));
        assert_eq!(r.log_tail(), None, "not base64");
        assert_eq!(r.durable_execution_arn(), Some(escaped.as_str()));
        let fe = r
            .function_error()
            .expect("the header's presence is a function error");
        assert_eq!(fe.kind(), escaped);
        assert!(!fe.is_unhandled());
        // The first value of a name counts, as with `HeaderMap::get`.
        h.append("x-amzn-requestid", "rid".parse().unwrap());
        assert_eq!(
            decode_parts(200, &h, Bytes::new()).unwrap().request_id(),
            Some(escaped.as_str())
        );
        h.insert(
            "x-amzn-errortype",
            HeaderValue::from_bytes(b"Odd\xfe").unwrap(),
        );
        let err = decode_parts(500, &h, Bytes::new()).unwrap_err();
        assert_eq!(err.request_id(), Some(escaped.as_str()));
        assert_eq!(err.code(), r"Odd\xfe", "the error type is not lost either");
        // A function error whose value is `Unhandled` plus a stray byte is reported as
        // a function error, not as `Unhandled`.
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_bytes(b"Unhandled\x80").unwrap(),
        );
        let r = decode_parts(200, &h, Bytes::from_static(br#"{"errorMessage":"m"}"#)).unwrap();
        let fe = r.function_error().expect("a function error");
        assert_eq!(
            (fe.kind(), fe.error_message()),
            (r"Unhandled\x80", Some("m"))
        );
    }

    #[test]
    fn decodes_success_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-executed-version", "7".parse().unwrap());
        h.insert("x-amz-log-result", "aGVsbG8K".parse().unwrap());
        h.insert("x-amzn-requestid", "rid".parse().unwrap());
        h.insert("x-amz-durable-execution-arn", "arn:x".parse().unwrap());
        h.insert("x-amz-function-error", "Handled".parse().unwrap());
        let r = decode_parts(
            200,
            &h,
            Bytes::from_static(br#"{"errorType":"E","errorMessage":"m"}"#),
        )
        .unwrap();
        assert_eq!(r.executed_version(), Some("7"));
        assert_eq!(r.log_result(), Some("aGVsbG8K"));
        assert_eq!(r.log_tail(), Some("hello\n"));
        assert_eq!(r.request_id(), Some("rid"));
        assert_eq!(r.durable_execution_arn(), Some("arn:x"));
        let fe = r.function_error().unwrap();
        assert_eq!((fe.kind(), fe.error_type()), ("Handled", Some("E")));
        // 202 and 204 are successes too.
        assert_eq!(
            decode_parts(202, &HeaderMap::new(), Bytes::new())
                .unwrap()
                .status_code(),
            202
        );
        assert_eq!(
            decode_parts(204, &HeaderMap::new(), Bytes::new())
                .unwrap()
                .status_code(),
            204
        );
    }

    /// Issue 19, item 8: an error body is decoded once, by the transport; the
    /// classifiers, spans and the final decoding read that one.
    #[test]
    fn an_error_response_is_decoded_once_and_read_from_its_extensions() {
        use invoke_layers::retry::{Classification, ClassifyRetry, RetryKind};

        let mut resp = http::Response::builder()
            .status(429)
            .header("x-amzn-errortype", "TooManyRequestsException")
            .body(Bytes::from_static(br#"{"message":"Rate exceeded"}"#))
            .unwrap();
        keep_decoded_error(&mut resp);
        assert!(matches!(
            api_error(&resp),
            Some(std::borrow::Cow::Borrowed(_))
        ));
        // What is kept is what is read: replace it with another error, and the classifier
        // (and the final decoding) follow the extension, not the body.
        let other = ApiError::new(ApiErrorKind::from_code("ServiceException", 500), 500, None);
        resp.extensions_mut()
            .insert(DecodedError(std::sync::Arc::new(other)));
        let result: Result<_, crate::error::TransportError> = Ok(resp);
        let class = crate::classify::LambdaClassifier::default().classify(&result);
        assert!(
            !matches!(
                class,
                Classification::Retryable {
                    kind: RetryKind::Throttling,
                    ..
                }
            ),
            "{class:?}"
        );
        let Ok(resp) = result else { unreachable!() };
        let err = decode(resp).unwrap_err();
        assert_eq!(err.code(), "ServiceException");
        // A success is never decoded as an error.
        let mut ok = http::Response::new(Bytes::from_static(b"{}"));
        keep_decoded_error(&mut ok);
        assert!(ok.extensions().get::<DecodedError>().is_none());
        assert!(api_error(&ok).is_none());
    }

    #[test]
    fn error_code_precedence_and_sanitizing() {
        let none = HeaderMap::new();
        let e = |status, h: &HeaderMap, body: &'static str| {
            decode_parts(status, h, Bytes::from_static(body.as_bytes())).unwrap_err()
        };
        let mut h = HeaderMap::new();
        h.insert(
            "X-Amzn-ErrorType",
            "ResourceNotFoundException:http://internal.amazon.com/"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            e(404, &h, r#"{"code":"Other"}"#).code(),
            "ResourceNotFoundException"
        );
        assert_eq!(
            e(
                400,
                &none,
                r#"{"code":"aws#InvalidParameterValueException","__type":"X"}"#
            )
            .code(),
            "InvalidParameterValueException"
        );
        assert_eq!(
            e(
                409,
                &none,
                r#"{"__type":"com.amazon#ResourceConflictException","message":"busy"}"#
            )
            .message(),
            Some("busy")
        );
        assert_eq!(
            e(409, &none, r#"{"Code":"ResourceConflictException"}"#).code(),
            "ResourceConflictException"
        );
        assert_eq!(e(500, &none, "").code(), "500");
        assert_eq!(
            e(502, &none, "<html><body>Bad gateway</body></html>").code(),
            "502"
        );
        assert_eq!(e(503, &none, "  <HTML>").status(), 503);
        assert_eq!(e(400, &none, "not json").code(), "400");
        assert_eq!(e(413, &none, "").kind(), &ApiErrorKind::RequestTooLarge);
        let m = e(
            400,
            &none,
            r#"{"__type":"InvalidRequestContentException","errorMessage":"m3"}"#,
        );
        assert_eq!(m.message(), Some("m3"));
        let t = e(
            404,
            &none,
            r#"{"__type":"ResourceNotFoundException","Message":"nf","Type":"User"}"#,
        );
        assert_eq!((t.message(), t.error_type()), (Some("nf"), Some("User")));
    }

    #[test]
    fn throttle_members() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        h.insert(
            "x-amzn-errortype",
            "TooManyRequestsException".parse().unwrap(),
        );
        let err = decode_parts(
            429,
            &h,
            Bytes::from_static(br#"{"message":"Rate exceeded","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","Type":"User"}"#),
        )
        .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            err.throttle_reason(),
            Some(&ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded)
        );
        assert_eq!(err.message(), Some("Rate exceeded"));
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Tue, 24 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Tue, 24 Nov 2026 10:00:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Tue, 24 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
