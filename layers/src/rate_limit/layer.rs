//! [`RateLimitLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::error::InvalidLimit;
use super::feedback::{FeedbackLayer, FeedbackShared};
use super::key::ExtensionKey;
use super::limits::{lock, Adaptive, Limits, Rate, Settings};
use super::service::RateLimit;
use super::store::SharedLimits;

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
    pub(super) mode: Mode,
    pub(super) key: K,
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
    pub(super) key: K,
}

impl RateLimitLayer<ExtensionKey> {
    /// Starts a builder (no limits, wait mode with 10 ms jitter and at most
    /// [`DEFAULT_MAX_WAIT`] per wait, keys from [`RateLimitKey`](super::RateLimitKey)).
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
    /// operation [`Deadline`](crate::deadline::Deadline) bounds waits too, whichever is sooner.
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
