//! What each layer of the stack costs: the named stack over a transport that answers at
//! once (no network), complete and with one slot removed at a time. The difference to
//! "complete" is that slot's cost per call (CPU time; criterion). `with_circuit_breaker`
//! adds the (closed) circuit breaker, which is off by default.
//!
//! `cargo bench --bench layers`

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};

use invoke_stack::error::InvokeError;
use invoke_stack::layers::sigv4::Credentials;
use invoke_stack::model::InvokeRequest;
use invoke_stack::stack::BoxService;
use invoke_stack::InvokeClient;

fn instant_transport() -> BoxService {
    BoxService::new(tower::service_fn(|_req: http::Request<Bytes>| {
        std::future::ready(Ok::<_, InvokeError>(
            http::Response::builder()
                .header("x-amzn-requestid", "6f2d4c7a-9a1b-4c1e-8f00-000000000000")
                .header("x-amz-executed-version", "$LATEST")
                .body(Bytes::from_static(b"{\"ok\":true}"))
                .unwrap(),
        ))
    }))
}

fn client(remove: &'static [&'static str]) -> InvokeClient {
    builder(remove).build().unwrap()
}

fn builder(remove: &'static [&'static str]) -> invoke_stack::InvokeClientBuilder {
    InvokeClient::builder()
        .endpoint_url("http://127.0.0.1:9")
        .credentials(Credentials::from_keys("AKIDBENCH", "bench-secret", None))
        .inner_service(instant_transport())
        .named_stack(move |stack| {
            for name in remove {
                stack.remove(name).expect("slot");
            }
        })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let payload = Bytes::from(vec![b'1'; 128]);
    let mut g = c.benchmark_group("layers");
    let variants: &[(&str, &'static [&'static str])] = &[
        ("complete", &[]),
        ("without_trace", &["trace", "attempt-trace"]),
        ("without_deadline", &["deadline"]),
        ("without_rate_limit", &["rate-limit", "rate-limit-feedback"]),
        ("without_retry", &["retry"]),
        ("without_attempt_timeout", &["attempt-timeout"]),
        ("without_sign", &["sign"]),
        (
            "no_layers",
            &[
                "trace",
                "deadline",
                "rate-limit",
                "retry",
                "attempt-trace",
                "rate-limit-feedback",
                "attempt-timeout",
                "sign",
            ],
        ),
    ];
    // The complete stack plus the circuit breaker, closed (its own slot).
    let with_breaker = builder(&[])
        .circuit_breaker(invoke_stack::layers::circuit_breaker::CircuitBreakerConfig::default())
        .build()
        .unwrap();
    let clients = variants
        .iter()
        .map(|(name, remove)| (*name, client(remove)))
        .chain([("with_circuit_breaker", with_breaker)]);
    for (name, client) in clients {
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let req = InvokeRequest::builder("bench")
                        .payload(payload.clone())
                        .build()
                        .unwrap();
                    client.invoke(req).await.unwrap()
                })
            })
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
