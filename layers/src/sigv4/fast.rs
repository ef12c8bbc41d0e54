//! SigV4 for the requests this crate sends, without aws-sigv4's general machinery.
//!
//! aws-sigv4's `sign` is written for every request shape AWS knows: it copies and
//! lowercases each header into a new map, parses and re-encodes the query, formats the
//! canonical request through `Display`, and derives the signing key (four HMACs) for
//! every signature. About a hundred allocations per call, and a quarter of a plain
//! Lambda call's CPU time. This module signs the common shape directly: the canonical
//! request written once into one buffer, and the signing key of the day kept between
//! signatures. The cryptography is still aws-sigv4's (`generate_signing_key`,
//! `calculate_signature`).
//!
//! What it covers (anything else goes to aws-sigv4, so the output never differs):
//!
//! - the default settings of [`SigningConfig`] (double URI encoding, path normalization,
//!   no `x-amz-content-sha256`, the signature in headers);
//! - a path of unreserved characters, `/` and percent escapes, without dot segments or
//!   empty segments;
//! - a query of ASCII `key=value` pairs (any escapes of ASCII bytes, `+` for a space);
//! - each header name once, values without leading, trailing or repeated spaces;
//! - a time between 1970 and 9999.
//!
//! The tests sign generated requests both ways and compare the headers byte for byte.

use std::borrow::Cow;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sigv4::sign::v4;
use http::header::{HeaderValue, AUTHORIZATION};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::credentials::Credentials;
use super::sign::{
    civil_from_days, is_signing_header, SigningConfig, X_AMZ_DATE, X_AMZ_SECURITY_TOKEN,
};

/// The signing key of the last day signed for, with what it was derived from. The key
/// depends on the secret, the date, the region and the service; a config has one
/// region and one service, so the secret and the date decide whether it still applies.
///
/// One slot: a config that signs for several credentials in turn derives the key again
/// whenever the secret changes (as aws-sigv4 does for every signature).
#[derive(Default)]
pub(super) struct KeyCache(RwLock<Option<CachedKey>>);

/// Wiped when dropped or replaced. The secret itself is not kept, only its SHA-256, to
/// recognize it. (No `Debug`: nothing here may be printed.)
struct CachedKey {
    secret_sha256: Zeroizing<[u8; 32]>,
    date: [u8; 8],
    key: Zeroizing<[u8; 32]>,
}

impl KeyCache {
    /// The signing key for `secret` on `date` (`YYYYMMDD`), derived once per day and
    /// secret. Readers share the cache; a cache being replaced is not waited for (the
    /// key is derived again instead), so no signature ever blocks.
    fn key(
        &self,
        secret: &str,
        date: &[u8; 8],
        time: SystemTime,
        config: &SigningConfig,
    ) -> Option<Zeroizing<[u8; 32]>> {
        let digest: Zeroizing<[u8; 32]> = Zeroizing::new(Sha256::digest(secret.as_bytes()).into());
        if let Ok(cached) = self.0.try_read() {
            if let Some(c) = cached.as_ref() {
                if c.date == *date && same(&c.secret_sha256, &digest) {
                    return Some(c.key.clone());
                }
            }
        }
        let derived =
            v4::generate_signing_key(secret, time, config.region(), config.service_name());
        let key: Zeroizing<[u8; 32]> = Zeroizing::new(derived.as_ref().try_into().ok()?);
        if let Ok(mut cached) = self.0.try_write() {
            *cached = Some(CachedKey {
                secret_sha256: digest,
                date: *date,
                key: key.clone(),
            });
        }
        Some(key)
    }

    /// Whether a key is kept (for the tests).
    #[cfg(test)]
    pub(super) fn is_filled(&self) -> bool {
        self.0.read().map(|c| c.is_some()).unwrap_or(false)
    }
}

/// Equality in time independent of where the two differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a signature adds to the request.
pub(super) struct FastSignature {
    date_time: HeaderValue,
    authorization: HeaderValue,
    token: Option<HeaderValue>,
}

impl FastSignature {
    /// Adds the signature's headers as aws-sigv4's `apply_to_request_http1x` does: the
    /// date, then `authorization`, then the session token; the last two sensitive.
    pub(super) fn apply<B>(self, req: &mut http::Request<B>) {
        let headers = req.headers_mut();
        headers.insert(X_AMZ_DATE, self.date_time);
        headers.insert(AUTHORIZATION, self.authorization);
        if let Some(token) = self.token {
            headers.insert(X_AMZ_SECURITY_TOKEN, token);
        }
    }
}

/// Unreserved characters (RFC 3986) but `.`: what encodes as itself both in the path
/// (smithy's greedy label set) and in the query, and cannot form a dot segment.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

/// `req`'s signature, or `None` when the request is outside what this module covers.
/// Sets `stale` when `req` carries a signing header of an earlier attempt (left out of
/// the signature, as the slow path leaves it out).
pub(super) fn sign<B>(
    req: &http::Request<B>,
    credentials: &Credentials,
    config: &SigningConfig,
    time: SystemTime,
    payload_sha256_hex: &str,
    stale: &mut bool,
) -> Option<FastSignature> {
    if !config.fast_path_settings() {
        return None;
    }
    let date_time = format_date_time(time)?;
    let uri = req.uri();
    let path = uri.path();
    if !path.starts_with('/')
        || path.contains("//")
        || !path.bytes().all(|b| plain(b) || b == b'/' || b == b'%')
    {
        return None;
    }

    // The headers to sign: the request's, and what the signature adds. Names come
    // lowercase from `HeaderName`; a name twice is left to aws-sigv4 (it joins values).
    let token = credentials.session_token();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(req.headers().len() + 2);
    let mut host = false;
    for (name, value) in req.headers() {
        if is_signing_header(name) {
            *stale = true;
            continue;
        }
        if config.is_excluded(name) {
            continue;
        }
        let value = value.to_str().ok()?;
        let bytes = value.as_bytes();
        if bytes.first() == Some(&b' ')
            || bytes.last() == Some(&b' ')
            || bytes.windows(2).any(|w| w == b"  ")
        {
            return None;
        }
        host |= name == http::header::HOST;
        headers.push((name.as_str(), value));
    }
    if !host {
        // As aws-sigv4 signs a request without one: the URI's host, with its port unless
        // that is the scheme's default (compared as text, as aws-sigv4 compares it).
        let authority = uri.authority()?;
        let default_port = matches!(
            (uri.scheme_str(), uri.port().as_ref().map(|p| p.as_str())),
            (Some("http"), Some("80")) | (Some("https"), Some("443"))
        );
        let value = if default_port {
            authority.host()
        } else {
            authority.as_str()
        };
        HeaderValue::from_str(value).ok()?;
        headers.push(("host", value));
    }
    let date_str = std::str::from_utf8(&date_time).ok()?;
    headers.push(("x-amz-date", date_str));
    let token_value = match token {
        Some(t) => {
            let mut v = HeaderValue::from_str(t).ok()?;
            v.set_sensitive(true);
            headers.push(("x-amz-security-token", t));
            Some(v)
        }
        None => None,
    };
    headers.sort_unstable_by(|a, b| a.0.cmp(b.0));
    if headers.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }

    // The canonical request.
    let mut creq = String::with_capacity(512);
    creq.push_str(req.method().as_str());
    creq.push('\n');
    for part in path.split_inclusive('%') {
        creq.push_str(part);
        if part.ends_with('%') {
            creq.push_str("25");
        }
    }
    creq.push('\n');
    if let Some(query) = uri.query() {
        // As aws-sigv4: form-decoded pairs, encoded again with smithy's query set, sorted
        // on their encoded text.
        let mut params: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::with_capacity(2);
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.is_empty() {
                return None;
            }
            params.push((query_part(k)?, query_part(v)?));
        }
        params.sort_unstable();
        for (i, (k, v)) in params.iter().enumerate() {
            if i > 0 {
                creq.push('&');
            }
            creq.push_str(k);
            creq.push('=');
            creq.push_str(v);
        }
    }
    creq.push('\n');
    for (name, value) in &headers {
        creq.push_str(name);
        creq.push(':');
        creq.push_str(value);
        creq.push('\n');
    }
    creq.push('\n');
    let signed_start = creq.len();
    for (i, (name, _)) in headers.iter().enumerate() {
        if i > 0 {
            creq.push(';');
        }
        creq.push_str(name);
    }
    let signed_end = creq.len();
    creq.push('\n');
    creq.push_str(payload_sha256_hex);

    // The string to sign, and the signature.
    let region = config.region();
    let service = config.service_name();
    let date = &date_time[..8];
    let date = std::str::from_utf8(date).ok()?;
    let mut sts = String::with_capacity(128 + region.len() + service.len());
    sts.push_str("AWS4-HMAC-SHA256\n");
    sts.push_str(date_str);
    sts.push('\n');
    let scope_start = sts.len();
    sts.push_str(date);
    sts.push('/');
    sts.push_str(region);
    sts.push('/');
    sts.push_str(service);
    sts.push_str("/aws4_request");
    let scope_end = sts.len();
    sts.push('\n');
    let mut hex = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(creq.as_bytes()), &mut hex).ok()?;
    sts.push_str(std::str::from_utf8(&hex).ok()?);

    let date_key: [u8; 8] = date_time[..8].try_into().ok()?;
    let key = config
        .key_cache()
        .key(credentials.secret_access_key(), &date_key, time, config)?;
    let signature = v4::calculate_signature(&key[..], sts.as_bytes());

    let access_key = credentials.access_key_id();
    let signed = &creq[signed_start..signed_end];
    let scope = &sts[scope_start..scope_end];
    let mut authorization =
        String::with_capacity(60 + access_key.len() + scope.len() + signed.len() + signature.len());
    authorization.push_str("AWS4-HMAC-SHA256 Credential=");
    authorization.push_str(access_key);
    authorization.push('/');
    authorization.push_str(scope);
    authorization.push_str(", SignedHeaders=");
    authorization.push_str(signed);
    authorization.push_str(", Signature=");
    authorization.push_str(&signature);
    // The access key, region and service are checked before signing; a value that is
    // still not header text leaves the request to aws-sigv4, never unsigned.
    let mut authorization = HeaderValue::try_from(authorization).ok()?;
    authorization.set_sensitive(true);
    Some(FastSignature {
        date_time: HeaderValue::from_bytes(&date_time).ok()?,
        authorization,
        token: token_value,
    })
}

/// A query key or value as aws-sigv4 writes it in the canonical request: decoded as a
/// form (`+` is a space, `%XX` a byte), then encoded with smithy's query set (every ASCII
/// byte but letters, digits and `-._~` as `%XX`, upper case). `None` for an escape that
/// is not two hex digits or decodes to a non-ASCII byte (left to aws-sigv4).
fn query_part(raw: &str) -> Option<Cow<'_, str>> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if raw.bytes().all(unreserved) {
        return Some(Cow::Borrowed(raw));
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let byte = match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                i += 3;
                u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?
            }
            b'+' => {
                i += 1;
                b' '
            }
            b => {
                i += 1;
                b
            }
        };
        if !byte.is_ascii() {
            return None;
        }
        if unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    Some(Cow::Owned(out))
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC, for a time from 1970 to 9999.
fn format_date_time(time: SystemTime) -> Option<[u8; 16]> {
    let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let days = i64::try_from(secs / 86_400).ok()?;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (year, month, day) = (
        u64::try_from(year).ok()?,
        u64::try_from(month).ok()?,
        u64::try_from(day).ok()?,
    );
    if year > 9999 {
        return None;
    }
    let mut out = *b"00000000T000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(4, 2, month);
    put(6, 2, day);
    put(9, 2, rest / 3600);
    put(11, 2, rest % 3600 / 60);
    put(13, 2, rest % 60);
    Some(out)
}

#[cfg(test)]
mod tests;
