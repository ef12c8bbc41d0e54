use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::clock::{Clock, TokioClock};
use super::config::CircuitBreakerConfig;
use super::error::CircuitState;
use super::key::ExtensionKey;
use super::service::CircuitBreaker;
use super::state::{Breaker, Jitter};

/// What the layer's services and their calls share.
pub(crate) struct Shared<C, K> {
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) classifier: C,
    pub(crate) key: K,
}

/// The circuit breaker layer; see the [module docs](super).
///
/// Clones share the circuits. [`off`](Self::off) makes one that lets every call through
/// untouched (an identity layer, for stacks where the breaker is optional).
pub struct CircuitBreakerLayer<C, K = ExtensionKey> {
    shared: Option<Arc<Shared<C, K>>>,
}

impl<C, K> Clone for CircuitBreakerLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C, K> fmt::Debug for CircuitBreakerLayer<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("CircuitBreakerLayer");
        match &self.shared {
            Some(s) => d
                .field("config", &s.breaker.config)
                .field("tracked_keys", &s.breaker.len()),
            None => d.field("enabled", &false),
        };
        d.finish_non_exhaustive()
    }
}

impl<C> CircuitBreakerLayer<C, ExtensionKey> {
    /// A breaker with this classifier and configuration, keys from
    /// [`CircuitKey`](super::CircuitKey), on tokio's clock.
    pub fn new(classifier: C, config: CircuitBreakerConfig) -> Self {
        CircuitBreakerBuilder::from(config).build(classifier)
    }
}

impl CircuitBreakerLayer<(), ExtensionKey> {
    /// Starts a builder, to choose the clock, the jitter or the keys; the classifier
    /// comes last, in [`build`](CircuitBreakerBuilder::build).
    pub fn builder(config: CircuitBreakerConfig) -> CircuitBreakerBuilder<ExtensionKey> {
        CircuitBreakerBuilder::from(config)
    }
}

impl<C, K> CircuitBreakerLayer<C, K> {
    /// A layer that lets every call through, uncounted (costs a branch per call).
    pub fn off() -> Self {
        Self { shared: None }
    }

    /// Whether this layer guards calls (false for [`off`](Self::off)).
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// The configuration in force (normalized), if enabled.
    pub fn config(&self) -> Option<&CircuitBreakerConfig> {
        self.shared.as_ref().map(|s| &s.breaker.config)
    }

    /// The state of `key`'s circuit now. An unknown key is closed; an open circuit whose
    /// break has ended reads half-open (it turns so, and is traced, at its next call).
    pub fn state(&self, key: &str) -> CircuitState {
        self.shared
            .as_ref()
            .map_or(CircuitState::Closed, |s| s.breaker.state(key))
    }

    /// How many keys have a circuit now.
    pub fn tracked_keys(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.breaker.len())
    }

    /// Drops the circuits idle for a whole sampling window now (closed ones, and open
    /// or half-open ones a window past their break), in this call. Under tokio this also
    /// happens on a task of its own, at most every 10 s (and sooner when the key cap is
    /// reached), never inside a call; on other executors call this from time to time.
    pub fn maintain(&self) {
        if let Some(s) = &self.shared {
            s.breaker.maintain();
        }
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> Option<&Shared<C, K>> {
        self.shared.as_deref()
    }
}

impl<S, C, K> Layer<S> for CircuitBreakerLayer<C, K> {
    type Service = CircuitBreaker<S, C, K>;
    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_shared(inner, self.shared.clone())
    }
}

/// Builder of [`CircuitBreakerLayer`]: the configuration, plus the clock, the jitter
/// source and the key extractor.
pub struct CircuitBreakerBuilder<K = ExtensionKey> {
    config: CircuitBreakerConfig,
    clock: Arc<dyn Clock>,
    jitter: Jitter,
    key: K,
}

impl<K> fmt::Debug for CircuitBreakerBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl From<CircuitBreakerConfig> for CircuitBreakerBuilder<ExtensionKey> {
    fn from(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            clock: Arc::new(TokioClock),
            jitter: Arc::new(fastrand::f64),
            key: ExtensionKey,
        }
    }
}

impl Default for CircuitBreakerBuilder<ExtensionKey> {
    fn default() -> Self {
        CircuitBreakerConfig::default().into()
    }
}

impl<K> CircuitBreakerBuilder<K> {
    /// The clock breaks are measured by (default [`TokioClock`]); see [`Clock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The jitter source, returning values in `[0, 1)`: a break is shortened by
    /// `break_jitter × jitter()` of itself (for tests: `|| 0.0` gives exact breaks).
    pub fn jitter(mut self, source: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.jitter = Arc::new(source);
        self
    }

    /// Where keys come from.
    pub fn key<K2>(self, key: K2) -> CircuitBreakerBuilder<K2> {
        CircuitBreakerBuilder {
            config: self.config,
            clock: self.clock,
            jitter: self.jitter,
            key,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// Builds the layer with this classifier.
    pub fn build<C>(self, classifier: C) -> CircuitBreakerLayer<C, K> {
        CircuitBreakerLayer {
            shared: Some(Arc::new(Shared {
                breaker: Arc::new(Breaker::new(self.config, self.clock, self.jitter)),
                classifier,
                key: self.key,
            })),
        }
    }
}
