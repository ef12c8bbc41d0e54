//! The limiter state shared by clones: governor quotas, per-key concurrency, adaptive
//! per-key limits, and the maintenance that keeps memory bounded.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// governor on tokio's clock, so paused time drives it in tests.
#[derive(Debug, Clone)]
pub(crate) struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// How often the state of keys not used lately is dropped (at most; a pass is started
/// by the first call after this much time).
pub(crate) const MAINTENANCE_EVERY: Duration = Duration::from_secs(10);

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;
type Keyed = RateLimiter<String, DashMapStateStore<String>, TokioClock, NoOpMiddleware<Duration>>;

/// A rate: `burst` calls at once, refilled at one per `period / burst`... expressed as
/// calls per period with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls allowed per `per`.
    pub calls: u32,
    /// The period.
    pub per: Duration,
    /// Calls allowed at once (default: `calls`).
    pub burst: Option<u32>,
}

impl Rate {
    /// `calls` per second.
    pub fn per_second(calls: u32) -> Self {
        Self {
            calls,
            per: Duration::from_secs(1),
            burst: None,
        }
    }

    pub(crate) fn quota(&self) -> Option<Quota> {
        let calls = NonZeroU32::new(self.calls)?;
        let burst = NonZeroU32::new(self.burst.unwrap_or(self.calls))?;
        Quota::with_period(self.per / calls.get()).map(|q| q.allow_burst(burst))
    }
}

/// Adaptive concurrency per key: additive increase, multiplicative decrease (see the
/// module docs for why AIMD rather than CUBIC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    /// Starting limit of in-flight calls per key (default 4).
    pub initial: f64,
    /// Lowest limit (default 1).
    pub min: f64,
    /// Highest limit (default 1000).
    pub max: f64,
    /// Factor applied on a throttle (default 0.7, CUBIC's β).
    pub decrease: f64,
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            initial: 4.0,
            min: 1.0,
            max: 1000.0,
            decrease: 0.7,
        }
    }
}

/// A key's in-flight slots under the static cap: a fair (first come, first served)
/// semaphore, so a slot freed while callers wait goes to the one that waited longest.
#[derive(Debug)]
pub(crate) struct StaticSlots {
    pub sem: Semaphore,
    cap: usize,
}

impl StaticSlots {
    fn new(cap: usize) -> Self {
        let cap = cap.min(Semaphore::MAX_PERMITS);
        Self {
            sem: Semaphore::new(cap),
            cap,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.cap.saturating_sub(self.sem.available_permits())
    }
}

/// A key's in-flight slots under the adaptive limit: a fair semaphore whose permits
/// follow the integer part of the limit (added as it grows; forgotten, or kept back as
/// calls return, as it falls).
#[derive(Debug)]
pub(crate) struct AdaptiveSlots {
    pub sem: Semaphore,
    pub state: Mutex<AdaptiveState>,
}

#[derive(Debug)]
pub(crate) struct AdaptiveState {
    pub limit: f64,
    /// Permits in circulation once `debt` is paid: the limit rounded down, at least 1.
    cap: usize,
    /// Permits held by calls beyond `cap` after a decrease: returned ones are dropped
    /// until this is zero. While it is not, no permit is available.
    debt: usize,
    pub in_flight: usize,
    /// Bumped at each decrease: one decrease per round of calls, not per throttle.
    pub epoch: u64,
    pub last_used: Instant,
}

fn permits(limit: f64) -> usize {
    // A saturating conversion; the limit is finite and at most `Adaptive::max`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = limit.floor().max(1.0) as usize;
    n.min(Semaphore::MAX_PERMITS)
}

impl AdaptiveSlots {
    fn new(limit: f64) -> Self {
        let cap = permits(limit);
        Self {
            sem: Semaphore::new(cap),
            state: Mutex::new(AdaptiveState {
                limit,
                cap,
                debt: 0,
                in_flight: 0,
                epoch: 0,
                last_used: Instant::now(),
            }),
        }
    }

    /// Counts a call that took a permit; returns the epoch it was admitted under.
    pub(crate) fn admitted(&self) -> u64 {
        let mut st = lock(&self.state);
        st.in_flight += 1;
        st.last_used = Instant::now();
        st.epoch
    }

    /// Returns a call's permit (or drops it, to pay a debt).
    pub(crate) fn release(&self) {
        let mut st = lock(&self.state);
        st.in_flight = st.in_flight.saturating_sub(1);
        st.last_used = Instant::now();
        if st.debt > 0 {
            st.debt -= 1;
        } else {
            self.sem.add_permits(1);
        }
    }

    /// Moves the limit; the permits follow its integer part.
    pub(crate) fn set_limit(&self, st: &mut AdaptiveState, limit: f64) {
        st.limit = limit;
        let cap = permits(limit);
        if cap > st.cap {
            let more = cap - st.cap;
            let paid = more.min(st.debt);
            st.debt -= paid;
            self.sem.add_permits(more - paid);
        } else if cap < st.cap {
            let fewer = st.cap - cap;
            st.debt += fewer - self.sem.forget_permits(fewer);
        }
        st.cap = cap;
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The entry of `key`, made if missing (the key is allocated only then).
fn entry<V>(map: &DashMap<String, Arc<V>>, key: &str, make: impl FnOnce() -> V) -> Arc<V> {
    if let Some(v) = map.get(key) {
        return Arc::clone(&v);
    }
    Arc::clone(
        &map.entry(key.to_owned())
            .or_insert_with(|| Arc::new(make())),
    )
}

pub(crate) struct Limits {
    pub clock: TokioClock,
    pub global: Option<Direct>,
    pub keyed: Option<Keyed>,
    /// Keys with a rate of their own (fixed at build time: read without a lock).
    pub key_rates: HashMap<String, Direct>,
    pub concurrency: Option<usize>,
    pub adaptive: Option<Adaptive>,
    pub conc: DashMap<String, Arc<StaticSlots>>,
    pub adapt: DashMap<String, Arc<AdaptiveSlots>>,
    /// When the last maintenance pass started (nanoseconds on `clock`).
    last_pass: AtomicU64,
    pub idle_ttl: Duration,
    pub mode: super::Mode,
    /// The longest one wait in the limiter lasts.
    pub max_wait: Duration,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A key map with more shards than dashmap's default (4 × CPUs): the maintenance pass
/// holds one shard at a time, so a shard's share of the keys is what a caller of a key
/// in it may wait for.
fn key_map<V>() -> DashMap<String, V> {
    DashMap::with_shard_amount(64)
}

impl Limits {
    pub(crate) fn new(
        global: Option<Rate>,
        per_key: Option<Rate>,
        key_rates: Vec<(String, Rate)>,
        concurrency: Option<usize>,
        adaptive: Option<Adaptive>,
        mode: super::Mode,
        max_wait: Duration,
    ) -> Self {
        let clock = TokioClock::new();
        Self {
            global: global
                .and_then(|r| r.quota())
                .map(|q| RateLimiter::direct_with_clock(q, clock.clone())),
            keyed: per_key
                .and_then(|r| r.quota())
                .map(|q| RateLimiter::new(q, DashMapStateStore::default(), clock.clone())),
            // A zero rate makes no quota, as for the other rates: the key then keeps the
            // per-key rate.
            key_rates: key_rates
                .into_iter()
                .filter_map(|(key, rate)| {
                    let q = rate.quota()?;
                    Some((key, RateLimiter::direct_with_clock(q, clock.clone())))
                })
                .collect(),
            clock,
            concurrency,
            adaptive,
            conc: key_map(),
            adapt: key_map(),
            last_pass: AtomicU64::new(0),
            idle_ttl: Duration::from_secs(60),
            mode,
            max_wait,
        }
    }

    /// The static slots of `key`.
    pub(crate) fn static_slots(&self, key: &str, cap: usize) -> Arc<StaticSlots> {
        entry(&self.conc, key, || StaticSlots::new(cap))
    }

    /// The adaptive slots of `key`.
    pub(crate) fn adaptive_slots(&self, key: &str, a: &Adaptive) -> Arc<AdaptiveSlots> {
        entry(&self.adapt, key, || AdaptiveSlots::new(a.initial))
    }

    /// The wait before a cell of the global and the key's quota is free (zero: taken now).
    pub(crate) fn check_rate(&self, key: Option<&str>) -> Duration {
        let now = self.clock.now();
        if let Some(g) = &self.global {
            if let Err(not_until) = g.check() {
                return not_until.wait_time_from(now).max(Duration::from_nanos(1));
            }
        }
        let Some(key) = key else {
            return Duration::ZERO;
        };
        let checked = match self.key_rates.get(key) {
            Some(own) => own.check(),
            None => match &self.keyed {
                Some(k) => k.check_key(&key.to_owned()),
                None => Ok(()),
            },
        };
        if let Err(not_until) = checked {
            return not_until.wait_time_from(now).max(Duration::from_nanos(1));
        }
        Duration::ZERO
    }

    /// Drops state of keys not used lately, so memory does not grow with the number of
    /// keys ever seen. Runs on a task of its own (see [`Self::maintenance_due`]), never
    /// in a call; it locks one shard of a key map at a time, so callers of keys in other
    /// shards do not wait for it.
    pub(crate) fn maintain(&self) {
        if let Some(k) = &self.keyed {
            k.retain_recent();
            k.shrink_to_fit();
        }
        // Every caller that holds or waits for a slot holds a reference to its key's
        // slots, and references are only taken under the shard lock `retain` holds:
        // state is dropped only when no call refers to it (a waiter on dropped state
        // would wait on a queue nobody serves again).
        self.conc.retain(|_, s| Arc::strong_count(s) > 1);
        let ttl = self.idle_ttl;
        self.adapt
            .retain(|_, s| Arc::strong_count(s) > 1 || lock(&s.state).last_used.elapsed() < ttl);
    }

    /// Starts a maintenance pass if the last one is [`MAINTENANCE_EVERY`] old: on its own
    /// task, so the caller does O(1) work (a clock read and an atomic load). The task
    /// holds a [`Weak`] reference and lives for one pass; a limiter dropped before it
    /// runs is not kept alive by it. With no tokio runtime nothing is spawned (call
    /// [`maintain`](Self::maintain) yourself on other executors).
    pub(crate) fn maintenance_due(self: &Arc<Self>) {
        if !self.keeps_key_state() {
            return;
        }
        let now = nanos(self.clock.now());
        let last = self.last_pass.load(Ordering::Relaxed);
        if now.saturating_sub(last) < nanos(MAINTENANCE_EVERY)
            || self
                .last_pass
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let limits = Arc::downgrade(self);
            runtime.spawn(async move {
                if let Some(limits) = limits.upgrade() {
                    limits.maintain();
                }
            });
        }
    }

    fn keeps_key_state(&self) -> bool {
        self.keyed.is_some() || self.concurrency.is_some() || self.adaptive.is_some()
    }

    /// Whether any limit is configured.
    pub(crate) fn any(&self) -> bool {
        self.global.is_some()
            || self.keyed.is_some()
            || !self.key_rates.is_empty()
            || self.concurrency.is_some()
            || self.adaptive.is_some()
    }

    /// Keys with rate state (for tests and metrics).
    pub(crate) fn keyed_len(&self) -> usize {
        self.keyed.as_ref().map_or(0, RateLimiter::len)
    }
}
