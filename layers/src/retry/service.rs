use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;
use tower_service::Service;

use super::classify::{Classification, ClassifyRetry, Reached, RetryKind};
use super::policy::{Idempotent, RetryPolicy, RetryStats, StopReason};
use super::quota::{RetryPartition, RetryQuota};
use crate::timeout::{Deadline, SendProgress};

type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

const AMZ_SDK_INVOCATION_ID: HeaderName = HeaderName::from_static("amz-sdk-invocation-id");
const AMZ_SDK_REQUEST: HeaderName = HeaderName::from_static("amz-sdk-request");

struct Shared<C> {
    policy: RetryPolicy,
    classifier: C,
    quota: RetryQuota,
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
            .field("quota", &self.shared.quota)
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
                quota: RetryQuota::default(),
                jitter: Arc::new(fastrand::f64),
            }),
        }
    }

    fn rebuild(self, f: impl FnOnce(&mut RetryPolicy, &mut RetryQuota, &mut Jitter)) -> Self
    where
        C: Clone,
    {
        let mut policy = self.shared.policy.clone();
        let mut quota = self.shared.quota.clone();
        let mut jitter = Arc::clone(&self.shared.jitter);
        f(&mut policy, &mut quota, &mut jitter);
        Self {
            shared: Arc::new(Shared {
                attempt_headers: attempt_headers(&policy),
                policy,
                classifier: self.shared.classifier.clone(),
                quota,
                jitter,
            }),
        }
    }

    /// Uses this policy.
    pub fn policy(self, policy: RetryPolicy) -> Self
    where
        C: Clone,
    {
        self.rebuild(|p, _, _| *p = policy)
    }

    /// Draws from this quota (share one between layers to share the budget).
    pub fn quota(self, quota: RetryQuota) -> Self
    where
        C: Clone,
    {
        self.rebuild(|_, q, _| *q = quota)
    }

    /// The jitter source, a function returning values in `[0, 1)` (for tests).
    pub fn jitter(self, source: impl Fn() -> f64 + Send + Sync + 'static) -> Self
    where
        C: Clone,
    {
        self.rebuild(|_, _, j| *j = Arc::new(source))
    }

    /// The quota this layer draws from.
    pub fn retry_quota(&self) -> &RetryQuota {
        &self.shared.quota
    }
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

/// The number of the attempt (1 for the first), in each attempt's request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptNumber(pub u32);

/// The last failure, and what the retry layer did before giving up.
#[derive(Debug)]
pub struct RetryError<E> {
    /// The last attempt's error.
    pub error: E,
    /// Attempts, why they stopped, and whether an earlier one may have reached the target.
    pub stats: RetryStats,
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (after {} attempt", self.error, self.stats.attempts)?;
        if self.stats.attempts != 1 {
            f.write_str("s")?;
        }
        f.write_str(")")
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
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

/// A random (version 4) UUID as a header value, written without formatting machinery.
fn invocation_id() -> Option<HeaderValue> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    bytes[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    bytes[6] = bytes[6] & 0x0f | 0x40; // version 4
    bytes[8] = bytes[8] & 0x3f | 0x80; // variant 10
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1; // a dash
        }
        out[at] = HEX[usize::from(b >> 4)];
        out[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
    }
    HeaderValue::from_bytes(&out).ok()
}

impl<S, C, B, RB> Service<http::Request<B>> for Retry<S, C>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Clone + Send + 'static,
    RB: Send + 'static,
    C: ClassifyRetry<http::Response<RB>, S::Error>,
{
    type Response = http::Response<RB>;
    type Error = RetryError<S::Error>;
    // One allocation per operation, not per attempt; measured in benches/stack.rs.
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(|error| RetryError {
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
        Box::pin(run(ready, req, Arc::clone(&self.shared)))
    }
}

async fn run<S, C, B, RB>(
    mut svc: S,
    template: http::Request<B>,
    shared: Arc<Shared<C>>,
) -> Result<http::Response<RB>, RetryError<S::Error>>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    B: Clone,
    C: ClassifyRetry<http::Response<RB>, S::Error>,
{
    let policy = &shared.policy;
    let max = policy.max_attempts.max(1);
    let ext = template.extensions();
    let deadline = ext.get::<Deadline>().copied();
    let partition = ext.get::<RetryPartition>().cloned();
    let idempotent = ext
        .get::<Idempotent>()
        .map_or(policy.idempotent_by_default, |i| i.0);
    let operation_progress = ext.get::<SendProgress>().cloned();
    let invocation_id = policy.sdk_headers.then(invocation_id).flatten();

    let mut earlier_reached = false;
    let mut last_cost: Option<u32> = None;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let mut req = clone_request(&template);
        let progress = operation_progress
            .as_ref()
            .map_or_else(SendProgress::new, SendProgress::child);
        req.extensions_mut().insert(progress.clone());
        req.extensions_mut().insert(AttemptNumber(attempt));
        if let Some(id) = &invocation_id {
            req.headers_mut().insert(AMZ_SDK_INVOCATION_ID, id.clone());
            if let Some(v) = shared.attempt_headers.get(attempt as usize - 1) {
                req.headers_mut().insert(AMZ_SDK_REQUEST, v.clone());
            }
        }
        if attempt > 1 {
            if let Err(error) = std::future::poll_fn(|cx| svc.poll_ready(cx)).await {
                let stats = RetryStats {
                    attempts: attempt - 1,
                    stop: StopReason::NotRetryable,
                    earlier_may_have_reached: earlier_reached,
                };
                return Err(RetryError { error, stats });
            }
        }
        let result = svc.call(req).await;
        let classification = shared.classifier.classify(&result);

        let stop =
            |reason: StopReason, result: Result<http::Response<RB>, S::Error>, earlier: bool| {
                let stats = RetryStats {
                    attempts: attempt,
                    stop: reason,
                    earlier_may_have_reached: earlier,
                };
                match result {
                    Ok(mut resp) => {
                        // One attempt that succeeded is what a response without stats
                        // means: no allocation for the common case.
                        if stats.attempts > 1 || stats.stop != StopReason::Done {
                            resp.extensions_mut().insert(stats);
                        }
                        Ok(resp)
                    }
                    Err(error) => Err(RetryError { error, stats }),
                }
            };

        let (kind, retry_after, reached) = match classification {
            Classification::Final => {
                shared.quota.release(partition.as_ref(), last_cost);
                return stop(StopReason::Done, result, earlier_reached);
            }
            Classification::NotRetryable => {
                return stop(StopReason::NotRetryable, result, earlier_reached);
            }
            Classification::Retryable {
                kind,
                retry_after,
                reached,
            } => (kind, retry_after, reached),
        };
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
            Reached::IfSent => progress.may_have_been_sent(),
        };
        if reached && !idempotent {
            return stop(StopReason::MayHaveRun, result, earlier_reached);
        }
        if attempt >= max {
            return stop(StopReason::MaxAttempts, result, earlier_reached);
        }
        if retry_after.is_some_and(|h| h > policy.max_retry_after) {
            return stop(StopReason::RetryAfterTooLong, result, earlier_reached);
        }
        let backoff = policy.backoff(kind, attempt, (shared.jitter)());
        let delay = retry_after.map_or(backoff, |hint| hint.max(backoff));
        if deadline.is_some_and(|d| d.check_wait(delay).is_err()) {
            return stop(StopReason::Deadline, result, earlier_reached);
        }
        let cost = shared.quota.cost(kind, retry_after.is_some());
        if !shared.quota.try_acquire(partition.as_ref(), cost) {
            return stop(StopReason::QuotaExhausted, result, earlier_reached);
        }
        last_cost = Some(cost);
        earlier_reached |= reached;
        tracing::debug!(
            attempt,
            kind = ?kind,
            delay_ms = delay.as_millis() as u64,
            retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
            quota_left = shared.quota.available(partition.as_ref()),
            "retry scheduled"
        );
        drop(result);
        if delay > Duration::ZERO {
            tokio::time::sleep(delay).await;
        }
    }
}
