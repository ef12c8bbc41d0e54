//! Waiting for the limits: the bound on a wait, the rate cells, and the slots of the
//! concurrency caps.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::error::{LimitKind, RateLimited, Refusal};
use super::limits::{KeyState, Limits};
use super::Mode;
use crate::deadline::Deadline;

/// How long one wait in the limiter may last: until the operation deadline or the
/// limiter's maximum wait, whichever comes first; not at all in fail-fast mode.
///
/// The clock is read only when a call cannot go through at once: a call admitted on the
/// fast path (a free cell and slot) reads it for its rate cells alone. The wait is
/// counted from that first read; the fast path before it takes nanoseconds.
#[derive(Debug)]
pub(crate) struct Budget {
    pub mode: Mode,
    max_wait: Duration,
    deadline: Option<Instant>,
    /// When the budget was first needed (the first wait, or the first check whether one
    /// fits).
    started: std::sync::OnceLock<Instant>,
    /// Whether the call actually waited (slept or queued), not only checked the budget:
    /// a refusal without a wait, or a store round trip, is not a wait.
    did_wait: std::sync::atomic::AtomicBool,
}

impl Budget {
    pub(crate) fn new(mode: Mode, max_wait: Duration, deadline: Option<Deadline>) -> Self {
        Self {
            mode,
            max_wait,
            deadline: deadline.map(|d| d.at()),
            started: std::sync::OnceLock::new(),
            did_wait: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn mark_waiting(&self) {
        let _ = self.until();
        self.did_wait
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The end of the budget and why it ends there, counted from the first call of this.
    fn until(&self) -> (Option<Instant>, Refusal) {
        let started = *self.started.get_or_init(Instant::now);
        let by_max = started.checked_add(self.max_wait);
        let (until, reason) = match (self.deadline, by_max) {
            (Some(d), Some(m)) if m < d => (Some(m), Refusal::MaxWait),
            (Some(d), _) => (Some(d), Refusal::Deadline),
            (None, m) => (m, Refusal::MaxWait),
        };
        let reason = match self.mode {
            Mode::FailFast => Refusal::FailFast,
            Mode::Wait { .. } => reason,
        };
        (until, reason)
    }

    /// Whether a wait of `wait` from now ends within the budget.
    pub(crate) fn allows(&self, wait: Duration) -> bool {
        match self.mode {
            Mode::FailFast => false,
            Mode::Wait { .. } => self
                .until()
                .0
                .is_none_or(|u| Instant::now().checked_add(wait).is_some_and(|t| t < u)),
        }
    }

    /// How long until the budget ends (`None`: it does not).
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.until()
            .0
            .map(|u| u.saturating_duration_since(Instant::now()))
    }

    /// The refusal of a call under `key`.
    pub(crate) fn refuse(
        &self,
        key: Option<&str>,
        limit: LimitKind,
        earliest: Option<Duration>,
    ) -> RateLimited {
        self.refuse_because(key, limit, earliest, self.until().1)
    }

    /// The refusal of a call under `key`, for `reason`.
    pub(crate) fn refuse_because(
        &self,
        key: Option<&str>,
        limit: LimitKind,
        earliest: Option<Duration>,
        reason: Refusal,
    ) -> RateLimited {
        let waited = self.waited();
        tracing::debug!(
            key,
            ?limit,
            ?reason,
            waited_ms = waited.as_millis() as u64,
            earliest_ms = earliest.map(|e| e.as_millis() as u64),
            "refused by the rate limiter"
        );
        RateLimited {
            key: key.map(str::to_owned),
            limit,
            earliest,
            reason,
            waited,
        }
    }

    /// How long the call has waited: zero if it never slept or queued.
    pub(crate) fn waited(&self) -> Duration {
        if !self.did_wait.load(std::sync::atomic::Ordering::Relaxed) {
            return Duration::ZERO;
        }
        self.started.get().map_or(Duration::ZERO, Instant::elapsed)
    }

    /// Takes one permit of `sem`, first come first served, within the budget.
    pub(crate) async fn permit<'a>(&self, sem: &'a Semaphore) -> Option<SemaphorePermit<'a>> {
        if let Ok(p) = sem.try_acquire() {
            return Some(p);
        }
        if matches!(self.mode, Mode::FailFast) {
            return None;
        }
        self.mark_waiting();
        let permit = match self.until().0 {
            Some(u) => tokio::time::timeout_at(u, sem.acquire()).await.ok()?,
            None => sem.acquire().await,
        };
        // The semaphores are never closed: an error cannot happen, and would refuse.
        permit.ok()
    }

    /// Sleeps `wait` if it ends within the budget; refuses at once if not.
    async fn sleep(&self, wait: Duration) -> bool {
        if !self.allows(wait) {
            return false;
        }
        self.mark_waiting();
        tokio::time::sleep(wait).await;
        true
    }

    /// A random part of the jitter of [`Mode::Wait`], when it fits in the budget.
    pub(crate) async fn jitter(&self) {
        if let Mode::Wait { jitter } = self.mode {
            let wait = jitter.mul_f64(fastrand::f64());
            if !wait.is_zero() && self.allows(wait) {
                self.mark_waiting();
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Takes a cell of the key's rate and one of the global rate, or refuses.
///
/// The key's rate comes first, and waiting for it takes nothing from the global rate: a
/// call refused by its key burns no global capacity, and a global cell refused after
/// the key's was taken gives the key's back. A call that must wait joins its key's queue
/// (after a random part of the jitter); the head of the queue waits for the key's cell,
/// then for its turn at the global rate, which the heads of all keys' queues take first
/// come, first served. So a key with many waiting callers counts as one at the global
/// rate: other keys keep their share of it.
pub(crate) async fn rate_cells(
    limits: &Limits,
    state: Option<&KeyState>,
    key: Option<&str>,
    budget: &Budget,
) -> Result<(), RateLimited> {
    let cell = state.and_then(|s| s.rate.as_ref());
    if cell.is_none() && limits.global.is_none() {
        return Ok(());
    }
    let refuse = |earliest| budget.refuse(key, LimitKind::Rate, earliest);
    let turn = state.map_or(&limits.unkeyed_turn, |s| &s.rate_turn);
    let queued = || {
        turn.available_permits() == 0
            || (limits.global.is_some() && limits.global_turn.available_permits() == 0)
    };
    // Nobody waits ahead of this call (fail-fast calls never wait): try at once.
    if matches!(budget.mode, Mode::FailFast) || !queued() {
        match limits.take_cells(cell) {
            Ok(()) => return Ok(()),
            Err((_, wait)) if !budget.allows(wait) => return Err(refuse(Some(wait))),
            Err(_) => {}
        }
    }
    let wait = limits.cells_wait(cell);
    if !budget.allows(wait) {
        return Err(refuse(Some(wait)));
    }
    budget.jitter().await;
    let Some(_turn) = budget.permit(turn).await else {
        return Err(refuse(None));
    };
    loop {
        if let Some(c) = cell {
            let wait = c.wait(limits.now());
            if !wait.is_zero() {
                if !budget.sleep(wait).await {
                    return Err(refuse(Some(wait)));
                }
                continue;
            }
        }
        let _global_turn = match &limits.global {
            Some(_) => match budget.permit(&limits.global_turn).await {
                Some(p) => Some(p),
                None => return Err(refuse(None)),
            },
            None => None,
        };
        loop {
            match limits.take_cells(cell) {
                Ok(()) => return Ok(()),
                Err((true, wait)) => {
                    if !budget.sleep(wait).await {
                        return Err(refuse(Some(wait)));
                    }
                }
                // A call that was not queued took the key's cell first: wait for the
                // key again, without holding up the other keys.
                Err((false, _)) => break,
            }
        }
    }
}

/// Holds a concurrency slot; gives it back (to the longest waiter) when dropped, whether
/// the call finished, failed or was cancelled.
pub(crate) enum Slot {
    /// A local slot, with its lease in the shared store when the limits are shared (the
    /// lease is released when it drops).
    Static(Arc<KeyState>, Option<super::store::Lease>),
    Adaptive(Arc<KeyState>),
}

impl Slot {
    /// Holds `lease` with this slot, for as long as it is held.
    pub(crate) fn attach(&mut self, lease: super::store::Lease) {
        if let Slot::Static(_, held) = self {
            *held = Some(lease);
        }
    }

    /// Gives the slot back after the call's answer: its lease (if any) is released in
    /// the store, then the local slot. (Dropping the slot releases both too, the lease
    /// in a task.)
    pub(crate) async fn release(mut self, deadline: Option<crate::deadline::Deadline>) {
        let lease = match &mut self {
            Slot::Static(_, lease) => lease.take(),
            Slot::Adaptive(_) => None,
        };
        // The lease first: a caller in this process that takes the local slot next finds
        // the store's slot free too.
        if let Some(lease) = lease {
            lease.release(deadline).await;
        }
        drop(self);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        match self {
            Slot::Static(s, _) => {
                if let Some(slots) = &s.slots {
                    slots.sem.add_permits(1);
                }
            }
            Slot::Adaptive(s) => {
                if let Some(a) = &s.adaptive {
                    a.release();
                }
            }
        }
    }
}

/// Takes a permit of `sem` for a [`Slot`]: forgotten here, the slot gives it back.
async fn take(sem: &Semaphore, budget: &Budget) -> bool {
    budget
        .permit(sem)
        .await
        .map(SemaphorePermit::forget)
        .is_some()
}

/// Takes a slot of `key` under its static cap (none if it has no cap).
pub(crate) async fn static_slot(
    state: &Arc<KeyState>,
    key: &str,
    budget: &Budget,
) -> Result<Option<Slot>, RateLimited> {
    let Some(slots) = &state.slots else {
        return Ok(None);
    };
    if take(&slots.sem, budget).await {
        Ok(Some(Slot::Static(Arc::clone(state), None)))
    } else {
        Err(budget.refuse(Some(key), LimitKind::Concurrency, None))
    }
}

/// Takes a slot of `key` under its adaptive limit (none if it has none); also returns
/// the epoch of the limit it was admitted under.
pub(crate) async fn adaptive_slot(
    state: &Arc<KeyState>,
    key: &str,
    budget: &Budget,
) -> Result<Option<(Slot, u64)>, RateLimited> {
    let Some(slots) = &state.adaptive else {
        return Ok(None);
    };
    if take(&slots.sem, budget).await {
        let epoch = slots.admitted();
        Ok(Some((Slot::Adaptive(Arc::clone(state)), epoch)))
    } else {
        Err(budget.refuse(Some(key), LimitKind::Concurrency, None))
    }
}
