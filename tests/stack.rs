//! The named stack over real loopback HTTP: custom layers in place, removed layers gone,
//! the same behaviour as the static stack.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use invoke_stack::client::DEFAULT_ORDER;
use invoke_stack::stack::{BoxService, InvokeStack, Step};
use invoke_stack::testing::Fault;

#[tokio::test]
async fn named_stack_with_a_custom_layer_before_signing() {
    let _secrets = common::watch_secrets();
    let (lambda, static_client) = common::echo_endpoint().await;
    assert_eq!(static_client.identify(), DEFAULT_ORDER);

    let seen = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&seen);
    let client = common::builder_for(&lambda)
        .named_stack(move |stack: &mut InvokeStack| {
            let s = Arc::clone(&s);
            // Counts attempts and adds a header the signature must then cover.
            stack
                .add_before(
                    "sign",
                    "stamp",
                    tower::layer::layer_fn(move |inner: BoxService| {
                        let s = Arc::clone(&s);
                        BoxService::new(tower::util::MapRequest::new(
                            inner,
                            move |mut req: http::Request<bytes::Bytes>| {
                                s.fetch_add(1, Ordering::SeqCst);
                                req.headers_mut().insert(
                                    "x-amz-tenant-id",
                                    http::HeaderValue::from_static("stamped"),
                                );
                                req
                            },
                        ))
                    }),
                )
                .unwrap();
        })
        .build()
        .unwrap();
    let mut expected: Vec<String> = DEFAULT_ORDER.iter().map(|s| (*s).to_owned()).collect();
    expected.insert(7, "stamp (attempt)".into());
    assert_eq!(client.identify(), expected);

    // Throttled once: the retry (operation step) re-runs the attempt step, stamp included.
    lambda.script("echo", [Fault::throttle(None, None)]);
    let resp = client.invoke_json("echo", &1).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn removing_retry_removes_retries() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .named_stack(|stack| {
            stack.remove("retry").unwrap();
        })
        .build()
        .unwrap();
    assert!(!client.identify().iter().any(|n| n.starts_with("retry")));
    lambda.script("echo", [Fault::throttle(None, None)]);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert!(err.is_throttle());
    assert_eq!(lambda.requests("echo"), 1);
    // Step placement: a new operation slot goes before the attempt slots.
    let client = common::builder_for(&lambda)
        .named_stack(|stack| {
            stack
                .add(
                    "audit",
                    Step::Operation,
                    tower::layer::layer_fn(|s: BoxService| s),
                )
                .unwrap();
        })
        .build()
        .unwrap();
    assert_eq!(client.identify()[4], "audit (operation)");
    client.invoke_json("echo", &2).await.unwrap();
}
