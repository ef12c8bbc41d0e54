use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::classify::ClassifyCircuit;
use super::error::CircuitBreakerError;
use super::future::{Admission, ResponseFuture};
use super::key::ExtractKey;
use super::layer::Shared;

/// Service of [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
pub struct CircuitBreaker<S, C, K> {
    inner: S,
    /// None when the layer is off: calls then go straight through, and a clone touches
    /// no reference count.
    shared: Option<Arc<Shared<C, K>>>,
}

impl<S, C, K> CircuitBreaker<S, C, K> {
    pub(crate) fn from_shared(inner: S, shared: Option<Arc<Shared<C, K>>>) -> Self {
        Self { inner, shared }
    }

    inner_service_accessors!();
}

impl<S, C> CircuitBreaker<S, C, super::ExtensionKey> {
    /// A breaker of its own over `inner` (use [`CircuitBreakerLayer`](super::CircuitBreakerLayer)
    /// to share circuits between services, or to choose the keys).
    pub fn new(inner: S, classifier: C, config: super::CircuitBreakerConfig) -> Self {
        tower_layer::Layer::layer(&super::CircuitBreakerLayer::new(classifier, config), inner)
    }

    /// A [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
    pub fn layer(
        classifier: C,
        config: super::CircuitBreakerConfig,
    ) -> super::CircuitBreakerLayer<C> {
        super::CircuitBreakerLayer::new(classifier, config)
    }
}

impl<S: Clone, C, K> Clone for CircuitBreaker<S, C, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C, K> fmt::Debug for CircuitBreaker<S, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("enabled", &self.shared.is_some())
            .finish()
    }
}

impl<S, C, K, Req> Service<Req> for CircuitBreaker<S, C, K>
where
    S: Service<Req>,
    K: ExtractKey<Req>,
    C: ClassifyCircuit<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = CircuitBreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, C, K>;

    /// Forwards the inner service's readiness. The circuit is consulted in `call`,
    /// because it depends on the request's key; a refused call never calls the inner
    /// service (whatever `poll_ready` reserved there stays with this service, for its
    /// next call, or is released when it is dropped).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(CircuitBreakerError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if self.shared.is_none() {
            return ResponseFuture::direct(self.inner.call(req));
        }
        self.call_guarded(req)
    }
}

impl<S, C, K> CircuitBreaker<S, C, K> {
    // Out of line: a `call` that reserved stack room for the guarded path would deepen
    // every call's frame, the breaker on or off (the layers' frames are where a call's
    // cache misses come from).
    #[inline(never)]
    fn call_guarded<Req>(&mut self, req: Req) -> ResponseFuture<S::Future, C, K>
    where
        S: Service<Req>,
        K: ExtractKey<Req>,
        C: ClassifyCircuit<S::Response, S::Error>,
    {
        let Some(shared) = &self.shared else {
            return ResponseFuture::direct(self.inner.call(req));
        };
        let circuit = match shared.key.key(&req) {
            Some(key) => shared.breaker.circuit(&key),
            None => None,
        };
        let Some(circuit) = circuit else {
            return ResponseFuture::direct(self.inner.call(req));
        };
        shared.breaker.tick();
        match shared.breaker.admit(&circuit) {
            Ok(ticket) => {
                // The admission exists before the inner call: if that call panics, its
                // drop frees the probe's slot.
                let admission = Admission::new(Arc::clone(shared), circuit, ticket);
                ResponseFuture::guarded(self.inner.call(req), admission)
            }
            Err(open) => ResponseFuture::refused(open),
        }
    }
}
