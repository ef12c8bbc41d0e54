//! Waiting for the limits: the bound on a wait, and the slots of the concurrency caps.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::error::{LimitKind, RateLimited, Refusal};
use super::limits::{AdaptiveSlots, StaticSlots};
use super::Mode;
use crate::timeout::Deadline;

/// How long one wait in the limiter may last: until the operation deadline or the
/// limiter's maximum wait, whichever comes first; not at all in fail-fast mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub mode: Mode,
    started: Instant,
    until: Option<Instant>,
    reason: Refusal,
}

impl Budget {
    pub(crate) fn new(mode: Mode, max_wait: Duration, deadline: Option<Deadline>) -> Self {
        let started = Instant::now();
        let by_max = started.checked_add(max_wait);
        let (until, reason) = match (deadline.map(|d| d.at()), by_max) {
            (Some(d), Some(m)) if m < d => (Some(m), Refusal::MaxWait),
            (Some(d), _) => (Some(d), Refusal::Deadline),
            (None, m) => (m, Refusal::MaxWait),
        };
        let reason = match mode {
            Mode::FailFast => Refusal::FailFast,
            Mode::Wait { .. } => reason,
        };
        Self {
            mode,
            started,
            until,
            reason,
        }
    }

    /// Whether a wait of `wait` from now ends within the budget.
    pub(crate) fn allows(&self, wait: Duration) -> bool {
        match self.mode {
            Mode::FailFast => false,
            Mode::Wait { .. } => self
                .until
                .is_none_or(|u| Instant::now().checked_add(wait).is_some_and(|t| t < u)),
        }
    }

    /// The refusal of a call under `key`.
    pub(crate) fn refuse(
        &self,
        key: Option<&str>,
        limit: LimitKind,
        earliest: Option<Duration>,
    ) -> RateLimited {
        let waited = self.started.elapsed();
        tracing::debug!(
            key,
            ?limit,
            reason = ?self.reason,
            waited_ms = waited.as_millis() as u64,
            earliest_ms = earliest.map(|e| e.as_millis() as u64),
            "refused by the rate limiter"
        );
        RateLimited {
            key: key.map(str::to_owned),
            limit,
            earliest,
            reason: self.reason,
            waited,
        }
    }

    pub(crate) fn waited(&self) -> Duration {
        self.started.elapsed()
    }

    /// Takes one permit of `sem`, first come first served, within the budget. The permit
    /// is forgotten: the caller's [`Slot`] gives it back.
    async fn take(&self, sem: &Semaphore) -> bool {
        if let Ok(p) = sem.try_acquire() {
            p.forget();
            return true;
        }
        if matches!(self.mode, Mode::FailFast) {
            return false;
        }
        let permit = match self.until {
            Some(u) => match tokio::time::timeout_at(u, sem.acquire()).await {
                Ok(p) => p,
                Err(_elapsed) => return false,
            },
            None => sem.acquire().await,
        };
        // The semaphores are never closed: an error cannot happen, and would refuse.
        permit.map(tokio::sync::SemaphorePermit::forget).is_ok()
    }
}

/// Holds a concurrency slot; gives it back (to the longest waiter) when dropped, whether
/// the call finished, failed or was cancelled.
pub(crate) enum Slot {
    Static(Arc<StaticSlots>),
    Adaptive(Arc<AdaptiveSlots>),
}

impl Drop for Slot {
    fn drop(&mut self) {
        match self {
            Slot::Static(s) => s.sem.add_permits(1),
            Slot::Adaptive(a) => a.release(),
        }
    }
}

/// Takes a slot of `key` under its static cap.
pub(crate) async fn static_slot(
    slots: Arc<StaticSlots>,
    key: &str,
    budget: &Budget,
) -> Result<Slot, RateLimited> {
    if budget.take(&slots.sem).await {
        Ok(Slot::Static(slots))
    } else {
        Err(budget.refuse(Some(key), LimitKind::Concurrency, None))
    }
}

/// Takes a slot of `key` under its adaptive limit; also returns the epoch of the limit
/// it was admitted under.
pub(crate) async fn adaptive_slot(
    slots: Arc<AdaptiveSlots>,
    key: &str,
    budget: &Budget,
) -> Result<(Slot, u64), RateLimited> {
    if budget.take(&slots.sem).await {
        let epoch = slots.admitted();
        Ok((Slot::Adaptive(slots), epoch))
    } else {
        Err(budget.refuse(Some(key), LimitKind::Concurrency, None))
    }
}
