//! The signing step itself, on an `http::Request<B>` whose body is bytes.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SigningInstructions, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::{HeaderName, AUTHORIZATION};
use sha2::{Digest, Sha256};

use super::credentials::Credentials;
use super::error::SigningError;
use super::fast::{self, KeyCache};

pub(super) const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
pub(super) const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Lowercase hex SHA-256 of `data`.
///
/// ```
/// assert_eq!(
///     invoke_layers::sigv4::sha256_hex(b""),
///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    // Into a buffer, a byte at a time: `hex::encode` collects an iterator of `char`s,
    // which costs more than the hash itself with SHA extensions.
    let mut out = [0u8; 64];
    match hex::encode_to_slice(digest, &mut out)
        .ok()
        .and_then(|()| std::str::from_utf8(&out).ok())
    {
        Some(hex) => hex.to_owned(),
        // Unreachable (64 is twice the digest's length, and hex is ASCII); kept total.
        None => hex::encode(digest),
    }
}

/// The payload's SHA-256, computed once per operation and shared by every attempt.
///
/// Put one in the request's extensions before the retry layer: each attempt's request
/// carries a clone of the same cell, the first signature fills it and later attempts
/// reuse it. Without one, every signature hashes the body.
///
/// ```
/// use invoke_layers::sigv4::PayloadHash;
/// let mut req = http::Request::new(bytes::Bytes::from_static(b"{}"));
/// req.extensions_mut().insert(PayloadHash::new());
/// ```
#[derive(Clone, Default)]
pub struct PayloadHash(Arc<OnceLock<String>>);

impl PayloadHash {
    /// An empty cell, filled at the first signature.
    pub fn new() -> Self {
        Self::default()
    }

    /// A hash computed elsewhere (lowercase hex SHA-256 of the body).
    pub fn precomputed(hex: String) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(hex);
        Self(Arc::new(cell))
    }

    /// The hash, computing it from `body` the first time.
    pub fn get_or_compute(&self, body: &[u8]) -> &str {
        self.0.get_or_init(|| sha256_hex(body))
    }

    /// The hash, if already computed.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

impl fmt::Debug for PayloadHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PayloadHash").field(&self.get()).finish()
    }
}

/// A source of the signing time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that always says the same time (for tests and signature oracles).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// What to sign for: region, service name, and the canonicalization settings.
///
/// The defaults are Lambda's (spec §1.1): service `lambda`, double URI encoding, path
/// normalization, no `x-amz-content-sha256` header.
#[derive(Clone)]
pub struct SigningConfig {
    region: String,
    service: String,
    double_uri_encode: bool,
    normalize_uri_path: bool,
    content_sha256_header: bool,
    /// aws-sigv4's settings for the fields above, built once. Their exclusion list is
    /// empty: excluded headers are left out before aws-sigv4 sees them (`excluded`), and
    /// the settings, cloned for every signature, then hold no list to copy.
    settings: SigningSettings,
    /// Headers never signed: aws-sigv4's default exclusions and the retry layer's two.
    excluded: Vec<std::borrow::Cow<'static, str>>,
    /// The signing key of the day, kept between signatures (see `fast`): shared by
    /// clones, new whenever a setting changes.
    key_cache: Arc<KeyCache>,
}

impl fmt::Debug for SigningConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningConfig")
            .field("region", &self.region)
            .field("service", &self.service)
            .field("double_uri_encode", &self.double_uri_encode)
            .field("normalize_uri_path", &self.normalize_uri_path)
            .field("content_sha256_header", &self.content_sha256_header)
            .finish()
    }
}

impl SigningConfig {
    /// Lambda in `region`.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            service: "lambda".to_owned(),
            double_uri_encode: true,
            normalize_uri_path: true,
            content_sha256_header: false,
            settings: SigningSettings::default(),
            excluded: Vec::new(),
            key_cache: Arc::default(),
        }
        .with_settings()
    }
    /// Signs for another service name (e.g. `execute-api`).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self.with_settings()
    }
    /// Whether the canonical URI is percent-encoded again (true for everything but S3).
    pub fn double_uri_encode(mut self, yes: bool) -> Self {
        self.double_uri_encode = yes;
        self.with_settings()
    }
    /// Whether dot segments of the path are normalized.
    pub fn normalize_uri_path(mut self, yes: bool) -> Self {
        self.normalize_uri_path = yes;
        self.with_settings()
    }
    /// Whether to add and sign `x-amz-content-sha256` (S3 needs it).
    pub fn content_sha256_header(mut self, yes: bool) -> Self {
        self.content_sha256_header = yes;
        self.with_settings()
    }
    /// The signing region.
    pub fn region(&self) -> &str {
        &self.region
    }
    /// The signing service name.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    fn with_settings(mut self) -> Self {
        let mut settings = self.build_settings();
        // Per-attempt bookkeeping added by the retry layer: sent, not signed (as the AWS
        // Rust SDK, which adds them after signing). Signing them costs CPU on every
        // attempt and protects nothing.
        self.excluded = settings
            .excluded_headers
            .take()
            .into_iter()
            .flatten()
            .chain([
                std::borrow::Cow::Borrowed("amz-sdk-invocation-id"),
                std::borrow::Cow::Borrowed("amz-sdk-request"),
            ])
            .collect();
        self.settings = settings;
        self.key_cache = Arc::default();
        self
    }

    /// The settings `fast` signs for: the defaults.
    pub(super) fn fast_path_settings(&self) -> bool {
        self.double_uri_encode && self.normalize_uri_path && !self.content_sha256_header
    }

    pub(super) fn key_cache(&self) -> &KeyCache {
        &self.key_cache
    }

    pub(super) fn is_excluded(&self, name: &HeaderName) -> bool {
        let name = name.as_str();
        self.excluded
            .iter()
            .any(|e| e.len() == name.len() && e == name)
    }

    fn build_settings(&self) -> SigningSettings {
        let mut s = SigningSettings::default();
        s.percent_encoding_mode = if self.double_uri_encode {
            PercentEncodingMode::Double
        } else {
            PercentEncodingMode::Single
        };
        s.uri_path_normalization_mode = UriPathNormalizationMode::from(self.normalize_uri_path);
        s.payload_checksum_kind = if self.content_sha256_header {
            PayloadChecksumKind::XAmzSha256
        } else {
            PayloadChecksumKind::NoHeader
        };
        s
    }
}

/// Signs `req` in place: removes signing headers of an earlier attempt, then adds
/// `X-Amz-Date`, `Authorization` and (with temporary credentials) `X-Amz-Security-Token`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use invoke_layers::sigv4::{sign_request, Credentials, SigningConfig};
///
/// let creds = Credentials::from_keys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None);
/// let mut req = http::Request::post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations")
///     .header("host", "lambda.us-east-1.amazonaws.com")
///     .body(bytes::Bytes::from_static(b"{}"))?;
/// let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// sign_request(&mut req, &creds, &SigningConfig::new("us-east-1"), at)?;
/// assert_eq!(req.headers()["x-amz-date"], "20231114T221320Z");
/// assert!(req.headers()["authorization"].to_str()?.starts_with(
///     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/lambda/aws4_request"
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sign_request<B: AsRef<[u8]>>(
    req: &mut http::Request<B>,
    credentials: &Credentials,
    config: &SigningConfig,
    time: SystemTime,
) -> Result<(), SigningError> {
    let hash = match req.extensions().get::<PayloadHash>() {
        Some(cell) => cell.get_or_compute(req.body().as_ref()).to_owned(),
        None => sha256_hex(req.body().as_ref()),
    };
    sign_request_with_hash(req, credentials, config, time, hash)
}

/// As [`sign_request`], with the payload's SHA-256 (lowercase hex) already known.
pub fn sign_request_with_hash<B>(
    req: &mut http::Request<B>,
    credentials: &Credentials,
    config: &SigningConfig,
    time: SystemTime,
    payload_sha256_hex: String,
) -> Result<(), SigningError> {
    check_signable(req, credentials, config, time)?;
    let mut stale = false;
    if let Some(signature) = fast::sign(
        req,
        credentials,
        config,
        time,
        &payload_sha256_hex,
        &mut stale,
    ) {
        if stale {
            remove_signing_headers(req.headers_mut());
        }
        signature.apply(req);
        return Ok(());
    }
    sign_with_aws_sigv4(req, credentials, config, time, payload_sha256_hex)
}

/// [`sign_request_with_hash`] through aws-sigv4's `sign`, for every request shape (the
/// fast path's reference in the tests).
pub(super) fn sign_with_aws_sigv4<B>(
    req: &mut http::Request<B>,
    credentials: &Credentials,
    config: &SigningConfig,
    time: SystemTime,
    payload_sha256_hex: String,
) -> Result<(), SigningError> {
    check_signable(req, credentials, config, time)?;
    let mut stale = false;
    let signed = signing_instructions(
        req,
        credentials,
        config,
        time,
        payload_sha256_hex,
        &mut stale,
    );
    // The signing headers of an earlier attempt go whether or not this signature worked,
    // so a request is never left carrying an old signature.
    if stale {
        remove_signing_headers(req.headers_mut());
    }
    signed?.apply_to_request_http1x(req);
    // The signature stays out of a caller's `debug!(?request)`: `HeaderValue`'s `Debug`
    // prints `Sensitive` for it. (aws-sigv4 marks the session token sensitive itself.)
    if let Some(value) = req.headers_mut().get_mut(AUTHORIZATION) {
        value.set_sensitive(true);
    }
    Ok(())
}

/// What aws-sigv4 would panic on, as errors: the access key id, region and service
/// name go into the `Authorization` header as they are, so each must be header text (an
/// environment variable read with its line ending is the usual cause); and the time must
/// be from 1970 to 9999 (`X-Amz-Date` has four digits for the year, and aws-sigv4's date
/// type ends at 9999).
///
/// A request that cannot be signed keeps no signature of an earlier attempt either: its
/// signing headers are removed with the error.
fn check_signable<B>(
    req: &mut http::Request<B>,
    credentials: &Credentials,
    config: &SigningConfig,
    time: SystemTime,
) -> Result<(), SigningError> {
    let checked = check_authorization_parts(credentials, config, time);
    if checked.is_err() {
        remove_signing_headers(req.headers_mut());
    }
    checked
}

fn check_authorization_parts(
    credentials: &Credentials,
    config: &SigningConfig,
    time: SystemTime,
) -> Result<(), SigningError> {
    /// 10000-01-01T00:00:00Z, in seconds since 1970.
    const YEAR_10000: u64 = 253_402_300_800;
    if time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(true, |d| d.as_secs() >= YEAR_10000)
    {
        return Err(SigningError::new(
            "the signing time is outside 1970 to 9999: the clock is wrong",
        ));
    }
    let header_text = |s: &str| s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    for (what, value) in [
        ("access key id", credentials.access_key_id()),
        ("region", config.region()),
        ("service name", config.service_name()),
    ] {
        if !header_text(value) {
            return Err(SigningError::new(format!(
                "the {what} holds a character a header cannot carry (a line ending or another \
                 control character)"
            )));
        }
    }
    Ok(())
}

/// Removes `Authorization`, `X-Amz-Date` and `X-Amz-Security-Token`.
fn remove_signing_headers(headers: &mut http::HeaderMap) {
    for name in [AUTHORIZATION, X_AMZ_DATE, X_AMZ_SECURITY_TOKEN] {
        headers.remove(name);
    }
}

/// aws-sigv4's instructions for `req`. Sets `stale` when `req` carries a signing header of
/// an earlier attempt (left out of this signature).
fn signing_instructions<B>(
    req: &http::Request<B>,
    credentials: &Credentials,
    config: &SigningConfig,
    time: SystemTime,
    payload_sha256_hex: String,
    stale: &mut bool,
) -> Result<SigningInstructions, SigningError> {
    let identity = Identity::new(credentials.clone(), credentials.expiry());
    let settings = config.settings.clone();
    // Excluded headers are left out before aws-sigv4 sees them: it would lowercase,
    // copy and normalize each one only to skip it when listing the signed headers. So
    // are the signing headers of an earlier attempt, found here in the one pass over the
    // headers rather than looked up.
    let mut header_pairs = Vec::with_capacity(req.headers().len());
    // The pass goes to the end even past a bad value, so `stale` sees every header.
    let mut unsignable = None;
    for (name, value) in req.headers() {
        if is_signing_header(name) {
            *stale = true;
            continue;
        }
        if config.is_excluded(name) {
            continue;
        }
        match value.to_str() {
            Ok(value) => header_pairs.push((name.as_str(), value)),
            Err(_) => {
                unsignable.get_or_insert(name);
            }
        }
    }
    if let Some(name) = unsignable {
        return Err(SigningError::new(format!(
            "header {name} has a value that is not visible ASCII"
        )));
    }
    // aws-sigv4 signs the URI's host when there is no `Host` header, and panics when the
    // URI has none either.
    if !req.headers().contains_key(http::header::HOST) && req.uri().host().is_none_or(str::is_empty)
    {
        return Err(SigningError::new(
            "the request names no host: neither a Host header nor an absolute URI",
        ));
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&config.region)
        .name(&config.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SigningError::new(e.to_string()))?
        .into();

    let uri = uri_string(req.uri());
    let method = req.method().as_str();
    let signable = SignableRequest::new(
        method,
        uri,
        header_pairs.into_iter(),
        SignableBody::Precomputed(payload_sha256_hex),
    )
    .map_err(|e| SigningError::new(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| SigningError::new(e.to_string()))?
        .into_parts();
    Ok(instructions)
}

/// `Authorization`, `X-Amz-Date` or `X-Amz-Security-Token`: what a signature adds.
pub(super) fn is_signing_header(name: &HeaderName) -> bool {
    *name == AUTHORIZATION || *name == X_AMZ_DATE || *name == X_AMZ_SECURITY_TOKEN
}

/// The URI as `Uri`'s `Display` writes it, without the formatting machinery.
fn uri_string(uri: &http::Uri) -> String {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return uri.to_string();
    };
    let (path, query) = (uri.path(), uri.query());
    let mut out = String::with_capacity(
        scheme.len() + 3 + authority.as_str().len() + path.len() + query.map_or(0, |q| q.len() + 1),
    );
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(authority.as_str());
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Formats a time as SigV4's `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
pub fn format_amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses SigV4's `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
///
/// ```
/// use invoke_layers::sigv4::{format_amz_date, parse_amz_date};
/// let t = parse_amz_date("20231114T221320Z").unwrap();
/// assert_eq!(format_amz_date(t), "20231114T221320Z");
/// assert!(parse_amz_date("2023-11-14").is_none());
/// ```
pub fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = value.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian, days since 1970-01-01).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19, item 10: after signing, `Authorization` and `X-Amz-Security-Token` are
    /// sensitive, so a caller's `Debug` of the request shows neither.
    #[test]
    fn signed_secrets_are_marked_sensitive() {
        let mut req = http::Request::post("https://lambda.us-east-1.amazonaws.com/x")
            .header("host", "lambda.us-east-1.amazonaws.com")
            .body(bytes::Bytes::from_static(b"{}"))
            .unwrap();
        let creds = Credentials::from_keys("AKID", "SECRET", Some("TOKEN-VALUE".into()));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        sign_request(&mut req, &creds, &SigningConfig::new("us-east-1"), at).unwrap();
        let h = req.headers();
        assert!(h["authorization"].is_sensitive() && h["x-amz-security-token"].is_sensitive());
        let shown = format!("{req:?}");
        assert!(!shown.contains("TOKEN-VALUE"), "{shown}");
        assert!(!shown.contains("Signature="), "{shown}");
        // What is not secret stays readable.
        assert!(shown.contains("x-amz-date"), "{shown}");
    }

    #[test]
    fn amz_date_round_trip() {
        for secs in [0u64, 951_782_400, 1_700_000_000, 4_102_444_799] {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t));
        }
        assert_eq!(
            format_amz_date(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
    }

    #[test]
    fn resigning_replaces_old_signature() {
        let creds = Credentials::from_keys("AKID", "SECRET", Some("TOKEN".into()));
        let mut req = http::Request::post("https://h/2015-03-31/functions/f/invocations")
            .header("host", "h")
            .body(bytes::Bytes::from_static(b"{}"))
            .unwrap();
        let t1 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        sign_request(&mut req, &creds, &SigningConfig::new("us-east-1"), t1).unwrap();
        let first = req.headers()["authorization"].clone();
        assert_eq!(req.headers()["x-amz-security-token"], "TOKEN");
        sign_request(
            &mut req,
            &creds,
            &SigningConfig::new("us-east-1"),
            t1 + Duration::from_secs(1),
        )
        .unwrap();
        assert_ne!(req.headers()["authorization"], first);
        assert_eq!(req.headers().get_all("authorization").iter().count(), 1);
        assert_eq!(req.headers()["x-amz-date"], "20231114T221321Z");
    }

    /// Re-signing gives the signature a fresh request gets, and drops a session token
    /// the new credentials do not have.
    #[test]
    fn resigning_signs_as_a_fresh_request_and_drops_a_stale_token() {
        let request = || {
            http::Request::post("https://h/2015-03-31/functions/f/invocations?Qualifier=1")
                .header("host", "h")
                .body(bytes::Bytes::from_static(b"{}"))
                .unwrap()
        };
        let cfg = SigningConfig::new("us-east-1");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let with_token = Credentials::from_keys("AKID", "SECRET", Some("OLD-TOKEN".into()));
        let plain = Credentials::from_keys("AKID2", "SECRET2", None);

        let mut resigned = request();
        sign_request(&mut resigned, &with_token, &cfg, t).unwrap();
        sign_request(&mut resigned, &plain, &cfg, t + Duration::from_secs(5)).unwrap();
        let mut fresh = request();
        sign_request(&mut fresh, &plain, &cfg, t + Duration::from_secs(5)).unwrap();

        assert!(resigned.headers().get("x-amz-security-token").is_none());
        assert_eq!(resigned.headers(), fresh.headers());
        // `HeaderValue`'s equality ignores sensitivity: checked on its own.
        assert!(resigned.headers()["authorization"].is_sensitive());

        // A new token is sensitive too (aws-sigv4 marks it).
        let new_token = Credentials::from_keys("AKID3", "SECRET3", Some("NEW-TOKEN".into()));
        sign_request(&mut resigned, &new_token, &cfg, t).unwrap();
        assert!(resigned.headers()["x-amz-security-token"].is_sensitive());
        assert!(!format!("{resigned:?}").contains("NEW-TOKEN"));
    }

    /// A signature that fails still takes the earlier attempt's signature off.
    #[test]
    fn a_failed_resigning_leaves_no_old_signature() {
        let mut req = http::Request::post("https://h/2015-03-31/functions/f/invocations")
            .header("host", "h")
            .body(bytes::Bytes::from_static(b"{}"))
            .unwrap();
        let creds = Credentials::from_keys("AKID", "SECRET", Some("TOKEN".into()));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cfg = SigningConfig::new("us-east-1");
        sign_request(&mut req, &creds, &cfg, t).unwrap();
        // The bad header before the old signature's, and after it.
        let bad = http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        let mut first = http::Request::new(req.body().clone());
        *first.uri_mut() = req.uri().clone();
        first.headers_mut().insert("x-custom", bad.clone());
        first.headers_mut().extend(req.headers().clone());
        req.headers_mut().insert("x-custom", bad);
        for mut req in [first, req] {
            assert!(sign_request(&mut req, &creds, &cfg, t).is_err());
            for name in ["authorization", "x-amz-date", "x-amz-security-token"] {
                assert!(req.headers().get(name).is_none(), "{name} left");
            }
        }
    }

    /// The URI handed to aws-sigv4 is the one `Display` writes, for every form.
    #[test]
    fn uri_string_is_the_display_form() {
        for uri in [
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations",
            "http://127.0.0.1:9001/2015-03-31/functions/f/invocations?Qualifier=%24LATEST",
            "http://h",
            "http://h?x=1",
            "/relative/path?q",
            "*",
            "http://u:p@[::1]:9001/a%2Fb/%7E?x=%20&y",
            "https://h:443",
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda/invocations",
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(uri_string(&uri), uri.to_string(), "{uri:?}");
        }
    }

    #[test]
    fn excluded_headers_are_sent_but_not_signed() {
        let creds = Credentials::from_keys("AKID", "SECRET", None);
        let mut req = http::Request::post("https://h/2015-03-31/functions/f/invocations")
            .header("host", "h")
            .header("x-amz-invocation-type", "Event")
            .header("user-agent", "invoke-stack")
            .header(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793",
            )
            .header(
                "amz-sdk-invocation-id",
                "0b4e5a1c-0000-4000-8000-000000000000",
            )
            .header("amz-sdk-request", "attempt=1; max=3")
            .body(bytes::Bytes::from_static(b"{}"))
            .unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        sign_request(&mut req, &creds, &SigningConfig::new("us-east-1"), at).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.contains(" SignedHeaders=host;x-amz-date;x-amz-invocation-type, "),
            "{auth}"
        );
        for kept in [
            "user-agent",
            "x-amzn-trace-id",
            "amz-sdk-invocation-id",
            "amz-sdk-request",
        ] {
            assert!(req.headers().contains_key(kept), "{kept}");
        }
    }

    #[test]
    fn non_ascii_header_is_an_error_that_hides_the_value() {
        let creds = Credentials::from_keys("AKID", "SECRET", None);
        let mut req = http::Request::post("https://h/p")
            .header(
                "x-custom",
                http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            )
            .body(Vec::<u8>::new())
            .unwrap();
        let err = sign_request(
            &mut req,
            &creds,
            &SigningConfig::new("us-east-1"),
            SystemTime::now(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("x-custom") && !msg.contains("caf"), "{msg}");
    }
}
