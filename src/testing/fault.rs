//! Faults the local endpoint injects, per function, on demand.

use std::time::Duration;

use bytes::Bytes;

use crate::error::{ApiErrorKind, ThrottleReason};

/// What the endpoint does instead of (or before) answering normally.
///
/// Script faults per function with [`LocalLambda::script`](super::LocalLambda::script):
/// each request takes the next one; when the script is empty, requests are served
/// normally (or with the fault set by [`LocalLambda::always`](super::LocalLambda::always)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with a modeled error shape, rendered as Lambda does (status,
    /// `x-amzn-ErrorType`, JSON body with `Type`, the message and the shape's members).
    /// The function does not run.
    Error(ApiErrorKind),
    /// Answer with any status, headers and body. The function does not run.
    Raw {
        /// HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: Bytes,
    },
    /// Reset the connection (TCP RST) before reading the request body. The function
    /// does not run.
    ResetBeforeRequest,
    /// Read the request, run the function, then reset the connection instead of answering.
    ResetAfterRequest,
    /// Wait this long, then serve the request normally.
    Delay(Duration),
    /// Never answer (until the endpoint is dropped). The function does not run.
    Hang,
    /// Answer with this status and a body that is neither JSON nor HTML.
    Garbage {
        /// HTTP status.
        status: u16,
    },
    /// Run the function, then send a response whose body is cut short of its
    /// `Content-Length` and close the connection.
    Truncated,
    /// Answer with this status and an HTML page, as a load balancer or proxy would.
    Html {
        /// HTTP status.
        status: u16,
    },
    /// For `InvokeWithResponseStream`: answer 200, run the function, and fail the
    /// stream this way (applied as the other faults to `Invoke`, which it leaves alone).
    Stream(super::StreamFault),
}

impl Fault {
    /// `TooManyRequestsException` (429) with a reason and `Retry-After` in seconds.
    pub fn throttle(reason: Option<ThrottleReason>, retry_after: Option<Duration>) -> Self {
        Fault::Error(ApiErrorKind::TooManyRequests {
            reason,
            retry_after,
        })
    }

    /// `ServiceException` (500).
    pub fn service_exception() -> Self {
        Fault::Error(ApiErrorKind::Service)
    }
}
