//! [`InvokeFuture`], and the client as a `tower::Service`.

use super::*;

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
pub(super) type MetricsSlot = Option<crate::metrics::CallMetrics>;
#[cfg(not(feature = "metrics"))]
pub(super) type MetricsSlot = ();

pin_project_lite::pin_project! {
    #[project = CallProj]
    pub(super) enum CallState {
        // A result known before the stack runs (an encoding error), or none once the
        // result has been returned.
        Ready { result: Option<Result<InvokeResponse, InvokeError>> },
        Static { #[pin] call: tower::util::Oneshot<Stack, http::Request<bytes::Bytes>> },
        Named { #[pin] call: tower::util::Oneshot<BoxService, http::Request<bytes::Bytes>> },
        Boxed { fut: Pin<Box<dyn Future<Output = Result<InvokeResponse, InvokeError>> + Send>> },
    }
}

impl InvokeFuture {
    pub(super) fn new(state: CallState, metrics: MetricsSlot) -> Self {
        Self { state, metrics }
    }

    pub(super) fn ready(result: Result<InvokeResponse, InvokeError>) -> Self {
        Self {
            state: CallState::Ready {
                result: Some(result),
            },
            metrics: MetricsSlot::default(),
        }
    }

    pub(super) fn boxed(
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
