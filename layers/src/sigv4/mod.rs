//! AWS SigV4 request signing as a tower layer.
//!
//! [`SigV4Layer`] signs every `http::Request<B>` whose body is available as bytes
//! (`B: AsRef<[u8]>`: `Bytes`, `Vec<u8>`, `String`, ...) with the `aws-sigv4` crate, then
//! calls the inner service. It works on any HTTP tower service, not only Lambda's.
//!
//! - **Fresh on every attempt.** Put the layer *inside* a retry layer: each attempt gets
//!   a new `X-Amz-Date` and signature, and the headers of an earlier signature are
//!   removed first.
//! - **Hash once.** The payload's SHA-256 is read from a [`PayloadHash`] in the
//!   request's extensions when there is one, so a retry never re-hashes the body.
//! - **Lambda's settings by default** ([`SigningConfig::new`]): double URI encoding, path
//!   normalization, no `x-amz-content-sha256` header (spec §1.1).
//! - **Secrets stay secret.** `Debug` of credentials is redacted (they are
//!   `aws-credential-types` credentials); errors name the failing source or header, never
//!   a key, token, signature or header value.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use invoke_layers::sigv4::{Credentials, SigV4Layer, SigningConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let creds = Credentials::from_keys("AKIDEXAMPLE", "secret", None);
//! let svc = ServiceBuilder::new()
//!     .layer(SigV4Layer::new(creds, SigningConfig::new("us-east-1")))
//!     .service(service_fn(|req: http::Request<Bytes>| async move {
//!         // A real stack would send the request here.
//!         Ok::<_, std::convert::Infallible>(req.headers().contains_key("authorization"))
//!     }));
//! let req = http::Request::post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations")
//!     .body(Bytes::from_static(b"{}"))?;
//! assert!(svc.oneshot(req).await?);
//! # Ok(()) }
//! ```
//!
//! # Testing
//!
//! Give the layer a [`FixedClock`] and static [`Credentials`], put a
//! `tower_test::mock` behind it, and assert on the headers the mock receives.

mod credentials;
mod error;
mod future;
mod layer;
mod service;
mod sign;

pub use credentials::{
    Credentials, CredentialsFuture, EnvironmentProvider, ProvideCredentials,
    SharedCredentialsProvider,
};
pub use error::{CredentialsError, CredentialsErrorKind, SigV4Error, SigningError};
pub use future::ResponseFuture;
pub use layer::SigV4Layer;
pub use service::SigV4;
pub use sign::{
    format_amz_date, parse_amz_date, sha256_hex, sign_request, sign_request_with_hash, Clock,
    FixedClock, PayloadHash, SigningConfig, SystemClock,
};

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};
    use tower::{Layer, ServiceExt};
    use tower_test::mock;

    fn request() -> http::Request<Bytes> {
        http::Request::post(
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations",
        )
        .header("host", "lambda.us-east-1.amazonaws.com")
        .body(Bytes::from_static(b"{\"a\":1}"))
        .unwrap()
    }

    #[tokio::test]
    async fn signs_before_the_inner_service_sees_the_request() {
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, &'static str>();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let layer = SigV4Layer::new(
            Credentials::from_keys("AKID", "SECRET", Some("TOKEN".into())),
            SigningConfig::new("eu-west-1"),
        )
        .with_clock(FixedClock(at));
        let svc = layer.layer(mock);
        let call = tokio::spawn(svc.oneshot(request()));
        let (seen, send) = handle.next_request().await.unwrap();
        send.send_response("ok");
        assert_eq!(call.await.unwrap().unwrap(), "ok");
        let h = seen.headers();
        assert_eq!(h["x-amz-date"], "20231114T221320Z");
        assert_eq!(h["x-amz-security-token"], "TOKEN");
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20231114/eu-west-1/lambda/aws4_request, SignedHeaders="), "{auth}");
        assert!(!h.contains_key("x-amz-content-sha256"));
    }

    #[derive(Debug)]
    struct Slow(Arc<AtomicUsize>);
    impl ProvideCredentials for Slow {
        fn provide_credentials(&self) -> CredentialsFuture {
            let calls = Arc::clone(&self.0);
            CredentialsFuture::new(async move {
                tokio::task::yield_now().await;
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Ok(Credentials::from_keys("AKID", "SECRET", None))
                } else {
                    Err(CredentialsError::new(
                        "slow",
                        CredentialsErrorKind::ProviderError,
                        "down",
                    ))
                }
            })
        }
    }

    #[tokio::test]
    async fn async_provider_then_failure_is_typed() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, &'static str>();
        let svc =
            SigV4Layer::new(Slow(Arc::clone(&calls)), SigningConfig::new("us-east-1")).layer(mock);
        let first = tokio::spawn(svc.clone().oneshot(request()));
        let (seen, send) = handle.next_request().await.unwrap();
        assert!(seen.headers().contains_key("authorization"));
        send.send_response("ok");
        assert_eq!(first.await.unwrap().unwrap(), "ok");

        let err = svc.oneshot(request()).await.unwrap_err();
        match err {
            SigV4Error::Credentials(e) => {
                assert_eq!(e.source_name(), "slow");
                assert!(e.is_retryable());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn payload_hash_is_computed_once_per_operation() {
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, ()>();
        let svc = SigV4Layer::new(
            Credentials::from_keys("A", "S", None),
            SigningConfig::new("us-east-1"),
        )
        .layer(mock);
        let cell = PayloadHash::new();
        for _ in 0..2 {
            let mut req = request();
            req.extensions_mut().insert(cell.clone());
            let call = tokio::spawn(svc.clone().oneshot(req));
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(());
            call.await.unwrap().unwrap();
        }
        assert_eq!(cell.get(), Some(sha256_hex(b"{\"a\":1}").as_str()));
        // A precomputed (here: deliberately wrong) hash is used as given, proving no re-hash.
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, ()>();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let layer = SigV4Layer::new(
            Credentials::from_keys("A", "S", None),
            SigningConfig::new("us-east-1"),
        )
        .with_clock(FixedClock(at));
        let svc = layer.layer(mock);
        let mut auths = Vec::new();
        for hash in [PayloadHash::precomputed("0".repeat(64)), PayloadHash::new()] {
            let mut req = request();
            req.extensions_mut().insert(hash);
            let call = tokio::spawn(svc.clone().oneshot(req));
            let (seen, send) = handle.next_request().await.unwrap();
            auths.push(seen.headers()["authorization"].clone());
            send.send_response(());
            call.await.unwrap().unwrap();
        }
        assert_ne!(auths[0], auths[1]);
    }

    #[tokio::test]
    async fn readiness_is_forwarded() {
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, ()>();
        handle.allow(0);
        let mut svc = tower_test::mock::Spawn::new(
            SigV4Layer::new(
                Credentials::from_keys("A", "S", None),
                SigningConfig::new("us-east-1"),
            )
            .layer(mock),
        );
        assert!(svc.poll_ready().is_pending());
        handle.allow(1);
        assert!(svc.poll_ready().is_ready());
    }
}
