//! Connector wrappers: one timer over the whole connect (DNS, TCP, TLS).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use invoke_layers::timeout::{Elapsed, Timer};

/// Errors of connectors, as hyper-util takes them.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Fails a connection attempt that takes longer than `timeout`, whatever it is waiting
/// for: the DNS lookup, the TCP connect or the TLS handshake. The error is an
/// [`Elapsed`] of [`Timer::Connect`]; the request was not sent.
#[derive(Clone, Debug)]
pub(crate) struct ConnectTimeout<C> {
    inner: C,
    timeout: Duration,
}

impl<C> ConnectTimeout<C> {
    pub(crate) fn new(inner: C, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<C> tower_service::Service<http::Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<http::Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        // Once per new connection, not per request: a box here costs nothing measurable.
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(Box::new(Elapsed::new(Timer::Connect, timeout, false)) as BoxError),
            }
        })
    }
}
