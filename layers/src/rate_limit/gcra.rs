//! One rate cell (GCRA, the generic cell rate algorithm, as governor implements it) that
//! can also say how long a call would wait without taking a cell, and give back a cell
//! taken by a call that another limit then refused. governor offers neither, and a
//! global and a per-key rate checked together need both: a call refused by one of them
//! must leave the other as it found it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A cell of a rate: `burst` calls at once, one more every `interval`. Times are
/// nanoseconds on the limiter's clock.
#[derive(Debug)]
pub(crate) struct Gcra {
    /// The theoretical arrival time of the next call: the cell is full at or before now.
    tat: AtomicU64,
    interval: u64,
    /// How far ahead of now `tat` may be and a call still go: `interval × (burst − 1)`.
    tolerance: u64,
    burst: u32,
}

impl Gcra {
    /// A cell; `interval` and `burst` are not zero (checked when the limiter is built).
    pub(crate) fn new(interval: u64, burst: u32) -> Self {
        Self {
            tat: AtomicU64::new(0),
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.saturating_sub(1))),
            burst,
        }
    }

    /// Nanoseconds between calls.
    pub(crate) fn interval(&self) -> u64 {
        self.interval
    }

    /// Calls at once.
    pub(crate) fn burst(&self) -> u32 {
        self.burst
    }

    /// How long until a call could take a cell (zero: now). Takes nothing.
    pub(crate) fn wait(&self, now: u64) -> Duration {
        self.wait_from(self.tat.load(Ordering::Acquire), now)
    }

    fn wait_from(&self, tat: u64, now: u64) -> Duration {
        Duration::from_nanos(tat.saturating_sub(self.tolerance).saturating_sub(now))
    }

    /// Takes a cell, or says how long until one is free.
    pub(crate) fn take(&self, now: u64) -> Result<(), Duration> {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let wait = self.wait_from(tat, now);
            if !wait.is_zero() {
                return Err(wait);
            }
            let next = tat.max(now).saturating_add(self.interval);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// Gives back a cell taken by [`take`](Self::take). Exact when nobody took one
    /// since; otherwise at most one interval's worth more generous than exact, never
    /// beyond the burst (a `tat` before now means a full cell).
    pub(crate) fn give_back(&self) {
        // The closure always returns Some: the update cannot fail.
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.saturating_sub(self.interval))
            });
    }

    /// Whether the cell is full, so dropping it loses nothing.
    pub(crate) fn is_full(&self, now: u64) -> bool {
        self.tat.load(Ordering::Acquire) <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn burst_then_one_per_interval() {
        let g = Gcra::new(100 * MS, 3);
        for _ in 0..3 {
            assert_eq!(g.take(0), Ok(()));
        }
        assert_eq!(g.take(0), Err(Duration::from_millis(100)));
        assert_eq!(g.wait(50 * MS), Duration::from_millis(50));
        assert_eq!(g.take(100 * MS), Ok(()));
        assert_eq!(g.take(100 * MS), Err(Duration::from_millis(100)));
        assert!(!g.is_full(100 * MS));
        assert!(g.is_full(400 * MS));
    }

    #[test]
    fn a_cell_given_back_can_be_taken_again() {
        let g = Gcra::new(100 * MS, 1);
        assert_eq!(g.take(0), Ok(()));
        assert!(g.take(0).is_err());
        g.give_back();
        assert_eq!(g.wait(0), Duration::ZERO);
        assert_eq!(g.take(0), Ok(()));
        // Giving back never makes more than the burst.
        g.give_back();
        g.give_back();
        assert_eq!(g.take(0), Ok(()));
        assert!(g.take(0).is_err());
    }
}
