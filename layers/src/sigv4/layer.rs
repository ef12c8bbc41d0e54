use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    pub(crate) skew: ClockSkew,
}

impl Shared {
    /// The time to sign with: the clock corrected by the learned skew.
    pub(crate) fn signing_time(&self) -> SystemTime {
        self.skew.apply(self.clock.now())
    }

    /// Learns the server's clock from a response that rejected the request for
    /// authentication (401/403) and carries a `Date` header.
    pub(crate) fn observe<RB>(&self, resp: &http::Response<RB>) {
        let status = resp.status().as_u16();
        if status != 401 && status != 403 {
            return;
        }
        let server = resp
            .headers()
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        if let Some(server) = server {
            self.skew.learn(server, self.clock.now());
        }
    }
}

/// The offset between the server's clock and ours, learned from rejected requests.
///
/// Shared by clones of a layer. Offsets under a minute are treated as none: the `Date`
/// header has a one-second resolution and SigV4 tolerates five minutes.
#[derive(Debug, Clone, Default)]
pub struct ClockSkew(Arc<AtomicI64>);

impl ClockSkew {
    const IGNORE_BELOW_MS: i64 = 60_000;

    /// The learned offset (server minus local), in milliseconds.
    pub fn offset_millis(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Records the server's time as seen at local time `local`.
    pub fn learn(&self, server: SystemTime, local: SystemTime) {
        let offset = match server.duration_since(local) {
            Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
            Err(behind) => -i64::try_from(behind.duration().as_millis()).unwrap_or(i64::MAX),
        };
        let offset = if offset.abs() < Self::IGNORE_BELOW_MS {
            0
        } else {
            offset
        };
        self.0.store(offset, Ordering::Relaxed);
    }

    /// `local` corrected by the offset.
    pub fn apply(&self, local: SystemTime) -> SystemTime {
        let ms = self.offset_millis();
        let d = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            local + d
        } else {
            local.checked_sub(d).unwrap_or(local)
        }
    }
}

impl SigV4Layer {
    /// Signs with credentials from `provider` for `config`, at the system time.
    pub fn new(provider: impl ProvideCredentials, config: SigningConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                provider: SharedCredentialsProvider::new(provider),
                clock: Arc::new(SystemClock),
                skew: ClockSkew::default(),
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
                skew: self.shared.skew.clone(),
            }),
        }
    }

    /// The signing configuration.
    pub fn config(&self) -> &SigningConfig {
        &self.shared.config
    }

    /// The clock skew this layer (and its clones) learned from the server.
    pub fn clock_skew(&self) -> &ClockSkew {
        &self.shared.skew
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
