//! Metrics through the `metrics` facade (feature `metrics`), read back from
//! metrics-util's debugging recorder, over real loopback HTTP.
#![cfg(feature = "metrics")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use invoke_stack::error::ThrottleReason;
use invoke_stack::testing::{Fault, FunctionFailure, LocalFunction, LocalLambda};
use invoke_stack::{CallOptions, InvokeRequest};

/// `name{label=value,...}` → value, for every metric recorded.
fn read(snapshotter: &Snapshotter) -> BTreeMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

fn counter(m: &BTreeMap<String, DebugValue>, key: &str) -> u64 {
    match m.get(key) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{key} is not a counter: {other:?}"),
    }
}

fn gauge(m: &BTreeMap<String, DebugValue>, key: &str) -> f64 {
    match m.get(key) {
        Some(DebugValue::Gauge(g)) => g.into_inner(),
        other => panic!("{key} is not a gauge: {other:?}"),
    }
}

fn samples(m: &BTreeMap<String, DebugValue>, key: &str) -> usize {
    match m.get(key) {
        Some(DebugValue::Histogram(h)) => h.len(),
        other => panic!("{key} is not a histogram: {other:?}"),
    }
}

// The recorder is this thread's: the runtime must poll the calls on it.
#[tokio::test(flavor = "current_thread")]
async fn calls_attempts_retries_and_in_flight_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let lambda = LocalLambda::builder()
        .function("echo", LocalFunction::echo())
        .function(
            "crashes",
            LocalFunction::new(|_| async { Err(FunctionFailure::handled("Oops", "no")) }),
        )
        .function(
            "hang",
            LocalFunction::new(|_| std::future::pending::<Result<bytes::Bytes, _>>()),
        )
        .start()
        .await
        .unwrap();
    let client = common::client_for(&lambda);

    // Throttled once, then it runs: two attempts, one retry, one call.
    lambda.script(
        "echo",
        [Fault::throttle(
            Some(ThrottleReason::FunctionInvocationRateLimitExceeded),
            Some(Duration::ZERO),
        )],
    );
    client.invoke_json("echo", &1).await.unwrap();
    client.invoke_json("echo", &2).await.unwrap();
    client.invoke_json("crashes", &3).await.unwrap();
    let req = InvokeRequest::builder("hang")
        .options(CallOptions::new().timeout(Duration::from_millis(50)))
        .build()
        .unwrap();
    client.invoke(req).await.unwrap_err();
    // A call dropped by its caller before it ended.
    let req = InvokeRequest::builder("hang").build().unwrap();
    let dropped = tokio::time::timeout(Duration::from_millis(50), client.invoke(req)).await;
    assert!(dropped.is_err());

    let m = read(&snapshotter);
    assert_eq!(
        counter(&m, "invoke_calls_total{function=echo,outcome=ok}"),
        2
    );
    assert_eq!(
        counter(
            &m,
            "invoke_calls_total{function=crashes,outcome=function_error}"
        ),
        1
    );
    assert_eq!(
        counter(&m, "invoke_calls_total{function=hang,outcome=timeout}"),
        1
    );
    assert_eq!(
        counter(&m, "invoke_calls_total{function=hang,outcome=cancelled}"),
        1
    );
    assert_eq!(
        samples(&m, "invoke_call_duration_seconds{function=echo}"),
        2
    );
    // Nothing is left in flight.
    for f in ["echo", "crashes", "hang"] {
        assert_eq!(
            gauge(&m, &format!("invoke_calls_in_flight{{function={f}}}")),
            0.0
        );
    }
    // The retry layer's attempts and retries, by function.
    assert_eq!(
        counter(&m, "invoke_attempts_total{function=echo,outcome=throttled}"),
        1
    );
    assert_eq!(
        counter(&m, "invoke_attempts_total{function=echo,outcome=final}"),
        2
    );
    assert_eq!(
        counter(&m, "invoke_retries_total{function=echo,reason=throttle}"),
        1
    );
    assert_eq!(samples(&m, "invoke_backoff_seconds{function=echo}"), 1);
    assert_eq!(
        samples(&m, "invoke_attempt_duration_seconds{function=echo}"),
        3
    );
}

/// The rate limiter's waits and refusals, and the adaptive limit, by function.
#[tokio::test(flavor = "current_thread")]
async fn rate_limit_waits_refusals_and_the_adaptive_limit_are_recorded() {
    use invoke_stack::layers::rate_limit::{Adaptive, Mode, Rate, RateLimitLayer};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (lambda, _) = common::echo_endpoint().await;

    // A rate of 1/s that fails fast: the second call at once is refused.
    let fail_fast = common::builder_for(&lambda)
        .rate_limit(
            RateLimitLayer::builder()
                .per_key(Rate::per_second(1))
                .mode(Mode::FailFast),
        )
        .build()
        .unwrap();
    fail_fast.invoke_json("echo", &1).await.unwrap();
    fail_fast.invoke_json("echo", &2).await.unwrap_err();
    // A rate of 1/s with a 10 ms maximum wait: the second call would wait about a
    // second, so it is refused at once, without waiting.
    let short_wait = common::builder_for(&lambda)
        .rate_limit(
            RateLimitLayer::builder()
                .per_key(Rate::per_second(1))
                .max_wait(std::time::Duration::from_millis(10)),
        )
        .build()
        .unwrap();
    short_wait.invoke_json("echo", &1).await.unwrap();
    short_wait.invoke_json("echo", &2).await.unwrap_err();
    // Waiting for a cell (20/s with a burst of 1: the second call waits about 50 ms) and
    // adaptive limits.
    let waiting = common::builder_for(&lambda)
        .rate_limit(
            RateLimitLayer::builder()
                .per_key(Rate {
                    burst: Some(1),
                    ..Rate::per_second(20)
                })
                .adaptive(Adaptive::default()),
        )
        .build()
        .unwrap();
    waiting.invoke_json("echo", &3).await.unwrap();
    waiting.invoke_json("echo", &4).await.unwrap();

    let m = read(&snapshotter);
    assert_eq!(
        counter(&m, "invoke_rate_limit_refusals_total{function=echo}"),
        2
    );
    assert_eq!(
        counter(&m, "invoke_calls_total{function=echo,outcome=rate_limited}"),
        2
    );
    // Only the last call waited: the refusal (fail fast) and the calls that went
    // through at once are not waits (review of issue 21: a refusal counted as one).
    assert_eq!(
        counter(&m, "invoke_rate_limit_waits_total{function=echo}"),
        1
    );
    assert_eq!(
        samples(&m, "invoke_rate_limit_wait_seconds{function=echo}"),
        1
    );
    assert!(gauge(&m, "invoke_adaptive_limit{function=echo}") >= 4.0);
}

/// A failed `Event` handed to the dead-letter sink is counted.
#[tokio::test(flavor = "current_thread")]
async fn dead_letters_are_counted() {
    use invoke_stack::dead_letter::{DeadLetter, DeadLetterSink, SinkFuture};
    use invoke_stack::model::InvocationType;

    #[derive(Debug)]
    struct Keep;
    impl DeadLetterSink for Keep {
        fn send(&self, _letter: DeadLetter) -> SinkFuture {
            Box::pin(async { Ok(()) })
        }
    }

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (lambda, _) = common::echo_endpoint().await;
    lambda.always("echo", Some(Fault::service_exception()));
    let client = common::builder_for(&lambda)
        .dead_letter_sink(Keep)
        .build()
        .unwrap();
    let req = InvokeRequest::builder("echo")
        .invocation_type(InvocationType::Event)
        .build()
        .unwrap();
    let err = client.invoke(req).await.unwrap_err();
    assert!(err.dead_lettered());
    let m = read(&snapshotter);
    assert_eq!(
        counter(
            &m,
            "invoke_dead_letters_total{function=echo,outcome=stored}"
        ),
        1
    );
}
