//! Shared limits over an in-memory store with paused time: two limiters (two
//! "processes") share a cap and a rate; leases are renewed during long calls and
//! released on response and on cancel; a failing or hanging store fails open or closed
//! within its timeout and the deadline, and sharing resumes when it is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_test::mock;

use super::store::{
    Admission, CellSpec, LeaseSpec, OnStoreFailure, SharedLimits, SharedStore, StoreError,
    StoreFuture,
};
use super::*;
use crate::timeout::Deadline;

type Req = http::Request<()>;
type Resp = http::Response<()>;

fn req(key: &str) -> Req {
    let mut r = http::Request::new(());
    r.extensions_mut().insert(RateLimitKey(key.to_owned()));
    r
}

const UP: u8 = 0;
const FAILING: u8 = 1;
const HANGING: u8 = 2;

/// A store in memory on tokio's clock, with the semantics of the Redis scripts.
#[derive(Default)]
struct MemStore {
    state: Mutex<MemState>,
    health: AtomicU8,
    calls: AtomicU64,
    renewals: AtomicU64,
    releases: AtomicU64,
    /// The next admission is carried out, but its answer never comes (a store that
    /// stalls after doing the work).
    lose_next_answer: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct MemState {
    origin: Option<Instant>,
    tats: HashMap<String, Duration>,
    leases: HashMap<String, HashMap<String, Instant>>,
}

impl MemStore {
    fn answer<T: Send + 'static>(&self, f: impl FnOnce(&mut MemState) -> T) -> StoreFuture<T> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match self.health.load(Ordering::Relaxed) {
            FAILING => Box::pin(async { Err(StoreError::new("down")) }),
            HANGING => Box::pin(std::future::pending()),
            _ => {
                let v = f(&mut self.state.lock().unwrap());
                Box::pin(async move { Ok(v) })
            }
        }
    }

    fn held(&self, key: &str) -> usize {
        let now = Instant::now();
        let st = self.state.lock().unwrap();
        st.leases
            .get(key)
            .map_or(0, |l| l.values().filter(|e| **e > now).count())
    }
}

impl SharedStore for Arc<MemStore> {
    fn admit(&self, cells: Vec<CellSpec>, lease: Option<LeaseSpec>) -> StoreFuture<Admission> {
        let lose = self.lose_next_answer.swap(false, Ordering::Relaxed);
        let answer = self.answer(move |st| {
            let now = Instant::now();
            if let Some(l) = &lease {
                let leases = st.leases.entry(l.key.clone()).or_default();
                leases.retain(|_, e| *e > now);
                if leases.len() >= l.cap && !leases.contains_key(&l.id) {
                    return Admission::Full;
                }
            }
            let clock = st.origin.get_or_insert_with(Instant::now).elapsed();
            let mut wait = Duration::ZERO;
            for c in &cells {
                let tat = st.tats.get(&c.name).copied().unwrap_or(clock).max(clock);
                let tolerance = c.interval * (c.burst - 1);
                wait = wait.max(tat.saturating_sub(tolerance).saturating_sub(clock));
            }
            if !wait.is_zero() {
                return Admission::RateWait(wait);
            }
            for c in &cells {
                let tat = st.tats.get(&c.name).copied().unwrap_or(clock).max(clock);
                st.tats.insert(c.name.clone(), tat + c.interval);
            }
            if let Some(l) = lease {
                st.leases
                    .entry(l.key)
                    .or_default()
                    .insert(l.id, now + l.ttl);
            }
            Admission::Admitted
        });
        if lose {
            // Done (the lease is held), and never answered.
            return Box::pin(async move {
                let _ = answer.await;
                std::future::pending().await
            });
        }
        answer
    }

    fn renew(&self, key: &str, ttl: Duration, lease: &str) -> StoreFuture<bool> {
        self.renewals.fetch_add(1, Ordering::Relaxed);
        let (key, lease) = (key.to_owned(), lease.to_owned());
        self.answer(move |st| {
            let now = Instant::now();
            match st.leases.get_mut(&key).and_then(|l| l.get_mut(&lease)) {
                Some(e) if *e > now => {
                    *e = now + ttl;
                    true
                }
                _ => false,
            }
        })
    }

    fn release(&self, key: &str, lease: &str) -> StoreFuture<()> {
        self.releases.fetch_add(1, Ordering::Relaxed);
        let (key, lease) = (key.to_owned(), lease.to_owned());
        self.answer(move |st| {
            if let Some(l) = st.leases.get_mut(&key) {
                l.remove(&lease);
            }
        })
    }
}

fn limiter(store: &Arc<MemStore>, on_failure: OnStoreFailure, cap: usize) -> RateLimitLayer {
    RateLimitLayer::builder()
        .concurrency_per_key(cap)
        .shared(
            SharedLimits::new(Arc::clone(store))
                .on_failure(on_failure)
                .lease_ttl(Duration::from_secs(30)),
        )
        .build()
        .unwrap()
}

/// Lets spawned tasks (a release, a renewal) run.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn two_limiters_share_one_cap_and_release_on_response_and_cancel() {
    let store = Arc::new(MemStore::default());
    let (a, b) = (
        limiter(&store, OnStoreFailure::FailOpen, 2),
        limiter(&store, OnStoreFailure::FailOpen, 2),
    );
    let (mock_a, mut handle_a) = mock::pair::<Req, Resp>();
    let (mock_b, mut handle_b) = mock::pair::<Req, Resp>();
    let (svc_a, svc_b) = (a.layer(mock_a), b.layer(mock_b));

    // A takes one slot, B one: the shared cap of 2 is full.
    let a1 = tokio::spawn(svc_a.clone().oneshot(req("f")));
    let (_r, send_a1) = handle_a.next_request().await.unwrap();
    let b1 = tokio::spawn(svc_b.clone().oneshot(req("f")));
    let (_r, _send_b1) = handle_b.next_request().await.unwrap();
    assert_eq!(store.held("f"), 2);

    // A second call on A has a local slot free but no lease: it waits, polling.
    let a2 = tokio::spawn(svc_a.clone().oneshot(req("f")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !a2.is_finished() && handle_a.poll_request().is_pending(),
        "over the shared cap"
    );

    // B's call is cancelled: its lease is released, and A's waiter gets it.
    b1.abort();
    let _ = b1.await;
    settle().await;
    assert_eq!(store.releases.load(Ordering::Relaxed), 1);
    let (_r, send_a2) = handle_a.next_request().await.unwrap();
    assert_eq!(store.held("f"), 2);

    // Responses release too.
    send_a1.send_response(http::Response::new(()));
    send_a2.send_response(http::Response::new(()));
    a1.await.unwrap().unwrap();
    a2.await.unwrap().unwrap();
    settle().await;
    assert_eq!(store.held("f"), 0);
    assert_eq!(a.store_failures(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_long_call_keeps_its_lease_and_a_lost_process_frees_it_after_the_ttl() {
    let store = Arc::new(MemStore::default());
    let a = limiter(&store, OnStoreFailure::FailOpen, 1);
    let (mock_a, mut handle_a) = mock::pair::<Req, Resp>();
    let svc_a = a.layer(mock_a);
    let long = tokio::spawn(svc_a.oneshot(req("f")));
    let (_r, send) = handle_a.next_request().await.unwrap();
    // 15 minutes: renewed every 10 s, never lost.
    tokio::time::sleep(Duration::from_secs(15 * 60)).await;
    assert_eq!(store.held("f"), 1);
    assert!(store.renewals.load(Ordering::Relaxed) >= 89);
    send.send_response(http::Response::new(()));
    long.await.unwrap().unwrap();
    settle().await;
    assert_eq!(store.held("f"), 0);

    // A "process" that vanishes without releasing (no renewal, no release: a lease taken
    // directly in the store) holds its slot until the TTL, no longer.
    let killed = LeaseSpec {
        key: "f".into(),
        cap: 1,
        ttl: Duration::from_secs(30),
        id: "killed".into(),
    };
    store.admit(Vec::new(), Some(killed)).await.unwrap();
    let b = limiter(&store, OnStoreFailure::FailOpen, 1);
    let (mock_b, mut handle_b) = mock::pair::<Req, Resp>();
    let start = Instant::now();
    let waiter = tokio::spawn(b.layer(mock_b).oneshot(req("f")));
    let (_r, send) = handle_b.next_request().await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_millis(30_020),
        "{waited:?}"
    );
    send.send_response(http::Response::new(()));
    waiter.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_shared_rate_holds_across_limiters_with_the_earliest_time() {
    let store = Arc::new(MemStore::default());
    let make = |mode| {
        RateLimitLayer::builder()
            .per_key(Rate {
                calls: 10,
                per: Duration::from_secs(1),
                burst: Some(2),
            })
            .mode(mode)
            .shared(SharedLimits::new(Arc::clone(&store)))
            .build()
            .unwrap()
    };
    let ok = || {
        tower::service_fn(|_r: Req| {
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
        })
    };
    let a = make(Mode::FailFast).layer(ok());
    let b = make(Mode::FailFast).layer(ok());
    a.clone().oneshot(req("f")).await.unwrap();
    b.clone().oneshot(req("f")).await.unwrap();
    // The burst of 2 is used up by the two limiters together.
    let err = a.clone().oneshot(req("f")).await.unwrap_err();
    let refusal = err.refusal().unwrap();
    assert_eq!(refusal.limit, LimitKind::Rate);
    assert_eq!(refusal.earliest, Some(Duration::from_millis(100)));
    // A waiting limiter goes when the cell is free (within its jitter of 10 ms).
    let w = make(Mode::Wait {
        jitter: Duration::from_millis(10),
    })
    .layer(ok());
    let start = Instant::now();
    w.oneshot(req("f")).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited <= Duration::from_millis(110),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_fails_open_to_the_local_limits_then_sharing_resumes() {
    let store = Arc::new(MemStore::default());
    store.health.store(FAILING, Ordering::Relaxed);
    let a = limiter(&store, OnStoreFailure::FailOpen, 1);
    let (mock_a, mut handle_a) = mock::pair::<Req, Resp>();
    let svc = a.layer(mock_a);
    // The call goes on, under the local cap of 1.
    let first = tokio::spawn(svc.clone().oneshot(req("f")));
    let (_r, send) = handle_a.next_request().await.unwrap();
    assert_eq!(a.store_failures(), Some(1));
    assert_eq!(a.in_flight("f"), 1);
    // Within `retry_after` (1 s) the store is not asked again for an admission (the
    // release of the first call's possibly orphaned lease aside).
    let asked = || store.calls.load(Ordering::Relaxed) - store.releases.load(Ordering::Relaxed);
    let calls = asked();
    let second = tokio::spawn(svc.clone().oneshot(req("f")));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        handle_a.poll_request().is_pending(),
        "the local cap still holds"
    );
    send.send_response(http::Response::new(()));
    first.await.unwrap().unwrap();
    let (_r, send) = handle_a.next_request().await.unwrap();
    send.send_response(http::Response::new(()));
    second.await.unwrap().unwrap();
    assert_eq!(asked(), calls);
    assert_eq!(a.store_failures(), Some(1));

    // The store is back; after `retry_after` calls take leases again.
    store.health.store(UP, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let third = tokio::spawn(svc.clone().oneshot(req("f")));
    let (_r, send) = handle_a.next_request().await.unwrap();
    assert_eq!(store.held("f"), 1);
    send.send_response(http::Response::new(()));
    third.await.unwrap().unwrap();
    assert_eq!(a.store_failures(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_fails_closed_within_its_timeout_or_the_deadline() {
    let store = Arc::new(MemStore::default());
    store.health.store(HANGING, Ordering::Relaxed);
    let a = limiter(&store, OnStoreFailure::FailClosed, 4);
    let (mock_a, mut handle_a) = mock::pair::<Req, Resp>();
    let svc = a.layer(mock_a);
    let start = Instant::now();
    let err = svc.clone().oneshot(req("f")).await.unwrap_err();
    // Refused after the store timeout (100 ms), without a request.
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let refusal = err.refusal().unwrap();
    assert_eq!(refusal.reason, Refusal::StoreUnavailable);
    assert_eq!(refusal.limit, LimitKind::Concurrency);
    assert!(handle_a.poll_request().is_pending());
    assert_eq!(a.store_failures(), Some(1));
    // While marked down, refused at once.
    let start = Instant::now();
    let err = svc.clone().oneshot(req("f")).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.refusal().unwrap().reason, Refusal::StoreUnavailable);

    // After `retry_after`, a call with 30 ms left before its deadline waits for the
    // store 30 ms, not 100: the store's time counts against the deadline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut r = req("f");
    r.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(30)));
    let start = Instant::now();
    let err = svc.clone().oneshot(r).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    assert_eq!(err.refusal().unwrap().reason, Refusal::Deadline);
    // That was the deadline's doing, not the store's failure.
    assert_eq!(a.store_failures(), Some(1));
}

#[test]
fn shared_settings_that_cannot_work_are_refused_at_build_time() {
    let err = RateLimitLayer::builder()
        .concurrency_per_key(1)
        .shared(SharedLimits::new(Arc::new(MemStore::default())).timeout(Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(matches!(err, InvalidLimit::Shared { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_call_refused_by_the_shared_cap_takes_no_rate_cell() {
    let store = Arc::new(MemStore::default());
    let make = || {
        RateLimitLayer::builder()
            .per_key(Rate {
                calls: 10,
                per: Duration::from_secs(1),
                burst: Some(1),
            })
            .concurrency_per_key(1)
            .mode(Mode::FailFast)
            .shared(SharedLimits::new(Arc::clone(&store)))
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    let (mock_a, mut handle_a) = mock::pair::<Req, Resp>();
    let (mock_b, mut handle_b) = mock::pair::<Req, Resp>();
    let (svc_a, svc_b) = (a.layer(mock_a), b.layer(mock_b));
    let held = tokio::spawn(svc_a.oneshot(req("f")));
    let (_r, send) = handle_a.next_request().await.unwrap();
    // One round trip admitted it: cell and lease together.
    assert_eq!(store.calls.load(Ordering::Relaxed), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = svc_b.clone().oneshot(req("f")).await.unwrap_err();
    assert_eq!(err.refusal().unwrap().limit, LimitKind::Concurrency);
    send.send_response(http::Response::new(()));
    held.await.unwrap().unwrap();
    // The refusal took no cell: the next call goes at once.
    let next = tokio::spawn(svc_b.oneshot(req("f")));
    let (_r, send) = handle_b.next_request().await.unwrap();
    send.send_response(http::Response::new(()));
    next.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_release_waits_for_a_hanging_store_at_most_its_timeout() {
    let store = Arc::new(MemStore::default());
    let a = limiter(&store, OnStoreFailure::FailOpen, 2);
    let (mock_a, mut handle_a) = mock::pair::<Req, Resp>();
    let svc = a.layer(mock_a);
    let call = tokio::spawn(svc.clone().oneshot(req("f")));
    let (_r, send) = handle_a.next_request().await.unwrap();
    assert_eq!(store.held("f"), 1);
    // The store hangs after the admission: the answer waits for the release 100 ms, no
    // more, and the store is marked down.
    store.health.store(HANGING, Ordering::Relaxed);
    send.send_response(http::Response::new(()));
    let start = Instant::now();
    call.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(a.store_failures(), Some(1));
    // The lease stays until its TTL; calls meanwhile go on (fail open), without waiting.
    assert_eq!(store.held("f"), 1);
    let start = Instant::now();
    let call = tokio::spawn(svc.clone().oneshot(req("f")));
    let (_r, send) = handle_a.next_request().await.unwrap();
    send.send_response(http::Response::new(()));
    call.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(store.held("f"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_release_never_holds_a_successful_answer_past_the_deadline() {
    let store = Arc::new(MemStore::default());
    let a = limiter(&store, OnStoreFailure::FailOpen, 2);
    let (mock_a, mut handle_a) = mock::pair::<Req, Resp>();
    let svc = crate::timeout::DeadlineLayer::new(Duration::from_millis(200)).layer(a.layer(mock_a));
    let start = Instant::now();
    let call = tokio::spawn(svc.oneshot(req("f")));
    let (_r, send) = handle_a.next_request().await.unwrap();
    // The store hangs after the admission; the answer comes 50 ms before the deadline.
    store.health.store(HANGING, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(150)).await;
    send.send_response(http::Response::new(()));
    // The release waits for the store until the deadline, not its 100 ms: the call
    // succeeds (the function ran), and that was no failure of the store.
    call.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(a.store_failures(), Some(0));
}

/// An admission the store carried out but never answered (a stall, a timeout) leaves no
/// lease behind: the orphaned lease is released, instead of holding a fleet slot for its
/// whole TTL.
#[tokio::test(start_paused = true)]
async fn an_unanswered_admission_releases_its_lease() {
    let store = Arc::new(MemStore::default());
    store.lose_next_answer.store(true, Ordering::Relaxed);
    let a = limiter(&store, OnStoreFailure::FailOpen, 1);
    let (mock_a, mut handle_a) = mock::pair::<Req, Resp>();
    let svc = a.layer(mock_a);
    let call = tokio::spawn(svc.clone().oneshot(req("f")));
    // The store times out (100 ms): the call fails open and goes on.
    let (_, send) = handle_a.next_request().await.unwrap();
    assert_eq!(a.store_failures(), Some(1));
    // The lease the store took for the lost answer is released.
    tokio::task::yield_now().await;
    assert_eq!(store.held("f"), 0);
    assert!(store.releases.load(Ordering::Relaxed) >= 1);
    send.send_response(http::Response::new(()));
    call.await.unwrap().unwrap();
}
