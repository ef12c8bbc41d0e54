use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::credentials::ProvideCredentials;
use super::error::SigV4Error;
use super::future::ResponseFuture;
use super::layer::Shared;

/// Service that signs requests before passing them on; made by [`SigV4Layer`](super::SigV4Layer).
#[derive(Clone, Debug)]
pub struct SigV4<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S> SigV4<S> {
    /// Signs the requests of `inner` with credentials from `provider`.
    pub fn new(inner: S, provider: impl ProvideCredentials, config: super::SigningConfig) -> Self {
        tower_layer::Layer::layer(&super::SigV4Layer::new(provider, config), inner)
    }

    /// A [`SigV4Layer`](super::SigV4Layer).
    pub fn layer(
        provider: impl ProvideCredentials,
        config: super::SigningConfig,
    ) -> super::SigV4Layer {
        super::SigV4Layer::new(provider, config)
    }

    inner_service_accessors!();
}

impl<S, B, RB> Service<http::Request<B>> for SigV4<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone,
    B: AsRef<[u8]>,
    RB: 'static,
{
    type Response = S::Response;
    type Error = SigV4Error<S::Error>;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(SigV4Error::Inner)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let mut creds = self.shared.provider.provide_credentials();
        match creds.take_ready() {
            // Cached or static credentials: sign now and call the inner service directly.
            Some(Ok(c)) => match super::sign::sign_request(
                &mut req,
                &c,
                &self.shared.config,
                self.shared.signing_time(),
            ) {
                Ok(()) => ResponseFuture::called(self.inner.call(req), Arc::clone(&self.shared)),
                Err(e) => ResponseFuture::failed(SigV4Error::Signing(e)),
            },
            Some(Err(e)) => ResponseFuture::failed(SigV4Error::Credentials(e)),
            // The provider must do I/O first: keep the service that was made ready for
            // this request, and leave a fresh clone in its place (tower's clone pattern).
            None => {
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::resolving(creds, ready, req, Arc::clone(&self.shared))
            }
        }
    }
}
