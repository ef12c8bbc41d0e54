use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::limits::{Adaptive, AdaptiveState, ConcurrencyState, Limits, Rate};
use crate::retry::{Classification, ClassifyRetry, RetryKind};
use crate::timeout::Deadline;

/// What to do when a limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Wait (with jitter) until the call can go, but never past the operation deadline.
    Wait {
        /// Up to this much random extra wait, so waiters do not wake in lockstep.
        jitter: Duration,
    },
    /// Refuse at once.
    FailFast,
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The global or per-key rate.
    Rate,
    /// The per-key concurrency cap (static or adaptive).
    Concurrency,
}

/// A call was refused by the rate limiter. The request never left the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The key it was limited under, if any.
    pub key: Option<String>,
    /// Which limit.
    pub limit: LimitKind,
    /// The earliest time from now a call could go (for rate limits).
    pub earliest: Option<Duration>,
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.limit {
            LimitKind::Rate => "rate",
            LimitKind::Concurrency => "concurrency",
        };
        write!(f, "refused by the client-side {what} limit")?;
        if let Some(k) = &self.key {
            write!(f, " for {k}")?;
        }
        if let Some(e) = self.earliest {
            write!(f, "; a call could go in {:.3}s", e.as_secs_f64())?;
        }
        Ok(())
    }
}

impl std::error::Error for RateLimited {}

/// Error of the rate limiter: refused, or the inner service failed.
#[derive(Debug)]
pub enum RateLimitError<E> {
    /// Refused by a limit.
    Limited(RateLimited),
    /// The inner service failed.
    Inner(E),
}

impl<E: fmt::Display> fmt::Display for RateLimitError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitError::Limited(e) => e.fmt(f),
            RateLimitError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RateLimitError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RateLimitError::Limited(e) => Some(e),
            RateLimitError::Inner(e) => Some(e),
        }
    }
}

/// The key a request is limited under: put it in the extensions (the default
/// [`ExtensionKey`] extractor reads it), or supply your own [`KeyExtractor`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimitKey(pub String);

/// Where a request's key comes from.
pub trait KeyExtractor<B>: Send + Sync + 'static {
    /// The key, or `None` for requests limited only globally.
    fn key(&self, req: &http::Request<B>) -> Option<String>;
}

/// Reads [`RateLimitKey`] from the request's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionKey;

impl<B> KeyExtractor<B> for ExtensionKey {
    fn key(&self, req: &http::Request<B>) -> Option<String> {
        req.extensions().get::<RateLimitKey>().map(|k| k.0.clone())
    }
}

impl<B, F> KeyExtractor<B> for F
where
    F: Fn(&http::Request<B>) -> Option<String> + Send + Sync + 'static,
{
    fn key(&self, req: &http::Request<B>) -> Option<String> {
        self(req)
    }
}

/// The epoch of the adaptive limit an attempt was admitted under.
#[derive(Debug, Clone)]
struct Admitted {
    key: String,
    epoch: u64,
}

/// The key of an operation under an adaptive limit, for the feedback layer.
#[derive(Debug, Clone)]
struct AdaptiveKey(String);

pub(super) struct Shared<K> {
    pub(super) limits: Arc<Limits>,
    mode: Mode,
    key: K,
}

/// The rate-limiting layer; see the [module docs](super).
pub struct RateLimitLayer<K = ExtensionKey> {
    pub(super) shared: Arc<Shared<K>>,
}

impl<K> Clone for RateLimitLayer<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for RateLimitLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("mode", &self.shared.mode)
            .field("concurrency", &self.shared.limits.concurrency)
            .field("adaptive", &self.shared.limits.adaptive)
            .finish_non_exhaustive()
    }
}

/// Builder of [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimitBuilder<K> {
    global: Option<Rate>,
    per_key: Option<Rate>,
    key_rates: Vec<(String, Rate)>,
    concurrency: Option<usize>,
    adaptive: Option<Adaptive>,
    mode: Mode,
    key: K,
}

impl RateLimitLayer<ExtensionKey> {
    /// Starts a builder (no limits, wait mode with 10 ms jitter, keys from
    /// [`RateLimitKey`]).
    pub fn builder() -> RateLimitBuilder<ExtensionKey> {
        RateLimitBuilder {
            global: None,
            per_key: None,
            key_rates: Vec::new(),
            concurrency: None,
            adaptive: None,
            mode: Mode::Wait {
                jitter: Duration::from_millis(10),
            },
            key: ExtensionKey,
        }
    }
}

impl<K> RateLimitBuilder<K> {
    /// A rate for all calls together.
    pub fn global(mut self, rate: Rate) -> Self {
        self.global = Some(rate);
        self
    }
    /// A rate for each key.
    pub fn per_key(mut self, rate: Rate) -> Self {
        self.per_key = Some(rate);
        self
    }
    /// A rate of its own for one key, in place of the [`per_key`](Self::per_key) rate
    /// (which need not be set: then only such keys are rate-limited). Setting a key
    /// again replaces its rate; a zero rate is ignored, as everywhere in this builder.
    ///
    /// ```
    /// use invoke_layers::rate_limit::{Rate, RateLimitLayer};
    /// let layer = RateLimitLayer::builder()
    ///     .per_key(Rate::per_second(100))
    ///     .key_rate("payments", Rate::per_second(5))
    ///     .build();
    /// assert!(layer.is_keyed());
    /// ```
    pub fn key_rate(mut self, key: impl Into<String>, rate: Rate) -> Self {
        let key = key.into();
        self.key_rates.retain(|(k, _)| *k != key);
        self.key_rates.push((key, rate));
        self
    }
    /// At most `n` calls in flight per key.
    pub fn concurrency_per_key(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }
    /// An adaptive concurrency limit per key, lowered on throttles (needs the
    /// [`feedback`](RateLimitLayer::feedback) layer inside the retry layer).
    pub fn adaptive(mut self, adaptive: Adaptive) -> Self {
        self.adaptive = Some(adaptive);
        self
    }
    /// Wait or fail fast.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Where keys come from.
    pub fn key<K2>(self, key: K2) -> RateLimitBuilder<K2> {
        RateLimitBuilder {
            global: self.global,
            per_key: self.per_key,
            key_rates: self.key_rates,
            concurrency: self.concurrency,
            adaptive: self.adaptive,
            mode: self.mode,
            key,
        }
    }
    /// Builds the layer.
    pub fn build(self) -> RateLimitLayer<K> {
        RateLimitLayer {
            shared: Arc::new(Shared {
                limits: Arc::new(Limits::new(
                    self.global,
                    self.per_key,
                    self.key_rates,
                    self.concurrency,
                    self.adaptive,
                    self.mode,
                )),
                mode: self.mode,
                key: self.key,
            }),
        }
    }
}

impl<K> RateLimitLayer<K> {
    /// The layer that reports each attempt's outcome to the adaptive limits; place it
    /// inside the retry layer, so every throttle counts.
    pub fn feedback<C>(&self, classifier: C) -> FeedbackLayer<C> {
        FeedbackLayer {
            shared: Arc::new(FeedbackShared {
                limits: Arc::clone(&self.shared.limits),
                classifier,
            }),
        }
    }

    /// Drops the state of keys not used lately now. A task does it at most every 10 s,
    /// started by a call on a tokio runtime; on another executor, call this yourself.
    pub fn maintain(&self) {
        self.shared.limits.maintain();
    }

    /// Whether any limit needs a key (per-key rate, concurrency or adaptive limit).
    pub fn is_keyed(&self) -> bool {
        let l = &self.shared.limits;
        l.keyed.is_some()
            || !l.key_rates.is_empty()
            || l.concurrency.is_some()
            || l.adaptive.is_some()
    }

    /// How many keys have rate state now.
    pub fn tracked_keys(&self) -> usize {
        self.shared.limits.keyed_len()
    }

    /// The adaptive limit of a key now, if it has one.
    pub fn adaptive_limit(&self, key: &str) -> Option<f64> {
        self.shared.limits.adapt.get(key).map(|s| s.limit)
    }

    /// Calls in flight for a key now (static or adaptive cap).
    pub fn in_flight(&self, key: &str) -> usize {
        let conc = (self.shared.limits.conc)
            .get(key)
            .map_or(0, |s| s.in_flight);
        let adapt = (self.shared.limits.adapt)
            .get(key)
            .map_or(0, |s| s.in_flight);
        conc.max(adapt)
    }
}

impl<S, K> Layer<S> for RateLimitLayer<K> {
    type Service = RateLimit<S, K>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: self.shared.limits.any().then(|| Arc::clone(&self.shared)),
        }
    }
}

/// Service of [`RateLimitLayer`].
pub struct RateLimit<S, K> {
    inner: S,
    /// None when no limit is configured: the layer then passes calls through, and a
    /// clone of it (one per call in a shared stack) touches no reference count.
    shared: Option<Arc<Shared<K>>>,
}

impl<S: Clone, K> Clone for RateLimit<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for RateLimit<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Holds a concurrency slot; releases it (and wakes a waiter) when dropped, whether the
/// call finished, failed or was cancelled.
struct Slot {
    limits: Arc<Limits>,
    key: String,
    adaptive: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.adaptive {
            if let Some(mut s) = self.limits.adapt.get_mut(&self.key) {
                s.in_flight = s.in_flight.saturating_sub(1);
                s.notify.notify_one();
            }
        } else if let Some(mut s) = self.limits.conc.get_mut(&self.key) {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.notify.notify_one();
        }
    }
}

fn limited(key: Option<&str>, limit: LimitKind, earliest: Option<Duration>) -> RateLimited {
    RateLimited {
        key: key.map(str::to_owned),
        limit,
        earliest,
    }
}

/// Which in-flight cap a slot is taken under: the static one per operation (in
/// [`RateLimit`]), the adaptive one per attempt (in [`Feedback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Static,
    Adaptive,
}

/// Takes a slot under the static or adaptive cap of `key`, or says why not.
async fn acquire_slot(
    limits: &Arc<Limits>,
    key: &str,
    mode: Mode,
    deadline: Option<Deadline>,
    gate: Gate,
) -> Result<Option<(Slot, Option<u64>)>, RateLimited> {
    let adaptive = match gate {
        Gate::Adaptive => limits.adaptive,
        Gate::Static => None,
    };
    if adaptive.is_none() && (gate == Gate::Adaptive || limits.concurrency.is_none()) {
        return Ok(None);
    }
    let started = tokio::time::Instant::now();
    loop {
        let notify = if let Some(a) = adaptive {
            let mut s = limits
                .adapt
                .entry(key.to_owned())
                .or_insert_with(|| AdaptiveState {
                    limit: a.initial,
                    in_flight: 0,
                    epoch: 0,
                    last_used: tokio::time::Instant::now(),
                    notify: Arc::default(),
                });
            s.last_used = tokio::time::Instant::now();
            if (s.in_flight as f64) < s.limit.floor().max(1.0) {
                s.in_flight += 1;
                let slot = Slot {
                    limits: Arc::clone(limits),
                    key: key.to_owned(),
                    adaptive: true,
                };
                return Ok(Some((slot, Some(s.epoch))));
            }
            Arc::clone(&s.notify)
        } else {
            let cap = limits.concurrency.unwrap_or(usize::MAX);
            let mut s = limits
                .conc
                .entry(key.to_owned())
                .or_insert_with(|| ConcurrencyState {
                    in_flight: 0,
                    notify: Arc::default(),
                });
            if s.in_flight < cap {
                s.in_flight += 1;
                let slot = Slot {
                    limits: Arc::clone(limits),
                    key: key.to_owned(),
                    adaptive: false,
                };
                return Ok(Some((slot, None)));
            }
            Arc::clone(&s.notify)
        };
        if mode == Mode::FailFast {
            return Err(limited(Some(key), LimitKind::Concurrency, None));
        }
        let wait = notify.notified();
        let woke = match deadline {
            Some(d) => tokio::time::timeout_at(d.at(), wait).await.is_ok(),
            None => {
                wait.await;
                true
            }
        };
        if !woke {
            tracing::debug!(
                key,
                waited_ms = started.elapsed().as_millis() as u64,
                "concurrency wait reached the deadline"
            );
            return Err(limited(Some(key), LimitKind::Concurrency, None));
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`RateLimit`] and [`Feedback`]: the inner future directly when
    /// no limit is configured (the layer then costs nothing measurable), else the boxed
    /// limiting future (one allocation per call).
    pub struct LimitedFuture<F, T, E> {
        #[pin]
        state: LimitedState<F, T, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = LimitedProj]
    enum LimitedState<F, T, E> {
        Direct { #[pin] fut: F },
        Limited { fut: Pin<Box<dyn Future<Output = Result<T, E>> + Send>> },
    }
}

impl<F, T, E> LimitedFuture<F, T, E> {
    fn direct(fut: F) -> Self {
        Self {
            state: LimitedState::Direct { fut },
        }
    }
    fn limited(fut: Pin<Box<dyn Future<Output = Result<T, E>> + Send>>) -> Self {
        Self {
            state: LimitedState::Limited { fut },
        }
    }
}

impl<F, T, E, IE> Future for LimitedFuture<F, T, E>
where
    F: Future<Output = Result<T, IE>>,
    E: From<IE>,
{
    type Output = Result<T, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            LimitedProj::Direct { fut } => fut.poll(cx).map_err(E::from),
            LimitedProj::Limited { fut } => fut.as_mut().poll(cx),
        }
    }
}

impl<E> From<E> for RateLimitError<E> {
    fn from(e: E) -> Self {
        RateLimitError::Inner(e)
    }
}

impl<S, K, B, RB> Service<http::Request<B>> for RateLimit<S, K>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Send + 'static,
    RB: Send + 'static,
    K: KeyExtractor<B>,
{
    type Response = http::Response<RB>;
    type Error = RateLimitError<S::Error>;
    type Future = LimitedFuture<S::Future, Self::Response, Self::Error>;

    /// Forwards the inner service's readiness. The limits are applied in the response
    /// future because the keyed ones depend on the request; nothing is taken before
    /// `call`, so a service made ready and then dropped holds no permit.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(RateLimitError::Inner)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let Some(shared) = &self.shared else {
            return LimitedFuture::direct(self.inner.call(req));
        };
        shared.limits.maintenance_due();
        let shared = Arc::clone(shared);
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        let key = shared.key.key(&req);
        let fut = Box::pin(async move {
            let limits = &shared.limits;
            let deadline = req.extensions().get::<Deadline>().copied();
            let mut waited = Duration::ZERO;
            loop {
                let wait = limits.check_rate(key.as_deref());
                if wait.is_zero() {
                    break;
                }
                let wait = match shared.mode {
                    Mode::FailFast => {
                        tracing::debug!(
                            key = key.as_deref(),
                            earliest_ms = wait.as_millis() as u64,
                            "rate limited: failed fast"
                        );
                        return Err(RateLimitError::Limited(limited(
                            key.as_deref(),
                            LimitKind::Rate,
                            Some(wait),
                        )));
                    }
                    Mode::Wait { jitter } => wait + jitter.mul_f64(fastrand::f64()),
                };
                if deadline.is_some_and(|d| d.check_wait(wait).is_err()) {
                    tracing::debug!(
                        key = key.as_deref(),
                        earliest_ms = wait.as_millis() as u64,
                        "rate limited: the wait would pass the deadline"
                    );
                    return Err(RateLimitError::Limited(limited(
                        key.as_deref(),
                        LimitKind::Rate,
                        Some(wait),
                    )));
                }
                tokio::time::sleep(wait).await;
                waited += wait;
            }
            let slot = match &key {
                Some(k) => acquire_slot(limits, k, shared.mode, deadline, Gate::Static)
                    .await
                    .map_err(RateLimitError::Limited)?,
                None => None,
            };
            if !waited.is_zero() {
                tracing::debug!(
                    key = key.as_deref(),
                    waited_ms = waited.as_millis() as u64,
                    "waited for the rate limiter"
                );
            }
            if let (Some(k), Some(_)) = (&key, limits.adaptive) {
                // Each attempt takes its adaptive slot in the feedback layer.
                req.extensions_mut().insert(AdaptiveKey(k.clone()));
            }
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(RateLimitError::Inner)?;
            let result = svc.call(req).await.map_err(RateLimitError::Inner);
            // The slot is released here, when the response (or error) has arrived; a
            // dropped future releases it too.
            drop(slot);
            result
        });
        LimitedFuture::limited(fut)
    }
}

/// Reports each attempt's outcome to the adaptive limits; made by
/// [`RateLimitLayer::feedback`].
pub struct FeedbackLayer<C> {
    shared: Arc<FeedbackShared<C>>,
}

// One reference count per clone of the service (the stack is cloned per call).
struct FeedbackShared<C> {
    limits: Arc<Limits>,
    classifier: C,
}

impl<C> Clone for FeedbackLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for FeedbackLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedbackLayer").finish_non_exhaustive()
    }
}

impl<S, C> Layer<S> for FeedbackLayer<C> {
    type Service = Feedback<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        Feedback {
            inner,
            shared: self
                .shared
                .limits
                .adaptive
                .is_some()
                .then(|| Arc::clone(&self.shared)),
        }
    }
}

/// Service of [`FeedbackLayer`].
pub struct Feedback<S, C> {
    inner: S,
    /// None without an adaptive limit: the layer then passes calls through, and a clone
    /// of it touches no reference count.
    shared: Option<Arc<FeedbackShared<C>>>,
}

impl<S: Clone, C> Clone for Feedback<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Feedback<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feedback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Limits {
    fn feedback(&self, admitted: &Admitted, class: Classification) {
        let Some(a) = self.adaptive else { return };
        let Some(mut s) = self.adapt.get_mut(&admitted.key) else {
            return;
        };
        match class {
            // One decrease per round: throttles of calls admitted before the last
            // decrease do not cut the limit again.
            Classification::Retryable {
                kind: RetryKind::Throttling,
                ..
            } if admitted.epoch == s.epoch => {
                s.limit = (s.limit * a.decrease).max(a.min);
                s.epoch += 1;
                tracing::debug!(key = %admitted.key, limit = s.limit, "adaptive limit lowered");
            }
            Classification::Final => {
                // Grow only while the window is in use: a limit that is not being
                // tested must not creep up (the caller slows down, the limit stays).
                if (s.in_flight as f64) * 2.0 >= s.limit {
                    s.limit = (s.limit + 1.0 / s.limit).min(a.max);
                }
                s.notify.notify_one();
            }
            _ => {}
        }
    }
}

impl<S, C, B, RB> Service<http::Request<B>> for Feedback<S, C>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
    C: ClassifyRetry<http::Response<RB>, S::Error>,
{
    type Response = S::Response;
    type Error = RateLimitError<S::Error>;
    type Future = LimitedFuture<S::Future, S::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(RateLimitError::Inner)
    }

    /// With an adaptive limit, each attempt waits for a slot under its key's current
    /// limit (never past the deadline), and its outcome moves the limit. Attempts count,
    /// not operations: an operation sleeping in retry backoff holds no slot.
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(shared) = &self.shared else {
            return LimitedFuture::direct(self.inner.call(req));
        };
        let Some(key) = req.extensions().get::<AdaptiveKey>().map(|k| k.0.clone()) else {
            return LimitedFuture::direct(self.inner.call(req));
        };
        shared.limits.maintenance_due();
        let shared = Arc::clone(shared);
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        LimitedFuture::limited(Box::pin(async move {
            let limits = &shared.limits;
            let deadline = req.extensions().get::<Deadline>().copied();
            let (slot, epoch) =
                match acquire_slot(limits, &key, limits.mode, deadline, Gate::Adaptive)
                    .await
                    .map_err(RateLimitError::Limited)?
                {
                    Some((slot, epoch)) => (Some(slot), epoch.unwrap_or(0)),
                    None => (None, 0),
                };
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(RateLimitError::Inner)?;
            let result = svc.call(req).await;
            limits.feedback(
                &Admitted { key, epoch },
                shared.classifier.classify(&result),
            );
            drop(slot);
            result.map_err(RateLimitError::Inner)
        }))
    }
}
