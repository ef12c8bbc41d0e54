//! What the tracing layers cost: a call through the operation and attempt trace layers
//! over a service that answers at once, with no subscriber, with a subscriber that
//! filters the spans out (WARN), and with one that records them (INFO and DEBUG into a
//! sink), against no trace layer at all.
//!
//! `cargo bench --bench trace`

use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use tower::{Layer, Service};
use tracing_subscriber::layer::SubscriberExt;

use invoke_stack::layers::trace::TraceLayer;
use invoke_stack::telemetry::LambdaTrace;

fn request() -> http::Request<Bytes> {
    http::Request::post("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations?Qualifier=prod")
        .header("x-amz-invocation-type", "RequestResponse")
        .header("content-length", "16")
        .body(Bytes::from_static(b"{\"hello\":\"you\"}"))
        .unwrap()
}

type Err = invoke_stack::error::TransportError;

fn answer(_: http::Request<Bytes>) -> std::future::Ready<Result<http::Response<Bytes>, Err>> {
    std::future::ready(Ok(http::Response::builder()
        .status(200)
        .header("x-amzn-requestid", "b1a3c1e4-0000-4000-8000-000000000000")
        .header("x-amz-executed-version", "7")
        .body(Bytes::from_static(b"{\"ok\":true}"))
        .unwrap()))
}

/// Calls a service whose future is ready at once, without a runtime.
fn call<S>(svc: &mut S) -> http::Response<Bytes>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = std::pin::pin!(svc.call(request()));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => unreachable!("the test service answers at once"),
    }
}

fn bench(c: &mut Criterion) {
    let mut bare = tower::service_fn(answer);
    let traced = || {
        let attempt = TraceLayer::new(LambdaTrace::attempt()).layer(tower::service_fn(answer));
        TraceLayer::new(LambdaTrace::operation("us-east-1")).layer(attempt)
    };
    let mut g = c.benchmark_group("trace");
    g.bench_function("no_trace_layer", |b| b.iter(|| black_box(call(&mut bare))));
    let mut svc = traced();
    g.bench_function("no_subscriber", |b| b.iter(|| black_box(call(&mut svc))));
    {
        let filtered = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::WARN)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
        let _g = tracing::subscriber::set_default(filtered);
        let mut svc = traced();
        g.bench_function("filtered_out_at_warn", |b| {
            b.iter(|| black_box(call(&mut svc)))
        });
    }
    {
        let recording = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
        let _g = tracing::subscriber::set_default(recording);
        let mut svc = traced();
        g.bench_function("recorded_at_debug", |b| {
            b.iter(|| black_box(call(&mut svc)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
