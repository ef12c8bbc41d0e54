use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// The state of one key's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through; their outcomes are counted.
    Closed,
    /// Calls fail at once, until the break ends.
    Open,
    /// The break has ended: a limited number of probe calls go through; the others fail
    /// at once.
    HalfOpen,
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        })
    }
}

/// A call refused by an open (or half-open and busy) circuit. It never reached the inner
/// service: the request did not leave the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    /// The key whose circuit refused the call.
    pub key: String,
    /// [`Open`](CircuitState::Open), or [`HalfOpen`](CircuitState::HalfOpen) with all
    /// its probes in flight.
    pub state: CircuitState,
    /// When the circuit opened (by the breaker's [`Clock`](super::Clock)): the first
    /// opening of this outage, kept until the circuit closes (a failed probe does not
    /// reset it).
    pub since: Instant,
    /// How long it has been open (or half-open) since then.
    pub open_for: Duration,
    /// When a call may go through again, at the latest: while open, the rest of the
    /// break; while half-open, the rest of the probes' lease
    /// ([`probe_timeout`](super::CircuitBreakerConfig::probe_timeout)), at the end of
    /// which the probes have answered or count as failed (a call may go sooner, as soon
    /// as a probe succeeds). Always `Some` from this layer.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit {} for {} (open for {:.3}s)",
            self.state,
            self.key,
            self.open_for.as_secs_f64()
        )?;
        if self.state == CircuitState::HalfOpen {
            f.write_str("; a probe is in flight")?;
        }
        match self.retry_after {
            Some(d) => write!(f, "; a call may go in {:.3}s", d.as_secs_f64()),
            None => Ok(()),
        }
    }
}

impl std::error::Error for CircuitOpen {}

/// Error of the circuit breaker: refused, or the inner service failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CircuitBreakerError<E> {
    /// Refused by the circuit.
    Open(CircuitOpen),
    /// The inner service failed.
    Inner(E),
    /// The response future was polled again after it returned its result.
    PolledAfterCompletion(crate::PolledAfterCompletion),
}

impl<E: fmt::Display> fmt::Display for CircuitBreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CircuitBreakerError::Open(e) => e.fmt(f),
            CircuitBreakerError::Inner(e) => e.fmt(f),
            CircuitBreakerError::PolledAfterCompletion(e) => e.fmt(f),
        }
    }
}

/// `Error` for every inner error that is `Debug + Display`, boxed errors included;
/// see [`BoxError`](crate::BoxError) for the source.
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for CircuitBreakerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CircuitBreakerError::Open(e) => Some(e),
            CircuitBreakerError::Inner(e) => crate::inner_source(e),
            CircuitBreakerError::PolledAfterCompletion(e) => Some(e),
        }
    }
}
