//! [`RetryLayer`]: the policy, classifier, budget and jitter shared by its services.

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use tower_layer::Layer;

use super::decide::{Backoff, RetryBudget, RetryDecision};
use super::policy::RetryPolicy;
use super::quota::RetryQuota;

use super::service::Retry;

type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

pub(super) struct Shared<C> {
    pub(super) policy: RetryPolicy,
    pub(super) classifier: C,
    pub(super) budget: Arc<dyn RetryBudget>,
    /// A decision and a backoff of the caller's, instead of the policy's.
    pub(super) decision: Option<Arc<dyn RetryDecision>>,
    pub(super) backoff: Option<Arc<dyn Backoff>>,
    pub(super) jitter: Jitter,
    /// `amz-sdk-request` values for attempts 1..=max, built once.
    pub(super) attempt_headers: Vec<HeaderValue>,
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
