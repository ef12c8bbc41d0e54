//! The response decoder never panics, whatever status, headers and body arrive.
//! (A proptest rather than `cargo fuzz`: it runs on stable in the ordinary test run.)

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use invoke_stack::codec::{decode_parts, parse_retry_after, sanitize_error_code};

const NAMES: &[&str] = &[
    "x-amzn-errortype",
    "x-amz-function-error",
    "x-amz-log-result",
    "x-amz-executed-version",
    "x-amz-durable-execution-arn",
    "x-amzn-requestid",
    "retry-after",
    "content-type",
];

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        // JSON-ish bodies with the fields the decoder looks at, of any JSON type.
        (
            prop::sample::select(vec![
                "code",
                "__type",
                "Code",
                "message",
                "Message",
                "errorMessage",
                "Type",
                "Reason",
                "EC2ErrorCode",
                "errorType"
            ]),
            prop_oneof![
                any::<String>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
                Just(serde_json::json!([1, {"a": null}])),
            ],
        )
            .prop_map(|(k, v)| serde_json::json!({ k: v }).to_string().into_bytes()),
        Just(b"<html><body>502</body></html>".to_vec()),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(usize, Vec<u8>)>> {
    proptest::collection::vec(
        (0..NAMES.len(), proptest::collection::vec(32u8..127, 0..40)),
        0..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics(status in 100u16..1000, hs in headers(), b in body()) {
        let mut map = HeaderMap::new();
        for (i, v) in hs {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                map.append(HeaderName::from_static(NAMES[i]), v);
            }
        }
        match decode_parts(status, &map, Bytes::from(b)) {
            Ok(resp) => prop_assert!((200..300).contains(&status) && resp.status_code() == status),
            Err(err) => {
                prop_assert!(!(200..300).contains(&status));
                prop_assert_eq!(err.status(), status);
                prop_assert!(!err.code().is_empty());
                // Every error answers the classification questions.
                let _ = (err.fault(), err.is_throttle(), err.is_retryable(), err.may_have_run());
            }
        }
    }

    #[test]
    fn retry_after_and_sanitizer_never_panic(s in any::<String>()) {
        let _ = parse_retry_after(&s, std::time::SystemTime::now());
        let code = sanitize_error_code(&s);
        prop_assert!(!code.contains(':'));
    }
}
