//! The whole client as a `tower::Service<InvokeRequest>`, under tower's own middleware,
//! over real loopback HTTP.

mod common;

use std::time::Duration;

use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

use invoke_stack::error::ThrottleReason;
use invoke_stack::testing::{Fault, LocalFunction, LocalLambda};
use invoke_stack::{InvokeError, InvokeRequest};

fn request(function: &str) -> InvokeRequest {
    InvokeRequest::builder(function)
        .payload("1")
        .build()
        .unwrap()
}

#[tokio::test]
async fn buffer_and_concurrency_limit_around_the_client() {
    // A function that takes a little while, so that calls let loose would overlap.
    let lambda = LocalLambda::builder()
        .function(
            "slow",
            LocalFunction::new(|inv| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(inv.payload().clone())
            }),
        )
        .start()
        .await
        .unwrap();
    let client = common::client_for(&lambda);
    let svc = ServiceBuilder::new()
        .buffer(16)
        .concurrency_limit(1)
        .service(client);
    let calls = (0..4).map(|_| {
        let svc = svc.clone();
        tokio::spawn(svc.oneshot(request("slow")))
    });
    for call in calls.collect::<Vec<_>>() {
        let resp = call.await.unwrap().unwrap();
        assert_eq!(resp.payload().as_ref(), b"1");
    }
    assert_eq!(lambda.invocations("slow"), 4);
    // tower's limit held around the whole client.
    assert_eq!(lambda.peak_concurrency("slow"), 1);
}

#[tokio::test]
async fn the_typed_error_survives_tower_middleware() {
    let (lambda, client) = common::echo_endpoint().await;
    lambda.always(
        "echo",
        Some(Fault::throttle(
            Some(ThrottleReason::FunctionInvocationRateLimitExceeded),
            Some(Duration::ZERO),
        )),
    );
    let mut svc = ServiceBuilder::new()
        .buffer(4)
        .timeout(Duration::from_secs(60))
        .service(client.clone());
    let err: BoxError = svc
        .ready()
        .await
        .unwrap()
        .call(request("echo"))
        .await
        .unwrap_err();
    let invoke = err
        .downcast_ref::<InvokeError>()
        .expect("the client's InvokeError, not a string");
    assert!(invoke.is_throttle());
    assert_eq!(invoke.attempts(), 3);

    // Plain `Service` use, no middleware: the same typed error.
    let mut plain = client;
    let err = plain
        .ready()
        .await
        .unwrap()
        .call(request("echo"))
        .await
        .unwrap_err();
    assert!(err.is_throttle());
}

/// `InvokeFuture`'s poll contract, with tokio-test's mock task: pending while the call
/// is in flight, woken when it can go on, ready exactly once, then an error.
#[tokio::test]
async fn invoke_future_keeps_the_poll_contract() {
    use std::task::Poll;
    use tokio_test::{assert_pending, assert_ready_err};

    let (lambda, client) = common::echo_endpoint().await;
    for fails in [false, true] {
        if fails {
            lambda.script("echo", [Fault::service_exception()]);
        }
        let mut fut = tokio_test::task::spawn(client.invoke(request("echo")));
        assert_pending!(fut.poll());
        // The runtime drives the connection; the call wakes its task when it can go on.
        let result = loop {
            while !fut.is_woken() {
                tokio::task::yield_now().await;
            }
            if let Poll::Ready(result) = fut.poll() {
                break result;
            }
        };
        assert_eq!(result.is_err(), fails, "{result:?}");
        let again = assert_ready_err!(fut.poll());
        assert!(
            again.to_string().contains("polled after completion"),
            "{again}"
        );
    }
}
