use std::time::Duration;

use crate::classify::RetryKind;

/// How many attempts, how long between them, and which failures are safe to repeat.
///
/// Defaults (AWS standard mode, spec §4.2, as the Rust SDK): 3 attempts; delay before
/// retry *n* = `rand[0,1) × min(base × 2^(n-1), cap)` with base 1 s and cap 20 s ("full
/// jitter"); a server's `Retry-After` is honoured as a lower bound, and a hint longer than
/// 60 s ends the retries (the caller gets the throttle with its hint). Failures that may
/// have reached the target are not retried unless the request is marked idempotent. A
/// retry is made only when the operation deadline leaves it `min_attempt_budget` (3.1 s,
/// the AWS SDKs' connect timeout) after the backoff: an attempt that cannot finish would
/// only turn "not run" into "may have run".
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (default 3).
    pub max_attempts: u32,
    /// Backoff base for transient failures (default 1 s).
    pub transient_base: Duration,
    /// Backoff base for throttles (default 1 s).
    pub throttle_base: Duration,
    /// Largest computed backoff (default 20 s).
    pub max_backoff: Duration,
    /// Largest `Retry-After` honoured; a longer one ends the retries (default 60 s).
    pub max_retry_after: Duration,
    /// Retry failures that may have reached the target, when the request does not say
    /// (default false: a Lambda function may have run).
    pub idempotent_by_default: bool,
    /// Send `amz-sdk-invocation-id` and `amz-sdk-request` (default true).
    pub sdk_headers: bool,
    /// The least time an attempt after the first must have before the operation
    /// deadline, once its backoff is over; with less, the retries stop with
    /// [`StopReason::DeadlineTooClose`] (default 3.1 s, a connect timeout: set it to at
    /// least your transport's).
    pub min_attempt_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            transient_base: Duration::from_secs(1),
            throttle_base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
            idempotent_by_default: false,
            sdk_headers: true,
            min_attempt_budget: Duration::from_millis(3100),
        }
    }
}

impl RetryPolicy {
    /// The full-jitter backoff before retry number `retry` (1 for the first retry), with
    /// `jitter` in `[0, 1)`.
    pub fn backoff(&self, kind: RetryKind, retry: u32, jitter: f64) -> Duration {
        let base = match kind {
            RetryKind::Throttling => self.throttle_base,
            RetryKind::Transient => self.transient_base,
        };
        let exp = base.saturating_mul(1u32 << retry.saturating_sub(1).min(30));
        exp.min(self.max_backoff).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Whether a request may be repeated after a failure that may have reached its target.
/// Put it in the request's extensions (per function, per call); it overrides
/// [`RetryPolicy::idempotent_by_default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotent(pub bool);

/// The most attempts for one call, in the request's extensions; it overrides
/// [`RetryPolicy::max_attempts`] for that request (`0` counts as `1`).
///
/// ```
/// use invoke_layers::retry::MaxAttempts;
///
/// let mut req = http::Request::new(bytes::Bytes::new());
/// req.extensions_mut().insert(MaxAttempts(1)); // this call is never retried
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxAttempts(pub u32);

/// Why the retry layer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The attempt succeeded, or its result was final.
    Done,
    /// The failure cannot succeed when repeated unchanged.
    NotRetryable,
    /// All attempts were used.
    MaxAttempts,
    /// The request may have reached its target and is not idempotent.
    MayHaveRun,
    /// The wait would end past the operation deadline, or the deadline passed.
    Deadline,
    /// The wait would end so close to the operation deadline that the next attempt
    /// could not finish (less than [`RetryPolicy::min_attempt_budget`] left).
    DeadlineTooClose,
    /// The retry quota is empty.
    QuotaExhausted,
    /// The server asked to wait longer than `max_retry_after`.
    RetryAfterTooLong,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Done => "done",
            StopReason::NotRetryable => "the failure is not retryable",
            StopReason::MaxAttempts => "all attempts were used",
            StopReason::MayHaveRun => {
                "the request may have reached its target and is not marked idempotent"
            }
            StopReason::Deadline => "the operation deadline leaves no time for another attempt",
            StopReason::DeadlineTooClose => {
                "another attempt would start too close to the operation deadline to finish"
            }
            StopReason::QuotaExhausted => "the retry quota is exhausted",
            StopReason::RetryAfterTooLong => {
                "the server asked to wait longer than the Retry-After limit"
            }
        })
    }
}

/// What the retry layer did, in the extensions of the final response and in its errors.
/// A response without it succeeded at its first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryStats {
    /// Attempts made.
    pub attempts: u32,
    /// Why it stopped.
    pub stop: StopReason,
    /// Whether an earlier, failed attempt may have reached the target.
    pub earlier_may_have_reached: bool,
}

impl std::fmt::Display for RetryStats {
    /// `after 2 attempts; all attempts were used` (the reason left out when done).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(f, "after {} attempt{plural}", self.attempts)?;
        if self.stop != StopReason::Done {
            write!(f, "; retries stopped: {}", self.stop)?;
        }
        Ok(())
    }
}
