//! End-to-end load over loopback HTTP, measured the way a user calls Lambda: N calls at
//! concurrency C (1, 16, 64) with 128 B and 64 KiB payloads against a Lambda-like server
//! that echoes the payload (so 64 KiB goes both ways). The clients compared:
//!
//! - `floor`: **the independent floor**, no code of ours: a hyper request built by hand
//!   per call, signed with `aws-sigv4`'s `sign` and `SigningSettings::default()`, sent
//!   through hyper-util's client, the response body collected;
//! - `stack`: `InvokeClient` with its default (static) stack, called as a user calls it:
//!   `InvokeRequest::builder(..).payload(..).build()` per call, `invoke`, the payload read;
//! - `named`: the same on the named (boxed) stack;
//! - `floor+timeout`: the floor with each call under `tokio::time::timeout`: what arming a
//!   timer per call costs any tokio client (the runtime then parks with a timeout, so the
//!   kernel arms and cancels a timer at every wait). The stack arms one per attempt;
//! - `hyper`: the floor's client without signing (what signing costs);
//! - `hyper+sigv4`: the floor's client signing through this crate's `sign_request` (the
//!   "signed floor" of earlier measurements, kept for comparison).
//!
//! Every measurement runs in its own client process, so peak RSS (`VmHWM`) compares
//! process to process. The server is another process. Where `taskset` exists and the
//! machine has two CPUs or more, the client is pinned to CPU 0 and the server to CPU 1.
//! Peak RSS counts the executable's pages the process touched (file-backed, shared, and
//! more of them for a client with more code); "anon RSS" is its heap and stacks alone
//! (`RssAnon` at the end of the run).
//! CPU per call is the client process's CPU time (user + system, every thread, from
//! `/proc/self/task/*/schedstat`, in nanoseconds) over the timed calls, divided by the
//! calls; the warm-up (connections, pools, caches) is not counted. "user µs/call" is the
//! user-space part (the share of `utime` in `/proc/self/stat`, in 10 ms ticks; "-" when a
//! run lasts under 50 ticks). Rounds
//! interleave the clients, every other round in reverse order, so drift on the machine
//! hits them alike; each figure is the
//! median of the rounds, except "CPU vs floor": the median of the round-by-round ratios
//! (each client against the floor of the same round), with the middle half of those
//! ratios as its spread.
//!
//! `cargo bench --bench load` runs every cell, five rounds (about 9 minutes). Options after `--`:
//! `quick` (one short round), `rounds=N`, `calls=N`, `only=stack,floor` (clients),
//! `c=16` (one concurrency), `size=128` (one payload size), `rt=multi` (the client on a
//! multi-thread runtime instead of a current-thread one), `nopin`. To profile one client
//! alone: `target/release/deps/load-* client=stack size=128 c=16 calls=20000
//! addr=HOST:PORT` against a server started with `target/release/deps/load-* serve`.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use invoke_stack::config::Env;
use invoke_stack::layers::sigv4::{sign_request, Credentials, SigningConfig};
use invoke_stack::model::InvokeRequest;
use invoke_stack::InvokeClient;

const CLIENTS: [&str; 6] = [
    "floor",
    "stack",
    "named",
    "floor+timeout",
    "hyper",
    "hyper+sigv4",
];
const FUNCTION: &str = "bench";
const ACCESS_KEY: &str = "AKIDBENCH";
const SECRET_KEY: &str = "bench-secret";
const REGION: &str = "us-east-1";

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::args().find_map(|a| {
        a.strip_prefix(name)
            .and_then(|v| v.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    })
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// The CPU time of this process's living threads so far, user + system, in
/// nanoseconds. (A thread that exits during the timed calls would take its time with it:
/// the default current-thread client has one thread; with `rt=multi`, tokio's workers
/// live as long as the runtime, and nothing here starts blocking-pool threads.)
fn process_cpu_ns() -> u64 {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task (Linux)");
    tasks
        .filter_map(Result::ok)
        .map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| {
                    s.split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .expect("a thread's schedstat (CONFIG_SCHED_INFO)")
        })
        .sum()
}

/// This process's user and system CPU time, in clock ticks (`/proc/self/stat`).
fn process_user_sys_ticks() -> (u64, u64) {
    let stat = std::fs::read("/proc/self/stat").expect("/proc/self/stat (Linux)");
    // The fields after the command name, which is in parentheses and may hold anything.
    let after_name = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|i| stat.get(i + 1..))
        .expect("a stat line");
    let text = String::from_utf8_lossy(after_name);
    let field = |i: usize| -> u64 {
        text.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .expect("a number in /proc/self/stat")
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (field(11), field(12))
}

/// A field of `/proc/self/status` in KiB (0 when missing).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// This process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

// ---------------------------------------------------------------------------------------
// The server: echoes the payload with Lambda's headers, as fast as it can.

fn serve() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("address"));
        let _ = std::io::stdout().flush();
        // The server exits when its parent closes stdin.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let body = match req.into_body().collect().await {
                            Ok(b) => b.to_bytes(),
                            Err(_) => Bytes::new(),
                        };
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("x-amzn-requestid", "6f2d4c7a-9a1b-4c1e-8f00-000000000000")
                                .header("x-amz-executed-version", "$LATEST")
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .expect("response"),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

// ---------------------------------------------------------------------------------------
// The clients.

#[derive(Clone)]
enum Target {
    /// Hand-built request; `aws-sigv4` with default settings.
    Floor(Client<HttpConnector, Full<Bytes>>),
    /// The floor, each call under `tokio::time::timeout` (a timer armed per call).
    FloorTimeout(Client<HttpConnector, Full<Bytes>>),
    /// Hand-built request; no signing.
    Hyper(Client<HttpConnector, Full<Bytes>>),
    /// Hand-built request; this crate's `sign_request`.
    HyperOurSigner(Client<HttpConnector, Full<Bytes>>),
    Stack(InvokeClient),
}

struct Shared {
    url: String,
    host: String,
    body: Bytes,
    identity: aws_smithy_runtime_api::client::identity::Identity,
    ours: Credentials,
    ours_cfg: SigningConfig,
}

fn payload(size: usize) -> Bytes {
    let mut v = vec![b'a'; size];
    v[0] = b'"';
    v[size - 1] = b'"';
    Bytes::from(v)
}

fn hand_built(shared: &Shared) -> http::Request<Bytes> {
    http::Request::post(shared.url.as_str())
        .header("host", shared.host.as_str())
        .header("x-amz-invocation-type", "RequestResponse")
        .header("content-type", "application/octet-stream")
        .header("content-length", shared.body.len())
        .body(shared.body.clone())
        .expect("request")
}

/// The independent floor's signing: `aws-sigv4`'s own API, default settings.
fn sign_with_aws_sigv4(req: &mut http::Request<Bytes>, shared: &Shared) {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let params = v4::SigningParams::builder()
        .identity(&shared.identity)
        .region(REGION)
        .name("lambda")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let uri = req.uri().to_string();
    let signable = SignableRequest::new(
        req.method().as_str(),
        &uri,
        req.headers()
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().expect("ascii header"))),
        SignableBody::Bytes(req.body()),
    )
    .expect("signable");
    let (instructions, _signature) = sign(signable, &params).expect("sign").into_parts();
    instructions.apply_to_request_http1x(req);
}

async fn one_call(client: &Target, shared: &Shared) -> usize {
    let hyper_call = |c: &Client<HttpConnector, Full<Bytes>>, req: http::Request<Bytes>| {
        let c = c.clone();
        async move {
            let resp = c.request(req.map(Full::new)).await.expect("response");
            assert!(resp.status().is_success(), "status {}", resp.status());
            resp.into_body().collect().await.expect("body").to_bytes()
        }
    };
    match client {
        Target::Floor(c) => {
            let mut req = hand_built(shared);
            sign_with_aws_sigv4(&mut req, shared);
            hyper_call(c, req).await.len()
        }
        Target::FloorTimeout(c) => {
            let mut req = hand_built(shared);
            sign_with_aws_sigv4(&mut req, shared);
            tokio::time::timeout(std::time::Duration::from_secs(900), hyper_call(c, req))
                .await
                .expect("in time")
                .len()
        }
        Target::Hyper(c) => hyper_call(c, hand_built(shared)).await.len(),
        Target::HyperOurSigner(c) => {
            let mut req = hand_built(shared);
            sign_request(&mut req, &shared.ours, &shared.ours_cfg, SystemTime::now())
                .expect("sign");
            hyper_call(c, req).await.len()
        }
        Target::Stack(c) => {
            let req = InvokeRequest::builder(FUNCTION)
                .payload(shared.body.clone())
                .build()
                .expect("valid request");
            let out = c.invoke(req).await.expect("invoke");
            out.payload().len()
        }
    }
}

/// One measurement, in this (client) process: prints one `RESULT` line.
fn client_main(name: &str, addr: &str, size: usize, concurrency: usize, calls: usize) {
    let multi = arg::<String>("rt").as_deref() == Some("multi");
    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    let name = name.to_string();
    let addr = addr.to_string();
    rt.block_on(async move {
        // TCP_NODELAY, as the stack's transport sets it.
        let hyper = || {
            let mut tcp = HttpConnector::new();
            tcp.set_nodelay(true);
            Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(tcp)
        };
        let stack = |named: bool| {
            // Nothing from this machine's environment (proxies, profile, max attempts):
            // the floor reads none of it either.
            let b = InvokeClient::builder()
                .env(Env::from_pairs(std::iter::empty::<(&str, &str)>()))
                .endpoint_url(format!("http://{addr}"))
                .region(REGION)
                .credentials(Credentials::from_keys(ACCESS_KEY, SECRET_KEY, None));
            let b = if named { b.named_stack(|_| {}) } else { b };
            b.build().expect("client")
        };
        let client = match name.as_str() {
            "floor" => Target::Floor(hyper()),
            "floor+timeout" => Target::FloorTimeout(hyper()),
            "hyper" => Target::Hyper(hyper()),
            "hyper+sigv4" => Target::HyperOurSigner(hyper()),
            "stack" => Target::Stack(stack(false)),
            "named" => Target::Stack(stack(true)),
            other => panic!("unknown client {other}"),
        };
        let identity =
            aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "bench")
                .into();
        let shared = Arc::new(Shared {
            url: format!("http://{addr}/2015-03-31/functions/{FUNCTION}/invocations"),
            host: addr.clone(),
            body: payload(size),
            identity,
            ours: Credentials::from_keys(ACCESS_KEY, SECRET_KEY, None),
            ours_cfg: SigningConfig::new(REGION),
        });
        // Warm up: connections (as many as the concurrency), pools, caches.
        let mut warm = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (client, shared) = (client.clone(), Arc::clone(&shared));
            warm.spawn(async move {
                for _ in 0..20 {
                    assert_eq!(one_call(&client, &shared).await, size);
                }
            });
        }
        while let Some(r) = warm.join_next().await {
            r.expect("warm-up");
        }
        let cpu0 = process_cpu_ns();
        let ticks0 = process_user_sys_ticks();
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (client, shared) = (client.clone(), Arc::clone(&shared));
            let n = calls / concurrency;
            tasks.spawn(async move {
                let mut lat = Vec::with_capacity(n);
                for _ in 0..n {
                    let t = Instant::now();
                    let got = one_call(&client, &shared).await;
                    lat.push(t.elapsed());
                    assert_eq!(got, size, "the echo came back whole");
                }
                lat
            });
        }
        let mut lat = Vec::with_capacity(calls);
        while let Some(r) = tasks.join_next().await {
            lat.extend(r.expect("calls"));
        }
        let wall = start.elapsed();
        let cpu = process_cpu_ns().saturating_sub(cpu0);
        let ticks1 = process_user_sys_ticks();
        let (user, sys) = (
            ticks1.0.saturating_sub(ticks0.0),
            ticks1.1.saturating_sub(ticks0.1),
        );
        // The user-space share of the CPU time. Ticks are coarse (10 ms at 100 Hz): under
        // 50 of them the share is not worth printing (NaN prints as "-").
        let user_share = if user + sys >= 50 {
            user as f64 / (user + sys) as f64
        } else {
            f64::NAN
        };
        lat.sort_unstable();
        let n = lat.len();
        println!(
            "RESULT {} {} {} {} {} {} {}",
            n as f64 / wall.as_secs_f64(),
            lat[n / 2].as_secs_f64() * 1e6,
            lat[(n * 99 / 100).min(n - 1)].as_secs_f64() * 1e6,
            cpu as f64 / 1e3 / n as f64,
            peak_rss_kib(),
            user_share,
            // Heap and stacks, without the executable's pages (which `VmHWM` counts).
            status_kib("RssAnon:"),
        );
    });
}

// ---------------------------------------------------------------------------------------
// The coordinator: the server process, one client process per measurement, the table.

struct Measured {
    per_sec: f64,
    p50: f64,
    p99: f64,
    cpu_us: f64,
    rss_kib: f64,
    user_share: f64,
    anon_kib: f64,
}

fn pinned(cpu: usize) -> Command {
    let pin = !flag("nopin")
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let exe = std::env::current_exe().expect("the bench's own path");
    if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

fn measure(name: &str, addr: &str, size: usize, c: usize, calls: usize) -> Measured {
    let mut cmd = pinned(0);
    cmd.arg(format!("client={name}"))
        .arg(format!("addr={addr}"))
        .arg(format!("size={size}"))
        .arg(format!("c={c}"))
        .arg(format!("calls={calls}"));
    if let Some(rt) = arg::<String>("rt") {
        cmd.arg(format!("rt={rt}"));
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .expect("client process");
    assert!(out.status.success(), "client {name} failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("client {name} printed no result: {text}"));
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    Measured {
        per_sec: v[0],
        p50: v[1],
        p99: v[2],
        cpu_us: v[3],
        rss_kib: v[4],
        user_share: v[5],
        anon_kib: v[6],
    }
}

/// The `p` quantile of sorted values, interpolating between the two nearest (so the
/// median of an even count is the mean of the middle two).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let at = (sorted.len() - 1) as f64 * p;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

fn main() {
    if flag("serve") {
        return serve();
    }
    let size_arg: Option<usize> = arg("size");
    let c_arg: Option<usize> = arg("c");
    if let Some(name) = arg::<String>("client") {
        let addr: String = arg("addr").expect("addr=HOST:PORT");
        let size = size_arg.unwrap_or(128);
        let c = c_arg.unwrap_or(16);
        let calls = arg("calls").unwrap_or(20_000);
        assert!(calls >= c, "calls={calls} must be at least c={c}");
        return client_main(&name, &addr, size, c, calls);
    }

    let quick = flag("quick");
    let rounds: usize = arg("rounds").unwrap_or(if quick { 1 } else { 5 });
    assert!(rounds >= 1, "rounds must be at least 1");
    let only: Option<String> = arg("only");
    let clients: Vec<&str> = CLIENTS
        .into_iter()
        .filter(|c| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x == *c))
        })
        .collect();

    let mut server = pinned(1)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server process");
    let mut addr = String::new();
    BufReader::new(server.stdout.take().expect("server stdout"))
        .read_line(&mut addr)
        .expect("server address");
    let addr = addr.trim().to_string();

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!(
        "machine: {cpu}, {} CPUs; {rounds} rounds; client runtime: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        arg::<String>("rt").unwrap_or_else(|| "current_thread".into())
    );
    println!(
        "| payload | C | client | invocations/s | p50 µs | p99 µs | CPU µs/call | user µs/call | CPU vs floor | (spread) | p99 vs floor | peak RSS MiB | RSS vs floor | anon RSS MiB | anon vs floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for size in [128usize, 64 * 1024] {
        for c in [1usize, 16, 64] {
            if c_arg.is_some_and(|o| o != c) || size_arg.is_some_and(|o| o != size) {
                continue;
            }
            let calls = arg("calls").unwrap_or(match (quick, size) {
                (true, 128) => 4_000,
                (true, _) => 1_000,
                (false, 128) => 20_000,
                (false, _) => 5_000,
            });
            let mut results: Vec<Vec<Measured>> = clients.iter().map(|_| Vec::new()).collect();
            // Every other round runs the clients in reverse, so a drift of the machine
            // within a round favours no client's position.
            for round in 0..rounds {
                let mut order: Vec<usize> = (0..clients.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for i in order {
                    results[i].push(measure(clients[i], &addr, size, c, calls));
                }
            }
            let median = |rs: &[Measured], f: fn(&Measured) -> f64| {
                let mut v: Vec<f64> = rs.iter().map(f).collect();
                v.sort_by(f64::total_cmp);
                quantile(&v, 0.5)
            };
            let floor = clients
                .iter()
                .position(|n| *n == "floor")
                .map(|i| &results[i]);
            let ratio = |rs: &[Measured], f: fn(&Measured) -> f64| {
                floor.map_or(String::from("-"), |fl| {
                    format!("{:.2}", median(rs, f) / median(fl, f))
                })
            };
            // CPU against the floor, round by round: each round measures the clients
            // back to back, so the machine's drift between rounds cancels. The median of
            // those ratios, and the middle half of them as the spread.
            let paired_cpu = |rs: &[Measured]| -> (String, String) {
                let Some(fl) = floor else {
                    return ("-".into(), "-".into());
                };
                let mut v: Vec<f64> = rs
                    .iter()
                    .zip(fl)
                    .map(|(m, f)| m.cpu_us / f.cpu_us)
                    .collect();
                v.sort_by(f64::total_cmp);
                (
                    format!("{:.2}", quantile(&v, 0.5)),
                    format!("{:.2}–{:.2}", quantile(&v, 0.25), quantile(&v, 0.75)),
                )
            };
            // NaN shares (too few ticks) are left out; none left prints "-".
            let user_us = |rs: &[Measured]| -> String {
                let mut v: Vec<f64> = rs
                    .iter()
                    .map(|m| m.cpu_us * m.user_share)
                    .filter(|u| u.is_finite())
                    .collect();
                v.sort_by(f64::total_cmp);
                if v.is_empty() {
                    "-".into()
                } else {
                    format!("{:.1}", quantile(&v, 0.5))
                }
            };
            for (name, rs) in clients.iter().zip(&results) {
                let (cpu_ratio, spread) = paired_cpu(rs);
                println!(
                    "| {} | {c} | {name} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} | {} | {} | {:.1} | {} | {:.2} | {} |",
                    if size == 128 { "128 B" } else { "64 KiB" },
                    median(rs, |m| m.per_sec),
                    median(rs, |m| m.p50),
                    median(rs, |m| m.p99),
                    median(rs, |m| m.cpu_us),
                    user_us(rs),
                    cpu_ratio,
                    spread,
                    ratio(rs, |m| m.p99),
                    median(rs, |m| m.rss_kib) / 1024.0,
                    ratio(rs, |m| m.rss_kib),
                    median(rs, |m| m.anon_kib) / 1024.0,
                    ratio(rs, |m| m.anon_kib),
                );
            }
        }
    }
    drop(server.stdin.take());
    let _ = server.wait();
}
