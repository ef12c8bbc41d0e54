//! End-to-end load over loopback HTTP: N calls at concurrency C (1, 16, 64) with 128 B
//! and 64 KiB payloads against a minimal fast local server, comparing:
//!
//! - `hyper`: a bare hyper client, no signing (the floor);
//! - `hyper+sigv4`: the same, signing each request with aws-sigv4 (the signed floor);
//! - `stack`: `InvokeClient` with its default (static) stack;
//! - `named`: `InvokeClient` on the named (boxed) stack.
//!
//! The client runs on one thread (a current-thread runtime); the server on another.
//! The client's tasks are spawned on that runtime, beside hyper's connection tasks. (They
//! used to run in a `LocalSet`; there the signed floor's CPU per call at 128 B, C=16 was
//! 14.4 to 16.0 µs over three runs of the same binary, spawned it is 13.9 to 14.0 µs.)
//! Reports invocations/s, p50/p99 latency, and the client thread's CPU time per call,
//! read from `/proc/thread-self/schedstat` (nanoseconds).
//!
//! Each row is the median of five rounds; the rounds interleave the clients.
//!
//! `cargo bench --bench load` (add `-- quick` for one short round; `-- only=stack` or
//! `-- only=hyper+sigv4` to run one client, `c=16` for one concurrency, `size=128` for
//! one payload size, `rounds=N`, `calls=N`, e.g. under `perf record`)

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use invoke_stack::layers::sigv4::{sign_request, Credentials, SigningConfig};
use invoke_stack::model::InvokeRequest;
use invoke_stack::InvokeClient;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// A minimal server answering like Lambda, as fast as it can (its own thread).
fn start_server() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::Builder::new().name("server".into());
    let _ = server.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .header(
                                        "x-amzn-requestid",
                                        "6f2d4c7a-9a1b-4c1e-8f00-000000000000",
                                    )
                                    .header("x-amz-executed-version", "$LATEST")
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
                                    .unwrap(),
                            )
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// The clients compared. (One of each per run: the size difference does not matter.)
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Target {
    Hyper(
        Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        bool,
    ),
    Stack(InvokeClient),
}

fn payload(size: usize) -> Bytes {
    let mut v = vec![b'a'; size];
    v[0] = b'"';
    v[size - 1] = b'"';
    Bytes::from(v)
}

async fn one_call(
    client: &Target,
    url: &str,
    addr: &str,
    body: &Bytes,
    creds: &Credentials,
    cfg: &SigningConfig,
) {
    match client {
        Target::Hyper(c, sign) => {
            let mut req = http::Request::post(url)
                .header("host", addr)
                .header("x-amz-invocation-type", "RequestResponse")
                .header("content-type", "application/octet-stream")
                .header("content-length", body.len())
                .body(body.clone())
                .unwrap();
            if *sign {
                sign_request(&mut req, creds, cfg, SystemTime::now()).unwrap();
            }
            let resp = c.request(req.map(Full::new)).await.unwrap();
            let _ = resp.into_body().collect().await.unwrap();
        }
        Target::Stack(c) => {
            let req = InvokeRequest::builder("bench")
                .payload(body.clone())
                .build()
                .unwrap();
            c.invoke(req).await.unwrap();
        }
    }
}

struct Measured {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    cpu_us: f64,
}

async fn run(
    client: Target,
    addr: std::net::SocketAddr,
    size: usize,
    concurrency: usize,
    calls: usize,
) -> Measured {
    let url = Arc::new(format!(
        "http://{addr}/2015-03-31/functions/bench/invocations"
    ));
    let host = Arc::new(addr.to_string());
    let body = payload(size);
    let creds = Credentials::from_keys("AKIDBENCH", "bench-secret", None);
    let cfg = SigningConfig::new("us-east-1");
    // Warm up: connections, pools, caches.
    for _ in 0..200 {
        one_call(&client, &url, &host, &body, &creds, &cfg).await;
    }
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, host, body, creds, cfg) = (
            client.clone(),
            Arc::clone(&url),
            Arc::clone(&host),
            body.clone(),
            creds.clone(),
            cfg.clone(),
        );
        let n = calls / concurrency;
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                one_call(&client, &url, &host, &body, &creds, &cfg).await;
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let mut lat = Vec::with_capacity(calls);
    while let Some(r) = tasks.join_next().await {
        lat.extend(r.unwrap());
    }
    let wall = start.elapsed();
    let cpu = thread_cpu_ns() - cpu0;
    lat.sort_unstable();
    let n = lat.len();
    Measured {
        per_sec: n as f64 / wall.as_secs_f64(),
        p50: lat[n / 2],
        p99: lat[(n * 99 / 100).min(n - 1)],
        cpu_us: cpu as f64 / 1e3 / n as f64,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let only: Option<String> =
        std::env::args().find_map(|a| a.strip_prefix("only=").map(String::from));
    let calls_override: Option<usize> =
        std::env::args().find_map(|a| a.strip_prefix("calls=").and_then(|c| c.parse().ok()));
    let rounds: usize = std::env::args()
        .find_map(|a| a.strip_prefix("rounds=").and_then(|c| c.parse().ok()))
        .unwrap_or(if quick { 1 } else { 5 });
    let only_c: Option<usize> =
        std::env::args().find_map(|a| a.strip_prefix("c=").and_then(|c| c.parse().ok()));
    let only_size: Option<usize> =
        std::env::args().find_map(|a| a.strip_prefix("size=").and_then(|c| c.parse().ok()));
    let addr = start_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let hyper = || Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let stack = InvokeClient::builder()
            .endpoint_url(format!("http://{addr}"))
            .credentials(Credentials::from_keys("AKIDBENCH", "bench-secret", None))
            .build()
            .unwrap();
        let named = InvokeClient::builder()
            .endpoint_url(format!("http://{addr}"))
            .credentials(Credentials::from_keys("AKIDBENCH", "bench-secret", None))
            .named_stack(|_| {})
            .build()
            .unwrap();
        println!(
            "| payload | C | client | invocations/s | p50 µs | p99 µs | CPU µs/call | CPU vs signed floor |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for size in [128usize, 64 * 1024] {
            for c in [1usize, 16, 64] {
                if only_c.is_some_and(|o| o != c) || only_size.is_some_and(|o| o != size) {
                    continue;
                }
                let calls = calls_override.unwrap_or(match (quick, size) {
                    (true, _) => 640,
                    (false, 128) => 12_800,
                    (false, _) => 3_200,
                });
                let targets: Vec<(&str, Target)> = [
                    ("hyper", Target::Hyper(hyper(), false)),
                    ("hyper+sigv4", Target::Hyper(hyper(), true)),
                    ("stack", Target::Stack(stack.clone())),
                    ("named", Target::Stack(named.clone())),
                ]
                .into_iter()
                .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
                .collect();
                // Rounds interleave the clients, so drift on the machine hits them alike;
                // each figure is the median over the rounds.
                let mut results: Vec<Vec<Measured>> = targets.iter().map(|_| Vec::new()).collect();
                for _ in 0..rounds {
                    for ((_, client), out) in targets.iter().zip(&mut results) {
                        out.push(run(client.clone(), addr, size, c, calls).await);
                    }
                }
                let median = |rs: &[Measured], f: fn(&Measured) -> f64| {
                    let mut v: Vec<f64> = rs.iter().map(f).collect();
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                };
                let floor = targets
                    .iter()
                    .position(|(n, _)| *n == "hyper+sigv4")
                    .map(|i| median(&results[i], |m| m.cpu_us));
                for ((name, _), rs) in targets.iter().zip(&results) {
                    let cpu = median(rs, |m| m.cpu_us);
                    let vs = floor.map_or(String::from("-"), |f| {
                        format!("{:+.0} %", (cpu / f - 1.0) * 100.0)
                    });
                    println!(
                        "| {} | {c} | {name} | {:.0} | {:.0} | {:.0} | {cpu:.1} | {vs} |",
                        if size == 128 { "128 B" } else { "64 KiB" },
                        median(rs, |m| m.per_sec),
                        median(rs, |m| m.p50.as_secs_f64() * 1e6),
                        median(rs, |m| m.p99.as_secs_f64() * 1e6),
                    );
                }
            }
        }
    });
}
