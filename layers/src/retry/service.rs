use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use super::decide::{Backoff, RetryBudget, RetryDecision, RetryableFailure};
use super::policy::{Idempotent, MaxAttempts, RetryPolicy, RetryStats, StopReason};
use super::quota::{RetryPartition, RetryQuota};
use crate::classify::{Classification, ClassifyRetry, Reached, RetryKind};
use crate::deadline::{AttemptNumber, Deadline, SendProgress};
use crate::PolledAfterCompletion;

type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

const AMZ_SDK_INVOCATION_ID: HeaderName = HeaderName::from_static("amz-sdk-invocation-id");
const AMZ_SDK_REQUEST: HeaderName = HeaderName::from_static("amz-sdk-request");

struct Shared<C> {
    policy: RetryPolicy,
    classifier: C,
    budget: Arc<dyn RetryBudget>,
    /// A decision and a backoff of the caller's, instead of the policy's.
    decision: Option<Arc<dyn RetryDecision>>,
    backoff: Option<Arc<dyn Backoff>>,
    jitter: Jitter,
    /// `amz-sdk-request` values for attempts 1..=max, built once.
    attempt_headers: Vec<HeaderValue>,
}

fn attempt_headers(policy: &RetryPolicy) -> Vec<HeaderValue> {
    let max = policy.max_attempts.max(1);
    (1..=max)
        .filter_map(|n| HeaderValue::from_str(&format!("attempt={n}; max={max}")).ok())
        .collect()
}

/// The retry layer; see the [module docs](super).
pub struct RetryLayer<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.shared.policy)
            .field("budget", &self.shared.budget)
            .field("decision", &self.shared.decision)
            .field("backoff", &self.shared.backoff)
            .finish_non_exhaustive()
    }
}

impl<C> RetryLayer<C> {
    /// Retries with `classifier`, the default policy and a fresh quota.
    pub fn new(classifier: C) -> Self {
        let policy = RetryPolicy::default();
        Self {
            shared: Arc::new(Shared {
                attempt_headers: attempt_headers(&policy),
                policy,
                classifier,
                budget: Arc::new(RetryQuota::default()),
                decision: None,
                backoff: None,
                jitter: Arc::new(fastrand::f64),
            }),
        }
    }

    fn rebuild(self, f: impl FnOnce(&mut Parts)) -> Self
    where
        C: Clone,
    {
        let s = &self.shared;
        let mut parts = Parts {
            policy: s.policy.clone(),
            budget: Arc::clone(&s.budget),
            decision: s.decision.clone(),
            backoff: s.backoff.clone(),
            jitter: Arc::clone(&s.jitter),
        };
        f(&mut parts);
        Self {
            shared: Arc::new(Shared {
                attempt_headers: attempt_headers(&parts.policy),
                policy: parts.policy,
                classifier: s.classifier.clone(),
                budget: parts.budget,
                decision: parts.decision,
                backoff: parts.backoff,
                jitter: parts.jitter,
            }),
        }
    }

    /// Uses this policy.
    pub fn policy(self, policy: RetryPolicy) -> Self
    where
        C: Clone,
    {
        self.rebuild(|p| p.policy = policy)
    }

    /// Draws from this quota (share one between layers to share the budget).
    pub fn quota(self, quota: RetryQuota) -> Self
    where
        C: Clone,
    {
        self.budget(quota)
    }

    /// Draws from this budget instead of a [`RetryQuota`] (see [`RetryBudget`]).
    pub fn budget(self, budget: impl RetryBudget) -> Self
    where
        C: Clone,
    {
        self.rebuild(|p| p.budget = Arc::new(budget))
    }

    /// Decides with this instead of the policy (see [`RetryDecision`]).
    pub fn decision(self, decision: impl RetryDecision) -> Self
    where
        C: Clone,
    {
        self.rebuild(|p| p.decision = Some(Arc::new(decision)))
    }

    /// Waits this long before each retry instead of the policy's backoff (see
    /// [`Backoff`]); the server's `Retry-After` stays a lower bound.
    pub fn backoff(self, backoff: impl Backoff) -> Self
    where
        C: Clone,
    {
        self.rebuild(|p| p.backoff = Some(Arc::new(backoff)))
    }

    /// The jitter source, a function returning values in `[0, 1)` (for tests).
    pub fn jitter(self, source: impl Fn() -> f64 + Send + Sync + 'static) -> Self
    where
        C: Clone,
    {
        self.rebuild(|p| p.jitter = Arc::new(source))
    }

    /// The budget this layer draws from.
    pub fn retry_budget(&self) -> &dyn RetryBudget {
        &*self.shared.budget
    }
}

/// What [`RetryLayer::rebuild`] may change.
struct Parts {
    policy: RetryPolicy,
    budget: Arc<dyn RetryBudget>,
    decision: Option<Arc<dyn RetryDecision>>,
    backoff: Option<Arc<dyn Backoff>>,
    jitter: Jitter,
}

impl<S, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Service of [`RetryLayer`].
pub struct Retry<S, C> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S, C> Retry<S, C> {
    /// Retries calls of `inner` with `classifier` and the default policy (use
    /// [`RetryLayer`] to set the policy, quota or jitter).
    pub fn new(inner: S, classifier: C) -> Self {
        RetryLayer::new(classifier).layer(inner)
    }

    /// A [`RetryLayer`] with `classifier`.
    pub fn layer(classifier: C) -> RetryLayer<C> {
        RetryLayer::new(classifier)
    }

    inner_service_accessors!();
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

/// The error of [`Retry`]: the last failure and what the retry layer did before giving
/// up, or a misuse of its future.
#[derive(Debug)]
#[non_exhaustive]
pub enum RetryError<E> {
    /// The last attempt failed and no other was made.
    Failed {
        /// The last attempt's error.
        error: E,
        /// Attempts, why they stopped, and whether an earlier one may have reached the
        /// target.
        stats: RetryStats,
    },
    /// The response future was polled after it had completed.
    PolledAfterCompletion(PolledAfterCompletion),
}

impl<E> RetryError<E> {
    /// The last attempt's error (none for a misused future).
    pub fn error(&self) -> Option<&E> {
        match self {
            RetryError::Failed { error, .. } => Some(error),
            RetryError::PolledAfterCompletion(_) => None,
        }
    }

    /// What the retry layer did (none for a misused future).
    pub fn stats(&self) -> Option<RetryStats> {
        match self {
            RetryError::Failed { stats, .. } => Some(*stats),
            RetryError::PolledAfterCompletion(_) => None,
        }
    }

    /// The last attempt's error and the statistics, or the misuse.
    pub fn into_parts(self) -> Result<(E, RetryStats), PolledAfterCompletion> {
        match self {
            RetryError::Failed { error, stats } => Ok((error, stats)),
            RetryError::PolledAfterCompletion(p) => Err(p),
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryError::Failed { error, stats } => write!(f, "{error} ({stats})"),
            RetryError::PolledAfterCompletion(p) => p.fmt(f),
        }
    }
}

/// `Error` for every inner error that is `Debug + Display`, boxed errors included;
/// see [`BoxError`](crate::BoxError) for the source.
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RetryError::Failed { error, .. } => crate::inner_source(error),
            RetryError::PolledAfterCompletion(p) => Some(p),
        }
    }
}

/// Gives a retry's tokens back to the quota unless the retry was made: a backoff the
/// caller cancelled (dropped the future) costs nothing.
struct Refund {
    budget: Arc<dyn RetryBudget>,
    partition: Option<RetryPartition>,
    cost: u32,
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

impl<S, C, B, RB> Service<http::Request<B>> for Retry<S, C>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone,
    B: Clone,
    C: ClassifyRetry<http::Response<RB>, S::Error>,
{
    type Response = http::Response<RB>;
    type Error = RetryError<S::Error>;
    type Future = ResponseFuture<S, C, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| RetryError::Failed {
                error,
                stats: RetryStats {
                    attempts: 0,
                    stop: StopReason::NotRetryable,
                    earlier_may_have_reached: false,
                },
            })
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The service made ready for this call goes into the future; a clone stays.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::start(ready, req, Arc::clone(&self.shared))
    }
}

pin_project! {
    /// Response future of [`Retry`]: drives the attempts in place. A call that succeeds
    /// at once allocates nothing here beyond the attempt's copy of the request; a
    /// backoff timer is allocated on the retry path only.
    pub struct ResponseFuture<S, C, B>
    where
        S: Service<http::Request<B>>,
    {
        #[pin]
        state: State<S::Future, B>,
        svc: S,
        // A copy of the request as given, for the attempts after the first; the last
        // attempt takes it.
        template: Option<http::Request<B>>,
        shared: Arc<Shared<C>>,
        op: Operation,
    }
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
        #[cfg(feature = "metrics")]
        {
            let function = self.metrics.0.clone();
            let reason = match kind {
                RetryKind::Throttling => "throttle",
                _ => "transient",
            };
            metrics::counter!("invoke_retries_total", "function" => function.clone(), "reason" => reason)
                .increment(1);
            metrics::histogram!("invoke_backoff_seconds", "function" => function)
                .record(delay.as_secs_f64());
        }
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
            },
        }
    }
}

impl<S, C, B> ResponseFuture<S, C, B>
where
    S: Service<http::Request<B>>,
    B: Clone,
{
    fn start(mut svc: S, req: http::Request<B>, shared: Arc<Shared<C>>) -> Self {
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
            svc,
            template,
            shared,
            op,
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
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => {
                    let result = ready!(fut.poll(cx));
                    match this.op.after(result, this.template, this.shared) {
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
                    if let Err(error) = ready!(this.svc.poll_ready(cx)) {
                        this.state.set(State::Done);
                        // The prepared attempt was never made.
                        let stats = RetryStats {
                            attempts: this.op.attempt.saturating_sub(1),
                            stop: StopReason::NotRetryable,
                            earlier_may_have_reached: this.op.earlier_reached,
                        };
                        return Poll::Ready(Err(RetryError::Failed { error, stats }));
                    }
                    if let StateReplace::Waiting { next, refund, .. } =
                        this.state.as_mut().project_replace(State::Done)
                    {
                        refund.keep();
                        let next = this.op.begin(next);
                        let fut = this.svc.call(next);
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
