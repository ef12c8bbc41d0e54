//! The poll-level contract of every public response future, checked the same way for
//! each layer with `tokio-test`'s mock task: pending while the inner service is, the
//! waker registered (woken when the inner service answers), ready exactly once, and an
//! error (never a panic, never `Pending` forever) when polled after completion. The
//! trace layer, transparent like tower-http's, passes that last poll to the inner future.

use std::fmt::Debug;
use std::time::Duration;

use tokio_test::task;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, FromRetry};
use crate::rate_limit::{Rate, RateLimitLayer};
use crate::retry::{HttpClassifier, RetryLayer};
use crate::sigv4::{Credentials, SigV4Layer, SigningConfig};
use crate::timeout::{DeadlineLayer, TimeoutLayer};
use crate::trace::{HttpDescribe, TraceLayer};

type Req = http::Request<bytes::Bytes>;
type Resp = http::Response<bytes::Bytes>;
type Mock = mock::Mock<Req, Resp>;

fn req() -> Req {
    http::Request::post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations")
        .body(bytes::Bytes::from_static(b"{}"))
        .unwrap()
}

/// Runs the contract over a layer: once with an answer, once with an inner error.
async fn contract<L>(name: &str, layer: L)
where
    L: Layer<Mock>,
    L::Service: Service<Req, Response = Resp>,
    <L::Service as Service<Req>>::Error: Debug,
{
    // The inner service answers.
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    let mut svc = layer.layer(inner);
    svc.ready().await.unwrap();
    let mut fut = task::spawn(svc.call(req()));
    assert_pending!(fut.poll(), "{name}: pending while the inner service is");
    let (_, send) = handle.next_request().await.unwrap();
    assert_pending!(fut.poll(), "{name}: still pending before the answer");
    assert!(!fut.is_woken(), "{name}: not woken before the answer");
    send.send_response(http::Response::new(bytes::Bytes::from_static(b"ok")));
    assert!(
        fut.is_woken(),
        "{name}: woken by the inner service's answer"
    );
    let resp = assert_ready_ok!(fut.poll(), "{name}: ready with the answer");
    assert_eq!(resp.body().as_ref(), b"ok", "{name}");
    assert_ready_err!(fut.poll(), "{name}: polled after completion");
    assert_ready_err!(fut.poll(), "{name}: and again");

    // The inner service fails.
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    let mut svc = layer.layer(inner);
    svc.ready().await.unwrap();
    let mut fut = task::spawn(svc.call(req()));
    assert_pending!(fut.poll(), "{name}");
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("inner failed"));
    assert!(fut.is_woken(), "{name}: woken by the inner service's error");
    assert_ready_err!(fut.poll(), "{name}: ready with the inner error");
    assert_ready_err!(fut.poll(), "{name}: polled after completion");
}

#[tokio::test(start_paused = true)]
async fn every_layer_future_keeps_the_poll_contract() {
    contract("deadline", DeadlineLayer::new(Duration::from_secs(10))).await;
    contract("timeout", TimeoutLayer::new(Duration::from_secs(10))).await;
    // One attempt: the inner error is the answer, not retried.
    contract(
        "retry",
        RetryLayer::new(HttpClassifier).policy(crate::retry::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }),
    )
    .await;
    contract(
        "sigv4",
        SigV4Layer::new(
            Credentials::from_keys("AKID", "secret", None),
            SigningConfig::new("us-east-1"),
        ),
    )
    .await;
    contract(
        "rate-limit",
        RateLimitLayer::builder()
            .global(Rate::per_second(1_000))
            .build()
            .unwrap(),
    )
    .await;
    contract(
        "circuit-breaker",
        CircuitBreakerLayer::new(FromRetry(HttpClassifier), CircuitBreakerConfig::default()),
    )
    .await;
    // The trace layer is transparent (its error is the inner service's, as tower-http's
    // is): a poll after completion goes to the inner future, which for this crate's
    // futures is the error. So it is checked over one of them.
    contract(
        "trace over timeout",
        tower::ServiceBuilder::new()
            .layer(TraceLayer::new(HttpDescribe))
            .layer(TimeoutLayer::new(Duration::from_secs(10)))
            .into_inner(),
    )
    .await;
}

/// tower's conventions: every service has `new(inner, …)`, `layer(…)` and
/// `get_ref` / `get_mut` / `into_inner`, and `new` behaves as its layer does.
#[tokio::test(start_paused = true)]
async fn every_service_follows_towers_constructor_conventions() {
    use crate::circuit_breaker::CircuitBreaker;
    use crate::keepalive::{KeepAlive, KeepAliveConnector};
    use crate::retry::Retry;
    use crate::sigv4::SigV4;
    use crate::timeout::{DeadlineService, Timeout};
    use crate::trace::Trace;

    let secs = Duration::from_secs(10);
    let (inner, _h) = mock::pair::<Req, Resp>();
    let mut s = DeadlineService::new(inner, secs);
    let _: &Mock = s.get_ref();
    let _: &mut Mock = s.get_mut();
    let _: Mock = s.into_inner();
    let _ = DeadlineService::<Mock>::layer(secs);

    let (inner, _h) = mock::pair::<Req, Resp>();
    let s = Timeout::new(inner, secs);
    let _ = (s.get_ref(), Timeout::<Mock>::layer(secs));

    let (inner, _h) = mock::pair::<Req, Resp>();
    let mut s = Retry::new(inner, HttpClassifier);
    let _ = s.get_mut();
    let _ = Retry::<Mock, _>::layer(HttpClassifier);

    let creds = Credentials::from_keys("AKID", "secret", None);
    let (inner, _h) = mock::pair::<Req, Resp>();
    let s = SigV4::new(inner, creds.clone(), SigningConfig::new("us-east-1"));
    let _: Mock = s.into_inner();
    let _ = SigV4::<Mock>::layer(creds, SigningConfig::new("us-east-1"));

    let (inner, _h) = mock::pair::<Req, Resp>();
    let config = CircuitBreakerConfig::default();
    let s = CircuitBreaker::new(inner, FromRetry(HttpClassifier), config.clone());
    let _ = s.get_ref();
    let _ = CircuitBreaker::<Mock, _, _>::layer(FromRetry(HttpClassifier), config);

    let (inner, _h) = mock::pair::<Req, Resp>();
    let s = Trace::new(inner, HttpDescribe);
    let _ = (s.get_ref(), Trace::<Mock, _>::layer(HttpDescribe));

    let k = KeepAliveConnector::new((), KeepAlive::default());
    let _: () = k.into_inner();
    let _ = KeepAliveConnector::<()>::layer(KeepAlive::default());

    // `new` is the layer: a service made with it works end to end.
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    let svc = Timeout::new(Retry::new(inner, HttpClassifier), secs);
    let call = tokio::spawn(svc.oneshot(req()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(http::Response::new(bytes::Bytes::new()));
    assert!(call.await.unwrap().is_ok());
}

/// Issue 19, item 8: an attempt is classified once. With a classifier that shares its
/// answer (`cache_key`), the rate-limit feedback (inner) classifies each attempt and the
/// retry layer and the circuit breaker (outer) reuse it; without, each classifies again.
#[tokio::test(start_paused = true)]
async fn each_attempt_is_classified_once_when_the_classifier_shares() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use crate::rate_limit::{Adaptive, RateLimitKey};
    use crate::retry::{Classification, ClassifyRetry, RetryPolicy};

    #[derive(Clone)]
    struct Counting {
        calls: Arc<AtomicU32>,
        share: bool,
    }
    impl<B, E> ClassifyRetry<http::Response<B>, E> for Counting {
        fn classify(&self, result: &Result<http::Response<B>, E>) -> Classification {
            self.calls.fetch_add(1, Ordering::SeqCst);
            HttpClassifier.classify(result)
        }
        fn cache_key(&self) -> Option<u64> {
            self.share.then_some(7)
        }
    }

    for share in [true, false] {
        let classifier = Counting {
            calls: Arc::default(),
            share,
        };
        let limiter = RateLimitLayer::builder()
            .adaptive(Adaptive::default())
            .build()
            .unwrap();
        let svc = tower::ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(
                FromRetry(classifier.clone()),
                CircuitBreakerConfig::default(),
            ))
            .layer(RetryLayer::new(classifier.clone()).policy(RetryPolicy {
                throttle_base: Duration::from_millis(1),
                ..RetryPolicy::default()
            }))
            .layer(limiter.feedback(classifier.clone()))
            .service_fn({
                let n = Arc::new(AtomicU32::new(0));
                move |_req: Req| {
                    // Throttled once, then OK.
                    let status = if n.fetch_add(1, Ordering::SeqCst) == 0 {
                        429
                    } else {
                        200
                    };
                    async move {
                        Ok::<_, std::io::Error>(
                            http::Response::builder()
                                .status(status)
                                .body(bytes::Bytes::new())
                                .unwrap(),
                        )
                    }
                }
            });
        let svc = limiter.layer(svc);
        let mut r = req();
        r.extensions_mut().insert(RateLimitKey("f".into()));
        r.extensions_mut()
            .insert(crate::circuit_breaker::CircuitKey("f".into()));
        let resp = svc.oneshot(r).await.unwrap();
        assert_eq!(resp.status(), 200);
        // Two attempts, 429 then 200. Feedback classifies each. Shared, the retry layer
        // reuses the 429's answer; a 2xx is not kept (its status line is cheaper to
        // read again than an extension is to allocate), so the retry layer and the
        // breaker classify the 200 again: 2 + 1 + 1. Not shared: 2 + 2 + 1.
        let expected = if share { 4 } else { 2 + 2 + 1 };
        assert_eq!(
            classifier.calls.load(Ordering::SeqCst),
            expected,
            "share = {share}"
        );
    }
}
