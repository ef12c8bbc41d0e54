//! Per-call overhead of the circuit breaker (criterion), around a service that answers
//! at once: off, closed with one key, closed with 10,000 keys in rotation (the default
//! key cap), and the refusal of an open circuit; against no breaker.
//!
//! `cargo bench --bench circuit_breaker`

use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{Layer, Service};

use invoke_stack::layers::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerLayer, CircuitKey, FromRetry,
};
use invoke_stack::layers::retry::HttpClassifier;

type Req = http::Request<()>;

fn answer(req: Req) -> std::future::Ready<Result<http::Response<()>, std::convert::Infallible>> {
    // 503 for the key that is to be broken, 200 for the others.
    let broken = req
        .extensions()
        .get::<CircuitKey>()
        .is_some_and(|k| k.0 == "broken");
    let status = if broken { 503 } else { 200 };
    std::future::ready(Ok(http::Response::builder()
        .status(status)
        .body(())
        .unwrap()))
}

/// Polls a call to completion (every path here completes at once: a no-op waker
/// suffices); returns whether it succeeded.
fn call<S>(svc: &mut S, req: Req) -> bool
where
    S: Service<Req, Response = http::Response<()>>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = std::pin::pin!(svc.call(req));
    loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            return black_box(r).is_ok();
        }
    }
}

fn keyed(key: &str) -> Req {
    let mut r = http::Request::new(());
    r.extensions_mut().insert(CircuitKey(key.to_owned()));
    r
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let breaker =
        || CircuitBreakerLayer::new(FromRetry(HttpClassifier), CircuitBreakerConfig::default());
    let mut g = c.benchmark_group("circuit_breaker");
    let mut bare = tower::service_fn(answer);
    g.bench_function("no_breaker", |b| b.iter(|| call(&mut bare, keyed("fn"))));
    let mut off =
        CircuitBreakerLayer::<FromRetry<HttpClassifier>>::off().layer(tower::service_fn(answer));
    g.bench_function("off", |b| b.iter(|| call(&mut off, keyed("fn"))));
    let mut one = breaker().layer(tower::service_fn(answer));
    g.bench_function("closed_one_key", |b| b.iter(|| call(&mut one, keyed("fn"))));
    let keys: Vec<String> = (0..10_000).map(|i| format!("fn-{i}")).collect();
    let mut many = breaker().layer(tower::service_fn(answer));
    let mut i = 0usize;
    g.bench_function("closed_10k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            call(&mut many, keyed(&keys[i]));
        })
    });
    let open = breaker();
    let mut refusing = open.layer(tower::service_fn(answer));
    for _ in 0..10 {
        call(&mut refusing, keyed("broken"));
    }
    assert!(!call(&mut refusing, keyed("broken")), "the circuit is open");
    g.bench_function("open_refusal", |b| {
        b.iter(|| call(&mut refusing, keyed("broken")))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
