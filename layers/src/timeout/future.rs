use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::deadline::{Deadline, SendProgress};
use super::error::{Elapsed, TimeoutError, Timer};

pin_project! {
    /// Response future of the timeout services.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        sleep: Option<Sleep>,
        limit: Option<(Deadline, Timer, SendProgress)>,
        failed: Option<Elapsed>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn unlimited(inner: F) -> Self {
        Self {
            inner: Some(inner),
            sleep: None,
            limit: None,
            failed: None,
        }
    }

    pub(crate) fn limited(
        inner: F,
        deadline: Deadline,
        timer: Timer,
        progress: SendProgress,
    ) -> Self {
        Self {
            inner: Some(inner),
            sleep: Some(tokio::time::sleep_until(deadline.at())),
            limit: Some((deadline, timer, progress)),
            failed: None,
        }
    }

    pub(crate) fn failed(elapsed: Elapsed) -> Self {
        Self {
            inner: None,
            sleep: None,
            limit: None,
            failed: Some(elapsed),
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, TimeoutError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(elapsed) = this.failed.take() {
            return Poll::Ready(Err(TimeoutError::Elapsed(elapsed)));
        }
        if let Some(inner) = this.inner.as_pin_mut() {
            if let Poll::Ready(r) = inner.poll(cx) {
                return Poll::Ready(r.map_err(TimeoutError::Inner));
            }
        } else {
            return Poll::Pending;
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                if let Some((deadline, timer, progress)) = this.limit.as_ref() {
                    let elapsed =
                        Elapsed::new(*timer, deadline.elapsed(), progress.may_have_been_sent());
                    tracing::warn!(
                        timer = ?elapsed.timer(),
                        waited_ms = elapsed.waited().as_millis() as u64,
                        request_sent = elapsed.request_sent(),
                        "timed out"
                    );
                    return Poll::Ready(Err(TimeoutError::Elapsed(elapsed)));
                }
            }
        }
        Poll::Pending
    }
}
