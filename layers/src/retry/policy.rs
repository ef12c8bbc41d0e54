use std::time::Duration;

use super::classify::RetryKind;

/// How many attempts, how long between them, and which failures are safe to repeat.
///
/// Defaults (AWS standard mode, spec §4.2, as the Rust SDK): 3 attempts; delay before
/// retry *n* = `rand[0,1) × min(base × 2^(n-1), cap)` with base 1 s and cap 20 s ("full
/// jitter"); a server's `Retry-After` is honoured as a lower bound, and a hint longer than
/// 60 s ends the retries (the caller gets the throttle with its hint). Failures that may
/// have reached the target are not retried unless the request is marked idempotent.
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

/// Why the retry layer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The attempt succeeded, or its result was final.
    Done,
    /// The failure cannot succeed when repeated unchanged.
    NotRetryable,
    /// All attempts were used.
    MaxAttempts,
    /// The request may have reached its target and is not idempotent.
    MayHaveRun,
    /// The wait would end past the operation deadline.
    Deadline,
    /// The retry quota is empty.
    QuotaExhausted,
    /// The server asked to wait longer than `max_retry_after`.
    RetryAfterTooLong,
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
