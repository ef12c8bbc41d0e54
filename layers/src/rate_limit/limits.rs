//! The limiter state shared by clones: governor quotas, per-key concurrency, adaptive
//! per-key limits, and the maintenance that keeps memory bounded.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;
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

#[derive(Debug)]
pub(crate) struct AdaptiveState {
    pub limit: f64,
    pub in_flight: usize,
    /// Bumped at each decrease: one decrease per round of calls, not per throttle.
    pub epoch: u64,
    pub last_used: Instant,
    pub notify: Arc<Notify>,
}

#[derive(Debug)]
pub(crate) struct ConcurrencyState {
    pub in_flight: usize,
    pub notify: Arc<Notify>,
}

pub(crate) struct Limits {
    pub clock: TokioClock,
    pub global: Option<Direct>,
    pub keyed: Option<Keyed>,
    /// Keys with a rate of their own (fixed at build time: read without a lock).
    pub key_rates: HashMap<String, Direct>,
    pub concurrency: Option<usize>,
    pub adaptive: Option<Adaptive>,
    pub conc: DashMap<String, ConcurrencyState>,
    pub adapt: DashMap<String, AdaptiveState>,
    /// When the last maintenance pass started (nanoseconds on `clock`).
    last_pass: AtomicU64,
    pub idle_ttl: Duration,
    pub mode: super::Mode,
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
        }
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
        // A waiter holds a clone of its key's `notify`: state that a waiter still refers
        // to is kept, or the waiter would sleep on a wake-up list nobody signals again
        // (the next caller would make fresh state with a list of its own).
        let referenced = |n: &Arc<Notify>| Arc::strong_count(n) > 1;
        self.conc
            .retain(|_, s| s.in_flight > 0 || referenced(&s.notify));
        let ttl = self.idle_ttl;
        self.adapt
            .retain(|_, s| s.in_flight > 0 || referenced(&s.notify) || s.last_used.elapsed() < ttl);
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
