use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::classify::ClassifyCircuit;
use super::error::{CircuitBreakerError, CircuitOpen};
use super::layer::Shared;
use super::state::{Circuit, Ticket};

/// A call let through: counted when it ends; a probe dropped before it ends frees its
/// slot.
pub(crate) struct Admission<C, K> {
    shared: Arc<Shared<C, K>>,
    circuit: Arc<Circuit>,
    ticket: Ticket,
    done: bool,
}

impl<C, K> Admission<C, K> {
    pub(crate) fn new(shared: Arc<Shared<C, K>>, circuit: Arc<Circuit>, ticket: Ticket) -> Self {
        Self {
            shared,
            circuit,
            ticket,
            done: false,
        }
    }

    fn record<T, E>(&mut self, result: &Result<T, E>)
    where
        C: ClassifyCircuit<T, E>,
    {
        self.done = true;
        let outcome = self.shared.classifier.outcome(result);
        self.shared
            .breaker
            .record(&self.circuit, self.ticket, outcome);
    }
}

impl<C, K> Drop for Admission<C, K> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.breaker.release(&self.circuit, self.ticket);
        }
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](super::CircuitBreaker): the inner call,
    /// counted when it ends (or, refused, the error at once).
    pub struct ResponseFuture<F, C, K> {
        #[pin]
        state: State<F, C, K>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C, K> {
        // Not guarded: the layer is off, or the request has no key.
        Direct { #[pin] fut: F },
        Guarded { #[pin] fut: F, admission: Admission<C, K> },
        // Boxed: the refusal is the rare path, and every layer outside moves this future.
        Refused { error: Option<Box<CircuitOpen>> },
        // The result was returned.
        Done,
    }
}

impl<F, C, K> ResponseFuture<F, C, K> {
    pub(crate) fn direct(fut: F) -> Self {
        Self {
            state: State::Direct { fut },
        }
    }

    pub(crate) fn guarded(fut: F, admission: Admission<C, K>) -> Self {
        Self {
            state: State::Guarded { fut, admission },
        }
    }

    pub(crate) fn refused(error: Box<CircuitOpen>) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<F, C, K, T, E> Future for ResponseFuture<F, C, K>
where
    F: Future<Output = Result<T, E>>,
    C: ClassifyCircuit<T, E>,
{
    type Output = Result<T, CircuitBreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let output = match state.as_mut().project() {
            StateProj::Direct { fut } => ready!(fut.poll(cx)).map_err(CircuitBreakerError::Inner),
            StateProj::Guarded { fut, admission } => {
                let result = ready!(fut.poll(cx));
                if !admission.done {
                    admission.record(&result);
                }
                result.map_err(CircuitBreakerError::Inner)
            }
            StateProj::Refused { error } => match error.take() {
                Some(e) => Err(CircuitBreakerError::Open(*e)),
                None => Err(CircuitBreakerError::PolledAfterCompletion(
                    crate::PolledAfterCompletion,
                )),
            },
            // Polled after completion: say so, as the crate's other futures do.
            StateProj::Done => {
                return Poll::Ready(Err(CircuitBreakerError::PolledAfterCompletion(
                    crate::PolledAfterCompletion,
                )))
            }
        };
        state.set(State::Done);
        Poll::Ready(output)
    }
}
