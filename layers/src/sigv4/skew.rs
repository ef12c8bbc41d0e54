//! Clock skew: the offset between the server's clock and ours, learned from clock-skew
//! errors only and within a limit.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The offset between the server's clock and ours, learned from clock-skew errors.
///
/// Shared by clones of a layer. Offsets under a minute are treated as none: the `Date`
/// header has a one-second resolution and SigV4 tolerates five minutes. Offsets beyond
/// the limit (default 15 minutes, [`with_limit`](Self::with_limit)) are refused: a
/// clock that far off is not corrected silently, and whoever answers cannot move the
/// signing time to a day whose signatures could be replayed later.
#[derive(Debug, Clone)]
pub struct ClockSkew {
    offset_ms: Arc<AtomicI64>,
    limit: Duration,
}

impl Default for ClockSkew {
    fn default() -> Self {
        Self {
            offset_ms: Arc::default(),
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

impl ClockSkew {
    /// The largest offset learned by default: 15 minutes, the window in which AWS
    /// accepts a signature.
    pub const DEFAULT_LIMIT: Duration = Duration::from_secs(15 * 60);
    const IGNORE_BELOW_MS: i64 = 60_000;

    /// Refuses offsets larger than `limit` (either way). Clones made before keep
    /// sharing the offset.
    #[must_use]
    pub fn with_limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// The largest offset this accepts.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// The learned offset (server minus local), in milliseconds.
    pub fn offset_millis(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Records the server's time as seen at local time `local`. Returns `false`, and
    /// keeps the offset it had, when the difference is beyond the limit.
    pub fn learn(&self, server: SystemTime, local: SystemTime) -> bool {
        let offset = offset_millis(server, local);
        if offset.unsigned_abs() > self.limit.as_millis().try_into().unwrap_or(u64::MAX) {
            return false;
        }
        let offset = if offset.abs() < Self::IGNORE_BELOW_MS {
            0
        } else {
            offset
        };
        self.offset_ms.store(offset, Ordering::Relaxed);
        true
    }

    /// `local` corrected by the offset.
    pub fn apply(&self, local: SystemTime) -> SystemTime {
        let ms = self.offset_millis();
        let d = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            local + d
        } else {
            local.checked_sub(d).unwrap_or(local)
        }
    }
}

/// `server − local` in milliseconds, saturating.
pub(crate) fn offset_millis(server: SystemTime, local: SystemTime) -> i64 {
    match server.duration_since(local) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
        Err(behind) => i64::try_from(behind.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Codes that mean "the request's time is off", whatever the message.
const SKEW_CODES: [&str; 3] = [
    "RequestTimeTooSkewed",
    "RequestExpired",
    "RequestInTheFuture",
];
/// Codes that mean it only with a message saying so: the same codes also report wrong
/// keys and signatures (the AWS SDKs for JavaScript and Java count them as clock-skew
/// codes and check the time).
const SIGNATURE_CODES: [&str; 3] = [
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AuthFailure",
];
const SKEW_MESSAGES: [&str; 2] = ["Signature expired", "Signature not yet current"];
/// AWS error bodies are a few hundred bytes; a larger one is not read.
const MAX_ERROR_BODY: usize = 8 * 1024;

/// The clock-skew error code of a rejected response (400, 401 or 403), as one of the
/// constants above (never text from the response), or `None`.
///
/// The code comes from `x-amzn-ErrorType`, else the body: JSON `code`, `__type` or
/// `Code`, or XML `<Code>`; the message from JSON `message`, `Message` or `errorMessage`,
/// or XML `<Message>`. The body is read only when the header does not settle the
/// question, and only up to [`MAX_ERROR_BODY`]; a body that is not buffered (`None`: a
/// streaming response) leaves the header alone to decide.
pub(crate) fn clock_skew_error(
    status: u16,
    headers: &http::HeaderMap,
    body: Option<&[u8]>,
) -> Option<&'static str> {
    if !matches!(status, 400 | 401 | 403) {
        return None;
    }
    let header_code = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(sanitize);
    if let Some(code) = header_code {
        if let Some(known) = SKEW_CODES.iter().find(|c| **c == code) {
            return Some(known);
        }
        // The header wins over the body: another code is not a clock-skew error.
        SIGNATURE_CODES.iter().find(|c| **c == code)?;
    }
    let body = body?;
    if body.len() > MAX_ERROR_BODY {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let fields = ErrorFields::parse(text)?;
    let code = header_code.or_else(|| fields.code.as_deref().map(sanitize))?;
    if let Some(known) = SKEW_CODES.iter().find(|c| **c == code) {
        return Some(known);
    }
    let known = SIGNATURE_CODES.iter().find(|c| **c == code)?;
    let message = fields.message?;
    SKEW_MESSAGES
        .iter()
        .any(|m| message.contains(m))
        .then_some(*known)
}

/// An error answer's body, read already, in the extensions of a response whose own body
/// type the SigV4 layer cannot read (a streaming client's): the layer then reads this to
/// tell a clock-skew error, whose code may be known only with its message (Lambda's 403
/// `InvalidSignatureException`, "Signature expired").
///
/// ```
/// let mut resp = http::Response::new(());
/// resp.extensions_mut().insert(invoke_layers::sigv4::ErrorBody(bytes::Bytes::from_static(b"{}")));
/// ```
#[derive(Debug, Clone)]
pub struct ErrorBody(pub bytes::Bytes);

/// The bytes of a response body that is already buffered (`Bytes`, `Vec<u8>`,
/// `String`, static text), or `None` for any other body type, such as a stream.
pub(crate) fn buffered_body<RB: 'static>(body: &RB) -> Option<&[u8]> {
    let any: &dyn std::any::Any = body;
    if let Some(b) = any.downcast_ref::<bytes::Bytes>() {
        return Some(b);
    }
    if let Some(b) = any.downcast_ref::<Vec<u8>>() {
        return Some(b);
    }
    if let Some(b) = any.downcast_ref::<String>() {
        return Some(b.as_bytes());
    }
    if let Some(b) = any.downcast_ref::<&'static [u8]>() {
        return Some(b);
    }
    any.downcast_ref::<&'static str>().map(|b| b.as_bytes())
}

/// Spec §3.1: cut at the first `:` (a URL suffix), keep what follows a `#` (a namespace).
fn sanitize(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code).trim()
}

struct ErrorFields {
    code: Option<String>,
    message: Option<String>,
}

impl ErrorFields {
    fn parse(text: &str) -> Option<Self> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(trimmed).ok()?;
            let first = |keys: &[&str]| {
                keys.iter()
                    .find_map(|k| map.get(*k).and_then(serde_json::Value::as_str))
                    .map(str::to_owned)
            };
            Some(Self {
                code: first(&["code", "__type", "Code"]),
                message: first(&["message", "Message", "errorMessage"]),
            })
        } else if trimmed.starts_with('<') {
            let element = |name: &str| {
                let open = format!("<{name}>");
                let start = text.find(&open)? + open.len();
                let end = text[start..].find('<')?;
                Some(text[start..start + end].trim().to_owned())
            };
            Some(Self {
                code: element("Code"),
                message: element("Message"),
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_saturate() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(offset_millis(t + Duration::from_secs(2), t), 2_000);
        assert_eq!(offset_millis(t, t + Duration::from_secs(2)), -2_000);
        let skew = ClockSkew::default();
        assert!(!skew.learn(t + Duration::from_secs(901), t));
        assert!(skew.learn(t + Duration::from_secs(30), t));
        assert_eq!(skew.offset_millis(), 0);
        let wide = ClockSkew::default().with_limit(Duration::MAX);
        assert!(wide.learn(SystemTime::UNIX_EPOCH, t));
        assert_eq!(wide.offset_millis(), -1_700_000_000_000);
    }

    #[test]
    fn sanitized_codes() {
        assert_eq!(
            sanitize("RequestTimeTooSkewed:http://x/y"),
            "RequestTimeTooSkewed"
        );
        assert_eq!(sanitize("com.amazonaws#RequestExpired"), "RequestExpired");
        assert_eq!(sanitize(" AuthFailure "), "AuthFailure");
    }
}
