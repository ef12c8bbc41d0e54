use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::error::{Elapsed, TimeoutError, Timer};
use crate::deadline::{Deadline, SendProgress};
use crate::PolledAfterCompletion;

pin_project! {
    /// Response future of the timeout services.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        sleep: Option<Sleep>,
        // One field for what the timer needs and for an error found in `call` (they never
        // go together): every layer outside moves this future, so its size counts.
        extra: Extra,
    }
}

enum Extra {
    None,
    Limit(Deadline, Timer, SendProgress),
    Failed(Elapsed),
}

impl<F> ResponseFuture<F> {
    pub(crate) fn unlimited(inner: F) -> Self {
        Self {
            inner: Some(inner),
            sleep: None,
            extra: Extra::None,
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
            extra: Extra::Limit(deadline, timer, progress),
        }
    }

    pub(crate) fn failed(elapsed: Elapsed) -> Self {
        Self {
            inner: None,
            sleep: None,
            extra: Extra::Failed(elapsed),
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, TimeoutError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Extra::Failed(_) = this.extra {
            if let Extra::Failed(elapsed) = std::mem::replace(this.extra, Extra::None) {
                return Poll::Ready(Err(TimeoutError::Elapsed(elapsed)));
            }
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            // The result was returned already.
            return Poll::Ready(Err(TimeoutError::PolledAfterCompletion(
                PolledAfterCompletion,
            )));
        };
        if let Poll::Ready(r) = inner.poll(cx) {
            this.inner.set(None);
            this.sleep.set(None);
            return Poll::Ready(r.map_err(TimeoutError::Inner));
        }
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                if let Extra::Limit(deadline, timer, progress) = &*this.extra {
                    let mut elapsed =
                        Elapsed::new(*timer, deadline.elapsed(), progress.may_have_been_sent());
                    if !progress.is_attempt() {
                        // The operation's progress: it counted the attempts made inside.
                        elapsed = elapsed.with_attempts(progress.attempts());
                    }
                    tracing::warn!(
                        timer = ?elapsed.timer(),
                        waited_ms = elapsed.waited().as_millis() as u64,
                        request_sent = elapsed.request_sent(),
                        "timed out"
                    );
                    this.inner.set(None);
                    this.sleep.set(None);
                    return Poll::Ready(Err(TimeoutError::Elapsed(elapsed)));
                }
            }
        }
        Poll::Pending
    }
}
