//! [`Retry`], the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::policy::{RetryStats, StopReason};
use crate::classify::ClassifyRetry;

use super::error::RetryError;
use super::future::ResponseFuture;
use super::layer::{RetryLayer, Shared};

/// Service of [`RetryLayer`].
pub struct Retry<S, C> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared<C>>,
}

impl<S, C> Retry<S, C> {
    /// Retries calls of `inner` with `classifier` and the default policy (use
    /// [`RetryLayer`] to set the policy, quota or jitter).
    pub fn new(inner: S, classifier: C) -> Self {
        RetryLayer::new(classifier).layer(inner)
    }

    /// A [`RetryLayer`] with `classifier`.
    pub fn layer(classifier: C) -> RetryLayer<C> {
        RetryLayer::new(classifier)
    }

    inner_service_accessors!();
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl<S, C, B, RB> Service<http::Request<B>> for Retry<S, C>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone,
    B: Clone,
    C: ClassifyRetry<http::Response<RB>, S::Error>,
{
    type Response = http::Response<RB>;
    type Error = RetryError<S::Error>;
    type Future = ResponseFuture<S, C, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| RetryError::Failed {
                error,
                stats: RetryStats {
                    attempts: 0,
                    stop: StopReason::NotRetryable,
                    earlier_may_have_reached: false,
                },
            })
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The service made ready for this call goes into the future; a clone stays.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::start(ready, req, Arc::clone(&self.shared))
    }
}
