//! The Lambda classification for tower-http's middleware ([`ClassifyResponse`] and
//! [`MakeClassifier`] for [`LambdaClassifier`]), so that tower-http's `TraceLayer` (or
//! anything else built on its `classify` module) calls a throttle a failure and a
//! function error a failure, where its default `ServerErrorsAsFailures` calls a 429 and
//! a 200 with `X-Amz-Function-Error` successes.
//!
//! tower-http classifies from the response head, before the body is read, so the class
//! comes from the status, `X-Amzn-ErrorType` and `X-Amz-Function-Error`.
//!
//! ```
//! use tower_http::classify::{ClassifiedResponse, ClassifyResponse};
//! use invoke_stack::classify::{LambdaClassifier, LambdaFailureClass};
//!
//! let throttle = http::Response::builder()
//!     .status(429)
//!     .header("x-amzn-errortype", "TooManyRequestsException")
//!     .body(())
//!     .unwrap();
//! match LambdaClassifier::default().classify_response(&throttle) {
//!     ClassifiedResponse::Ready(Err(LambdaFailureClass::Throttled(e))) => {
//!         assert_eq!(e.code(), "TooManyRequestsException");
//!     }
//!     other => panic!("a throttle is a failure: {:?}", other),
//! }
//! ```

use std::fmt;

use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, MakeClassifier, NeverClassifyEos,
};

use invoke_layers::trace::Untrusted;

use super::LambdaClassifier;
use crate::codec;
use crate::error::{ApiError, ApiErrorKind, Fault};

/// Why tower-http's classification calls a Lambda response (or error) a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LambdaFailureClass {
    /// Lambda (or something in front of it) throttled the call.
    Throttled(ApiError),
    /// Any other error status: the error's code, status and whose fault it is.
    Api(ApiError),
    /// The call succeeded (200) but the function failed: `Handled` or `Unhandled`.
    FunctionError(String),
    /// The service failed without a response (connect, send, timeout).
    Error(String),
}

impl LambdaFailureClass {
    /// Whose fault the failure is.
    pub fn fault(&self) -> Fault {
        match self {
            LambdaFailureClass::Throttled(e) | LambdaFailureClass::Api(e) => e.fault(),
            // The function's own code failed: the caller's concern.
            LambdaFailureClass::FunctionError(_) => Fault::Client,
            LambdaFailureClass::Error(_) => Fault::Server,
        }
    }
}

impl fmt::Display for LambdaFailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LambdaFailureClass::Throttled(e) => {
                write!(f, "throttled: {} ({})", e.code(), e.status())
            }
            LambdaFailureClass::Api(e) => {
                write!(f, "{} ({}, {} fault)", e.code(), e.status(), e.fault())
            }
            LambdaFailureClass::FunctionError(kind) => write!(f, "function error: {kind}"),
            LambdaFailureClass::Error(e) => write!(f, "error: {e}"),
        }
    }
}

impl ClassifyResponse for LambdaClassifier {
    type FailureClass = LambdaFailureClass;
    type ClassifyEos = NeverClassifyEos<LambdaFailureClass>;

    fn classify_response<B>(
        self,
        res: &http::Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        let status = res.status().as_u16();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        };
        if (200..300).contains(&status) {
            return ClassifiedResponse::Ready(match header("x-amz-function-error") {
                Some(kind) => Err(LambdaFailureClass::FunctionError(
                    Untrusted::new(kind).to_string(),
                )),
                None => Ok(()),
            });
        }
        // As the decoder does: the sanitized code, capped and escaped, else the status.
        let code = match header("x-amzn-errortype").map(codec::sanitize_error_code) {
            Some(code) if !code.is_empty() => Untrusted::new(code).to_string(),
            _ => status.to_string(),
        };
        let kind = ApiErrorKind::from_code(&code, status);
        let err = ApiError::new(kind, status, None);
        ClassifiedResponse::Ready(Err(if err.is_throttle() {
            LambdaFailureClass::Throttled(err)
        } else {
            LambdaFailureClass::Api(err)
        }))
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: fmt::Display + 'static,
    {
        LambdaFailureClass::Error(error.to_string())
    }
}

/// The classifier for each request is the same [`LambdaClassifier`].
impl MakeClassifier for LambdaClassifier {
    type Classifier = LambdaClassifier;
    type FailureClass = LambdaFailureClass;
    type ClassifyEos = NeverClassifyEos<LambdaFailureClass>;

    fn make_classifier<B>(&self, _req: &http::Request<B>) -> Self::Classifier {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, headers: &[(&str, &str)]) -> Result<(), LambdaFailureClass> {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        match LambdaClassifier::default().classify_response(&b.body(()).unwrap()) {
            ClassifiedResponse::Ready(r) => r,
            ClassifiedResponse::RequiresEos(_) => panic!("classified from the head"),
        }
    }

    #[test]
    fn lambda_outcomes_where_tower_http_default_is_wrong() {
        // tower-http's ServerErrorsAsFailures calls both of these successes.
        assert!(matches!(
            classify(429, &[("x-amzn-errortype", "TooManyRequestsException")]),
            Err(LambdaFailureClass::Throttled(_))
        ));
        assert_eq!(
            classify(200, &[("x-amz-function-error", "Unhandled")]),
            Err(LambdaFailureClass::FunctionError("Unhandled".into()))
        );
        // A 429 without a code (a proxy's) is a throttle too.
        assert!(matches!(
            classify(429, &[]),
            Err(LambdaFailureClass::Throttled(_))
        ));
    }

    #[test]
    fn successes_and_faults() {
        assert_eq!(classify(200, &[]), Ok(()));
        assert_eq!(classify(202, &[]), Ok(()));
        assert_eq!(classify(204, &[]), Ok(()));
        let Err(LambdaFailureClass::Api(e)) = classify(
            404,
            &[(
                "x-amzn-errortype",
                "ResourceNotFoundException:http://internal.amazon.com/",
            )],
        ) else {
            panic!("a 404 is an API failure")
        };
        assert_eq!(
            (e.code(), e.fault()),
            ("ResourceNotFoundException", Fault::Client)
        );
        let Err(c) = classify(500, &[("x-amzn-errortype", "ServiceException")]) else {
            panic!("a 500 is a failure")
        };
        assert_eq!(c.fault(), Fault::Server);
        assert_eq!(c.to_string(), "ServiceException (500, server fault)");
        assert_eq!(
            LambdaClassifier::default().classify_error(&"connection refused"),
            LambdaFailureClass::Error("connection refused".into())
        );
    }
}
