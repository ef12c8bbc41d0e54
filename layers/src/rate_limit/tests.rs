//! The rate limiter with paused time: quotas over random arrivals, waits bounded by the
//! deadline, concurrency slots released on drop, bounded memory, adaptive feedback.

use std::future::Future;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use super::limits::MAINTENANCE_EVERY;
use super::*;
use crate::retry::HttpClassifier;
use crate::timeout::Deadline;

type Req = http::Request<()>;
type Resp = http::Response<()>;

fn req(key: &str) -> Req {
    let mut r = http::Request::new(());
    r.extensions_mut().insert(RateLimitKey(key.to_owned()));
    r
}

fn ok_service() -> impl Service<
    Req,
    Response = Resp,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<Resp, std::convert::Infallible>>,
> + Clone
       + Send
       + 'static {
    tower::service_fn(|_r: Req| std::future::ready(Ok(http::Response::new(()))))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Over any window, admitted calls never exceed the quota: between two admitted
    /// calls `dt` apart, at most `burst + dt / interval` calls were admitted (GCRA).
    #[test]
    fn admitted_calls_never_exceed_the_quota(
        gaps_ms in proptest::collection::vec(0u64..400, 1..200),
        calls in 1u32..10,
        burst in 1u32..5,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let admitted: Vec<Duration> = rt.block_on(async {
            let rate = Rate { calls, per: Duration::from_secs(1), burst: Some(burst) };
            let layer = RateLimitLayer::builder().per_key(rate).mode(Mode::FailFast).build().unwrap();
            let mut svc = layer.layer(ok_service());
            let start = Instant::now();
            let mut admitted = Vec::new();
            for gap in gaps_ms {
                tokio::time::sleep(Duration::from_millis(gap)).await;
                let r = svc.ready().await.unwrap().call(req("k")).await;
                if r.is_ok() {
                    admitted.push(start.elapsed());
                } else if let Err(RateLimitError::Limited(l)) = r {
                    assert!(l.earliest.is_some_and(|e| e > Duration::ZERO));
                }
            }
            admitted
        });
        let interval = Duration::from_secs(1).as_nanos() / u128::from(calls);
        for i in 0..admitted.len() {
            for j in i..admitted.len() {
                let dt = (admitted[j] - admitted[i]).as_nanos();
                let allowed = u128::from(burst) + dt / interval;
                prop_assert!((j - i + 1) as u128 <= allowed, "{} calls in {dt} ns", j - i + 1);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn waits_exactly_for_the_next_cell() {
    let rate = Rate {
        calls: 2,
        per: Duration::from_secs(1),
        burst: Some(1),
    };
    let layer = RateLimitLayer::builder()
        .per_key(rate)
        .mode(Mode::Wait {
            jitter: Duration::ZERO,
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..3 {
        svc.ready().await.unwrap().call(req("k")).await.unwrap();
        at.push(start.elapsed());
    }
    assert_eq!(
        at,
        [
            Duration::ZERO,
            Duration::from_millis(500),
            Duration::from_secs(1)
        ]
    );
    // Another key has its own quota.
    svc.ready().await.unwrap().call(req("other")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

/// A key with a rate of its own follows it; other keys keep the per-key rate, and a key
/// rate works without any per-key rate.
#[tokio::test(start_paused = true)]
async fn a_key_rate_replaces_the_per_key_rate_for_that_key() {
    let every = |ms: u64| Rate {
        calls: 1,
        per: Duration::from_millis(ms),
        burst: None,
    };
    let layer = RateLimitLayer::builder()
        .per_key(every(100))
        .key_rate("slow", every(1000))
        .key_rate("slow", every(500)) // replaces the first
        .mode(Mode::Wait {
            jitter: Duration::ZERO,
        })
        .build()
        .unwrap();
    assert!(layer.is_keyed());
    let mut svc = layer.layer(ok_service());
    let start = Instant::now();
    let times = |key: &'static str, n: usize| {
        let mut svc = svc.clone();
        async move {
            let mut at = Vec::new();
            for _ in 0..n {
                svc.ready().await.unwrap().call(req(key)).await.unwrap();
                at.push(start.elapsed().as_millis());
            }
            at
        }
    };
    assert_eq!(times("slow", 3).await, [0, 500, 1000]);
    assert_eq!(times("fast", 3).await, [1000, 1100, 1200]);

    // Only the overridden key is limited when there is no per-key rate.
    let layer = RateLimitLayer::builder()
        .key_rate("slow", every(500))
        .mode(Mode::FailFast)
        .build()
        .unwrap();
    svc = layer.layer(ok_service());
    for _ in 0..10 {
        svc.ready().await.unwrap().call(req("free")).await.unwrap();
    }
    svc.ready().await.unwrap().call(req("slow")).await.unwrap();
    let Err(RateLimitError::Limited(l)) = svc.ready().await.unwrap().call(req("slow")).await else {
        panic!("the second call within 500 ms must be refused");
    };
    assert_eq!(l.earliest, Some(Duration::from_millis(500)));
}

#[tokio::test(start_paused = true)]
async fn never_waits_past_the_deadline() {
    let layer = RateLimitLayer::builder()
        .global(Rate {
            calls: 1,
            per: Duration::from_secs(1),
            burst: None,
        })
        .mode(Mode::Wait {
            jitter: Duration::ZERO,
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    svc.ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    let mut r = http::Request::new(());
    r.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(300)));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(r).await.unwrap_err();
    let RateLimitError::Limited(l) = err else {
        panic!("not a refusal: {err:?}")
    };
    assert_eq!(
        (l.limit, l.earliest),
        (LimitKind::Rate, Some(Duration::from_secs(1)))
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "refused at once, not after a doomed sleep"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrency_slots_are_released_on_response_and_on_cancel() {
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    let layer = RateLimitLayer::builder()
        .concurrency_per_key(1)
        .build()
        .unwrap();
    let svc = layer.layer(mock);

    let first = tokio::spawn(svc.clone().oneshot(req("f")));
    let (_r1, send1) = handle.next_request().await.unwrap();
    assert_eq!(layer.in_flight("f"), 1);
    // The second waits for the slot.
    let second = tokio::spawn(svc.clone().oneshot(req("f")));
    tokio::task::yield_now().await;
    assert_eq!(layer.in_flight("f"), 1);
    // Fail-fast callers are refused while the slot is taken.
    let ff = RateLimitLayer::builder()
        .concurrency_per_key(1)
        .mode(Mode::FailFast)
        .build()
        .unwrap();
    let (mock2, mut handle2) = mock::pair::<Req, Resp>();
    let ff_svc = ff.layer(mock2);
    let held = tokio::spawn(ff_svc.clone().oneshot(req("f")));
    let _held_req = handle2.next_request().await.unwrap();
    let err = ff_svc.clone().oneshot(req("f")).await.unwrap_err();
    assert!(matches!(
        err,
        RateLimitError::Limited(RateLimited {
            limit: LimitKind::Concurrency,
            ..
        })
    ));
    // Cancelling the holder releases its slot.
    held.abort();
    let _ = held.await;
    assert_eq!(ff.in_flight("f"), 0);

    // The first response frees the slot for the second.
    send1.send_response(http::Response::new(()));
    first.await.unwrap().unwrap();
    let (_r2, send2) = handle.next_request().await.unwrap();
    send2.send_response(http::Response::new(()));
    second.await.unwrap().unwrap();
    assert_eq!(layer.in_flight("f"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_ready_service_that_is_dropped_holds_nothing() {
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    handle.allow(0);
    let layer = RateLimitLayer::builder()
        .concurrency_per_key(1)
        .build()
        .unwrap();
    let mut svc = tower_test::mock::Spawn::new(layer.layer(mock));
    // Back-pressure of the inner service is forwarded.
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    drop(svc);
    assert_eq!(layer.in_flight("f"), 0);
}

#[tokio::test(start_paused = true)]
async fn memory_stays_bounded_with_100_000_keys() {
    let layer = RateLimitLayer::builder()
        .per_key(Rate::per_second(5))
        .concurrency_per_key(2)
        .mode(Mode::FailFast)
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    for i in 0..100_000 {
        svc.ready()
            .await
            .unwrap()
            .call(req(&format!("fn-{i}")))
            .await
            .unwrap();
    }
    assert!(layer.tracked_keys() <= 100_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    layer.maintain();
    assert_eq!(layer.tracked_keys(), 0);
    assert_eq!(layer.in_flight("fn-1"), 0);
}

#[tokio::test(start_paused = true)]
async fn adaptive_limit_falls_once_per_round_and_climbs_back() {
    let layer = RateLimitLayer::builder()
        .adaptive(Adaptive {
            initial: 10.0,
            ..Adaptive::default()
        })
        .build()
        .unwrap();
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    let svc = layer.layer(layer.feedback(HttpClassifier).layer(mock));
    // Four calls admitted in the same round are throttled: one cut, not four.
    let calls: Vec<_> = (0..4)
        .map(|_| tokio::spawn(svc.clone().oneshot(req("f"))))
        .collect();
    for _ in 0..4 {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(http::Response::builder().status(429).body(()).unwrap());
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(layer.adaptive_limit("f"), Some(7.0));
    // Successes raise it by 1/limit each, while the window is in use (in flight at
    // least half the limit)...
    let calls: Vec<_> = (0..7)
        .map(|_| tokio::spawn(svc.clone().oneshot(req("f"))))
        .collect();
    let mut pending = Vec::new();
    for _ in 0..7 {
        pending.push(handle.next_request().await.unwrap().1);
    }
    for send in pending {
        send.send_response(http::Response::new(()));
        tokio::task::yield_now().await;
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let grown = layer.adaptive_limit("f").unwrap();
    // 7, 6, 5 and 4 in flight >= limit / 2: four increases of about 1/7.
    assert!(grown > 7.5 && grown < 7.6, "{grown}");
    // ...and not while it is not: one call at a time leaves it alone.
    for _ in 0..5 {
        let call = tokio::spawn(svc.clone().oneshot(req("f")));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(http::Response::new(()));
        call.await.unwrap().unwrap();
    }
    assert_eq!(layer.adaptive_limit("f"), Some(grown));
}

/// Issue 16, item 21: maintenance that runs between a slot's release and the woken
/// waiter's return must strand no other waiter on that key. (It used to drop the key's
/// state, with its wake-up list, as soon as nothing was in flight: the third caller was
/// never woken.)
#[tokio::test(start_paused = true)]
async fn maintenance_between_release_and_wakeup_strands_no_waiter() {
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    let layer = RateLimitLayer::builder()
        .concurrency_per_key(1)
        .build()
        .unwrap();
    let svc = layer.layer(mock);
    // The first call is polled here, so its slot is released inside this task and
    // nothing else runs between the release and the maintenance below.
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(req("f")));
    assert!(first.poll().is_pending());
    let (_r1, send1) = handle.next_request().await.unwrap();
    let second = tokio::spawn(svc.clone().oneshot(req("f")));
    let third = tokio::spawn(svc.clone().oneshot(req("f")));
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(layer.in_flight("f"), 1);
    send1.send_response(http::Response::new(()));
    assert!(first.poll().is_ready());
    layer.maintain();
    let (_r2, send2) = handle.next_request().await.unwrap();
    send2.send_response(http::Response::new(()));
    second.await.unwrap().unwrap();
    let Ok(Some((_r3, send3))) =
        tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await
    else {
        panic!("the third waiter was still blocked 5 s after the slot was freed");
    };
    send3.send_response(http::Response::new(()));
    third.await.unwrap().unwrap();
    assert_eq!(layer.in_flight("f"), 0);
}

/// Item 21 under the adaptive limit: a call that outlives the idle period, then a
/// maintenance pass between its release and the woken waiter's return.
#[tokio::test(start_paused = true)]
async fn maintenance_after_a_long_call_strands_no_adaptive_waiter() {
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    let layer = RateLimitLayer::builder()
        .adaptive(Adaptive {
            initial: 1.0,
            ..Adaptive::default()
        })
        .max_wait(Duration::from_secs(3600))
        .build()
        .unwrap();
    let svc = layer.layer(layer.feedback(HttpClassifier).layer(mock));
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(req("f")));
    assert!(first.poll().is_pending());
    let (_r1, send1) = handle.next_request().await.unwrap();
    let second = tokio::spawn(svc.clone().oneshot(req("f")));
    let third = tokio::spawn(svc.clone().oneshot(req("f")));
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    // A 15-minute call; a throttle keeps the limit at one.
    tokio::time::advance(Duration::from_secs(15 * 60)).await;
    send1.send_response(http::Response::builder().status(429).body(()).unwrap());
    assert!(first.poll().is_ready());
    layer.maintain();
    let (_r2, send2) = handle.next_request().await.unwrap();
    send2.send_response(http::Response::new(()));
    second.await.unwrap().unwrap();
    let Ok(Some((_r3, send3))) =
        tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await
    else {
        panic!("the third waiter was still blocked 5 s after the slot was freed");
    };
    send3.send_response(http::Response::new(()));
    third.await.unwrap().unwrap();
}

/// Item 11: no call runs the pass over all keys (every 4096th call used to); the first
/// call after the period starts it on a task of its own.
#[tokio::test(start_paused = true)]
async fn maintenance_runs_beside_the_calls_not_in_them() {
    let layer = RateLimitLayer::builder()
        .per_key(Rate::per_second(5))
        .concurrency_per_key(2)
        .mode(Mode::FailFast)
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    for i in 0..4095 {
        svc.ready()
            .await
            .unwrap()
            .call(req(&format!("fn-{i}")))
            .await
            .unwrap();
    }
    // Every key is idle now; the 4096th call must not pay for dropping them.
    tokio::time::advance(Duration::from_secs(1)).await;
    svc.ready().await.unwrap().call(req("last")).await.unwrap();
    assert_eq!(
        layer.tracked_keys(),
        4096,
        "a call ran the maintenance pass"
    );
    // After the period, a call starts the pass and returns before it ran...
    tokio::time::advance(MAINTENANCE_EVERY).await;
    svc.ready()
        .await
        .unwrap()
        .call(req("trigger"))
        .await
        .unwrap();
    assert_eq!(
        layer.tracked_keys(),
        4097,
        "a call ran the maintenance pass"
    );
    // ...which runs on its own task, keeping only the key just used.
    tokio::task::yield_now().await;
    assert_eq!(layer.tracked_keys(), 1, "the pass dropped idle keys");
}

/// Item 11: the maintenance task holds no strong reference to the limiter: a limiter
/// dropped before the task ran is freed, and the task ends.
#[tokio::test(start_paused = true)]
async fn the_maintenance_task_keeps_no_limiter_alive() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let layer = RateLimitLayer::builder()
        .concurrency_per_key(2)
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    tokio::time::advance(MAINTENANCE_EVERY).await;
    for _ in 0..3 {
        svc.ready().await.unwrap().call(req("f")).await.unwrap();
    }
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 1,
        "one pass, started once"
    );
    let weak = std::sync::Arc::downgrade(&layer.shared.limits);
    drop((svc, layer));
    assert!(weak.upgrade().is_none(), "the task keeps the limiter alive");
    tokio::task::yield_now().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before,
        "the task outlived the limiter"
    );
}

/// Item 11: with no tokio runtime (a concurrency cap needs no timer), calls work and
/// nothing is spawned.
#[test]
fn calls_work_with_no_tokio_runtime() {
    let layer = RateLimitLayer::builder()
        .concurrency_per_key(1)
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for _ in 0..3 {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut fut = std::pin::pin!(svc.call(req("f")));
        assert!(matches!(
            fut.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Ok(_))
        ));
    }
    assert_eq!(layer.in_flight("f"), 0);
}

fn req_from(key: &str, caller: &'static str) -> Req {
    let mut r = req(key);
    r.headers_mut()
        .insert("x-caller", http::HeaderValue::from_static(caller));
    r
}

fn caller(r: &Req) -> &str {
    r.headers()["x-caller"].to_str().unwrap()
}

/// Item 9: a freed slot goes to the caller that waited longest, not to one that arrives
/// as it frees.
#[tokio::test(start_paused = true)]
async fn a_freed_slot_goes_to_the_longest_waiter() {
    for adaptive in [false, true] {
        let (mock, mut handle) = mock::pair::<Req, Resp>();
        let layer = if adaptive {
            RateLimitLayer::builder().adaptive(Adaptive {
                initial: 1.0,
                ..Adaptive::default()
            })
        } else {
            RateLimitLayer::builder().concurrency_per_key(1)
        }
        .build()
        .unwrap();
        let svc = layer.layer(layer.feedback(HttpClassifier).layer(mock));
        let mut a = tokio_test::task::spawn(svc.clone().oneshot(req_from("f", "a")));
        assert!(a.poll().is_pending());
        let (_ra, send_a) = handle.next_request().await.unwrap();
        let b = tokio::spawn(svc.clone().oneshot(req_from("f", "b")));
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        // A throttle keeps the adaptive limit at one.
        send_a.send_response(http::Response::builder().status(429).body(()).unwrap());
        assert!(a.poll().is_ready());
        // C arrives before B has run again.
        let mut c = tokio_test::task::spawn(svc.clone().oneshot(req_from("f", "c")));
        let _ = c.poll();
        let (rb, send_b) = handle.next_request().await.unwrap();
        assert_eq!(caller(&rb), "b", "adaptive: {adaptive}");
        send_b.send_response(http::Response::new(()));
        b.await.unwrap().unwrap();
        // C is polled here, not by the runtime.
        assert!(c.poll().is_pending());
        let (rc, send_c) = handle.next_request().await.unwrap();
        assert_eq!(caller(&rc), "c");
        send_c.send_response(http::Response::new(()));
        assert!(c.poll().is_ready());
    }
}

/// Item 9: with no deadline (the client's default), a wait for a slot ends after the
/// limiter's maximum wait (60 s by default).
#[tokio::test(start_paused = true)]
async fn a_wait_with_no_deadline_is_bounded() {
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    let layer = RateLimitLayer::builder()
        .concurrency_per_key(1)
        .build()
        .unwrap();
    let svc = layer.layer(mock);
    let _held = tokio::spawn(svc.clone().oneshot(req("f")));
    let _never_answered = handle.next_request().await.unwrap();
    let start = Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(61), svc.clone().oneshot(req("f"))).await;
    let Ok(Err(RateLimitError::Limited(l))) = waited else {
        panic!("still waiting for the slot after 61 s");
    };
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    assert_eq!(start.elapsed(), DEFAULT_MAX_WAIT);
    assert_eq!(
        (l.limit, l.reason, l.waited),
        (LimitKind::Concurrency, Refusal::MaxWait, DEFAULT_MAX_WAIT)
    );

    // A rate wait longer than the maximum is refused at once.
    let layer = RateLimitLayer::builder()
        .per_key(Rate {
            calls: 1,
            per: Duration::from_secs(120),
            burst: None,
        })
        .mode(Mode::Wait {
            jitter: Duration::ZERO,
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    svc.ready().await.unwrap().call(req("f")).await.unwrap();
    let start = Instant::now();
    let Err(RateLimitError::Limited(l)) = svc.ready().await.unwrap().call(req("f")).await else {
        panic!("a 120 s wait must be refused");
    };
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        (l.limit, l.reason, l.earliest),
        (
            LimitKind::Rate,
            Refusal::MaxWait,
            Some(Duration::from_secs(120))
        )
    );
}

/// Item 9: when the adaptive limit falls below the calls in flight, returned slots are
/// held back until the calls in flight are under the new limit; waiters then get them
/// in order.
#[tokio::test(start_paused = true)]
async fn a_lowered_limit_holds_back_returned_slots() {
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    let layer = RateLimitLayer::builder()
        .adaptive(Adaptive {
            initial: 4.0,
            ..Adaptive::default()
        })
        .build()
        .unwrap();
    let svc = layer.layer(layer.feedback(HttpClassifier).layer(mock));
    let names = ["a", "b", "c", "d", "e", "f"];
    let calls: Vec<_> = names
        .iter()
        .map(|n| tokio::spawn(svc.clone().oneshot(req_from("k", n))))
        .collect();
    let mut pending = Vec::new();
    for _ in 0..4 {
        pending.push(handle.next_request().await.unwrap());
    }
    assert_eq!(layer.in_flight("k"), 4);
    let throttle = || http::Response::builder().status(429).body(()).unwrap();
    let ok = || http::Response::new(());
    // A throttle: 4 × 0.7 = 2.8, two slots. Three calls in flight stay; the next two
    // that return free no slot.
    let (_, send) = pending.remove(0);
    send.send_response(throttle());
    tokio::task::yield_now().await;
    assert_eq!(layer.adaptive_limit("k"), Some(2.8));
    let (_, send) = pending.remove(0);
    send.send_response(throttle());
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        layer.in_flight("k"),
        2,
        "no waiter admitted above the limit"
    );
    let (_, send) = pending.remove(0);
    send.send_response(throttle());
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    // One in flight under a limit of two: the longest waiter goes.
    assert_eq!(layer.in_flight("k"), 2);
    let (r, send_e) = handle.next_request().await.unwrap();
    assert_eq!(caller(&r), "e");
    for (_, send) in pending.drain(..) {
        send.send_response(ok());
    }
    send_e.send_response(ok());
    let (r, send_f) = handle.next_request().await.unwrap();
    assert_eq!(caller(&r), "f");
    send_f.send_response(ok());
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(layer.in_flight("k"), 0);
}

/// Runs `hot` callers of key "hot" and one caller of key "cold", each calling in a loop
/// in wait mode for `secs` seconds of paused time; returns the calls admitted per key.
async fn hot_and_cold(layer: RateLimitLayer, hot: usize, secs: u64) -> (usize, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let svc = layer.layer(ok_service());
    let counts = std::sync::Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..=hot {
        let (mut svc, counts) = (svc.clone(), std::sync::Arc::clone(&counts));
        let (key, slot) = if i == hot { ("cold", 1) } else { ("hot", 0) };
        tasks.spawn(async move {
            loop {
                if svc.ready().await.unwrap().call(req(key)).await.is_ok() {
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    tasks.abort_all();
    (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    )
}

fn every(calls: u32) -> Rate {
    Rate {
        calls,
        per: Duration::from_secs(1),
        burst: Some(1),
    }
}

/// Item 8, the reported case: 50 callers of a function limited to 1/s must not burn the
/// global rate that another function (with a high rate of its own) needs.
#[tokio::test(start_paused = true)]
async fn callers_refused_by_their_key_burn_no_global_capacity() {
    let layer = RateLimitLayer::builder()
        .global(every(50))
        .key_rate("hot", every(1))
        .key_rate("cold", every(1000))
        .mode(Mode::Wait {
            jitter: Duration::ZERO,
        })
        .max_wait(Duration::from_secs(3600))
        .build()
        .unwrap();
    let (hot, cold) = hot_and_cold(layer, 50, 10).await;
    assert!(hot <= 11, "hot {hot}");
    // 49 calls/s are left for "cold".
    assert!(cold >= 450, "cold {cold} calls in 10 s, hot {hot}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Item 8: with a global and a per-key rate, however many callers a hot key has, a
    /// cold key still gets its fair part of the global rate: min(per-key rate, half the
    /// global rate) with two keys; and the global rate holds.
    #[test]
    fn a_hot_key_leaves_others_their_fair_part_of_the_global_rate(
        global in 4u32..60,
        per_key in 1u32..60,
        hot in 2usize..40,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let secs = 10;
        let (h, c) = rt.block_on(async {
            let layer = RateLimitLayer::builder()
                .global(every(global))
                .per_key(every(per_key))
                .mode(Mode::Wait { jitter: Duration::ZERO })
                .max_wait(Duration::from_secs(3600))
                .build().unwrap();
            hot_and_cold(layer, hot, secs).await
        });
        let fair = f64::from(per_key).min(f64::from(global) / 2.0) * secs as f64;
        prop_assert!(c as f64 >= 0.9 * fair - 1.0, "cold {c} < 90 % of {fair}; hot {h}");
        prop_assert!((h + c) as u64 <= u64::from(global) * secs + 1, "global exceeded: {}", h + c);
    }
}

/// Item 8: the key's rate is checked first, and a call the global rate then refuses gives
/// its key's cell back: each refusal leaves both rates as it found them.
#[tokio::test(start_paused = true)]
async fn a_refused_call_leaves_both_rates_as_it_found_them() {
    let per = |secs: u64| Rate {
        calls: 1,
        per: Duration::from_secs(secs),
        burst: None,
    };
    let layer = RateLimitLayer::builder()
        .global(per(1))
        .key_rate("x", per(10))
        .key_rate("y", per(10))
        .key_rate("z", per(10))
        .mode(Mode::FailFast)
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    let mut refused = async |key| match svc.ready().await.unwrap().call(req(key)).await {
        Ok(_) => None,
        Err(RateLimitError::Limited(l)) => Some((l.key.unwrap(), l.earliest.unwrap())),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(refused("x").await, None);
    tokio::time::advance(Duration::from_secs(1)).await;
    // Refused by its own rate, x takes nothing from the global rate...
    let secs = Duration::from_secs;
    assert_eq!(refused("x").await, Some(("x".into(), secs(9))));
    assert_eq!(refused("y").await, None);
    // ...and refused by the global rate, z keeps its own cell.
    assert_eq!(refused("z").await, Some(("z".into(), secs(1))));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(refused("z").await, None);
}

/// Item 27: a rate that admits no call is an error at build time, wherever it is set,
/// never a silent "no limit" (a per-key rate of 0 used to admit every call); so are a
/// cap of 0 and adaptive settings out of range.
#[test]
fn a_limit_that_admits_no_call_is_refused_at_build_time() {
    let nanos = |n| Duration::from_nanos(n);
    let no_call = [
        Rate::per_second(0),
        Rate {
            burst: Some(0),
            ..Rate::per_second(5)
        },
        Rate {
            per: Duration::ZERO,
            ..Rate::per_second(5)
        },
        Rate {
            calls: 10,
            per: nanos(5),
            burst: None,
        },
    ];
    for rate in no_call {
        let b = RateLimitLayer::builder;
        for (built, limit) in [
            (b().global(rate).build(), "global"),
            (b().per_key(rate).build(), "per-key"),
            (b().key_rate("payments", rate).build(), "key"),
        ] {
            let Err(InvalidLimit::Rate {
                limit: l, rate: r, ..
            }) = built
            else {
                panic!("{rate:?} as the {limit} rate was accepted");
            };
            assert_eq!((l, r), (limit, rate));
        }
    }
    let err = RateLimitLayer::builder()
        .key_rate("payments", Rate::per_second(0))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the key rate of payments admits no call: 0 calls per 1s, burst None"
    );
    assert_eq!(
        RateLimitLayer::builder()
            .concurrency_per_key(0)
            .build()
            .unwrap_err(),
        InvalidLimit::Concurrency
    );
    for bad in [
        Adaptive {
            decrease: 1.0,
            ..Adaptive::default()
        },
        Adaptive {
            min: 0.0,
            ..Adaptive::default()
        },
        Adaptive {
            initial: 2000.0,
            ..Adaptive::default()
        },
        Adaptive {
            max: f64::NAN,
            ..Adaptive::default()
        },
    ] {
        assert!(matches!(
            RateLimitLayer::builder().adaptive(bad).build(),
            Err(InvalidLimit::Adaptive { .. })
        ));
    }
    // The smallest valid rate: calls one nanosecond apart.
    assert!(RateLimitLayer::builder()
        .global(Rate {
            calls: 10,
            per: nanos(10),
            burst: None
        })
        .build()
        .is_ok());
}

/// An operation whose first two attempts are throttled, through limiter → retry →
/// feedback → mock with a per-key rate of one call per second; returns when each
/// attempt reached the service.
async fn attempts_under_a_rate(builder: RateLimitBuilder<ExtensionKey>) -> Vec<Duration> {
    use crate::retry::{RetryLayer, RetryPolicy};
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    let limiter = builder
        .per_key(Rate {
            calls: 1,
            per: Duration::from_secs(1),
            burst: None,
        })
        .mode(Mode::Wait {
            jitter: Duration::ZERO,
        })
        .build()
        .unwrap();
    let retry = RetryLayer::new(HttpClassifier)
        .policy(RetryPolicy {
            throttle_base: Duration::from_millis(1),
            ..RetryPolicy::default()
        })
        .jitter(|| 0.5);
    let svc = limiter.layer(retry.layer(limiter.feedback(HttpClassifier).layer(mock)));
    let start = Instant::now();
    let call = tokio::spawn(svc.oneshot(req("f")));
    let mut at = Vec::new();
    for status in [429, 429, 200] {
        let (_, send) = handle.next_request().await.unwrap();
        at.push(start.elapsed());
        send.send_response(http::Response::builder().status(status).body(()).unwrap());
    }
    call.await.unwrap().unwrap();
    at
}

/// Item 10: by default a rate counts attempts on the wire, retries included (the rate
/// used to sit outside retry: a throttled burst sent `max_attempts ×` the rate).
#[tokio::test(start_paused = true)]
async fn retries_count_against_the_rate() {
    let at = attempts_under_a_rate(RateLimitLayer::builder()).await;
    let secs = Duration::from_secs;
    assert_eq!(at, [secs(0), secs(1), secs(2)]);
}

/// Item 10: rates can count operations instead: the retries then go without a cell.
#[tokio::test(start_paused = true)]
async fn rates_can_count_operations_instead() {
    let at =
        attempts_under_a_rate(RateLimitLayer::builder().rates_count(RateCount::Operations)).await;
    assert!(at[2] < Duration::from_millis(10), "{at:?}");
}

fn status(code: u16) -> Resp {
    http::Response::builder().status(code).body(()).unwrap()
}

/// Answers the next request with `code` and lets the callers run.
async fn answer(handle: &mut mock::Handle<Req, Resp>, code: u16) {
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(status(code));
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

/// Item 12: until the first throttle, each success raises the adaptive limit by one (it
/// doubles every round of calls: slow start); after it, by one per round (AIMD).
#[tokio::test(start_paused = true)]
async fn the_adaptive_limit_doubles_each_round_until_the_first_throttle() {
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    let layer = RateLimitLayer::builder()
        .adaptive(Adaptive::default())
        .build()
        .unwrap();
    let svc = layer.layer(layer.feedback(HttpClassifier).layer(mock));
    let _calls: Vec<_> = (0..200)
        .map(|_| tokio::spawn(svc.clone().oneshot(req("f"))))
        .collect();
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(layer.adaptive_limit("f"), Some(4.0));
    for _ in 0..4 {
        answer(&mut handle, 200).await;
    }
    assert_eq!(layer.adaptive_limit("f"), Some(8.0), "one round: doubled");
    for _ in 0..8 {
        answer(&mut handle, 200).await;
    }
    assert_eq!(layer.adaptive_limit("f"), Some(16.0), "two rounds");
    assert_eq!(layer.in_flight("f"), 16);
    // The first throttle ends the slow start.
    answer(&mut handle, 429).await;
    let cut = 16.0 * 0.7;
    assert_eq!(layer.adaptive_limit("f"), Some(cut));
    answer(&mut handle, 200).await;
    assert_eq!(layer.adaptive_limit("f"), Some(cut + 1.0 / cut));
}

/// Item 12: what the adaptive limit learned survives an idle gap of a few minutes (it
/// used to be forgotten after 60 s).
#[tokio::test(start_paused = true)]
async fn the_adaptive_limit_is_kept_across_a_short_idle_gap() {
    let (mock, mut handle) = mock::pair::<Req, Resp>();
    let layer = RateLimitLayer::builder()
        .adaptive(Adaptive::default())
        .build()
        .unwrap();
    let svc = layer.layer(layer.feedback(HttpClassifier).layer(mock));
    let call = tokio::spawn(svc.clone().oneshot(req("f")));
    answer(&mut handle, 429).await;
    call.await.unwrap().unwrap();
    let learned = layer.adaptive_limit("f");
    assert_eq!(learned, Some(4.0 * 0.7));
    tokio::time::advance(Duration::from_secs(5 * 60)).await;
    layer.maintain();
    assert_eq!(layer.adaptive_limit("f"), learned);
    // A long gap forgets it (the state of an idle key does not stay forever).
    tokio::time::advance(Duration::from_secs(60 * 60)).await;
    layer.maintain();
    assert_eq!(layer.adaptive_limit("f"), None);
}

/// Item 12, the reported case: a function with a reserved concurrency of 64 whose calls
/// take 15 minutes (Lambda throttles a call above it at once). The limit used to stay
/// near 4 for hours, as it grew only when calls ended; an attempt still in flight after
/// a second has been accepted, and counts as a success for the growth.
#[tokio::test(start_paused = true)]
async fn the_adaptive_limit_grows_during_long_calls() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const RESERVED: usize = 64;
    let running = std::sync::Arc::new(AtomicUsize::new(0));
    let lambda = {
        let running = std::sync::Arc::clone(&running);
        tower::service_fn(move |_r: Req| {
            let running = std::sync::Arc::clone(&running);
            async move {
                if running.fetch_add(1, Ordering::SeqCst) >= RESERVED {
                    running.fetch_sub(1, Ordering::SeqCst);
                    return Ok::<_, std::convert::Infallible>(status(429));
                }
                tokio::time::sleep(Duration::from_secs(15 * 60)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(status(200))
            }
        })
    };
    let layer = RateLimitLayer::builder()
        .adaptive(Adaptive::default())
        .max_wait(Duration::from_secs(24 * 3600))
        .build()
        .unwrap();
    let svc = layer.layer(layer.feedback(HttpClassifier).layer(lambda));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..2 * RESERVED {
        let svc = svc.clone();
        tasks.spawn(async move {
            loop {
                let _ = svc.clone().oneshot(req("f")).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    let limit = layer.adaptive_limit("f").unwrap();
    tasks.abort_all();
    assert!(
        limit >= 0.9 * RESERVED as f64,
        "limit {limit} after 10 minutes of 15-minute calls"
    );
}

/// Issue 16, item 2: the limiting future answers a poll after completion with an error.
#[tokio::test(start_paused = true)]
async fn polled_after_completion_is_an_error() {
    let layer = RateLimitLayer::builder()
        .per_key(Rate::per_second(10))
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let mut fut = tokio_test::task::spawn(svc.call(req("k")));
    tokio_test::assert_ready_ok!(fut.poll());
    let again = tokio_test::assert_ready_err!(fut.poll());
    assert!(
        matches!(again, RateLimitError::PolledAfterCompletion(_)),
        "{again:?}"
    );
}
