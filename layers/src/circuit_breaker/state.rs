//! The circuits, one per key: the sampling window, the state machine, and the key map
//! with its memory bound.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::classify::Outcome;
use super::clock::Clock;
use super::config::CircuitBreakerConfig;
use super::error::{CircuitOpen, CircuitState};

/// The window is kept in this many buckets.
const BUCKETS: usize = 10;
/// A maintenance pass runs at most this often (on a task of its own), more often only
/// when the key cap is reached (at most once per bucket, and per millisecond).
pub(crate) const MAINTENANCE_EVERY: Duration = Duration::from_secs(10);

pub(crate) type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not disable the breaker: its state stays consistent
    // between statements.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    calls: u32,
    failures: u32,
}

/// Outcomes of the last `sampling_window`, in buckets of a tenth of it.
#[derive(Debug, Default)]
pub(crate) struct Window {
    buckets: [Bucket; BUCKETS],
    /// The bucket number (since the breaker's origin) of the newest bucket.
    head: u64,
}

impl Window {
    /// Counts one call in bucket `index`; returns the calls and failures in the window.
    fn record(&mut self, index: u64, failure: bool) -> (u32, u32) {
        if index > self.head {
            // Buckets between the old head and the new one saw no call: empty them.
            let stale = (index - self.head).min(BUCKETS as u64);
            for i in 1..=stale {
                self.buckets[((self.head + i) % BUCKETS as u64) as usize] = Bucket::default();
            }
            self.head = index;
        }
        let b = &mut self.buckets[(self.head % BUCKETS as u64) as usize];
        b.calls = b.calls.saturating_add(1);
        b.failures = b.failures.saturating_add(u32::from(failure));
        self.totals()
    }

    fn totals(&self) -> (u32, u32) {
        self.buckets.iter().fold((0u32, 0u32), |(c, f), b| {
            (c.saturating_add(b.calls), f.saturating_add(b.failures))
        })
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
        /// The probes' lease: when none has answered by then, they count as failed.
        lease_until: Instant,
    },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped at every transition: a result counts only in the state its call was let
    /// through in.
    epoch: u64,
    window: Window,
    /// When the circuit first opened since it was last closed.
    opened_at: Instant,
    /// Openings since the circuit was last closed: the break doubles with each.
    opens: u32,
    last_used: Instant,
}

/// One key's circuit.
#[derive(Debug)]
pub(crate) struct Circuit {
    key: Box<str>,
    count_target_errors: bool,
    inner: Mutex<Inner>,
}

/// A call let through: the state it was let through in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    epoch: u64,
    probe: bool,
}

/// A state change, traced once the circuit's lock is released.
enum Transition {
    Opened {
        reason: &'static str,
        calls: u32,
        failures: u32,
        opens: u32,
        break_for: Duration,
    },
    HalfOpen,
    Closed,
}

fn emit(key: &str, t: Transition) {
    match t {
        Transition::Opened {
            reason,
            calls,
            failures,
            opens,
            break_for,
        } => tracing::warn!(
            key,
            reason,
            calls,
            failures,
            opens,
            break_ms = break_for.as_millis() as u64,
            "circuit opened"
        ),
        Transition::HalfOpen => tracing::info!(key, "circuit half-open"),
        Transition::Closed => tracing::info!(key, "circuit closed"),
    }
}

/// All circuits and what deciding needs, shared by the layer, its services and their
/// calls in flight.
pub(crate) struct Breaker {
    pub(crate) config: CircuitBreakerConfig,
    clock: Arc<dyn Clock>,
    jitter: Jitter,
    origin: Instant,
    bucket_nanos: u64,
    keys: RwLock<HashMap<Box<str>, Arc<Circuit>>>,
    /// When the last maintenance pass was started (nanoseconds since `origin`).
    last_pass: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(config: CircuitBreakerConfig, clock: Arc<dyn Clock>, jitter: Jitter) -> Self {
        let config = config.normalized();
        let bucket_nanos = u64::try_from(config.sampling_window.as_nanos() / BUCKETS as u128)
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            origin: clock.now(),
            config,
            clock,
            jitter,
            bucket_nanos,
            keys: RwLock::default(),
            last_pass: AtomicU64::new(0),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    fn bucket(&self, now: Instant) -> u64 {
        // In u64 nanoseconds (584 years), a cheaper division than u128's.
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX) / self.bucket_nanos
    }

    /// The circuit of `key`, made if new; `None` when the key cap is reached and no idle
    /// key can make room (the call is then not guarded).
    pub(crate) fn circuit(self: &Arc<Self>, key: &str) -> Option<Arc<Circuit>> {
        {
            let map = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = map.get(key) {
                return Some(Arc::clone(c));
            }
        }
        let mut map = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get(key) {
            return Some(Arc::clone(c));
        }
        let now = self.now();
        if map.len() >= self.config.max_keys {
            drop(map);
            // Sweeping is O(keys): never in a call. A pass on its own task makes room
            // for the keys that come after it.
            let bucket = Duration::from_nanos(self.bucket_nanos).max(Duration::from_millis(1));
            self.maintenance_due(now, bucket);
            tracing::debug!(
                key,
                max_keys = self.config.max_keys,
                "circuit breaker full: key not guarded"
            );
            return None;
        }
        let circuit = Arc::new(Circuit {
            key: key.into(),
            count_target_errors: self.config.counts_target_errors(key),
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                epoch: 0,
                window: Window::default(),
                opened_at: now,
                opens: 0,
                last_used: now,
            }),
        });
        map.insert(key.into(), Arc::clone(&circuit));
        Some(circuit)
    }

    /// Whether a circuit no call refers to can be dropped:
    /// closed ones unused for a window (their window is empty: nothing is lost), open
    /// ones whose break ended a window ago, and half-open ones with no probe in flight
    /// unused for a window (nobody has wanted the target since its break ended: its
    /// next call starts closed, and a broken target opens it again).
    fn droppable(&self, c: &Arc<Circuit>, now: Instant) -> bool {
        if Arc::strong_count(c) > 1 {
            return false;
        }
        let window = self.config.sampling_window;
        let g = lock(&c.inner);
        let idle = now.saturating_duration_since(g.last_used) >= window;
        match g.phase {
            Phase::Closed => idle,
            Phase::Open { until } => now.saturating_duration_since(until) >= window,
            Phase::HalfOpen { in_flight, .. } => in_flight == 0 && idle,
        }
    }

    /// Drops the circuits that no call in flight uses and that are idle for a whole
    /// window. The scan holds the map's read lock (calls of known keys go on); only the
    /// removals take the write lock. Runs on a task of its own (see
    /// [`Self::maintenance_due`]), never in a call; callable directly on other executors.
    pub(crate) fn maintain(&self) {
        let now = self.now();
        let stale: Vec<Box<str>> = {
            let map = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            map.iter()
                .filter(|(_, c)| self.droppable(c, now))
                .map(|(k, _)| k.clone())
                .collect()
        };
        if stale.is_empty() {
            return;
        }
        let mut map = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let before = map.len();
        for key in stale {
            // Checked again: a call may have taken the circuit since the scan (references
            // are only taken under the map's lock, which this holds).
            if map.get(&key).is_some_and(|c| self.droppable(c, now)) {
                map.remove(&key);
            }
        }
        if map.len() < before {
            tracing::debug!(
                dropped = before - map.len(),
                kept = map.len(),
                "idle circuits dropped"
            );
        }
    }

    /// Starts a maintenance pass if the last one is `every` old: on its own task, so the
    /// caller does O(1) work (an atomic load). The task holds a weak reference and lives
    /// for one pass. With no tokio runtime nothing is spawned (call
    /// [`maintain`](Self::maintain) yourself on other executors).
    pub(crate) fn maintenance_due(self: &Arc<Self>, now: Instant, every: Duration) {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        let now_n = u64::try_from(since).unwrap_or(u64::MAX);
        let every_n = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
        crate::maintenance::spawn_if_due(self, &self.last_pass, now_n, every_n, Self::maintain);
    }

    /// Called once per guarded call: starts a pass every [`MAINTENANCE_EVERY`].
    pub(crate) fn tick(self: &Arc<Self>) {
        let now = self.now();
        self.maintenance_due(now, MAINTENANCE_EVERY);
    }

    pub(crate) fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The state of `key` now: an open circuit whose break has ended reads half-open
    /// (it becomes so at its next call). Unknown keys are closed.
    pub(crate) fn state(&self, key: &str) -> CircuitState {
        let circuit = {
            let map = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            match map.get(key) {
                Some(c) => Arc::clone(c),
                None => return CircuitState::Closed,
            }
        };
        let phase = lock(&circuit.inner).phase;
        match phase {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { until } if self.now() < until => CircuitState::Open,
            // Its probes outlived their lease: it opens again at the next call.
            Phase::HalfOpen {
                in_flight,
                successes,
                lease_until,
            } if in_flight.saturating_add(successes) >= self.config.half_open_probes
                && self.now() >= lease_until =>
            {
                CircuitState::Open
            }
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// The calls and failures in the window of `key` (for tests).
    #[cfg(test)]
    pub(crate) fn window(&self, key: &str) -> Option<(u32, u32)> {
        let map = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|c| lock(&c.inner).window.totals())
    }

    /// Lets a call through, or refuses it.
    pub(crate) fn admit(&self, circuit: &Circuit) -> Result<Ticket, Box<CircuitOpen>> {
        let mut g = lock(&circuit.inner);
        let mut transition = None;
        let result = match g.phase {
            // The common case reads no clock.
            Phase::Closed => Ok(Ticket {
                epoch: g.epoch,
                probe: false,
            }),
            Phase::Open { until } => {
                let now = self.now();
                g.last_used = now;
                if now < until {
                    Err(refusal(circuit, &g, now, CircuitState::Open, until - now))
                } else {
                    g.phase = Phase::HalfOpen {
                        in_flight: 1,
                        successes: 0,
                        lease_until: self.lease_from(now),
                    };
                    g.epoch += 1;
                    transition = Some(Transition::HalfOpen);
                    Ok(Ticket {
                        epoch: g.epoch,
                        probe: true,
                    })
                }
            }
            Phase::HalfOpen {
                in_flight,
                successes,
                lease_until,
            } => {
                let now = self.now();
                g.last_used = now;
                if in_flight.saturating_add(successes) < self.config.half_open_probes {
                    g.phase = Phase::HalfOpen {
                        in_flight: in_flight + 1,
                        successes,
                        lease_until: self.lease_from(now),
                    };
                    Ok(Ticket {
                        epoch: g.epoch,
                        probe: true,
                    })
                } else if now < lease_until {
                    Err(refusal(
                        circuit,
                        &g,
                        now,
                        CircuitState::HalfOpen,
                        lease_until - now,
                    ))
                } else {
                    // The probes in flight outlived their lease: they count as failed
                    // (a hung target is not a healthy one), and their late answers,
                    // of an earlier epoch, will not count.
                    let t = self.open(&mut g, now, "probe timed out", in_flight, in_flight);
                    transition = Some(t);
                    let until = match g.phase {
                        Phase::Open { until } => until,
                        _ => now,
                    };
                    Err(refusal(
                        circuit,
                        &g,
                        now,
                        CircuitState::Open,
                        until.saturating_duration_since(now),
                    ))
                }
            }
        };
        drop(g);
        if let Some(t) = transition {
            emit(&circuit.key, t);
        }
        if let Err(open) = &result {
            tracing::debug!(key = %circuit.key, state = %open.state, "refused: circuit open");
        }
        result
    }

    /// Counts the outcome of a call let through with `ticket`.
    pub(crate) fn record(&self, circuit: &Circuit, ticket: Ticket, outcome: Outcome) {
        let now = self.now();
        let mut g = lock(&circuit.inner);
        g.last_used = now;
        if ticket.epoch != g.epoch {
            // Let through in an earlier state: it says nothing of this one.
            return;
        }
        let config = &self.config;
        // Some(true): a failure; Some(false): a success; None: not counted.
        let failed = match outcome {
            Outcome::Success => Some(false),
            Outcome::Failure | Outcome::Broken => Some(true),
            Outcome::Throttled | Outcome::Local => None,
            Outcome::ClientFault => config.count_client_faults.then_some(true),
            Outcome::TargetError => Some(circuit.count_target_errors),
        };
        let transition = match g.phase {
            Phase::Closed => {
                let Some(failed) = failed else { return };
                let (calls, failures) = g.window.record(self.bucket(now), failed);
                if outcome == Outcome::Broken && config.open_on_broken {
                    Some(self.open(&mut g, now, "broken", calls, failures))
                } else if calls >= config.minimum_calls
                    && f64::from(failures) >= config.failure_ratio * f64::from(calls)
                {
                    Some(self.open(&mut g, now, "failure ratio", calls, failures))
                } else {
                    None
                }
            }
            Phase::HalfOpen {
                in_flight,
                successes,
                lease_until,
            } if ticket.probe => {
                let in_flight = in_flight.saturating_sub(1);
                match failed {
                    None => {
                        g.phase = Phase::HalfOpen {
                            in_flight,
                            successes,
                            lease_until,
                        };
                        None
                    }
                    Some(false) if successes + 1 >= config.half_open_probes => {
                        g.phase = Phase::Closed;
                        g.opens = 0;
                        g.epoch += 1;
                        // What the window held led to the opening: start afresh.
                        g.window.clear();
                        Some(Transition::Closed)
                    }
                    Some(false) => {
                        g.phase = Phase::HalfOpen {
                            in_flight,
                            successes: successes + 1,
                            lease_until,
                        };
                        None
                    }
                    Some(true) => Some(self.open(&mut g, now, "probe failed", 1, 1)),
                }
            }
            // Opening bumps the epoch: no call of this epoch can end while open.
            Phase::HalfOpen { .. } | Phase::Open { .. } => None,
        };
        drop(g);
        if let Some(t) = transition {
            emit(&circuit.key, t);
        }
    }

    /// A probe ended without a result (its future was dropped): its slot is free.
    pub(crate) fn release(&self, circuit: &Circuit, ticket: Ticket) {
        if !ticket.probe {
            return;
        }
        let mut g = lock(&circuit.inner);
        if let (
            true,
            Phase::HalfOpen {
                in_flight,
                successes,
                lease_until,
            },
        ) = (ticket.epoch == g.epoch, g.phase)
        {
            g.phase = Phase::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
                successes,
                lease_until,
            };
        }
    }

    /// The end of the lease of a probe let through now.
    fn lease_from(&self, now: Instant) -> Instant {
        now.checked_add(self.config.probe_timeout).unwrap_or(now)
    }

    fn open(
        &self,
        g: &mut Inner,
        now: Instant,
        reason: &'static str,
        calls: u32,
        failures: u32,
    ) -> Transition {
        g.opens = g.opens.saturating_add(1);
        let full = self.config.break_for(g.opens);
        let r = (self.jitter)();
        let r = if r.is_finite() {
            r.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Saturating: the configuration caps the break, but a panic in a response
        // future's poll is never the answer.
        let break_for =
            Duration::try_from_secs_f64(full.as_secs_f64() * (1.0 - self.config.break_jitter * r))
                .unwrap_or(full)
                .min(full);
        let until = now
            .checked_add(break_for)
            .or_else(|| now.checked_add(crate::deadline::MAX_BUDGET))
            .unwrap_or(now);
        g.phase = Phase::Open { until };
        if g.opens == 1 {
            // The first opening since the circuit was closed: `since` keeps it until the
            // circuit closes (a failed probe reopens the same outage).
            g.opened_at = now;
        }
        g.epoch += 1;
        Transition::Opened {
            reason,
            calls,
            failures,
            opens: g.opens,
            break_for,
        }
    }
}

fn refusal(
    circuit: &Circuit,
    g: &Inner,
    now: Instant,
    state: CircuitState,
    retry_after: Duration,
) -> Box<CircuitOpen> {
    Box::new(CircuitOpen {
        key: circuit.key.to_string(),
        state,
        since: g.opened_at,
        open_for: now.saturating_duration_since(g.opened_at),
        retry_after: Some(retry_after),
    })
}
