//! [`ResponseFuture`]: the attempts of one operation, driven in place.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::decide::{RetryBudget, RetryDecision, RetryableFailure};
use super::policy::{Idempotent, MaxAttempts, RetryStats, StopReason};
use super::quota::RetryPartition;
use crate::classify::{Classification, ClassifyRetry, Reached, RetryKind};
use crate::deadline::{AttemptNumber, Deadline, SendProgress};
use crate::PolledAfterCompletion;

use super::error::RetryError;
use super::layer::Shared;

const AMZ_SDK_INVOCATION_ID: HeaderName = HeaderName::from_static("amz-sdk-invocation-id");
const AMZ_SDK_REQUEST: HeaderName = HeaderName::from_static("amz-sdk-request");

/// Gives a retry's tokens back to the quota unless the retry was made: a backoff the
/// caller cancelled (dropped the future) costs nothing.
struct Refund {
    budget: Arc<dyn RetryBudget>,
    partition: Option<RetryPartition>,
    cost: u32,
    /// The retry's reason and backoff, recorded when it is made (not when scheduled).
    #[cfg(feature = "metrics")]
    metrics: (&'static str, Duration),
}

impl Refund {
    /// The retry was made: the tokens stay spent.
    fn keep(mut self) {
        self.cost = 0;
    }
}

impl Drop for Refund {
    fn drop(&mut self) {
        if self.cost > 0 {
            self.budget
                .deposit(self.partition.as_ref(), Some(self.cost));
        }
    }
}

fn clone_request<B: Clone>(req: &http::Request<B>) -> http::Request<B> {
    let mut out = http::Request::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.version_mut() = req.version();
    *out.headers_mut() = req.headers().clone();
    *out.extensions_mut() = req.extensions().clone();
    out
}

/// A random (version 4) UUID in text, written without formatting machinery.
fn invocation_id() -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Where each byte's two digits go: dashes sit at 8, 13, 18 and 23.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut bytes = fastrand::u128(..).to_le_bytes();
    bytes[6] = bytes[6] & 0x0f | 0x40; // version 4
    bytes[8] = bytes[8] & 0x3f | 0x80; // variant 10
    let mut out = [b'-'; 36];
    for (b, at) in bytes.iter().zip(AT) {
        out[at] = HEX[usize::from(b >> 4)];
        out[at + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

pin_project! {
    /// Response future of [`Retry`]: drives the attempts in place. A call allocates one
    /// block here (what the attempts share, below) besides the copy of the request kept
    /// for a later attempt; a backoff timer is allocated on the retry path only.
    pub struct ResponseFuture<S, C, B>
    where
        S: Service<http::Request<B>>,
    {
        #[pin]
        state: State<S::Future, B>,
        // What the attempts share, in one allocation: every layer outside holds this
        // future and builds it in its own stack frame, so each byte here is paid many
        // times over in stack depth (and cache lines) on every call.
        rest: Box<Rest<S, C, B>>,
    }
}

struct Rest<S, C, B> {
    svc: S,
    // A copy of the request as given, for the attempts after the first; the last
    // attempt takes it.
    template: Option<http::Request<B>>,
    shared: Arc<Shared<C>>,
    op: Operation,
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<F, B> {
        // An attempt in flight.
        Calling { #[pin] fut: F },
        // Between attempts: the backoff, then the service's readiness, then `next`. The
        // refund gives the retry's tokens back if the future is dropped before it.
        Waiting { sleep: Option<Pin<Box<Sleep>>>, next: http::Request<B>, refund: Refund },
        Done,
    }
}

/// What follows an attempt.
// Returned once and moved at once into the future's state, which holds a request anyway:
// boxing it would only add an allocation to each retry.
#[allow(clippy::large_enum_variant)]
enum After<R, B> {
    /// The operation's result.
    Done(R),
    /// Another attempt, after `delay`.
    Retry {
        delay: Duration,
        next: http::Request<B>,
        refund: Refund,
    },
}

/// What one operation knows across its attempts.
struct Operation {
    max: u32,
    attempt: u32,
    deadline: Option<Deadline>,
    partition: Option<RetryPartition>,
    idempotent: bool,
    operation_progress: Option<SendProgress>,
    // The progress of the attempt in flight.
    progress: Option<SendProgress>,
    // Kept as text: a header value made for each attempt is one allocation; a shared
    // one would be two (its bytes, then the shared handle on the first clone).
    invocation_id: Option<[u8; 36]>,
    earlier_reached: bool,
    last_cost: Option<u32>,
    // The metrics' `function` label, and when the attempt in flight began.
    #[cfg(feature = "metrics")]
    metrics: (metrics::SharedString, std::time::Instant),
}

impl Operation {
    /// Records an attempt's outcome and duration.
    #[cfg(feature = "metrics")]
    fn record_attempt(&self, classification: &Classification) {
        let outcome = match classification {
            Classification::Final => "final",
            Classification::NotRetryable => "not_retryable",
            Classification::Retryable {
                kind: RetryKind::Throttling,
                ..
            } => "throttled",
            Classification::Retryable { .. } => "transient",
        };
        let function = self.metrics.0.clone();
        metrics::counter!("invoke_attempts_total", "function" => function.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("invoke_attempt_duration_seconds", "function" => function)
            .record(self.metrics.1.elapsed().as_secs_f64());
    }

    /// Makes `req` the next attempt: its progress, number and SDK headers.
    fn prepare<B, C>(&mut self, mut req: http::Request<B>, shared: &Shared<C>) -> http::Request<B> {
        self.attempt += 1;
        req.extensions_mut().insert(AttemptNumber(self.attempt));
        if let Some(id) = self
            .invocation_id
            .and_then(|id| HeaderValue::from_bytes(&id).ok())
        {
            req.headers_mut().insert(AMZ_SDK_INVOCATION_ID, id);
            // The prebuilt values name the policy's maximum; a call with its own
            // (`MaxAttempts`) builds its value.
            let value = if shared.policy.max_attempts.max(1) == self.max {
                shared
                    .attempt_headers
                    .get(self.attempt as usize - 1)
                    .cloned()
            } else {
                HeaderValue::from_str(&format!("attempt={}; max={}", self.attempt, self.max)).ok()
            };
            if let Some(v) = value {
                req.headers_mut().insert(AMZ_SDK_REQUEST, v);
            }
        }
        req
    }

    /// The attempt `req` is made now: its own progress, counted by the operation's (made
    /// here, not when the retry is scheduled, so a deadline that fires during the
    /// backoff counts only the attempts made).
    fn begin<B>(&mut self, mut req: http::Request<B>) -> http::Request<B> {
        #[cfg(feature = "metrics")]
        {
            self.metrics.1 = std::time::Instant::now();
        }
        let progress = self
            .operation_progress
            .as_ref()
            .map_or_else(SendProgress::attempt, SendProgress::child);
        req.extensions_mut().insert(progress.clone());
        self.progress = Some(progress);
        req
    }

    fn stop<RB, E>(
        &self,
        reason: StopReason,
        result: Result<http::Response<RB>, E>,
    ) -> Result<http::Response<RB>, RetryError<E>> {
        let stats = RetryStats {
            attempts: self.attempt,
            stop: reason,
            earlier_may_have_reached: self.earlier_reached,
        };
        match result {
            Ok(mut resp) => {
                // One attempt that succeeded is what a response without stats means:
                // no allocation for the common case.
                if stats.attempts > 1 || stats.stop != StopReason::Done {
                    resp.extensions_mut().insert(stats);
                }
                Ok(resp)
            }
            Err(error) => Err(RetryError::Failed { error, stats }),
        }
    }

    /// After an attempt: the final result, or the wait before the next attempt and that
    /// attempt's request.
    fn after<B: Clone, C, RB, E>(
        &mut self,
        result: Result<http::Response<RB>, E>,
        template: &mut Option<http::Request<B>>,
        shared: &Shared<C>,
    ) -> After<Result<http::Response<RB>, RetryError<E>>, B>
    where
        C: ClassifyRetry<http::Response<RB>, E>,
    {
        let policy = &shared.policy;
        let mut result = result;
        let classification = crate::classify::classify_once(&shared.classifier, &mut result);
        #[cfg(feature = "metrics")]
        self.record_attempt(&classification);
        let (kind, retry_after, reached) = match classification {
            Classification::Final => {
                shared
                    .budget
                    .deposit(self.partition.as_ref(), self.last_cost);
                return After::Done(self.stop(StopReason::Done, result));
            }
            Classification::NotRetryable => {
                return After::Done(self.stop(StopReason::NotRetryable, result));
            }
            Classification::Retryable {
                kind,
                retry_after,
                reached,
            } => (kind, retry_after, reached),
        };
        let attempt = self.attempt;
        if kind == RetryKind::Throttling {
            tracing::info!(
                attempt,
                retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
                "throttled"
            );
        }
        let reached = match reached {
            Reached::No => false,
            Reached::Maybe => true,
            Reached::IfSent => self
                .progress
                .as_ref()
                .is_none_or(SendProgress::may_have_been_sent),
        };
        let failure = RetryableFailure {
            attempt,
            max_attempts: self.max,
            kind,
            retry_after,
            reached,
            idempotent: self.idempotent,
        };
        let decided = match &shared.decision {
            Some(decision) => decision.decide(&failure),
            None => policy.decide(&failure),
        };
        if let Err(reason) = decided {
            return After::Done(self.stop(reason, result));
        }
        let backoff = match &shared.backoff {
            Some(b) => b.backoff(kind, attempt),
            None => policy.backoff(kind, attempt, (shared.jitter)()),
        };
        let delay = retry_after.map_or(backoff, |hint| hint.max(backoff));
        if let Some(deadline) = self.deadline {
            if deadline.check_wait(delay).is_err() {
                return After::Done(self.stop(StopReason::Deadline, result));
            }
            // The next attempt must have time to finish, or it only turns "not run"
            // into "may have run".
            let budget = delay.saturating_add(policy.min_attempt_budget);
            if deadline.check_wait(budget).is_err() {
                return After::Done(self.stop(StopReason::DeadlineTooClose, result));
            }
        }
        let Some(cost) = shared
            .budget
            .withdraw(self.partition.as_ref(), kind, retry_after)
        else {
            return After::Done(self.stop(StopReason::QuotaExhausted, result));
        };
        // The last attempt takes the template. It is always there before the last attempt
        // (kept when `max > 1`); were it not, the quota goes back and the operation stops.
        let next = if attempt + 1 >= self.max {
            template.take()
        } else {
            template.as_ref().map(clone_request)
        };
        let Some(next) = next else {
            shared.budget.deposit(self.partition.as_ref(), Some(cost));
            return After::Done(self.stop(StopReason::MaxAttempts, result));
        };
        self.last_cost = Some(cost);
        self.earlier_reached |= reached;
        tracing::debug!(
            attempt,
            kind = ?kind,
            delay_ms = delay.as_millis() as u64,
            retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
            quota_left = shared.budget.available(self.partition.as_ref()),
            "retry scheduled"
        );
        After::Retry {
            delay,
            next: self.prepare(next, shared),
            refund: Refund {
                budget: Arc::clone(&shared.budget),
                partition: self.partition.clone(),
                cost,
                #[cfg(feature = "metrics")]
                metrics: (
                    match kind {
                        RetryKind::Throttling => "throttle",
                        _ => "transient",
                    },
                    delay,
                ),
            },
        }
    }
}

impl<S, C, B> ResponseFuture<S, C, B>
where
    S: Service<http::Request<B>>,
    B: Clone,
{
    pub(super) fn start(mut svc: S, req: http::Request<B>, shared: Arc<Shared<C>>) -> Self {
        let policy = &shared.policy;
        let ext = req.extensions();
        let mut op = Operation {
            max: ext
                .get::<MaxAttempts>()
                .map_or(policy.max_attempts, |m| m.0)
                .max(1),
            attempt: 0,
            deadline: ext.get::<Deadline>().copied(),
            partition: ext.get::<RetryPartition>().cloned(),
            idempotent: ext
                .get::<Idempotent>()
                .map_or(policy.idempotent_by_default, |i| i.0),
            operation_progress: ext.get::<SendProgress>().cloned(),
            progress: None,
            invocation_id: policy.sdk_headers.then(invocation_id),
            earlier_reached: false,
            last_cost: None,
            #[cfg(feature = "metrics")]
            metrics: (crate::metrics::target_of(&req), std::time::Instant::now()),
        };
        // A single attempt needs no copy. Otherwise the first attempt takes the request
        // as given, whose header map may be presized for what the inner layers add (a
        // copy has room for its current headers only, and would grow when signed).
        let template = (op.max > 1).then(|| clone_request(&req));
        let first = op.prepare(req, &shared);
        let first = op.begin(first);
        let fut = svc.call(first);
        Self {
            state: State::Calling { fut },
            rest: Box::new(Rest {
                svc,
                template,
                shared,
                op,
            }),
        }
    }
}

impl<S, C, B, RB> Future for ResponseFuture<S, C, B>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    B: Clone,
    C: ClassifyRetry<http::Response<RB>, S::Error>,
{
    type Output = Result<http::Response<RB>, RetryError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Rest {
            svc,
            template,
            shared,
            op,
        } = &mut **this.rest;
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => {
                    let result = ready!(fut.poll(cx));
                    match op.after(result, template, shared) {
                        After::Done(done) => {
                            this.state.set(State::Done);
                            return Poll::Ready(done);
                        }
                        After::Retry {
                            delay,
                            next,
                            refund,
                        } => {
                            let sleep = (delay > Duration::ZERO)
                                .then(|| Box::pin(tokio::time::sleep(delay)));
                            this.state.set(State::Waiting {
                                sleep,
                                next,
                                refund,
                            });
                        }
                    }
                }
                StateProj::Waiting { sleep, .. } => {
                    if let Some(s) = sleep {
                        ready!(s.as_mut().poll(cx));
                        *sleep = None;
                    }
                    if let Err(error) = ready!(svc.poll_ready(cx)) {
                        this.state.set(State::Done);
                        // The prepared attempt was never made.
                        let stats = RetryStats {
                            attempts: op.attempt.saturating_sub(1),
                            stop: StopReason::NotRetryable,
                            earlier_may_have_reached: op.earlier_reached,
                        };
                        return Poll::Ready(Err(RetryError::Failed { error, stats }));
                    }
                    if let StateReplace::Waiting { next, refund, .. } =
                        this.state.as_mut().project_replace(State::Done)
                    {
                        #[cfg(feature = "metrics")]
                        {
                            let function = op.metrics.0.clone();
                            let (reason, delay) = refund.metrics;
                            metrics::counter!("invoke_retries_total", "function" => function.clone(), "reason" => reason)
                                .increment(1);
                            metrics::histogram!("invoke_backoff_seconds", "function" => function)
                                .record(delay.as_secs_f64());
                        }
                        refund.keep();
                        let next = op.begin(next);
                        let fut = svc.call(next);
                        this.state.set(State::Calling { fut });
                    }
                }
                StateProj::Done => {
                    return Poll::Ready(Err(RetryError::PolledAfterCompletion(
                        PolledAfterCompletion,
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod id_tests {
    use super::invocation_id;
    use std::collections::HashSet;

    #[test]
    fn invocation_ids_are_v4_uuids_that_differ_in_every_random_digit() {
        let ids: Vec<[u8; 36]> = (0..2000).map(|_| invocation_id()).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        for at in 0..36 {
            let seen: HashSet<u8> = ids.iter().map(|id| id[at]).collect();
            match at {
                8 | 13 | 18 | 23 => assert_eq!(seen, HashSet::from([b'-'])),
                14 => assert_eq!(seen, HashSet::from([b'4'])),
                19 => assert!(seen.iter().all(|c| b"89ab".contains(c)) && seen.len() == 4),
                _ => assert_eq!(seen.len(), 16, "digit {at} takes every hex value"),
            }
        }
    }
}
