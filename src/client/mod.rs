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

mod builder;
mod future;
mod options;

pub use builder::{BuildError, FunctionSettings, InvokeClientBuilder, TimeoutConfig};
use future::CallState;
pub use future::InvokeFuture;
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

use crate::classify::LambdaClassifier;
use crate::config::sdk::SdkSettings;
use crate::config::{Env, EnvSettings};
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::stack::identity::{
    self, recursion_detection_layer, user_agent_layer, IdentityHeadersLayer,
    IdentityHeadersService, TraceIdFromEnv,
};
use crate::stack::{BoxService, InvokeStack, Step};
use crate::telemetry::LambdaTrace;
use invoke_layers::trace::{Trace, TraceLayer};

use crate::codec;
use crate::error::{InvokeError, TransportError, TransportErrorKind};
use crate::model::{InvocationType, InvokeRequest, InvokeResponse};
use crate::transport::{
    Endpoint, EndpointError, EndpointVariant, HyperTransport, TransportBuildError, TransportConfig,
};

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
                        Feedback<Timeout<SigV4<IdentityHeaders<HyperTransport>>>, LambdaClassifier>,
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
/// The `user-agent` and `recursion-detection` slots, in one service.
type IdentityHeaders<S> = IdentityHeadersService<S>;

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
    /// `invoke` goes to a service of the caller's (`inner_service`): `invoke_stream`,
    /// whose stack is always the static one over the real transport, refuses to run.
    #[cfg(feature = "stream")]
    custom_inner: bool,
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
            (Some(sink), InvocationType::Event) => self.invoke_event_with_dead_letters(sink, req),
            _ => self.invoke_without_dead_letter(req),
        }
    }

    // Out of line: the dead-letter path builds its futures on the stack before boxing
    // them, and an `invoke` that reserved room for them made every call's frame 4 KiB
    // deeper (cache misses on every call).
    #[inline(never)]
    fn invoke_event_with_dead_letters(
        &self,
        sink: &Arc<dyn DeadLetterSink>,
        req: InvokeRequest,
    ) -> InvokeFuture {
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
        // The layers' label, shared: one allocation of the name per call.
        #[cfg(feature = "metrics")]
        let metrics = http
            .extensions()
            .get::<invoke_layers::metrics::MetricsTarget>()
            .map(|t| crate::metrics::CallMetrics::start(Arc::clone(&t.0)));
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
        InvokeFuture::new(state, metrics)
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
    ///
    /// These are the stack's slots. In the default (static) stack, `user-agent` and
    /// `recursion-detection` are one service that does the work of both.
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
