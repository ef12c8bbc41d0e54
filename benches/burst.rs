//! The throttle burst: 300 calls at concurrency 20 to a function that throttles every
//! call twice with `Retry-After: 1`, each call with a 30 s deadline, over real loopback
//! HTTP against the local endpoint.
//!
//! `cargo bench --bench burst`
//!
//! Two runs: the default retry quota, where retries the server scheduled with
//! `Retry-After` cost nothing; and the AWS SDKs' quota, where every throttle retry costs
//! 5 of 500 tokens. Prints the success ratio and the total time of each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use invoke_stack::error::ThrottleReason;
use invoke_stack::layers::retry::QuotaConfig;
use invoke_stack::testing::{Fault, LocalFunction, LocalLambda};
use invoke_stack::InvokeClient;

const CALLS: usize = 300;
const CONCURRENCY: usize = 20;

async fn run(label: &str, quota: QuotaConfig) {
    let lambda = LocalLambda::builder()
        .function("busy", LocalFunction::echo())
        .start()
        .await
        .expect("endpoint");
    lambda.each_operation(
        "busy",
        2,
        Fault::throttle(
            Some(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
            Some(Duration::from_secs(1)),
        ),
    );
    let client = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .operation_timeout(Duration::from_secs(30))
        .retry_quota(quota)
        .build()
        .expect("client");
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let client = client.clone();
        let slots = Arc::clone(&slots);
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore");
            client
                .invoke_json("busy", &serde_json::json!({ "i": i }))
                .await
        });
    }
    let mut ok = 0usize;
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => *errors.entry(e.type_name().to_owned()).or_default() += 1,
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{label}: {ok}/{CALLS} succeeded ({:.1} %) in {:.1} s; requests {}, function runs {}; failures {errors:?}",
        100.0 * ok as f64 / CALLS as f64,
        elapsed.as_secs_f64(),
        lambda.requests("busy"),
        lambda.invocations("busy"),
    );
}

#[tokio::main]
async fn main() {
    println!("burst: {CALLS} calls, concurrency {CONCURRENCY}, each throttled twice with Retry-After: 1, deadline 30 s");
    run(
        "invoke-stack default quota (server-scheduled retries free)",
        QuotaConfig::default(),
    )
    .await;
    run(
        "AWS SDK quota (every throttle retry costs 5 of 500)",
        QuotaConfig {
            hinted_cost: 5,
            ..QuotaConfig::default()
        },
    )
    .await;
}
