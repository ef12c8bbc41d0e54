//! The 43 modeled Invoke error shapes (spec §3.2) and unmodeled service errors.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{Fault, RunStatus};

/// Why Lambda throttled a request (`TooManyRequestsException.Reason`, spec §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThrottleReason {
    /// Account-level concurrency limit.
    ConcurrentInvocationLimitExceeded,
    /// Function invocation rate limit.
    FunctionInvocationRateLimitExceeded,
    /// The function's reserved concurrency is exhausted.
    ReservedFunctionConcurrentInvocationLimitExceeded,
    /// The function's reserved invocation rate is exceeded.
    ReservedFunctionInvocationRateLimitExceeded,
    /// The caller's request rate is exceeded.
    CallerRateLimitExceeded,
    /// Too many SnapStart snapshots being created.
    ConcurrentSnapshotCreateLimitExceeded,
    /// A reason this version of the library does not know.
    Other(String),
}

impl ThrottleReason {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ConcurrentInvocationLimitExceeded => "ConcurrentInvocationLimitExceeded",
            Self::FunctionInvocationRateLimitExceeded => "FunctionInvocationRateLimitExceeded",
            Self::ReservedFunctionConcurrentInvocationLimitExceeded => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
            Self::ReservedFunctionInvocationRateLimitExceeded => {
                "ReservedFunctionInvocationRateLimitExceeded"
            }
            Self::CallerRateLimitExceeded => "CallerRateLimitExceeded",
            Self::ConcurrentSnapshotCreateLimitExceeded => "ConcurrentSnapshotCreateLimitExceeded",
            Self::Other(s) => s,
        }
    }

    /// True for limits of one function (reserved concurrency or rate), as opposed to the
    /// account or the caller.
    pub fn is_per_function(&self) -> bool {
        matches!(
            self,
            Self::ReservedFunctionConcurrentInvocationLimitExceeded
                | Self::ReservedFunctionInvocationRateLimitExceeded
                | Self::FunctionInvocationRateLimitExceeded
        )
    }
}

impl From<&str> for ThrottleReason {
    fn from(s: &str) -> Self {
        match s {
            "ConcurrentInvocationLimitExceeded" => Self::ConcurrentInvocationLimitExceeded,
            "FunctionInvocationRateLimitExceeded" => Self::FunctionInvocationRateLimitExceeded,
            "ReservedFunctionConcurrentInvocationLimitExceeded" => {
                Self::ReservedFunctionConcurrentInvocationLimitExceeded
            }
            "ReservedFunctionInvocationRateLimitExceeded" => {
                Self::ReservedFunctionInvocationRateLimitExceeded
            }
            "CallerRateLimitExceeded" => Self::CallerRateLimitExceeded,
            "ConcurrentSnapshotCreateLimitExceeded" => Self::ConcurrentSnapshotCreateLimitExceeded,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ThrottleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the AWS standard retry mode treats an error (spec §4.1), before our refinements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StandardClass {
    /// A throttling error (`T`).
    Throttling,
    /// A transient error (`X`: 5xx status, transient code).
    Transient,
    /// Not retried (`–`).
    NotRetried,
}

macro_rules! error_shapes {
    ($(
        $(#[$doc:meta])*
        $variant:ident $({ $($field:ident : $fty:ty),* $(,)? })? =
            ($code:literal, $status:literal, $fault:ident, $class:ident, $retry:literal, $msg:literal)
    ),* $(,)?) => {
        /// Which error Lambda returned: one variant per modeled `Invoke` error shape,
        /// carrying the shape's own members, plus [`Unknown`](ApiErrorKind::Unknown).
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum ApiErrorKind {
            $(
                $(#[$doc])*
                $variant $({ $(
                    #[allow(missing_docs)]
                    $field: $fty
                ),* })?,
            )*
            /// An error code that is not one of the modeled shapes (e.g. `AccessDeniedException`,
            /// `InvalidSignatureException`, or a status from an intermediary).
            Unknown {
                /// The sanitized error code, or the HTTP status as text.
                code: String,
            },
        }

        /// Static facts about one modeled shape.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct ShapeInfo {
            /// The shape name, which is also the wire error code.
            pub code: &'static str,
            /// The HTTP status Lambda uses for it.
            pub status: u16,
            /// Client fault (`senderFault`) or server fault.
            pub fault: Fault,
            /// What AWS standard retry mode does with it.
            pub standard_class: StandardClass,
            /// Whether this library retries it (see [`ApiError::is_retryable`]).
            pub retryable: bool,
            /// The member that carries the message: `message` or `Message`.
            pub message_key: &'static str,
        }

        /// Every modeled Invoke error shape, in the order of spec §3.2.
        pub const SHAPES: &[ShapeInfo] = &[
            $(ShapeInfo {
                code: $code,
                status: $status,
                fault: Fault::$fault,
                standard_class: StandardClass::$class,
                retryable: $retry,
                message_key: $msg,
            },)*
        ];

        impl ApiErrorKind {
            /// The static facts of a modeled shape; `None` for `Unknown`.
            pub fn shape(&self) -> Option<&'static ShapeInfo> {
                let mut i = 0usize;
                $(
                    if matches!(self, ApiErrorKind::$variant { .. }) {
                        return Some(&SHAPES[i]);
                    }
                    i += 1;
                )*
                let _ = i;
                None
            }

            /// The wire error code (shape name, or the unknown code).
            pub fn code(&self) -> &str {
                match self.shape() {
                    Some(s) => s.code,
                    None => match self {
                        ApiErrorKind::Unknown { code } => code,
                        _ => "",
                    },
                }
            }

            /// The modeled shape with this wire code, members left empty.
            fn from_code_bare(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(ApiErrorKind::$variant $({ $($field: Default::default()),* })?),)*
                    _ => None,
                }
            }
        }
    };
}

error_shapes! {
    /// 429: request throughput or concurrency limit exceeded.
    TooManyRequests { reason: Option<ThrottleReason>, retry_after: Option<Duration> } =
        ("TooManyRequestsException", 429, Client, Throttling, true, "message"),
    /// 502: EC2 throttled Lambda during function initialization.
    EC2Throttled = ("EC2ThrottledException", 502, Server, Throttling, true, "Message"),
    /// 500: Lambda internal error. The function may have run.
    Service = ("ServiceException", 500, Server, Transient, true, "Message"),
    /// 502: the function is inactive or its VPC connection is being re-established.
    ResourceNotReady = ("ResourceNotReadyException", 502, Server, Transient, true, "message"),
    /// 502: missing permissions to set up the VPC (a configuration error).
    EC2AccessDenied = ("EC2AccessDeniedException", 502, Server, Transient, false, "Message"),
    /// 502: unexpected EC2 client error during setup.
    EC2Unexpected { ec2_error_code: Option<String> } =
        ("EC2UnexpectedException", 502, Server, Transient, true, "Message"),
    /// 502: the VPC's ENI limit is reached.
    ENILimitReached = ("ENILimitReachedException", 502, Server, Transient, true, "Message"),
    /// 502: a configured subnet has no free IP addresses.
    SubnetIPAddressLimitReached =
        ("SubnetIPAddressLimitReachedException", 502, Server, Transient, true, "Message"),
    /// 502: a subnet id in the VPC configuration is invalid.
    InvalidSubnetID = ("InvalidSubnetIDException", 502, Server, Transient, false, "Message"),
    /// 502: a security group id in the VPC configuration is invalid.
    InvalidSecurityGroupID =
        ("InvalidSecurityGroupIDException", 502, Server, Transient, false, "Message"),
    /// 502: KMS denied decrypting the environment variables.
    KMSAccessDenied = ("KMSAccessDeniedException", 502, Server, Transient, false, "Message"),
    /// 502: the environment variables' KMS key is disabled.
    KMSDisabled = ("KMSDisabledException", 502, Server, Transient, false, "Message"),
    /// 502: the KMS key is in a state that does not allow Decrypt.
    KMSInvalidState = ("KMSInvalidStateException", 502, Server, Transient, false, "Message"),
    /// 502: the environment variables' KMS key was not found.
    KMSNotFound = ("KMSNotFoundException", 502, Server, Transient, false, "Message"),
    /// 502: the runtime or runtime version is not supported.
    InvalidRuntime = ("InvalidRuntimeException", 502, Server, Transient, false, "Message"),
    /// 502: the deployment package cannot be unzipped.
    InvalidZipFile = ("InvalidZipFileException", 502, Server, Transient, false, "Message"),
    /// 400: a request parameter is invalid.
    InvalidParameterValue =
        ("InvalidParameterValueException", 400, Client, NotRetried, false, "message"),
    /// 400: the body is not JSON, or a header is invalid.
    InvalidRequestContent =
        ("InvalidRequestContentException", 400, Client, NotRetried, false, "message"),
    /// 400: the function has no published versions.
    NoPublishedVersion =
        ("NoPublishedVersionException", 400, Client, NotRetried, false, "Message"),
    /// 400: a recursive loop was detected and the invocation stopped.
    RecursiveInvocation =
        ("RecursiveInvocationException", 400, Client, NotRetried, false, "Message"),
    /// 400: the `afterRestore()` runtime hook failed.
    SnapStart = ("SnapStartException", 400, Client, NotRetried, false, "Message"),
    /// 403: the EFS mount failed (permission or configuration).
    EFSMountFailure = ("EFSMountFailureException", 403, Client, NotRetried, false, "Message"),
    /// 403: the S3 Files access point mount failed.
    S3FilesMountFailure =
        ("S3FilesMountFailureException", 403, Client, NotRetried, false, "Message"),
    /// 404: the function, version or alias does not exist.
    ResourceNotFound = ("ResourceNotFoundException", 404, Client, NotRetried, false, "Message"),
    /// 408: no network connection to the file system.
    EFSMountConnectivity =
        ("EFSMountConnectivityException", 408, Client, NotRetried, false, "Message"),
    /// 408: the EFS mount timed out.
    EFSMountTimeout = ("EFSMountTimeoutException", 408, Client, NotRetried, false, "Message"),
    /// 408: no network connection to the S3 Files access point.
    S3FilesMountConnectivity =
        ("S3FilesMountConnectivityException", 408, Client, NotRetried, false, "Message"),
    /// 408: the S3 Files mount timed out.
    S3FilesMountTimeout =
        ("S3FilesMountTimeoutException", 408, Client, NotRetried, false, "Message"),
    /// 408: the snapshot restore exceeded its time limit.
    SnapStartTimeout = ("SnapStartTimeoutException", 408, Client, NotRetried, false, "Message"),
    /// 409: the resource exists or another operation is in progress.
    ResourceConflict = ("ResourceConflictException", 409, Client, NotRetried, false, "message"),
    /// 409: the function is still initializing.
    SnapStartNotReady =
        ("SnapStartNotReadyException", 409, Client, NotRetried, false, "Message"),
    /// 409: this durable execution name was already used for this function.
    DurableExecutionAlreadyStarted =
        ("DurableExecutionAlreadyStartedException", 409, Client, NotRetried, false, "Message"),
    /// 410: read or write error on the connected file system.
    EFSIO = ("EFSIOException", 410, Client, NotRetried, false, "Message"),
    /// 413: the request payload is over the Invoke body quota. Also every 413 whose
    /// code is not a modeled shape (Lambda sends `RequestEntityTooLargeException`).
    RequestTooLarge = ("RequestTooLargeException", 413, Client, NotRetried, false, "message"),
    /// 413: the serialized request entity is over the maximum.
    SerializedRequestEntityTooLarge =
        ("SerializedRequestEntityTooLargeException", 413, Client, NotRetried, false, "message"),
    /// 415: the Invoke body content type is not JSON.
    UnsupportedMediaType =
        ("UnsupportedMediaTypeException", 415, Client, NotRetried, false, "message"),
    /// 502: the ENI of the function's VPC connection is not ready yet; it becomes ready
    /// by itself, so it is retried.
    ENINotReady = ("ENINotReadyException", 502, Server, Transient, true, "Message"),
    /// 400: the function does not support this invocation mode (e.g. `RequestResponse`
    /// on a function that only runs asynchronously, or the reverse).
    ModeNotSupported =
        ("ModeNotSupportedException", 400, Client, NotRetried, false, "Message"),
    /// 402: the request would exceed a service quota.
    ServiceQuotaExceeded =
        ("ServiceQuotaExceededException", 402, Client, NotRetried, false, "Message"),
    /// 409: the function's code artifact user was deleted.
    CodeArtifactUserDeleted =
        ("CodeArtifactUserDeletedException", 409, Client, NotRetried, false, "Message"),
    /// 409: provisioning the function's code artifact user failed.
    CodeArtifactUserFailed =
        ("CodeArtifactUserFailedException", 409, Client, NotRetried, false, "Message"),
    /// 409: the function's code artifact user is still being provisioned.
    CodeArtifactUserPending =
        ("CodeArtifactUserPendingException", 409, Client, NotRetried, false, "Message"),
    /// 409: regenerating the SnapStart snapshot failed.
    SnapStartRegenerationFailure =
        ("SnapStartRegenerationFailureException", 409, Client, NotRetried, false, "Message"),
}

/// AWS standard-mode throttling codes (spec §4.1), shared with the retry layer.
pub use invoke_layers::retry::THROTTLING_CODES;

/// AWS standard-mode transient codes (spec §4.1).
pub const TRANSIENT_CODES: &[&str] = &["RequestTimeout", "RequestTimeoutException"];

/// Codes of errors caused by the client's clock being off; the request is safe to send
/// again once the signing layer has learned the offset. (`InvalidSignatureException`
/// counts only with Lambda's "Signature expired" / "Signature not yet current" messages:
/// otherwise it means a wrong secret.)
pub const CLOCK_SKEW_CODES: &[&str] = &[
    "RequestTimeTooSkewed",
    "RequestExpired",
    "RequestInTheFuture",
];

impl ApiErrorKind {
    /// Maps a sanitized wire code (and status) to a shape. 413 is classified by status.
    pub fn from_code(code: &str, status: u16) -> Self {
        if let Some(kind) = Self::from_code_bare(code) {
            return kind;
        }
        if status == 413 {
            return ApiErrorKind::RequestTooLarge;
        }
        ApiErrorKind::Unknown {
            code: code.to_owned(),
        }
    }
}

/// An error response from Lambda (or from something in front of it): a non-2xx status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub(crate) kind: ApiErrorKind,
    pub(crate) status: u16,
    pub(crate) message: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) request_id: Option<String>,
}

impl ApiError {
    /// Builds an error; used by the decoder and by tests of code that handles errors.
    pub fn new(kind: ApiErrorKind, status: u16, message: Option<String>) -> Self {
        Self {
            kind,
            status,
            message,
            error_type: None,
            request_id: None,
        }
    }

    /// Sets the `Type` member.
    pub fn with_error_type(mut self, t: Option<String>) -> Self {
        self.error_type = t;
        self
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }

    /// Which error this is, with the shape's members.
    pub fn kind(&self) -> &ApiErrorKind {
        &self.kind
    }
    /// The wire error code.
    pub fn code(&self) -> &str {
        self.kind.code()
    }
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The service's message. Decoded messages are capped and escaped like all text from
    /// the server ([`Untrusted`](invoke_layers::trace::Untrusted)): safe to log.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
    /// The `Type` member (`User` or `Service` on Lambda's errors).
    pub fn error_type(&self) -> Option<&str> {
        self.error_type.as_deref()
    }
    /// `x-amzn-RequestId`.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The server's hint of when to try again (`Retry-After` on a throttle).
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.kind {
            ApiErrorKind::TooManyRequests { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The throttle reason, for `TooManyRequestsException`.
    pub fn throttle_reason(&self) -> Option<&ThrottleReason> {
        match &self.kind {
            ApiErrorKind::TooManyRequests { reason, .. } => reason.as_ref(),
            _ => None,
        }
    }

    /// Client fault (the request must change) or server fault.
    ///
    /// Modeled shapes use the model's `senderFault`/`fault` trait; unknown codes use the
    /// status (4xx client, everything else server).
    pub fn fault(&self) -> Fault {
        match self.kind.shape() {
            Some(s) => s.fault,
            None if (400..500).contains(&self.status) => Fault::Client,
            None => Fault::Server,
        }
    }

    /// A throttle: the §4.1 throttling codes, or any 429.
    pub fn is_throttle(&self) -> bool {
        self.status == 429 || THROTTLING_CODES.contains(&self.code())
    }

    /// Whether a retry can succeed without changing the request.
    ///
    /// Throttles, 500/503/504 and the transient codes are retryable. Lambda's 502 shapes
    /// are judged one by one: configuration errors that cannot heal by themselves
    /// (`EC2AccessDenied`, `InvalidSubnetID`, `InvalidSecurityGroupID`, `KMS*`,
    /// `InvalidRuntime`, `InvalidZipFile`) are not, unlike AWS standard mode;
    /// `EC2Throttled`, `ResourceNotReady`, `EC2Unexpected`, `ENILimitReached`,
    /// `SubnetIPAddressLimitReached` and `ENINotReady` are. Client faults are never
    /// retryable.
    ///
    /// Whether a retry is *safe* is a separate question: see [`may_have_run`](Self::may_have_run).
    pub fn is_retryable(&self) -> bool {
        if let Some(shape) = self.kind.shape() {
            return shape.retryable;
        }
        self.is_throttle()
            || TRANSIENT_CODES.contains(&self.code())
            || matches!(self.status, 500 | 502 | 503 | 504)
    }

    /// True when the request was rejected because of the signer's clock.
    pub fn is_clock_skew(&self) -> bool {
        let code = self.code();
        (code == "InvalidSignatureException"
            && self.message.as_deref().is_some_and(|m| {
                m.contains("Signature expired") || m.contains("Signature not yet current")
            }))
            || CLOCK_SKEW_CODES.contains(&code)
    }

    /// Whether the function may have run (spec §7): modeled 4xx and 502 errors prevent
    /// execution; a 500 `ServiceException` or an unmodeled 5xx (an intermediary) is unknown.
    pub fn may_have_run(&self) -> RunStatus {
        match &self.kind {
            ApiErrorKind::Service => RunStatus::Unknown,
            ApiErrorKind::Unknown { .. } if self.status >= 500 => RunStatus::Unknown,
            _ => RunStatus::NotRun,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.code(), self.status)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        match &self.kind {
            ApiErrorKind::TooManyRequests {
                reason,
                retry_after,
            } => {
                if let Some(r) = reason {
                    write!(f, " [reason {r}]")?;
                }
                if let Some(d) = retry_after {
                    write!(f, " [retry after {}s]", d.as_secs_f64())?;
                }
            }
            ApiErrorKind::EC2Unexpected {
                ec2_error_code: Some(c),
            } => write!(f, " [EC2 error code {c}]")?,
            _ => {}
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl FromStr for ApiErrorKind {
    type Err = std::convert::Infallible;
    /// Maps a wire code to a kind, `Unknown` when it is not modeled (status unknown: 0).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_code(s, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_three_shapes_with_unique_codes() {
        assert_eq!(SHAPES.len(), 43);
        let mut codes: Vec<_> = SHAPES.iter().map(|s| s.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 43);
        for s in SHAPES {
            let kind = ApiErrorKind::from_code(s.code, s.status);
            assert_eq!(kind.shape(), Some(s), "{}", s.code);
            assert_eq!(kind.code(), s.code);
            // Fault agrees with the status class.
            assert_eq!(s.fault == Fault::Client, s.status < 500, "{}", s.code);
        }
    }

    #[test]
    fn the_shapes_of_newer_models() {
        use StandardClass::{NotRetried, Transient};
        for (code, status, fault, class, retryable) in [
            ("ENINotReadyException", 502, Fault::Server, Transient, true),
            (
                "ModeNotSupportedException",
                400,
                Fault::Client,
                NotRetried,
                false,
            ),
            (
                "ServiceQuotaExceededException",
                402,
                Fault::Client,
                NotRetried,
                false,
            ),
            (
                "CodeArtifactUserDeletedException",
                409,
                Fault::Client,
                NotRetried,
                false,
            ),
            (
                "CodeArtifactUserFailedException",
                409,
                Fault::Client,
                NotRetried,
                false,
            ),
            (
                "CodeArtifactUserPendingException",
                409,
                Fault::Client,
                NotRetried,
                false,
            ),
            (
                "SnapStartRegenerationFailureException",
                409,
                Fault::Client,
                NotRetried,
                false,
            ),
        ] {
            let kind = ApiErrorKind::from_code(code, status);
            let shape = kind
                .shape()
                .unwrap_or_else(|| panic!("{code} is not modeled"));
            assert_eq!(
                (
                    shape.code,
                    shape.status,
                    shape.fault,
                    shape.standard_class,
                    shape.retryable
                ),
                (code, status, fault, class, retryable)
            );
            let err = ApiError::new(kind, status, Some("m".into()));
            assert_eq!(err.fault(), fault, "{code}");
            assert_eq!(err.is_retryable(), retryable, "{code}");
            assert!(!err.is_throttle(), "{code}");
            assert_eq!(err.may_have_run(), RunStatus::NotRun, "{code}");
        }
    }

    #[test]
    fn unmodeled_413_is_request_too_large() {
        assert_eq!(
            ApiErrorKind::from_code("RequestEntityTooLargeException", 413),
            ApiErrorKind::RequestTooLarge
        );
        assert_eq!(
            ApiErrorKind::from_code("Whatever", 400),
            ApiErrorKind::Unknown {
                code: "Whatever".into()
            }
        );
    }

    #[test]
    fn classification() {
        let throttle = ApiError::new(
            ApiErrorKind::TooManyRequests {
                reason: None,
                retry_after: None,
            },
            429,
            None,
        );
        assert!(throttle.is_throttle() && throttle.is_retryable());
        assert_eq!(throttle.fault(), Fault::Client);
        assert_eq!(throttle.may_have_run(), RunStatus::NotRun);

        let svc = ApiError::new(ApiErrorKind::Service, 500, None);
        assert!(svc.is_retryable() && !svc.is_throttle());
        assert_eq!(svc.may_have_run(), RunStatus::Unknown);

        let zip = ApiError::new(ApiErrorKind::InvalidZipFile, 502, None);
        assert!(!zip.is_retryable());
        assert_eq!(zip.fault(), Fault::Server);

        let gw = ApiError::new(ApiErrorKind::Unknown { code: "503".into() }, 503, None);
        assert!(gw.is_retryable());
        assert_eq!(gw.may_have_run(), RunStatus::Unknown);

        let other_throttle = ApiError::new(
            ApiErrorKind::Unknown {
                code: "ThrottlingException".into(),
            },
            400,
            None,
        );
        assert!(other_throttle.is_throttle() && other_throttle.is_retryable());

        let skew = ApiError::new(
            ApiErrorKind::Unknown {
                code: "InvalidSignatureException".into(),
            },
            403,
            Some("Signature expired: 20260101T000000Z is now earlier than ...".into()),
        );
        assert!(skew.is_clock_skew() && !skew.is_retryable());
        let bad_sig = ApiError::new(
            ApiErrorKind::Unknown {
                code: "InvalidSignatureException".into(),
            },
            403,
            Some("The request signature we calculated does not match".into()),
        );
        assert!(!bad_sig.is_clock_skew());
    }
}
