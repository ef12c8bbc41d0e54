//! Retries over real loopback HTTP against the local endpoint's faults. Every test
//! asserts, from the endpoint's own counts, that the function ran exactly once or was
//! never run twice.

mod common;

use std::time::Duration;

use bytes::Bytes;

use invoke_stack::client::FunctionSettings;
use invoke_stack::error::{ApiErrorKind, InvokeErrorKind, RunStatus, ThrottleReason};
use invoke_stack::model::InvocationType;
use invoke_stack::testing::{Fault, FunctionFailure, LocalFunction, LocalLambda, Outcome};
use invoke_stack::InvokeClient;

fn idempotent_client(lambda: &LocalLambda) -> InvokeClient {
    common::builder_for(lambda)
        .function("echo", FunctionSettings::default().idempotent(true))
        .build()
        .unwrap()
}

fn one_operation(lambda: &LocalLambda) -> String {
    let records = lambda.records();
    let id = records[0]
        .invocation_id
        .clone()
        .expect("amz-sdk-invocation-id");
    assert!(records
        .iter()
        .all(|r| r.invocation_id.as_deref() == Some(id.as_str())));
    id
}

#[tokio::test]
async fn throttled_twice_then_runs_exactly_once() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    let throttle = Fault::throttle(
        Some(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
        Some(Duration::ZERO),
    );
    lambda.script("echo", [throttle.clone(), throttle]);
    let resp = client.invoke_json("echo", &1).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");
    assert_eq!(lambda.requests("echo"), 3);
    assert_eq!(lambda.invocations("echo"), 1);
    let id = one_operation(&lambda);
    assert_eq!(lambda.invocations_of_operation(&id), 1);
    let attempts: Vec<_> = lambda
        .records()
        .into_iter()
        .map(|r| r.attempt.unwrap())
        .collect();
    assert_eq!(
        attempts,
        ["attempt=1; max=3", "attempt=2; max=3", "attempt=3; max=3"]
    );
}

#[tokio::test]
async fn service_exception_is_not_retried_unless_idempotent() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script("echo", [Fault::service_exception()]);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(err.type_name(), "ServiceException");
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(lambda.requests("echo"), 1);

    let (lambda, _) = common::echo_endpoint().await;
    lambda.script(
        "echo",
        [Fault::service_exception(), Fault::service_exception()],
    );
    let resp = idempotent_client(&lambda)
        .invoke_json("echo", &1)
        .await
        .unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");
    assert_eq!(lambda.requests("echo"), 3);
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn reset_before_the_request_is_read() {
    let _secrets = common::watch_secrets();
    // From the client's side the request was written: not retried by default...
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script("echo", [Fault::ResetBeforeRequest]);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert!(
        matches!(err.kind(), InvokeErrorKind::Transport(_)),
        "{err:?}"
    );
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(lambda.invocations("echo"), 0);
    // ...and retried when the function is idempotent; it then runs once.
    let (lambda, _) = common::echo_endpoint().await;
    lambda.script("echo", [Fault::ResetBeforeRequest]);
    idempotent_client(&lambda)
        .invoke_json("echo", &1)
        .await
        .unwrap();
    assert_eq!(lambda.requests("echo"), 2);
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn reset_after_the_function_ran_is_never_run_twice() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script("echo", [Fault::ResetAfterRequest]);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(err.attempts(), 1);
    assert_eq!(lambda.invocations("echo"), 1);
    assert_eq!(lambda.requests("echo"), 1);
}

#[tokio::test]
async fn configuration_502s_are_not_retried_healing_ones_are() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script("echo", [Fault::Error(ApiErrorKind::InvalidZipFile)]);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(
        (err.type_name(), err.attempts()),
        ("InvalidZipFileException", 1)
    );
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
    assert_eq!(lambda.requests("echo"), 1);

    lambda.script(
        "echo",
        [
            Fault::Error(ApiErrorKind::EC2Throttled),
            Fault::Error(ApiErrorKind::ResourceNotReady),
        ],
    );
    client.invoke_json("echo", &2).await.unwrap();
    assert_eq!(lambda.requests("echo"), 4);
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn slow_function_past_the_attempt_timeout_is_not_run_twice() {
    let _secrets = common::watch_secrets();
    let lambda = LocalLambda::builder()
        .function(
            "slow",
            LocalFunction::new(|inv| async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(inv.payload().clone())
            }),
        )
        .start()
        .await
        .unwrap();
    let client = common::builder_for(&lambda)
        .function(
            "slow",
            FunctionSettings::default().max_duration(Duration::from_millis(50)),
        )
        .timeouts(invoke_stack::client::TimeoutConfig {
            sync_margin: Duration::from_millis(50),
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = client.invoke_json("slow", &1).await.unwrap_err();
    let InvokeErrorKind::Timeout(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert!(t.request_sent());
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(err.attempts(), 1);
    assert_eq!(
        lambda.requests("slow"),
        1,
        "a function that may still be running was not called again"
    );
}

#[tokio::test]
async fn unsent_requests_are_retried_and_say_not_run() {
    let _secrets = common::watch_secrets();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = InvokeClient::builder()
        .endpoint_url(format!("http://{addr}"))
        .credentials(invoke_stack::layers::sigv4::Credentials::from_keys(
            "A", "S", None,
        ))
        .retry_policy(invoke_stack::layers::retry::RetryPolicy {
            transient_base: Duration::from_millis(1),
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = client.invoke_json("f", &1).await.unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
}

#[tokio::test]
async fn ambiguous_event_failures_follow_the_same_rule() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script("echo", [Fault::ResetAfterRequest]);
    let err = client.invoke_event("echo", "{}").await.unwrap_err();
    assert_eq!(
        err.may_have_run(),
        RunStatus::Unknown,
        "the event may have been queued"
    );
    assert_eq!(lambda.requests("echo"), 1);
    assert_eq!(lambda.records()[0].outcome, Outcome::Queued);
    assert_eq!(
        lambda.records()[0].invocation_type,
        Some(InvocationType::Event)
    );
}

#[tokio::test]
async fn unhandled_function_errors_are_retried_only_when_asked_and_idempotent() {
    let _secrets = common::watch_secrets();
    let start = || async {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let c = calls.clone();
        let lambda = LocalLambda::builder()
            .function(
                "flaky",
                LocalFunction::new(move |inv| {
                    let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            Err(FunctionFailure::unhandled("Runtime.ExitError", "crashed"))
                        } else {
                            Ok(inv.payload().clone())
                        }
                    }
                }),
            )
            .start()
            .await
            .unwrap();
        lambda
    };
    // By default a function error is a result.
    let lambda = start().await;
    let resp = common::client_for(&lambda)
        .invoke_json("flaky", &1)
        .await
        .unwrap();
    assert!(resp.function_error().unwrap().is_unhandled());
    assert_eq!(lambda.invocations("flaky"), 1);
    // Opted in, but not idempotent: still not retried (it ran).
    let lambda = start().await;
    let client = common::builder_for(&lambda)
        .retry_unhandled_function_errors(true)
        .build()
        .unwrap();
    assert!(client
        .invoke_json("flaky", &1)
        .await
        .unwrap()
        .function_error()
        .is_some());
    assert_eq!(lambda.invocations("flaky"), 1);
    // Opted in and idempotent: retried.
    let lambda = start().await;
    let client = common::builder_for(&lambda)
        .retry_unhandled_function_errors(true)
        .function("flaky", FunctionSettings::default().idempotent(true))
        .build()
        .unwrap();
    let resp = client.invoke_json("flaky", &1).await.unwrap();
    assert!(resp.function_error().is_none());
    assert_eq!(resp.payload(), &Bytes::from_static(b"1"));
    assert_eq!(lambda.invocations("flaky"), 2);
}

/// Issue 16, item 6: the error says how many attempts ran and why the retries stopped,
/// when the server's `Retry-After` is over the limit and when the operation deadline
/// fires during a retry.
#[tokio::test]
async fn errors_say_how_many_attempts_ran_and_why_they_stopped() {
    use invoke_stack::error::StopReason;
    use invoke_stack::layers::retry::RetryPolicy;
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script(
        "echo",
        [Fault::throttle(None, Some(Duration::from_secs(120)))],
    );
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.stop_reason(), Some(StopReason::RetryAfterTooLong));
    assert!(
        err.to_string()
            .ends_with("(after 1 attempt; retries stopped: the server asked to wait longer than the Retry-After limit)"),
        "{err}"
    );

    // Throttled at once, then the second attempt hangs until the operation deadline.
    let client = common::builder_for(&lambda)
        .operation_timeout(Duration::from_secs(2))
        .retry_policy(RetryPolicy {
            throttle_base: Duration::ZERO,
            min_attempt_budget: Duration::ZERO,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    lambda.script("echo", [Fault::throttle(None, None), Fault::Hang]);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert!(matches!(err.kind(), InvokeErrorKind::Timeout(_)), "{err:?}");
    assert_eq!(err.attempts(), 2, "{err}");
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
    assert!(
        err.to_string()
            .contains("(after 2 attempts; retries stopped: the operation deadline"),
        "{err}"
    );
    assert_eq!(lambda.requests("echo"), 3);
}
