//! Per-call options over real loopback HTTP: one call's own deadline, attempt timeout,
//! idempotence and attempt limit, each with its typed error intact.

mod common;

use std::time::Duration;

use invoke_stack::error::{InvokeErrorKind, RunStatus, ThrottleReason};
use invoke_stack::layers::retry::StopReason;
use invoke_stack::layers::timeout::Timer;
use invoke_stack::testing::{Fault, LocalFunction, LocalLambda};
use invoke_stack::{CallOptions, InvokeRequest};

/// An endpoint whose `hang` function never answers (until the endpoint stops).
async fn hanging_endpoint() -> LocalLambda {
    LocalLambda::builder()
        .function("echo", LocalFunction::echo())
        .function(
            "hang",
            LocalFunction::new(|_| std::future::pending::<Result<bytes::Bytes, _>>()),
        )
        .start()
        .await
        .unwrap()
}

fn request(function: &str, options: CallOptions) -> InvokeRequest {
    InvokeRequest::builder(function)
        .payload("1")
        .options(options)
        .build()
        .unwrap()
}

fn timer_of(err: &invoke_stack::InvokeError) -> Timer {
    match err.kind() {
        InvokeErrorKind::Timeout(t) => t.timer(),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn a_call_deadline_gives_a_typed_timeout() {
    let lambda = hanging_endpoint().await;
    // The client's own operation timeout is far away; the call's is short.
    let client = common::builder_for(&lambda)
        .operation_timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let req = request(
        "hang",
        CallOptions::new().timeout(Duration::from_millis(200)),
    );
    let err = client.invoke(req).await.unwrap_err();
    assert_eq!(timer_of(&err), Timer::Operation);
    assert_eq!(err.attempts(), 1);
    // The request was sent: the function may be running.
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(lambda.requests("hang"), 1);
    // The next call, without options, is not limited by the earlier call's deadline.
    let resp = client
        .invoke(request("echo", CallOptions::new()))
        .await
        .unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");
}

#[tokio::test]
async fn a_call_attempt_timeout_overrides_the_clients() {
    let lambda = hanging_endpoint().await;
    let client = common::client_for(&lambda);
    let req = request(
        "hang",
        CallOptions::new().attempt_timeout(Duration::from_millis(100)),
    );
    let err = client.invoke(req).await.unwrap_err();
    assert_eq!(timer_of(&err), Timer::Attempt);
    // Not idempotent: an attempt that timed out after sending is not repeated.
    assert_eq!(err.attempts(), 1);
    assert_eq!(lambda.requests("hang"), 1);
}

#[tokio::test]
async fn a_call_sets_its_own_attempt_limit() {
    let (lambda, client) = common::echo_endpoint().await;
    let throttle = Fault::throttle(
        Some(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
        Some(Duration::ZERO),
    );
    // One attempt: the throttle is the answer.
    lambda.script("echo", [throttle.clone()]);
    let err = client
        .invoke(request("echo", CallOptions::new().max_attempts(1)))
        .await
        .unwrap_err();
    assert!(err.is_throttle(), "{err:?}");
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.stop_reason(), Some(StopReason::MaxAttempts));
    assert_eq!(lambda.requests("echo"), 1);

    // Five attempts (the policy allows three): four throttles, then it runs.
    lambda.script("echo", std::iter::repeat_n(throttle, 4));
    let resp = client
        .invoke(request("echo", CallOptions::new().max_attempts(5)))
        .await
        .unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");
    assert_eq!(lambda.requests("echo"), 1 + 5);
    assert_eq!(lambda.invocations("echo"), 1);
    let last = lambda.records().pop().unwrap();
    assert_eq!(last.attempt.as_deref(), Some("attempt=5; max=5"));
}

#[tokio::test]
async fn a_call_may_be_idempotent_when_the_client_is_not() {
    let (lambda, client) = common::echo_endpoint().await;
    // By default a ServiceException (it may have run) is not retried.
    lambda.script("echo", [Fault::service_exception()]);
    let err = client
        .invoke(request("echo", CallOptions::new()))
        .await
        .unwrap_err();
    assert_eq!(err.type_name(), "ServiceException");
    assert_eq!(lambda.requests("echo"), 1);

    // This call says it is safe to repeat.
    lambda.script("echo", [Fault::service_exception()]);
    let resp = client
        .invoke(request("echo", CallOptions::new().idempotent(true)))
        .await
        .unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");
    assert_eq!(lambda.requests("echo"), 3);
}

/// A call's deadline starts when the call starts (its first poll), as the client's own
/// operation timeout does, not when the future was made: futures made ahead and run
/// later (`buffer_unordered`) do not find their time spent.
#[tokio::test]
async fn a_call_deadline_starts_at_the_first_poll() {
    let (_lambda, client) = common::echo_endpoint().await;
    let fut = client.invoke(request(
        "echo",
        CallOptions::new().timeout(Duration::from_millis(300)),
    ));
    // Made, not polled, for longer than its timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = fut.await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");
}

/// A zero timeout or attempt limit is refused before anything is sent: a zero attempt
/// timeout would fail every attempt unsent and spend the client's retry budget.
#[tokio::test]
async fn zero_options_are_refused_before_sending() {
    let (lambda, client) = common::echo_endpoint().await;
    let err = InvokeRequest::builder("echo")
        .options(CallOptions::new().attempt_timeout(Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("attempt_timeout"), "{err}");
    let built = InvokeRequest::builder("echo").build().unwrap();
    for options in [
        CallOptions::new().timeout(Duration::ZERO),
        CallOptions::new().max_attempts(0),
    ] {
        let err = client
            .invoke(built.clone().with_options(options))
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), InvokeErrorKind::Validation(_)),
            "{err:?}"
        );
    }
    assert_eq!(lambda.requests("echo"), 0);
}
