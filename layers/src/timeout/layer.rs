use std::time::Duration;

use tower_layer::Layer;

use super::service::{DeadlineService, Timeout};

/// Sets the operation deadline: puts a [`Deadline`](super::Deadline) in the request's
/// extensions (keeping an earlier one already there) and fails the call with
/// [`Timer::Operation`](super::Timer::Operation) when it passes. Place it outside retry
/// and rate limiting, so their waits count.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    pub(crate) budget: Option<Duration>,
}

impl DeadlineLayer {
    /// A deadline `budget` after each call starts.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget: Some(budget),
        }
    }

    /// No deadline of its own (only one a caller put in the extensions applies).
    pub fn none() -> Self {
        Self { budget: None }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            budget: self.budget,
        }
    }
}

/// Times out each attempt: the request's [`AttemptTimeout`](super::AttemptTimeout) or this
/// layer's default, never past the operation [`Deadline`](super::Deadline). Place it inside
/// retry, so each attempt gets its own timer.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    pub(crate) default: Option<Duration>,
}

impl TimeoutLayer {
    /// Attempts time out after `timeout` unless the request says otherwise.
    pub fn new(timeout: Duration) -> Self {
        Self {
            default: Some(timeout),
        }
    }

    /// Only requests carrying an [`AttemptTimeout`](super::AttemptTimeout), and the
    /// deadline, limit an attempt.
    pub fn per_request() -> Self {
        Self { default: None }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            default: self.default,
        }
    }
}
