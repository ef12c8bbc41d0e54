//! One deadline for the whole operation, and a timeout per attempt.
//!
//! - [`DeadlineLayer`] (outermost, per operation): puts a [`Deadline`] in the request's
//!   extensions and fails the call with [`Timer::Operation`] when it passes. Rate-limit
//!   waits, every attempt and every backoff count against it. Inner layers read it and
//!   refuse waits that cannot end in time ([`Deadline::check_wait`] →
//!   [`WouldExceedDeadline`]).
//! - [`TimeoutLayer`] (inside retry, per attempt): limits each attempt to the request's
//!   [`AttemptTimeout`] or the layer's default, and never arms a timer past the deadline:
//!   when the deadline is nearer, it is the deadline that fires (and says so); when no
//!   time is left, the attempt is not started.
//! - Errors ([`Elapsed`]) say which timer fired, how long it waited, and whether the
//!   request may have been sent: the transport reports into a [`SendProgress`] in the
//!   extensions; without a report, a timed-out request counts as possibly sent.
//!
//! Both work on any `Service<http::Request<B>>`.
//!
//! # Defaults and why
//!
//! The layers have no default durations: the caller chooses. For Lambda, `invoke-stack`
//! sets the attempt timeout from the invocation type: a synchronous call may legitimately
//! wait the function's whole run (up to 900 s) with no byte on the wire, so its attempt
//! timeout is the function's maximum duration plus a margin; `Event` and `DryRun` are
//! answered as soon as Lambda has queued or checked the request, so they get a short one.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use invoke_layers::timeout::{DeadlineLayer, TimeoutError, Timer, TimeoutLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(30)))
//!     .layer(TimeoutLayer::new(Duration::from_secs(5)))
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         tokio::time::sleep(Duration::from_secs(60)).await; // a server that hangs
//!         Ok::<_, std::convert::Infallible>(())
//!     }));
//! let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
//! let TimeoutError::Inner(TimeoutError::Elapsed(e)) = err else { panic!() };
//! assert_eq!(e.timer(), Timer::Attempt);
//! assert_eq!(e.waited(), Duration::from_secs(5));
//! # }
//! ```
//!
//! # Testing
//!
//! Use `#[tokio::test(start_paused = true)]`: timers fire as soon as the runtime is idle,
//! so a test of a 15-minute timeout takes no time and asserts exact durations.

mod error;
mod future;
mod layer;
mod service;

/// The deadline types, at home in [`crate::deadline`].
pub use crate::deadline::{
    AttemptTimeout, Deadline, OperationTimeout, SendProgress, WouldExceedDeadline, MAX_BUDGET,
};
pub use error::{Elapsed, TimeoutError, Timer};
pub use future::ResponseFuture;
pub use layer::{DeadlineLayer, TimeoutLayer};
pub use service::{DeadlineService, Timeout};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;
    use tower::{Layer, ServiceExt};
    use tower_test::mock;

    type Req = http::Request<()>;

    fn unwrap_elapsed<E: std::fmt::Debug>(e: TimeoutError<E>) -> Elapsed {
        match e {
            TimeoutError::Elapsed(e) => e,
            other => panic!("not elapsed: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempt_timer_fires_with_its_duration() {
        let (mock, mut handle) = mock::pair::<Req, ()>();
        let svc = TimeoutLayer::new(Duration::from_secs(5)).layer(mock);
        let call = tokio::spawn(svc.oneshot(http::Request::new(())));
        let (req, _send) = handle.next_request().await.unwrap();
        req.extensions()
            .get::<SendProgress>()
            .unwrap()
            .mark_not_sent();
        let e = unwrap_elapsed(call.await.unwrap().unwrap_err());
        assert_eq!(
            (e.timer(), e.waited()),
            (Timer::Attempt, Duration::from_secs(5))
        );
        assert!(!e.request_sent(), "the transport said nothing was written");
    }

    #[tokio::test(start_paused = true)]
    async fn unreported_progress_counts_as_sent() {
        let (mock, mut handle) = mock::pair::<Req, ()>();
        let svc = TimeoutLayer::new(Duration::from_secs(1)).layer(mock);
        let call = tokio::spawn(svc.oneshot(http::Request::new(())));
        let (_req, _send) = handle.next_request().await.unwrap();
        assert!(unwrap_elapsed(call.await.unwrap().unwrap_err()).request_sent());

        let (mock, mut handle) = mock::pair::<Req, ()>();
        let svc = TimeoutLayer::new(Duration::from_secs(1)).layer(mock);
        let call = tokio::spawn(svc.oneshot(http::Request::new(())));
        let (req, _send) = handle.next_request().await.unwrap();
        let p = req.extensions().get::<SendProgress>().unwrap();
        p.mark_not_sent();
        p.mark_sent();
        assert!(unwrap_elapsed(call.await.unwrap().unwrap_err()).request_sent());
    }

    /// The deadline's budget shrinks across attempts and waits; an attempt timer is never
    /// armed past it; with nothing left, no attempt starts.
    #[tokio::test(start_paused = true)]
    async fn deadline_arithmetic_across_attempts() {
        let (mock, mut handle) = mock::pair::<Req, ()>();
        let attempt = TimeoutLayer::new(Duration::from_secs(4)).layer(mock);
        let start = Instant::now();
        let mut req = http::Request::new(());
        let deadline = Deadline::after(Duration::from_secs(10));
        req.extensions_mut().insert(deadline);

        // Attempt 1: its own 4 s timer fires.
        let r1 = {
            let mut r = http::Request::new(());
            r.extensions_mut().insert(deadline);
            r
        };
        let call = tokio::spawn(attempt.clone().oneshot(r1));
        let _pending = handle.next_request().await.unwrap();
        let e = unwrap_elapsed(call.await.unwrap().unwrap_err());
        assert_eq!(e.timer(), Timer::Attempt);
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        assert_eq!(deadline.remaining(), Duration::from_secs(6));

        // A 3 s backoff fits; a 7 s one would not.
        assert!(deadline.check_wait(Duration::from_secs(3)).is_ok());
        let refused = deadline.check_wait(Duration::from_secs(7)).unwrap_err();
        assert_eq!(refused.remaining, Duration::from_secs(6));
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Attempt 2 at 7 s: only 3 s left, so the deadline (not a 4 s timer) fires at 10 s.
        let call = tokio::spawn(attempt.clone().oneshot(req));
        let _pending2 = handle.next_request().await.unwrap();
        let e = unwrap_elapsed(call.await.unwrap().unwrap_err());
        assert_eq!(e.timer(), Timer::Operation);
        assert_eq!(e.waited(), Duration::from_secs(10));
        assert_eq!(start.elapsed(), Duration::from_secs(10));

        // Attempt 3 at 10 s: fails at once, the inner service is not called.
        let mut r3 = http::Request::new(());
        r3.extensions_mut().insert(deadline);
        let e = unwrap_elapsed(attempt.oneshot(r3).await.unwrap_err());
        assert_eq!(e.timer(), Timer::Operation);
        assert!(!e.request_sent());
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        // Every clone of the mock is gone and it never saw a third request.
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_layer_sets_and_keeps_the_earlier_deadline() {
        let (mock, mut handle) = mock::pair::<Req, ()>();
        let svc = DeadlineLayer::new(Duration::from_secs(30)).layer(mock);
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(2)));
        let call = tokio::spawn(svc.clone().oneshot(req));
        let (seen, _send) = handle.next_request().await.unwrap();
        assert_eq!(
            seen.extensions().get::<Deadline>().unwrap().remaining(),
            Duration::from_secs(2)
        );
        let e = unwrap_elapsed(call.await.unwrap().unwrap_err());
        assert_eq!(
            (e.timer(), e.waited()),
            (Timer::Operation, Duration::from_secs(2))
        );

        // A completed call is not affected.
        let call = tokio::spawn(svc.oneshot(http::Request::new(())));
        let (seen, send) = handle.next_request().await.unwrap();
        assert_eq!(
            seen.extensions().get::<Deadline>().unwrap().remaining(),
            Duration::from_secs(30)
        );
        send.send_response(());
        call.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn per_request_attempt_timeout_overrides_the_default() {
        let (mock, mut handle) = mock::pair::<Req, ()>();
        let svc = TimeoutLayer::new(Duration::from_secs(900)).layer(mock);
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert(AttemptTimeout(Duration::from_secs(10)));
        let call = tokio::spawn(svc.oneshot(req));
        let _pending = handle.next_request().await.unwrap();
        let e = unwrap_elapsed(call.await.unwrap().unwrap_err());
        assert_eq!(e.waited(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn no_timer_without_limits_and_errors_pass_through() {
        let (mock, mut handle) = mock::pair::<Req, ()>();
        let svc = TimeoutLayer::per_request().layer(mock);
        let call = tokio::spawn(svc.oneshot(http::Request::new(())));
        let (_, send) = handle.next_request().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        send.send_error("boom");
        match call.await.unwrap().unwrap_err() {
            TimeoutError::Inner(e) => assert_eq!(e.to_string(), "boom"),
            other => panic!("{other:?}"),
        }
    }

    /// Issue 16, item 2: a poll after completion is an error, not a silent `Pending`.
    #[tokio::test(start_paused = true)]
    async fn polled_after_completion_is_an_error() {
        use tower::Service;
        for svc_layer in [
            TimeoutLayer::new(Duration::from_secs(5)),
            TimeoutLayer::per_request(),
        ] {
            let (mock, mut handle) = mock::pair::<Req, ()>();
            let mut svc = svc_layer.layer(mock);
            handle.allow(1);
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
            let mut fut = tokio_test::task::spawn(svc.call(http::Request::new(())));
            tokio_test::assert_pending!(fut.poll());
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(());
            assert!(fut.is_woken());
            tokio_test::assert_ready_ok!(fut.poll());
            let again = tokio_test::assert_ready_err!(fut.poll());
            assert!(
                matches!(again, TimeoutError::PolledAfterCompletion(_)),
                "{again:?}"
            );
        }
        // A call refused at once (no time left) answers its error once, then the misuse.
        let (mock, _handle) = mock::pair::<Req, ()>();
        let mut svc = TimeoutLayer::per_request().layer(mock);
        let mut req = http::Request::new(());
        req.extensions_mut().insert(Deadline::after(Duration::ZERO));
        let mut fut = tokio_test::task::spawn(svc.call(req));
        assert!(matches!(
            tokio_test::assert_ready_err!(fut.poll()),
            TimeoutError::Elapsed(_)
        ));
        let again = tokio_test::assert_ready_err!(fut.poll());
        assert!(
            matches!(again, TimeoutError::PolledAfterCompletion(_)),
            "{again:?}"
        );
    }

    /// Issue 16, item 22: `Duration::MAX` as "no limit" saturates instead of panicking.
    #[tokio::test(start_paused = true)]
    async fn duration_max_means_no_limit() {
        assert_eq!(Deadline::after(Duration::MAX).remaining(), MAX_BUDGET);
        let (mock, mut handle) = mock::pair::<Req, ()>();
        let svc =
            DeadlineLayer::new(Duration::MAX).layer(TimeoutLayer::new(Duration::MAX).layer(mock));
        let call = tokio::spawn(svc.oneshot(http::Request::new(())));
        let (_, send) = handle.next_request().await.unwrap();
        tokio::time::sleep(Duration::from_secs(86_400 * 365)).await;
        send.send_response(());
        call.await.unwrap().unwrap();
    }
}
