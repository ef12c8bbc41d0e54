//! The adaptive limiter over loopback HTTP against the local endpoint, in two parts.
//!
//! - `throughput`: 600 calls offered at concurrency 64 to a function with reserved
//!   concurrency N (4, 8, 16) that takes 20 ms; with the adaptive limiter and without
//!   one. Reports throughput (calls/s), its ratio to the function's capacity
//!   (N / 20 ms), the throttles Lambda answered, successes and the final limit.
//! - `convergence`: the default adaptive limiter on a function with a reserved
//!   concurrency of 64 and of 512 that takes 200 ms, offered twice that many callers
//!   calling in a loop. Reports how long the limit takes to reach 90 % of the reserved
//!   concurrency and how long Lambda takes to run that many calls at once (both polled
//!   every 5 ms; a run gives up after 180 s), the throttles until then, and the limit
//!   one second later.
//!
//! `cargo bench --bench adaptive` (both), `cargo bench --bench adaptive -- convergence`
//! (one part).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use invoke_stack::layers::rate_limit::{Adaptive, ExtensionKey, RateLimitBuilder, RateLimitLayer};
use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::InvokeClient;

const CALLS: usize = 600;
const RUN: Duration = Duration::from_millis(20);

async fn endpoint(n: usize, run: Duration) -> LocalLambda {
    let lambda = LocalLambda::builder()
        .function(
            "work",
            LocalFunction::new(move |inv| async move {
                tokio::time::sleep(run).await;
                Ok(inv.payload().clone())
            }),
        )
        .start()
        .await
        .expect("endpoint");
    lambda.reserved_concurrency("work", Some(n));
    lambda
}

fn client(lambda: &LocalLambda, config: RateLimitBuilder<ExtensionKey>) -> InvokeClient {
    InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .rate_limit(config)
        .max_attempts(5)
        .build()
        .expect("client")
}

async fn run(n: usize, config: RateLimitBuilder<ExtensionKey>, label: &str) {
    let lambda = endpoint(n, RUN).await;
    let client = client(&lambda, config);
    let offered = Arc::new(tokio::sync::Semaphore::new(64));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let (client, offered) = (client.clone(), Arc::clone(&offered));
        tasks.spawn(async move {
            let _slot = offered.acquire_owned().await.expect("semaphore");
            client.invoke_json("work", &i).await.is_ok()
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        ok += usize::from(r.expect("task"));
    }
    let secs = start.elapsed().as_secs_f64();
    let capacity = n as f64 / RUN.as_secs_f64();
    println!(
        "N={n:>2} {label:<11} {:>7.1} calls/s ({:>5.1} % of capacity {capacity:.0}/s), {ok}/{CALLS} ok, {} throttles, final limit {}",
        ok as f64 / secs,
        100.0 * ok as f64 / secs / capacity,
        lambda.concurrency_throttles("work"),
        client
            .rate_limiter()
            .adaptive_limit("work")
            .map_or_else(|| "-".to_owned(), |l| format!("{l:.1}")),
    );
}

const CONVERGENCE_RUN: Duration = Duration::from_millis(200);
const GIVE_UP: Duration = Duration::from_secs(180);

async fn convergence(n: usize) {
    let lambda = endpoint(n, CONVERGENCE_RUN).await;
    let client = client(
        &lambda,
        RateLimitLayer::builder().adaptive(Adaptive::default()),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2 * n {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client.invoke_json("work", &i).await;
            }
        });
    }
    let target = 0.9 * n as f64;
    let start = Instant::now();
    let (mut limit_at, mut lambda_at, mut throttles) = (None, None, 0);
    while (limit_at.is_none() || lambda_at.is_none()) && start.elapsed() < GIVE_UP {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let limit = client.rate_limiter().adaptive_limit("work").unwrap_or(0.0);
        if limit_at.is_none() && limit >= target {
            limit_at = Some(start.elapsed());
            throttles = lambda.concurrency_throttles("work");
        }
        if lambda_at.is_none() && lambda.peak_concurrency("work") as f64 >= target {
            lambda_at = Some(start.elapsed());
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = client.rate_limiter().adaptive_limit("work").unwrap_or(0.0);
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let secs = |t: Option<Duration>| {
        t.map_or_else(|| "> 180".to_owned(), |t| format!("{:.2}", t.as_secs_f64()))
    };
    println!(
        "reserved {n:>3}: limit at 90 % after {} s, Lambda at 90 % after {} s, {throttles} throttles until then, limit 1 s later {later:.1}",
        secs(limit_at),
        secs(lambda_at),
    );
}

#[tokio::main]
async fn main() {
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    if wants("throughput") {
        for n in [4, 8, 16] {
            let adaptive = RateLimitLayer::builder().adaptive(Adaptive {
                initial: 2.0,
                ..Adaptive::default()
            });
            run(n, adaptive, "adaptive").await;
            run(n, RateLimitLayer::builder(), "no limiter").await;
        }
    }
    if wants("convergence") {
        for n in [64, 512] {
            convergence(n).await;
        }
    }
}
