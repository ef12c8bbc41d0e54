use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::error::{InvalidLimit, RateLimitError};
use super::limits::{
    lock, Adaptive, AdaptiveSlots, AdaptiveState, KeyState, Limits, Rate, Settings,
};
use super::store::{self, rate_cells, SharedLimits};
use super::wait::{adaptive_slot, Budget};
use crate::classify::{Classification, ClassifyRetry, RetryKind};
use crate::deadline::{AttemptNumber, Deadline};

/// What to do when a limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Wait until the call can go, but never past the operation deadline nor the
    /// [maximum wait](RateLimitBuilder::max_wait).
    Wait {
        /// Up to this much random extra wait for a call that must wait for a rate,
        /// before it queues: callers arriving together queue in random order. (It
        /// delays no one queued: only the head of a queue sleeps until a cell is free.)
        jitter: Duration,
    },
    /// Refuse at once.
    FailFast,
}

/// The default [maximum wait](RateLimitBuilder::max_wait): 60 s. A call with no
/// deadline (the client's default) never waits for the limiter forever; a minute of
/// queueing means the offered load is far above the limits, which the caller should
/// hear about. Raise it for functions that hold their slots for minutes.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// The key a request is limited under: put it in the extensions (the default
/// [`ExtensionKey`] extractor reads it), or supply your own [`KeyExtractor`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimitKey(pub String);

/// Where a request's key comes from.
///
/// ```
/// use invoke_layers::rate_limit::{KeyExtractor, Rate, RateLimitLayer};
///
/// /// One rate per tenant, from a header.
/// struct ByTenant;
///
/// impl<B> KeyExtractor<B> for ByTenant {
///     fn key(&self, req: &http::Request<B>) -> Option<String> {
///         req.headers()
///             .get("x-tenant")
///             .and_then(|v| v.to_str().ok())
///             .map(str::to_owned)
///     }
/// }
///
/// let limiter = RateLimitLayer::builder()
///     .per_key(Rate::per_second(10))
///     .key(ByTenant)
///     .build()?;
/// # let _ = limiter;
/// # Ok::<(), invoke_layers::rate_limit::InvalidLimit>(())
/// ```
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

/// The state of an operation's key, for the limits the feedback layer applies to each
/// attempt.
#[derive(Clone)]
struct AttemptKey(Option<Arc<KeyState>>);

/// What a rate counts; see [`RateLimitBuilder::rates_count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RateCount {
    /// Attempts on the wire, retries included, as the AWS SDKs' client rate limiter and
    /// Lambda's own rate limits count: the first attempt takes its cell before the
    /// operation (in [`RateLimit`]), each retry its own in the
    /// [`feedback`](RateLimitLayer::feedback) layer, inside the retry layer. (Without that
    /// layer in the stack only operations are counted.)
    #[default]
    Attempts,
    /// Operations: a call and all its retries take one cell, before the first attempt.
    Operations,
}

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
            .field("shared", &self.shared.limits.shared)
            .finish_non_exhaustive()
    }
}

/// Builder of [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimitBuilder<K> {
    settings: Settings,
    key: K,
}

impl RateLimitLayer<ExtensionKey> {
    /// Starts a builder (no limits, wait mode with 10 ms jitter and at most
    /// [`DEFAULT_MAX_WAIT`] per wait, keys from [`RateLimitKey`]).
    pub fn builder() -> RateLimitBuilder<ExtensionKey> {
        RateLimitBuilder {
            settings: Settings {
                global: None,
                per_key: None,
                key_rates: Vec::new(),
                concurrency: None,
                adaptive: None,
                mode: Mode::Wait {
                    jitter: Duration::from_millis(10),
                },
                max_wait: DEFAULT_MAX_WAIT,
                count: RateCount::Attempts,
                shared: None,
            },
            key: ExtensionKey,
        }
    }
}

impl<K> RateLimitBuilder<K> {
    /// A rate for all calls together.
    pub fn global(mut self, rate: Rate) -> Self {
        self.settings.global = Some(rate);
        self
    }
    /// A rate for each key.
    pub fn per_key(mut self, rate: Rate) -> Self {
        self.settings.per_key = Some(rate);
        self
    }
    /// A rate of its own for one key, in place of the [`per_key`](Self::per_key) rate
    /// (which need not be set: then only such keys are rate-limited). Setting a key
    /// again replaces its rate. A rate that admits no call is an error of
    /// [`build`](Self::build), as everywhere in this builder.
    ///
    /// ```
    /// use invoke_layers::rate_limit::{Rate, RateLimitLayer};
    /// let layer = RateLimitLayer::builder()
    ///     .per_key(Rate::per_second(100))
    ///     .key_rate("payments", Rate::per_second(5))
    ///     .build()?;
    /// assert!(layer.is_keyed());
    /// # Ok::<(), invoke_layers::rate_limit::InvalidLimit>(())
    /// ```
    pub fn key_rate(mut self, key: impl Into<String>, rate: Rate) -> Self {
        let key = key.into();
        self.settings.key_rates.retain(|(k, _)| *k != key);
        self.settings.key_rates.push((key, rate));
        self
    }
    /// At most `n` calls in flight per key (0 is an error of [`build`](Self::build)).
    pub fn concurrency_per_key(mut self, n: usize) -> Self {
        self.settings.concurrency = Some(n);
        self
    }
    /// An adaptive concurrency limit per key, lowered on throttles (needs the
    /// [`feedback`](RateLimitLayer::feedback) layer inside the retry layer).
    pub fn adaptive(mut self, adaptive: Adaptive) -> Self {
        self.settings.adaptive = Some(adaptive);
        self
    }
    /// Wait or fail fast.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.settings.mode = mode;
        self
    }
    /// The longest a call waits in [`Mode::Wait`] for a rate cell or a slot (default
    /// [`DEFAULT_MAX_WAIT`]), each time it waits: before the operation, and before each
    /// attempt under the adaptive limit. A rate wait that would end later is refused at
    /// once; a slot wait that reaches it is refused then ([`Refusal::MaxWait`]). The
    /// operation [`Deadline`] bounds waits too, whichever is sooner.
    ///
    /// [`Refusal::MaxWait`]: super::Refusal::MaxWait
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.settings.max_wait = max_wait;
        self
    }
    /// What the global and per-key rates count: attempts on the wire, retries included
    /// (the default, [`RateCount::Attempts`]), or operations.
    pub fn rates_count(mut self, count: RateCount) -> Self {
        self.settings.count = count;
        self
    }
    /// Shares the rates and the concurrency cap with other processes through a store
    /// (for example [`RedisStore`](super::redis::RedisStore), feature `redis`): the
    /// fleet together stays within the limits. The adaptive limit stays per process.
    /// See [`store`](super::store) for what happens when the store fails.
    pub fn shared(mut self, shared: SharedLimits) -> Self {
        self.settings.shared = Some(shared);
        self
    }
    /// Where keys come from.
    pub fn key<K2>(self, key: K2) -> RateLimitBuilder<K2> {
        RateLimitBuilder {
            settings: self.settings,
            key,
        }
    }
    /// Builds the layer, or says which limit cannot be enforced as written: a rate of
    /// zero calls (or a zero burst, or a zero period), a concurrency cap of zero,
    /// adaptive settings out of range. None of them is taken to mean "no limit".
    ///
    /// ```
    /// use invoke_layers::rate_limit::{InvalidLimit, Rate, RateLimitLayer};
    /// let err = RateLimitLayer::builder()
    ///     .key_rate("payments", Rate::per_second(0))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, InvalidLimit::Rate { limit: "key", .. }));
    /// ```
    pub fn build(self) -> Result<RateLimitLayer<K>, InvalidLimit> {
        let mode = self.settings.mode;
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                limits: Arc::new(Limits::new(self.settings)?),
                mode,
                key: self.key,
            }),
        })
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

    /// Store calls that failed or timed out so far, when the limits are
    /// [shared](RateLimitBuilder::shared); `None` when they are local.
    pub fn store_failures(&self) -> Option<u64> {
        let shared = self.shared.limits.shared.as_ref()?;
        Some(shared.health.failures())
    }

    /// Whether any limit needs a key (per-key rate, concurrency or adaptive limit).
    pub fn is_keyed(&self) -> bool {
        self.shared.limits.keeps_key_state()
    }

    /// How many keys have state now (rate cell, slots or adaptive limit).
    pub fn tracked_keys(&self) -> usize {
        self.shared.limits.keys_len()
    }

    /// The adaptive limit of a key now, if it has one.
    pub fn adaptive_limit(&self, key: &str) -> Option<f64> {
        let state = self.shared.limits.existing(key)?;
        let limit = lock(&state.adaptive.as_ref()?.state).limit;
        Some(limit)
    }

    /// Calls in flight for a key now (static or adaptive cap).
    pub fn in_flight(&self, key: &str) -> usize {
        let Some(state) = self.shared.limits.existing(key) else {
            return 0;
        };
        let conc = state.slots.as_ref().map_or(0, |s| s.in_flight());
        let adapt = (state.adaptive.as_ref()).map_or(0, |a| lock(&a.state).in_flight);
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
        // The boxed future's result was returned (the direct one answers a later poll
        // itself).
        Done,
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
            let budget = Budget::new(shared.mode, limits.max_wait, deadline);
            let state = key.as_deref().and_then(|k| limits.key(k));
            let slot = store::admit(limits, state.as_ref(), key.as_deref(), &budget)
                .await
                .map_err(RateLimitError::Limited)?;
            let waited = budget.waited();
            if !waited.is_zero() {
                tracing::debug!(
                    key = key.as_deref(),
                    waited_ms = waited.as_millis() as u64,
                    "waited for the rate limiter"
                );
            }
            if limits.attempt_limits() {
                // Each attempt takes its adaptive slot, and each retry its rate cells, in
                // the feedback layer.
                req.extensions_mut().insert(AttemptKey(state));
            }
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(RateLimitError::Inner)?;
            let result = svc.call(req).await.map_err(RateLimitError::Inner);
            // The slot is released here, when the response (or error) has arrived; a
            // dropped future releases it too.
            if let Some(slot) = slot {
                slot.release(deadline).await;
            }
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
            shared: (self.shared.limits)
                .attempt_limits()
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
    /// Moves the key's adaptive limit after an attempt admitted under `epoch`: down on a
    /// throttle, up on a success (unless it already counted as accepted).
    fn feedback(&self, state: &KeyState, epoch: u64, class: Classification, accepted: bool) {
        let (Some(a), Some(slots)) = (self.adaptive, &state.adaptive) else {
            return;
        };
        let key = &*state.name;
        let mut s = lock(&slots.state);
        match class {
            // One decrease per round: throttles of calls admitted before the last
            // decrease do not cut the limit again.
            Classification::Retryable {
                kind: RetryKind::Throttling,
                ..
            } if epoch == s.epoch => {
                let limit = (s.limit * a.decrease).max(a.min);
                slots.decrease(&mut s, limit);
                tracing::debug!(key, limit, "adaptive limit lowered");
            }
            Classification::Final if !accepted => grow(&a, slots, &mut s, 1.0),
            _ => {}
        }
    }

    /// An attempt under the key's adaptive limit has been in flight for
    /// [`Adaptive::accepted_after`] without an answer: it was accepted. Its slot stays
    /// taken, so in slow start it raises the limit by two, not one (each success admits
    /// two more calls).
    fn accepted(&self, state: &KeyState) {
        let (Some(a), Some(slots)) = (self.adaptive, &state.adaptive) else {
            return;
        };
        let mut s = lock(&slots.state);
        grow(&a, slots, &mut s, 2.0);
    }
}

/// Raises an adaptive limit after a success: by `slow_start_step` in slow start, else by
/// one per round (`1 / limit` per call). Only while the window is in use: a limit that
/// is not being tested must not creep up (the caller slows down, the limit stays).
fn grow(a: &Adaptive, slots: &AdaptiveSlots, s: &mut AdaptiveState, slow_start_step: f64) {
    if (slots.used(s) as f64) * 2.0 < s.limit {
        return;
    }
    let step = if s.slow_start {
        slow_start_step
    } else {
        1.0 / s.limit
    };
    let limit = (s.limit + step).min(a.max);
    slots.set_limit(s, limit);
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

    /// A retry (an attempt after the first) takes a cell of the rates, as the first
    /// attempt did before the operation ([`RateCount::Attempts`]). With an adaptive
    /// limit, each attempt then waits for a slot under its key's current limit, and its
    /// outcome moves the limit. Attempts count, not operations: an operation sleeping in
    /// retry backoff holds no slot. Waits are bounded as in [`RateLimit`].
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(shared) = &self.shared else {
            return LimitedFuture::direct(self.inner.call(req));
        };
        let Some(AttemptKey(state)) = req.extensions().get::<AttemptKey>().cloned() else {
            return LimitedFuture::direct(self.inner.call(req));
        };
        let retry = req
            .extensions()
            .get::<AttemptNumber>()
            .is_some_and(|n| n.0 > 1);
        let rate = retry && shared.limits.count == RateCount::Attempts;
        if !rate && state.as_ref().is_none_or(|s| s.adaptive.is_none()) {
            return LimitedFuture::direct(self.inner.call(req));
        }
        shared.limits.maintenance_due();
        let shared = Arc::clone(shared);
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        LimitedFuture::limited(Box::pin(async move {
            let limits = &shared.limits;
            let deadline = req.extensions().get::<Deadline>().copied();
            let budget = Budget::new(limits.mode, limits.max_wait, deadline);
            let key = state.as_ref().map(|s| &*s.name);
            if rate {
                rate_cells(limits, state.as_deref(), key, &budget)
                    .await
                    .map_err(RateLimitError::Limited)?;
            }
            let admitted = match &state {
                Some(s) => adaptive_slot(s, &s.name, &budget)
                    .await
                    .map_err(RateLimitError::Limited)?,
                None => None,
            };
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(RateLimitError::Inner)?;
            let call = svc.call(req);
            let mut accepted = false;
            let after = limits.adaptive.and_then(|a| a.accepted_after);
            let mut result = match (&admitted, &state, after) {
                (Some(_), Some(s), Some(after)) => {
                    let mut call = std::pin::pin!(call);
                    match tokio::time::timeout(after, call.as_mut()).await {
                        Ok(result) => result,
                        Err(_still_in_flight) => {
                            limits.accepted(s);
                            accepted = true;
                            call.await
                        }
                    }
                }
                _ => call.await,
            };
            if let (Some((slot, epoch)), Some(s)) = (admitted, &state) {
                // Kept in the response for the retry layer outside (classified once).
                let class = crate::classify::classify_once(&shared.classifier, &mut result);
                limits.feedback(s, epoch, class, accepted);
                drop(slot);
            }
            result.map_err(RateLimitError::Inner)
        }))
    }
}
