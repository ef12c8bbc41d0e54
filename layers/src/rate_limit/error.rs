//! What the limiter answers when it refuses a call.

use std::fmt;
use std::time::Duration;

use super::{Adaptive, Rate};

/// A limit that cannot be enforced as written, found by
/// [`RateLimitBuilder::build`](super::RateLimitBuilder::build). None of these is ever
/// taken to mean "no limit".
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InvalidLimit {
    /// A rate that admits no call (zero `calls` or zero `burst`), or whose calls would
    /// be under a nanosecond apart (`per / calls`; a zero `per`).
    Rate {
        /// Which rate: `"global"`, `"per-key"` or `"key"` (a
        /// [key rate](super::RateLimitBuilder::key_rate)).
        limit: &'static str,
        /// The key, for a key rate.
        key: Option<String>,
        /// The rate as given.
        rate: Rate,
    },
    /// A concurrency cap of zero.
    Concurrency,
    /// [Shared limits](super::store::SharedLimits) whose settings cannot work.
    Shared {
        /// What is wrong with them.
        problem: &'static str,
    },
    /// Adaptive settings out of range.
    Adaptive {
        /// The settings as given.
        adaptive: Adaptive,
        /// What is wrong with them.
        problem: &'static str,
    },
}

impl fmt::Display for InvalidLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidLimit::Rate { limit, key, rate } => {
                write!(f, "the {limit} rate")?;
                if let Some(k) = key {
                    write!(f, " of {k}")?;
                }
                write!(
                    f,
                    " admits no call: {} calls per {:?}, burst {:?}",
                    rate.calls, rate.per, rate.burst
                )
            }
            InvalidLimit::Concurrency => write!(f, "a concurrency cap of 0 admits no call"),
            InvalidLimit::Shared { problem } => write!(f, "invalid shared limits: {problem}"),
            InvalidLimit::Adaptive { problem, .. } => {
                write!(f, "invalid adaptive limit: {problem}")
            }
        }
    }
}

impl std::error::Error for InvalidLimit {}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitKind {
    /// The global or per-key rate.
    Rate,
    /// The per-key concurrency cap (static or adaptive).
    Concurrency,
}

/// Why a refused call did not wait (longer) for the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The limiter is in [`Mode::FailFast`](super::Mode::FailFast).
    FailFast,
    /// The wait would pass, or reached, the operation [`Deadline`](crate::deadline::Deadline).
    Deadline,
    /// The wait would pass, or reached, the limiter's
    /// [maximum wait](super::RateLimitBuilder::max_wait).
    MaxWait,
    /// The limits are shared through a store that could not be reached in time, and
    /// the limiter fails closed ([`OnStoreFailure::FailClosed`]).
    ///
    /// [`OnStoreFailure::FailClosed`]: super::store::OnStoreFailure::FailClosed
    StoreUnavailable,
}

/// A call was refused by the rate limiter. The request never left the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimited {
    /// The key it was limited under, if any.
    pub key: Option<String>,
    /// Which limit.
    pub limit: LimitKind,
    /// The earliest time from now a call could go (for rate limits).
    pub earliest: Option<Duration>,
    /// Why it did not wait (longer).
    pub reason: Refusal,
    /// How long it waited before it was refused.
    pub waited: Duration,
}

impl RateLimited {
    /// A refusal by `limit` under `key` that did not wait (for test doubles and other
    /// limiters that report in this shape).
    pub fn new(key: Option<String>, limit: LimitKind, earliest: Option<Duration>) -> Self {
        Self {
            key,
            limit,
            earliest,
            reason: Refusal::FailFast,
            waited: Duration::ZERO,
        }
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.limit {
            LimitKind::Rate => "rate",
            LimitKind::Concurrency => "concurrency",
        };
        write!(f, "refused by the client-side {what} limit")?;
        if let Some(k) = &self.key {
            write!(f, " for {k}")?;
        }
        match self.reason {
            Refusal::FailFast => {}
            Refusal::Deadline => write!(f, " (a wait would pass the deadline)")?,
            Refusal::MaxWait => write!(f, " (a wait would pass the maximum wait)")?,
            Refusal::StoreUnavailable => write!(f, " (the shared limits' store is unavailable)")?,
        }
        if !self.waited.is_zero() {
            write!(f, " after waiting {:.3}s", self.waited.as_secs_f64())?;
        }
        if let Some(e) = self.earliest {
            write!(f, "; a call could go in {:.3}s", e.as_secs_f64())?;
        }
        Ok(())
    }
}

impl std::error::Error for RateLimited {}

/// Error of the rate limiter: refused, or the inner service failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RateLimitError<E> {
    /// Refused by a limit.
    Limited(RateLimited),
    /// The inner service failed.
    Inner(E),
    /// The response future was polled after it had completed.
    PolledAfterCompletion(crate::PolledAfterCompletion),
}

impl<E> RateLimitError<E> {
    /// The inner service's error, or this error when it is the limiter's own (a refusal,
    /// or a misused future: either way the request never left the machine).
    pub fn into_inner(self) -> Result<E, Self> {
        match self {
            RateLimitError::Inner(e) => Ok(e),
            other => Err(other),
        }
    }

    /// The refusal, if the limiter refused the call.
    pub fn refusal(&self) -> Option<&RateLimited> {
        match self {
            RateLimitError::Limited(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for RateLimitError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitError::Limited(e) => e.fmt(f),
            RateLimitError::Inner(e) => e.fmt(f),
            RateLimitError::PolledAfterCompletion(e) => e.fmt(f),
        }
    }
}

/// `Error` for every inner error that is `Debug + Display`, boxed errors included;
/// see [`BoxError`](crate::BoxError) for the source.
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for RateLimitError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RateLimitError::Limited(e) => Some(e),
            RateLimitError::Inner(e) => crate::inner_source(e),
            RateLimitError::PolledAfterCompletion(e) => Some(e),
        }
    }
}

impl<E> From<E> for RateLimitError<E> {
    fn from(e: E) -> Self {
        RateLimitError::Inner(e)
    }
}
