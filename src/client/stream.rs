//! The streaming variant of the client's stack and [`InvokeClient::invoke_stream`].

use std::future::Future;

use tower::ServiceExt;

use invoke_layers::circuit_breaker::{CircuitBreaker, ExtensionKey as CircuitExtensionKey};
use invoke_layers::rate_limit::{ExtensionKey, Feedback, RateLimit};
use invoke_layers::retry::{Retry, RetryStats};
use invoke_layers::sigv4::SigV4;
use invoke_layers::timeout::{AttemptTimeout, DeadlineService, Timeout};
use invoke_layers::trace::Trace;

use super::InvokeClient;
use crate::classify::LambdaClassifier;
use crate::codec::{self, BufferedBody};
use crate::error::{InvokeError, TransportError, TransportErrorKind};
use crate::model::InvocationType;
use crate::stream::{InvokeStreamRequest, InvokeStreamResponse, StreamConfig};
use crate::telemetry::LambdaTrace;
use crate::transport::StreamingTransport;

/// The same layers, in the same order, as the client's static stack, over the streaming
/// transport: the response body is read by the caller, after the stack's future is done.
pub(super) type StreamStack = Trace<
    CircuitBreaker<
        DeadlineService<
            RateLimit<
                Retry<
                    Trace<
                        Feedback<
                            Timeout<SigV4<super::IdentityHeaders<StreamingTransport>>>,
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

impl InvokeClient {
    /// Invokes a function with `InvokeWithResponseStream`; see [`crate::stream`].
    ///
    /// Resolves when the response headers have arrived: then the executed version and
    /// the function's content type are known, and the chunks are read from the
    /// [`InvokeStreamResponse`] as they arrive. Failures before the headers are
    /// [`InvokeError`]s, retried as for [`invoke`](Self::invoke); failures after them
    /// are [`StreamError`](crate::stream::StreamError)s of the stream, never retried.
    ///
    /// Timers: the attempt timeout (the function's maximum duration plus the sync
    /// margin, as for a synchronous `invoke`, or [`StreamConfig::header_timeout`]) is
    /// the time allowed to the headers; the
    /// idle timeout between bytes is [`StreamConfig::idle_timeout`], by default the same
    /// duration (a function may be silent for as long as it runs); the operation
    /// deadline, if set, covers the stream too. Set them with
    /// [`InvokeClientBuilder::stream_config`](super::InvokeClientBuilder::stream_config).
    ///
    /// The stream always goes through the static composition of the client's layers:
    /// a [named stack](super::InvokeClientBuilder::named_stack)'s changes and an
    /// [inner service](super::InvokeClientBuilder::inner_service) apply to `invoke` only.
    ///
    /// The returned future is `Send` and `'static`.
    pub fn invoke_stream(
        &self,
        req: InvokeStreamRequest,
    ) -> impl Future<Output = Result<InvokeStreamResponse, InvokeError>> + Send + 'static {
        let prepared = self.prepare_stream(&req);
        async move {
            let (call, config) = prepared?;
            let resp = call.await.map_err(InvokeError::from)?;
            let stats = resp.extensions().get::<RetryStats>().copied();
            let attempts = stats.map_or(1, |s| s.attempts);
            if resp.status().is_success() {
                return Ok(InvokeStreamResponse::new(resp, config, attempts));
            }
            let (parts, body) = resp.into_parts();
            let data = body.buffered_bytes().cloned().unwrap_or_default();
            let err = match codec::decode_parts(parts.status.as_u16(), &parts.headers, data) {
                Err(api) => InvokeError::from(api),
                // Not an error status after all: only 2xx are streams.
                Ok(_) => TransportError::new(
                    TransportErrorKind::ResponseBody,
                    true,
                    format!("unexpected status {}", parts.status),
                    None,
                )
                .into(),
            };
            Err(match stats {
                Some(s) => err.with_retry_stats(s),
                None => err,
            })
        }
    }

    #[allow(clippy::type_complexity, clippy::result_large_err)]
    fn prepare_stream(
        &self,
        req: &InvokeStreamRequest,
    ) -> Result<
        (
            tower::util::Oneshot<StreamStack, http::Request<bytes::Bytes>>,
            StreamConfig,
        ),
        InvokeError,
    > {
        let mut http = req.encode(&self.inner.endpoint).map_err(|e| {
            InvokeError::from(TransportError::new(
                TransportErrorKind::InvalidRequest,
                false,
                e.to_string(),
                None,
            ))
        })?;
        if self.inner.custom_inner {
            // Tests give `inner_service` a double: a stream call must not go around it to
            // the real endpoint, with real credentials.
            return Err(TransportError::new(
                TransportErrorKind::InvalidRequest,
                false,
                "invoke_stream does not go through a custom inner service \
                 (InvokeClientBuilder::inner_service): it would reach the real endpoint"
                    .to_owned(),
                None,
            )
            .into());
        }
        let inner = req.request();
        inner.options().validate()?;
        self.add_extensions(http.extensions_mut(), inner);
        let mut config = self.inner.stream_config;
        if let Some(t) = config.header_timeout {
            http.extensions_mut().insert(AttemptTimeout(t));
        }
        if config.idle_timeout.is_none() {
            let max = self
                .inner
                .functions
                .get(inner.function_name().name())
                .and_then(|f| f.max_duration);
            config.idle_timeout = Some(self.inner.timeouts.sync_attempt(max));
        }
        // `DryRun` has no stream: its attempt timeout is the short one, as for `invoke`.
        debug_assert!(inner.invocation_type() != InvocationType::Event);
        Ok((self.inner.stream.clone().oneshot(http), config))
    }
}
