//! Rate limiting over real loopback HTTP: fail fast, waits bounded by the deadline, and
//! the adaptive limit converging on a function's reserved concurrency.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use invoke_stack::error::{InvokeErrorKind, RunStatus};
use invoke_stack::layers::rate_limit::{
    Adaptive, ExtensionKey, Mode, Rate, RateLimitBuilder, RateLimitLayer,
};
use invoke_stack::testing::{LocalFunction, LocalLambda};

#[tokio::test]
async fn fail_fast_when_the_function_is_at_its_cap() {
    let _secrets = common::watch_secrets();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = Arc::clone(&gate);
    let lambda = LocalLambda::builder()
        .function(
            "held",
            LocalFunction::new(move |inv| {
                let g = Arc::clone(&g);
                async move {
                    g.notified().await;
                    Ok(inv.payload().clone())
                }
            }),
        )
        .start()
        .await
        .unwrap();
    let client = common::builder_for(&lambda)
        .rate_limit(
            RateLimitLayer::builder()
                .concurrency_per_key(1)
                .mode(Mode::FailFast),
        )
        .build()
        .unwrap();
    let first = {
        let c = client.clone();
        tokio::spawn(async move { c.invoke_json("held", &1).await })
    };
    while client.rate_limiter().in_flight("held") == 0 {
        tokio::task::yield_now().await;
    }
    let err = client.invoke_json("held", &2).await.unwrap_err();
    let InvokeErrorKind::RateLimited(r) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(r.key.as_deref(), Some("held"));
    assert_eq!((err.attempts(), err.may_have_run()), (0, RunStatus::NotRun));
    assert!(err.is_throttle());
    // Another function is not affected by this one's cap.
    gate.notify_one();
    first.await.unwrap().unwrap();
    assert_eq!(lambda.requests("held"), 1);
}

#[tokio::test]
async fn waits_never_pass_the_deadline() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .rate_limit(RateLimitLayer::builder().per_key(Rate {
            calls: 1,
            per: Duration::from_secs(60),
            burst: None,
        }))
        .operation_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client.invoke_json("echo", &1).await.unwrap();
    let err = client.invoke_json("echo", &2).await.unwrap_err();
    let InvokeErrorKind::RateLimited(r) = err.kind() else {
        panic!("{err:?}")
    };
    assert!(r.earliest.unwrap() > Duration::from_secs(50));
    assert_eq!(lambda.requests("echo"), 1);
}

/// A function's own rate covers all its versions and aliases and replaces the
/// per-function rate for it; other functions keep theirs.
#[tokio::test]
async fn a_function_rate_of_its_own() {
    let _secrets = common::watch_secrets();
    let lambda = LocalLambda::builder()
        .function(
            "echo",
            LocalFunction::echo().version("1").alias("live", "1"),
        )
        .function("other", LocalFunction::echo())
        .start()
        .await
        .unwrap();
    let once_a_minute = Rate {
        calls: 1,
        per: Duration::from_secs(60),
        burst: None,
    };
    let client = common::builder_for(&lambda)
        .rate_limit(
            RateLimitLayer::builder()
                .per_key(Rate::per_second(1000))
                .mode(Mode::FailFast),
        )
        .function(
            "echo",
            invoke_stack::client::FunctionSettings::default().rate(once_a_minute),
        )
        .build()
        .unwrap();
    client.invoke_json("echo:live", &1).await.unwrap();
    for name in ["echo", "echo:1", "echo:live"] {
        let err = client.invoke_json(name, &2).await.unwrap_err();
        let InvokeErrorKind::RateLimited(r) = err.kind() else {
            panic!("{name}: {err:?}")
        };
        assert_eq!(r.key.as_deref(), Some("echo"));
        assert!(r.earliest.unwrap() > Duration::from_secs(50), "{r:?}");
    }
    assert_eq!(lambda.requests("echo"), 1);
    for i in 0..5 {
        client.invoke_json("other", &i).await.unwrap();
    }
    assert_eq!(lambda.requests("other"), 5);
}

const N: usize = 8;
const CALLS: usize = 400;

/// Offers `CALLS` calls at concurrency 64 to a function with a reserved concurrency of
/// `N` that takes 20 ms; returns (successes, throttles, the endpoint, the client).
async fn load(
    config: RateLimitBuilder<ExtensionKey>,
) -> (usize, u64, LocalLambda, invoke_stack::InvokeClient) {
    let lambda = LocalLambda::builder()
        .function(
            "work",
            LocalFunction::new(|inv| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<Bytes, _>(inv.payload().clone())
            }),
        )
        .start()
        .await
        .unwrap();
    lambda.reserved_concurrency("work", Some(N));
    // The default backoff (base 1 s): the tests' millisecond backoff would let a call
    // admitted above the limit spend its attempts before the others finish.
    let client = common::builder_for(&lambda)
        .retry_policy(invoke_stack::layers::retry::RetryPolicy::default())
        .rate_limit(config)
        .max_attempts(5)
        .build()
        .unwrap();
    let offered = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let client = client.clone();
        let offered = Arc::clone(&offered);
        tasks.spawn(async move {
            let _p = offered.acquire_owned().await.unwrap();
            client.invoke_json("work", &i).await
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap().is_ok() {
            ok += 1;
        }
    }
    let throttles = lambda.concurrency_throttles("work");
    (ok, throttles, lambda, client)
}

/// The adaptive limit settles near the reserved concurrency, every call succeeds, and
/// throttles are a fraction of those of the same load without a limiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_limit_converges_on_reserved_concurrency() {
    let adaptive = RateLimitLayer::builder().adaptive(Adaptive {
        initial: 2.0,
        ..Adaptive::default()
    });
    let (ok, throttles, lambda, client) = load(adaptive).await;
    let limit = client.rate_limiter().adaptive_limit("work").unwrap();
    let (base_ok, base_throttles, _, _) = load(RateLimitLayer::builder()).await;
    eprintln!(
        "adaptive: ok {ok}/{CALLS}, throttles {throttles}, final limit {limit:.2}, peak {}; no limiter: ok {base_ok}/{CALLS}, throttles {base_throttles}",
        lambda.peak_concurrency("work")
    );
    assert_eq!(ok, CALLS);
    assert!(throttles < (CALLS / 5) as u64, "{throttles} throttles");
    assert!(
        throttles * 4 < base_throttles,
        "{throttles} vs {base_throttles} without a limiter"
    );
    assert!(
        (N as f64 / 2.0..=N as f64 * 1.5).contains(&limit),
        "limit {limit}"
    );
    assert!(
        lambda.peak_concurrency("work") >= N / 2,
        "the limiter used the capacity"
    );
}

/// A function rate of 0 is a build error of the client, not a function without a limit.
#[test]
fn a_function_rate_of_zero_is_a_build_error() {
    let err = invoke_stack::InvokeClient::builder()
        .endpoint_url("http://127.0.0.1:9")
        .function(
            "payments",
            invoke_stack::client::FunctionSettings::default().rate(Rate::per_second(0)),
        )
        .build()
        .unwrap_err();
    assert!(
        matches!(err, invoke_stack::client::BuildError::RateLimit(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("payments"), "{err}");
}

/// Retries take cells of the rate like first attempts: a throttled call's retry, refused
/// by a rate of one call a minute, is not sent (it used to go: the rate counted only
/// operations).
#[tokio::test]
async fn a_retry_counts_against_the_function_rate() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    lambda.each_operation(
        "echo",
        1,
        invoke_stack::testing::Fault::throttle(None, None),
    );
    let client = common::builder_for(&lambda)
        .rate_limit(
            RateLimitLayer::builder()
                .per_key(Rate {
                    calls: 1,
                    per: Duration::from_secs(60),
                    burst: None,
                })
                .mode(Mode::FailFast),
        )
        .build()
        .unwrap();
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    let InvokeErrorKind::RateLimited(r) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(r.key.as_deref(), Some("echo"));
    assert_eq!(lambda.requests("echo"), 1);
}
