//! Each of the 36 modeled error shapes, decoded from a real HTTP response of the local
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
    assert_eq!(SHAPES.len(), 36);
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
    assert_eq!(lambda.requests("echo"), 36);
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
