//! [`ResponseFuture`] of [`RateLimit`] and [`Feedback`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::error::RateLimitError;

pin_project_lite::pin_project! {
    /// Response future of [`RateLimit`] and [`Feedback`]: the inner future directly when
    /// no limit is configured (the layer then costs nothing measurable), else the boxed
    /// limiting future (one allocation per call).
    pub struct ResponseFuture<F, T, E> {
        #[pin]
        state: LimitedState<F, T, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = LimitedProj]
    enum LimitedState<F, T, E> {
        Direct { #[pin] fut: F },
        Limited { fut: Pin<Box<dyn Future<Output = Result<T, E>> + Send>> },
        // The boxed future's result was returned (the direct one answers a later poll
        // itself).
        Done,
    }
}

impl<F, T, E> ResponseFuture<F, T, E> {
    pub(super) fn direct(fut: F) -> Self {
        Self {
            state: LimitedState::Direct { fut },
        }
    }
    pub(super) fn limited(fut: Pin<Box<dyn Future<Output = Result<T, E>> + Send>>) -> Self {
        Self {
            state: LimitedState::Limited { fut },
        }
    }
}

impl<F, T, E, IE> Future for ResponseFuture<F, T, E>
where
    F: Future<Output = Result<T, IE>>,
    E: From<IE>,
    RateLimitError<IE>: Into<E>,
{
    type Output = Result<T, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        match state.as_mut().project() {
            LimitedProj::Direct { fut } => fut.poll(cx).map_err(E::from),
            LimitedProj::Limited { fut } => {
                let result = std::task::ready!(fut.as_mut().poll(cx));
                state.set(LimitedState::Done);
                Poll::Ready(result)
            }
            LimitedProj::Done => Poll::Ready(Err(RateLimitError::<IE>::PolledAfterCompletion(
                crate::PolledAfterCompletion,
            )
            .into())),
        }
    }
}
