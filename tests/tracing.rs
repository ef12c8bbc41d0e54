//! The span tree and fields of a call, under a capturing subscriber at TRACE: success,
//! function error, throttle then success, timeout, validation error.

mod common;

use std::time::Duration;

use bytes::Bytes;

use common::capture::{self, Captured};
use invoke_stack::client::{FunctionSettings, TimeoutConfig};
use invoke_stack::error::ThrottleReason;
use invoke_stack::layers::trace::TraceLayer;
use invoke_stack::model::{InvokeRequest, LogType};
use invoke_stack::telemetry::LambdaTrace;
use invoke_stack::testing::{Fault, FunctionFailure, LocalFunction, LocalLambda};

fn op(c: &Captured) -> &common::capture::SpanData {
    let ops: Vec<_> = c
        .spans
        .iter()
        .filter(|s| s.name == "Lambda.Invoke")
        .collect();
    assert_eq!(ops.len(), 1, "one operation span");
    ops[0]
}

fn attempts(c: &Captured) -> Vec<&common::capture::SpanData> {
    c.spans
        .iter()
        .filter(|s| s.name == "Lambda.Invoke.attempt")
        .collect()
}

async fn endpoint() -> LocalLambda {
    LocalLambda::builder()
        .function(
            "echo",
            LocalFunction::new(|inv| async move {
                inv.log("first line");
                inv.log("second line");
                if inv.payload().as_ref() == b"\"fail\"" {
                    return Err(FunctionFailure::handled("BadInput", "no"));
                }
                Ok(inv.payload().clone())
            })
            .version("3")
            .alias("live", "3"),
        )
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn success() {
    let (cap, _g) = capture::start();
    let lambda = endpoint().await;
    let client = common::client_for(&lambda);
    let req = InvokeRequest::builder("echo:live")
        .payload("{}")
        .log_type(LogType::Tail)
        .build()
        .unwrap();
    client.invoke(req).await.unwrap();

    let c = cap.0.lock().unwrap();
    let op = op(&c);
    for (k, v) in [
        ("rpc.system", "aws-api"),
        ("rpc.service", "Lambda"),
        ("rpc.method", "Invoke"),
        ("faas.invoked_name", "echo:live"),
        ("faas.invoked_provider", "aws"),
        ("faas.invoked_region", "us-east-1"),
        ("server.address", "127.0.0.1"),
        ("aws.lambda.invocation_type", "RequestResponse"),
        ("aws.lambda.payload_size", "2"),
        ("http.response.status_code", "200"),
        ("aws.lambda.executed_version", "3"),
        ("aws.lambda.attempts", "1"),
        ("aws.lambda.response_size", "2"),
    ] {
        assert_eq!(op.field(k), Some(v), "{k}");
    }
    assert!(op.field("aws.request_id").is_some());
    let att = attempts(&c);
    assert_eq!(att.len(), 1);
    assert_eq!(att[0].parent.as_deref(), Some("Lambda.Invoke"));
    assert_eq!(att[0].field("aws.lambda.attempt"), Some("1"));
    // The log tail may hold the function's secrets: not traced unless asked for, at
    // any level (this capture is at TRACE).
    assert!(
        !c.events.iter().any(|e| e.message == "log"),
        "log tail traced by default"
    );
    assert!(!c.text.contains("first line"), "{}", c.text);
    assert!(c
        .events
        .iter()
        .any(|e| e.message == "invoke finished" && e.level == "INFO"));
    // TRACE wire detail: header names, allowlisted values only.
    let header = |name: &str| {
        c.events
            .iter()
            .find(|e| {
                e.message == "header" && e.fields.iter().any(|(k, v)| k == "header" && v == name)
            })
            .map(|e| {
                e.fields
                    .iter()
                    .find(|(k, _)| k == "value")
                    .unwrap()
                    .1
                    .clone()
            })
    };
    assert_eq!(
        header("x-amz-invocation-type").as_deref(),
        Some("RequestResponse")
    );
    // Not allowlisted: the name is traced, the value is not.
    assert_eq!(header("x-amz-log-result").as_deref(), Some("<redacted>"));
}

#[tokio::test]
async fn log_tail_is_traced_when_asked_for() {
    let (cap, _g) = capture::start();
    let lambda = endpoint().await;
    let client = common::builder_for(&lambda)
        .named_stack(|stack| {
            stack
                .replace(
                    "attempt-trace",
                    TraceLayer::new(LambdaTrace::attempt().log_tail(true)),
                )
                .expect("the default stack has an attempt trace");
        })
        .build()
        .unwrap();
    let req = InvokeRequest::builder("echo:live")
        .payload("{}")
        .log_type(LogType::Tail)
        .build()
        .unwrap();
    client.invoke(req).await.unwrap();
    let c = cap.0.lock().unwrap();
    // The log tail, one DEBUG event per line, under the attempt span.
    let lines: Vec<_> = c
        .events
        .iter()
        .filter(|e| e.message == "log" && e.span.as_deref() == Some("Lambda.Invoke.attempt"))
        .map(|e| {
            assert_eq!(e.level, "DEBUG");
            e.fields
                .iter()
                .find(|(k, _)| k == "line")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert!(
        lines.iter().any(|l| l == "first line") && lines.iter().any(|l| l == "second line"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn function_error() {
    let (cap, _g) = capture::start();
    let lambda = endpoint().await;
    common::client_for(&lambda)
        .invoke_json("echo", &"fail")
        .await
        .unwrap();
    let c = cap.0.lock().unwrap();
    let op = op(&c);
    assert_eq!(op.field("aws.lambda.function_error"), Some("Handled"));
    assert_eq!(op.field("http.response.status_code"), Some("200"));
    assert_eq!(
        op.field("error.type"),
        None,
        "a function error is not an API error"
    );
}

#[tokio::test]
async fn throttle_then_success() {
    let (cap, _g) = capture::start();
    let lambda = endpoint().await;
    lambda.script(
        "echo",
        [Fault::throttle(
            Some(ThrottleReason::FunctionInvocationRateLimitExceeded),
            Some(Duration::ZERO),
        )],
    );
    common::client_for(&lambda)
        .invoke_json("echo", &1)
        .await
        .unwrap();
    let c = cap.0.lock().unwrap();
    let att = attempts(&c);
    assert_eq!(att.len(), 2);
    assert_eq!(att[0].field("http.response.status_code"), Some("429"));
    assert_eq!(att[0].field("error.type"), Some("TooManyRequestsException"));
    assert_eq!(
        att[0].field("aws.lambda.throttle_reason"),
        Some("FunctionInvocationRateLimitExceeded")
    );
    assert_eq!(att[0].field("aws.lambda.fault"), Some("client"));
    assert_eq!(att[1].field("aws.lambda.attempt"), Some("2"));
    assert_eq!(att[1].field("http.response.status_code"), Some("200"));
    assert_eq!(op(&c).field("aws.lambda.attempts"), Some("2"));
    let throttled = c
        .events
        .iter()
        .find(|e| e.message == "throttled")
        .expect("throttled event");
    assert_eq!(throttled.span.as_deref(), Some("Lambda.Invoke"));
    let scheduled = c
        .events
        .iter()
        .find(|e| e.message == "retry scheduled")
        .expect("retry event");
    assert!(scheduled.fields.iter().any(|(k, _)| k == "delay_ms"));
}

#[tokio::test]
async fn timeout() {
    let (cap, _g) = capture::start();
    let lambda = LocalLambda::builder()
        .function(
            "slow",
            LocalFunction::new(|_| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Bytes::new())
            }),
        )
        .start()
        .await
        .unwrap();
    let client = common::builder_for(&lambda)
        .function(
            "slow",
            FunctionSettings::default().max_duration(Duration::from_millis(20)),
        )
        .timeouts(TimeoutConfig {
            sync_margin: Duration::from_millis(20),
            ..TimeoutConfig::default()
        })
        .build()
        .unwrap();
    client.invoke_json("slow", &1).await.unwrap_err();
    let c = cap.0.lock().unwrap();
    let op = op(&c);
    assert_eq!(op.field("error.type"), Some("TimeoutError"));
    assert_eq!(op.field("aws.lambda.may_have_run"), Some("unknown"));
    assert_eq!(op.field("aws.lambda.fault"), Some("server"));
    let timed_out = c
        .events
        .iter()
        .find(|e| e.message == "timed out")
        .expect("timed out event");
    assert_eq!(timed_out.level, "WARN");
    assert!(timed_out
        .fields
        .iter()
        .any(|(k, v)| k == "timer" && v == "Attempt"));
    assert!(c.events.iter().any(|e| e.message == "invoke failed"));
}

#[tokio::test]
async fn validation_error() {
    let (cap, _g) = capture::start();
    let lambda = endpoint().await;
    common::client_for(&lambda)
        .invoke_json("bad name", &1)
        .await
        .unwrap_err();
    let c = cap.0.lock().unwrap();
    let op = op(&c);
    assert_eq!(op.field("error.type"), Some("ValidationError"));
    assert_eq!(op.field("aws.lambda.may_have_run"), Some("not_run"));
    assert!(attempts(&c).is_empty(), "nothing was sent");
    assert!(lambda.records().is_empty());
}

/// The secrets watch can fail: a traced secret is caught.
#[tokio::test]
#[should_panic(expected = "was traced")]
async fn secrets_watch_catches_a_leak() {
    let _secrets = common::watch_secrets();
    tracing::trace!(key = invoke_stack::testing::TEST_SECRET_ACCESS_KEY, "oops");
}

#[tokio::test]
async fn server_text_in_traces_is_capped_and_escaped() {
    let (cap, _g) = capture::start();
    let lambda = endpoint().await;
    let mut message = String::from("bad\n\x1b[31mINFO forged log line ");
    message.push_str(&"x".repeat(100 * 1024));
    lambda.script(
        "echo",
        [Fault::Raw {
            status: 400,
            headers: vec![("x-amzn-RequestId".into(), "r".repeat(5000))],
            body: serde_json::json!({
                "__type": format!("Odd\u{1b}[0m{}", "c".repeat(5000)),
                "message": message,
            })
            .to_string()
            .into(),
        }],
    );
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .build()
        .unwrap();
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    // What a caller logs of the error.
    tracing::error!(error = %err, "call failed");

    let c = cap.0.lock().unwrap();
    let max = invoke_stack::layers::trace::MAX_UNTRUSTED_CHARS + 32;
    assert!(
        !c.text.contains('\x1b'),
        "an escape sequence from the server reached the trace"
    );
    let op = op(&c);
    let attempt = attempts(&c)[0];
    for (span, field) in [
        (op, "error.type"),
        (op, "aws.request_id"),
        (attempt, "error.type"),
        (attempt, "aws.request_id"),
    ] {
        let value = span.field(field).unwrap();
        assert!(value.chars().count() <= max, "{field}: {}", value.len());
        assert!(value.ends_with("more bytes]"), "{field}: {value}");
        assert!(!value.contains('\n'));
    }
    assert!(op
        .field("error.type")
        .unwrap()
        .starts_with(r"Odd\u{1b}[0mccc"));
    let field = |message: &str, name: &str| {
        let event = c
            .events
            .iter()
            .find(|e| e.message == message)
            .unwrap_or_else(|| panic!("no {message:?} event"));
        event
            .fields
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no {name} in {message:?}"))
            .1
            .clone()
    };
    let code = field("invoke failed", "error.type");
    assert!(code.chars().count() <= max, "{} bytes", code.len());
    assert!(code.starts_with(r"Odd\u{1b}[0mccc"), "{code}");
    let error = field("call failed", "error");
    assert!(error.contains(r"bad\n\u{1b}[31mINFO forged"), "{error}");
    assert!(!error.contains('\n'));
    assert!(error.len() < 4 * max, "{} bytes", error.len());
}
