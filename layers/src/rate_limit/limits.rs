//! The limiter state shared by clones: the rate cells, the state of each key (its rate
//! cell, its queue for rate waits, its concurrency slots, its adaptive limit), and the
//! maintenance that keeps memory bounded.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::error::InvalidLimit;
use super::gcra::Gcra;
use super::shards::ShardedMap;

/// How often the state of keys not used lately is dropped (at most; a pass is started
/// by the first call after this much time).
pub(crate) const MAINTENANCE_EVERY: Duration = Duration::from_secs(10);

/// A rate: `calls` per `per`, up to `burst` of them at once (one more call is allowed
/// every `per / calls`). A rate that admits no call (0 calls, a burst of 0, a zero
/// period) is an error of [`RateLimitBuilder::build`](super::RateLimitBuilder::build).
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

    /// The interval between calls in nanoseconds and the burst, or `None` for a rate
    /// that admits no call (zero calls or burst) or whose calls are under a nanosecond
    /// apart.
    fn cell(&self) -> Option<(u64, u32)> {
        let burst = self.burst.unwrap_or(self.calls);
        if self.calls == 0 || burst == 0 {
            return None;
        }
        let interval = nanos(self.per) / u64::from(self.calls);
        (interval > 0).then_some((interval, burst))
    }

    /// [`cell`](Self::cell), or the error naming the limit.
    fn checked(&self, limit: &'static str, key: Option<&str>) -> Result<(u64, u32), InvalidLimit> {
        self.cell().ok_or_else(|| InvalidLimit::Rate {
            limit,
            key: key.map(str::to_owned),
            rate: *self,
        })
    }
}

/// Adaptive concurrency per key: a slow start, then additive increase, multiplicative
/// decrease (see the module docs for why AIMD rather than CUBIC).
///
/// Until its first throttle a key's limit doubles every round of calls (slow start:
/// each success admits two more calls); from then on it grows by one per round, and a
/// throttle cuts it by `decrease`. A success is an attempt that completed without a
/// throttle, or one still in flight after `accepted_after`: Lambda refuses a call over a
/// concurrency limit at once, so a call still running has its unit of concurrency, and
/// calls of 15 minutes need not end for the limit to grow. What a key learned is kept
/// while it is used, and for `forget_after` after its last call.
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
    /// An attempt still in flight this long after it was sent counts as accepted, a
    /// success for the growth of the limit (default 1 s; `None`: only completed
    /// attempts count). A throttle answered later still lowers the limit.
    pub accepted_after: Option<Duration>,
    /// How long a key's limit is kept after its last call (default 15 minutes, the
    /// longest a Lambda function runs): idle gaps shorter than this keep what was
    /// learned; after a longer one the key starts again at `initial`, in slow start.
    pub forget_after: Duration,
}

impl Adaptive {
    fn check(&self) -> Result<(), InvalidLimit> {
        let finite = [self.initial, self.min, self.max, self.decrease]
            .iter()
            .all(|v| v.is_finite());
        let problem = if !finite {
            "a value is not finite"
        } else if self.min <= 0.0 {
            "min must be above 0"
        } else if !(self.min <= self.initial && self.initial <= self.max) {
            "initial must be within min..=max"
        } else if !(self.decrease > 0.0 && self.decrease < 1.0) {
            "decrease must be between 0 and 1, exclusive"
        } else if self.accepted_after == Some(Duration::ZERO) {
            "accepted_after must be above 0"
        } else {
            return Ok(());
        };
        Err(InvalidLimit::Adaptive {
            adaptive: *self,
            problem,
        })
    }
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            initial: 4.0,
            min: 1.0,
            max: 1000.0,
            decrease: 0.7,
            accepted_after: Some(Duration::from_secs(1)),
            forget_after: Duration::from_secs(15 * 60),
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
    /// Until the first throttle: the limit doubles every round.
    pub slow_start: bool,
    /// Slots handed to waiters before the last decrease whose calls have not counted
    /// themselves in yet: they belong to the round before it.
    pub stale: usize,
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
                slow_start: true,
                stale: 0,
                last_used: Instant::now(),
            }),
        }
    }

    /// Counts a call that took a permit; returns the epoch it was admitted under (the
    /// one before the last decrease if the permit was handed over before it).
    pub(crate) fn admitted(&self) -> u64 {
        let mut st = lock(&self.state);
        st.in_flight += 1;
        st.last_used = Instant::now();
        if st.stale > 0 {
            st.stale -= 1;
            st.epoch.wrapping_sub(1)
        } else {
            st.epoch
        }
    }

    /// Cuts the limit after a throttle: a new round begins.
    pub(crate) fn decrease(&self, st: &mut AdaptiveState, limit: f64) {
        // Permits already handed to waiters were given under the old limit: their
        // throttles must not cut the new one again.
        st.stale = self.used(st).saturating_sub(st.in_flight);
        self.set_limit(st, limit);
        st.epoch += 1;
        st.slow_start = false;
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

    /// Slots taken: held by calls in flight, or handed to waiters about to run.
    pub(crate) fn used(&self, st: &AdaptiveState) -> usize {
        (st.cap + st.debt).saturating_sub(self.sem.available_permits())
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

/// The state of one key. Every call under the key holds a reference to it while it waits
/// or holds a slot: maintenance drops only state that no call refers to.
#[derive(Debug)]
pub(crate) struct KeyState {
    pub name: Arc<str>,
    /// The key's rate: its own, or the per-key rate.
    pub rate: Option<Gcra>,
    /// The queue of the key's calls waiting for a rate cell: only its head waits for
    /// the cells, so the key's callers take turns, and a key with many callers counts as
    /// one in the queue for the global rate.
    pub rate_turn: Semaphore,
    pub slots: Option<StaticSlots>,
    pub adaptive: Option<AdaptiveSlots>,
}

impl KeyState {
    /// Whether dropping this state loses nothing but a learned limit older than `ttl`.
    fn idle(&self, now: u64, ttl: Duration) -> bool {
        self.rate.as_ref().is_none_or(|c| c.is_full(now))
            && self
                .adaptive
                .as_ref()
                .is_none_or(|a| lock(&a.state).last_used.elapsed() >= ttl)
    }
}

/// What [`RateLimitBuilder`](super::RateLimitBuilder) collects.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub global: Option<Rate>,
    pub per_key: Option<Rate>,
    pub key_rates: Vec<(String, Rate)>,
    pub concurrency: Option<usize>,
    pub adaptive: Option<Adaptive>,
    pub mode: super::Mode,
    pub max_wait: Duration,
    pub count: super::RateCount,
    pub shared: Option<super::store::SharedLimits>,
}

pub(crate) struct Limits {
    origin: Instant,
    pub global: Option<Gcra>,
    /// The per-key rate, as (interval, burst).
    per_key: Option<(u64, u32)>,
    /// Keys with a rate of their own, as (interval, burst).
    key_rates: HashMap<String, (u64, u32)>,
    pub concurrency: Option<usize>,
    pub adaptive: Option<Adaptive>,
    keys: ShardedMap<KeyState>,
    /// The queue for rate waits of calls with no key (as a key's `rate_turn`).
    pub unkeyed_turn: Semaphore,
    /// The queue of the heads of the rate queues waiting for the global rate: keys take
    /// turns at it, first come, first served.
    pub global_turn: Semaphore,
    /// When the last maintenance pass started (nanoseconds on the limiter's clock).
    last_pass: AtomicU64,
    pub mode: super::Mode,
    /// The longest one wait in the limiter lasts.
    pub max_wait: Duration,
    pub count: super::RateCount,
    /// The store the rates and concurrency caps are shared through, if any.
    pub shared: Option<super::store::Shared>,
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Limits {
    /// The limits, or the first one that cannot be enforced as written: a rate that
    /// admits no call, a cap of no call, adaptive settings out of range. None of them
    /// is ever taken to mean "no limit".
    pub(crate) fn new(settings: Settings) -> Result<Self, InvalidLimit> {
        let Settings {
            global,
            per_key,
            key_rates,
            concurrency,
            adaptive,
            mode,
            max_wait,
            count,
            shared,
        } = settings;
        if let Some(problem) = shared.as_ref().and_then(|s| s.problem()) {
            return Err(InvalidLimit::Shared { problem });
        }
        if concurrency == Some(0) {
            return Err(InvalidLimit::Concurrency);
        }
        if let Some(a) = &adaptive {
            a.check()?;
        }
        let global = global.map(|r| r.checked("global", None)).transpose()?;
        Ok(Self {
            origin: Instant::now(),
            global: global.map(|(interval, burst)| Gcra::new(interval, burst)),
            per_key: per_key.map(|r| r.checked("per-key", None)).transpose()?,
            key_rates: key_rates
                .into_iter()
                .map(|(key, rate)| {
                    let cell = rate.checked("key", Some(&key))?;
                    Ok((key, cell))
                })
                .collect::<Result<_, _>>()?,
            concurrency,
            adaptive,
            keys: ShardedMap::new(),
            unkeyed_turn: Semaphore::new(1),
            global_turn: Semaphore::new(1),
            last_pass: AtomicU64::new(0),
            mode,
            max_wait,
            count,
            shared: shared.map(super::store::Shared::new),
        })
    }

    /// Now, in nanoseconds on the limiter's clock (tokio's: paused time drives it).
    pub(crate) fn now(&self) -> u64 {
        nanos(self.origin.elapsed())
    }

    /// The state of `key`, made if missing; `None` if no limit applies to the key.
    pub(crate) fn key(&self, key: &str) -> Option<Arc<KeyState>> {
        if let Some(s) = self.keys.get(key) {
            return Some(s);
        }
        let rate = self.key_rates.get(key).copied().or(self.per_key);
        if rate.is_none() && self.concurrency.is_none() && self.adaptive.is_none() {
            return None;
        }
        let name: Arc<str> = Arc::from(key);
        Some(
            self.keys
                .get_or_insert_with(Arc::clone(&name), || KeyState {
                    name,
                    rate: rate.map(|(interval, burst)| Gcra::new(interval, burst)),
                    rate_turn: Semaphore::new(1),
                    slots: self.concurrency.map(StaticSlots::new),
                    adaptive: self.adaptive.map(|a| AdaptiveSlots::new(a.initial)),
                }),
        )
    }

    /// The state of `key` if it has any now.
    pub(crate) fn existing(&self, key: &str) -> Option<Arc<KeyState>> {
        self.keys.get(key)
    }

    /// Takes a cell of the key's rate, then of the global rate; a cell of the key's
    /// rate taken for a call the global rate refuses is given back. So a call refused by
    /// either leaves both as it found them. Refused: which rate (the global one: true),
    /// and how long until it has a cell.
    pub(crate) fn take_cells(&self, cell: Option<&Gcra>) -> Result<(), (bool, Duration)> {
        let now = self.now();
        if let Some(c) = cell {
            c.take(now).map_err(|wait| (false, wait))?;
        }
        if let Some(g) = &self.global {
            if let Err(wait) = g.take(now) {
                if let Some(c) = cell {
                    c.give_back();
                }
                return Err((true, wait));
            }
        }
        Ok(())
    }

    /// How long until both the key's rate and the global rate have a cell. Takes none.
    pub(crate) fn cells_wait(&self, cell: Option<&Gcra>) -> Duration {
        let now = self.now();
        let key = cell.map_or(Duration::ZERO, |c| c.wait(now));
        let global = self.global.as_ref().map_or(Duration::ZERO, |g| g.wait(now));
        key.max(global)
    }

    /// Drops state of keys not used lately, so memory does not grow with the number of
    /// keys ever seen. Runs on a task of its own (see [`Self::maintenance_due`]), never
    /// in a call; it locks one shard of a key map at a time, so callers of keys in other
    /// shards do not wait for it.
    pub(crate) fn maintain(&self) {
        let now = self.now();
        let ttl = self.adaptive.map_or(Duration::ZERO, |a| a.forget_after);
        // References to a key's state are only taken under the shard lock `retain`
        // holds: state is dropped only when no call refers to it (a waiter on dropped
        // state would wait on a queue nobody serves again).
        self.keys
            .retain(|s| Arc::strong_count(s) > 1 || !s.idle(now, ttl));
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
        let now = self.now();
        crate::maintenance::spawn_if_due(
            self,
            &self.last_pass,
            now,
            nanos(MAINTENANCE_EVERY),
            Self::maintain,
        );
    }

    /// Whether some limit keeps state per key.
    pub(crate) fn keeps_key_state(&self) -> bool {
        self.per_key.is_some()
            || !self.key_rates.is_empty()
            || self.concurrency.is_some()
            || self.adaptive.is_some()
    }

    /// Whether some limit applies to each attempt (in the feedback layer): an adaptive
    /// limit, or rates that count retries.
    pub(crate) fn attempt_limits(&self) -> bool {
        self.adaptive.is_some()
            || (self.count == super::RateCount::Attempts
                && (self.global.is_some() || self.per_key.is_some() || !self.key_rates.is_empty()))
    }

    /// Whether any limit is configured.
    pub(crate) fn any(&self) -> bool {
        self.global.is_some() || self.keeps_key_state()
    }

    /// Keys with state now.
    pub(crate) fn keys_len(&self) -> usize {
        self.keys.len()
    }
}
