//! [`InvokeClientBuilder`], its settings, and how it composes the client.

#![allow(clippy::wildcard_imports)]

use super::*;

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
    pub(super) fn sync_attempt(&self, max_duration: Option<Duration>) -> Duration {
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
                // The SDKs' adaptive mode does nothing until the first throttle: start at
                // the ceiling and let throttles bring the limit down.
                .adaptive({
                    let a = invoke_layers::rate_limit::Adaptive::default();
                    invoke_layers::rate_limit::Adaptive {
                        initial: a.max,
                        ..a
                    }
                });
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
        // Every request of this client goes to its endpoint, through http:// proxies only:
        // with a plain-http endpoint, no connection uses TLS.
        transport_config.plain_http_only = endpoint.scheme() == &http::uri::Scheme::HTTP;
        let transport = HyperTransport::new(transport_config)?;
        let user_agent = identity::user_agent_with(
            self.app_id.or(sdk.app_id).or(settings.app_id).as_deref(),
            &env,
        );
        let trace_id = TraceIdFromEnv::with_env(env);
        // The static stacks set the two slots' headers in one service.
        let identity_headers = IdentityHeadersLayer::new(user_agent.clone(), trace_id.clone());
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
        #[cfg(feature = "stream")]
        let custom_inner = self.inner_service.is_some();
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
            .layer(identity_headers.clone())
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
                    .layer(identity_headers)
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
                    .and_then(|s| s.add("user-agent", Step::Attempt, user_agent_layer(user_agent)))
                    .and_then(|s| {
                        s.add(
                            "recursion-detection",
                            Step::Attempt,
                            recursion_detection_layer(trace_id),
                        )
                    });
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
                #[cfg(feature = "stream")]
                custom_inner,
            }),
        })
    }
}

/// A change to the named stack, applied when the client is built.
pub(super) type Customize = Box<dyn FnOnce(&mut InvokeStack) + Send>;

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
}
