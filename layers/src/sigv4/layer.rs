use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tower_layer::Layer;

use super::credentials::{ProvideCredentials, SharedCredentialsProvider};
use super::service::SigV4;
use super::sign::{Clock, SigningConfig, SystemClock};
use super::skew::{buffered_body, clock_skew_error, offset_millis, ClockSkew, ErrorBody};

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

    /// Learns the server's clock from a clock-skew error (see [`ClockSkew`]) that
    /// carries a `Date` header. Costs a status comparison on other responses.
    pub(crate) fn observe<RB: 'static>(&self, resp: &mut http::Response<RB>) {
        let status = resp.status().as_u16();
        if !matches!(status, 400 | 401 | 403) {
            return;
        }
        let Some(server) = resp
            .headers()
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return;
        };
        // The body if it is in memory, else an error body a streaming client kept.
        let body = buffered_body(resp.body())
            .or_else(|| resp.extensions().get::<ErrorBody>().map(|b| &b.0[..]));
        let Some(code) = clock_skew_error(status, resp.headers(), body) else {
            return;
        };
        let local = self.clock.now();
        // Logged values are numbers and one of our own code constants, never text
        // from the response.
        let offset_secs = offset_millis(server, local) / 1000;
        let corrected = self.skew.learn(server, local);
        // Tells a retry classifier whether signing again can succeed.
        resp.extensions_mut().insert(ClockSkewCorrected(corrected));
        if corrected {
            tracing::debug!(code, offset_secs, "clock skew learned from the server");
        } else {
            tracing::warn!(
                code,
                offset_secs,
                limit_secs = self.skew.limit().as_secs(),
                "clock skew beyond the limit: not corrected; check the local clock or the endpoint"
            );
        }
    }
}

/// In the extensions of a response that failed on the client's clock (a clock-skew
/// error with the server's `Date`): whether the signer corrected its offset, i.e.
/// whether signing the request again can succeed. A classifier retries such a failure
/// only when it says `true` (an offset beyond the limit is refused and not applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSkewCorrected(pub bool);

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

    /// The largest clock skew learned from the server (default 15 min,
    /// [`ClockSkew::DEFAULT_LIMIT`]): a clock-skew error showing a larger difference is
    /// logged (`WARN`) and not corrected. `Duration::ZERO` turns the correction off.
    pub fn with_max_clock_skew(self, limit: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                config: self.shared.config.clone(),
                provider: self.shared.provider.clone(),
                clock: Arc::clone(&self.shared.clock),
                skew: self.shared.skew.clone().with_limit(limit),
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
