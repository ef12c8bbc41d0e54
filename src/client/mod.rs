//! [`InvokeClient`]: validated request → encode → sign → hyper transport → decode.
//!
//! ```no_run
//! use invoke_stack::InvokeClient;
//! use invoke_stack::layers::sigv4::Credentials;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = InvokeClient::builder()
//!     .region("us-east-1")
//!     .credentials(Credentials::from_keys("AKID", "SECRET", None))
//!     .build()?;
//! let resp = client.invoke_json("my-function", &serde_json::json!({"n": 1})).await?;
//! if let Some(fe) = resp.function_error() {
//!     eprintln!("the function failed: {fe}");
//! }
//! # Ok(()) }
//! ```

mod options;

pub use options::CallOptions;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tower::ServiceExt;

use invoke_layers::circuit_breaker::{
    CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerLayer, CircuitKey,
    ExtensionKey as CircuitExtensionKey,
};
use invoke_layers::rate_limit::{
    ExtensionKey, Feedback, InvalidLimit, Rate, RateLimit, RateLimitBuilder, RateLimitKey,
    RateLimitLayer,
};
use invoke_layers::retry::{
    Idempotent, MaxAttempts, QuotaConfig, Retry, RetryLayer, RetryPartition, RetryPolicy,
    RetryQuota, RetryStats,
};
use invoke_layers::sigv4::{PayloadHash, ProvideCredentials, SigV4, SigV4Layer, SigningConfig};
use invoke_layers::timeout::{
    AttemptTimeout, DeadlineLayer, DeadlineService, OperationTimeout, Timeout, TimeoutLayer,
};

#[cfg(feature = "stream")]
mod stream;
use tower_http::set_header::SetRequestHeader;

use crate::classify::LambdaClassifier;
use crate::config::sdk::SdkSettings;
use crate::config::{Env, EnvSettings};
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::stack::identity::{self, recursion_detection_layer, user_agent_layer, TraceIdFromEnv};
use crate::stack::{BoxService, InvokeStack, Step};
use crate::telemetry::LambdaTrace;
use invoke_layers::trace::{Trace, TraceLayer};

use crate::codec;
use crate::error::{InvokeError, TransportError, TransportErrorKind};
use crate::model::{InvocationType, InvokeRequest, InvokeResponse};
use crate::transport::{
    Endpoint, EndpointError, EndpointVariant, HyperTransport, TransportBuildError, TransportConfig,
};

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No usable endpoint.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The transport could not be built.
    #[error(transparent)]
    Transport(#[from] TransportBuildError),
    /// A rate limit cannot be enforced as written (a rate of 0, a cap of 0, ...).
    #[error(transparent)]
    RateLimit(#[from] InvalidLimit),
    /// A setting in the environment or the shared config file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Builder of [`InvokeClient`].
pub struct InvokeClientBuilder {
    region: Option<String>,
    endpoint_url: Option<String>,
    fips: Option<bool>,
    dual_stack: Option<bool>,
    max_attempts_set: bool,
    app_id: Option<String>,
    env: Env,
    sdk: SdkSettings,
    rate_limit_set: bool,
    transport_set: bool,
    timeouts_set: bool,
    credentials: Option<Arc<dyn ProvideCredentials>>,
    transport: TransportConfig,
    timeouts: TimeoutConfig,
    functions: HashMap<String, FunctionSettings>,
    retry: RetryPolicy,
    quota: QuotaConfig,
    partition_quota: bool,
    retry_unhandled: bool,
    dead_letter: Option<Arc<dyn DeadLetterSink>>,
    rate_limit: RateLimitBuilder<ExtensionKey>,
    named: Option<Customize>,
    inner_service: Option<BoxService>,
    circuit_breaker: Option<CircuitBreakerBuilder>,
    #[cfg(feature = "stream")]
    stream_config: crate::stream::StreamConfig,
}

/// Timeouts, chosen by invocation type (see the table in the crate README).
///
/// - `RequestResponse`: an attempt may wait the function's whole run with no byte on the
///   wire, so its timeout is the function's maximum duration (default 900 s, Lambda's
///   limit; set it per function) plus `sync_margin` (default 60 s: cold start and
///   network). No timer fires before a legitimately long function can finish.
/// - `Event` and `DryRun`: Lambda answers as soon as it has queued or checked the
///   request, so an attempt that takes `async_attempt` (default 10 s) is stuck.
/// - `operation`: a limit on the whole call, all attempts and waits (default none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutConfig {
    /// The whole operation (default none).
    pub operation: Option<Duration>,
    /// Maximum function duration when no per-function value is set (default 900 s).
    pub max_function_duration: Duration,
    /// Added to the function's duration for a synchronous attempt (default 60 s).
    pub sync_margin: Duration,
    /// Attempt timeout of `Event` and `DryRun` calls (default 10 s).
    pub async_attempt: Duration,
}

impl TimeoutConfig {
    /// A synchronous attempt's timeout for a function of this maximum duration (the
    /// default one when `None`).
    fn sync_attempt(&self, max_duration: Option<Duration>) -> Duration {
        // Saturating: `Duration::MAX` is a fair way to say "no limit".
        max_duration
            .unwrap_or(self.max_function_duration)
            .saturating_add(self.sync_margin)
    }
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            operation: None,
            max_function_duration: Duration::from_secs(900),
            sync_margin: Duration::from_secs(60),
            async_attempt: Duration::from_secs(10),
        }
    }
}

/// Settings of one function (keyed by its name, without account or qualifier).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionSettings {
    /// The function's configured timeout (its maximum duration).
    pub max_duration: Option<Duration>,
    /// Whether running it twice is harmless: failures that may have run it (a timeout
    /// after the request was sent, a reset, a 500) are then retried. Default: no.
    pub idempotent: Option<bool>,
    /// A client-side rate of its own, for all its versions and aliases together, in
    /// place of the per-function rate of [`rate_limit`](InvokeClientBuilder::rate_limit)
    /// (which need not be set). Waits or fails fast as that limiter's mode says.
    pub rate: Option<Rate>,
}

impl FunctionSettings {
    /// Marks the function idempotent (or not).
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }

    /// Settings with the function's maximum duration.
    pub fn max_duration(mut self, d: Duration) -> Self {
        self.max_duration = Some(d);
        self
    }

    /// Settings with a rate of the function's own.
    ///
    /// ```
    /// use invoke_stack::client::FunctionSettings;
    /// use invoke_stack::layers::rate_limit::Rate;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = invoke_stack::InvokeClient::builder()
    ///     .region("us-east-1")
    ///     .function("payments", FunctionSettings::default().rate(Rate::per_second(5)))
    ///     .build()?;
    /// assert!(client.rate_limiter().is_keyed());
    /// # Ok(()) }
    /// ```
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }
}

impl fmt::Debug for InvokeClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeClientBuilder")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("fips", &self.fips)
            .field("dual_stack", &self.dual_stack)
            .field("app_id", &self.app_id)
            .field("env", &self.env)
            .field("sdk", &self.sdk)
            .field("credentials", &self.credentials)
            .field("transport", &self.transport)
            .field("timeouts", &self.timeouts)
            .field("functions", &self.functions)
            .field("retry", &self.retry)
            .field("quota", &self.quota)
            .finish()
    }
}

impl InvokeClientBuilder {
    /// The region (for the endpoint and the signature). Defaults to `AWS_REGION`, then
    /// `AWS_DEFAULT_REGION`, then the profile's `region` (see [`crate::config`]).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    /// An explicit endpoint URL (the local endpoint, a proxy, LocalStack, ...). Defaults
    /// to `AWS_ENDPOINT_URL_LAMBDA`, then `AWS_ENDPOINT_URL`, then the profile's
    /// `endpoint_url` (none of them when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is true).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }
    /// Use the FIPS endpoint (default: `AWS_USE_FIPS_ENDPOINT`, the profile's
    /// `use_fips_endpoint`, else no).
    pub fn use_fips(mut self, yes: bool) -> Self {
        self.fips = Some(yes);
        self
    }
    /// Use the dual-stack endpoint (default: `AWS_USE_DUALSTACK_ENDPOINT`, the profile's
    /// `use_dualstack_endpoint`, else no).
    pub fn use_dual_stack(mut self, yes: bool) -> Self {
        self.dual_stack = Some(yes);
        self
    }
    /// The application's id, sent in the User-Agent as `app/{id}` (default:
    /// `AWS_SDK_UA_APP_ID`, the profile's `sdk_ua_app_id`).
    pub fn app_id(mut self, id: impl Into<String>) -> Self {
        self.app_id = Some(id.into());
        self
    }
    /// Takes the settings and the credential chain of an aws-config `SdkConfig` (feature
    /// `aws-config`): the full default chain (environment, profiles with SSO, `role_arn`
    /// or `credential_process`, web identity for EKS, ECS container credentials, EC2
    /// IMDSv2), cached by [`CredentialsCache`](invoke_layers::sigv4::CredentialsCache).
    ///
    /// | `SdkConfig` | here |
    /// |---|---|
    /// | region | [`region`](Self::region) |
    /// | credentials provider | [`credentials`](Self::credentials) |
    /// | `AWS_ENDPOINT_URL_LAMBDA` (or the profile's `services` section), then the endpoint URL | [`endpoint_url`](Self::endpoint_url) |
    /// | FIPS, dual-stack | [`use_fips`](Self::use_fips), [`use_dual_stack`](Self::use_dual_stack) |
    /// | retry config: max attempts, max backoff | [`RetryPolicy`]'s `max_attempts`, `max_backoff` |
    /// | retry mode `adaptive` | an adaptive concurrency limit per function (AIMD on throttles, [`Adaptive`](invoke_layers::rate_limit::Adaptive)), unless [`rate_limit`](Self::rate_limit) is set; `standard` is this crate's default |
    /// | timeout config: connect, operation, operation attempt | [`TransportConfig::connect_timeout`], [`operation_timeout`](Self::operation_timeout), the attempt timeout of `Event`/`DryRun` calls and the default maximum function duration (a synchronous attempt gets it plus the margin) |
    /// | app name | [`app_id`](Self::app_id) |
    ///
    /// What is set on this builder wins, whatever the order of the calls; what neither
    /// sets comes from the environment as without the feature ([`crate::config`]).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    /// let client = invoke_stack::InvokeClient::builder().sdk_config(&sdk).build()?;
    /// # let _ = client; Ok(()) }
    /// ```
    #[cfg(feature = "aws-config")]
    #[cfg_attr(docsrs, doc(cfg(feature = "aws-config")))]
    pub fn sdk_config(mut self, config: &aws_types::SdkConfig) -> Self {
        self.sdk = SdkSettings::from_sdk_config(config);
        self
    }
    /// Where environment variables are read (default: the process environment). The
    /// settings of [`crate::config`], the default credential chain, the proxy variables
    /// and recursion detection all read this one. Tests give their own, so they never
    /// change the process environment:
    ///
    /// ```
    /// use invoke_stack::config::Env;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = invoke_stack::InvokeClient::builder()
    ///     .env(Env::from_pairs([("AWS_REGION", "eu-west-1"), ("AWS_CONFIG_FILE", "/nonexistent")]))
    ///     .build()?;
    /// assert_eq!(client.endpoint().url(), "https://lambda.eu-west-1.amazonaws.com");
    /// # Ok(()) }
    /// ```
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }
    /// Where credentials come from (default: [`crate::config::lean_credentials_chain`],
    /// i.e. the environment variables, then the shared profile files, cached).
    pub fn credentials(mut self, provider: impl ProvideCredentials) -> Self {
        self.credentials = Some(Arc::new(provider));
        self
    }
    /// Transport settings (timeouts, keep-alive, pool, response cap).
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self.transport_set = true;
        self
    }
    /// A limit on the whole call (none by default: a synchronous function may run for
    /// 15 minutes).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.operation = Some(timeout);
        self.timeouts_set = true;
        self
    }
    /// All timeout settings.
    pub fn timeouts(mut self, timeouts: TimeoutConfig) -> Self {
        self.timeouts = timeouts;
        self.timeouts_set = true;
        self
    }
    /// Settings for one function (by name, without account or qualifier).
    pub fn function(mut self, name: impl Into<String>, settings: FunctionSettings) -> Self {
        self.functions.insert(name.into(), settings);
        self
    }
    /// The retry policy (attempts, backoff, `Retry-After` cap); see [`RetryPolicy`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self.max_attempts_set = true;
        self
    }
    /// Total attempts per call, the first included (default: `AWS_MAX_ATTEMPTS`, the
    /// profile's `max_attempts`, else 3; 1 switches retries off).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.retry.max_attempts = attempts.max(1);
        self.max_attempts_set = true;
        self
    }
    /// The retry quota's capacity and costs; see [`QuotaConfig`].
    pub fn retry_quota(mut self, quota: QuotaConfig) -> Self {
        self.quota = quota;
        self
    }
    /// One retry quota per function instead of one per client (default off), so one
    /// failing function cannot use up the retries of the others.
    pub fn partition_retry_quota_by_function(mut self, yes: bool) -> Self {
        self.partition_quota = yes;
        self
    }
    /// Builds the client on a named stack ([`InvokeStack`]) that `customize` can change:
    /// add, insert before or after, remove or replace layers by name. Without it the
    /// client uses the static composition (no boxing).
    pub fn named_stack(
        mut self,
        customize: impl FnOnce(&mut InvokeStack) + Send + 'static,
    ) -> Self {
        self.named = Some(Box::new(customize));
        self
    }
    /// Sends through this service instead of the hyper transport (a test double, another
    /// HTTP client, a proxy...). It receives signed `http::Request<Bytes>`s and answers
    /// `http::Response<Bytes>`s; the client then uses the named stack.
    pub fn inner_service(mut self, service: BoxService) -> Self {
        self.inner_service = Some(service);
        self
    }
    /// Client-side rate limits, keyed by function name (Lambda's limits are per function,
    /// across its versions and aliases); default none. A function's own rate goes in its
    /// [`FunctionSettings`].
    ///
    /// ```
    /// use invoke_stack::layers::rate_limit::{Adaptive, Rate, RateLimitLayer};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = invoke_stack::InvokeClient::builder()
    ///     .region("us-east-1")
    ///     .rate_limit(
    ///         RateLimitLayer::builder()
    ///             .per_key(Rate::per_second(50))
    ///             .adaptive(Adaptive::default()),
    ///     )
    ///     .build()?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn rate_limit(mut self, limits: RateLimitBuilder<ExtensionKey>) -> Self {
        self.rate_limit = limits;
        self.rate_limit_set = true;
        self
    }
    /// Where `Event` invocations that finally fail are stored (default: nowhere, the
    /// caller gets the error); see [`crate::dead_letter`]. With a sink, an `Event`'s
    /// delivery and dead-lettering run in a task of their own, which finishes even if
    /// the caller drops the future ([`InvokeClient::invoke`]).
    pub fn dead_letter_sink(mut self, sink: impl DeadLetterSink) -> Self {
        self.dead_letter = Some(Arc::new(sink));
        self
    }
    /// A circuit breaker per function (default off): while a function is broken, calls
    /// to it fail at once with [`InvokeErrorKind::CircuitOpen`](crate::InvokeErrorKind),
    /// and after a break one probe call at a time finds out whether it has recovered.
    /// Takes a [`CircuitBreakerConfig`](invoke_layers::circuit_breaker::CircuitBreakerConfig),
    /// or a [`CircuitBreakerLayer::builder`] to set its clock or jitter as well. See
    /// [`crate::circuit_breaker`] for what counts and where it sits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use invoke_stack::layers::circuit_breaker::CircuitBreakerConfig;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = invoke_stack::InvokeClient::builder()
    ///     .region("us-east-1")
    ///     .circuit_breaker(CircuitBreakerConfig {
    ///         break_duration: Duration::from_secs(10),
    ///         ..CircuitBreakerConfig::default()
    ///     })
    ///     .build()?;
    /// assert!(client.circuit_breaker().is_some());
    /// # Ok(()) }
    /// ```
    pub fn circuit_breaker(mut self, breaker: impl Into<CircuitBreakerBuilder>) -> Self {
        self.circuit_breaker = Some(breaker.into());
        self
    }
    /// How [`InvokeClient::invoke_stream`] reads streams: the idle timeout between bytes
    /// (default: the function's maximum duration plus the sync margin, 960 s unless set
    /// per function) and the frame cap (default
    /// [`DEFAULT_MAX_FRAME_BYTES`](crate::stream::DEFAULT_MAX_FRAME_BYTES)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use invoke_stack::stream::StreamConfig;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = StreamConfig::default();
    /// config.idle_timeout = Some(Duration::from_secs(30));
    /// config.max_frame_bytes = 1 << 20;
    /// let client = invoke_stack::InvokeClient::builder()
    ///     .region("us-east-1")
    ///     .stream_config(config)
    ///     .build()?;
    /// # let _ = client; Ok(()) }
    /// ```
    #[cfg(feature = "stream")]
    pub fn stream_config(mut self, config: crate::stream::StreamConfig) -> Self {
        self.stream_config = config;
        self
    }
    /// Retry `Unhandled` function errors of idempotent functions (default off).
    pub fn retry_unhandled_function_errors(mut self, yes: bool) -> Self {
        self.retry_unhandled = yes;
        self
    }

    /// Builds the client. Reads the environment and the shared config file's profile
    /// once, here, for what was not set on the builder (see [`crate::config`]).
    pub fn build(mut self) -> Result<InvokeClient, BuildError> {
        let settings = EnvSettings::load(&self.env)?;
        let sdk = std::mem::take(&mut self.sdk);
        let region = self.region.or(sdk.region).or(settings.region);
        let variant = EndpointVariant {
            fips: self
                .fips
                .or(sdk.use_fips)
                .or(settings.use_fips)
                .unwrap_or(false),
            dual_stack: self
                .dual_stack
                .or(sdk.use_dual_stack)
                .or(settings.use_dual_stack)
                .unwrap_or(false),
        };
        let endpoint_url = self
            .endpoint_url
            .or(sdk.endpoint_url)
            .or(settings.endpoint_url);
        let endpoint = Endpoint::resolve(region.as_deref(), endpoint_url.as_deref(), variant)?;
        // A custom endpoint needs no region to resolve, but the signature still does;
        // us-east-1 is what the AWS SDKs use for that case.
        let signing_region = region.unwrap_or_else(|| "us-east-1".to_owned());
        if !self.max_attempts_set {
            if let Some(n) = sdk.max_attempts.or(settings.max_attempts) {
                self.retry.max_attempts = n;
            }
            if let Some(d) = sdk.max_backoff {
                self.retry.max_backoff = d;
            }
        }
        if sdk.adaptive && !self.rate_limit_set {
            self.rate_limit = self
                .rate_limit
                .adaptive(invoke_layers::rate_limit::Adaptive::default());
        }
        if !self.timeouts_set {
            self.timeouts.operation = sdk.operation_timeout;
            if let Some(d) = sdk.attempt_timeout {
                self.timeouts.async_attempt = d;
                self.timeouts.max_function_duration = d;
            }
        }
        let env = self.env.clone();
        let credentials: Arc<dyn ProvideCredentials> = self
            .credentials
            .or(sdk.credentials)
            .unwrap_or_else(|| Arc::new(crate::config::lean_credentials_chain(&env)));
        let mut transport_config = self.transport;
        if !self.transport_set {
            if let Some(d) = sdk.connect_timeout {
                transport_config.connect_timeout = d;
            }
        }
        if transport_config.tls.ca_bundle.is_none() {
            transport_config.tls.ca_bundle = settings.ca_bundle;
        }
        if transport_config.env.is_process() {
            transport_config.env = env.clone();
        }
        let transport = HyperTransport::new(transport_config)?;
        let user_agent = user_agent_layer(identity::user_agent_with(
            self.app_id.or(sdk.app_id).or(settings.app_id).as_deref(),
            &env,
        ));
        let recursion = recursion_detection_layer(TraceIdFromEnv::with_env(env));
        let quota = if self.partition_quota {
            RetryQuota::partitioned(self.quota)
        } else {
            RetryQuota::new(self.quota)
        };
        let retry =
            RetryLayer::new(LambdaClassifier::default().retry_unhandled(self.retry_unhandled))
                .policy(self.retry)
                .quota(quota);
        let limiter = self
            .functions
            .iter()
            .filter_map(|(name, f)| Some((name, f.rate?)))
            .fold(self.rate_limit, |b, (name, rate)| {
                b.key_rate(name.clone(), rate)
            })
            .build()?;
        let keyed_limits = limiter.is_keyed();
        let feedback = limiter.feedback(LambdaClassifier::default());
        let operation_deadline = match self.timeouts.operation {
            Some(d) => DeadlineLayer::new(d),
            None => DeadlineLayer::none(),
        };
        let signer = SigV4Layer::new(credentials, SigningConfig::new(signing_region.clone()));
        let breaker = match self.circuit_breaker {
            Some(b) => b.build(LambdaClassifier::default()),
            None => CircuitBreakerLayer::off(),
        };
        // A custom inner service needs the named (boxed) stack.
        let named = match (self.named, self.inner_service.is_some()) {
            (None, true) => Some(Box::new(|_: &mut InvokeStack| {}) as Customize),
            (named, _) => named,
        };
        // The static stack's attempt timeout defaults to a synchronous call's (the most
        // common case), so those calls carry no `AttemptTimeout` extension.
        let sync_attempt = self.timeouts.sync_attempt(None);
        let implied_attempt_timeout = named.is_none().then_some(sync_attempt);
        // The same layers (sharing their state: limits, quota, circuits, credentials)
        // over the same connection pool, for `invoke_stream`.
        #[cfg(feature = "stream")]
        let stream_service: stream::StreamStack = tower::ServiceBuilder::new()
            .layer(TraceLayer::new(LambdaTrace::stream_operation(
                signing_region.clone(),
            )))
            .layer(breaker.clone())
            .layer(operation_deadline)
            .layer(limiter.clone())
            .layer(retry.clone())
            .layer(TraceLayer::new(LambdaTrace::attempt()))
            .layer(feedback.clone())
            .layer(TimeoutLayer::new(sync_attempt))
            .layer(signer.clone())
            .layer(user_agent.clone())
            .layer(recursion.clone())
            .service(transport.streaming());
        let service = match named {
            None => ClientService::Static(
                tower::ServiceBuilder::new()
                    .layer(TraceLayer::new(LambdaTrace::operation(
                        signing_region.clone(),
                    )))
                    .layer(breaker.clone())
                    .layer(operation_deadline)
                    .layer(limiter.clone())
                    .layer(retry)
                    .layer(TraceLayer::new(LambdaTrace::attempt()))
                    .layer(feedback)
                    .layer(TimeoutLayer::new(sync_attempt))
                    .layer(signer)
                    .layer(user_agent)
                    .layer(recursion)
                    .service(transport),
            ),
            Some(customize) => {
                let mut stack = InvokeStack::new();
                // Every name is new in an empty stack: these cannot fail.
                let _ = stack
                    .add(
                        "trace",
                        Step::Operation,
                        TraceLayer::new(LambdaTrace::operation(signing_region.clone())),
                    )
                    .and_then(|s| s.add("deadline", Step::Operation, operation_deadline))
                    .and_then(|s| s.add("rate-limit", Step::Operation, limiter.clone()))
                    .and_then(|s| s.add_retry("retry", retry))
                    .and_then(|s| {
                        s.add(
                            "attempt-trace",
                            Step::Attempt,
                            TraceLayer::new(LambdaTrace::attempt()),
                        )
                    })
                    .and_then(|s| s.add("rate-limit-feedback", Step::Attempt, feedback))
                    .and_then(|s| {
                        s.add(
                            "attempt-timeout",
                            Step::Attempt,
                            TimeoutLayer::per_request(),
                        )
                    })
                    .and_then(|s| s.add("sign", Step::Attempt, signer))
                    .and_then(|s| s.add("user-agent", Step::Attempt, user_agent))
                    .and_then(|s| s.add("recursion-detection", Step::Attempt, recursion));
                if breaker.is_enabled() {
                    let _ = stack.add_after("trace", "circuit-breaker", breaker.clone());
                }
                customize(&mut stack);
                let transport = self
                    .inner_service
                    .unwrap_or_else(|| BoxService::new(transport.map_err(InvokeError::from)));
                ClientService::Named {
                    service: stack.build(transport),
                    names: stack.identify(),
                }
            }
        };
        Ok(InvokeClient {
            inner: Arc::new(Inner {
                endpoint,
                service,
                timeouts: self.timeouts,
                functions: self.functions,
                dead_letter: self.dead_letter,
                dead_letter_tails: Arc::default(),
                limiter,
                partition_quota: self.partition_quota,
                keyed_limits,
                implied_attempt_timeout,
                breaker,
                #[cfg(feature = "stream")]
                stream: stream_service,
                #[cfg(feature = "stream")]
                stream_config: self.stream_config,
            }),
        })
    }
}

/// A change to the named stack, applied when the client is built.
type Customize = Box<dyn FnOnce(&mut InvokeStack) + Send>;

/// The client's stack: the static composition, or a named stack. (The static one is
/// larger; there is one per client, behind an `Arc`.)
#[allow(clippy::large_enum_variant)]
enum ClientService {
    Static(Stack),
    Named {
        service: BoxService,
        names: Vec<String>,
    },
}

/// Payloads from this size on are hashed once per operation, not once per attempt.
const HASH_ONCE_FROM: usize = 1024;

/// The default order of the stack (see [`crate::stack`]).
pub const DEFAULT_ORDER: &[&str] = &[
    "trace (operation)",
    "deadline (operation)",
    "rate-limit (operation)",
    "retry (operation)",
    "attempt-trace (attempt)",
    "rate-limit-feedback (attempt)",
    "attempt-timeout (attempt)",
    "sign (attempt)",
    "user-agent (attempt)",
    "recursion-detection (attempt)",
];

type Stack = Trace<
    CircuitBreaker<
        DeadlineService<
            RateLimit<
                Retry<
                    Trace<
                        Feedback<
                            Timeout<SigV4<UserAgent<RecursionDetection<HyperTransport>>>>,
                            LambdaClassifier,
                        >,
                        LambdaTrace,
                    >,
                    LambdaClassifier,
                >,
                ExtensionKey,
            >,
        >,
        LambdaClassifier,
        CircuitExtensionKey,
    >,
    LambdaTrace,
>;

/// Counts the `Event` tasks still delivering or dead-lettering.
#[derive(Default)]
struct TailTracker {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

struct TailGuard(Arc<TailTracker>);

impl TailTracker {
    fn enter(this: Arc<Self>) -> TailGuard {
        this.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        TailGuard(this)
    }

    async fn settled(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TailGuard {
    fn drop(&mut self) {
        if self
            .0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// The error of an `Event` whose task ended without a result (it panicked, or its
/// runtime shut down): the request may have been sent.
fn lost_tail(e: &tokio::task::JoinError) -> InvokeError {
    TransportError::new(
        TransportErrorKind::Exchange,
        true,
        format!("the Event's delivery task ended without a result: {e}"),
        None,
    )
    .into()
}
type UserAgent<S> = SetRequestHeader<SetRequestHeader<S, http::HeaderValue>, http::HeaderValue>;
type RecursionDetection<S> = SetRequestHeader<S, TraceIdFromEnv>;

struct Inner {
    endpoint: Endpoint,
    service: ClientService,
    timeouts: TimeoutConfig,
    functions: HashMap<String, FunctionSettings>,
    dead_letter: Option<Arc<dyn DeadLetterSink>>,
    /// `Event` deliveries with a sink still running in their own tasks.
    dead_letter_tails: Arc<TailTracker>,
    limiter: RateLimitLayer,
    partition_quota: bool,
    keyed_limits: bool,
    /// The attempt timeout the stack applies to a request without an `AttemptTimeout`
    /// (the static stack's; none for a named stack, whose timeout layer may be replaced).
    implied_attempt_timeout: Option<Duration>,
    /// The circuit breaker (off unless configured).
    breaker: CircuitBreakerLayer<LambdaClassifier>,
    /// The stack of `invoke_stream`, and how it reads streams.
    #[cfg(feature = "stream")]
    stream: stream::StreamStack,
    #[cfg(feature = "stream")]
    stream_config: crate::stream::StreamConfig,
}

/// A Lambda Invoke client. `Clone + Send + Sync`; clones share one connection pool.
#[derive(Clone)]
pub struct InvokeClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for InvokeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeClient")
            .field("endpoint", &self.inner.endpoint)
            .field("timeouts", &self.inner.timeouts)
            .finish_non_exhaustive()
    }
}

impl InvokeClient {
    /// Starts a builder.
    pub fn builder() -> InvokeClientBuilder {
        InvokeClientBuilder {
            region: None,
            endpoint_url: None,
            fips: None,
            dual_stack: None,
            max_attempts_set: false,
            app_id: None,
            env: Env::process(),
            sdk: SdkSettings::default(),
            rate_limit_set: false,
            transport_set: false,
            timeouts_set: false,
            credentials: None,
            transport: TransportConfig::default(),
            timeouts: TimeoutConfig::default(),
            functions: HashMap::new(),
            retry: RetryPolicy::default(),
            quota: QuotaConfig::default(),
            partition_quota: false,
            retry_unhandled: false,
            dead_letter: None,
            rate_limit: RateLimitLayer::builder(),
            named: None,
            inner_service: None,
            circuit_breaker: None,
            #[cfg(feature = "stream")]
            stream_config: crate::stream::StreamConfig::default(),
        }
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Invokes a function. A function error is a successful response
    /// ([`InvokeResponse::function_error`]); every other failure is an [`InvokeError`].
    ///
    /// An `Event` invocation that fails is also handed to the dead-letter sink, if one
    /// is configured ([`InvokeError::dead_lettered`] says whether it was stored; if the
    /// sink refused it, [`InvokeError::dead_letter_error`] holds the letter).
    ///
    /// The request is encoded when this is called; the stack runs when the returned
    /// future is first polled. The future holds its own handle on the client's stack:
    /// it is `Send` and `'static`, so it can be spawned.
    ///
    /// An `Event` with a dead-letter sink, polled on a Tokio runtime, runs in a task of
    /// its own from its first poll: if the caller then drops the future (a `timeout`, a
    /// losing `select!` branch), the event is still delivered or dead-lettered.
    /// [`dead_letters_settled`](Self::dead_letters_settled) waits for such tasks. A
    /// future never polled does nothing.
    pub fn invoke(&self, req: InvokeRequest) -> InvokeFuture {
        match (&self.inner.dead_letter, req.invocation_type()) {
            (Some(sink), InvocationType::Event) => {
                let (client, sink) = (self.clone(), Arc::clone(sink));
                let tail = async move { client.invoke_dead_lettering(&*sink, req).await };
                let tracker = Arc::clone(&self.inner.dead_letter_tails);
                InvokeFuture::boxed(async move {
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => {
                            let guard = TailTracker::enter(tracker);
                            // The caller's span stays the parent of the call's spans.
                            let span = tracing::Span::current();
                            let task = rt.spawn(tracing::Instrument::instrument(
                                async move {
                                    let result = tail.await;
                                    drop(guard);
                                    result
                                },
                                span,
                            ));
                            match task.await {
                                Ok(result) => result,
                                Err(e) => Err(lost_tail(&e)),
                            }
                        }
                        // Not on a Tokio runtime: nothing to spawn on, the caller's
                        // future does the work (and dropping it stops it).
                        Err(_) => tail.await,
                    }
                })
            }
            _ => self.invoke_without_dead_letter(req),
        }
    }

    /// Waits until every `Event` with a dead-letter sink whose future was polled has
    /// been delivered or handed to the sink (including those whose caller dropped the
    /// future). Call it before shutting the runtime down: tasks still running then are
    /// dropped with it.
    pub async fn dead_letters_settled(&self) {
        self.inner.dead_letter_tails.settled().await;
    }

    /// [`InvokeClient::invoke`] for an `Event` with a dead-letter sink.
    async fn invoke_dead_lettering(
        &self,
        sink: &dyn DeadLetterSink,
        req: InvokeRequest,
    ) -> Result<InvokeResponse, InvokeError> {
        let started = std::time::SystemTime::now();
        match self.invoke_without_dead_letter(req.clone()).await {
            Ok(resp) => Ok(resp),
            Err(mut err) => {
                let letter = DeadLetter::new(&req, &err, started);
                let id = letter.id.clone();
                let sent = sink.send(letter).await;
                #[cfg(feature = "metrics")]
                metrics::counter!(
                    "invoke_dead_letters_total",
                    "function" => req.function_name().name().to_owned(),
                    "outcome" => if sent.is_ok() { "stored" } else { "refused" }
                )
                .increment(1);
                match sent {
                    Ok(()) => {
                        err.mark_dead_lettered();
                        tracing::warn!(
                            function = %req.function_name(),
                            letter = %id,
                            error.type = err.type_name(),
                            "event dead-lettered"
                        );
                    }
                    Err(refused) => {
                        tracing::error!(
                            function = %req.function_name(),
                            letter = %id,
                            error = %refused,
                            "could not store an undeliverable Event in the dead-letter sink"
                        );
                        err.set_dead_letter_error(refused);
                    }
                }
                Err(err)
            }
        }
    }

    /// Invokes without handing a failed `Event` to the dead-letter sink (replays use it).
    pub fn invoke_without_dead_letter(&self, req: InvokeRequest) -> InvokeFuture {
        // Options set after building (`with_options`) are checked here, before sending.
        if let Err(e) = req.options().validate() {
            return InvokeFuture::ready(Err(e.into()));
        }
        let mut http = match codec::encode(&req, &self.inner.endpoint) {
            Ok(http) => http,
            Err(e) => {
                let err = TransportError::new(
                    TransportErrorKind::InvalidRequest,
                    false,
                    e.to_string(),
                    None,
                );
                return InvokeFuture::ready(Err(err.into()));
            }
        };
        self.add_extensions(http.extensions_mut(), &req);
        #[cfg(feature = "metrics")]
        let metrics = Some(crate::metrics::CallMetrics::start(Arc::from(
            req.function_name().name(),
        )));
        #[cfg(not(feature = "metrics"))]
        let metrics = ();
        let state = match &self.inner.service {
            ClientService::Static(s) => CallState::Static {
                call: s.clone().oneshot(http),
            },
            ClientService::Named { service, .. } => CallState::Named {
                call: service.clone().oneshot(http),
            },
        };
        InvokeFuture { state, metrics }
    }

    /// What the layers need to know of a call, in the request's extensions.
    #[inline]
    fn add_extensions(&self, ext: &mut http::Extensions, req: &InvokeRequest) {
        let name = req.function_name().name();
        // Hash the payload once per operation when re-hashing it on a retry would cost
        // more than the shared cell costs every call (three allocations); see
        // BENCHMARKS.md ("3 attempts, hash once" at 128 B).
        if req.payload().len() >= HASH_ONCE_FROM {
            ext.insert(PayloadHash::new());
        }
        let options = req.options();
        let attempt_timeout = options
            .attempt_timeout
            .unwrap_or_else(|| self.attempt_timeout(req));
        if self.inner.implied_attempt_timeout != Some(attempt_timeout) {
            ext.insert(AttemptTimeout(attempt_timeout));
        }
        if let Some(timeout) = options.timeout {
            // Started by the deadline layer at the call's first poll, as the client's own
            // budget is; the earlier of the two applies.
            ext.insert(OperationTimeout(timeout));
        }
        if let Some(max) = options.max_attempts {
            ext.insert(MaxAttempts(max));
        }
        // Keys are allocated only for the limits that use them.
        if self.inner.partition_quota {
            ext.insert(RetryPartition(name.to_owned()));
        }
        if self.inner.keyed_limits {
            ext.insert(RateLimitKey(name.to_owned()));
        }
        if self.inner.breaker.is_enabled() {
            ext.insert(CircuitKey(crate::circuit_breaker::circuit_key(
                req.function_name(),
            )));
        }
        if let Some(idempotent) = options
            .idempotent
            .or_else(|| self.inner.functions.get(name).and_then(|f| f.idempotent))
        {
            ext.insert(Idempotent(idempotent));
        }
        #[cfg(feature = "metrics")]
        ext.insert(invoke_layers::metrics::MetricsTarget(Arc::from(name)));
    }

    /// The order of the client's layers, outermost first (`"name (step)"`).
    pub fn identify(&self) -> Vec<String> {
        match &self.inner.service {
            ClientService::Static(_) => {
                let mut names: Vec<String> =
                    DEFAULT_ORDER.iter().map(|s| (*s).to_owned()).collect();
                if self.inner.breaker.is_enabled() {
                    names.insert(1, "circuit-breaker (operation)".to_owned());
                }
                names
            }
            ClientService::Named { names, .. } => names.clone(),
        }
    }

    /// The client's circuit breaker, to read a function's state
    /// (`client.circuit_breaker()?.state("my-function")`); `None` when it is off.
    pub fn circuit_breaker(&self) -> Option<&CircuitBreakerLayer<LambdaClassifier>> {
        Some(&self.inner.breaker).filter(|b| b.is_enabled())
    }

    /// The client's rate limiter (to read adaptive limits and in-flight counts).
    pub fn rate_limiter(&self) -> &RateLimitLayer {
        &self.inner.limiter
    }

    /// The attempt timeout for a request, from its invocation type and function.
    pub fn attempt_timeout(&self, req: &InvokeRequest) -> Duration {
        let t = &self.inner.timeouts;
        match req.invocation_type() {
            InvocationType::RequestResponse => t.sync_attempt(
                self.inner
                    .functions
                    .get(req.function_name().name())
                    .and_then(|f| f.max_duration),
            ),
            InvocationType::Event | InvocationType::DryRun => t.async_attempt,
        }
    }

    /// Reports a request that failed validation, as an operation span of its own.
    fn invalid(function_name: &str, e: crate::model::ValidationError) -> InvokeError {
        let span = tracing::info_span!(
            "Lambda.Invoke",
            rpc.system = "aws-api",
            rpc.service = "Lambda",
            rpc.method = "Invoke",
            faas.invoked_name = function_name,
            faas.invoked_provider = "aws",
            error.type = "ValidationError",
            aws.lambda.fault = "client",
            aws.lambda.may_have_run = "not_run",
        );
        tracing::info!(parent: &span, field = %e.field(), error = %e, "invoke failed");
        e.into()
    }

    /// Invokes synchronously with a JSON payload.
    pub async fn invoke_json<T: serde::Serialize + ?Sized>(
        &self,
        function_name: &str,
        payload: &T,
    ) -> Result<InvokeResponse, InvokeError> {
        let req = InvokeRequest::builder(function_name)
            .payload_json(payload)
            .map_err(|e| {
                let problem = crate::model::Problem::NotJsonSerializable(e.to_string());
                let err = crate::model::ValidationError::new(crate::model::Field::Payload, problem);
                Self::invalid(function_name, err)
            })?
            .build()
            .map_err(|e| Self::invalid(function_name, e))?;
        self.invoke(req).await
    }

    /// Queues an asynchronous invocation (`Event`, answered 202).
    pub async fn invoke_event(
        &self,
        function_name: &str,
        payload: impl Into<bytes::Bytes>,
    ) -> Result<InvokeResponse, InvokeError> {
        let req = InvokeRequest::builder(function_name)
            .invocation_type(InvocationType::Event)
            .payload(payload)
            .build()
            .map_err(|e| Self::invalid(function_name, e))?;
        self.invoke(req).await
    }

    /// Checks parameters and permissions without running the function (`DryRun`, 204).
    pub async fn dry_run(&self, function_name: &str) -> Result<InvokeResponse, InvokeError> {
        let req = InvokeRequest::builder(function_name)
            .invocation_type(InvocationType::DryRun)
            .build()
            .map_err(|e| Self::invalid(function_name, e))?;
        self.invoke(req).await
    }
}

pin_project_lite::pin_project! {
    /// The future of [`InvokeClient::invoke`]: `Send` and `'static`.
    ///
    /// It is the client's stack call itself, with the response decoded when it
    /// completes (no `async fn` frames around it: every frame would hold and move a
    /// copy of the stack's future).
    ///
    /// ```no_run
    /// # async fn f(client: invoke_stack::InvokeClient) -> Result<(), invoke_stack::InvokeError> {
    /// let req = invoke_stack::InvokeRequest::builder("my-function").build()?;
    /// let handle = tokio::spawn(client.invoke(req));
    /// # let _ = handle; Ok(()) }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct InvokeFuture {
        #[pin]
        state: CallState,
        metrics: MetricsSlot,
    }
}

/// The client is a [`tower::Service`] of [`InvokeRequest`]s, so tower's middleware
/// (`Buffer`, `ConcurrencyLimit`, `LoadShed`, `Timeout`, a user's own layers) can wrap
/// the whole client. Each call is [`InvokeClient::invoke`].
///
/// `poll_ready` is always ready: the client holds no per-caller capacity. Its own
/// limits (rate, concurrency, circuit breaker) apply inside each call, where they wait
/// or fail with a typed error; a `ConcurrencyLimit` or `LoadShed` around the client adds
/// a limit of the caller's.
///
/// ```no_run
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
/// use invoke_stack::{InvokeClient, InvokeRequest};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let client = InvokeClient::builder().region("eu-west-1").build()?;
/// let mut svc = ServiceBuilder::new()
///     .buffer(1024)
///     .concurrency_limit(64)
///     .service(client);
/// let req = InvokeRequest::builder("my-function").payload("{}").build()?;
/// let resp = svc.ready().await?.call(req).await?;
/// # let _ = resp; Ok(()) }
/// ```
impl tower_service::Service<InvokeRequest> for InvokeClient {
    type Response = InvokeResponse;
    type Error = InvokeError;
    type Future = InvokeFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: InvokeRequest) -> Self::Future {
        self.invoke(req)
    }
}

/// A call's metrics (nothing without the `metrics` feature).
#[cfg(feature = "metrics")]
type MetricsSlot = Option<crate::metrics::CallMetrics>;
#[cfg(not(feature = "metrics"))]
type MetricsSlot = ();

pin_project_lite::pin_project! {
    #[project = CallProj]
    enum CallState {
        // A result known before the stack runs (an encoding error), or none once the
        // result has been returned.
        Ready { result: Option<Result<InvokeResponse, InvokeError>> },
        Static { #[pin] call: tower::util::Oneshot<Stack, http::Request<bytes::Bytes>> },
        Named { #[pin] call: tower::util::Oneshot<BoxService, http::Request<bytes::Bytes>> },
        Boxed { fut: Pin<Box<dyn Future<Output = Result<InvokeResponse, InvokeError>> + Send>> },
    }
}

impl InvokeFuture {
    fn ready(result: Result<InvokeResponse, InvokeError>) -> Self {
        Self {
            state: CallState::Ready {
                result: Some(result),
            },
            metrics: MetricsSlot::default(),
        }
    }

    fn boxed(
        fut: impl Future<Output = Result<InvokeResponse, InvokeError>> + Send + 'static,
    ) -> Self {
        Self {
            state: CallState::Boxed { fut: Box::pin(fut) },
            // The call inside records its own metrics.
            metrics: MetricsSlot::default(),
        }
    }
}

impl fmt::Debug for InvokeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeFuture").finish_non_exhaustive()
    }
}

impl Future for InvokeFuture {
    type Output = Result<InvokeResponse, InvokeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        #[cfg(feature = "metrics")]
        {
            let this = self.project();
            if let Some(m) = this.metrics.as_mut() {
                m.polled();
            }
            let result = ready!(poll_call(this.state, cx));
            if let Some(m) = this.metrics {
                m.finish(&result);
            }
            Poll::Ready(result)
        }
        #[cfg(not(feature = "metrics"))]
        poll_call(self.project().state, cx)
    }
}

/// Polls a call to its result (decoded, with the retry statistics on an error).
fn poll_call(
    mut state: Pin<&mut CallState>,
    cx: &mut Context<'_>,
) -> Poll<Result<InvokeResponse, InvokeError>> {
    let resp = match state.as_mut().project() {
        CallProj::Ready { result } => {
            return Poll::Ready(match result.take() {
                Some(result) => result,
                None => Err(crate::transport::polled_after_completion(true).into()),
            });
        }
        CallProj::Static { call } => ready!(call.poll(cx)).map_err(InvokeError::from),
        CallProj::Named { call } => ready!(call.poll(cx)),
        CallProj::Boxed { fut } => {
            let result = ready!(fut.as_mut().poll(cx));
            state.set(CallState::Ready { result: None });
            return Poll::Ready(result);
        }
    };
    // The stack's call is done: drop it now, and never poll it again.
    state.set(CallState::Ready { result: None });
    let resp = match resp {
        Ok(resp) => resp,
        Err(err) => return Poll::Ready(Err(err)),
    };
    // Decode, with the retry statistics on an error.
    let stats = resp.extensions().get::<RetryStats>().copied();
    Poll::Ready(codec::decode(resp).map_err(|api| {
        let err = InvokeError::from(api);
        match stats {
            Some(s) => err.with_retry_stats(s),
            None => err,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use invoke_layers::sigv4::Credentials;

    #[test]
    fn attempt_timeouts_follow_the_invocation_type() {
        let client = InvokeClient::builder()
            .endpoint_url("http://127.0.0.1:1")
            .credentials(Credentials::from_keys("A", "S", None))
            .function(
                "quick",
                FunctionSettings::default().max_duration(Duration::from_secs(30)),
            )
            .build()
            .unwrap();
        let t = |name: &str, it: InvocationType| {
            let req = InvokeRequest::builder(name)
                .invocation_type(it)
                .build()
                .unwrap();
            client.attempt_timeout(&req)
        };
        // A synchronous call may take the function's whole run, plus a margin.
        assert_eq!(
            t("slow", InvocationType::RequestResponse),
            Duration::from_secs(960)
        );
        assert_eq!(
            t("quick", InvocationType::RequestResponse),
            Duration::from_secs(90)
        );
        assert_eq!(
            t(
                "arn:aws:lambda:us-east-1:123456789012:function:quick:prod",
                InvocationType::RequestResponse
            ),
            Duration::from_secs(90)
        );
        // Lambda answers Event and DryRun once queued or checked.
        assert_eq!(t("slow", InvocationType::Event), Duration::from_secs(10));
        assert_eq!(t("quick", InvocationType::DryRun), Duration::from_secs(10));
        // The static stack's own attempt timeout is the default synchronous one: calls
        // that need it carry no extension, every other call carries its own.
        assert_eq!(
            client.inner.implied_attempt_timeout,
            Some(t("slow", InvocationType::RequestResponse))
        );
        let named = InvokeClient::builder()
            .endpoint_url("http://127.0.0.1:1")
            .credentials(Credentials::from_keys("A", "S", None))
            .named_stack(|_| {})
            .build()
            .unwrap();
        assert_eq!(named.inner.implied_attempt_timeout, None);
    }
}
