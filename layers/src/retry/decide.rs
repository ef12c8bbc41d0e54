//! The retry layer's three decisions as traits, in the shapes tower users know, each with
//! today's behaviour as its default implementation:
//!
//! | trait | tower's shape | decides | default |
//! |---|---|---|---|
//! | [`RetryDecision`] | `retry::Policy::retry` | whether a retryable failure is retried | [`RetryPolicy`]: idempotence, attempts, `Retry-After` limit |
//! | [`RetryBudget`] | `retry::budget::Budget` (`withdraw` / `deposit`) | whether the budget allows one more retry | [`RetryQuota`]: AWS standard-mode tokens |
//! | [`Backoff`] | `retry::backoff::Backoff` (`next_backoff`) | how long to wait before it | [`RetryPolicy::backoff`]: full jitter |
//!
//! The layer keeps what no implementation may change: the classification comes first,
//! the operation deadline is checked after the backoff is known, and a retry that cannot
//! finish in time is not made. The backoff returns a duration rather than a future (as
//! tower's does) so that the layer can check it against the deadline before waiting.

use std::fmt;
use std::time::Duration;

use super::policy::{RetryPolicy, StopReason};
use super::quota::{RetryPartition, RetryQuota};
use crate::classify::RetryKind;

/// A failed attempt the classifier called retryable, and where the operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryableFailure {
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// The most attempts for this operation (the policy's, or the request's
    /// [`MaxAttempts`](super::MaxAttempts)).
    pub max_attempts: u32,
    /// Throttle or transient.
    pub kind: RetryKind,
    /// The server's hint of when to try again.
    pub retry_after: Option<Duration>,
    /// Whether this attempt may have reached the target.
    pub reached: bool,
    /// Whether the request may be repeated after it reached the target.
    pub idempotent: bool,
}

/// Whether a retryable failure is retried: `Ok(())` retries (if the budget and the
/// deadline allow), `Err(reason)` stops with the failure as the result.
///
/// ```
/// use invoke_layers::retry::{RetryDecision, RetryLayer, RetryableFailure, StopReason, HttpClassifier};
/// use invoke_layers::classify::RetryKind;
///
/// /// Throttles are retried up to the limit; anything else never.
/// #[derive(Debug)]
/// struct OnlyThrottles;
///
/// impl RetryDecision for OnlyThrottles {
///     fn decide(&self, f: &RetryableFailure) -> Result<(), StopReason> {
///         match f.kind {
///             RetryKind::Throttling if f.attempt < f.max_attempts => Ok(()),
///             RetryKind::Throttling => Err(StopReason::MaxAttempts),
///             _ => Err(StopReason::NotRetryable),
///         }
///     }
/// }
///
/// let retry = RetryLayer::new(HttpClassifier).decision(OnlyThrottles);
/// # let _ = retry;
/// ```
pub trait RetryDecision: fmt::Debug + Send + Sync + 'static {
    /// Retry, or why not.
    fn decide(&self, failure: &RetryableFailure) -> Result<(), StopReason>;
}

/// Today's decision: a failure that may have reached the target is retried only when the
/// request is idempotent; never past the attempt limit; never after a `Retry-After`
/// longer than [`max_retry_after`](RetryPolicy::max_retry_after).
impl RetryDecision for RetryPolicy {
    fn decide(&self, f: &RetryableFailure) -> Result<(), StopReason> {
        if f.reached && !f.idempotent {
            return Err(StopReason::MayHaveRun);
        }
        if f.attempt >= f.max_attempts {
            return Err(StopReason::MaxAttempts);
        }
        if f.retry_after.is_some_and(|h| h > self.max_retry_after) {
            return Err(StopReason::RetryAfterTooLong);
        }
        Ok(())
    }
}

/// How many retries may be made: each retry withdraws from it, and successes deposit
/// back (tower's `retry::budget::Budget`, with the retry's context: its partition, its
/// kind and the server's hint, so costs can differ).
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use invoke_layers::retry::{HttpClassifier, RetryBudget, RetryLayer, RetryPartition};
/// use invoke_layers::classify::RetryKind;
/// use std::time::Duration;
///
/// /// At most 100 retries in the life of the process, whatever succeeds.
/// #[derive(Debug, Default)]
/// struct HundredRetries(AtomicU32);
///
/// impl RetryBudget for HundredRetries {
///     fn withdraw(&self, _: Option<&RetryPartition>, _: RetryKind, _: Option<Duration>) -> Option<u32> {
///         let taken = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < 100).then_some(n + 1));
///         taken.ok().map(|_| 1)
///     }
///     fn deposit(&self, _: Option<&RetryPartition>, _: Option<u32>) {}
/// }
///
/// let retry = RetryLayer::new(HttpClassifier).budget(HundredRetries::default());
/// # let _ = retry;
/// ```
pub trait RetryBudget: fmt::Debug + Send + Sync + 'static {
    /// Takes what one retry costs, returning it; `None` refuses the retry (the layer
    /// stops with [`StopReason::QuotaExhausted`]).
    fn withdraw(
        &self,
        partition: Option<&RetryPartition>,
        kind: RetryKind,
        retry_after: Option<Duration>,
    ) -> Option<u32>;

    /// Gives back `Some(cost)`: a withdrawal whose retry was not made (cancelled during
    /// its backoff), or the last retry's cost once the operation succeeded; `None` after
    /// an operation that succeeded at its first attempt.
    fn deposit(&self, partition: Option<&RetryPartition>, withdrawn: Option<u32>);

    /// Tokens left, for logs (`None`: not counted in tokens).
    fn available(&self, partition: Option<&RetryPartition>) -> Option<u32> {
        let _ = partition;
        None
    }
}

/// AWS standard mode (the default budget).
impl RetryBudget for RetryQuota {
    fn withdraw(
        &self,
        partition: Option<&RetryPartition>,
        kind: RetryKind,
        retry_after: Option<Duration>,
    ) -> Option<u32> {
        let cost = self.cost(kind, retry_after);
        self.try_acquire(partition, cost).then_some(cost)
    }

    fn deposit(&self, partition: Option<&RetryPartition>, withdrawn: Option<u32>) {
        self.release(partition, withdrawn);
    }

    fn available(&self, partition: Option<&RetryPartition>) -> Option<u32> {
        Some(RetryQuota::available(self, partition))
    }
}

/// The wait before a retry, before the server's `Retry-After` (which the layer honours
/// as a lower bound).
///
/// ```
/// use std::time::Duration;
/// use invoke_layers::retry::{Backoff, HttpClassifier, RetryLayer};
/// use invoke_layers::classify::RetryKind;
///
/// /// 100 ms, 200 ms, 300 ms...: linear, no jitter.
/// #[derive(Debug)]
/// struct Linear;
///
/// impl Backoff for Linear {
///     fn backoff(&self, _kind: RetryKind, retry: u32) -> Duration {
///         Duration::from_millis(100) * retry
///     }
/// }
///
/// let retry = RetryLayer::new(HttpClassifier).backoff(Linear);
/// # let _ = retry;
/// ```
pub trait Backoff: fmt::Debug + Send + Sync + 'static {
    /// The wait before retry number `retry` (1 for the first retry) of this kind.
    fn backoff(&self, kind: RetryKind, retry: u32) -> Duration;
}
