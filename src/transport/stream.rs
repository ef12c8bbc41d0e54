//! The streaming side of the transport, for `InvokeWithResponseStream`: the same hyper
//! client and connection pool as [`HyperTransport`], answering with the response body
//! unread ([`StreamingBody`]) when the status is 2xx, so the caller reads it as it
//! arrives. Any other status is an error answer: its body is read (up to
//! [`MAX_ERROR_BODY_BYTES`]) so the stack can classify it, as for `Invoke`.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy;
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

use invoke_layers::timeout::{Deadline, SendProgress};

use super::{
    error_chain, polled_after_completion, send_error, CallerScope, HyperTransport, RequestBody,
};
use crate::codec::BufferedBody;
use crate::error::{TransportError, TransportErrorKind};

/// The part of an error answer's body that is read: Lambda's error bodies are a few
/// hundred bytes; a proxy's page beyond this is cut (the status still classifies it).
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The body of a streaming answer: unread for a 2xx, read for an error status.
#[derive(Debug)]
pub struct StreamingBody {
    inner: Inner,
    // The operation span, handed over by the tracing layer when the headers arrive, so
    // that the stream can record how it ended.
    span: OnceLock<tracing::Span>,
}

#[derive(Debug)]
enum Inner {
    Buffered(Bytes),
    Streaming {
        body: Incoming,
        slot: Option<OwnedSemaphorePermit>,
        deadline: Option<Deadline>,
    },
}

/// What a streaming answer's body holds, taken apart by the response type.
#[derive(Debug)]
pub(crate) struct StreamingParts {
    pub(crate) body: Option<Incoming>,
    pub(crate) deadline: Option<Deadline>,
    pub(crate) slot: Option<OwnedSemaphorePermit>,
    pub(crate) span: Option<tracing::Span>,
}

impl StreamingBody {
    /// A body already read (an error answer, or a test double's).
    pub fn buffered(data: Bytes) -> Self {
        Self {
            inner: Inner::Buffered(data),
            span: OnceLock::new(),
        }
    }

    pub(crate) fn into_parts(self) -> StreamingParts {
        let span = self.span.into_inner();
        match self.inner {
            Inner::Buffered(_) => StreamingParts {
                body: None,
                deadline: None,
                slot: None,
                span,
            },
            Inner::Streaming {
                body,
                slot,
                deadline,
            } => StreamingParts {
                body: Some(body),
                deadline,
                slot,
                span,
            },
        }
    }
}

/// The bytes read: an error answer's body; empty for a stream (still to be read). The
/// signing layer reads error answers for clock-skew errors.
impl AsRef<[u8]> for StreamingBody {
    fn as_ref(&self) -> &[u8] {
        match &self.inner {
            Inner::Buffered(b) => b,
            Inner::Streaming { .. } => &[],
        }
    }
}

impl BufferedBody for StreamingBody {
    fn buffered_bytes(&self) -> Option<&Bytes> {
        match &self.inner {
            Inner::Buffered(b) => Some(b),
            Inner::Streaming { .. } => None,
        }
    }

    fn attach_span(&self, span: &tracing::Span) {
        let _ = self.span.set(span.clone());
    }
}

/// [`HyperTransport`] for streaming answers: ready at the response headers for a 2xx
/// (the body unread, [`StreamingBody`]), after the body (read up to
/// [`MAX_ERROR_BODY_BYTES`]) for an error status. Clones share the transport's
/// connection pool.
#[derive(Clone, Debug)]
pub struct StreamingTransport {
    transport: HyperTransport,
}

impl HyperTransport {
    /// The same client, answering with unread bodies for 2xx statuses.
    pub fn streaming(&self) -> StreamingTransport {
        StreamingTransport {
            transport: self.clone(),
        }
    }
}

impl tower_service::Service<http::Request<Bytes>> for StreamingTransport {
    type Response = http::Response<StreamingBody>;
    type Error = TransportError;
    type Future = StreamingFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let t = &self.transport;
        if let Some(err) = t.refuse(req.uri()) {
            return StreamingFuture {
                state: State::Failed { error: Some(err) },
                slot: None,
            };
        }
        let sent = req
            .extensions()
            .get::<SendProgress>()
            .cloned()
            .unwrap_or_default();
        let deadline = req.extensions().get::<Deadline>().copied();
        sent.mark_not_sent();
        let req = req.map(|data| RequestBody {
            data: (!data.is_empty()).then_some(data),
            sent: sent.clone(),
        });
        let slots = t.shared.limits.as_ref().and_then(|l| l.requests(req.uri()));
        let Some(slots) = slots else {
            return StreamingFuture {
                state: State::Sending {
                    fut: t.shared.client.request(req),
                    sent,
                    deadline,
                },
                slot: None,
            };
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => StreamingFuture {
                state: State::Sending {
                    fut: t.shared.client.request(req),
                    sent,
                    deadline,
                },
                slot: Some(slot),
            },
            Err(_) => {
                let shared = t.shared.clone();
                StreamingFuture {
                    state: State::Waiting {
                        fut: Box::pin(async move {
                            let slot = slots.acquire_owned().await.ok();
                            (slot, shared.client.request(req))
                        }),
                        sent,
                        deadline,
                    },
                    slot: None,
                }
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Failed { error: Option<TransportError> },
        Waiting {
            fut: Pin<Box<dyn Future<Output = (Option<OwnedSemaphorePermit>, legacy::ResponseFuture)> + Send>>,
            sent: SendProgress,
            deadline: Option<Deadline>,
        },
        Sending {
            #[pin]
            fut: legacy::ResponseFuture,
            sent: SendProgress,
            deadline: Option<Deadline>,
        },
        ReadingError {
            #[pin]
            body: Incoming,
            parts: Option<http::response::Parts>,
            buf: BytesMut,
        },
    }
}

pin_project! {
    /// Response future of [`StreamingTransport`]: ready at the response headers for a
    /// 2xx, after the (capped) body for an error status.
    pub struct StreamingFuture {
        #[pin]
        state: State,
        slot: Option<OwnedSemaphorePermit>,
    }

    impl PinnedDrop for StreamingFuture {
        fn drop(this: Pin<&mut Self>) {
            // A request still on its way to a connection is dropped here: it was not sent.
            let mut state = this.project().state;
            if matches!(
                state.as_mut().project(),
                StateProj::Sending { .. } | StateProj::Waiting { .. }
            ) {
                let _caller = CallerScope::enter();
                state.set(State::Failed { error: None });
            }
        }
    }
}

impl Future for StreamingFuture {
    type Output = Result<http::Response<StreamingBody>, TransportError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Failed { error } => {
                    *this.slot = None;
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| polled_after_completion(false))));
                }
                StateProj::Waiting {
                    fut,
                    sent,
                    deadline,
                } => {
                    let (acquired, fut) = {
                        let _caller = CallerScope::enter();
                        std::task::ready!(fut.as_mut().poll(cx))
                    };
                    *this.slot = acquired;
                    let (sent, deadline) = (sent.clone(), *deadline);
                    this.state.set(State::Sending {
                        fut,
                        sent,
                        deadline,
                    });
                }
                StateProj::Sending {
                    fut,
                    sent,
                    deadline,
                } => {
                    let polled = {
                        let _caller = CallerScope::enter();
                        fut.poll(cx)
                    };
                    let resp = match polled {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(resp)) => resp,
                        Poll::Ready(Err(e)) => {
                            *this.slot = None;
                            return Poll::Ready(Err(send_error(e, sent.may_have_been_sent())));
                        }
                    };
                    let (parts, body) = resp.into_parts();
                    if parts.status.is_success() {
                        let body = StreamingBody {
                            inner: Inner::Streaming {
                                body,
                                slot: this.slot.take(),
                                deadline: *deadline,
                            },
                            span: OnceLock::new(),
                        };
                        let resp = http::Response::from_parts(parts, body);
                        this.state.set(State::Failed { error: None });
                        return Poll::Ready(Ok(resp));
                    }
                    this.state.set(State::ReadingError {
                        body,
                        parts: Some(parts),
                        buf: BytesMut::new(),
                    });
                }
                StateProj::ReadingError {
                    mut body,
                    parts,
                    buf,
                } => loop {
                    let done = match body.as_mut().poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Ok(data) = frame.into_data() {
                                let room = MAX_ERROR_BODY_BYTES.saturating_sub(buf.len());
                                buf.extend_from_slice(&data[..data.len().min(room)]);
                            }
                            // Enough to classify it: the rest is not read.
                            buf.len() >= MAX_ERROR_BODY_BYTES || body.is_end_stream()
                        }
                        Poll::Ready(Some(Err(e))) => {
                            *this.slot = None;
                            return Poll::Ready(Err(TransportError::new(
                                TransportErrorKind::ResponseBody,
                                true,
                                error_chain(&e),
                                Some(Box::new(e)),
                            )));
                        }
                        Poll::Ready(None) => true,
                    };
                    if done {
                        let Some(parts) = parts.take() else {
                            return Poll::Ready(Err(polled_after_completion(true)));
                        };
                        let data = std::mem::take(buf).freeze();
                        *this.slot = None;
                        let mut resp = http::Response::from_parts(
                            parts,
                            StreamingBody::buffered(data.clone()),
                        );
                        // For the SigV4 layer's clock-skew check, which cannot read this
                        // body type; and decoded once for the classifiers and spans.
                        resp.extensions_mut()
                            .insert(invoke_layers::sigv4::ErrorBody(data));
                        crate::codec::keep_decoded_error(&mut resp);
                        return Poll::Ready(Ok(resp));
                    }
                },
            }
        }
    }
}
