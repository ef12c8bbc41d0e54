use std::fmt;
use std::time::Duration;

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timer {
    /// Establishing the connection.
    Connect,
    /// One attempt (send and read the whole response).
    Attempt,
    /// The whole operation (all attempts and waits).
    Operation,
}

/// A timer fired before the call completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elapsed {
    timer: Timer,
    waited: Duration,
    request_sent: bool,
    attempts: Option<u32>,
}

impl Elapsed {
    /// Builds the error.
    pub fn new(timer: Timer, waited: Duration, request_sent: bool) -> Self {
        Self {
            timer,
            waited,
            request_sent,
            attempts: None,
        }
    }
    /// The error, with the number of attempts the operation had made when it fired.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = Some(attempts);
        self
    }
    /// Attempts made before the timer fired, when known (an operation deadline that
    /// fired outside a retry layer counts the attempts made inside it).
    pub fn attempts(&self) -> Option<u32> {
        self.attempts
    }
    /// Which timer fired.
    pub fn timer(&self) -> Timer {
        self.timer
    }
    /// How long it waited.
    pub fn waited(&self) -> Duration {
        self.waited
    }
    /// Whether the request may have been sent before the timer fired.
    pub fn request_sent(&self) -> bool {
        self.request_sent
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let which = match self.timer {
            Timer::Connect => "connect",
            Timer::Attempt => "attempt",
            Timer::Operation => "operation",
        };
        write!(
            f,
            "{which} timeout after {:.3}s{}",
            self.waited.as_secs_f64(),
            if self.request_sent {
                " (the request may have been sent)"
            } else {
                " (the request was not sent)"
            }
        )
    }
}

impl std::error::Error for Elapsed {}

/// Error of the timeout services: a timer fired, or the inner service failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TimeoutError<E> {
    /// A timer fired.
    Elapsed(Elapsed),
    /// The inner service failed.
    Inner(E),
    /// The response future was polled after it had completed.
    PolledAfterCompletion(crate::PolledAfterCompletion),
}

impl<E: fmt::Display> fmt::Display for TimeoutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutError::Elapsed(e) => e.fmt(f),
            TimeoutError::Inner(e) => e.fmt(f),
            TimeoutError::PolledAfterCompletion(e) => e.fmt(f),
        }
    }
}

/// `Error` for every inner error that is `Debug + Display`, boxed errors included;
/// see [`BoxError`](crate::BoxError) for the source.
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for TimeoutError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TimeoutError::Elapsed(e) => Some(e),
            TimeoutError::Inner(e) => crate::inner_source(e),
            TimeoutError::PolledAfterCompletion(e) => Some(e),
        }
    }
}
