//! A circuit breaker per function: when a function is broken in a way retries cannot
//! fix (its KMS key is disabled, its runtime is invalid, its subnet is out of addresses,
//! it fails every call, Lambda keeps answering 5xx), calls to it fail at once with
//! [`CircuitOpen`] instead of each paying a round trip, or three with retries; after a
//! break, one probe call at a time finds out whether it has recovered.
//!
//! Off by default; [`InvokeClientBuilder::circuit_breaker`](crate::InvokeClientBuilder::circuit_breaker)
//! turns it on with a [`CircuitBreakerConfig`] (the generic layer, its states and its
//! defaults are in [`invoke_layers::circuit_breaker`]).
//!
//! ```
//! use invoke_stack::layers::circuit_breaker::{CircuitBreakerConfig, CircuitState};
//! use invoke_stack::InvokeClient;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = InvokeClient::builder()
//!     .region("us-east-1")
//!     .circuit_breaker(CircuitBreakerConfig::default().count_target_errors_of("validator"))
//!     .build()?;
//! let breaker = client.circuit_breaker().expect("enabled");
//! assert_eq!(breaker.state("orders"), CircuitState::Closed);
//! assert_eq!(client.identify()[1], "circuit-breaker (operation)");
//! # Ok(()) }
//! ```
//!
//! # Keys
//!
//! One circuit per function, without qualifier: Lambda's failures of configuration (KMS,
//! VPC, runtime) belong to the function, and its versions and aliases share them more
//! often than not. A function named by its name alone has the key `name`; one named by a
//! partial or full ARN has that ARN without its qualifier
//! (`123456789012:function:orders`, `arn:aws:lambda:eu-west-3:123456789012:function:orders`),
//! so that functions of the same name in other accounts or regions do not share a
//! circuit. Read a state, or list a key in
//! [`target_error_keys`](CircuitBreakerConfig::target_error_keys), by the same form: the
//! two forms of one function have a circuit each.
//!
//! # What counts, for Lambda
//!
//! [`LambdaClassifier`] is the retry layer's classifier; as a [`ClassifyCircuit`] it
//! uses the same classification:
//!
//! | result | outcome |
//! |---|---|
//! | 2xx | success |
//! | 2xx with `X-Amz-Function-Error` | a target error: a success, unless configured for all functions or for this one (a function known to fail deterministically) |
//! | throttles (429, `TooManyRequestsException`, `EC2ThrottledException`, other throttling codes), as responses or errors | not counted: the rate limiter handles them |
//! | 502 configuration errors (`KMS*`, `InvalidRuntime`, `InvalidZipFile`, `InvalidSubnetID`, `InvalidSecurityGroupID`, `EC2AccessDenied`): server faults retries cannot fix | broken: the circuit opens at once |
//! | `EFSMountFailure` and `S3FilesMountFailure` (403): a mount refused for its permissions or configuration, which needs a change to heal | broken |
//! | other server faults: 500 `ServiceException`, the 502s that heal (`ResourceNotReady`, `ENILimitReached`, ...), every unmodeled 5xx (501, 505, a proxy's or CDN's 52x page) | failure |
//! | the function's other configuration errors Lambda sends as 4xx: `EFSMountConnectivity`, `EFSMountTimeout`, `EFSIO`, the `S3Files*` equivalents, `SnapStart*`: the function cannot run, but these can heal | failure |
//! | other 4xx (client faults, clock skew) | not counted, unless configured |
//! | transport errors, attempt timeouts, the operation deadline | failure |
//! | invalid requests | not counted, unless configured (as client faults) |
//! | errors of the caller's side: credentials, signing, the rate limiter's refusals | never counted ([`Outcome::Local`]) |
//!
//! # Where it sits
//!
//! ```text
//! trace -> circuit-breaker -> deadline -> rate-limit -> retry -> attempt layers
//! ```
//!
//! Outside retry: one decision per operation. An open circuit refuses before any attempt
//! or backoff; the final failure of a retried operation counts once; a half-open probe is
//! one operation (with its retries). Outside the rate limiter, so a refused call takes no
//! permit; outside the deadline, so an operation that runs out of time counts as a
//! failure; inside the operation span, so a refusal is traced like any failed call
//! (`error.type = CircuitOpen`). In the named stack it is the slot `circuit-breaker`
//! (operation step, after `trace`), present only when enabled; `identify()` lists it then.
//!
//! # The refusal
//!
//! [`InvokeErrorKind::CircuitOpen`](crate::InvokeErrorKind::CircuitOpen): no attempt
//! was made, so the function did not run ([`RunStatus::NotRun`](crate::error::RunStatus));
//! it is retryable, with [`retry_after`](crate::InvokeError::retry_after) the rest of the
//! break; its fault is the server's (the request needs no change: the function is
//! failing). An `Event` refused this way goes to the dead-letter sink like any final
//! failure.
//!
//! # Testing
//!
//! Give the breaker a [`ManualClock`](invoke_layers::circuit_breaker::ManualClock) with
//! [`CircuitBreakerLayer::builder`]: a break then ends when the test advances the clock,
//! never while the test runs (`tests/circuit_breaker.rs`).

use invoke_layers::circuit_breaker::{CircuitBreakerError, CircuitOpen, ClassifyCircuit, Outcome};
use invoke_layers::retry::{Classification, RetryError, RetryKind};

pub use invoke_layers::circuit_breaker::{
    CircuitBreakerBuilder, CircuitBreakerConfig, CircuitBreakerLayer, CircuitKey, CircuitState,
};

use crate::classify::ClassifyError;
pub use crate::classify::LambdaClassifier;
use crate::codec::{self, BufferedBody};
use crate::error::{ApiErrorKind, Fault, InvokeError, RunStatus};
use crate::telemetry::ErrorFacts;

/// The key of a function's circuit: its name, or, when it is named by a (partial or
/// full) ARN that carries an account, that ARN without its qualifier, so that functions
/// of the same name in other accounts or regions have circuits of their own.
pub(crate) fn circuit_key(function: &crate::model::FunctionName) -> String {
    if function.account().is_none() {
        return function.name().to_owned();
    }
    let raw = function.as_str();
    let end = function
        .qualifier()
        .map_or(raw.len(), |q| raw.len().saturating_sub(q.len() + 1));
    raw.get(..end).unwrap_or(raw).to_owned()
}

fn is_throttle(c: Classification) -> bool {
    matches!(
        c,
        Classification::Retryable {
            kind: RetryKind::Throttling,
            ..
        }
    )
}

fn response_outcome<RB: BufferedBody>(resp: &http::Response<RB>) -> Outcome {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return if resp.headers().contains_key(codec::X_AMZ_FUNCTION_ERROR) {
            Outcome::TargetError
        } else {
            Outcome::Success
        };
    }
    let Some(api) = codec::api_error(resp) else {
        return Outcome::Success;
    };
    if is_throttle(api.classification()) {
        return Outcome::Throttled;
    }
    match api.kind() {
        // Configuration errors Lambda sends as 4xx. A mount refused for its permissions
        // or configuration needs a change to heal, like a disabled KMS key.
        ApiErrorKind::EFSMountFailure | ApiErrorKind::S3FilesMountFailure => {
            return Outcome::Broken
        }
        // Mounts that time out or cannot connect, file system I/O, SnapStart restores:
        // the function cannot run, but these can heal by themselves.
        ApiErrorKind::EFSMountConnectivity
        | ApiErrorKind::EFSMountTimeout
        | ApiErrorKind::EFSIO
        | ApiErrorKind::S3FilesMountConnectivity
        | ApiErrorKind::S3FilesMountTimeout
        | ApiErrorKind::SnapStart
        | ApiErrorKind::SnapStartTimeout
        | ApiErrorKind::SnapStartNotReady
        | ApiErrorKind::SnapStartRegenerationFailure => return Outcome::Failure,
        _ => {}
    }
    if api.fault() == Fault::Client {
        return Outcome::ClientFault;
    }
    // Only a modeled shape that never heals is broken: an unmodeled 5xx (501, 505, a
    // proxy's or CDN's 52x page) proves nothing lasting, so it counts as a failure.
    if api.kind().shape().is_some() && api.classification() == Classification::NotRetryable {
        Outcome::Broken
    } else {
        Outcome::Failure
    }
}

/// Errors of the caller's side that say nothing of the function: the rate limiter's
/// refusals, credentials, signing (their `error.type`, the same through every wrapper).
fn is_local(error_type: &str) -> bool {
    matches!(
        error_type,
        "RateLimited" | "CredentialsError" | "SigningError"
    )
}

impl<E, RB> ClassifyCircuit<http::Response<RB>, E> for LambdaClassifier
where
    E: ClassifyError + ErrorFacts,
    RB: BufferedBody,
{
    fn outcome(&self, result: &Result<http::Response<RB>, E>) -> Outcome {
        match result {
            Ok(resp) => response_outcome(resp),
            Err(e) if is_local(e.error_type()) => Outcome::Local,
            Err(e) if is_throttle(e.classification()) => Outcome::Throttled,
            Err(e) if ErrorFacts::fault(e) == Fault::Client => Outcome::ClientFault,
            Err(_) => Outcome::Failure,
        }
    }
}

/// The last attempt's error says what the operation's failure means.
impl<E: ClassifyError> ClassifyError for RetryError<E> {
    fn classification(&self) -> Classification {
        // A misused future: repeating the call cannot help.
        self.error()
            .map_or(Classification::NotRetryable, ClassifyError::classification)
    }
}

impl<E: ClassifyError> ClassifyError for CircuitBreakerError<E> {
    fn classification(&self) -> Classification {
        match self {
            // A refusal is not retried by a retry layer outside the breaker: the break
            // is longer than any backoff.
            CircuitBreakerError::Open(_) => Classification::NotRetryable,
            CircuitBreakerError::Inner(e) => e.classification(),
            // A misused future: repeating the call cannot help.
            _ => Classification::NotRetryable,
        }
    }
}

impl ErrorFacts for CircuitOpen {
    fn error_type(&self) -> &'static str {
        "CircuitOpen"
    }
    fn fault(&self) -> Fault {
        Fault::Server
    }
    fn may_have_run(&self) -> RunStatus {
        RunStatus::NotRun
    }
    fn attempts(&self) -> Option<u32> {
        Some(0)
    }
}

impl<E: ErrorFacts> ErrorFacts for CircuitBreakerError<E> {
    fn error_type(&self) -> &'static str {
        match self {
            CircuitBreakerError::Open(e) => e.error_type(),
            CircuitBreakerError::Inner(e) => e.error_type(),
            // Polled after completion: reported as the transport's misuse error.
            _ => "TransportError",
        }
    }
    fn fault(&self) -> Fault {
        match self {
            CircuitBreakerError::Open(e) => ErrorFacts::fault(e),
            CircuitBreakerError::Inner(e) => e.fault(),
            _ => Fault::Client,
        }
    }
    fn may_have_run(&self) -> RunStatus {
        match self {
            CircuitBreakerError::Open(e) => ErrorFacts::may_have_run(e),
            CircuitBreakerError::Inner(e) => e.may_have_run(),
            // The call's result was returned before: it may have run.
            _ => RunStatus::Unknown,
        }
    }
    fn attempts(&self) -> Option<u32> {
        match self {
            CircuitBreakerError::Open(e) => ErrorFacts::attempts(e),
            CircuitBreakerError::Inner(e) => e.attempts(),
            _ => None,
        }
    }
}

impl<E: Into<InvokeError>> From<CircuitBreakerError<E>> for InvokeError {
    fn from(e: CircuitBreakerError<E>) -> Self {
        match e {
            CircuitBreakerError::Open(e) => e.into(),
            CircuitBreakerError::Inner(e) => e.into(),
            CircuitBreakerError::PolledAfterCompletion(p) => p.into(),
            _ => invoke_layers::PolledAfterCompletion.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{TransportError, TransportErrorKind};
    use bytes::Bytes;

    type R = Result<http::Response<Bytes>, InvokeError>;

    /// A modeled error as Lambda sends it: the shape's status and code.
    fn api(kind: ApiErrorKind) -> http::Response<Bytes> {
        let shape = kind.shape().expect("a modeled shape");
        http::Response::builder()
            .status(shape.status)
            .header("x-amzn-errortype", shape.code)
            .body(Bytes::from_static(br#"{"Type":"User","message":"m"}"#))
            .unwrap()
    }

    fn outcome(r: &R) -> Outcome {
        LambdaClassifier::default().outcome(r)
    }

    fn of(kind: ApiErrorKind) -> Outcome {
        outcome(&Ok(api(kind)))
    }

    #[test]
    fn lambda_outcomes() {
        let ok = Ok(http::Response::new(Bytes::new()));
        assert_eq!(outcome(&ok), Outcome::Success);
        let fe = Ok(http::Response::builder()
            .header("x-amz-function-error", "Unhandled")
            .body(Bytes::new())
            .unwrap());
        assert_eq!(outcome(&fe), Outcome::TargetError);
        // Even with retries of Unhandled errors on, a function error is the target's.
        assert_eq!(
            LambdaClassifier::default()
                .retry_unhandled(true)
                .outcome(&fe),
            Outcome::TargetError
        );
        let throttle = ApiErrorKind::TooManyRequests {
            reason: None,
            retry_after: None,
        };
        assert_eq!(of(throttle), Outcome::Throttled);
        assert_eq!(of(ApiErrorKind::EC2Throttled), Outcome::Throttled);
        for broken in [
            ApiErrorKind::KMSDisabled,
            ApiErrorKind::KMSAccessDenied,
            ApiErrorKind::InvalidRuntime,
            ApiErrorKind::InvalidZipFile,
            ApiErrorKind::InvalidSubnetID,
            ApiErrorKind::EC2AccessDenied,
        ] {
            assert_eq!(of(broken.clone()), Outcome::Broken, "{broken:?}");
        }
        for failure in [
            ApiErrorKind::Service,
            ApiErrorKind::ResourceNotReady,
            ApiErrorKind::SubnetIPAddressLimitReached,
            ApiErrorKind::ENILimitReached,
        ] {
            assert_eq!(of(failure.clone()), Outcome::Failure, "{failure:?}");
        }
        let gateway = Ok(http::Response::builder()
            .status(503)
            .body(Bytes::from_static(b"<html>503</html>"))
            .unwrap());
        assert_eq!(outcome(&gateway), Outcome::Failure);
        for client in [
            ApiErrorKind::ResourceNotFound,
            ApiErrorKind::InvalidRequestContent,
            ApiErrorKind::RequestTooLarge,
        ] {
            assert_eq!(of(client.clone()), Outcome::ClientFault, "{client:?}");
        }

        let reset: R =
            Err(TransportError::new(TransportErrorKind::Exchange, true, "reset", None).into());
        assert_eq!(outcome(&reset), Outcome::Failure);
        let refused: R =
            Err(TransportError::new(TransportErrorKind::Connect, false, "refused", None).into());
        assert_eq!(outcome(&refused), Outcome::Failure);
        let invalid: R = Err(TransportError::new(
            TransportErrorKind::InvalidRequest,
            false,
            "http to a remote",
            None,
        )
        .into());
        assert_eq!(outcome(&invalid), Outcome::ClientFault);
        let limited: R = Err(invoke_layers::rate_limit::RateLimited::new(
            Some("f".into()),
            invoke_layers::rate_limit::LimitKind::Rate,
            None,
        )
        .into());
        assert_eq!(outcome(&limited), Outcome::Local);
    }

    /// Issue 23, item 6a: only modeled shapes that never heal are broken; any other 5xx
    /// (an unmodeled 501, 505, a proxy's or CDN's 52x page) is a failure.
    #[test]
    fn only_modeled_shapes_that_never_heal_are_broken() {
        for status in [501, 505, 520, 521, 522, 599] {
            let html = Ok(http::Response::builder()
                .status(status)
                .body(Bytes::from_static(b"<html>bad gateway</html>"))
                .unwrap());
            assert_eq!(outcome(&html), Outcome::Failure, "{status}");
            let json = Ok(http::Response::builder()
                .status(status)
                .header("x-amzn-errortype", "SomethingNewException")
                .body(Bytes::from_static(br#"{"message":"m"}"#))
                .unwrap());
            assert_eq!(outcome(&json), Outcome::Failure, "{status} with a code");
        }
        for broken in [
            ApiErrorKind::KMSInvalidState,
            ApiErrorKind::KMSNotFound,
            ApiErrorKind::InvalidSecurityGroupID,
        ] {
            assert_eq!(of(broken.clone()), Outcome::Broken, "{broken:?}");
        }
    }

    /// Issue 23, item 6b: the configuration errors Lambda returns as 4xx count: a mount
    /// refused for permissions never heals by itself (broken); mount timeouts, file
    /// system I/O and SnapStart restores can (failures).
    #[test]
    fn configuration_errors_sent_as_4xx_count() {
        for broken in [
            ApiErrorKind::EFSMountFailure,
            ApiErrorKind::S3FilesMountFailure,
        ] {
            assert_eq!(of(broken.clone()), Outcome::Broken, "{broken:?}");
        }
        for failure in [
            ApiErrorKind::EFSMountConnectivity,
            ApiErrorKind::EFSMountTimeout,
            ApiErrorKind::EFSIO,
            ApiErrorKind::S3FilesMountConnectivity,
            ApiErrorKind::S3FilesMountTimeout,
            ApiErrorKind::SnapStart,
            ApiErrorKind::SnapStartTimeout,
            ApiErrorKind::SnapStartNotReady,
            ApiErrorKind::SnapStartRegenerationFailure,
        ] {
            assert_eq!(of(failure.clone()), Outcome::Failure, "{failure:?}");
        }
    }

    /// Issue 23, item 6c: an error that is a throttle is one even when its fault is the
    /// client's; local errors never count, whatever the configuration.
    #[test]
    fn throttles_before_client_faults_and_local_errors_never_count() {
        let throttle: R = Err(crate::error::ApiError::new(
            ApiErrorKind::TooManyRequests {
                reason: None,
                retry_after: None,
            },
            429,
            None,
        )
        .into());
        assert_eq!(outcome(&throttle), Outcome::Throttled);
        let limited: R = Err(invoke_layers::rate_limit::RateLimited::new(
            Some("f".into()),
            invoke_layers::rate_limit::LimitKind::Concurrency,
            None,
        )
        .into());
        assert_eq!(outcome(&limited), Outcome::Local);
        let signing: R = Err(invoke_layers::sigv4::SigningError::new("bad header").into());
        assert_eq!(outcome(&signing), Outcome::Local);
        let credentials: R = Err(invoke_layers::sigv4::CredentialsError::new(
            "environment",
            invoke_layers::sigv4::CredentialsErrorKind::NotLoaded,
            "not set",
        )
        .into());
        assert_eq!(outcome(&credentials), Outcome::Local);
    }

    /// Issue 23, item 8: the breaker's "polled after completion" maps like the crate's
    /// other ones.
    #[test]
    fn polled_after_completion_maps_to_the_misuse_error() {
        let e: CircuitBreakerError<InvokeError> =
            CircuitBreakerError::PolledAfterCompletion(invoke_layers::PolledAfterCompletion);
        assert_eq!(e.error_type(), "TransportError");
        assert_eq!(e.classification(), Classification::NotRetryable);
        let e = InvokeError::from(e);
        assert_eq!(e.type_name(), "TransportError");
        assert!(e.to_string().contains("polled after completion"), "{e}");
    }
}
