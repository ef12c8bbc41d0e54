use crate::classify::{Classification, ClassifyRetry, RetryKind};

/// What one call's result means for the health of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The target answered: counts as a success.
    Success,
    /// A server fault (5xx, a timeout, a connection failure): counts as a failure.
    Failure,
    /// A failure that cannot heal by itself (a configuration error of the target): opens
    /// the circuit at once with [`open_on_broken`](super::CircuitBreakerConfig::open_on_broken),
    /// else counts as a failure.
    Broken,
    /// The target is throttling: counts neither way (the rate limiter handles it). A
    /// throttled probe frees its slot and changes nothing.
    Throttled,
    /// The request was wrong: ignored unless
    /// [`count_client_faults`](super::CircuitBreakerConfig::count_client_faults).
    ClientFault,
    /// The call failed on this side, before it could tell anything of the target (a
    /// local rate limiter's refusal, missing credentials, a signing error): never
    /// counts, whatever the configuration. A probe that ends so frees its slot.
    Local,
    /// The target ran and reported an error of its own (a Lambda function error): a
    /// success unless [`count_target_errors`](super::CircuitBreakerConfig::count_target_errors)
    /// or the key is one of [`target_error_keys`](super::CircuitBreakerConfig::target_error_keys).
    TargetError,
}

/// Classifies the result of one call for the circuit breaker. Implement it to use the
/// layer on any service; [`FromRetry`] derives it from a retry classifier.
///
/// ```
/// use invoke_layers::circuit_breaker::{
///     CircuitBreakerConfig, CircuitBreakerLayer, ClassifyCircuit, Outcome,
/// };
///
/// /// 5xx and errors are failures, 429 is throttling, other 4xx the caller's fault.
/// struct ByStatus;
///
/// impl<B, E> ClassifyCircuit<http::Response<B>, E> for ByStatus {
///     fn outcome(&self, result: &Result<http::Response<B>, E>) -> Outcome {
///         match result.as_ref().map(|r| r.status().as_u16()) {
///             Ok(429) => Outcome::Throttled,
///             Ok(s) if s >= 500 => Outcome::Failure,
///             Ok(s) if s >= 400 => Outcome::ClientFault,
///             Ok(_) => Outcome::Success,
///             Err(_) => Outcome::Failure,
///         }
///     }
/// }
///
/// let breaker = CircuitBreakerLayer::new(ByStatus, CircuitBreakerConfig::default());
/// # let _ = breaker;
/// ```
pub trait ClassifyCircuit<Res, E>: Send + Sync + 'static {
    /// What this result says of the target's health.
    fn outcome(&self, result: &Result<Res, E>) -> Outcome;
}

/// The outcome from a retry classifier ([`ClassifyRetry`]), so the breaker and the retry
/// layer agree on what a result means:
///
/// | classification | outcome |
/// |---|---|
/// | final | success |
/// | retryable, throttle | throttled |
/// | retryable, transient | failure |
/// | not retryable, a response with a 5xx status | failure (an unmodeled 501, 505 or a proxy's 52x proves nothing lasting) |
/// | not retryable, anything else | client fault |
///
/// It never answers [`Broken`](Outcome::Broken): only a classifier that knows which of
/// its target's errors never heal can.
///
/// ```
/// use invoke_layers::circuit_breaker::{ClassifyCircuit, FromRetry, Outcome};
/// use invoke_layers::retry::HttpClassifier;
///
/// let classify = FromRetry(HttpClassifier);
/// let resp = |status: u16| -> Result<_, std::io::Error> {
///     Ok(http::Response::builder().status(status).body(()).unwrap())
/// };
/// assert_eq!(classify.outcome(&resp(200)), Outcome::Success);
/// assert_eq!(classify.outcome(&resp(429)), Outcome::Throttled);
/// assert_eq!(classify.outcome(&resp(503)), Outcome::Failure);
/// assert_eq!(classify.outcome(&resp(501)), Outcome::Failure);
/// assert_eq!(classify.outcome(&resp(404)), Outcome::ClientFault);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct FromRetry<C>(pub C);

impl<C, B, E> ClassifyCircuit<http::Response<B>, E> for FromRetry<C>
where
    C: ClassifyRetry<http::Response<B>, E>,
{
    fn outcome(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        // The retry layer inside already classified the final attempt's response.
        let class = match result {
            Ok(resp) => crate::classify::cached(&self.0, resp),
            Err(_) => None,
        };
        match class.unwrap_or_else(|| self.0.classify(result)) {
            Classification::Final => Outcome::Success,
            Classification::Retryable {
                kind: RetryKind::Throttling,
                ..
            } => Outcome::Throttled,
            Classification::Retryable {
                kind: RetryKind::Transient,
                ..
            } => Outcome::Failure,
            Classification::NotRetryable => match result {
                Ok(resp) if resp.status().is_server_error() => Outcome::Failure,
                _ => Outcome::ClientFault,
            },
        }
    }
}
