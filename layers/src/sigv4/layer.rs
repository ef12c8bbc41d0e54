use std::sync::Arc;

use tower_layer::Layer;

use super::credentials::{ProvideCredentials, SharedCredentialsProvider};
use super::service::SigV4;
use super::sign::{Clock, SigningConfig, SystemClock};

/// Layer that signs every request with SigV4; see the [module docs](super).
#[derive(Clone, Debug)]
pub struct SigV4Layer {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SigningConfig,
    pub(crate) provider: SharedCredentialsProvider,
    pub(crate) clock: Arc<dyn Clock>,
}

impl SigV4Layer {
    /// Signs with credentials from `provider` for `config`, at the system time.
    pub fn new(provider: impl ProvideCredentials, config: SigningConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                provider: SharedCredentialsProvider::new(provider),
                clock: Arc::new(SystemClock),
            }),
        }
    }

    /// Uses another clock for the signing time (tests, oracles, skew correction).
    pub fn with_clock(self, clock: impl Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                config: self.shared.config.clone(),
                provider: self.shared.provider.clone(),
                clock: Arc::new(clock),
            }),
        }
    }

    /// The signing configuration.
    pub fn config(&self) -> &SigningConfig {
        &self.shared.config
    }
}

impl<S> Layer<S> for SigV4Layer {
    type Service = SigV4<S>;
    fn layer(&self, inner: S) -> SigV4<S> {
        SigV4 {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}
