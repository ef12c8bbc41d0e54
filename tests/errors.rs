//! Each of the 43 modeled error shapes, decoded from a real HTTP response of the local
//! endpoint, with its fault, retryability and may-have-run asserted. Clients here make
//! one attempt: this is about decoding, `tests/retry.rs` about retrying.

mod common;

use std::time::Duration;

use invoke_stack::error::{
    ApiErrorKind, Fault as FaultClass, InvokeErrorKind, RunStatus, StandardClass, ThrottleReason,
    SHAPES,
};
use invoke_stack::testing::Fault;

fn kind_for(code: &str) -> ApiErrorKind {
    match code {
        // Shapes with members get values, to check they survive the wire.
        "TooManyRequestsException" => ApiErrorKind::TooManyRequests {
            reason: Some(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
            retry_after: Some(Duration::from_secs(2)),
        },
        "EC2UnexpectedException" => ApiErrorKind::EC2Unexpected {
            ec2_error_code: Some("InvalidNetworkInterfaceID.NotFound".into()),
        },
        other => other.parse().unwrap(),
    }
}

#[tokio::test]
async fn every_modeled_shape_over_http() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .build()
        .unwrap();
    assert_eq!(SHAPES.len(), 43);
    for shape in SHAPES {
        let kind = kind_for(shape.code);
        lambda.script("echo", [Fault::Error(kind.clone())]);
        let err = client.invoke_json("echo", &1).await.unwrap_err();
        let InvokeErrorKind::Api(api) = err.kind() else {
            panic!("{}: not an API error: {err:?}", shape.code)
        };
        assert_eq!(api.kind(), &kind, "{}", shape.code);
        assert_eq!(api.status(), shape.status, "{}", shape.code);
        assert_eq!(api.code(), shape.code);
        assert!(api.message().is_some(), "{}: message lost", shape.code);
        assert_eq!(
            api.error_type(),
            Some(if shape.status >= 500 {
                "Service"
            } else {
                "User"
            })
        );
        assert!(api.request_id().is_some());
        assert_eq!(err.fault(), shape.fault, "{}", shape.code);
        assert_eq!(
            err.is_throttle(),
            shape.standard_class == StandardClass::Throttling,
            "{}",
            shape.code
        );
        assert_eq!(err.is_retryable(), shape.retryable, "{}", shape.code);
        let expected_run = if shape.code == "ServiceException" {
            RunStatus::Unknown
        } else {
            RunStatus::NotRun
        };
        assert_eq!(err.may_have_run(), expected_run, "{}", shape.code);
    }
    // No shape let the function run.
    assert_eq!(lambda.invocations("echo"), 0);
    assert_eq!(lambda.requests("echo"), 43);
}

#[tokio::test]
async fn throttle_members_survive_the_wire() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .build()
        .unwrap();
    lambda.script(
        "echo",
        [Fault::throttle(
            Some(ThrottleReason::CallerRateLimitExceeded),
            Some(Duration::from_secs(7)),
        )],
    );
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert!(err.is_throttle());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    let api = err.as_api().unwrap();
    assert_eq!(
        api.throttle_reason(),
        Some(&ThrottleReason::CallerRateLimitExceeded)
    );
    assert_eq!(err.fault(), FaultClass::Client);
}

#[tokio::test]
async fn unmodeled_errors_by_status() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .build()
        .unwrap();
    // An intermediary's HTML 502, a bare 503, and Lambda's real 413 code.
    lambda.script(
        "echo",
        [
            Fault::Html { status: 502 },
            Fault::Garbage { status: 503 },
            Fault::Raw {
                status: 413,
                headers: vec![(
                    "x-amzn-ErrorType".into(),
                    "RequestEntityTooLargeException".into(),
                )],
                body: r#"{"message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}"#.into(),
            },
        ],
    );
    let e = client.invoke_json("echo", &1).await.unwrap_err();
    let api = e.as_api().unwrap();
    assert_eq!((api.code(), api.status()), ("502", 502));
    assert!(e.is_retryable());
    assert_eq!(e.may_have_run(), RunStatus::Unknown);

    let e = client.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(e.as_api().unwrap().code(), "503");
    assert_eq!(e.fault(), FaultClass::Server);

    let e = client.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(e.as_api().unwrap().kind(), &ApiErrorKind::RequestTooLarge);
    assert!(!e.is_retryable());
    assert_eq!(e.fault(), FaultClass::Client);
}

/// A one-connection HTTP server on loopback that reads one request and answers with
/// `response`, byte for byte (so that a header can carry bytes that are not UTF-8).
async fn raw_endpoint(response: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // The head, then as many body bytes as `Content-Length` says.
        let body_start = loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before sending a request");
            seen.extend_from_slice(&buf[..n]);
            if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&seen[..body_start]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while seen.len() < body_start + len {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed mid-body");
            seen.extend_from_slice(&buf[..n]);
        }
        conn.write_all(&response).await.unwrap();
        conn.shutdown().await.unwrap();
    });
    (url, server)
}

fn raw_response(status: &str, headers: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n").into_bytes();
    for h in headers {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn a_function_error_header_that_is_not_utf8_is_still_a_function_error() {
    let _secrets = common::watch_secrets();
    let (url, server) = raw_endpoint(raw_response(
        "200 OK",
        &[
            b"x-amz-function-error: Unhandled\xff",
            b"x-amzn-requestid: rid-\xfe",
            b"x-amz-executed-version: 1\xc3",
        ],
        br#"{"errorType":"Runtime.ExitError","errorMessage":"exited"}"#,
    ))
    .await;
    let client = invoke_stack::InvokeClient::builder()
        .endpoint_url(url)
        .region("us-east-1")
        .credentials(invoke_stack::layers::sigv4::Credentials::from_keys(
            "AKID", "SECRET", None,
        ))
        .max_attempts(1)
        .build()
        .unwrap();
    let resp = client.invoke_json("f", &1).await.unwrap();
    server.await.unwrap();
    let fe = resp
        .function_error()
        .expect("a failed function must not read as a success");
    assert_eq!(fe.kind(), r"Unhandled\xff");
    assert_eq!(fe.error_type(), Some("Runtime.ExitError"));
    assert_eq!(resp.request_id(), Some(r"rid-\xfe"));
    assert_eq!(resp.executed_version(), Some(r"1\xc3"));
}

/// The longest a server-supplied field may be once decoded: the cap and the marker that
/// says how much was cut.
const MAX_FIELD: usize = invoke_stack::layers::trace::MAX_UNTRUSTED_CHARS + 32;

#[tokio::test]
async fn server_text_is_capped_and_escaped_in_errors() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .build()
        .unwrap();
    let huge = "x".repeat(100 * 1024);
    let forged = "bad\n\x1b[31mINFO forged log line\r\u{202e}";
    lambda.script(
        "echo",
        [
            // A proxy echoing 5 KB of request headers, and a 100 KB message.
            Fault::Raw {
                status: 400,
                headers: vec![
                    (
                        "x-amzn-ErrorType".into(),
                        "InvalidParameterValueException".into(),
                    ),
                    ("x-amzn-RequestId".into(), "r".repeat(5000)),
                ],
                body: serde_json::json!({ "message": huge, "Type": "User" })
                    .to_string()
                    .into(),
            },
            // Control characters in the message, the type and an unmodeled code.
            Fault::Raw {
                status: 400,
                headers: vec![],
                body: serde_json::json!({
                    "__type": "Odd\u{1b}[0m",
                    "message": forged,
                    "Type": "User\n",
                })
                .to_string()
                .into(),
            },
        ],
    );
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    let api = err.as_api().unwrap();
    assert_eq!(api.code(), "InvalidParameterValueException");
    let message = api.message().unwrap();
    assert!(message.chars().count() <= MAX_FIELD, "{}", message.len());
    assert!(message.ends_with("more bytes]"), "{message}");
    assert!(api.request_id().unwrap().chars().count() <= MAX_FIELD);
    let shown = err.to_string();
    assert!(
        shown.len() < 3 * MAX_FIELD,
        "Display is {} bytes",
        shown.len()
    );
    assert!(format!("{err:?}").len() < 4 * MAX_FIELD);

    let err = client.invoke_json("echo", &1).await.unwrap_err();
    let api = err.as_api().unwrap();
    assert_eq!(api.code(), r"Odd\u{1b}[0m");
    assert_eq!(
        api.message(),
        Some(r"bad\n\u{1b}[31mINFO forged log line\r\u{202e}")
    );
    assert_eq!(api.error_type(), Some(r"User\n"));
    let shown = err.to_string();
    assert!(
        !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{shown:?}"
    );
    assert!(shown.contains(r"bad\n\u{1b}[31mINFO"), "{shown}");
}

#[tokio::test]
async fn function_error_text_is_capped_and_escaped() {
    let _secrets = common::watch_secrets();
    let lambda = invoke_stack::testing::LocalLambda::builder()
        .function(
            "fail",
            invoke_stack::testing::LocalFunction::new(|_| async {
                Err(invoke_stack::testing::FunctionFailure::handled(
                    "Bad\n\x1b[31mType",
                    format!("line one\nline two\x1b[0m{}", "y".repeat(100 * 1024)),
                ))
            }),
        )
        .start()
        .await
        .unwrap();
    let resp = common::client_for(&lambda)
        .invoke_json("fail", &1)
        .await
        .unwrap();
    let fe = resp.function_error().unwrap();
    assert_eq!(fe.error_type(), Some(r"Bad\n\u{1b}[31mType"));
    let message = fe.error_message().unwrap();
    assert!(
        message.starts_with(r"line one\nline two\u{1b}[0myyy"),
        "{message}"
    );
    assert!(message.chars().count() <= MAX_FIELD, "{}", message.len());
    let shown = fe.to_string();
    assert!(shown.len() < 2 * MAX_FIELD);
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    // The payload itself is the function's result, kept whole.
    assert!(resp.payload().len() > 100 * 1024);
}
