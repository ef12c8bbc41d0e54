//! Adaptive convergence: 600 calls offered at concurrency 64 to a function with reserved
//! concurrency N (4, 8, 16) that takes 20 ms, over loopback HTTP against the local
//! endpoint; with the adaptive limiter and without one. Reports throughput (calls/s),
//! its ratio to the function's capacity (N / 20 ms), the throttles Lambda answered,
//! successes and the final limit.
//!
//! `cargo bench --bench adaptive`

use std::sync::Arc;
use std::time::{Duration, Instant};

use invoke_stack::layers::rate_limit::{Adaptive, ExtensionKey, RateLimitBuilder, RateLimitLayer};
use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::InvokeClient;

const CALLS: usize = 600;
const RUN: Duration = Duration::from_millis(20);

async fn run(n: usize, config: RateLimitBuilder<ExtensionKey>, label: &str) {
    let lambda = LocalLambda::builder()
        .function(
            "work",
            LocalFunction::new(|inv| async move {
                tokio::time::sleep(RUN).await;
                Ok(inv.payload().clone())
            }),
        )
        .start()
        .await
        .expect("endpoint");
    lambda.reserved_concurrency("work", Some(n));
    let client = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .rate_limit(config)
        .max_attempts(5)
        .build()
        .expect("client");
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

#[tokio::main]
async fn main() {
    for n in [4, 8, 16] {
        let adaptive = RateLimitLayer::builder().adaptive(Adaptive {
            initial: 2.0,
            ..Adaptive::default()
        });
        run(n, adaptive, "adaptive").await;
        run(n, RateLimitLayer::builder(), "no limiter").await;
    }
}
