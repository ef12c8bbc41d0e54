//! [`RetryError`].

use std::fmt;

use super::policy::RetryStats;
use crate::PolledAfterCompletion;

/// The error of [`Retry`](super::Retry): the last failure and what the retry layer did before giving
/// up, or a misuse of its future.
#[derive(Debug)]
#[non_exhaustive]
pub enum RetryError<E> {
    /// The last attempt failed and no other was made.
    Failed {
        /// The last attempt's error.
        error: E,
        /// Attempts, why they stopped, and whether an earlier one may have reached the
        /// target.
        stats: RetryStats,
    },
    /// The response future was polled after it had completed.
    PolledAfterCompletion(PolledAfterCompletion),
}

impl<E> RetryError<E> {
    /// The last attempt's error (none for a misused future).
    pub fn error(&self) -> Option<&E> {
        match self {
            RetryError::Failed { error, .. } => Some(error),
            RetryError::PolledAfterCompletion(_) => None,
        }
    }

    /// What the retry layer did (none for a misused future).
    pub fn stats(&self) -> Option<RetryStats> {
        match self {
            RetryError::Failed { stats, .. } => Some(*stats),
            RetryError::PolledAfterCompletion(_) => None,
        }
    }

    /// The last attempt's error and the statistics, or the misuse.
    pub fn into_parts(self) -> Result<(E, RetryStats), PolledAfterCompletion> {
        match self {
            RetryError::Failed { error, stats } => Ok((error, stats)),
            RetryError::PolledAfterCompletion(p) => Err(p),
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryError::Failed { error, stats } => write!(f, "{error} ({stats})"),
            RetryError::PolledAfterCompletion(p) => p.fmt(f),
        }
    }
}

/// `Error` for every inner error that is `Debug + Display`, boxed errors included;
/// see [`BoxError`](crate::BoxError) for the source.
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RetryError::Failed { error, .. } => crate::inner_source(error),
            RetryError::PolledAfterCompletion(p) => Some(p),
        }
    }
}
