//! The operation's time and progress, shared by the layers that wait or give up
//! (deadline and attempt timeouts, retry backoff, rate-limit waits): [`Deadline`],
//! [`AttemptTimeout`], [`SendProgress`].
//!
//! Always compiled, so a layer that only reads a deadline does not compile the timeout
//! layer.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The operation's deadline, carried in the request's extensions by [`DeadlineLayer`].
///
/// Layers inside (retry backoff, rate-limit waits, attempt timeouts) read it to refuse a
/// wait that cannot finish in time ([`Deadline::check_wait`]) instead of sleeping into a
/// certain timeout.
///
/// [`DeadlineLayer`]: crate::timeout::DeadlineLayer
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    start: Instant,
    at: Instant,
}

/// The longest budget a [`Deadline`] keeps: about 30 years, as tokio's own "far future".
/// A longer one (`Duration::MAX` for "no limit") is this, never an overflow.
pub const MAX_BUDGET: Duration = Duration::from_secs(86_400 * 365 * 30);

impl Deadline {
    /// A deadline `budget` from now (at most [`MAX_BUDGET`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use invoke_layers::timeout::{Deadline, MAX_BUDGET};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// assert_eq!(Deadline::after(Duration::MAX).remaining(), MAX_BUDGET);
    /// # }
    /// ```
    pub fn after(budget: Duration) -> Self {
        let start = Instant::now();
        Self {
            start,
            at: start + budget.min(MAX_BUDGET),
        }
    }

    /// When it passes.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Time since the operation started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        if other.at < self.at {
            other
        } else {
            self
        }
    }

    /// `Ok` if waiting `wait` still leaves the deadline ahead, else the typed refusal.
    pub fn check_wait(&self, wait: Duration) -> Result<(), WouldExceedDeadline> {
        let remaining = self.remaining();
        if wait < remaining {
            Ok(())
        } else {
            Err(WouldExceedDeadline { wait, remaining })
        }
    }
}

/// A wait was refused because it would end past the operation deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WouldExceedDeadline {
    /// The wait that was asked for.
    pub wait: Duration,
    /// Time left before the deadline.
    pub remaining: Duration,
}

impl fmt::Display for WouldExceedDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "waiting {:.3}s would exceed the operation deadline ({:.3}s left)",
            self.wait.as_secs_f64(),
            self.remaining.as_secs_f64()
        )
    }
}

impl std::error::Error for WouldExceedDeadline {}

const UNKNOWN: u8 = 0;
const NOT_SENT: u8 = 1;
const SENT: u8 = 2;

/// Whether a request has left the machine, as reported by the transport.
///
/// Each attempt's extensions carry one (a [`child`](Self::child) of the operation's, or
/// an [`attempt`](Self::attempt) of its own, put there by the retry layer or, without
/// one, by the attempt timeout layer); a transport
/// that cooperates marks it [`not_sent`](Self::mark_not_sent) when it takes the request
/// and [`sent`](Self::mark_sent) as soon as any byte may have been written. When no
/// transport reports, a timed-out request counts as possibly sent: the safe answer to
/// "may the function have run?".
///
/// Clones share one state (a reference count, no allocation); a child is one allocation.
///
/// ```
/// use invoke_layers::timeout::SendProgress;
/// let operation = SendProgress::new();
/// let attempt = operation.child();
/// attempt.mark_not_sent();
/// assert!(!attempt.may_have_been_sent() && !operation.may_have_been_sent());
/// attempt.mark_sent();
/// assert!(operation.may_have_been_sent());
/// ```
#[derive(Clone, Debug, Default)]
pub struct SendProgress(Arc<ProgressNode>);

#[derive(Debug, Default)]
struct ProgressNode {
    state: AtomicU8,
    /// Attempts made under this progress ([`SendProgress::child`] calls).
    children: AtomicU32,
    /// Made by [`SendProgress::child`] or [`SendProgress::attempt`]: it tracks one attempt.
    attempt: bool,
    parent: Option<SendProgress>,
}

impl SendProgress {
    /// A new, unreported progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// A progress for one attempt of an operation that keeps no progress of its own.
    ///
    /// ```
    /// use invoke_layers::timeout::SendProgress;
    /// let attempt = SendProgress::attempt();
    /// assert!(attempt.is_attempt() && !SendProgress::new().is_attempt());
    /// ```
    pub fn attempt() -> Self {
        Self(Arc::new(ProgressNode {
            state: AtomicU8::new(UNKNOWN),
            children: AtomicU32::new(0),
            attempt: true,
            parent: None,
        }))
    }

    /// A progress for one attempt that also reports to this one (and its parents).
    /// This one counts the attempts made under it ([`attempts`](Self::attempts)).
    pub fn child(&self) -> Self {
        self.0.children.fetch_add(1, Ordering::Relaxed);
        Self(Arc::new(ProgressNode {
            state: AtomicU8::new(UNKNOWN),
            children: AtomicU32::new(0),
            attempt: true,
            parent: Some(self.clone()),
        }))
    }

    /// How many attempts were made under this progress (its [`child`](Self::child)ren):
    /// an operation deadline that fires mid-retry reports it.
    ///
    /// ```
    /// use invoke_layers::timeout::SendProgress;
    /// let operation = SendProgress::new();
    /// let (_a, _b) = (operation.child(), operation.child());
    /// assert_eq!(operation.attempts(), 2);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.0.children.load(Ordering::Relaxed)
    }

    /// Whether this progress was made for one attempt (by [`child`](Self::child) or
    /// [`attempt`](Self::attempt)).
    pub fn is_attempt(&self) -> bool {
        self.0.attempt
    }

    /// The transport took the request and has written nothing yet.
    pub fn mark_not_sent(&self) {
        let mut node = Some(self);
        while let Some(p) = node {
            let _ =
                p.0.state
                    .compare_exchange(UNKNOWN, NOT_SENT, Ordering::AcqRel, Ordering::Acquire);
            node = p.0.parent.as_ref();
        }
    }

    /// Some byte of the request may have been written.
    pub fn mark_sent(&self) {
        let mut node = Some(self);
        while let Some(p) = node {
            p.0.state.store(SENT, Ordering::Release);
            node = p.0.parent.as_ref();
        }
    }

    /// False only when a transport reported that nothing was written.
    pub fn may_have_been_sent(&self) -> bool {
        self.0.state.load(Ordering::Acquire) != NOT_SENT
    }
}

/// A per-request attempt timeout, overriding the [`TimeoutLayer`](crate::timeout::TimeoutLayer)'s
/// default (e.g. chosen from the invocation type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimeout(pub Duration);

/// A budget for one operation, in its request's extensions: the deadline layer turns it
/// into a [`Deadline`] when the call reaches it (at the call's first poll, when the
/// layer's own budget starts too), keeping the earliest of it, its own and a
/// [`Deadline`] already there.
///
/// ```
/// use std::time::Duration;
/// use invoke_layers::deadline::OperationTimeout;
///
/// let mut req = http::Request::new(bytes::Bytes::new());
/// req.extensions_mut().insert(OperationTimeout(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationTimeout(pub Duration);

/// The number of the attempt (1 for the first), in each attempt's request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptNumber(pub u32);
