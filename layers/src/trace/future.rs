//! [`ResponseFuture`] of [`Trace`](super::Trace).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use tracing::Span;

use super::describe::Describe;

pin_project! {
    /// Response future of [`Trace`].
    pub struct ResponseFuture<F, D, B> {
        #[pin]
        pub(super) inner: F,
        pub(super) span: Span,
        pub(super) describe: D,
        pub(super) start: Option<Instant>,
        pub(super) done: bool,
        pub(super) _body: std::marker::PhantomData<fn(B)>,
    }
}

impl<F, D, B, RB, E> Future for ResponseFuture<F, D, B>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    D: Describe<B, RB, E>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            std::task::ready!(this.inner.poll(cx))
        };
        // Recorded once: a poll after completion is the inner future's to answer (this
        // crate's futures answer it with an error), and is not a second outcome.
        if !std::mem::replace(this.done, true) {
            let elapsed = this.start.map_or(Duration::ZERO, |s| s.elapsed());
            match &result {
                Ok(resp) => this.describe.on_response(this.span, resp, elapsed),
                Err(e) => this.describe.on_error(this.span, e, elapsed),
            }
        }
        Poll::Ready(result)
    }
}
