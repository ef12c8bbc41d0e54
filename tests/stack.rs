//! The named stack over real loopback HTTP: custom layers in place, removed layers gone,
//! the same behaviour as the static stack.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use invoke_stack::client::DEFAULT_ORDER;
use invoke_stack::stack::{BoxService, InvokeStack, Step};
use invoke_stack::testing::Fault;

type Req = http::Request<bytes::Bytes>;

/// A customization that adds slot `name` before `sign`, mapping each attempt's request.
fn before_sign(
    name: &'static str,
    map: impl Fn(Req) -> Req + Clone + Send + Sync + 'static,
) -> impl FnOnce(&mut InvokeStack) + Send + 'static {
    move |stack| {
        stack
            .add_before(
                "sign",
                name,
                tower::layer::layer_fn(move |inner: BoxService| {
                    BoxService::new(tower::util::MapRequest::new(inner, map.clone()))
                }),
            )
            .unwrap();
    }
}

#[tokio::test]
async fn named_stack_with_a_custom_layer_before_signing() {
    let _secrets = common::watch_secrets();
    let (lambda, static_client) = common::echo_endpoint().await;
    assert_eq!(static_client.identify(), DEFAULT_ORDER);

    let seen = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&seen);
    // Counts attempts and adds a header the signature must then cover.
    let client = common::builder_for(&lambda)
        .named_stack(before_sign("stamp", move |mut req| {
            s.fetch_add(1, Ordering::SeqCst);
            req.headers_mut()
                .insert("x-amz-tenant-id", http::HeaderValue::from_static("stamped"));
            req
        }))
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
    // Step placement: without a retry slot, a new operation slot goes before the
    // attempt slots.
    let client = common::builder_for(&lambda)
        .named_stack(|stack| {
            stack.remove("retry").unwrap();
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
    assert_eq!(client.identify()[3], "audit (operation)");
    client.invoke_json("echo", &2).await.unwrap();
}

/// A layer that counts the calls that go through it.
fn counting(
    count: Arc<AtomicUsize>,
) -> impl tower::Layer<BoxService, Service = BoxService> + Send + Sync + 'static {
    tower::layer::layer_fn(move |inner: BoxService| {
        let count = Arc::clone(&count);
        BoxService::new(tower::util::MapRequest::new(inner, move |req: Req| {
            count.fetch_add(1, Ordering::SeqCst);
            req
        }))
    })
}

/// Issue 16, item 1: an operation slot runs once per call, an attempt slot once per
/// attempt, whichever way they were added.
#[tokio::test]
async fn operation_slots_run_once_attempt_slots_every_attempt() {
    let (lambda, _) = common::echo_endpoint().await;
    let counts: Vec<Arc<AtomicUsize>> = (0..4).map(|_| Arc::default()).collect();
    let c = counts.clone();
    let client = common::builder_for(&lambda)
        .named_stack(move |stack| {
            stack
                .add("op", Step::Operation, counting(Arc::clone(&c[0])))
                .unwrap();
            stack
                .add_before("retry", "op-before-retry", counting(Arc::clone(&c[1])))
                .unwrap();
            stack
                .add("attempt", Step::Attempt, counting(Arc::clone(&c[2])))
                .unwrap();
            stack
                .add_after("retry", "attempt-after-retry", counting(Arc::clone(&c[3])))
                .unwrap();
        })
        .build()
        .unwrap();
    let names = client.identify();
    let at = |n: &str| names.iter().position(|s| s.starts_with(n)).unwrap();
    assert!(
        at("op ") < at("retry") && at("op-before-retry") < at("retry"),
        "{names:?}"
    );
    assert!(
        at("attempt ") > at("retry") && at("attempt-after-retry") == at("retry") + 1,
        "{names:?}"
    );
    assert_eq!(names[at("op-before-retry")], "op-before-retry (operation)");
    assert_eq!(
        names[at("attempt-after-retry")],
        "attempt-after-retry (attempt)"
    );

    // Throttled twice, then answered: three attempts of one operation.
    lambda.script(
        "echo",
        [Fault::throttle(None, None), Fault::throttle(None, None)],
    );
    client.invoke_json("echo", &1).await.unwrap();
    let seen: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(
        seen,
        [1, 1, 3, 3],
        "operation slots once, attempt slots per attempt"
    );
    assert_eq!(lambda.requests("echo"), 3);
}

/// Large payloads are hashed once per operation: the second attempt reaches signing with
/// the hash already known. Small ones carry no shared cell (re-hashing is cheaper).
#[tokio::test]
async fn large_payloads_are_hashed_once_per_operation() {
    use invoke_stack::layers::sigv4::PayloadHash;
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    // Per attempt, before signing: (has a cell, cell already filled).
    let seen: Arc<std::sync::Mutex<Vec<(bool, bool)>>> = Arc::default();
    let s = Arc::clone(&seen);
    let client = common::builder_for(&lambda)
        .named_stack(before_sign("peek", move |req| {
            let cell = req.extensions().get::<PayloadHash>();
            s.lock()
                .unwrap()
                .push((cell.is_some(), cell.is_some_and(|c| c.get().is_some())));
            req
        }))
        .build()
        .unwrap();

    let large = format!("\"{}\"", "x".repeat(2048));
    lambda.script("echo", [Fault::throttle(None, None)]);
    let resp = client
        .invoke_json("echo", &serde_json::from_str::<String>(&large).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.payload().len(), large.len());
    assert_eq!(*seen.lock().unwrap(), [(true, false), (true, true)]);

    seen.lock().unwrap().clear();
    lambda.script("echo", [Fault::throttle(None, None)]);
    client.invoke_json("echo", &1).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [(false, false), (false, false)]);
}

/// `invoke` returns the stack's call itself: a `Send + 'static` future that can be
/// spawned, and that answers a poll after completion with an error instead of panicking.
#[tokio::test]
async fn the_invoke_future_can_be_spawned_and_polled_after_completion() {
    fn spawnable<F: std::future::Future + Send + 'static>(f: F) -> F {
        f
    }
    let (lambda, client) = common::echo_endpoint().await;
    let named = common::builder_for(&lambda)
        .named_stack(|_| {})
        .build()
        .unwrap();
    for client in [client, named] {
        let req = invoke_stack::InvokeRequest::builder("echo")
            .payload(&b"[1,2]"[..])
            .build()
            .unwrap();
        let resp = tokio::spawn(spawnable(client.invoke(req))).await.unwrap();
        assert_eq!(resp.unwrap().payload().as_ref(), b"[1,2]");

        let req = invoke_stack::InvokeRequest::builder("echo")
            .build()
            .unwrap();
        let mut fut = Box::pin(client.invoke(req));
        assert!((&mut fut).await.is_ok());
        let again = std::future::poll_fn(|cx| std::future::Future::poll(fut.as_mut(), cx)).await;
        let err = again.unwrap_err();
        assert!(err.to_string().contains("polled after completion"), "{err}");
    }
}

/// A blocking policy of the caller's, as a slot whose service fails with a boxed error
/// of its own (as tower's middleware does): it refuses calls to `blocked`, and passes
/// every other call through, its inner `InvokeError` boxed.
#[derive(Clone)]
struct Gate(BoxService);

#[derive(Debug)]
struct Blocked;

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("blocked by policy")
    }
}

impl std::error::Error for Blocked {}

impl tower::Service<Req> for Gate {
    type Response = http::Response<bytes::Bytes>;
    type Error = tower::BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if req.uri().path().contains("/functions/blocked/") {
            return Box::pin(async { Err(Blocked.into()) });
        }
        let call = self.0.call(req);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

#[tokio::test]
async fn a_slot_with_a_boxed_error_maps_into_invoke_error() {
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .named_stack(|stack| {
            stack
                .add_before("sign", "gate", tower::layer::layer_fn(Gate))
                .unwrap();
        })
        .build()
        .unwrap();
    // The slot's own error: kept as the source, typed as a layer's error.
    let err = client.invoke_json("blocked", &1).await.unwrap_err();
    assert!(
        matches!(err.kind(), invoke_stack::InvokeErrorKind::Layer(_)),
        "{err:?}"
    );
    assert_eq!(err.type_name(), "LayerError");
    let source = std::error::Error::source(&err).expect("the layer's error");
    assert!(source.downcast_ref::<Blocked>().is_some(), "{source:?}");
    assert_eq!(lambda.requests("blocked"), 0);
    // An InvokeError boxed by the slot comes back as itself, typed.
    lambda.script("echo", [Fault::service_exception()]);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(err.type_name(), "ServiceException");
    // And calls it lets through work.
    let resp = client.invoke_json("echo", &2).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"2");
}
