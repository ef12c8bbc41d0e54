//! [`RateLimit`], the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::error::RateLimitError;
use super::future::ResponseFuture;
use super::key::{AttemptKey, KeyExtractor};
use super::layer::{RateLimitLayer, Shared};
use super::store;
use super::wait::Budget;
use crate::deadline::Deadline;

/// Service of [`RateLimitLayer`].
pub struct RateLimit<S, K> {
    pub(super) inner: S,
    /// None when no limit is configured: the layer then passes calls through, and a
    /// clone of it (one per call in a shared stack) touches no reference count.
    pub(super) shared: Option<Arc<Shared<K>>>,
}

impl<S, K> RateLimit<S, K> {
    /// `inner` under the limits of `layer` (shared with every other service it made).
    pub fn new(inner: S, layer: &RateLimitLayer<K>) -> Self {
        tower_layer::Layer::layer(layer, inner)
    }

    /// A builder of a [`RateLimitLayer`] (the limits are set there).
    pub fn layer() -> super::RateLimitBuilder<super::ExtensionKey> {
        RateLimitLayer::builder()
    }

    inner_service_accessors!();
}

impl<S: Clone, K> Clone for RateLimit<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for RateLimit<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, B, RB> Service<http::Request<B>> for RateLimit<S, K>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Send + 'static,
    RB: Send + 'static,
    K: KeyExtractor<B>,
{
    type Response = http::Response<RB>;
    type Error = RateLimitError<S::Error>;
    type Future = ResponseFuture<S::Future, Self::Response, Self::Error>;

    /// Forwards the inner service's readiness. The limits are applied in the response
    /// future because the keyed ones depend on the request; nothing is taken before
    /// `call`, so a service made ready and then dropped holds no permit.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(RateLimitError::Inner)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self.shared.is_none() {
            return ResponseFuture::direct(self.inner.call(req));
        }
        self.call_limited(req)
    }
}

impl<S, K> RateLimit<S, K> {
    // Out of line: the limited path builds its future (large) on the stack before boxing
    // it, and a `call` that reserved room for it would deepen every call's stack frame,
    // limited or not (the layers' frames are where a call's cache misses come from).
    #[inline(never)]
    fn call_limited<B, RB>(
        &mut self,
        mut req: http::Request<B>,
    ) -> ResponseFuture<S::Future, http::Response<RB>, RateLimitError<S::Error>>
    where
        S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
        B: Send + 'static,
        RB: Send + 'static,
        K: KeyExtractor<B>,
    {
        let Some(shared) = &self.shared else {
            return ResponseFuture::direct(self.inner.call(req));
        };
        shared.limits.maintenance_due();
        let shared = Arc::clone(shared);
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        // The key's state is looked up here, with the key borrowed from the request: the
        // future names the key by its state's copy, and owns one only for a key with no
        // state (no per-key limit).
        let (state, unkeyed_name) = match shared.key.key_ref(&req) {
            Some(k) => match shared.limits.key(&k) {
                Some(state) => (Some(state), None),
                None => (None, Some(k.into_owned())),
            },
            None => (None, None),
        };
        #[cfg(feature = "metrics")]
        let function = crate::metrics::target_of(&req);
        let fut = Box::pin(async move {
            let limits = &shared.limits;
            let deadline = req.extensions().get::<Deadline>().copied();
            let budget = Budget::new(shared.mode, limits.max_wait, deadline);
            let key = state.as_ref().map(|s| &*s.name).or(unkeyed_name.as_deref());
            let admitted = store::admit(limits, state.as_ref(), key, &budget).await;
            #[cfg(feature = "metrics")]
            {
                let waited = budget.waited();
                if !waited.is_zero() {
                    metrics::counter!("invoke_rate_limit_waits_total", "function" => function.clone())
                        .increment(1);
                    metrics::histogram!("invoke_rate_limit_wait_seconds", "function" => function.clone())
                        .record(waited.as_secs_f64());
                }
                if admitted.is_err() {
                    metrics::counter!("invoke_rate_limit_refusals_total", "function" => function)
                        .increment(1);
                }
            }
            let slot = admitted.map_err(RateLimitError::Limited)?;
            let waited = budget.waited();
            if !waited.is_zero() {
                tracing::debug!(
                    key,
                    waited_ms = waited.as_millis() as u64,
                    "waited for the rate limiter"
                );
            }
            if limits.attempt_limits() {
                // Each attempt takes its adaptive slot, and each retry its rate cells, in
                // the feedback layer.
                req.extensions_mut().insert(AttemptKey(state));
            }
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(RateLimitError::Inner)?;
            let result = svc.call(req).await.map_err(RateLimitError::Inner);
            // The slot is released here, when the response (or error) has arrived; a
            // dropped future releases it too.
            if let Some(slot) = slot {
                slot.release(deadline).await;
            }
            result
        });
        ResponseFuture::limited(fut)
    }
}
