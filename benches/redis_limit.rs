//! What sharing the limits through Redis costs per call, against the local limiter, on
//! loopback: the limiter around a service that answers at once, so the numbers are the
//! limiter's alone.
//!
//! For each configuration (a per-key rate, a per-key concurrency cap, both), local and
//! through a redis-server of its own (started on a free loopback port, as the tests do):
//!
//! - one caller, calls one after the other: latency p50 and p99, the client thread's CPU
//!   per call (`/proc/thread-self/schedstat`; the client runs on a current-thread
//!   runtime, the Redis connection's task included), the server's CPU per call
//!   (`/proc/PID/stat`, in clock ticks, so only meaningful over many calls) and the
//!   round trips to Redis per call (the commands the client sent: `EVALSHA`, `EVAL`,
//!   `ZREM` in `INFO commandstats`; the commands a script runs are not round trips);
//! - 64 callers at once: calls per second.
//!
//! `cargo bench --bench redis_limit` (`-- calls=N` to change the 20,000 calls per row).
//! Needs `redis-server` (`apt-get install redis-server`); says so and exits without it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use invoke_stack::layers::rate_limit::redis::RedisStore;
use invoke_stack::layers::rate_limit::store::SharedLimits;
use invoke_stack::layers::rate_limit::{Rate, RateLimitKey, RateLimitLayer};
use tower::{Layer, Service, ServiceExt};

#[path = "../examples/fleet.rs"]
#[allow(dead_code)]
mod fleet;

type Req = http::Request<()>;

fn keyed() -> Req {
    let mut r = http::Request::new(());
    r.extensions_mut().insert(RateLimitKey("orders".into()));
    r
}

fn thread_cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime
    // the 13th of those.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

#[derive(Clone, Copy)]
enum Config {
    Rate,
    Concurrency,
    Both,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Rate => "rate",
            Config::Concurrency => "concurrency cap",
            Config::Both => "rate + cap",
        }
    }

    fn layer(self, shared: Option<SharedLimits>) -> RateLimitLayer {
        let mut b = RateLimitLayer::builder();
        if matches!(self, Config::Rate | Config::Both) {
            b = b.per_key(Rate::per_second(1_000_000));
        }
        if matches!(self, Config::Concurrency | Config::Both) {
            b = b.concurrency_per_key(1_000);
        }
        if let Some(s) = shared {
            b = b.shared(s);
        }
        b.build().expect("valid limits")
    }
}

/// Commands the client sent (not those its scripts ran).
fn round_trips(server: &fleet::RedisServer) -> Option<u64> {
    let mut n = 0;
    for cmd in ["cmdstat_evalsha", "cmdstat_eval", "cmdstat_zrem"] {
        if let Ok(v) = server.info("commandstats", cmd) {
            n += v
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|c| c.parse::<u64>().ok())?;
        }
    }
    Some(n)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Row {
    p50: Duration,
    p99: Duration,
    cpu: Duration,
    server_cpu_us: Option<f64>,
    commands: Option<f64>,
    parallel: f64,
}

fn run(config: Config, server: Option<&fleet::RedisServer>, calls: usize) -> Row {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let shared = server
            .map(|s| SharedLimits::new(RedisStore::open(&s.url(), "bench").expect("a valid URL")));
        let layer = config.layer(shared);
        let svc = layer.layer(tower::service_fn(|_r: Req| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
        // Warm up (connects, loads the scripts).
        for _ in 0..200 {
            svc.clone().oneshot(keyed()).await.expect("admitted");
        }
        let cmds0 = server.and_then(round_trips);
        let ticks0 = server.and_then(|s| s.pid()).map(process_ticks);
        let cpu0 = thread_cpu();
        let mut lat = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            svc.clone().oneshot(keyed()).await.expect("admitted");
            lat.push(t.elapsed());
        }
        let cpu = (thread_cpu() - cpu0) / calls as u32;
        let server_cpu_us = match (server.and_then(|s| s.pid()), ticks0) {
            (Some(pid), Some(t0)) => {
                Some((process_ticks(pid) - t0) as f64 * 10_000.0 / calls as f64)
            }
            _ => None,
        };
        let commands = match (server.and_then(round_trips), cmds0) {
            (Some(c1), Some(c0)) => Some((c1 - c0) as f64 / calls as f64),
            _ => None,
        };
        lat.sort();

        let svc = Arc::new(svc);
        let start = Instant::now();
        let per_task = calls / 64;
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let svc = Arc::clone(&svc);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let mut s = (*svc).clone();
                        s.ready().await.expect("ready");
                        s.call(keyed()).await.expect("admitted");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("a task");
        }
        let parallel = (per_task * 64) as f64 / start.elapsed().as_secs_f64();
        Row {
            p50: percentile(&lat, 0.5),
            p99: percentile(&lat, 0.99),
            cpu,
            server_cpu_us,
            commands,
            parallel,
        }
    })
}

fn main() {
    let calls = std::env::args()
        .find_map(|a| a.strip_prefix("calls=")?.parse().ok())
        .unwrap_or(20_000usize);
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(reason) = fleet::redis_server_missing() {
        println!("redis_limit: skipped, {reason}");
        return;
    }
    let server = fleet::RedisServer::start().expect("start redis-server");
    println!("{calls} calls per row, one caller; then 64 callers at once\n");
    println!(
        "| limits | store | p50 | p99 | client CPU/call | redis CPU/call | round trips/call | calls/s, 64 callers |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for config in [Config::Rate, Config::Concurrency, Config::Both] {
        for redis in [false, true] {
            let row = run(config, redis.then_some(&server), calls);
            let opt =
                |v: Option<f64>, unit: &str| v.map_or("–".into(), |v| format!("{v:.1}{unit}"));
            println!(
                "| {} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {} | {} | {:.0} |",
                config.name(),
                if redis { "Redis" } else { "local" },
                row.p50.as_secs_f64() * 1e6,
                row.p99.as_secs_f64() * 1e6,
                row.cpu.as_secs_f64() * 1e6,
                opt(row.server_cpu_us, " µs"),
                opt(row.commands, ""),
                row.parallel
            );
        }
    }
}
