//! Per-call overhead of the rate limiter (criterion): one key, and 100,000 keys in
//! rotation (it should not grow), against no limiter; and the floor of a key map at one
//! and at 100,000 keys (a std `HashMap` lookup, `Arc` clone and atomic write per call),
//! which shows what the cache misses of a large map cost any lookup.
//!
//! `cargo bench --bench rate_limit` (`-- 100k` for the rows with 100,000 keys only).
//!
//! Under callgrind, one row a given number of times (`calls=N row=one_key`, `100k_keys`,
//! `floor_map_one_key`, `floor_map_100k_keys`): instructions and simulated cache misses,
//! which a loaded machine does not change. The cost of one call is the difference
//! between two call counts divided by the difference in calls:
//!
//! ```text
//! cargo bench --bench rate_limit --no-run
//! B=$(ls -t target/release/deps/rate_limit-* | grep -v '\.d$' | head -1)
//! valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file=/dev/null $B calls=100000 row=100k_keys
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, Criterion};
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
    // The floor: what a map with 100,000 keys costs any lookup. The same request per call
    // (key string, extension), then a lookup in a std `HashMap` with the same hasher as
    // the limiter's (std's `RandomState`), an `Arc` clone and an atomic add on the
    // entry, as the limiter takes a key's state and its rate cell.
    let floor_map = |n: usize| -> HashMap<Arc<str>, Arc<AtomicU64>> {
        (0..n)
            .map(|i| (Arc::from(format!("fn-{i}")), Arc::new(AtomicU64::new(0))))
            .collect()
    };
    let one_map = floor_map(1);
    let one_key = String::from("fn-0");
    g.bench_function("floor_map_one_key", |b| {
        b.iter(|| black_box(map_touch(&one_map, keyed(&one_key))))
    });
    let many_map = floor_map(keys.len());
    let mut j = 0usize;
    g.bench_function("floor_map_100k_keys", |b| {
        b.iter(|| {
            j = (j + 1) % keys.len();
            black_box(map_touch(&many_map, keyed(&keys[j])))
        })
    });
    g.finish();
}

/// The floor's call: the key from the request, its entry, a reference to it, a write.
fn map_touch(map: &HashMap<Arc<str>, Arc<AtomicU64>>, req: Req) -> u64 {
    let key = req.extensions().get::<RateLimitKey>().map(|k| k.0.clone());
    let entry = key.and_then(|k| map.get(k.as_str()).cloned());
    entry.map_or(0, |e| e.fetch_add(1, Ordering::Relaxed))
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}

/// `calls=N row=ROW`: runs one row N times without criterion, for callgrind (which
/// counts instructions and simulated cache misses whatever the machine's load; the
/// difference between two call counts divided by the difference in calls is one call).
fn counted(calls: usize, row: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let limiter = RateLimitLayer::builder()
        .global(Rate::per_second(1_000_000_000))
        .per_key(Rate::per_second(1_000_000_000))
        .concurrency_per_key(1_000)
        .mode(Mode::FailFast)
        .build()
        .expect("valid limits");
    let n_keys = if row.ends_with("100k_keys") {
        100_000
    } else {
        1
    };
    let keys: Vec<String> = (0..n_keys).map(|i| format!("fn-{i}")).collect();
    // Every key once first: the counted calls find their state made, as in criterion's
    // warm-up.
    let warm = n_keys;
    match row {
        "one_key" | "100k_keys" => {
            let mut svc = limiter.layer(tower::service_fn(answer));
            for i in 0..warm + calls {
                call(&mut svc, keyed(&keys[i % n_keys]));
            }
        }
        "floor_map_one_key" | "floor_map_100k_keys" => {
            let map: HashMap<Arc<str>, Arc<AtomicU64>> = keys
                .iter()
                .map(|k| (Arc::from(k.as_str()), Arc::new(AtomicU64::new(0))))
                .collect();
            for i in 0..warm + calls {
                black_box(map_touch(&map, keyed(&keys[i % n_keys])));
            }
        }
        _ => panic!("row: one_key, 100k_keys, floor_map_one_key, floor_map_100k_keys"),
    }
}

fn main() {
    let arg = |name: &str| std::env::args().find_map(|a| a.strip_prefix(name).map(str::to_owned));
    if let (Some(calls), Some(row)) = (arg("calls="), arg("row=")) {
        counted(calls.parse().expect("calls=N"), &row);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
