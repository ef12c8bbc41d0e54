//! Retries that classify every failure: throttle or transient, and whether the request
//! may already have reached its target.
//!
//! [`RetryLayer`] drives attempts; what a result means it asks a [`ClassifyRetry`]
//! implementation (generic [`HttpClassifier`] here; `invoke-stack` has one for Lambda's
//! errors). It follows AWS standard mode (spec §4) where that is right and departs from
//! it where the SDKs lose calls or run functions twice:
//!
//! - **Attempts and backoff**: [`RetryPolicy`], default 3 attempts, full-jitter
//!   exponential backoff (base 1 s, cap 20 s).
//! - **`Retry-After` is a floor**, not ignored: the delay is at least the server's hint;
//!   a hint above `max_retry_after` (60 s) ends the retries.
//! - **The deadline wins**: with a [`Deadline`](crate::timeout::Deadline) in the
//!   extensions, a wait that would end past it is not started.
//! - **Did it reach the target?** A failure that may have reached it (a timeout after the
//!   request was sent, a reset after the write, a 500) is retried only for requests marked
//!   [`Idempotent`]. A failure that never left the machine is always safe to retry.
//! - **Quota**: a [`RetryQuota`] token bucket (500 / 5 / 10 / +1), shared by clones,
//!   optionally one per [`RetryPartition`]; retries scheduled by the server's
//!   `Retry-After` cost nothing by default (see [`QuotaConfig::hinted_cost`]).
//! - **Headers**: `amz-sdk-invocation-id` (one UUID per operation) and
//!   `amz-sdk-request: attempt=N; max=M`, so a server can tell a retry from a new call.
//! - **What happened** is in [`RetryStats`]: in the final response's extensions, and in
//!   [`RetryError`].
//!
//! Place it inside the deadline and rate limiter, outside the attempt timeout and signing.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use invoke_layers::retry::{HttpClassifier, RetryLayer, RetryPolicy, RetryStats};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let c = calls.clone();
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(HttpClassifier))
//!     .service(service_fn(move |_req: http::Request<()>| {
//!         let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         async move {
//!             let status = if n == 0 { 429 } else { 200 }; // throttled once
//!             Ok::<_, std::convert::Infallible>(http::Response::builder().status(status).body(()).unwrap())
//!         }
//!     }));
//! let resp = svc.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(resp.status(), 200);
//! assert_eq!(resp.extensions().get::<RetryStats>().unwrap().attempts, 2);
//! # }
//! ```
//!
//! # Testing
//!
//! Give the layer a fixed jitter ([`RetryLayer::jitter`]) and use paused tokio time:
//! delays are then exact and take no time.

mod decide;
mod error;
mod future;
mod layer;
mod policy;
mod quota;
mod service;

/// The classification types, at home in [`crate::classify`].
pub use crate::classify::{
    classify_once, parse_retry_after, Classification, Classified, ClassifyRetry, HttpClassifier,
    Reached, RetryKind, RETRY_AFTER_CAP, THROTTLING_CODES,
};
pub use crate::deadline::AttemptNumber;
pub use decide::{Backoff, RetryBudget, RetryDecision, RetryableFailure};
pub use error::RetryError;
pub use future::ResponseFuture;
pub use layer::RetryLayer;
pub use policy::{Idempotent, MaxAttempts, RetryPolicy, RetryStats, StopReason};
pub use quota::{QuotaConfig, RetryPartition, RetryQuota};
pub use service::Retry;

#[cfg(test)]
mod tests;
