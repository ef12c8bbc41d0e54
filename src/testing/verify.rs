//! SigV4 verification of incoming requests: the signature is recomputed with `aws-sigv4`
//! from the headers the client says it signed, and compared.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use invoke_layers::sigv4::{
    format_amz_date, parse_amz_date, sha256_hex, sign_request_with_hash, Credentials, SigningConfig,
};

/// Why a request's signature was rejected: the error code and message Lambda uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub code: &'static str,
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

/// Keys the endpoint accepts.
#[derive(Clone)]
pub(crate) struct KeyPair {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let access_key_id = scope.next()?;
    let date = scope.next()?;
    let region = scope.next()?;
    let service = scope.next()?;
    if scope.next()? != "aws4_request" || scope.next().is_some() {
        return None;
    }
    Some(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

const MAX_SKEW: Duration = Duration::from_secs(300);

/// Checks a request's signature, as Lambda's front end would.
pub(crate) fn verify(
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    keys: &[KeyPair],
    region: &str,
    now: SystemTime,
) -> Result<(), Rejection> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| {
            reject(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )
        })?
        .to_str()
        .ok()
        .and_then(parse_authorization)
        .ok_or_else(|| {
            reject(
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
            )
        })?;
    let key = keys
        .iter()
        .find(|k| k.access_key_id == auth.access_key_id)
        .ok_or_else(|| {
            reject(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        })?;
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    if let Some(expected) = &key.session_token {
        if token != Some(expected.as_str()) {
            return Err(reject(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        }
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            reject(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        reject(
            "IncompleteSignatureException",
            format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'."),
        )
    })?;
    if auth.service != "lambda" || auth.region != region || !amz_date.starts_with(auth.date) {
        return Err(reject(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region and service 'lambda' for {region}, not '{}/{}' on {}.",
                auth.region, auth.service, auth.date
            ),
        ));
    }
    if signed_at + MAX_SKEW < now {
        return Err(reject(
            "InvalidSignatureException",
            format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                format_amz_date(now - MAX_SKEW),
                format_amz_date(now)
            ),
        ));
    }
    if signed_at > now + MAX_SKEW {
        return Err(reject(
            "InvalidSignatureException",
            format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
                format_amz_date(now + MAX_SKEW),
                format_amz_date(now)
            ),
        ));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(reject(
                "InvalidSignatureException",
                format!("'{required}' must be a 'SignedHeader' in the AWS Authorization."),
            ));
        }
    }

    // Rebuild the request with only the signed headers and sign it with our secret.
    let mut rebuilt = http::Request::new(());
    *rebuilt.method_mut() = method.clone();
    *rebuilt.uri_mut() = uri.clone();
    for name in &auth.signed_headers {
        if matches!(*name, "x-amz-date" | "x-amz-security-token") {
            continue; // the signer adds them from the time and the credentials
        }
        for value in headers.get_all(*name) {
            if let Ok(n) = http::HeaderName::from_bytes(name.as_bytes()) {
                rebuilt.headers_mut().append(n, value.clone());
            }
        }
    }
    let token_signed = auth.signed_headers.contains(&"x-amz-security-token");
    let creds = Credentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.clone(),
        token.filter(|_| token_signed).map(str::to_owned),
        None,
        "local-lambda",
    );
    sign_request_with_hash(
        &mut rebuilt,
        &creds,
        &SigningConfig::new(region),
        signed_at,
        sha256_hex(body),
    )
    .map_err(|e| reject("InvalidSignatureException", e.to_string()))?;
    let expected = rebuilt
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_authorization)
        .map(|a| a.signature.to_owned());
    let matches = expected.is_some_and(|sig| {
        // Compare without an early exit on the first differing byte.
        sig.len() == auth.signature.len()
            && sig
                .bytes()
                .zip(auth.signature.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if matches {
        Ok(())
    } else {
        Err(reject(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ))
    }
}
