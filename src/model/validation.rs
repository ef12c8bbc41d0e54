//! Input constraints of the Invoke API (spec §1.4–1.5), checked before any network I/O.

use std::fmt;

use super::InvocationType;

/// The request field a [`ValidationError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// `FunctionName` (path label).
    FunctionName,
    /// `Qualifier` (query parameter), or the `:qualifier` suffix of the function name.
    Qualifier,
    /// `X-Amz-Client-Context`.
    ClientContext,
    /// `X-Amz-Log-Type`.
    LogType,
    /// `X-Amz-Tenant-Id`.
    TenantId,
    /// `X-Amz-Durable-Execution-Name`.
    DurableExecutionName,
    /// The request body.
    Payload,
    /// `X-Amz-Invocation-Type`.
    InvocationType,
    /// A per-call option ([`CallOptions`](crate::CallOptions)): not sent, but checked.
    CallOptions,
}

impl Field {
    /// The member name used by the Lambda API model.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::FunctionName => "FunctionName",
            Field::Qualifier => "Qualifier",
            Field::ClientContext => "ClientContext",
            Field::LogType => "LogType",
            Field::TenantId => "TenantId",
            Field::DurableExecutionName => "DurableExecutionName",
            Field::Payload => "Payload",
            Field::InvocationType => "InvocationType",
            Field::CallOptions => "CallOptions",
        }
    }
}

impl Field {
    /// What the field's length limits count: bytes for the client context (its limit is
    /// on the base64 text in bytes) and the payload, characters for the rest.
    fn length_unit(self) -> &'static str {
        match self {
            Field::ClientContext | Field::Payload => "bytes",
            _ => "characters",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with a field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The value is shorter than allowed (lengths in characters, as
    /// [`TooLong`](Self::TooLong)).
    TooShort {
        /// Length of the value.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// The value is longer than allowed. Lengths count characters, except for
    /// [`Field::ClientContext`], whose limit is in bytes; the message names the unit.
    TooLong {
        /// Length of the value (characters, or bytes where the limit is in bytes).
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// The value does not match the pattern of the API model.
    Pattern {
        /// The pattern (or a description of the accepted forms).
        expected: &'static str,
    },
    /// The value is not valid base64.
    InvalidBase64,
    /// The decoded value is not a JSON object.
    NotJsonObject,
    /// The payload is not valid JSON (only checked when asked for).
    NotJson,
    /// The value could not be serialized as JSON.
    NotJsonSerializable(String),
    /// The payload is larger than the limit of its invocation type.
    PayloadTooLarge {
        /// Payload size in bytes.
        len: usize,
        /// Largest payload accepted for this invocation type, in bytes.
        limit: usize,
        /// The invocation type whose limit applies.
        invocation_type: InvocationType,
    },
    /// `LogType=Tail` was requested for an invocation that is not synchronous.
    TailRequiresRequestResponse {
        /// The invocation type that was requested.
        invocation_type: InvocationType,
    },
    /// The field (or this value of it) is not accepted by the operation, for example
    /// `InvocationType=Event` or a `DurableExecutionName` for `InvokeWithResponseStream`.
    NotAllowedFor {
        /// The operation.
        operation: &'static str,
        /// What it accepts instead.
        accepted: &'static str,
    },
    /// A per-call option that must be above zero is zero: a zero timeout would fail
    /// every attempt before it is sent, and spend the retry budget doing so.
    Zero {
        /// The option.
        option: &'static str,
    },
    /// The function name carries a qualifier that differs from the `Qualifier` field.
    QualifierConflict {
        /// Qualifier in the function name.
        in_function_name: String,
        /// Qualifier given as a separate field.
        in_qualifier: String,
    },
}

/// A request that cannot be sent, found before any network I/O.
///
/// Names the field, the problem and the limit with its unit, e.g.
/// `invalid FunctionName: 65 characters, at most 64 characters allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    field: Field,
    problem: Problem,
}

impl ValidationError {
    /// Builds an error for a field.
    pub fn new(field: Field, problem: Problem) -> Self {
        Self { field, problem }
    }

    /// The field that failed validation.
    pub fn field(&self) -> Field {
        self.field
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: ", self.field)?;
        match &self.problem {
            Problem::TooShort { len, min } => {
                let unit = self.field.length_unit();
                let min_unit = if *min == 1 { &unit[..unit.len() - 1] } else { unit };
                write!(f, "{len} {unit}, at least {min} {min_unit} required")
            }
            Problem::TooLong { len, max } => {
                let unit = self.field.length_unit();
                write!(f, "{len} {unit}, at most {max} {unit} allowed")
            }
            Problem::Pattern { expected } => write!(f, "does not match {expected}"),
            Problem::InvalidBase64 => f.write_str("not valid base64"),
            Problem::NotJsonObject => f.write_str("must be the base64 encoding of a JSON object"),
            Problem::NotJson => f.write_str("not valid JSON"),
            Problem::NotJsonSerializable(e) => write!(f, "cannot be serialized as JSON: {e}"),
            Problem::PayloadTooLarge {
                len,
                limit,
                invocation_type,
            } => write!(
                f,
                "{len} bytes, at most {limit} bytes allowed for {} invocations",
                invocation_type.as_str()
            ),
            Problem::TailRequiresRequestResponse { invocation_type } => write!(
                f,
                "LogType=Tail is only returned for RequestResponse invocations, not {}",
                invocation_type.as_str()
            ),
            Problem::NotAllowedFor {
                operation,
                accepted,
            } => write!(f, "not accepted by {operation}: {accepted}"),
            Problem::Zero { option } => write!(f, "{option} must be greater than zero"),
            Problem::QualifierConflict {
                in_function_name,
                in_qualifier,
            } => write!(
                f,
                "the function name carries qualifier {in_function_name:?} but Qualifier is {in_qualifier:?}"
            ),
        }
    }
}

impl std::error::Error for ValidationError {}

/// Request payload limits per invocation type (spec §1.5).
///
/// The defaults are Lambda's quotas as of 2026: a synchronous request must be smaller
/// than 6,291,456 bytes; an `Event` payload may be up to 1 MiB (raised from 256 KiB in
/// October 2025; the exact byte bound is not published, 1,048,576 is the inference).
/// `DryRun` has no documented limit of its own and gets the synchronous one.
/// Change them if your account or region differs.
///
/// ```
/// use invoke_stack::model::PayloadLimits;
/// let old_event_limit = PayloadLimits { event: 262_144, ..PayloadLimits::default() };
/// assert_eq!(old_event_limit.request_response, 6_291_455);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLimits {
    /// Largest accepted `RequestResponse` payload in bytes.
    pub request_response: usize,
    /// Largest accepted `Event` payload in bytes.
    pub event: usize,
    /// Largest accepted `DryRun` payload in bytes.
    pub dry_run: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self {
            request_response: 6_291_455,
            event: 1_048_576,
            dry_run: 6_291_455,
        }
    }
}

impl PayloadLimits {
    /// The limit for one invocation type.
    pub fn for_type(&self, invocation_type: InvocationType) -> usize {
        match invocation_type {
            InvocationType::RequestResponse => self.request_response,
            InvocationType::Event => self.event,
            InvocationType::DryRun => self.dry_run,
        }
    }
}

pub(crate) const FUNCTION_NAME_FORMS: &str = "a function name, partial ARN (123456789012:function:name) or ARN (arn:aws:lambda:region:123456789012:function:name), each with an optional :version or :alias; names use [a-zA-Z0-9-_.]";
pub(crate) const QUALIFIER_PATTERN: &str = r"\$LATEST, \$LATEST.PUBLISHED or [a-zA-Z0-9-_$]+";
pub(crate) const TENANT_ID_PATTERN: &str = r"[a-zA-Z0-9._:/=+\-@ ]+";
pub(crate) const DURABLE_NAME_PATTERN: &str = r"[a-zA-Z0-9-_]+";

/// Maximum length of a whole `FunctionName` (full ARN with qualifier).
pub const MAX_FUNCTION_NAME_LEN: usize = 256;
/// Maximum length of the name part of a function name.
pub const MAX_NAME_LEN: usize = 64;
/// Maximum length of a qualifier.
pub const MAX_QUALIFIER_LEN: usize = 128;
/// Maximum length of `X-Amz-Client-Context` (base64 text, bytes).
pub const MAX_CLIENT_CONTEXT_LEN: usize = 3_583;
/// Maximum length of a tenant id.
pub const MAX_TENANT_ID_LEN: usize = 256;
/// Maximum length of a durable execution name.
pub const MAX_DURABLE_NAME_LEN: usize = 64;

pub(crate) fn check_length(
    field: Field,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), ValidationError> {
    let len = value.chars().count();
    if len < min {
        return Err(ValidationError::new(field, Problem::TooShort { len, min }));
    }
    if len > max {
        return Err(ValidationError::new(field, Problem::TooLong { len, max }));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn is_alias_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}

/// Qualifier as a separate field: `\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+`.
pub(crate) fn is_valid_qualifier(q: &str) -> bool {
    q == "$LATEST.PUBLISHED" || (!q.is_empty() && q.chars().all(|c| is_alias_char(c) || c == '$'))
}

/// Qualifier suffix inside a function name: `\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+`.
fn is_valid_name_qualifier(q: &str) -> bool {
    q == "$LATEST" || q == "$LATEST.PUBLISHED" || (!q.is_empty() && q.chars().all(is_alias_char))
}

/// `[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}`
fn is_region(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 6 || !b[..2].iter().all(u8::is_ascii_lowercase) {
        return false;
    }
    let mut rest = &s[2..];
    if let Some(r) = rest.strip_prefix("-gov") {
        rest = r;
    } else if let Some(r) = rest.strip_prefix("-iso") {
        rest = r
            .strip_prefix(|c: char| c.is_ascii_lowercase())
            .unwrap_or(r);
        // `-iso` followed directly by `-[a-z]+` is also allowed; if the optional letter
        // consumed the start of the next part, back off.
        if !rest.starts_with('-') {
            rest = r;
        }
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return false;
    };
    let Some((middle, digit)) = rest.rsplit_once('-') else {
        return false;
    };
    !middle.is_empty()
        && middle.bytes().all(|c| c.is_ascii_lowercase())
        && digit.len() == 1
        && digit.as_bytes()[0].is_ascii_digit()
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|c| c.is_ascii_digit())
}

/// `aws[a-zA-Z-]*` or empty.
fn is_partition(s: &str) -> bool {
    s.is_empty()
        || (s.starts_with("aws") && s[3..].chars().all(|c| c.is_ascii_alphabetic() || c == '-'))
}

/// A function name split into its parts; see [`super::FunctionName`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NameParts<'a> {
    pub partition: Option<&'a str>,
    pub region: Option<&'a str>,
    pub account: Option<&'a str>,
    pub name: &'a str,
    pub qualifier: Option<&'a str>,
}

/// Matches the whole value against the model's `FunctionName` pattern (anchored), with
/// backtracking over the optional groups, and returns the parts.
pub(crate) fn parse_function_name(value: &str) -> Option<NameParts<'_>> {
    // One segment can only be the name (the common case: no splitting, no backtracking).
    if !value.contains(':') {
        return (!value.is_empty() && value.chars().all(is_name_char)).then(|| NameParts {
            name: value,
            ..NameParts::default()
        });
    }
    // At most 8 segments: `arn:partition:lambda:region:account:function:name:qualifier`.
    let mut buf = [""; 8];
    let mut n = 0;
    for seg in value.split(':') {
        *buf.get_mut(n)? = seg;
        n += 1;
    }
    let segs = &buf[..n];
    // Group 1: `arn:<partition>:lambda:` is all-or-nothing; with it first, then without.
    let arn = (segs.len() >= 3 && segs[0] == "arn" && is_partition(segs[1]) && segs[2] == "lambda")
        .then(|| (3usize, Some(segs[1])));
    for (start, partition) in arn.into_iter().chain([(0, None)]) {
        if let Some(mut parts) = parse_after_arn(&segs[start..]) {
            parts.partition = partition;
            return Some(parts);
        }
    }
    None
}

fn parse_after_arn<'a>(segs: &[&'a str]) -> Option<NameParts<'a>> {
    // Optional groups, in order: region, account, "function"; then name and qualifier.
    for use_region in [true, false] {
        for use_account in [true, false] {
            for use_function in [true, false] {
                let mut i = 0;
                let mut parts = NameParts::default();
                if use_region {
                    if !segs.get(i).is_some_and(|s| is_region(s)) {
                        continue;
                    }
                    parts.region = Some(segs[i]);
                    i += 1;
                }
                if use_account {
                    if !segs.get(i).is_some_and(|s| is_account(s)) {
                        continue;
                    }
                    parts.account = Some(segs[i]);
                    i += 1;
                }
                if use_function {
                    if segs.get(i) != Some(&"function") {
                        continue;
                    }
                    i += 1;
                }
                let Some(name) = segs.get(i) else { continue };
                if name.is_empty() || !name.chars().all(is_name_char) {
                    continue;
                }
                parts.name = name;
                i += 1;
                match &segs[i..] {
                    [] => return Some(parts),
                    [q] if is_valid_name_qualifier(q) => {
                        parts.qualifier = Some(q);
                        return Some(parts);
                    }
                    _ => continue,
                }
            }
        }
    }
    None
}

pub(crate) fn check_tenant_id(value: &str) -> Result<(), ValidationError> {
    check_length(Field::TenantId, value, 1, MAX_TENANT_ID_LEN)?;
    let ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._:/=+-@ ".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            Field::TenantId,
            Problem::Pattern {
                expected: TENANT_ID_PATTERN,
            },
        ))
    }
}

pub(crate) fn check_durable_execution_name(value: &str) -> Result<(), ValidationError> {
    check_length(Field::DurableExecutionName, value, 1, MAX_DURABLE_NAME_LEN)?;
    if value.chars().all(is_alias_char) {
        Ok(())
    } else {
        Err(ValidationError::new(
            Field::DurableExecutionName,
            Problem::Pattern {
                expected: DURABLE_NAME_PATTERN,
            },
        ))
    }
}

pub(crate) fn check_qualifier(value: &str) -> Result<(), ValidationError> {
    check_length(Field::Qualifier, value, 1, MAX_QUALIFIER_LEN)?;
    if is_valid_qualifier(value) {
        Ok(())
    } else {
        Err(ValidationError::new(
            Field::Qualifier,
            Problem::Pattern {
                expected: QUALIFIER_PATTERN,
            },
        ))
    }
}

pub(crate) fn check_client_context(value: &str) -> Result<(), ValidationError> {
    use base64::Engine as _;
    if value.len() > MAX_CLIENT_CONTEXT_LEN {
        return Err(ValidationError::new(
            Field::ClientContext,
            Problem::TooLong {
                len: value.len(),
                max: MAX_CLIENT_CONTEXT_LEN,
            },
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| ValidationError::new(Field::ClientContext, Problem::InvalidBase64))?;
    match serde_json::from_slice::<serde_json::Value>(&decoded) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(ValidationError::new(
            Field::ClientContext,
            Problem::NotJsonObject,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_name_forms() {
        let p = parse_function_name("my-function").unwrap();
        assert_eq!(
            (p.name, p.qualifier, p.account),
            ("my-function", None, None)
        );

        let p = parse_function_name("my-function:prod").unwrap();
        assert_eq!((p.name, p.qualifier), ("my-function", Some("prod")));

        let p = parse_function_name("123456789012:function:my-function").unwrap();
        assert_eq!((p.account, p.name), (Some("123456789012"), "my-function"));

        let p = parse_function_name("arn:aws:lambda:us-west-2:123456789012:function:f:$LATEST")
            .unwrap();
        assert_eq!(
            (p.partition, p.region, p.account, p.name, p.qualifier),
            (
                Some("aws"),
                Some("us-west-2"),
                Some("123456789012"),
                "f",
                Some("$LATEST")
            )
        );
        let p = parse_function_name("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f")
            .unwrap();
        assert_eq!(p.region, Some("us-gov-west-1"));
        let p = parse_function_name("arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:f")
            .unwrap();
        assert_eq!(p.region, Some("us-isob-east-1"));
        // A 12-digit name is a name, not an account.
        let p = parse_function_name("123456789012").unwrap();
        assert_eq!((p.account, p.name), (None, "123456789012"));
        // A function called "function".
        assert_eq!(parse_function_name("function").unwrap().name, "function");
        assert_eq!(
            parse_function_name("f:$LATEST.PUBLISHED")
                .unwrap()
                .qualifier,
            Some("$LATEST.PUBLISHED")
        );
    }

    #[test]
    fn function_name_rejects() {
        for bad in [
            "",
            "my fn%",
            "a:b:c",
            "f:",
            ":f",
            "f:$prod",
            "arn:aws:s3:::bucket",
            "arn:aws:lambda:us-east-1:123:function:f",
            "f:1:2",
            // Nine segments: one more than the longest form.
            "arn:aws:lambda:us-east-1:123456789012:function:f:1:2",
            "a:b:c:d:e:f:g:h:i:j:k",
        ] {
            assert!(parse_function_name(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn regions() {
        for ok in [
            "us-east-1",
            "cn-north-1",
            "us-gov-west-1",
            "us-iso-east-1",
            "us-isob-east-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in ["us-east", "useast-1", "US-east-1", "us-east-12", "u-east-1"] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
