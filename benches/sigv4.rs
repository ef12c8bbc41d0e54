//! Signing cost per request by payload size, what hashing once per operation saves
//! on a three-attempt call, and signing throughput through the credentials cache when
//! the credentials are close to expiry.
//!
//! `cargo bench --bench sigv4`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tower::{Service, ServiceExt};

use invoke_stack::layers::sigv4::{
    sha256_hex, sign_request, sign_request_with_hash, Credentials, CredentialsCache,
    CredentialsFuture, PayloadHash, ProvideCredentials, SigV4Layer, SigningConfig,
};

const SIZES: &[(&str, usize)] = &[
    ("128B", 128),
    ("64KiB", 64 * 1024),
    ("1MiB", 1024 * 1024),
    ("6MiB", 6 * 1024 * 1024 - 1),
];

fn request(body: &Bytes) -> http::Request<Bytes> {
    http::Request::post(
        "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations",
    )
    .header("host", "lambda.us-east-1.amazonaws.com")
    .header("x-amz-invocation-type", "RequestResponse")
    .header("content-type", "application/octet-stream")
    .header("content-length", body.len())
    .body(body.clone())
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let creds = Credentials::from_keys(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
    );
    let config = SigningConfig::new("us-east-1");
    let at = UNIX_EPOCH + Duration::from_secs(1_767_225_600);

    let mut g = c.benchmark_group("sign");
    for &(name, size) in SIZES {
        let body = Bytes::from(vec![b'a'; size]);
        g.throughput(Throughput::Bytes(size as u64));
        if size > 1024 * 1024 {
            g.sample_size(20);
        }
        // One signature, hashing the body.
        g.bench_with_input(BenchmarkId::new("hash_and_sign", name), &body, |b, body| {
            b.iter(|| {
                let mut req = request(body);
                sign_request(&mut req, &creds, &config, at).unwrap();
                black_box(req);
            });
        });
        // The hash alone, with the crate we sign with (sha2, CPU SHA extensions when
        // present) and with ring for comparison.
        g.bench_with_input(BenchmarkId::new("sha256_sha2", name), &body, |b, body| {
            b.iter(|| black_box(sha256_hex(body)));
        });
        g.bench_with_input(BenchmarkId::new("sha256_ring", name), &body, |b, body| {
            b.iter(|| black_box(ring::digest::digest(&ring::digest::SHA256, body)));
        });
        // Three attempts of one operation: hashing every time vs once (PayloadHash).
        g.bench_with_input(
            BenchmarkId::new("three_attempts_rehash", name),
            &body,
            |b, body| {
                b.iter(|| {
                    for _ in 0..3 {
                        let mut req = request(body);
                        sign_request(&mut req, &creds, &config, at).unwrap();
                        black_box(req);
                    }
                });
            },
        );
        g.bench_with_input(
            BenchmarkId::new("three_attempts_hash_once", name),
            &body,
            |b, body| {
                b.iter(|| {
                    let cell = PayloadHash::new();
                    for _ in 0..3 {
                        let mut req = request(body);
                        req.extensions_mut().insert(cell.clone());
                        sign_request(&mut req, &creds, &config, at).unwrap();
                        black_box(req);
                    }
                });
            },
        );
    }
    g.finish();

    // The signing work that does not depend on the payload.
    let body = Bytes::from_static(b"{}");
    let hash = sha256_hex(&body);
    c.bench_function("sign/precomputed_hash", |b| {
        b.iter(|| {
            let mut req = request(&body);
            sign_request_with_hash(&mut req, &creds, &config, at, hash.clone()).unwrap();
            black_box(req);
        });
    });
    // The same signature from aws-sigv4's `sign` with its default settings, no code of
    // ours: the floor the fast path is measured against.
    let identity = aws_smithy_runtime_api::client::identity::Identity::from(creds.clone());
    c.bench_function("sign/precomputed_hash_aws_sigv4", |b| {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        b.iter(|| {
            let mut req = request(&body);
            let params = aws_sigv4::sign::v4::SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("lambda")
                .time(at)
                .settings(SigningSettings::default())
                .build()
                .unwrap()
                .into();
            let uri = req.uri().to_string();
            let signable = SignableRequest::new(
                req.method().as_str(),
                &uri,
                req.headers()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.to_str().unwrap())),
                SignableBody::Precomputed(hash.clone()),
            )
            .unwrap();
            let (instructions, _) = sign(signable, &params).unwrap().into_parts();
            instructions.apply_to_request_http1x(&mut req);
            black_box(req);
        });
    });
}

/// A provider that takes 2 ms (an IMDS or STS round trip on a good day) and hands out
/// credentials valid for `lifetime` from now, or without an expiry.
#[derive(Debug)]
struct SlowProvider {
    lifetime: Option<Duration>,
}

impl ProvideCredentials for SlowProvider {
    fn provide_credentials(&self) -> CredentialsFuture {
        let lifetime = self.lifetime;
        CredentialsFuture::new(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                lifetime.map(|l| SystemTime::now() + l),
                "bench",
            ))
        })
    }
}

/// Signing calls per second through `SigV4Layer` + `CredentialsCache`, 64 callers at
/// once on a multi-thread runtime, the inner service answering at once.
fn bench_cache(c: &mut Criterion) {
    const CALLERS: u64 = 64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap();
    let body = Bytes::from_static(b"{}");
    let mut g = c.benchmark_group("cache_64_callers");
    g.throughput(Throughput::Elements(1));
    for (name, lifetime) in [
        ("no_expiry", None),
        ("expires_in_2min", Some(Duration::from_secs(120))),
    ] {
        let cache = CredentialsCache::new(SlowProvider { lifetime });
        let layer = SigV4Layer::new(cache, SigningConfig::new("us-east-1"));
        let svc = tower::ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(|_req: http::Request<Bytes>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Bytes::new()))
            }));
        // Fill the cache before measuring.
        let mut first = svc.clone();
        rt.block_on(async {
            let svc = first.ready().await.unwrap();
            svc.call(request(&body)).await.unwrap();
        });
        let svc = Arc::new(svc);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per_caller = iters.div_ceil(CALLERS);
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..CALLERS)
                        .map(|_| {
                            let svc = Arc::clone(&svc);
                            let body = body.clone();
                            tokio::spawn(async move {
                                for _ in 0..per_caller {
                                    let resp = (*svc).clone().oneshot(request(&body)).await;
                                    black_box(resp.unwrap());
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    // Per iteration: `per_caller * CALLERS` calls were made for `iters`.
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per_caller * CALLERS) as f64)
                })
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench, bench_cache
}
criterion_main!(benches);
