//! Per-call overhead of the rate limiter (criterion): one key, and 100,000 keys in
//! rotation (it should not grow), against no limiter.
//!
//! `cargo bench --bench rate_limit`

use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{Layer, Service};

use invoke_stack::layers::rate_limit::{Mode, Rate, RateLimitKey, RateLimitLayer};

type Req = http::Request<()>;

fn answer(_: Req) -> std::future::Ready<Result<http::Response<()>, std::convert::Infallible>> {
    std::future::ready(Ok(http::Response::new(())))
}

/// Polls a call to completion; the limited paths complete without waiting here
/// (generous limits), so a no-op waker suffices.
fn call<S>(svc: &mut S, req: Req)
where
    S: Service<Req, Response = http::Response<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = std::pin::pin!(svc.call(req));
    loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            black_box(r.unwrap());
            return;
        }
    }
}

fn keyed(key: &str) -> Req {
    let mut r = http::Request::new(());
    r.extensions_mut().insert(RateLimitKey(key.to_owned()));
    r
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let limiter = || {
        RateLimitLayer::builder()
            .global(Rate::per_second(1_000_000_000))
            .per_key(Rate::per_second(1_000_000_000))
            .concurrency_per_key(1_000)
            .mode(Mode::FailFast)
            .build()
            .expect("valid limits")
    };
    let mut g = c.benchmark_group("rate_limit");
    let mut bare = tower::service_fn(answer);
    g.bench_function("no_limiter", |b| b.iter(|| call(&mut bare, keyed("fn"))));
    let mut off = RateLimitLayer::builder()
        .build()
        .expect("no limits")
        .layer(tower::service_fn(answer));
    g.bench_function("configured_off", |b| b.iter(|| call(&mut off, keyed("fn"))));
    let mut one = limiter().layer(tower::service_fn(answer));
    g.bench_function("one_key", |b| b.iter(|| call(&mut one, keyed("fn"))));
    let keys: Vec<String> = (0..100_000).map(|i| format!("fn-{i}")).collect();
    let mut many = limiter().layer(tower::service_fn(answer));
    let mut i = 0usize;
    g.bench_function("100k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            call(&mut many, keyed(&keys[i]));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
