use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::credentials::CredentialsFuture;
use super::error::SigV4Error;
use super::layer::Shared;

pin_project! {
    /// Response future of [`SigV4`](super::SigV4).
    pub struct ResponseFuture<S: Service<http::Request<B>>, B> {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<http::Request<B>>, B> {
        Failed { error: Option<SigV4Error<S::Error>> },
        // Boxed: credentials that need I/O are the rare case, and every layer outside
        // moves this future whole, so its size is paid on every call.
        Resolving {
            #[pin]
            creds: CredentialsFuture,
            pending: Option<Box<(S, http::Request<B>)>>,
            shared: Arc<Shared>,
        },
        Called { #[pin] fut: S::Future, shared: Arc<Shared> },
    }
}

impl<S: Service<http::Request<B>>, B> ResponseFuture<S, B> {
    pub(crate) fn called(fut: S::Future, shared: Arc<Shared>) -> Self {
        Self {
            state: State::Called { fut, shared },
        }
    }
    pub(crate) fn failed(error: SigV4Error<S::Error>) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
    pub(crate) fn resolving(
        creds: CredentialsFuture,
        service: S,
        req: http::Request<B>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            state: State::Resolving {
                creds,
                pending: Some(Box::new((service, req))),
                shared,
            },
        }
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    B: AsRef<[u8]>,
    RB: 'static,
{
    type Output = Result<S::Response, SigV4Error<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or_else(|| {
                        SigV4Error::Signing(super::SigningError::new(
                            "future polled after completion",
                        ))
                    })));
                }
                StateProj::Resolving {
                    creds,
                    pending,
                    shared,
                } => {
                    let creds = ready!(creds.poll(cx));
                    let Some((mut service, mut req)) = pending.take().map(|p| *p) else {
                        return Poll::Ready(Err(SigV4Error::Signing(super::SigningError::new(
                            "future polled after completion",
                        ))));
                    };
                    let next = match creds {
                        Err(e) => State::Failed {
                            error: Some(SigV4Error::Credentials(e)),
                        },
                        Ok(c) => match super::sign::sign_request(
                            &mut req,
                            &c,
                            &shared.config,
                            shared.signing_time(),
                        ) {
                            // `service` was ready when it was taken in `call`.
                            Ok(()) => State::Called {
                                fut: service.call(req),
                                shared: Arc::clone(shared),
                            },
                            Err(e) => State::Failed {
                                error: Some(SigV4Error::Signing(e)),
                            },
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Called { fut, shared } => {
                    let mut result = ready!(fut.poll(cx));
                    if let Ok(resp) = &mut result {
                        shared.observe(resp);
                    }
                    // Done: the inner future is never polled again; a later poll gets
                    // the "polled after completion" error.
                    this.state.set(State::Failed { error: None });
                    return Poll::Ready(result.map_err(SigV4Error::Inner));
                }
            }
        }
    }
}
