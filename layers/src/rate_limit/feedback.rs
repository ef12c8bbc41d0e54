//! [`FeedbackLayer`]: each attempt's outcome, to the adaptive limits.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::error::RateLimitError;
use super::future::ResponseFuture;
use super::key::AttemptKey;
use super::layer::RateCount;
use super::limits::{lock, Adaptive, AdaptiveSlots, AdaptiveState, KeyState, Limits};
use super::store::rate_cells;
use super::wait::{adaptive_slot, Budget};
use crate::classify::{Classification, ClassifyRetry, RetryKind};
use crate::deadline::{AttemptNumber, Deadline};

/// Reports each attempt's outcome to the adaptive limits; made by
/// [`RateLimitLayer::feedback`](super::RateLimitLayer::feedback).
pub struct FeedbackLayer<C> {
    pub(super) shared: Arc<FeedbackShared<C>>,
}

// One reference count per clone of the service (the stack is cloned per call).
pub(super) struct FeedbackShared<C> {
    pub(super) limits: Arc<Limits>,
    pub(super) classifier: C,
}

impl<C> Clone for FeedbackLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for FeedbackLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedbackLayer").finish_non_exhaustive()
    }
}

impl<S, C> Layer<S> for FeedbackLayer<C> {
    type Service = Feedback<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        Feedback {
            inner,
            shared: (self.shared.limits)
                .attempt_limits()
                .then(|| Arc::clone(&self.shared)),
        }
    }
}

/// Service of [`FeedbackLayer`].
pub struct Feedback<S, C> {
    inner: S,
    /// None without an adaptive limit: the layer then passes calls through, and a clone
    /// of it touches no reference count.
    shared: Option<Arc<FeedbackShared<C>>>,
}

impl<S, C> Feedback<S, C> {
    /// `inner`'s attempts reported to the limits `layer` was made for.
    pub fn new(inner: S, layer: &FeedbackLayer<C>) -> Self {
        tower_layer::Layer::layer(layer, inner)
    }

    inner_service_accessors!();
}

impl<S: Clone, C> Clone for Feedback<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Feedback<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feedback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Moves the key's adaptive limit after an attempt admitted under `epoch`: down on a
    /// throttle, up on a success (unless it already counted as accepted).
    fn feedback(&self, state: &KeyState, epoch: u64, class: Classification, accepted: bool) {
        let (Some(a), Some(slots)) = (self.adaptive, &state.adaptive) else {
            return;
        };
        let key = &*state.name;
        let mut s = lock(&slots.state);
        match class {
            // One decrease per round: throttles of calls admitted before the last
            // decrease do not cut the limit again.
            Classification::Retryable {
                kind: RetryKind::Throttling,
                ..
            } if epoch == s.epoch => {
                let limit = (s.limit * a.decrease).max(a.min);
                slots.decrease(&mut s, limit);
                tracing::debug!(key, limit, "adaptive limit lowered");
            }
            Classification::Final if !accepted => grow(&a, slots, &mut s, 1.0),
            _ => {}
        }
        #[cfg(feature = "metrics")]
        metrics::gauge!(
            "invoke_adaptive_limit",
            "function" => metrics::SharedString::from(std::sync::Arc::clone(&state.name))
        )
        .set(s.limit);
    }

    /// An attempt under the key's adaptive limit has been in flight for
    /// [`Adaptive::accepted_after`] without an answer: it was accepted. Its slot stays
    /// taken, so in slow start it raises the limit by two, not one (each success admits
    /// two more calls).
    fn accepted(&self, state: &KeyState) {
        let (Some(a), Some(slots)) = (self.adaptive, &state.adaptive) else {
            return;
        };
        let mut s = lock(&slots.state);
        grow(&a, slots, &mut s, 2.0);
    }
}

/// Raises an adaptive limit after a success: by `slow_start_step` in slow start, else by
/// one per round (`1 / limit` per call). Only while the window is in use: a limit that
/// is not being tested must not creep up (the caller slows down, the limit stays).
fn grow(a: &Adaptive, slots: &AdaptiveSlots, s: &mut AdaptiveState, slow_start_step: f64) {
    if (slots.used(s) as f64) * 2.0 < s.limit {
        return;
    }
    let step = if s.slow_start {
        slow_start_step
    } else {
        1.0 / s.limit
    };
    let limit = (s.limit + step).min(a.max);
    slots.set_limit(s, limit);
}

impl<S, C, B, RB> Service<http::Request<B>> for Feedback<S, C>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
    C: ClassifyRetry<http::Response<RB>, S::Error>,
{
    type Response = S::Response;
    type Error = RateLimitError<S::Error>;
    type Future = ResponseFuture<S::Future, S::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(RateLimitError::Inner)
    }

    /// A retry (an attempt after the first) takes a cell of the rates, as the first
    /// attempt did before the operation ([`RateCount::Attempts`]). With an adaptive
    /// limit, each attempt then waits for a slot under its key's current limit, and its
    /// outcome moves the limit. Attempts count, not operations: an operation sleeping in
    /// retry backoff holds no slot. Waits are bounded as in [`RateLimit`](super::RateLimit).
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self.shared.is_none() {
            return ResponseFuture::direct(self.inner.call(req));
        }
        self.call_limited(req)
    }
}

impl<S, C> Feedback<S, C> {
    // Out of line: the limited path builds its future (large) on the stack before boxing
    // it, and a `call` that reserved room for it would deepen every call's stack frame,
    // limited or not (the layers' frames are where a call's cache misses come from).
    #[inline(never)]
    fn call_limited<B, RB>(
        &mut self,
        req: http::Request<B>,
    ) -> ResponseFuture<S::Future, S::Response, RateLimitError<S::Error>>
    where
        S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        B: Send + 'static,
        RB: Send + 'static,
        C: ClassifyRetry<http::Response<RB>, S::Error>,
    {
        let Some(shared) = &self.shared else {
            return ResponseFuture::direct(self.inner.call(req));
        };
        let Some(AttemptKey(state)) = req.extensions().get::<AttemptKey>().cloned() else {
            return ResponseFuture::direct(self.inner.call(req));
        };
        let retry = req
            .extensions()
            .get::<AttemptNumber>()
            .is_some_and(|n| n.0 > 1);
        let rate = retry && shared.limits.count == RateCount::Attempts;
        if !rate && state.as_ref().is_none_or(|s| s.adaptive.is_none()) {
            return ResponseFuture::direct(self.inner.call(req));
        }
        shared.limits.maintenance_due();
        let shared = Arc::clone(shared);
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::limited(Box::pin(async move {
            let limits = &shared.limits;
            let deadline = req.extensions().get::<Deadline>().copied();
            let budget = Budget::new(limits.mode, limits.max_wait, deadline);
            let key = state.as_ref().map(|s| &*s.name);
            if rate {
                rate_cells(limits, state.as_deref(), key, &budget)
                    .await
                    .map_err(RateLimitError::Limited)?;
            }
            let admitted = match &state {
                Some(s) => adaptive_slot(s, &s.name, &budget)
                    .await
                    .map_err(RateLimitError::Limited)?,
                None => None,
            };
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(RateLimitError::Inner)?;
            let call = svc.call(req);
            let mut accepted = false;
            let after = limits.adaptive.and_then(|a| a.accepted_after);
            let mut result = match (&admitted, &state, after) {
                (Some(_), Some(s), Some(after)) => {
                    let mut call = std::pin::pin!(call);
                    match tokio::time::timeout(after, call.as_mut()).await {
                        Ok(result) => result,
                        Err(_still_in_flight) => {
                            limits.accepted(s);
                            accepted = true;
                            call.await
                        }
                    }
                }
                _ => call.await,
            };
            if let (Some((slot, epoch)), Some(s)) = (admitted, &state) {
                // Kept in the response for the retry layer outside (classified once).
                let class = crate::classify::classify_once(&shared.classifier, &mut result);
                limits.feedback(s, epoch, class, accepted);
                drop(slot);
            }
            result.map_err(RateLimitError::Inner)
        }))
    }
}
