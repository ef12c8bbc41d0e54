//! Signing cost per request by payload size, and what hashing once per operation saves
//! on a three-attempt call.
//!
//! `cargo bench --bench sigv4`

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use invoke_stack::layers::sigv4::{
    sha256_hex, sign_request, sign_request_with_hash, Credentials, PayloadHash, SigningConfig,
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
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
