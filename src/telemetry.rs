//! Tracing for Lambda calls: the [`Describe`] implementations behind the operation span
//! (`Lambda.Invoke`, INFO) and the attempt spans (`Lambda.Invoke.attempt`, DEBUG).
//!
//! | level | what |
//! |---|---|
//! | INFO | the operation span, and one `invoke finished` / `invoke failed` event with the outcome; `throttled` |
//! | DEBUG | attempt spans; `retry scheduled`, `retries stopped`; the decoded log tail, one event per line, only when asked for ([`LambdaTrace::log_tail`]) |
//! | WARN | `timed out`; an `Event` dead-lettered, or one that could not be |
//! | TRACE | request and response headers: values of an allowlist, names only for the rest |
//!
//! Span fields follow OpenTelemetry's semantic conventions where one exists: `rpc.system`
//! = `aws-api`, `rpc.service` = `Lambda`, `rpc.method` = `Invoke`, `faas.invoked_name`,
//! `faas.invoked_provider` = `aws`, `faas.invoked_region`, `aws.request_id`,
//! `http.response.status_code`, `server.address`, `error.type`; and ours, under
//! `aws.lambda.*`: invocation type, qualifier, payload and response sizes, executed
//! version, function error, fault, throttle reason, may-have-run, attempts.
//!
//! Never recorded: `Authorization`, `X-Amz-Security-Token`, credentials, signatures,
//! payloads, client contexts; nor, unless asked for, the function's log tail.
//!
//! Text from the server (error codes, request ids, versions, function errors, messages)
//! is recorded capped and escaped ([`Untrusted`]): a proxy that echoes headers or a
//! 100 KB message cannot flood a log or forge lines in it.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use invoke_layers::retry::{AttemptNumber, RetryError, RetryStats};
use invoke_layers::sigv4::{CredentialsError, SigV4Error, SigningError};
use invoke_layers::timeout::TimeoutError as LayerTimeoutError;
use invoke_layers::trace::{trace_headers, Describe, Untrusted};
use tracing::field::Empty;
use tracing::Span;

use crate::codec::{self, BufferedBody};
use crate::error::{Fault, RunStatus, TimeoutError, TransportError};

/// What the tracing layers record of an error of the stack. Implement it for the error
/// of a layer of your own that sits under [`LambdaTrace`].
///
/// ```
/// use invoke_stack::error::{Fault, RunStatus};
/// use invoke_stack::telemetry::ErrorFacts;
///
/// /// A layer of the caller's that refuses calls outside business hours.
/// #[derive(Debug)]
/// struct OutOfHours;
///
/// impl ErrorFacts for OutOfHours {
///     fn error_type(&self) -> &'static str {
///         "OutOfHours"
///     }
///     fn fault(&self) -> Fault {
///         Fault::Client
///     }
///     fn may_have_run(&self) -> RunStatus {
///         RunStatus::NotRun // refused before sending
///     }
/// }
/// assert_eq!(OutOfHours.may_have_run(), RunStatus::NotRun);
/// ```
pub trait ErrorFacts {
    /// `error.type`: the error's type name.
    fn error_type(&self) -> &'static str;
    /// Client or server fault.
    fn fault(&self) -> Fault;
    /// Whether the function may have run.
    fn may_have_run(&self) -> RunStatus;
    /// Attempts made, when a retry layer counted them.
    fn attempts(&self) -> Option<u32> {
        None
    }
}

fn sent(b: bool) -> RunStatus {
    if b {
        RunStatus::Unknown
    } else {
        RunStatus::NotRun
    }
}

impl ErrorFacts for TransportError {
    fn error_type(&self) -> &'static str {
        "TransportError"
    }
    fn fault(&self) -> Fault {
        TransportError::fault(self)
    }
    fn may_have_run(&self) -> RunStatus {
        sent(self.request_sent())
    }
}

impl ErrorFacts for TimeoutError {
    fn error_type(&self) -> &'static str {
        "TimeoutError"
    }
    fn fault(&self) -> Fault {
        Fault::Server
    }
    fn may_have_run(&self) -> RunStatus {
        sent(self.request_sent())
    }
}

impl ErrorFacts for CredentialsError {
    fn error_type(&self) -> &'static str {
        "CredentialsError"
    }
    fn fault(&self) -> Fault {
        Fault::Client
    }
    fn may_have_run(&self) -> RunStatus {
        RunStatus::NotRun
    }
}

impl ErrorFacts for SigningError {
    fn error_type(&self) -> &'static str {
        "SigningError"
    }
    fn fault(&self) -> Fault {
        Fault::Client
    }
    fn may_have_run(&self) -> RunStatus {
        RunStatus::NotRun
    }
}

impl<E: ErrorFacts> ErrorFacts for LayerTimeoutError<E> {
    fn error_type(&self) -> &'static str {
        match self {
            LayerTimeoutError::Elapsed(e) => e.error_type(),
            LayerTimeoutError::Inner(e) => e.error_type(),
            _ => "TransportError",
        }
    }
    fn fault(&self) -> Fault {
        match self {
            LayerTimeoutError::Elapsed(e) => ErrorFacts::fault(e),
            LayerTimeoutError::Inner(e) => e.fault(),
            _ => Fault::Client,
        }
    }
    fn may_have_run(&self) -> RunStatus {
        match self {
            LayerTimeoutError::Elapsed(e) => ErrorFacts::may_have_run(e),
            LayerTimeoutError::Inner(e) => e.may_have_run(),
            _ => RunStatus::Unknown,
        }
    }
    fn attempts(&self) -> Option<u32> {
        match self {
            LayerTimeoutError::Elapsed(e) => e.attempts(),
            LayerTimeoutError::Inner(e) => e.attempts(),
            _ => None,
        }
    }
}

impl<E: ErrorFacts> ErrorFacts for SigV4Error<E> {
    fn error_type(&self) -> &'static str {
        match self {
            SigV4Error::Credentials(e) => e.error_type(),
            SigV4Error::Signing(e) => e.error_type(),
            SigV4Error::Inner(e) => e.error_type(),
            _ => "SigV4Error",
        }
    }
    fn fault(&self) -> Fault {
        match self {
            SigV4Error::Credentials(e) => ErrorFacts::fault(e),
            SigV4Error::Signing(e) => ErrorFacts::fault(e),
            SigV4Error::Inner(e) => e.fault(),
            _ => Fault::Client,
        }
    }
    fn may_have_run(&self) -> RunStatus {
        match self {
            SigV4Error::Inner(e) => e.may_have_run(),
            // Credentials, signing: before the request is sent.
            _ => RunStatus::NotRun,
        }
    }
}

impl ErrorFacts for crate::error::InvokeError {
    fn error_type(&self) -> &'static str {
        use crate::error::InvokeErrorKind as K;
        match self.kind() {
            K::Validation(_) => "ValidationError",
            K::Api(_) => "ApiError",
            K::Transport(_) => "TransportError",
            K::Timeout(_) => "TimeoutError",
            K::Credentials(_) => "CredentialsError",
            K::Signing(_) => "SigningError",
            K::RateLimited(_) => "RateLimited",
            K::CircuitOpen(_) => "CircuitOpen",
            K::Layer(_) => "LayerError",
        }
    }
    fn fault(&self) -> Fault {
        crate::error::InvokeError::fault(self)
    }
    fn may_have_run(&self) -> RunStatus {
        crate::error::InvokeError::may_have_run(self)
    }
    fn attempts(&self) -> Option<u32> {
        Some(crate::error::InvokeError::attempts(self))
    }
}

impl ErrorFacts for invoke_layers::rate_limit::RateLimited {
    fn error_type(&self) -> &'static str {
        "RateLimited"
    }
    fn fault(&self) -> Fault {
        Fault::Client
    }
    fn may_have_run(&self) -> RunStatus {
        RunStatus::NotRun
    }
}

impl<E: ErrorFacts> ErrorFacts for invoke_layers::rate_limit::RateLimitError<E> {
    fn error_type(&self) -> &'static str {
        match self {
            invoke_layers::rate_limit::RateLimitError::Limited(e) => e.error_type(),
            invoke_layers::rate_limit::RateLimitError::Inner(e) => e.error_type(),
            // A refusal of a kind added later.
            _ => "RateLimited",
        }
    }
    fn fault(&self) -> Fault {
        match self {
            invoke_layers::rate_limit::RateLimitError::Limited(e) => e.fault(),
            invoke_layers::rate_limit::RateLimitError::Inner(e) => e.fault(),
            _ => Fault::Client,
        }
    }
    fn may_have_run(&self) -> RunStatus {
        match self {
            invoke_layers::rate_limit::RateLimitError::Limited(e) => e.may_have_run(),
            invoke_layers::rate_limit::RateLimitError::Inner(e) => e.may_have_run(),
            _ => RunStatus::NotRun,
        }
    }
    fn attempts(&self) -> Option<u32> {
        match self {
            invoke_layers::rate_limit::RateLimitError::Limited(_) => Some(0),
            invoke_layers::rate_limit::RateLimitError::Inner(e) => e.attempts(),
            _ => Some(0),
        }
    }
}

impl<E: ErrorFacts> ErrorFacts for RetryError<E> {
    fn error_type(&self) -> &'static str {
        self.error()
            .map_or("TransportError", ErrorFacts::error_type)
    }
    fn fault(&self) -> Fault {
        self.error().map_or(Fault::Client, ErrorFacts::fault)
    }
    fn may_have_run(&self) -> RunStatus {
        match (self.error(), self.stats()) {
            (Some(e), Some(stats)) => match e.may_have_run() {
                RunStatus::NotRun if stats.earlier_may_have_reached => RunStatus::Unknown,
                other => other,
            },
            _ => RunStatus::Unknown,
        }
    }
    fn attempts(&self) -> Option<u32> {
        self.stats().map(|s| s.attempts)
    }
}

/// Which span a [`LambdaTrace`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One span per call, outermost.
    Operation,
    /// One span per attempt, inside the retry layer.
    Attempt,
}

/// Describes Lambda `Invoke` calls for [`invoke_layers::trace::TraceLayer`].
///
/// ```
/// use invoke_stack::layers::trace::TraceLayer;
/// use invoke_stack::telemetry::LambdaTrace;
///
/// let operation = TraceLayer::new(LambdaTrace::operation("eu-west-1"));
/// let attempt = TraceLayer::new(LambdaTrace::attempt());
/// # let _ = (operation, attempt);
/// ```
#[derive(Debug, Clone)]
pub struct LambdaTrace {
    /// The operation span's region. An attempt span is a child of its operation's span,
    /// which has the region, so it keeps none (and its clones touch no reference count).
    region: Option<std::sync::Arc<str>>,
    scope: Scope,
    log_tail: bool,
    /// The operation is `InvokeWithResponseStream`: the span is named for it, and the
    /// stream records its end in it (bytes, chunks, time to first chunk, how it ended).
    stream: bool,
}

impl LambdaTrace {
    /// The operation span, for calls to `region`.
    pub fn operation(region: impl Into<String>) -> Self {
        Self {
            region: Some(region.into().into()),
            scope: Scope::Operation,
            log_tail: false,
            stream: false,
        }
    }
    /// The operation span of `InvokeWithResponseStream` calls to `region`
    /// (`Lambda.InvokeWithResponseStream`), with the stream's fields:
    /// `aws.lambda.stream.bytes`, `aws.lambda.stream.chunks`,
    /// `aws.lambda.stream.first_chunk_ms`, `aws.lambda.stream.end`.
    pub fn stream_operation(region: impl Into<String>) -> Self {
        Self {
            stream: true,
            ..Self::operation(region)
        }
    }
    /// The attempt span (a child of the operation span, which names the region).
    pub fn attempt() -> Self {
        Self {
            region: None,
            scope: Scope::Attempt,
            log_tail: false,
            stream: false,
        }
    }

    /// Also traces the function's log tail (`X-Amz-Log-Result`, decoded, of calls made
    /// with `LogType::Tail`): one DEBUG event per line, target
    /// `invoke_stack::function_log`, in the attempt span. Default off: the log holds
    /// whatever the function printed, its secrets included, so it goes to your logs only
    /// when you say so. Lines are capped and escaped ([`Untrusted`]). Only the attempt
    /// span has it.
    ///
    /// With the client, replace the attempt trace of the named stack:
    ///
    /// ```
    /// use invoke_stack::layers::trace::TraceLayer;
    /// use invoke_stack::telemetry::LambdaTrace;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = invoke_stack::InvokeClient::builder()
    ///     .region("us-east-1")
    ///     .named_stack(|stack| {
    ///         let _ = stack.replace(
    ///             "attempt-trace",
    ///             TraceLayer::new(LambdaTrace::attempt().log_tail(true)),
    ///         );
    ///     })
    ///     .build()?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn log_tail(mut self, yes: bool) -> Self {
        self.log_tail = yes;
        self
    }
}

/// The function name (decoded path label) and qualifier of an Invoke request.
fn target(uri: &http::Uri) -> (String, Option<String>) {
    let label = uri
        .path()
        .rsplit_once("/functions/")
        .map_or("", |(_, rest)| {
            rest.trim_end_matches("/invocations")
                .trim_end_matches("/response-streaming-invocations")
        });
    let name = percent_encoding::percent_decode_str(label)
        .decode_utf8_lossy()
        .into_owned();
    let qualifier = uri.query().and_then(|q| {
        q.split('&').find_map(|kv| {
            kv.strip_prefix("Qualifier=").map(|v| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    });
    (name, qualifier)
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A response header as text, present whatever its bytes (a function error must not
/// vanish from the trace because its value is not UTF-8), capped and escaped.
fn response_header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    h.get(name).map(|v| Untrusted::bytes(v.as_bytes()).to_cow())
}

fn run_status(r: RunStatus) -> &'static str {
    match r {
        RunStatus::NotRun => "not_run",
        RunStatus::Ran => "ran",
        RunStatus::Unknown => "unknown",
    }
}

fn fault_name(f: Fault) -> &'static str {
    match f {
        Fault::Client => "client",
        Fault::Server => "server",
    }
}

impl LambdaTrace {
    /// Records the request's fields in an operation span.
    fn record_request(&self, span: &Span, req: &http::Request<Bytes>) {
        let (name, qualifier) = target(req.uri());
        span.record("faas.invoked_name", name.as_str());
        if let Some(region) = &self.region {
            span.record("faas.invoked_region", &**region);
        }
        span.record("server.address", req.uri().host().unwrap_or_default());
        span.record(
            "aws.lambda.invocation_type",
            header(req.headers(), "x-amz-invocation-type").unwrap_or("RequestResponse"),
        );
        if let Some(q) = &qualifier {
            span.record("aws.lambda.qualifier", q.as_str());
        }
        span.record("aws.lambda.payload_size", req.body().len());
    }

    /// Records what an error response says (code, fault, throttle reason).
    fn record_api_error<RB: BufferedBody>(
        span: &Span,
        resp: &http::Response<RB>,
    ) -> Option<String> {
        let api = codec::api_error(resp)?;
        span.record("error.type", api.code());
        span.record("otel.status_code", "ERROR");
        span.record(
            "otel.status_description",
            if api.is_throttle() {
                format!("throttled: {} ({})", api.code(), api.status())
            } else {
                format!(
                    "{} ({}, {} fault)",
                    api.code(),
                    api.status(),
                    fault_name(api.fault())
                )
            },
        );
        span.record("aws.lambda.fault", fault_name(api.fault()));
        span.record("aws.lambda.may_have_run", run_status(api.may_have_run()));
        if let Some(reason) = api.throttle_reason() {
            span.record("aws.lambda.throttle_reason", reason.as_str());
        }
        Some(api.code().to_owned())
    }
}

impl<E: ErrorFacts + std::fmt::Display, RB: BufferedBody> Describe<Bytes, RB, E> for LambdaTrace {
    fn make_span(&self, req: &http::Request<Bytes>) -> Span {
        // Fields are filled only for a span a subscriber wants: a filtered-out span costs
        // a level check, not a decoded path.
        match self.scope {
            Scope::Operation if self.stream => {
                let span = tracing::info_span!(
                    "Lambda.InvokeWithResponseStream",
                    rpc.system = "aws-api",
                    rpc.service = "Lambda",
                    rpc.method = "InvokeWithResponseStream",
                    faas.invoked_name = Empty,
                    faas.invoked_provider = "aws",
                    faas.invoked_region = Empty,
                    server.address = Empty,
                    aws.lambda.invocation_type = Empty,
                    aws.lambda.qualifier = Empty,
                    aws.lambda.payload_size = Empty,
                    aws.request_id = Empty,
                    http.response.status_code = Empty,
                    error.type = Empty,
                    aws.lambda.fault = Empty,
                    aws.lambda.throttle_reason = Empty,
                    aws.lambda.may_have_run = Empty,
                    aws.lambda.executed_version = Empty,
                    aws.lambda.function_error = Empty,
                    aws.lambda.attempts = Empty,
                    aws.lambda.stream.bytes = Empty,
                    aws.lambda.stream.chunks = Empty,
                    aws.lambda.stream.first_chunk_ms = Empty,
                    aws.lambda.stream.end = Empty,
                    otel.kind = "client",
                    otel.status_code = Empty,
                    otel.status_description = Empty,
                );
                if !span.is_disabled() {
                    self.record_request(&span, req);
                }
                span
            }
            Scope::Operation => {
                let span = tracing::info_span!(
                    "Lambda.Invoke",
                    rpc.system = "aws-api",
                    rpc.service = "Lambda",
                    rpc.method = "Invoke",
                    faas.invoked_name = Empty,
                    faas.invoked_provider = "aws",
                    faas.invoked_region = Empty,
                    server.address = Empty,
                    aws.lambda.invocation_type = Empty,
                    aws.lambda.qualifier = Empty,
                    aws.lambda.payload_size = Empty,
                    aws.request_id = Empty,
                    http.response.status_code = Empty,
                    error.type = Empty,
                    aws.lambda.fault = Empty,
                    aws.lambda.throttle_reason = Empty,
                    aws.lambda.may_have_run = Empty,
                    aws.lambda.executed_version = Empty,
                    aws.lambda.function_error = Empty,
                    aws.lambda.response_size = Empty,
                    aws.lambda.attempts = Empty,
                    otel.kind = "client",
                    otel.status_code = Empty,
                    otel.status_description = Empty,
                );
                if !span.is_disabled() {
                    self.record_request(&span, req);
                }
                span
            }
            Scope::Attempt => {
                let span = tracing::debug_span!(
                    "Lambda.Invoke.attempt",
                    aws.lambda.attempt = Empty,
                    aws.request_id = Empty,
                    http.response.status_code = Empty,
                    error.type = Empty,
                    aws.lambda.fault = Empty,
                    aws.lambda.throttle_reason = Empty,
                    aws.lambda.may_have_run = Empty,
                    otel.kind = "client",
                    otel.status_code = Empty,
                    otel.status_description = Empty,
                );
                if !span.is_disabled() {
                    let attempt = req.extensions().get::<AttemptNumber>().map_or(1, |a| a.0);
                    span.record("aws.lambda.attempt", attempt);
                    span.in_scope(|| trace_headers("request", req.headers()));
                }
                span
            }
        }
    }

    fn on_response(&self, span: &Span, resp: &http::Response<RB>, elapsed: Duration) {
        if span.is_disabled() {
            return;
        }
        let h = resp.headers();
        let status = resp.status().as_u16();
        span.record("http.response.status_code", status);
        if let Some(id) = response_header(h, "x-amzn-requestid") {
            span.record("aws.request_id", &*id);
        }
        let error = if status >= 300 {
            Self::record_api_error(span, resp)
        } else {
            None
        };
        let elapsed_ms = elapsed.as_secs_f64() * 1e3;
        match self.scope {
            Scope::Attempt => {
                let _e = span.enter();
                trace_headers("response", h);
                let tail = self
                    .log_tail
                    .then(|| header(h, "x-amz-log-result"))
                    .flatten();
                if let Some(tail) = tail.and_then(|b64| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .ok()
                }) {
                    for line in String::from_utf8_lossy(&tail).lines() {
                        tracing::debug!(target: "invoke_stack::function_log", line = %Untrusted::new(line), "log");
                    }
                }
            }
            Scope::Operation => {
                // No stats: the first attempt succeeded (or there is no retry layer).
                let attempts = Some(
                    resp.extensions()
                        .get::<RetryStats>()
                        .map_or(1, |s| s.attempts),
                );
                if let Some(n) = attempts {
                    span.record("aws.lambda.attempts", n);
                }
                if let Some(v) = response_header(h, "x-amz-executed-version") {
                    span.record("aws.lambda.executed_version", &*v);
                }
                let function_error = response_header(h, "x-amz-function-error");
                if let Some(fe) = &function_error {
                    span.record("aws.lambda.function_error", &**fe);
                    // The call succeeded, the function failed: a failure for the caller.
                    // `error.type` stays empty: it names API errors (the call's own), and
                    // `aws.lambda.function_error` says which kind this is.
                    span.record("otel.status_code", "ERROR");
                    span.record("otel.status_description", format!("function error: {fe}"));
                }
                let function_error = function_error.as_deref();
                if self.stream && error.is_none() {
                    // The body is still to come: the stream records how it ends.
                    resp.body().attach_span(span);
                    tracing::debug!(parent: span, status, elapsed_ms, attempts, "stream started");
                    return;
                }
                if let Some(body) = resp.body().buffered_bytes() {
                    span.record("aws.lambda.response_size", body.len());
                }
                match error {
                    None => {
                        tracing::info!(parent: span, status, elapsed_ms, attempts, function_error, "invoke finished")
                    }
                    Some(code) => {
                        tracing::info!(parent: span, status, elapsed_ms, attempts, error.type = %code, "invoke failed")
                    }
                }
            }
        }
    }

    fn on_error(&self, span: &Span, err: &E, elapsed: Duration) {
        if span.is_disabled() {
            return;
        }
        span.record("error.type", err.error_type());
        span.record("otel.status_code", "ERROR");
        span.record(
            "otel.status_description",
            Untrusted::new(&format!("{}: {err}", err.error_type())).to_string(),
        );
        span.record("aws.lambda.fault", fault_name(err.fault()));
        span.record("aws.lambda.may_have_run", run_status(err.may_have_run()));
        if self.scope == Scope::Operation {
            let attempts = err.attempts();
            if let Some(n) = attempts {
                span.record("aws.lambda.attempts", n);
            }
            tracing::info!(
                parent: span,
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                attempts,
                error.type = err.error_type(),
                error = %err,
                "invoke failed"
            );
        } else {
            tracing::debug!(parent: span, error = %err, "attempt failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tower::{Layer as _, ServiceExt as _};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::error::InvokeError;
    use invoke_layers::trace::TraceLayer;

    /// Every field of every span and event, as `name=value` lines.
    #[derive(Clone, Default)]
    struct Text(Arc<Mutex<String>>);

    struct Visit<'a>(&'a mut String);
    impl tracing::field::Visit for Visit<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            let _ = writeln!(self.0, "{}={value:?}", field.name());
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            let _ = writeln!(self.0, "{}={value}", field.name());
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Text {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            attrs.record(&mut Visit(&mut self.0.lock().unwrap()));
        }
        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            values.record(&mut Visit(&mut self.0.lock().unwrap()));
        }
        fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            e.record(&mut Visit(&mut self.0.lock().unwrap()));
        }
    }

    /// What the operation and attempt spans record of one response, at `level`.
    async fn traced(
        trace: fn() -> LambdaTrace,
        resp: http::Response<Bytes>,
        level: tracing::Level,
    ) -> String {
        let text = Text::default();
        let subscriber = tracing_subscriber::registry()
            .with(text.clone())
            .with(tracing_subscriber::filter::LevelFilter::from_level(level));
        let _g = tracing::subscriber::set_default(subscriber);
        let svc =
            TraceLayer::new(trace()).layer(tower::service_fn(move |_: http::Request<Bytes>| {
                let resp = resp.clone();
                async move { Ok::<_, InvokeError>(resp) }
            }));
        let req = http::Request::builder()
            .uri("https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations")
            .body(Bytes::new())
            .unwrap();
        svc.oneshot(req).await.unwrap();
        let out = text.0.lock().unwrap().clone();
        out
    }

    #[tokio::test]
    async fn response_headers_that_are_not_utf8_are_recorded_escaped() {
        let resp = http::Response::builder()
            .header(
                "x-amz-function-error",
                http::HeaderValue::from_bytes(b"Unhandled\xff").unwrap(),
            )
            .header(
                "x-amzn-requestid",
                http::HeaderValue::from_bytes(b"rid\xfe").unwrap(),
            )
            .header(
                "x-amz-executed-version",
                http::HeaderValue::from_bytes(b"1\x80").unwrap(),
            )
            .body(Bytes::new())
            .unwrap();
        let text = traced(
            || LambdaTrace::operation("us-east-1"),
            resp,
            tracing::Level::INFO,
        )
        .await;
        for line in [
            r"aws.lambda.function_error=Unhandled\xff",
            r"aws.request_id=rid\xfe",
            r"aws.lambda.executed_version=1\x80",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // The outcome event carries the function error too.
        assert!(
            text.lines().any(|l| l == r"function_error=Unhandled\xff"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn log_tail_is_traced_only_when_asked_for() {
        let secret = "password=hunter2";
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(format!("START\n{secret}\n\x1b[2Jcleared\nEND\n"));
        let resp = || {
            http::Response::builder()
                .header("x-amz-log-result", b64.as_str())
                .body(Bytes::new())
                .unwrap()
        };
        for level in [tracing::Level::DEBUG, tracing::Level::TRACE] {
            let text = traced(LambdaTrace::attempt, resp(), level).await;
            assert!(!text.contains(secret), "{level}: {text}");
            assert!(!text.contains(&b64), "{level}: {text}");
            assert!(!text.contains("START"), "{level}: {text}");
        }
        let text = traced(
            || LambdaTrace::attempt().log_tail(true),
            resp(),
            tracing::Level::DEBUG,
        )
        .await;
        let lines: Vec<_> = text
            .lines()
            .filter_map(|l| l.strip_prefix("line="))
            .collect();
        assert_eq!(lines, ["START", secret, r"\u{1b}[2Jcleared", "END"]);
        // Not at INFO, even when asked for.
        let text = traced(
            || LambdaTrace::attempt().log_tail(true),
            resp(),
            tracing::Level::INFO,
        )
        .await;
        assert!(!text.contains(secret), "{text}");
    }
}
