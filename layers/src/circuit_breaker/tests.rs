//! The circuit breaker over tower-test mocks with paused time: every transition, the
//! window and minimum-calls rules, the growing break, probe limits, what counts, and the
//! memory bound.

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use super::*;
use crate::retry::HttpClassifier;

type Req = http::Request<()>;
type Resp = http::Response<()>;
type Inner = mock::Mock<Req, Resp>;
type Err = CircuitBreakerError<Box<dyn std::error::Error + Send + Sync>>;

/// A classifier by status: 200 success, 201 a target error, 400 a client fault, 429 a
/// throttle, 499 a local error, 500 a failure, 502 broken.
#[derive(Debug, Clone, Copy)]
struct ByStatus;

impl<E> ClassifyCircuit<Resp, E> for ByStatus {
    fn outcome(&self, result: &Result<Resp, E>) -> Outcome {
        match result.as_ref().map(|r| r.status().as_u16()) {
            Ok(200) => Outcome::Success,
            Ok(201) => Outcome::TargetError,
            Ok(400) => Outcome::ClientFault,
            Ok(429) => Outcome::Throttled,
            Ok(499) => Outcome::Local,
            Ok(502) => Outcome::Broken,
            _ => Outcome::Failure,
        }
    }
}

fn req(key: &str) -> Req {
    let mut r = http::Request::new(());
    r.extensions_mut().insert(CircuitKey(key.to_owned()));
    r
}

fn resp(status: u16) -> Resp {
    http::Response::builder().status(status).body(()).unwrap()
}

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        minimum_calls: 4,
        ..CircuitBreakerConfig::default()
    }
}

struct Harness {
    layer: CircuitBreakerLayer<ByStatus>,
    svc: CircuitBreaker<Inner, ByStatus, ExtensionKey>,
    handle: mock::Handle<Req, Resp>,
}

impl Harness {
    /// A breaker with exact breaks (no jitter) over a mock.
    fn new(config: CircuitBreakerConfig) -> Self {
        Self::with(CircuitBreakerLayer::builder(config).jitter(|| 0.0))
    }

    fn with(builder: CircuitBreakerBuilder) -> Self {
        let layer = builder.build(ByStatus);
        let (inner, handle) = mock::pair::<Req, Resp>();
        Self {
            svc: layer.layer(inner),
            layer,
            handle,
        }
    }

    /// The request the inner service received, if any (without waiting).
    fn received(&mut self) -> Option<(Req, mock::SendResponse<Resp>)> {
        match tokio_test::task::spawn(self.handle.next_request()).poll() {
            Poll::Ready(r) => r,
            Poll::Pending => None,
        }
    }

    /// Starts a call; returns its future and, if it reached the inner service, the
    /// handle to answer it.
    async fn start(
        &mut self,
        key: &str,
    ) -> (
        ResponseFuture<mock::future::ResponseFuture<Resp>, ByStatus, ExtensionKey>,
        Option<mock::SendResponse<Resp>>,
    ) {
        let fut = self.svc.ready().await.unwrap().call(req(key));
        let sent = self.received().map(|(_, send)| send);
        (fut, sent)
    }

    /// A call the inner service answers with `status`, or that the breaker refuses.
    async fn call(&mut self, key: &str, status: u16) -> Result<Resp, Err> {
        let (fut, sent) = self.start(key).await;
        if let Some(send) = sent {
            send.send_response(resp(status));
        }
        fut.await
    }

    /// Calls that must reach the inner service.
    async fn calls(&mut self, key: &str, statuses: &[u16]) {
        for &s in statuses {
            let r = self.call(key, s).await.unwrap();
            assert_eq!(r.status(), s);
        }
    }

    /// A call that must be refused, without reaching the inner service.
    async fn refused(&mut self, key: &str) -> CircuitOpen {
        let (fut, sent) = self.start(key).await;
        assert!(sent.is_none(), "a refused call reached the inner service");
        match fut.await {
            Err(CircuitBreakerError::Open(open)) => open,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn state(&self, key: &str) -> CircuitState {
        self.layer.state(key)
    }

    fn window(&self, key: &str) -> Option<(u32, u32)> {
        self.layer.shared().and_then(|s| s.breaker.window(key))
    }
}

#[tokio::test(start_paused = true)]
async fn opens_when_the_failure_ratio_over_the_minimum_calls_reaches_the_threshold() {
    let mut h = Harness::new(config());
    // Three failures are fewer than the minimum of four calls: still closed.
    h.calls("a", &[500, 500, 500]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
    // A success makes four calls, three failed (0.75 >= 0.5): open.
    h.calls("a", &[200]).await;
    assert_eq!(h.state("a"), CircuitState::Open);
    let since = tokio::time::Instant::now();
    let open = h.refused("a").await;
    assert_eq!(
        open,
        CircuitOpen {
            key: "a".into(),
            state: CircuitState::Open,
            since,
            open_for: Duration::ZERO,
            retry_after: Some(Duration::from_secs(5)),
        }
    );
    // Time passes: the refusal says how long it has been open and how long is left.
    tokio::time::advance(Duration::from_secs(2)).await;
    let open = h.refused("a").await;
    assert_eq!(open.since, since);
    assert_eq!(open.open_for, Duration::from_secs(2));
    assert_eq!(open.retry_after, Some(Duration::from_secs(3)));
    assert_eq!(
        open.to_string(),
        "circuit open for a (open for 2.000s); a call may go in 3.000s"
    );
}

#[tokio::test(start_paused = true)]
async fn the_threshold_is_inclusive_and_a_lower_ratio_stays_closed() {
    let mut h = Harness::new(config());
    h.calls("a", &[200, 200, 200, 500]).await; // 1 of 4
    assert_eq!(h.state("a"), CircuitState::Closed);
    h.calls("a", &[500]).await; // 2 of 5
    assert_eq!(h.state("a"), CircuitState::Closed);
    assert_eq!(h.window("a"), Some((5, 2)));
    h.calls("a", &[500]).await; // 3 of 6: exactly the ratio
    assert_eq!(h.state("a"), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn outcomes_older_than_the_window_are_forgotten() {
    let mut h = Harness::new(CircuitBreakerConfig {
        sampling_window: Duration::from_secs(10),
        ..config()
    });
    // Within the window (the oldest bucket is still in it after 9 s): they count.
    h.calls("a", &[500, 500, 500]).await;
    tokio::time::advance(Duration::from_secs(9)).await;
    h.calls("a", &[500]).await;
    assert_eq!(h.state("a"), CircuitState::Open);

    // A whole window later, the first failures are gone.
    h.calls("b", &[500, 500, 500]).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    h.calls("b", &[500]).await;
    assert_eq!(h.window("b"), Some((1, 1)));
    assert_eq!(h.state("b"), CircuitState::Closed);
    h.calls("b", &[500, 500]).await;
    assert_eq!(h.state("b"), CircuitState::Closed);
    h.calls("b", &[500]).await;
    assert_eq!(h.state("b"), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_one_probe_through_at_a_time_and_closes_on_its_success() {
    let mut h = Harness::new(config());
    h.calls("a", &[502]).await;
    assert_eq!(h.state("a"), CircuitState::Open);
    tokio::time::advance(Duration::from_millis(4_999)).await;
    h.refused("a").await;
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(h.state("a"), CircuitState::HalfOpen);

    let (probe, sent) = h.start("a").await;
    let send = sent.expect("the probe reaches the inner service");
    // While the probe is in flight, every other call fails fast.
    for _ in 0..3 {
        let open = h.refused("a").await;
        assert_eq!(open.state, CircuitState::HalfOpen);
        // The rest of the probe's lease (issue 23: was None, for as long as it hung).
        assert_eq!(open.retry_after, Some(Duration::from_secs(60)));
        assert_eq!(open.open_for, Duration::from_secs(5));
    }
    send.send_response(resp(200));
    assert_eq!(probe.await.unwrap().status(), 200);
    assert_eq!(h.state("a"), CircuitState::Closed);
    // Normal service, with an empty window.
    h.calls("a", &[200, 200, 500]).await;
    assert_eq!(h.window("a"), Some((3, 1)));
}

#[tokio::test(start_paused = true)]
async fn each_failed_probe_doubles_the_break_up_to_the_cap_and_closing_resets_it() {
    let mut h = Harness::new(CircuitBreakerConfig {
        break_duration: Duration::from_secs(1),
        max_break_duration: Duration::from_secs(5),
        ..config()
    });
    h.calls("a", &[502]).await;
    let mut breaks = Vec::new();
    for _ in 0..5 {
        let left = h.refused("a").await.retry_after.unwrap();
        breaks.push(left.as_secs());
        tokio::time::advance(left).await;
        h.calls("a", &[500]).await; // the probe fails: open again
        assert_eq!(h.state("a"), CircuitState::Open);
    }
    breaks.push(h.refused("a").await.retry_after.unwrap().as_secs());
    assert_eq!(breaks, [1, 2, 4, 5, 5, 5]);

    tokio::time::advance(Duration::from_secs(5)).await;
    h.calls("a", &[200]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
    h.calls("a", &[502]).await;
    assert_eq!(
        h.refused("a").await.retry_after,
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_shortens_the_break() {
    let mut h = Harness::with(
        CircuitBreakerLayer::builder(CircuitBreakerConfig {
            break_duration: Duration::from_secs(10),
            break_jitter: 0.2,
            ..config()
        })
        .jitter(|| 0.5),
    );
    h.calls("a", &[502]).await;
    assert_eq!(
        h.refused("a").await.retry_after,
        Some(Duration::from_secs(9))
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_the_configured_probes_and_needs_as_many_successes() {
    let mut h = Harness::new(CircuitBreakerConfig {
        half_open_probes: 2,
        ..config()
    });
    h.calls("a", &[502]).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let (p1, s1) = h.start("a").await;
    let (p2, s2) = h.start("a").await;
    let (s1, s2) = (s1.expect("first probe"), s2.expect("second probe"));
    h.refused("a").await;
    s1.send_response(resp(200));
    p1.await.unwrap();
    // One success, one probe in flight: the quota of two is used.
    assert_eq!(h.state("a"), CircuitState::HalfOpen);
    h.refused("a").await;
    s2.send_response(resp(200));
    p2.await.unwrap();
    assert_eq!(h.state("a"), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn throttles_never_count_and_a_throttled_probe_frees_its_slot() {
    let mut h = Harness::new(config());
    h.calls("a", &[429; 20]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
    assert_eq!(h.window("a"), Some((0, 0)));
    // Mixed with failures, throttles do not dilute the ratio either.
    h.calls("a", &[500, 429, 429, 200, 429, 200]).await;
    assert_eq!(h.window("a"), Some((3, 1)));
    h.calls("a", &[429, 200, 429, 500, 429]).await;
    assert_eq!(h.state("a"), CircuitState::Closed); // 2 of 5
    h.calls("a", &[500]).await;
    assert_eq!(h.state("a"), CircuitState::Open); // 3 of 6

    tokio::time::advance(Duration::from_secs(5)).await;
    h.calls("a", &[429]).await; // a probe, throttled: no verdict
    assert_eq!(h.state("a"), CircuitState::HalfOpen);
    h.calls("a", &[429]).await; // the slot was freed: another probe
    h.calls("a", &[200]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn client_faults_are_ignored_and_target_errors_are_successes_unless_configured() {
    let mut h = Harness::new(config());
    h.calls("a", &[400; 10]).await;
    assert_eq!(h.window("a"), Some((0, 0)));
    h.calls("a", &[201; 10]).await;
    assert_eq!(h.window("a"), Some((10, 0)));
    assert_eq!(h.state("a"), CircuitState::Closed);

    let mut h = Harness::new(CircuitBreakerConfig {
        count_client_faults: true,
        ..config()
    });
    h.calls("a", &[400; 4]).await;
    assert_eq!(h.state("a"), CircuitState::Open);

    let mut h = Harness::new(config().count_target_errors_of("deterministic"));
    h.calls("deterministic", &[201; 4]).await;
    assert_eq!(h.state("deterministic"), CircuitState::Open);
    h.calls("other", &[201; 4]).await;
    assert_eq!(h.state("other"), CircuitState::Closed);

    let mut h = Harness::new(CircuitBreakerConfig {
        count_target_errors: true,
        ..config()
    });
    h.calls("any", &[201; 4]).await;
    assert_eq!(h.state("any"), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_broken_outcome_opens_at_once_unless_configured_to_count_as_a_failure() {
    let mut h = Harness::new(config());
    h.calls("a", &[200, 200, 200, 200, 200, 502]).await;
    assert_eq!(h.state("a"), CircuitState::Open);

    let mut h = Harness::new(CircuitBreakerConfig {
        open_on_broken: false,
        ..config()
    });
    h.calls("a", &[502, 502, 502]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
    h.calls("a", &[502]).await;
    assert_eq!(h.state("a"), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_result_of_a_call_let_through_in_an_earlier_state_does_not_count() {
    let mut h = Harness::new(config());
    // A slow call let through while closed.
    let (slow, slow_send) = h.start("a").await;
    let slow_send = slow_send.unwrap();
    h.calls("a", &[502]).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let (probe, probe_send) = h.start("a").await;
    let probe_send = probe_send.unwrap();
    // The slow call succeeds: it neither closes the circuit nor frees the probe's slot.
    slow_send.send_response(resp(200));
    slow.await.unwrap();
    assert_eq!(h.state("a"), CircuitState::HalfOpen);
    h.refused("a").await;
    probe_send.send_response(resp(500));
    probe.await.unwrap();
    assert_eq!(h.state("a"), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_probe_of_an_earlier_half_open_state_does_not_count_in_a_later_one() {
    let mut h = Harness::new(CircuitBreakerConfig {
        half_open_probes: 2,
        ..config()
    });
    let (slow, slow_send) = h.start("a").await;
    h.calls("a", &[502]).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let (late, late_send) = h.start("a").await; // a probe that will be late
    h.calls("a", &[500]).await; // the other probe fails: open again, for 10 s
    tokio::time::advance(Duration::from_secs(10)).await;
    let (p1, s1) = h.start("a").await;
    // The late probe of the earlier half-open state succeeds: it is not one of this
    // state's two successes.
    late_send.unwrap().send_response(resp(200));
    late.await.unwrap();
    s1.unwrap().send_response(resp(200));
    p1.await.unwrap();
    assert_eq!(h.state("a"), CircuitState::HalfOpen);
    h.calls("a", &[200]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
    // A call let through before the circuit first opened fails now: closed again since,
    // the circuit does not count it.
    slow_send.unwrap().send_response(resp(500));
    slow.await.unwrap();
    assert_eq!(h.window("a"), Some((0, 0)));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot() {
    let mut h = Harness::new(config());
    h.calls("a", &[502]).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let (probe, sent) = h.start("a").await;
    assert!(sent.is_some());
    h.refused("a").await;
    drop(probe);
    h.calls("a", &[200]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn keys_are_independent_and_requests_without_a_key_go_through() {
    let mut h = Harness::new(config());
    h.calls("a", &[502]).await;
    h.refused("a").await;
    h.calls("b", &[200, 500]).await;
    assert_eq!(h.state("b"), CircuitState::Closed);
    for _ in 0..10 {
        let fut = h.svc.ready().await.unwrap().call(http::Request::new(()));
        let (_, send) = h.received().expect("unkeyed calls are not guarded");
        send.send_response(resp(502));
        fut.await.unwrap();
    }
    assert_eq!(h.layer.tracked_keys(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_off_layer_lets_everything_through() {
    let layer = CircuitBreakerLayer::<ByStatus>::off();
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    let mut svc = layer.layer(inner);
    for _ in 0..20 {
        let fut = svc.ready().await.unwrap().call(req("a"));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(resp(502));
        fut.await.unwrap();
    }
    assert!(!layer.is_enabled());
    assert_eq!(layer.state("a"), CircuitState::Closed);
    assert_eq!(layer.tracked_keys(), 0);
}

/// A service that answers every request at once with the status in its `x-status`
/// header (200 without one).
fn instant() -> impl Service<
    Req,
    Response = Resp,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<Resp, std::convert::Infallible>>,
> + Clone {
    tower::service_fn(|r: Req| {
        let status = r
            .headers()
            .get("x-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(200);
        std::future::ready(Ok(resp(status)))
    })
}

fn with_status(key: &str, status: u16) -> Req {
    let mut r = req(key);
    r.headers_mut().insert("x-status", status.into());
    r
}

#[tokio::test(start_paused = true)]
async fn memory_is_bounded_by_the_key_cap_and_idle_closed_circuits_are_dropped() {
    let layer = CircuitBreakerLayer::builder(CircuitBreakerConfig {
        max_keys: 100,
        ..config()
    })
    .jitter(|| 0.0)
    .build(ByStatus);
    let mut svc = layer.layer(instant());
    // One broken key, then many healthy ones, up to and past the cap.
    svc.ready()
        .await
        .unwrap()
        .call(with_status("broken", 502))
        .await
        .unwrap();
    for i in 0..1000 {
        svc.ready()
            .await
            .unwrap()
            .call(req(&format!("k{i}")))
            .await
            .unwrap();
    }
    assert_eq!(layer.tracked_keys(), 100);
    // Past the cap, with no key idle, a new key is not guarded.
    for _ in 0..10 {
        svc.ready()
            .await
            .unwrap()
            .call(with_status("new", 502))
            .await
            .unwrap();
    }
    assert_eq!(layer.state("new"), CircuitState::Closed);

    // A whole window later, a new key starts a maintenance pass (on its own task, not in
    // the call: issue 23, item 5) that makes room: the idle closed circuits go, the open
    // one stays. The next call of the key is guarded.
    tokio::time::advance(Duration::from_secs(30)).await;
    svc.ready()
        .await
        .unwrap()
        .call(with_status("new", 502))
        .await
        .unwrap();
    tokio::task::yield_now().await;
    svc.ready()
        .await
        .unwrap()
        .call(with_status("new", 502))
        .await
        .unwrap();
    assert_eq!(layer.state("new"), CircuitState::Open);
    assert_eq!(layer.tracked_keys(), 2);
    assert_eq!(layer.state("broken"), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn maintenance_keeps_circuits_with_calls_in_flight() {
    let mut h = Harness::new(config());
    let (slow, slow_send) = h.start("slow").await;
    let layer = h.layer.clone();
    let mut fast = layer.layer(instant());
    for i in 0..50 {
        fast.ready()
            .await
            .unwrap()
            .call(req(&format!("k{i}")))
            .await
            .unwrap();
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(layer.tracked_keys(), 51);
    // A call after the maintenance period starts a pass, on its own task.
    fast.ready().await.unwrap().call(req("hot")).await.unwrap();
    tokio::task::yield_now().await;
    // Kept: `hot` (just used) and `slow` (a call in flight).
    assert_eq!(layer.tracked_keys(), 2);
    slow_send.unwrap().send_response(resp(500));
    slow.await.unwrap();
    assert_eq!(h.window("slow"), Some((1, 1)));
}

/// Captures the messages and `key` fields of events.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Visit(String);
        impl tracing::field::Visit for Visit {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() != "message" {
                    self.0.push_str(&format!(" {}={v:?}", f.name()));
                }
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                if f.name() != "message" {
                    self.0.push_str(&format!(" {}={v}", f.name()));
                }
            }
        }
        let mut message = String::new();
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0.push_str(&format!("{v:?}"));
                }
            }
        }
        event.record(&mut Message(&mut message));
        let mut fields = Visit(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(format!(
            "{} {message}{}",
            event.metadata().level(),
            fields.0
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn state_transitions_are_traced() {
    use tracing_subscriber::layer::SubscriberExt;
    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    // Another test thread may have met these callsites first, with no subscriber:
    // recompute their interest now that this thread has one.
    tracing::callsite::rebuild_interest_cache();
    let mut h = Harness::new(config());
    h.calls("a", &[500, 500, 500, 500]).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    h.calls("a", &[500]).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    h.calls("a", &[200]).await;
    let got: Vec<String> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains("circuit"))
        .cloned()
        .collect();
    assert_eq!(
        got,
        [
            "WARN circuit opened key=a reason=failure ratio calls=4 failures=4 opens=1 break_ms=5000",
            "INFO circuit half-open key=a",
            "WARN circuit opened key=a reason=probe failed calls=1 failures=1 opens=2 break_ms=10000",
            "INFO circuit half-open key=a",
            "INFO circuit closed key=a",
        ]
    );
}

#[tokio::test]
async fn a_manual_clock_ends_the_break_on_real_time() {
    let clock = ManualClock::new();
    let mut h = Harness::with(
        CircuitBreakerLayer::builder(config())
            .clock(clock.clone())
            .jitter(|| 0.0),
    );
    h.calls("a", &[502]).await;
    // Frozen: however long the test takes, the break has not ended.
    assert_eq!(
        h.refused("a").await.retry_after,
        Some(Duration::from_secs(5))
    );
    clock.advance(Duration::from_secs(5));
    assert_eq!(h.state("a"), CircuitState::HalfOpen);
    h.calls("a", &[200]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
}

#[test]
fn from_retry_follows_the_retry_classification() {
    let c = FromRetry(HttpClassifier);
    let r = |status: u16| -> Result<Resp, std::io::Error> { Ok(resp(status)) };
    let throttled: Result<Resp, std::io::Error> = Ok(http::Response::builder()
        .status(400)
        .header("x-amzn-errortype", "ThrottlingException")
        .body(())
        .unwrap());
    assert_eq!(c.outcome(&r(200)), Outcome::Success);
    assert_eq!(c.outcome(&r(429)), Outcome::Throttled);
    assert_eq!(c.outcome(&throttled), Outcome::Throttled);
    for s in [500, 502, 503, 504] {
        assert_eq!(c.outcome(&r(s)), Outcome::Failure, "{s}");
    }
    // Issue 23: a 501 (or 505, or a proxy's 52x) is a failure, not broken: a generic
    // HTTP classifier knows no shape that never heals.
    for s in [501, 505, 520] {
        assert_eq!(c.outcome(&r(s)), Outcome::Failure, "{s}");
    }
    assert_eq!(c.outcome(&r(403)), Outcome::ClientFault);
    let err: Result<Resp, std::io::Error> = Err(std::io::Error::other("reset"));
    assert_eq!(c.outcome(&err), Outcome::Failure);
}

#[test]
fn the_configuration_is_normalized() {
    let c = CircuitBreakerConfig {
        failure_ratio: f64::NAN,
        minimum_calls: 0,
        break_duration: Duration::from_secs(10),
        max_break_duration: Duration::from_secs(1),
        break_jitter: 7.0,
        half_open_probes: 0,
        max_keys: 0,
        ..CircuitBreakerConfig::default()
    }
    .normalized();
    assert_eq!(c.failure_ratio, 0.5);
    assert_eq!((c.minimum_calls, c.half_open_probes, c.max_keys), (1, 1, 1));
    assert_eq!(c.max_break_duration, Duration::from_secs(10));
    assert_eq!(c.break_jitter, 1.0);
    assert_eq!(c.break_for(1), Duration::from_secs(10));
    assert_eq!(c.break_for(40), Duration::from_secs(10));
}

/// Issue 23, item 1: a break of `Duration::MAX` ("never") does not panic when the circuit
/// trips; it is capped (at 30 years) like the other "never"s of the crate.
#[tokio::test(start_paused = true)]
async fn a_break_of_duration_max_is_capped_and_does_not_panic() {
    for jitter in [0.0, 0.5] {
        let mut h = Harness::with(
            CircuitBreakerLayer::builder(CircuitBreakerConfig {
                break_duration: Duration::MAX,
                max_break_duration: Duration::MAX,
                ..config()
            })
            .jitter(move || jitter),
        );
        h.calls("a", &[502]).await;
        assert_eq!(h.state("a"), CircuitState::Open);
        let left = h.refused("a").await.retry_after.unwrap();
        assert!(left <= crate::timeout::MAX_BUDGET, "{left:?}");
        assert!(left >= crate::timeout::MAX_BUDGET.mul_f64(0.8), "{left:?}");
    }
    let c = CircuitBreakerConfig {
        break_duration: Duration::MAX,
        ..CircuitBreakerConfig::default()
    }
    .normalized();
    assert_eq!(
        (c.break_duration, c.max_break_duration),
        (crate::timeout::MAX_BUDGET, crate::timeout::MAX_BUDGET)
    );
}

/// Issue 23, item 2: an inner service whose `call` panics while a probe's slot is taken
/// does not leave the circuit half-open for good: the slot is freed.
#[tokio::test(start_paused = true)]
async fn a_panic_in_the_inner_call_frees_the_probe_slot() {
    let layer = CircuitBreakerLayer::builder(config())
        .jitter(|| 0.0)
        .build(ByStatus);
    let mut svc = layer.layer(tower::service_fn(|r: Req| {
        assert!(
            !r.headers().contains_key("x-panic"),
            "the inner call panics"
        );
        let status = r
            .headers()
            .get("x-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(200);
        std::future::ready(Ok::<_, std::convert::Infallible>(resp(status)))
    }));
    svc.ready()
        .await
        .unwrap()
        .call(with_status("a", 502))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    let mut panicking = req("a");
    panicking.headers_mut().insert("x-panic", 1.into());
    let ready = svc.ready().await.unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(ready.call(panicking));
    }));
    assert!(caught.is_err());
    // The probe's slot is free: the next call is the probe, and closes the circuit.
    let r = svc.ready().await.unwrap().call(req("a")).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(layer.state("a"), CircuitState::Closed);
}

/// Issue 23, item 3: a probe that hangs holds the half-open slot only for its lease
/// (`probe_timeout`): the refusals meanwhile say when it ends, and past it the probe
/// counts as failed (open again, for a longer break); its late answer does not count.
#[tokio::test(start_paused = true)]
async fn a_hung_probe_holds_its_slot_only_for_its_lease() {
    let mut h = Harness::new(CircuitBreakerConfig {
        probe_timeout: Duration::from_secs(20),
        ..config()
    });
    assert_eq!(
        CircuitBreakerConfig::default().probe_timeout,
        Duration::from_secs(60)
    );
    h.calls("a", &[502]).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let (hung, sent) = h.start("a").await;
    let hung_send = sent.expect("the probe reaches the inner service");
    tokio::time::advance(Duration::from_secs(15)).await;
    let open = h.refused("a").await;
    assert_eq!(open.state, CircuitState::HalfOpen);
    assert_eq!(open.retry_after, Some(Duration::from_secs(5)));
    tokio::time::advance(Duration::from_secs(5)).await;
    // The lease is over: the probe counts as failed, the circuit opens for 10 s.
    let open = h.refused("a").await;
    assert_eq!(open.state, CircuitState::Open);
    assert_eq!(open.retry_after, Some(Duration::from_secs(10)));
    assert_eq!(h.state("a"), CircuitState::Open);
    // The hung probe answers at last: too late to count.
    hung_send.send_response(resp(200));
    hung.await.unwrap();
    assert_eq!(h.state("a"), CircuitState::Open);
    tokio::time::advance(Duration::from_secs(10)).await;
    h.calls("a", &[200]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
}

/// Issue 23, item 4: open circuits whose break ended a window ago, and half-open ones with
/// no probe in flight idle for a window, no longer fill the key cap for ever.
#[tokio::test(start_paused = true)]
async fn long_idle_open_and_half_open_circuits_make_room() {
    let layer = CircuitBreakerLayer::builder(CircuitBreakerConfig {
        max_keys: 10,
        ..config()
    })
    .jitter(|| 0.0)
    .build(ByStatus);
    let mut svc = layer.layer(instant());
    let mut call = |r: Req| {
        let fut = svc.call(r);
        async move {
            // Refused or not.
            let _ = fut.await;
        }
    };
    for i in 0..10 {
        call(with_status(&format!("k{i}"), 502)).await;
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    // Half of them half-open, their probe throttled: no probe in flight.
    for i in 0..5 {
        call(with_status(&format!("k{i}"), 429)).await;
    }
    assert_eq!(layer.state("k0"), CircuitState::HalfOpen);
    assert_eq!(layer.state("k9"), CircuitState::HalfOpen);
    assert_eq!(layer.tracked_keys(), 10);
    // Full: a new key is not guarded.
    call(with_status("new", 502)).await;
    assert_eq!(layer.state("new"), CircuitState::Closed);
    // A window after the break, nobody has called them: they make room (the first call
    // of the new key starts the pass, on its own task).
    tokio::time::advance(Duration::from_secs(30)).await;
    call(with_status("new", 502)).await;
    tokio::task::yield_now().await;
    call(with_status("new", 502)).await;
    assert_eq!(layer.state("new"), CircuitState::Open);
    assert_eq!(layer.tracked_keys(), 1);
}

/// Issue 23, item 5: no call runs the O(keys) sweep: it runs on a task of its own, at
/// most every `MAINTENANCE_EVERY`.
#[tokio::test(start_paused = true)]
async fn maintenance_runs_beside_the_calls_not_in_them() {
    let layer = CircuitBreakerLayer::builder(config())
        .jitter(|| 0.0)
        .build(ByStatus);
    let mut svc = layer.layer(instant());
    for i in 0..4095 {
        svc.ready()
            .await
            .unwrap()
            .call(req(&format!("k{i}")))
            .await
            .unwrap();
    }
    // Every key is idle now; the 4096th call must not pay for dropping them.
    tokio::time::advance(Duration::from_secs(30)).await;
    svc.ready().await.unwrap().call(req("last")).await.unwrap();
    assert_eq!(
        layer.tracked_keys(),
        4096,
        "a call ran the maintenance pass"
    );
    // The pass runs on its own task, keeping only the key just used.
    tokio::task::yield_now().await;
    assert_eq!(layer.tracked_keys(), 1, "the pass dropped idle keys");
}

/// Issue 23, item 6c: a local error never counts, even counting client faults; a probe
/// that ends with one frees its slot.
#[tokio::test(start_paused = true)]
async fn local_errors_never_count() {
    let mut h = Harness::new(CircuitBreakerConfig {
        count_client_faults: true,
        count_target_errors: true,
        ..config()
    });
    h.calls("a", &[499; 20]).await;
    assert_eq!(h.window("a"), Some((0, 0)));
    assert_eq!(h.state("a"), CircuitState::Closed);
    h.calls("a", &[502]).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    h.calls("a", &[499]).await;
    assert_eq!(h.state("a"), CircuitState::HalfOpen);
    h.calls("a", &[200]).await;
    assert_eq!(h.state("a"), CircuitState::Closed);
}

/// Issue 23, item 8: a refused call's future polled again after its error says so,
/// instead of pending for ever with no waker.
#[tokio::test(start_paused = true)]
async fn a_refused_future_polled_again_says_it_completed() {
    let mut h = Harness::new(config());
    h.calls("a", &[502]).await;
    let (fut, sent) = h.start("a").await;
    assert!(sent.is_none());
    let mut fut = tokio_test::task::spawn(fut);
    assert!(matches!(
        fut.poll(),
        Poll::Ready(Err(CircuitBreakerError::Open(_)))
    ));
    let again = fut.poll();
    assert!(
        matches!(
            again,
            Poll::Ready(Err(CircuitBreakerError::PolledAfterCompletion(_)))
        ),
        "polled after completion: {again:?}"
    );
    // The same for a call let through.
    let (fut, sent) = h.start("b").await;
    sent.unwrap().send_response(resp(200));
    let mut fut = tokio_test::task::spawn(fut);
    assert!(matches!(fut.poll(), Poll::Ready(Ok(_))));
    assert!(matches!(
        fut.poll(),
        Poll::Ready(Err(CircuitBreakerError::PolledAfterCompletion(_)))
    ));
    assert_eq!(h.window("b"), Some((1, 0)));
}

/// Issue 23, item 9: `since` is when the circuit first opened, until it closes: a failed
/// probe does not reset it.
#[tokio::test(start_paused = true)]
async fn since_keeps_the_first_opening_until_the_circuit_closes() {
    let mut h = Harness::new(config());
    h.calls("a", &[502]).await;
    let first = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_secs(5)).await;
    h.calls("a", &[500]).await; // the probe fails: open again, for 10 s
    let open = h.refused("a").await;
    assert_eq!(open.since, first);
    assert_eq!(open.open_for, Duration::from_secs(5));
    assert_eq!(open.retry_after, Some(Duration::from_secs(10)));
    tokio::time::advance(Duration::from_secs(10)).await;
    h.calls("a", &[200]).await; // closed
    h.calls("a", &[502]).await; // a new outage
    let open = h.refused("a").await;
    assert_eq!(open.since, tokio::time::Instant::now());
    assert_eq!(open.open_for, Duration::ZERO);
}
