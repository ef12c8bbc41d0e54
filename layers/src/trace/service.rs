//! [`Trace`], the service.

use std::task::{Context, Poll};
use std::time::Instant;

use tower_service::Service;

use super::describe::Describe;
use super::future::ResponseFuture;
use super::layer::TraceLayer;

/// Service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Trace<S, D> {
    inner: S,
    describe: D,
}

impl<S, D> Trace<S, D> {
    /// Traces the calls of `inner` with `describe`.
    pub fn new(inner: S, describe: D) -> Self {
        Self { inner, describe }
    }

    /// A [`TraceLayer`] with `describe`.
    pub fn layer(describe: D) -> TraceLayer<D> {
        TraceLayer::new(describe)
    }

    inner_service_accessors!();
}

impl<S, D, B, RB> Service<http::Request<B>> for Trace<S, D>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    D: Describe<B, RB, S::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, D, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = self.describe.make_span(&req);
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        // No clock read for a span nobody records.
        let start = (!span.is_disabled()).then(Instant::now);
        ResponseFuture {
            inner: fut,
            span,
            describe: self.describe.clone(),
            start,
            done: false,
            _body: std::marker::PhantomData,
        }
    }
}
