use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use super::error::{Elapsed, TimeoutError, Timer};
use super::future::ResponseFuture;
use crate::deadline::{AttemptTimeout, Deadline, OperationTimeout, SendProgress};

/// Service of [`DeadlineLayer`](super::DeadlineLayer).
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    pub(crate) inner: S,
    pub(crate) budget: Option<Duration>,
}

impl<S> DeadlineService<S> {
    /// A deadline `budget` after each call of `inner` starts.
    pub fn new(inner: S, budget: Duration) -> Self {
        Self {
            inner,
            budget: Some(budget),
        }
    }

    /// A [`DeadlineLayer`](super::DeadlineLayer) with this budget.
    pub fn layer(budget: Duration) -> super::DeadlineLayer {
        super::DeadlineLayer::new(budget)
    }

    inner_service_accessors!();
}

impl<S, B> Service<http::Request<B>> for DeadlineService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = TimeoutError<S::Error>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(TimeoutError::Inner)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let ext = req.extensions_mut();
        let call = ext
            .remove::<OperationTimeout>()
            .map(|t| Deadline::after(t.0));
        let deadline = [
            self.budget.map(Deadline::after),
            ext.get::<Deadline>().copied(),
            call,
        ]
        .into_iter()
        .flatten()
        .reduce(Deadline::min);
        let Some(deadline) = deadline else {
            return ResponseFuture::unlimited(self.inner.call(req));
        };
        let progress = ext.get::<SendProgress>().cloned().unwrap_or_default();
        ext.insert(progress.clone());
        ext.insert(deadline);
        ResponseFuture::limited(self.inner.call(req), deadline, Timer::Operation, progress)
    }
}

/// Service of [`TimeoutLayer`](super::TimeoutLayer).
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    pub(crate) inner: S,
    pub(crate) default: Option<Duration>,
}

impl<S> Timeout<S> {
    /// Attempts of `inner` time out after `timeout` unless the request says otherwise.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            default: Some(timeout),
        }
    }

    /// A [`TimeoutLayer`](super::TimeoutLayer) with this timeout.
    pub fn layer(timeout: Duration) -> super::TimeoutLayer {
        super::TimeoutLayer::new(timeout)
    }

    inner_service_accessors!();
}

impl<S, B> Service<http::Request<B>> for Timeout<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = TimeoutError<S::Error>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(TimeoutError::Inner)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let ext = req.extensions_mut();
        let operation = ext.get::<Deadline>().copied();
        let attempt = ext.get::<AttemptTimeout>().map(|t| t.0).or(self.default);
        // This attempt's progress: the one a retry layer outside made for it, or a new
        // one that reports to the operation's, if there is one.
        let progress = match ext.get::<SendProgress>() {
            Some(p) if p.is_attempt() => p.clone(),
            operation => {
                let p = operation.map_or_else(SendProgress::attempt, SendProgress::child);
                ext.insert(p.clone());
                p
            }
        };

        let (limit, timer) = match (attempt, operation) {
            (None, None) => return ResponseFuture::unlimited(self.inner.call(req)),
            (Some(a), None) => (Deadline::after(a), Timer::Attempt),
            (None, Some(op)) => (op, Timer::Operation),
            (Some(a), Some(op)) => {
                let own = Deadline::after(a);
                if op.at() < own.at() {
                    (op, Timer::Operation)
                } else {
                    (own, Timer::Attempt)
                }
            }
        };
        if timer == Timer::Operation && limit.remaining().is_zero() {
            // No time left: do not start an attempt that cannot finish.
            let elapsed = Elapsed::new(Timer::Operation, limit.elapsed(), false);
            return ResponseFuture::failed(elapsed);
        }
        ResponseFuture::limited(self.inner.call(req), limit, timer, progress)
    }
}
