use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Where the breaker reads the time: the seam that lets tests end a break without
/// waiting for it.
///
/// The breaker never sleeps: a break ends when a call (or a [`state`] query) finds its
/// end in the past, by this clock. The default, [`TokioClock`], follows tokio's paused
/// time in unit tests; [`ManualClock`] moves only when told, for tests over real
/// sockets, where paused time cannot be used (it auto-advances while I/O is pending).
///
/// [`state`]: super::CircuitBreakerLayer::state
pub trait Clock: Send + Sync + 'static {
    /// The time now.
    fn now(&self) -> Instant;
}

/// tokio's clock (`tokio::time::Instant::now`): real time, or paused time in tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until [`advance`](Self::advance)d; clones share the time.
///
/// ```
/// use std::time::Duration;
/// use invoke_layers::circuit_breaker::{Clock, ManualClock};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - t0, Duration::from_secs(5));
/// # }
/// ```
#[derive(Clone)]
pub struct ManualClock {
    origin: Instant,
    elapsed_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads tokio's time now, and from then on only moves when advanced.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            elapsed_nanos: Arc::default(),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Ordering: the clock is a counter; callers synchronise through the breaker's locks.
        let _ = self
            .elapsed_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(nanos))
            });
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field(
                "elapsed",
                &Duration::from_nanos(self.elapsed_nanos.load(Ordering::Relaxed)),
            )
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + Duration::from_nanos(self.elapsed_nanos.load(Ordering::Relaxed))
    }
}
