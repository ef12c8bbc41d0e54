//! The retry layer over tower-test mocks, with paused time: attempt counts and exact
//! delays for each class.

use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use super::*;
use crate::timeout::{Deadline, SendProgress};

type Req = http::Request<()>;
type Resp = http::Response<()>;

fn resp(status: u16, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

/// Jitter fixed at 0.5: the delay before retry n is 0.5 × min(2^(n-1) s, 20 s).
fn layer() -> RetryLayer<HttpClassifier> {
    RetryLayer::new(HttpClassifier).jitter(|| 0.5)
}

struct Harness {
    handle: mock::Handle<Req, Resp>,
    call:
        tokio::task::JoinHandle<Result<Resp, RetryError<Box<dyn std::error::Error + Send + Sync>>>>,
    start: Instant,
}

fn start(layer: RetryLayer<HttpClassifier>, req: Req) -> Harness {
    let (svc, handle) = mock::pair::<Req, Resp>();
    let svc = layer.layer(svc);
    Harness {
        handle,
        call: tokio::spawn(svc.oneshot(req)),
        start: Instant::now(),
    }
}

impl Harness {
    /// Answers the next attempt; returns it with the time it arrived.
    async fn answer(&mut self, r: Resp) -> (Req, Duration) {
        let (req, send) = self.handle.next_request().await.expect("an attempt");
        let at = self.start.elapsed();
        send.send_response(r);
        (req, at)
    }

    async fn fail(&mut self, sent: bool) -> Duration {
        let (req, send) = self.handle.next_request().await.expect("an attempt");
        let p = req.extensions().get::<SendProgress>().expect("progress");
        p.mark_not_sent();
        if sent {
            p.mark_sent();
        }
        let at = self.start.elapsed();
        send.send_error("connection failed");
        at
    }

    /// The operation's result. The mock goes first: an attempt the test did not expect
    /// then fails (the service is closed) instead of waiting for ever.
    async fn result(self) -> Result<Resp, RetryError<Box<dyn std::error::Error + Send + Sync>>> {
        drop(self.handle);
        self.call.await.unwrap()
    }
}

fn stats(r: &Resp) -> RetryStats {
    *r.extensions().get::<RetryStats>().unwrap()
}

#[tokio::test(start_paused = true)]
async fn throttles_back_off_exponentially_with_jitter() {
    let mut h = start(layer(), http::Request::new(()));
    assert_eq!(h.answer(resp(429, &[])).await.1, Duration::ZERO);
    assert_eq!(h.answer(resp(429, &[])).await.1, Duration::from_millis(500));
    assert_eq!(
        h.answer(resp(200, &[])).await.1,
        Duration::from_millis(1500)
    );
    let r = h.result().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        stats(&r),
        RetryStats {
            attempts: 3,
            stop: StopReason::Done,
            earlier_may_have_reached: false
        }
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_a_floor() {
    let mut h = start(layer(), http::Request::new(()));
    h.answer(resp(429, &[("retry-after", "3")])).await;
    // Told 3 s: waits 3 s, not the 0.5 s of backoff.
    assert_eq!(h.answer(resp(200, &[])).await.1, Duration::from_secs(3));
    h.result().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn too_long_retry_after_ends_the_retries() {
    let mut h = start(layer(), http::Request::new(()));
    h.answer(resp(429, &[("retry-after", "120")])).await;
    let r = h.result().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), stats(&r).stop),
        (429, StopReason::RetryAfterTooLong)
    );
}

#[tokio::test(start_paused = true)]
async fn max_attempts_then_the_last_answer() {
    let mut h = start(layer(), http::Request::new(()));
    for _ in 0..3 {
        h.answer(resp(429, &[])).await;
    }
    let r = h.result().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(stats(&r).stop, StopReason::MaxAttempts);
    assert_eq!(stats(&r).attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_call_sets_its_own_max_attempts() {
    // Fewer than the policy's: one attempt, no retry.
    let mut req = http::Request::new(());
    req.extensions_mut().insert(MaxAttempts(1));
    let mut h = start(layer(), req);
    h.answer(resp(429, &[])).await;
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (1, StopReason::MaxAttempts)
    );

    // More than the policy's 3, and the SDK header names the call's maximum.
    let mut req = http::Request::new(());
    req.extensions_mut().insert(MaxAttempts(5));
    let mut h = start(
        layer().policy(RetryPolicy {
            sdk_headers: true,
            ..RetryPolicy::default()
        }),
        req,
    );
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (req, _) = h.answer(resp(429, &[])).await;
        seen.push(
            req.headers()["amz-sdk-request"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (5, StopReason::MaxAttempts)
    );
    assert_eq!(seen[0], "attempt=1; max=5");
    assert_eq!(seen[4], "attempt=5; max=5");
}

#[tokio::test(start_paused = true)]
async fn client_faults_are_not_retried() {
    let mut h = start(layer(), http::Request::new(()));
    h.answer(resp(
        400,
        &[("x-amzn-errortype", "InvalidParameterValueException")],
    ))
    .await;
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (1, StopReason::NotRetryable)
    );
}

#[tokio::test(start_paused = true)]
async fn ambiguous_failures_need_idempotence() {
    // A 503 may have reached the target: not retried by default.
    let mut h = start(layer(), http::Request::new(()));
    h.answer(resp(503, &[])).await;
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (1, StopReason::MayHaveRun)
    );

    // Marked idempotent: retried, and the stats remember it may have run before.
    let mut req = http::Request::new(());
    req.extensions_mut().insert(Idempotent(true));
    let mut h = start(layer(), req);
    h.answer(resp(503, &[])).await;
    h.answer(resp(200, &[])).await;
    let r = h.result().await.unwrap();
    assert_eq!(
        stats(&r),
        RetryStats {
            attempts: 2,
            stop: StopReason::Done,
            earlier_may_have_reached: true
        }
    );
}

#[tokio::test(start_paused = true)]
async fn unsent_failures_are_always_retried_sent_ones_are_not() {
    let mut h = start(layer(), http::Request::new(()));
    assert_eq!(h.fail(false).await, Duration::ZERO);
    assert_eq!(h.answer(resp(200, &[])).await.1, Duration::from_millis(500));
    assert_eq!(stats(&h.result().await.unwrap()).attempts, 2);

    let mut h = start(layer(), http::Request::new(()));
    h.fail(true).await;
    let e = h.result().await.unwrap_err().stats().unwrap();
    assert_eq!(e.stop, StopReason::MayHaveRun);
    assert_eq!(e.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_is_stopped_by_the_deadline() {
    let mut req = http::Request::new(());
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(1200)));
    let no_budget = layer().policy(RetryPolicy {
        min_attempt_budget: Duration::ZERO,
        ..RetryPolicy::default()
    });
    let mut h = start(no_budget, req);
    let started = h.start;
    h.answer(resp(429, &[])).await; // at 0: backoff 0.5 s fits
    assert_eq!(h.answer(resp(429, &[])).await.1, Duration::from_millis(500)); // then 1 s does not
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (2, StopReason::Deadline)
    );
    // It gave up at once instead of sleeping into the deadline.
    assert_eq!(started.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn quota_drains_and_refills() {
    let quota = RetryQuota::new(QuotaConfig {
        capacity: 20,
        ..QuotaConfig::default()
    });
    let idempotent = || {
        let mut r = http::Request::new(());
        r.extensions_mut().insert(Idempotent(true));
        r
    };
    let l = layer().quota(quota.clone()).policy(RetryPolicy {
        max_attempts: 5,
        ..RetryPolicy::default()
    });
    // Two transient retries cost 10 each; the third finds the bucket empty.
    let mut h = start(l.clone(), idempotent());
    for _ in 0..3 {
        h.answer(resp(500, &[])).await;
    }
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (3, StopReason::QuotaExhausted)
    );
    assert_eq!(quota.available(None), 0);
    // A success at the first attempt returns 1 token; a success after a retry returns its cost.
    let mut h = start(l.clone(), idempotent());
    h.answer(resp(200, &[])).await;
    h.result().await.unwrap();
    assert_eq!(quota.available(None), 1);
    // With tokens, a throttle retry costs 5 and its success refunds the 5.
    let quota = RetryQuota::new(QuotaConfig {
        capacity: 20,
        ..QuotaConfig::default()
    });
    let mut h = start(layer().quota(quota.clone()), http::Request::new(()));
    h.answer(resp(429, &[])).await;
    let (_second, send) = h.handle.next_request().await.unwrap();
    assert_eq!(quota.available(None), 15);
    send.send_response(resp(200, &[]));
    h.result().await.unwrap();
    assert_eq!(quota.available(None), 20);
}

#[tokio::test(start_paused = true)]
async fn hinted_throttles_cost_nothing() {
    let quota = RetryQuota::new(QuotaConfig {
        capacity: 0,
        ..QuotaConfig::default()
    });
    let mut h = start(layer().quota(quota.clone()), http::Request::new(()));
    h.answer(resp(429, &[("retry-after", "1")])).await;
    h.answer(resp(200, &[])).await;
    assert_eq!(stats(&h.result().await.unwrap()).attempts, 2);
    // Without a hint the empty bucket stops the retry.
    let mut h = start(layer().quota(quota), http::Request::new(()));
    h.answer(resp(429, &[])).await;
    assert_eq!(
        stats(&h.result().await.unwrap()).stop,
        StopReason::QuotaExhausted
    );
}

#[tokio::test(start_paused = true)]
async fn partitions_have_their_own_buckets() {
    let quota = RetryQuota::partitioned(QuotaConfig {
        capacity: 5,
        ..QuotaConfig::default()
    });
    let req = |p: &str| {
        let mut r = http::Request::new(());
        r.extensions_mut().insert(RetryPartition(p.into()));
        r
    };
    for p in ["a", "b"] {
        let mut h = start(layer().quota(quota.clone()), req(p));
        h.answer(resp(429, &[])).await;
        h.answer(resp(429, &[])).await;
        let r = h.result().await.unwrap();
        assert_eq!(stats(&r).stop, StopReason::QuotaExhausted, "partition {p}");
        assert_eq!(stats(&r).attempts, 2);
    }
}

#[tokio::test(start_paused = true)]
async fn sdk_headers_identify_the_operation_and_attempt() {
    let mut h = start(layer(), http::Request::new(()));
    let (first, _) = h.answer(resp(429, &[])).await;
    let (second, _) = h.answer(resp(200, &[])).await;
    h.result().await.unwrap();
    let id = first.headers()["amz-sdk-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    assert!(id
        .bytes()
        .enumerate()
        .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) {
            c == b'-'
        } else {
            c.is_ascii_hexdigit()
        }));
    assert_eq!(second.headers()["amz-sdk-invocation-id"], id.as_str());
    assert_eq!(first.headers()["amz-sdk-request"], "attempt=1; max=3");
    assert_eq!(second.headers()["amz-sdk-request"], "attempt=2; max=3");
}

#[derive(Debug, Clone, PartialEq)]
struct Marker(&'static str);

#[tokio::test(start_paused = true)]
async fn every_attempt_gets_the_whole_request_the_last_one_too() {
    // Attempt 1 is the request itself, attempt 2 a copy of the copy that attempt 3 takes.
    let req = http::Request::builder()
        .method("POST")
        .uri("/2015-03-31/functions/f/invocations")
        .header("x-custom", "kept")
        .extension(Marker("caller"))
        .body(())
        .unwrap();
    let mut h = start(layer(), req);
    let mut seen = Vec::new();
    for status in [429, 429, 200] {
        seen.push(h.answer(resp(status, &[])).await.0);
    }
    assert_eq!(stats(&h.result().await.unwrap()).attempts, 3);
    for (n, r) in (1u32..).zip(&seen) {
        assert_eq!(r.method(), "POST");
        assert_eq!(r.uri(), "/2015-03-31/functions/f/invocations");
        assert_eq!(r.headers()["x-custom"], "kept");
        assert_eq!(r.extensions().get(), Some(&Marker("caller")));
        assert_eq!(r.extensions().get(), Some(&AttemptNumber(n)));
        assert_eq!(
            r.headers()["amz-sdk-request"],
            format!("attempt={n}; max=3").as_str()
        );
        assert_eq!(r.headers().get_all("amz-sdk-request").iter().count(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn one_attempt_sends_the_request_as_given() {
    let single = layer().policy(RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    });
    let req = http::Request::builder()
        .header("x-custom", "kept")
        .extension(Marker("caller"))
        .body(())
        .unwrap();
    let mut h = start(single, req);
    let (seen, _) = h.answer(resp(429, &[])).await;
    assert_eq!(seen.headers()["x-custom"], "kept");
    assert_eq!(seen.headers()["amz-sdk-request"], "attempt=1; max=1");
    assert_eq!(seen.extensions().get(), Some(&Marker("caller")));
    assert_eq!(seen.extensions().get(), Some(&AttemptNumber(1)));
    let r = h.result().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(stats(&r).attempts, 1);
    assert_eq!(stats(&r).stop, StopReason::MaxAttempts);
}

#[tokio::test(start_paused = true)]
async fn readiness_failure_between_attempts_ends_the_operation() {
    let mut h = start(layer(), http::Request::new(()));
    h.answer(resp(429, &[])).await;
    // The service's next `poll_ready`, after the backoff, fails.
    h.handle.send_error("pool closed");
    let err = h.call.await.unwrap().unwrap_err();
    assert_eq!(err.error().unwrap().to_string(), "pool closed");
    assert_eq!(err.stats().unwrap().attempts, 1);
    assert_eq!(err.stats().unwrap().stop, StopReason::NotRetryable);
}

/// Issue 16, items 3 and 24: every form of `Retry-After` is parsed by one parser; a huge
/// hint, however it is written, ends the retries (it used to panic: `from_secs_f64`).
#[tokio::test(start_paused = true)]
async fn huge_retry_after_in_any_form_ends_the_retries() {
    for hint in [
        "1e20",
        "864000",
        "99999999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let mut h = start(layer(), http::Request::new(()));
        h.answer(resp(429, &[("retry-after", hint)])).await;
        let r = h.result().await.unwrap();
        assert_eq!(
            (r.status().as_u16(), stats(&r).attempts, stats(&r).stop),
            (429, 1, StopReason::RetryAfterTooLong),
            "Retry-After: {hint}"
        );
    }
}

/// Issue 16, item 3: the HTTP-date form is honoured as a floor on the delay.
#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_a_floor() {
    // 50 s ahead on the wall clock, which the parser reads when the answer arrives.
    let policy = RetryPolicy {
        max_retry_after: Duration::from_secs(120),
        ..RetryPolicy::default()
    };
    let at = std::time::SystemTime::now() + Duration::from_secs(50);
    let date = httpdate::fmt_http_date(at);
    let mut h = start(layer().policy(policy), http::Request::new(()));
    h.answer(resp(429, &[("retry-after", &date)])).await;
    let waited = h.answer(resp(200, &[])).await.1;
    // Whole seconds on the wire, and however slow the machine: well over the 0.5 s
    // backoff, at most the 50 s asked for.
    assert!(
        waited > Duration::from_secs(30) && waited <= Duration::from_secs(50),
        "{waited:?}"
    );
    h.result().await.unwrap();
}

/// Issue 16, item 4: a `Retry-After` makes a retry free only for a throttle with a wait
/// above zero; `503 Retry-After: 0` drains the quota like any transient failure.
#[tokio::test(start_paused = true)]
async fn only_hinted_throttles_are_free() {
    let config = QuotaConfig {
        capacity: 10,
        ..QuotaConfig::default()
    };
    let idempotent = || {
        let mut r = http::Request::new(());
        r.extensions_mut().insert(Idempotent(true));
        r
    };
    // 503 with a hint: costs 10, so the second retry finds the bucket empty.
    let quota = RetryQuota::new(config);
    let mut h = start(layer().quota(quota.clone()), idempotent());
    h.answer(resp(503, &[("retry-after", "0")])).await;
    h.answer(resp(503, &[("retry-after", "1")])).await;
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (2, StopReason::QuotaExhausted)
    );
    assert_eq!(quota.available(None), 0);
    // A throttle with a hint under a second costs a throttle's 5.
    for hint in ["0", "0.001", "0.999"] {
        let quota = RetryQuota::new(config);
        let mut h = start(layer().quota(quota.clone()), http::Request::new(()));
        h.answer(resp(429, &[("retry-after", hint)])).await;
        let (_second, _pending) = h.handle.next_request().await.unwrap();
        assert_eq!(quota.available(None), 5, "Retry-After: {hint}");
    }
    // A throttle with a real hint costs nothing.
    let quota = RetryQuota::new(config);
    let mut h = start(layer().quota(quota.clone()), http::Request::new(()));
    h.answer(resp(429, &[("retry-after", "2")])).await;
    let (_second, _pending) = h.handle.next_request().await.unwrap();
    assert_eq!(quota.available(None), 10);
}

/// Issue 16, item 5: no retry starts without `min_attempt_budget` before the deadline.
#[tokio::test(start_paused = true)]
async fn no_retry_without_time_to_finish() {
    let mut req = http::Request::new(());
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(1200)));
    let l = layer().policy(RetryPolicy {
        min_attempt_budget: Duration::from_secs(1),
        ..RetryPolicy::default()
    });
    let mut h = start(l, req);
    // The 0.5 s backoff fits, but would leave 0.7 s: less than the 1 s an attempt needs.
    h.answer(resp(429, &[])).await;
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (1, StopReason::DeadlineTooClose)
    );
}

/// Issue 16, item 6: the operation deadline firing mid-retry reports every attempt made.
#[tokio::test(start_paused = true)]
async fn deadline_mid_retry_counts_the_attempts() {
    use crate::timeout::{DeadlineLayer, TimeoutError, Timer};
    let (svc, mut handle) = mock::pair::<Req, Resp>();
    let no_budget = layer().policy(RetryPolicy {
        min_attempt_budget: Duration::ZERO,
        ..RetryPolicy::default()
    });
    let svc = DeadlineLayer::new(Duration::from_secs(10)).layer(no_budget.layer(svc));
    let call = tokio::spawn(svc.oneshot(http::Request::new(())));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(resp(429, &[]));
    // The second attempt hangs until the deadline.
    let (_second, _pending) = handle.next_request().await.unwrap();
    match call.await.unwrap().unwrap_err() {
        TimeoutError::Elapsed(e) => {
            assert_eq!(e.timer(), Timer::Operation);
            assert_eq!(e.attempts(), Some(2));
        }
        other => panic!("{other:?}"),
    }
}

/// Issue 16, item 6: an error says how many attempts ran and why they stopped.
#[tokio::test(start_paused = true)]
async fn errors_say_attempts_and_why_they_stopped() {
    let mut h = start(layer(), http::Request::new(()));
    h.fail(false).await;
    h.fail(false).await;
    h.fail(false).await;
    let e = h.result().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "connection failed (after 3 attempts; retries stopped: all attempts were used)"
    );
}

/// Issue 16, item 26: an operation cancelled during its backoff gets its tokens back.
#[tokio::test(start_paused = true)]
async fn cancelled_backoff_refunds_the_quota() {
    let quota = RetryQuota::new(QuotaConfig {
        capacity: 50,
        ..QuotaConfig::default()
    });
    let mut h = start(layer().quota(quota.clone()), http::Request::new(()));
    h.answer(resp(429, &[])).await;
    // The retry is scheduled (a throttle costs 5) and its backoff is running.
    tokio::task::yield_now().await;
    assert_eq!(quota.available(None), 45);
    h.call.abort();
    assert!(h.call.await.unwrap_err().is_cancelled());
    assert_eq!(
        quota.available(None),
        50,
        "the retry never sent gave its tokens back"
    );
}

/// Issue 16, item 2: a poll after completion is an error, not a hang or a panic.
#[tokio::test(start_paused = true)]
async fn polled_after_completion_is_an_error() {
    let (svc, mut handle) = mock::pair::<Req, Resp>();
    let mut svc = layer().layer(svc);
    handle.allow(1);
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let mut fut = tokio_test::task::spawn(svc.call(http::Request::new(())));
    tokio_test::assert_pending!(fut.poll());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(resp(200, &[]));
    assert!(fut.is_woken());
    tokio_test::assert_ready_ok!(fut.poll());
    let again = tokio_test::assert_ready_err!(fut.poll());
    assert!(
        matches!(again, RetryError::PolledAfterCompletion(_)),
        "{again:?}"
    );
}

/// Review of issue 16: a deadline that fires while the next attempt waits (backoff or
/// readiness) counts only the attempts made.
#[tokio::test(start_paused = true)]
async fn deadline_before_the_next_attempt_counts_only_the_attempts_made() {
    use crate::timeout::{DeadlineLayer, TimeoutError};
    let (svc, mut handle) = mock::pair::<Req, Resp>();
    let no_budget = layer().policy(RetryPolicy {
        min_attempt_budget: Duration::ZERO,
        ..RetryPolicy::default()
    });
    let svc = DeadlineLayer::new(Duration::from_secs(10)).layer(no_budget.layer(svc));
    handle.allow(1);
    let call = tokio::spawn(svc.oneshot(http::Request::new(())));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(resp(429, &[]));
    // The service never gets ready again: the deadline fires before attempt 2.
    match call.await.unwrap().unwrap_err() {
        TimeoutError::Elapsed(e) => assert_eq!(e.attempts(), Some(1)),
        other => panic!("{other:?}"),
    }
}

/// Issue 19, item 7: a decision of the caller's replaces the policy's.
#[tokio::test(start_paused = true)]
async fn a_custom_decision_decides() {
    #[derive(Debug)]
    struct NeverThrottles;
    impl RetryDecision for NeverThrottles {
        fn decide(&self, f: &RetryableFailure) -> Result<(), StopReason> {
            match f.kind {
                crate::classify::RetryKind::Throttling => Err(StopReason::NotRetryable),
                _ => Ok(()),
            }
        }
    }
    let mut h = start(layer().decision(NeverThrottles), http::Request::new(()));
    h.answer(resp(429, &[])).await;
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (1, StopReason::NotRetryable)
    );
}

/// Issue 19, item 7: a budget of the caller's is withdrawn from for each retry and
/// refused retries stop with QuotaExhausted.
#[tokio::test(start_paused = true)]
async fn a_custom_budget_is_withdrawn_from_and_deposited_to() {
    use std::sync::atomic::{AtomicU32, Ordering};
    #[derive(Debug, Default)]
    struct OneRetry {
        withdrawn: AtomicU32,
        deposits: AtomicU32,
    }
    impl RetryBudget for OneRetry {
        fn withdraw(
            &self,
            _: Option<&RetryPartition>,
            _: crate::classify::RetryKind,
            _: Option<Duration>,
        ) -> Option<u32> {
            (self.withdrawn.fetch_add(1, Ordering::SeqCst) == 0).then_some(5)
        }
        fn deposit(&self, _: Option<&RetryPartition>, withdrawn: Option<u32>) {
            assert_eq!(withdrawn, Some(5), "the last retry's cost comes back");
            self.deposits.fetch_add(1, Ordering::SeqCst);
        }
    }
    let budget = std::sync::Arc::new(OneRetry::default());
    #[derive(Debug)]
    struct Shared(std::sync::Arc<OneRetry>);
    impl RetryBudget for Shared {
        fn withdraw(
            &self,
            p: Option<&RetryPartition>,
            k: crate::classify::RetryKind,
            a: Option<Duration>,
        ) -> Option<u32> {
            self.0.withdraw(p, k, a)
        }
        fn deposit(&self, p: Option<&RetryPartition>, w: Option<u32>) {
            self.0.deposit(p, w)
        }
    }
    // Throttled three times: one retry allowed, then the budget refuses.
    let mut h = start(
        layer().budget(Shared(budget.clone())),
        http::Request::new(()),
    );
    h.answer(resp(429, &[])).await;
    h.answer(resp(429, &[])).await;
    let r = h.result().await.unwrap();
    assert_eq!(
        (stats(&r).attempts, stats(&r).stop),
        (2, StopReason::QuotaExhausted)
    );
    // Throttled once more then OK under a fresh budget: the cost is deposited back.
    let budget = std::sync::Arc::new(OneRetry::default());
    let mut h = start(
        layer().budget(Shared(budget.clone())),
        http::Request::new(()),
    );
    h.answer(resp(429, &[])).await;
    h.answer(resp(200, &[])).await;
    h.result().await.unwrap();
    assert_eq!(budget.deposits.load(Ordering::SeqCst), 1);
}

/// Issue 19, item 7: a backoff of the caller's sets the wait; `Retry-After` stays a
/// lower bound.
#[tokio::test(start_paused = true)]
async fn a_custom_backoff_sets_the_wait() {
    #[derive(Debug)]
    struct Linear;
    impl Backoff for Linear {
        fn backoff(&self, _: crate::classify::RetryKind, retry: u32) -> Duration {
            Duration::from_millis(100) * retry
        }
    }
    let mut h = start(
        layer().backoff(Linear).policy(RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::default()
        }),
        http::Request::new(()),
    );
    let (_, t1) = h.answer(resp(429, &[])).await;
    let (_, t2) = h.answer(resp(429, &[])).await;
    let (_, t3) = h.answer(resp(429, &[("retry-after", "1")])).await;
    let (_, t4) = h.answer(resp(200, &[])).await;
    h.result().await.unwrap();
    assert_eq!(t2 - t1, Duration::from_millis(100));
    assert_eq!(t3 - t2, Duration::from_millis(200));
    // 300 ms computed, 1 s hinted: the hint wins.
    assert_eq!(t4 - t3, Duration::from_secs(1));
}
