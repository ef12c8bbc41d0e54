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
//! - **Cheap signatures.** With those settings, a request whose path is unreserved
//!   characters and escapes (no dot or empty segments), whose query is ASCII and whose
//!   header names appear once with values free of stray spaces (the Lambda client's
//!   requests, unless a custom endpoint's path holds a dot or a header value two spaces
//!   in a row) is signed here: the canonical request is written once into one
//!   buffer, and the day's signing key (four HMACs) is kept between signatures, one per
//!   config, for as long as the secret and the date are the same (the key and the
//!   secret's SHA-256 are kept, never the secret, and wiped when replaced).
//!   aws-sigv4 still derives the key and computes the signature's HMAC, and signs every
//!   other request. The tests sign generated requests both ways and compare the headers
//!   byte for byte. A Lambda call's signature costs a quarter to a third of the CPU time
//!   of aws-sigv4's `sign` (BENCHMARKS.md).
//! - **Clock skew.** When the server rejects a request with a clock-skew error
//!   (`RequestTimeTooSkewed`, `RequestExpired`, `RequestInTheFuture`, or an
//!   `InvalidSignatureException` / `SignatureDoesNotMatch` / `AuthFailure` whose message
//!   says the signature expired or is not yet current) and its `Date` header shows the
//!   clocks disagree by a minute or more, the offset is learned ([`ClockSkew`]) and
//!   every later signature uses the corrected time: the next attempt of a retry
//!   succeeds. Other rejections never move the clock, and an offset beyond 15 minutes
//!   ([`SigV4Layer::with_max_clock_skew`]) is refused with a `WARN` event. The code is
//!   read from `x-amzn-ErrorType`, or from a JSON or XML error body of at most 8 KiB;
//!   responses other than 400/401/403 are not looked at. The body is read only when it
//!   is already in memory (`Bytes`, `Vec<u8>`, `String`), or when the client kept an
//!   error answer's body in the response's extensions ([`ErrorBody`]); otherwise (any
//!   other body type, such as hyper's `Incoming`) the header alone decides, which settles
//!   `RequestTimeTooSkewed` and the like but not an `InvalidSignatureException` whose
//!   message says "Signature expired": put its body in an [`ErrorBody`].
//! - **Credentials** come from a [`ProvideCredentials`]: static [`Credentials`],
//!   [`EnvironmentProvider`], [`ProfileProvider`] (shared files), a [`ProviderChain`],
//!   any aws-config provider through [`AwsSdkProvider`], all cacheable with
//!   [`CredentialsCache`] (refreshed in the background before expiry while the valid
//!   credentials keep being served; one provider call at a time; failures cached).
//!   [`ProviderChain::default_chain`] is environment, then profile files, cached.
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
//!         // A real stack would send the request here; this one answers whether it was signed.
//!         let signed = req.headers().contains_key("authorization");
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::from(signed.to_string())))
//!     }));
//! let req = http::Request::post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations")
//!     .body(Bytes::from_static(b"{}"))?;
//! assert_eq!(svc.oneshot(req).await?.body(), "true");
//! # Ok(()) }
//! ```
//!
//! # Testing
//!
//! Give the layer a [`FixedClock`] and static [`Credentials`], put a
//! `tower_test::mock` behind it, and assert on the headers the mock receives.

mod chain;
mod credentials;
mod env;
mod error;
mod fast;
mod future;
mod layer;
mod profile;
mod service;
mod sign;
mod skew;

pub use chain::{AwsSdkProvider, CredentialsCache, CredentialsCacheBuilder, ProviderChain};
pub use credentials::{
    Credentials, CredentialsFuture, EnvironmentProvider, ProvideCredentials,
    SharedCredentialsProvider,
};
pub use env::Env;
pub use error::{CredentialsError, CredentialsErrorKind, SigV4Error, SigningError};
pub use future::ResponseFuture;
pub use layer::{ClockSkewCorrected, SigV4Layer};
pub use profile::ProfileProvider;
pub use service::SigV4;
pub use sign::{
    format_amz_date, parse_amz_date, sha256_hex, sign_request, sign_request_with_hash, Clock,
    FixedClock, PayloadHash, SigningConfig, SystemClock,
};
pub use skew::{ClockSkew, ErrorBody};

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use tower::{Layer, ServiceExt};
    use tower_test::mock;

    type Resp = http::Response<Bytes>;

    fn request() -> http::Request<Bytes> {
        http::Request::post(
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations",
        )
        .header("host", "lambda.us-east-1.amazonaws.com")
        .body(Bytes::from_static(b"{\"a\":1}"))
        .unwrap()
    }

    fn ok() -> Resp {
        http::Response::new(Bytes::new())
    }

    const T0: u64 = 1_700_000_000;

    /// A clock tests move by hand.
    #[derive(Debug, Clone, Default)]
    struct ManualClock(Arc<AtomicU64>);
    impl ManualClock {
        fn at(secs: u64) -> Self {
            Self(Arc::new(AtomicU64::new(secs)))
        }
        fn advance(&self, secs: u64) {
            self.0.fetch_add(secs, Ordering::SeqCst);
        }
    }
    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    /// Issue 16, item 2: a poll after completion is an error; the inner future is not
    /// polled again.
    #[tokio::test]
    async fn polled_after_completion_is_an_error() {
        use tower::Service;
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, Resp>();
        let mut svc = SigV4Layer::new(
            Credentials::from_keys("AKID", "SECRET", None),
            SigningConfig::new("eu-west-1"),
        )
        .layer(mock);
        handle.allow(1);
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let mut fut = tokio_test::task::spawn(svc.call(request()));
        tokio_test::assert_pending!(fut.poll());
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(ok());
        assert!(fut.is_woken());
        tokio_test::assert_ready_ok!(fut.poll());
        let again = tokio_test::assert_ready_err!(fut.poll());
        assert!(
            again.to_string().contains("polled after completion"),
            "{again}"
        );
    }

    #[tokio::test]
    async fn signs_before_the_inner_service_sees_the_request() {
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, Resp>();
        let at = UNIX_EPOCH + Duration::from_secs(T0);
        let layer = SigV4Layer::new(
            Credentials::from_keys("AKID", "SECRET", Some("TOKEN".into())),
            SigningConfig::new("eu-west-1"),
        )
        .with_clock(FixedClock(at));
        let svc = layer.layer(mock);
        let call = tokio::spawn(svc.oneshot(request()));
        let (seen, send) = handle.next_request().await.unwrap();
        send.send_response(ok());
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
        let h = seen.headers();
        assert_eq!(h["x-amz-date"], "20231114T221320Z");
        assert_eq!(h["x-amz-security-token"], "TOKEN");
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20231114/eu-west-1/lambda/aws4_request, SignedHeaders="), "{auth}");
        assert!(!h.contains_key("x-amz-content-sha256"));
    }

    #[tokio::test]
    async fn every_attempt_gets_a_fresh_date() {
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, Resp>();
        let clock = ManualClock::at(T0);
        let svc = SigV4Layer::new(
            Credentials::from_keys("A", "S", None),
            SigningConfig::new("us-east-1"),
        )
        .with_clock(clock.clone())
        .layer(mock);
        let mut dates = Vec::new();
        for _ in 0..2 {
            let call = tokio::spawn(svc.clone().oneshot(request()));
            let (seen, send) = handle.next_request().await.unwrap();
            dates.push(seen.headers()["x-amz-date"].clone());
            send.send_response(ok());
            call.await.unwrap().unwrap();
            clock.advance(3);
        }
        assert_eq!(dates[0], "20231114T221320Z");
        assert_eq!(dates[1], "20231114T221323Z");
    }

    /// A rejection at local time `T0` from a server whose clock says `T0 + ahead`.
    fn rejection(status: u16, ahead: i64, code: Option<&str>, body: &str) -> Resp {
        let server = UNIX_EPOCH + Duration::from_secs(T0.saturating_add_signed(ahead));
        let mut b = http::Response::builder()
            .status(status)
            .header("date", httpdate::fmt_http_date(server));
        if let Some(code) = code {
            b = b.header("x-amzn-errortype", code);
        }
        b.body(Bytes::from(body.to_owned())).unwrap()
    }

    /// Sends one request through `layer` (clock at `T0`), answers `resp`; the offset
    /// learned, in seconds.
    async fn learned_from(layer: &SigV4Layer, resp: Resp) -> i64 {
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, Resp>();
        let call = tokio::spawn(layer.layer(mock).oneshot(request()));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(resp);
        call.await.unwrap().unwrap();
        layer.clock_skew().offset_millis() / 1000
    }

    fn layer_at_t0() -> SigV4Layer {
        SigV4Layer::new(
            Credentials::from_keys("A", "S", None),
            SigningConfig::new("us-east-1"),
        )
        .with_clock(FixedClock(UNIX_EPOCH + Duration::from_secs(T0)))
    }

    const EXPIRED: &str = "Signature expired: 20231114T221320Z is now earlier than 20231114T222320Z (20231114T222820Z - 5 min.)";

    #[tokio::test]
    async fn learns_clock_skew_from_a_rejection() {
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, Resp>();
        let clock = ManualClock::at(T0);
        let layer = SigV4Layer::new(
            Credentials::from_keys("A", "S", None),
            SigningConfig::new("us-east-1"),
        )
        .with_clock(clock.clone());
        let svc = layer.layer(mock);
        // The server is 15 minutes ahead and rejects the first request as expired.
        let server_time = UNIX_EPOCH + Duration::from_secs(T0 + 900);
        let call = tokio::spawn(svc.clone().oneshot(request()));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(rejection(
            403,
            900,
            Some("InvalidSignatureException"),
            &format!("{{\"message\":\"{EXPIRED}\"}}"),
        ));
        assert_eq!(call.await.unwrap().unwrap().status(), 403);
        assert_eq!(layer.clock_skew().offset_millis(), 900_000);
        // The next attempt is signed with the server's time.
        let call = tokio::spawn(svc.clone().oneshot(request()));
        let (seen, send) = handle.next_request().await.unwrap();
        assert_eq!(
            seen.headers()["x-amz-date"],
            format_amz_date(server_time).as_str()
        );
        send.send_response(ok());
        call.await.unwrap().unwrap();
        // A later clock-skew rejection showing clocks in agreement resets the offset.
        let call = tokio::spawn(svc.oneshot(request()));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(rejection(403, 0, Some("RequestTimeTooSkewed"), ""));
        call.await.unwrap().unwrap();
        assert_eq!(layer.clock_skew().offset_millis(), 0);
    }

    /// Only a clock-skew error code moves the clock: any other rejection, a success or a
    /// server error carrying a far-off `Date` leaves it alone.
    #[tokio::test]
    async fn skew_is_learned_only_from_clock_skew_errors() {
        let day = 86_400;
        let big = format!(
            "{{\"__type\":\"RequestTimeTooSkewed\",\"pad\":\"{}\"}}",
            "x".repeat(16 * 1024)
        );
        let ignored: Vec<(&str, Resp)> = vec![
            ("403 without a code", rejection(403, 3 * day, None, "")),
            (
                "AccessDeniedException",
                rejection(403, 10 * 60, Some("AccessDeniedException"), "{}"),
            ),
            (
                "a bad signature",
                rejection(
                    403,
                    10 * 60,
                    Some("InvalidSignatureException"),
                    r#"{"message":"The request signature we calculated does not match the signature you provided."}"#,
                ),
            ),
            (
                "the message without a clock-skew code",
                rejection(
                    403,
                    10 * 60,
                    None,
                    &format!(
                        "{{\"__type\":\"UnrecognizedClientException\",\"message\":\"{EXPIRED}\"}}"
                    ),
                ),
            ),
            (
                "a success",
                rejection(200, 10 * 60, Some("RequestTimeTooSkewed"), ""),
            ),
            (
                "a server error",
                rejection(500, 10 * 60, Some("RequestTimeTooSkewed"), ""),
            ),
            (
                "a body over the reading limit",
                rejection(403, 10 * 60, None, &big),
            ),
        ];
        for (what, resp) in ignored {
            assert_eq!(learned_from(&layer_at_t0(), resp).await, 0, "{what}");
        }
        // The issue's reproduction: an AccessDeniedException with a year-9999 `Date`.
        let year_9999 = http::Response::builder()
            .status(403)
            .header("date", "Fri, 31 Dec 9999 23:59:59 GMT")
            .header("x-amzn-errortype", "AccessDeniedException")
            .body(Bytes::from_static(b"{\"Message\":\"denied\"}"))
            .unwrap();
        assert_eq!(learned_from(&layer_at_t0(), year_9999).await, 0);

        let learned: Vec<(&str, Resp, i64)> = vec![
            ("header", rejection(403, 600, Some("RequestTimeTooSkewed"), ""), 600),
            (
                "header with a URL suffix",
                rejection(403, 600, Some("RequestTimeTooSkewed:http://internal.example/"), ""),
                600,
            ),
            (
                "body __type with a namespace, status 400",
                rejection(400, 600, None, r#"{"__type":"com.amazonaws#RequestExpired"}"#),
                600,
            ),
            (
                "body code",
                rejection(403, -600, None, r#"{"code":"RequestInTheFuture"}"#),
                -600,
            ),
            (
                "expired signature (Lambda)",
                rejection(
                    403,
                    600,
                    Some("InvalidSignatureException"),
                    &format!("{{\"message\":\"{EXPIRED}\"}}"),
                ),
                600,
            ),
            (
                "signature not yet current, code in the body",
                rejection(
                    403,
                    -600,
                    None,
                    r#"{"__type":"InvalidSignatureException","Message":"Signature not yet current: 20231114T222320Z is still later than 20231114T221820Z (20231114T221320Z + 5 min.)"}"#,
                ),
                -600,
            ),
            (
                "expired signature (STS)",
                rejection(
                    403,
                    600,
                    Some("SignatureDoesNotMatch"),
                    &format!("{{\"Message\":\"{EXPIRED}\"}}"),
                ),
                600,
            ),
            (
                "XML error body (S3)",
                rejection(
                    403,
                    600,
                    None,
                    "<?xml version=\"1.0\"?><Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>",
                ),
                600,
            ),
        ];
        for (what, resp, offset) in learned {
            assert_eq!(learned_from(&layer_at_t0(), resp).await, offset, "{what}");
        }
    }

    /// A clock-skew error claiming a time beyond the limit (15 min) is not believed: the
    /// signing time cannot be moved to next week by whoever answers.
    #[tokio::test]
    async fn skew_beyond_the_limit_is_refused() {
        let code = Some("RequestTimeTooSkewed");
        for ahead in [901, 7 * 86_400, -901, -7 * 86_400] {
            let resp = rejection(403, ahead, code, "");
            assert_eq!(learned_from(&layer_at_t0(), resp).await, 0, "{ahead}");
        }
        let at_the_limit = rejection(403, 900, code, "");
        assert_eq!(learned_from(&layer_at_t0(), at_the_limit).await, 900);
        // A refused offset leaves the one learned before.
        let layer = layer_at_t0();
        assert_eq!(
            learned_from(&layer, rejection(403, 600, code, "")).await,
            600
        );
        let year_9999 = http::Response::builder()
            .status(403)
            .header("date", "Fri, 31 Dec 9999 23:59:59 GMT")
            .header("x-amzn-errortype", "RequestTimeTooSkewed")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(learned_from(&layer, year_9999).await, 600);
    }

    #[tokio::test]
    async fn skew_limit_is_configurable_and_refusals_are_logged() {
        use tracing_subscriber::layer::SubscriberExt;
        #[derive(Clone, Default)]
        struct Events(Arc<std::sync::Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
            fn on_event(
                &self,
                e: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                struct Fields(String);
                impl tracing::field::Visit for Fields {
                    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                        self.0.push_str(&format!(" {}={v:?}", f.name()));
                    }
                }
                // aws-sigv4's own TRACE events are not the subject here.
                if *e.metadata().level() <= tracing::Level::DEBUG {
                    let mut fields = Fields(e.metadata().level().to_string());
                    e.record(&mut fields);
                    self.0.lock().unwrap().push(fields.0);
                }
            }
        }
        let events = Events::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));

        let week = 7 * 86_400;
        let code = Some("RequestTimeTooSkewed");
        assert_eq!(
            learned_from(&layer_at_t0(), rejection(403, week, code, "")).await,
            0
        );
        let logged = events.0.lock().unwrap().clone();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(logged[0].starts_with("WARN"), "{logged:?}");
        assert!(
            logged[0].contains("code=\"RequestTimeTooSkewed\"")
                && logged[0].contains("offset_secs=604800")
                && logged[0].contains("limit_secs=900"),
            "{logged:?}"
        );
        let wide = layer_at_t0().with_max_clock_skew(Duration::from_secs(8 * 86_400));
        assert_eq!(
            learned_from(&wide, rejection(403, week, code, "")).await,
            week
        );
        let narrow = layer_at_t0().with_max_clock_skew(Duration::from_secs(120));
        assert_eq!(
            learned_from(&narrow, rejection(403, 121, code, "")).await,
            0
        );
        assert_eq!(
            learned_from(&narrow, rejection(403, 120, code, "")).await,
            120
        );
    }

    /// A response body that is not buffered (a stream: any type other than `Bytes`,
    /// `Vec<u8>`, `String` or static text) is never read: the `x-amzn-ErrorType` header
    /// alone decides, so the layer works over streaming HTTP clients too.
    #[tokio::test]
    async fn a_streaming_body_is_never_read_and_the_header_decides() {
        #[derive(Debug)]
        struct Streaming;
        let cases = [
            (403, Some("RequestTimeTooSkewed"), Some(true)),
            (401, Some("RequestExpired"), Some(true)),
            // The code may be a clock-skew one only with its message, in the body.
            (403, Some("InvalidSignatureException"), None),
            (403, Some("AccessDeniedException"), None),
            (403, None, None),
            (500, Some("RequestTimeTooSkewed"), None),
        ];
        for (status, code, learned) in cases {
            let (mock, mut handle) =
                mock::pair::<http::Request<Bytes>, http::Response<Streaming>>();
            let call = tokio::spawn(layer_at_t0().layer(mock).oneshot(request()));
            let (_, send) = handle.next_request().await.unwrap();
            let mut b = http::Response::builder().status(status).header(
                "date",
                httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(T0 + 600)),
            );
            if let Some(code) = code {
                b = b.header("x-amzn-errortype", code);
            }
            send.send_response(b.body(Streaming).unwrap());
            let resp = call.await.unwrap().unwrap();
            assert_eq!(
                resp.extensions().get::<ClockSkewCorrected>().map(|c| c.0),
                learned,
                "{status} {code:?}"
            );
        }
    }

    /// A streaming client that kept an error answer's body ([`ErrorBody`]) lets the layer
    /// read a clock-skew error whose code needs its message.
    #[tokio::test]
    async fn an_error_body_kept_in_the_extensions_is_read() {
        #[derive(Debug)]
        struct Streaming;
        for (body, learned) in [
            (&br#"{"message":"Signature expired: 20261130T000000Z is now earlier than 20261130T000500Z"}"#[..], Some(true)),
            (&br#"{"message":"The request signature we calculated does not match"}"#[..], None),
        ] {
            let (mock, mut handle) =
                mock::pair::<http::Request<Bytes>, http::Response<Streaming>>();
            let call = tokio::spawn(layer_at_t0().layer(mock).oneshot(request()));
            let (_, send) = handle.next_request().await.unwrap();
            let mut resp = http::Response::builder()
                .status(403)
                .header(
                    "date",
                    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(T0 + 600)),
                )
                .header("x-amzn-errortype", "InvalidSignatureException")
                .body(Streaming)
                .unwrap();
            resp.extensions_mut()
                .insert(ErrorBody(Bytes::from_static(body)));
            send.send_response(resp);
            let resp = call.await.unwrap().unwrap();
            assert_eq!(
                resp.extensions().get::<ClockSkewCorrected>().map(|c| c.0),
                learned
            );
        }
    }

    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        fail_from: usize,
        expiry: Option<SystemTime>,
    }
    impl ProvideCredentials for Counting {
        fn provide_credentials(&self) -> CredentialsFuture {
            let calls = Arc::clone(&self.calls);
            let fail_from = self.fail_from;
            let expiry = self.expiry;
            CredentialsFuture::new(async move {
                // Counted when the call starts; takes a while, so concurrent callers
                // pile up behind the refresh.
                let n = calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                if n >= fail_from {
                    Err(CredentialsError::new(
                        "counting",
                        CredentialsErrorKind::ProviderError,
                        "down",
                    ))
                } else {
                    Ok(Credentials::new(
                        format!("AKID{n}"),
                        "S",
                        None,
                        expiry,
                        "counting",
                    ))
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cache_refreshes_once_for_100_concurrent_callers() {
        let calls = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::at(T0);
        let cache = CredentialsCache::builder(Counting {
            calls: Arc::clone(&calls),
            fail_from: usize::MAX,
            expiry: Some(UNIX_EPOCH + Duration::from_secs(T0 + 3600)),
        })
        .clock(clock.clone())
        .build();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.provide_credentials().await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().access_key_id(), "AKID0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Served from memory, without a future to await, until the refresh time.
        clock.advance(3600 - 360 - 1);
        assert!(cache.provide_credentials().take_ready().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // At expiry − buffer (jitter only makes the refresh earlier): the valid
        // credentials are served at once while the refresh runs in the background.
        clock.advance(61);
        let mut now = cache.provide_credentials();
        assert_eq!(now.take_ready().unwrap().unwrap().access_key_id(), "AKID0");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            cache.provide_credentials().await.unwrap().access_key_id(),
            "AKID1"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cache_serves_valid_credentials_while_refresh_fails() {
        let calls = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::at(T0);
        let cache = CredentialsCache::builder(Counting {
            calls: Arc::clone(&calls),
            fail_from: 1,
            expiry: Some(UNIX_EPOCH + Duration::from_secs(T0 + 600)),
        })
        .clock(clock.clone())
        .jitter(Duration::ZERO)
        .build();
        assert_eq!(
            cache.provide_credentials().await.unwrap().access_key_id(),
            "AKID0"
        );
        clock.advance(301); // inside the 5 min buffer: refresh is due, and fails
        assert_eq!(
            cache.provide_credentials().await.unwrap().access_key_id(),
            "AKID0"
        );
        tokio::time::sleep(Duration::from_secs(1)).await; // the background refresh
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // No new attempt for 10 s.
        clock.advance(5);
        assert!(cache.provide_credentials().take_ready().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Once expired, the failure shows.
        clock.advance(600);
        let e = cache.provide_credentials().await.unwrap_err();
        assert_eq!(e.source_name(), "counting");
    }

    /// Credentials 4 minutes from expiry (inside the 5 min refresh buffer): 1,000
    /// signings at once are served the cached credentials while one refresh runs.
    #[tokio::test(start_paused = true)]
    async fn near_expiry_1000_concurrent_signings_make_one_provider_call() {
        let calls = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::at(T0);
        let cache = CredentialsCache::builder(Counting {
            calls: Arc::clone(&calls),
            fail_from: usize::MAX,
            expiry: Some(UNIX_EPOCH + Duration::from_secs(T0 + 240)),
        })
        .clock(clock.clone())
        .build();
        cache.provide_credentials().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Past the minimum interval between two provider calls (10 s).
        clock.advance(10);
        let svc = SigV4Layer::new(cache.clone(), SigningConfig::new("us-east-1"))
            .with_clock(clock.clone())
            .layer(tower::service_fn(|_: http::Request<Bytes>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
            }));
        let tasks: Vec<_> = (0..1000)
            .map(|_| tokio::spawn(svc.clone().oneshot(request())))
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Let the background refresh finish (the clock is paused: no real wait).
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one refresh for 1,000 signings"
        );
        // The refreshed credentials are as short-lived: no new refresh before the interval.
        for _ in 0..100 {
            cache.provide_credentials().await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// A caller that gives up while the credentials are fetched does not take the
    /// fetch with it: the next caller gets its result without a second provider call.
    #[tokio::test(start_paused = true)]
    async fn cancelled_caller_does_not_cancel_the_refresh() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = CredentialsCache::builder(Counting {
            calls: Arc::clone(&calls),
            fail_from: usize::MAX,
            expiry: None,
        })
        .clock(ManualClock::at(T0))
        .build();
        let first = tokio::spawn({
            let cache = cache.clone();
            async move { cache.provide_credentials().await }
        });
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        let c = cache.provide_credentials().await.unwrap();
        assert_eq!(c.access_key_id(), "AKID0");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// Review of issue 16: a provider call that never answers does not hold the cache
    /// for ever. It times out, and a later call asks the provider again.
    #[tokio::test(start_paused = true)]
    async fn a_hung_provider_call_times_out_and_is_tried_again() {
        #[derive(Debug)]
        struct HangsOnce(Arc<AtomicUsize>);
        impl ProvideCredentials for HangsOnce {
            fn provide_credentials(&self) -> CredentialsFuture {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                CredentialsFuture::new(async move {
                    if n == 0 {
                        std::future::pending::<()>().await;
                    }
                    Ok(Credentials::from_keys("AKID", "S", None))
                })
            }
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::at(T0);
        let cache = CredentialsCache::builder(HangsOnce(Arc::clone(&calls)))
            .clock(clock.clone())
            .build();
        // (Guarded: without the provider timeout this call would wait for ever.)
        let e = tokio::time::timeout(Duration::from_secs(3600), cache.provide_credentials())
            .await
            .expect("the hung provider call held the cache")
            .unwrap_err();
        assert_eq!(e.kind(), CredentialsErrorKind::TimedOut, "{e}");
        // After the failure interval, the provider is asked again, and answers.
        clock.advance(11);
        let c = cache.provide_credentials().await.unwrap();
        assert_eq!(c.access_key_id(), "AKID");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// Review of issue 16: `Duration::MAX` for any of the cache's durations means
    /// "never", not a panic.
    #[tokio::test(start_paused = true)]
    async fn duration_max_settings_do_not_panic() {
        let calls = Arc::new(AtomicUsize::new(0));
        for fail_from in [usize::MAX, 0] {
            let cache = CredentialsCache::builder(Counting {
                calls: Arc::clone(&calls),
                fail_from,
                expiry: None,
            })
            .clock(ManualClock::at(T0))
            .default_expiration(Duration::MAX)
            .retry_after_failure(Duration::MAX)
            .min_refresh_interval(Duration::MAX)
            .buffer(Duration::MAX)
            .jitter(Duration::MAX)
            .build();
            let first = cache.provide_credentials().await;
            assert_eq!(first.is_ok(), fail_from == usize::MAX);
            let _ = cache.provide_credentials().await;
        }
    }

    /// A provider that fails is asked again only once the failure interval has passed,
    /// however many callers come, with or without valid credentials in the cache.
    #[tokio::test(start_paused = true)]
    async fn failing_provider_is_called_once_per_failure_interval() {
        // Nothing cached: the failure is returned to every caller of the interval.
        let calls = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::at(T0);
        let cache = CredentialsCache::builder(Counting {
            calls: Arc::clone(&calls),
            fail_from: 0,
            expiry: None,
        })
        .clock(clock.clone())
        .build();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.provide_credentials().await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap_err().source_name(), "counting");
        }
        for _ in 0..50 {
            cache.provide_credentials().await.unwrap_err();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        clock.advance(10);
        cache.provide_credentials().await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Valid credentials inside the refresh buffer: served while refreshes fail.
        let calls = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::at(T0);
        let cache = CredentialsCache::builder(Counting {
            calls: Arc::clone(&calls),
            fail_from: 1,
            expiry: Some(UNIX_EPOCH + Duration::from_secs(T0 + 240)),
        })
        .clock(clock.clone())
        .build();
        cache.provide_credentials().await.unwrap();
        clock.advance(10);
        for _ in 0..10 {
            for _ in 0..50 {
                let c = cache.provide_credentials().await.unwrap();
                assert_eq!(c.access_key_id(), "AKID0");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            clock.advance(1);
        }
        // 1 fetch, then 1 failed refresh: the 10 s of calls fit in one failure interval.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        cache.provide_credentials().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// Without a Tokio runtime, callers make the provider call themselves: the one that
    /// finds a refresh due, and a waiter whose driver gave up before finishing.
    #[test]
    fn cache_works_without_a_runtime() {
        #[derive(Debug)]
        struct Immediate {
            calls: Arc<AtomicUsize>,
            clock: ManualClock,
        }
        impl ProvideCredentials for Immediate {
            fn provide_credentials(&self) -> CredentialsFuture {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                let expiry = self.clock.now() + Duration::from_secs(240);
                CredentialsFuture::new(async move {
                    Ok(Credentials::new(
                        format!("AKID{n}"),
                        "S",
                        None,
                        Some(expiry),
                        "immediate",
                    ))
                })
            }
        }
        fn poll(
            f: &mut CredentialsFuture,
        ) -> std::task::Poll<Result<Credentials, CredentialsError>> {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            std::future::Future::poll(std::pin::Pin::new(f), &mut cx)
        }
        let key = |p: std::task::Poll<Result<Credentials, CredentialsError>>| match p {
            std::task::Poll::Ready(Ok(c)) => c.access_key_id().to_owned(),
            other => panic!("{other:?}"),
        };
        assert!(tokio::runtime::Handle::try_current().is_err());
        let calls = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::at(T0);
        let cache = CredentialsCache::builder(Immediate {
            calls: Arc::clone(&calls),
            clock: clock.clone(),
        })
        .clock(clock.clone())
        .build();
        assert_eq!(key(poll(&mut cache.provide_credentials())), "AKID0");
        // Refresh due (inside the buffer, past the minimum interval): this caller does it.
        clock.advance(10);
        assert_eq!(key(poll(&mut cache.provide_credentials())), "AKID1");
        assert_eq!(
            cache
                .provide_credentials()
                .take_ready()
                .unwrap()
                .unwrap()
                .access_key_id(),
            "AKID1"
        );
        // Expired: the first caller would fetch, the second waits for it; the first
        // gives up before being polled, so the second fetches.
        clock.advance(300);
        let driver = cache.provide_credentials();
        let mut waiter = cache.provide_credentials();
        assert!(poll(&mut waiter).is_pending());
        drop(driver);
        assert_eq!(key(poll(&mut waiter)), "AKID2");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn chain_order_and_errors() {
        let none = || EnvironmentProvider::load_from(|_| None).unwrap_err();
        #[derive(Debug)]
        struct Fails(CredentialsError);
        impl ProvideCredentials for Fails {
            fn provide_credentials(&self) -> CredentialsFuture {
                CredentialsFuture::ready(Err(self.0.clone()))
            }
        }
        let chain = ProviderChain::first_try(Fails(none()))
            .or_else(Credentials::from_keys("SECOND", "S", None))
            .or_else(Credentials::from_keys("THIRD", "S", None));
        assert_eq!(
            chain.provide_credentials().await.unwrap().access_key_id(),
            "SECOND"
        );

        let broken = CredentialsError::new(
            "file",
            CredentialsErrorKind::InvalidConfiguration,
            "half a key",
        );
        let chain = ProviderChain::first_try(Fails(broken.clone()))
            .or_else(Credentials::from_keys("X", "S", None));
        assert_eq!(chain.provide_credentials().await.unwrap_err(), broken);

        let chain = ProviderChain::first_try(Fails(none())).or_else(Fails(none()));
        let e = chain.provide_credentials().await.unwrap_err();
        assert_eq!(e.kind(), CredentialsErrorKind::NotLoaded);
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");

        // An asynchronous provider in the middle of the chain.
        let calls = Arc::new(AtomicUsize::new(0));
        let chain = ProviderChain::first_try(Fails(none()))
            .or_else(Counting {
                calls,
                fail_from: 0,
                expiry: None,
            })
            .or_else(Credentials::from_keys("LAST", "S", None));
        let e = chain.provide_credentials().await.unwrap_err();
        assert_eq!(e.kind(), CredentialsErrorKind::ProviderError);
    }

    #[tokio::test]
    async fn aws_sdk_providers_plug_in() {
        let p = AwsSdkProvider::new(aws_credential_types::Credentials::from_keys(
            "SDK", "S", None,
        ));
        assert_eq!(
            p.provide_credentials().await.unwrap().access_key_id(),
            "SDK"
        );
        #[derive(Debug)]
        struct Broken;
        impl aws_credential_types::provider::ProvideCredentials for Broken {
            fn provide_credentials<'a>(
                &'a self,
            ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                    aws_credential_types::provider::error::CredentialsError::not_loaded(
                        "no IMDS here",
                    ),
                ))
            }
        }
        let e = AwsSdkProvider::new(Broken)
            .provide_credentials()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), CredentialsErrorKind::NotLoaded);
        assert!(e.to_string().contains("no IMDS here"), "{e}");
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
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, Resp>();
        let svc =
            SigV4Layer::new(Slow(Arc::clone(&calls)), SigningConfig::new("us-east-1")).layer(mock);
        let first = tokio::spawn(svc.clone().oneshot(request()));
        let (seen, send) = handle.next_request().await.unwrap();
        assert!(seen.headers().contains_key("authorization"));
        send.send_response(ok());
        first.await.unwrap().unwrap();

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
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, Resp>();
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
            send.send_response(ok());
            call.await.unwrap().unwrap();
        }
        assert_eq!(cell.get(), Some(sha256_hex(b"{\"a\":1}").as_str()));
        // A precomputed (here: deliberately wrong) hash is used as given, proving no re-hash.
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, Resp>();
        let at = UNIX_EPOCH + Duration::from_secs(T0);
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
            send.send_response(ok());
            call.await.unwrap().unwrap();
        }
        assert_ne!(auths[0], auths[1]);
    }

    #[tokio::test]
    async fn readiness_is_forwarded() {
        let (mock, mut handle) = mock::pair::<http::Request<Bytes>, Resp>();
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

    #[test]
    fn debug_output_is_redacted() {
        let layer = SigV4Layer::new(
            Credentials::from_keys(
                "AKIDVISIBLE",
                "very-secret-key",
                Some("session-token-value".into()),
            ),
            SigningConfig::new("us-east-1"),
        );
        let dbg = format!(
            "{layer:?} {:?}",
            CredentialsCache::new(Credentials::from_keys("A", "very-secret-key", None))
        );
        assert!(
            !dbg.contains("very-secret-key") && !dbg.contains("session-token-value"),
            "{dbg}"
        );
    }
}
