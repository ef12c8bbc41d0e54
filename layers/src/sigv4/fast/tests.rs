//! The fast path against aws-sigv4's `sign`: the same headers, byte for byte, or no
//! fast signature at all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use proptest::prelude::*;

use super::super::sign::{sign_request_with_hash, sign_with_aws_sigv4};
use super::*;

const HASH: &str = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// A header as the request ends up carrying it: name, value, and whether `Debug` hides it.
type Seen = Vec<(String, Vec<u8>, bool)>;

fn seen(req: &http::Request<Bytes>) -> Seen {
    req.headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.as_bytes().to_vec(),
                v.is_sensitive(),
            )
        })
        .collect()
}

/// Signs a copy of `req` each way: (the public entry point, aws-sigv4 alone).
fn both(
    req: &http::Request<Bytes>,
    creds: &Credentials,
    cfg: &SigningConfig,
    at: SystemTime,
) -> (Result<Seen, String>, Result<Seen, String>) {
    let mut a = req.clone();
    let mut b = req.clone();
    let fast = sign_request_with_hash(&mut a, creds, cfg, at, HASH.to_owned())
        .map(|()| seen(&a))
        .map_err(|e| e.to_string());
    let slow = sign_with_aws_sigv4(&mut b, creds, cfg, at, HASH.to_owned())
        .map(|()| seen(&b))
        .map_err(|e| e.to_string());
    (fast, slow)
}

fn covered(
    req: &http::Request<Bytes>,
    creds: &Credentials,
    cfg: &SigningConfig,
    at: SystemTime,
) -> bool {
    sign(req, creds, cfg, at, HASH, &mut false).is_some()
}

fn request(uri: &str, headers: &[(&str, &str)]) -> http::Request<Bytes> {
    let mut b = http::Request::post(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Bytes::from_static(b"{}")).expect("request")
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

const HOST: (&str, &str) = ("host", "lambda.us-east-1.amazonaws.com");

#[test]
fn a_lambda_invoke_is_signed_here_as_aws_sigv4_signs_it() {
    let creds = Credentials::from_keys(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
    );
    let temp = Credentials::from_keys(
        "ASIAEXAMPLE",
        "secret",
        Some("FQoGZXIvYXdzEJr//////////token=".into()),
    );
    let cfg = SigningConfig::new("us-east-1");
    let req = request(
        "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations?Qualifier=prod",
        &[
            HOST,
            ("x-amz-invocation-type", "RequestResponse"),
            ("x-amz-log-type", "Tail"),
            ("content-type", "application/octet-stream"),
            ("content-length", "2"),
            ("user-agent", "invoke-stack/0.1 os/linux"),
            ("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793"),
            ("amz-sdk-invocation-id", "b0e2a2f4-6d0e-4c8e-9d5e-2f4b6a7c8d9e"),
            ("amz-sdk-request", "attempt=1; max=3"),
        ],
    );
    let latest = request(
        "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations?Qualifier=%24LATEST",
        &[HOST],
    );
    assert!(covered(&latest, &creds, &cfg, at(1_700_000_000)));
    assert_eq!(
        both(&latest, &creds, &cfg, at(1_700_000_000)).0,
        both(&latest, &creds, &cfg, at(1_700_000_000)).1
    );
    for creds in [&creds, &temp] {
        assert!(covered(&req, creds, &cfg, at(1_700_000_000)));
        let (fast, slow) = both(&req, creds, &cfg, at(1_700_000_000));
        assert_eq!(fast, slow);
        let fast = fast.expect("signed");
        assert!(fast.iter().any(|(n, v, sensitive)| n == "authorization"
            && v.starts_with(b"AWS4-HMAC-SHA256 Credential=")
            && *sensitive));
    }
}

#[test]
fn requests_outside_the_fast_path_go_to_aws_sigv4() {
    let creds = Credentials::from_keys("AKID", "SECRET", None);
    let cfg = SigningConfig::new("us-east-1");
    let t = at(1_700_000_000);
    let base = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations";
    let cases: Vec<http::Request<Bytes>> = vec![
        request("https://h/a/./b", &[HOST]),
        request("https://h/a/../b", &[HOST]),
        request("https://h/a//b", &[HOST]),
        request("https://h/a.b", &[HOST]),
        request("https://h/a$b", &[HOST]),
        request(&format!("{base}?Qualifier=%C3%A9"), &[HOST]),
        request(&format!("{base}?Qualifier=%G1"), &[HOST]),
        request(&format!("{base}?Qualifier=%2"), &[HOST]),
        request(&format!("{base}?=v"), &[HOST]),
        request(&format!("{base}?a&&b"), &[HOST]),
        request(&format!("{base}?"), &[HOST]),
        request(base, &[HOST, ("x-a", "one"), ("x-a", "two")]),
        request(base, &[HOST, ("x-a", " leading")]),
        request(base, &[HOST, ("x-a", "trailing ")]),
        request(base, &[HOST, ("x-a", "two  spaces")]),
    ];
    for req in &cases {
        assert!(!covered(req, &creds, &cfg, t), "{}", req.uri());
        let (fast, slow) = both(req, &creds, &cfg, t);
        assert_eq!(fast, slow, "{}", req.uri());
    }
    // Settings other than the defaults, and times outside 1970 to 9999.
    let req = request(base, &[HOST]);
    for cfg in [
        SigningConfig::new("us-east-1").double_uri_encode(false),
        SigningConfig::new("us-east-1").normalize_uri_path(false),
        SigningConfig::new("us-east-1").content_sha256_header(true),
    ] {
        assert!(!covered(&req, &creds, &cfg, t));
        let (fast, slow) = both(&req, &creds, &cfg, t);
        assert_eq!(fast, slow);
    }
    assert!(covered(&req, &creds, &cfg, at(253_402_300_799)));
    // Outside 1970 to 9999 neither path signs (aws-sigv4's date type would panic past
    // 9999): an error, not a panic.
    for t in [at(253_402_300_800), UNIX_EPOCH - Duration::from_secs(1)] {
        assert!(!covered(&req, &creds, &cfg, t));
        let (fast, slow) = both(&req, &creds, &cfg, t);
        assert!(fast.is_err() && slow.is_err(), "{fast:?} {slow:?}");
    }
}

/// A case proptest once shrank to (under a mutation of the path encoding): a one-letter
/// host, an escaped colon, the epoch.
#[test]
fn an_escape_at_the_epoch_on_a_short_host() {
    let creds = Credentials::from_keys("AKID", "SECRET", None);
    let cfg = SigningConfig::new("us-east-1");
    let req = request(
        "https://-/2015-03-31/functions/%3A/invocations",
        &[("host", "-")],
    );
    assert!(covered(&req, &creds, &cfg, at(0)));
    let (fast, slow) = both(&req, &creds, &cfg, at(0));
    assert_eq!(fast, slow);
}

#[test]
fn without_a_host_header_the_uri_names_the_host() {
    let creds = Credentials::from_keys("AKID", "SECRET", None);
    let cfg = SigningConfig::new("us-east-1");
    for uri in [
        "https://lambda.us-east-1.amazonaws.com/p",
        "https://lambda.us-east-1.amazonaws.com:443/p",
        "https://lambda.us-east-1.amazonaws.com:0443/p",
        "https://lambda.us-east-1.amazonaws.com:8443/p",
        "http://127.0.0.1:80/p",
        "http://127.0.0.1:443/p",
        "http://[::1]:9001/p",
        "https://user@h:443/p",
        "https://user@h:444/p",
    ] {
        let req = request(uri, &[("x-a", "b")]);
        assert!(covered(&req, &creds, &cfg, at(1_700_000_000)), "{uri}");
        let (fast, slow) = both(&req, &creds, &cfg, at(1_700_000_000));
        assert_eq!(fast, slow, "{uri}");
    }
}

#[test]
fn the_signing_key_follows_the_secret_and_the_day() {
    let cfg = SigningConfig::new("eu-west-1");
    let req = request(
        "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/f/invocations",
        &[("host", "lambda.eu-west-1.amazonaws.com")],
    );
    let one = Credentials::from_keys("AKID", "first-secret", None);
    let two = Credentials::from_keys("AKID", "second-secret", None);
    let day = 1_700_000_000;
    // The same config signs each in turn, so a key kept for the wrong secret or the wrong
    // day would show as a different signature.
    let mut signatures = Vec::new();
    for (creds, t) in [
        (&one, day),
        (&one, day + 60),
        (&two, day + 60),
        (&two, day + 86_400),
        (&one, day + 86_400),
        (&one, day),
    ] {
        assert!(covered(&req, creds, &cfg, at(t)));
        let (fast, slow) = both(&req, creds, &cfg, at(t));
        assert_eq!(fast, slow);
        signatures.push(fast.expect("signed"));
    }
    assert_eq!(signatures[0], signatures[5]);
    assert_ne!(signatures[1], signatures[2]);
    assert_ne!(signatures[3], signatures[4]);
    // A clone shares the key; a changed config starts without one and still signs right.
    assert!(cfg.clone().key_cache().is_filled());
    let other = cfg.clone().service("execute-api");
    assert!(!other.key_cache().is_filled());
    let (fast, slow) = both(&req, &one, &other, at(day));
    assert_eq!(fast, slow);
    assert_ne!(fast.expect("signed"), signatures[0]);
}

#[test]
fn an_earlier_signature_is_replaced() {
    let creds = Credentials::from_keys("AKID", "SECRET", Some("token-2".into()));
    let cfg = SigningConfig::new("us-east-1");
    let req = request(
        "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations",
        &[
            ("authorization", "AWS4-HMAC-SHA256 old"),
            HOST,
            ("x-amz-date", "20000101T000000Z"),
            ("x-amz-security-token", "token-1"),
        ],
    );
    assert!(covered(&req, &creds, &cfg, at(1_700_000_000)));
    let (fast, slow) = both(&req, &creds, &cfg, at(1_700_000_000));
    assert_eq!(fast, slow);
    let fast = fast.expect("signed");
    assert!(!fast
        .iter()
        .any(|(_, v, _)| v == b"token-1" || v == b"20000101T000000Z"));
}

#[test]
fn dates_are_formatted_as_amz_dates() {
    for (secs, want) in [
        (0, "19700101T000000Z"),
        (951_782_400, "20000229T000000Z"),
        (1_700_000_000, "20231114T221320Z"),
        (4_107_542_399, "21000228T235959Z"),
        (253_402_300_799, "99991231T235959Z"),
    ] {
        let got = format_date_time(at(secs)).expect("in range");
        assert_eq!(std::str::from_utf8(&got).ok(), Some(want));
        assert_eq!(super::super::sign::format_amz_date(at(secs)), want);
    }
}

fn word() -> impl Strategy<Value = String> {
    "[!-~]{1,8}|[!-~]\t[!-~]{0,4}"
}

fn value() -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 1..4).prop_map(|w| w.join(" "))
}

fn name_segment() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-zA-Z0-9_~-]{1,6}".prop_map(String::from),
            1 => prop::sample::select(vec!["%3A", "%2F", "%24", "%25", "%20"]).prop_map(String::from),
        ],
        1..6,
    )
    .prop_map(|parts| parts.concat())
}

/// Query text: unreserved characters, escapes of ASCII bytes in either case, `+`, and
/// the raw punctuation a URI's query may hold.
fn query_text(min: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-zA-Z0-9._~-]{1,4}".prop_map(String::from),
            2 => (0u8..0x80).prop_flat_map(|b| prop::sample::select(vec![
                format!("%{b:02X}"),
                format!("%{b:02x}"),
            ])),
            1 => prop::sample::select(vec!["+", "$", ":", "/", "?", "@", "!", "*", "'", "(", ")", ",", ";"])
                .prop_map(String::from),
        ],
        min..5,
    )
    .prop_map(|parts| parts.concat())
}

const NAMES: [&str; 10] = [
    "x-amz-invocation-type",
    "x-amz-log-type",
    "x-amz-client-context",
    "content-type",
    "accept",
    "x-custom",
    "user-agent",
    "x-amzn-trace-id",
    "amz-sdk-request",
    "x-amz-user-agent",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_requests_sign_as_aws_sigv4_signs_them(
        segment in name_segment(),
        query in prop::option::of(prop::collection::vec((query_text(1), query_text(0)), 1..4)),
        headers in prop::collection::btree_map(prop::sample::select(NAMES.to_vec()), value(), 0..6),
        host in "[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,12}){0,3}(:(80|443|[1-9][0-9]{1,3}))?",
        secs in 0u64..=253_402_300_799,
        token in prop::option::of("[A-Za-z0-9+/= ]{0,64}"),
        access_key in "[A-Z0-9]{0,20}",
        method in prop::sample::select(vec!["POST", "GET", "PUT", "PATCHY"]),
        region in "[a-z]{2}-[a-z]{4,9}-[1-3]",
        service in prop::sample::select(vec!["lambda", "execute-api", "sts"]),
        secret in "[A-Za-z0-9+/]{1,40}",
        with_host in any::<bool>(),
        scheme in prop::sample::select(vec!["http", "https"]),
    ) {
        let mut uri = format!("{scheme}://{host}/2015-03-31/functions/{segment}/invocations");
        if let Some(q) = &query {
            let q: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
            uri.push('?');
            uri.push_str(&q.join("&"));
        }
        let mut list: Vec<(&str, &str)> = Vec::new();
        if with_host {
            list.push(("host", host.as_str()));
        }
        list.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
        let mut req = request(&uri, &list);
        *req.method_mut() = http::Method::from_bytes(method.as_bytes()).expect("method");
        let creds = Credentials::from_keys(access_key, secret, token);
        let cfg = SigningConfig::new(region).service(service);
        prop_assert!(covered(&req, &creds, &cfg, at(secs)));
        let (fast, slow) = both(&req, &creds, &cfg, at(secs));
        prop_assert_eq!(fast, slow);
    }
}

#[test]
fn a_request_with_no_host_at_all_is_an_error_not_a_panic() {
    let creds = Credentials::from_keys("AKID", "SECRET", None);
    let cfg = SigningConfig::new("us-east-1");
    let mut req = request("/2015-03-31/functions/f/invocations", &[]);
    assert!(!covered(&req, &creds, &cfg, at(1_700_000_000)));
    let err = sign_request_with_hash(&mut req, &creds, &cfg, at(1_700_000_000), HASH.to_owned());
    assert!(err.is_err());
    assert!(!req.headers().contains_key("authorization"));
}

/// A line ending in the access key or the region (an environment variable read with its
/// newline) is an error before anything is signed: never a panic, never a request sent
/// without its `Authorization` header.
#[test]
fn an_access_key_or_region_that_is_not_header_text_is_an_error() {
    let good = Credentials::from_keys("AKIDEXAMPLE", "SECRET", None);
    let bad = Credentials::from_keys("AKIDEXAMPLE\n", "SECRET", None);
    let uri = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations";
    for (creds, cfg) in [
        (&bad, SigningConfig::new("us-east-1")),
        (&good, SigningConfig::new("us-east-1\n")),
        (&good, SigningConfig::new("us-east-1").service("lambda\r")),
    ] {
        for slow in [false, true] {
            let mut req = request(uri, &[HOST]);
            let result = if slow {
                sign_with_aws_sigv4(&mut req, creds, &cfg, at(1_700_000_000), HASH.to_owned())
            } else {
                sign_request_with_hash(&mut req, creds, &cfg, at(1_700_000_000), HASH.to_owned())
            };
            let err = result.expect_err("not header text");
            assert!(err.to_string().contains("cannot carry"), "{err}");
            assert!(!err.to_string().contains("AKIDEXAMPLE"), "{err}");
            assert!(!req.headers().contains_key("authorization"));
        }
    }
}

/// A request signed once, then re-signed with credentials that cannot sign, keeps
/// nothing of the first signature.
#[test]
fn a_failed_resigning_keeps_no_earlier_signature() {
    let first = Credentials::from_keys("AKID", "SECRET", Some("TOKEN".into()));
    let broken = Credentials::from_keys("AKID\n", "SECRET", Some("TOKEN".into()));
    let cfg = SigningConfig::new("us-east-1");
    let uri = "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations";
    for slow in [false, true] {
        let mut req = request(uri, &[HOST]);
        sign_request_with_hash(&mut req, &first, &cfg, at(1_700_000_000), HASH.to_owned())
            .expect("signed");
        assert!(req.headers().contains_key("authorization"));
        let result = if slow {
            sign_with_aws_sigv4(&mut req, &broken, &cfg, at(1_700_000_060), HASH.to_owned())
        } else {
            sign_request_with_hash(&mut req, &broken, &cfg, at(1_700_000_060), HASH.to_owned())
        };
        assert!(result.is_err());
        for gone in ["authorization", "x-amz-date", "x-amz-security-token"] {
            assert!(!req.headers().contains_key(gone), "{gone}");
        }
    }
}
