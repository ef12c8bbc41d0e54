//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! The layers record into whatever recorder the application installs (Prometheus,
//! OpenTelemetry, StatsD... through the facade's exporters); with none installed, each
//! record is a no-op. The `metrics` facade is the one most Rust services already wire to
//! an exporter, it costs one atomic load per record when nothing is installed, and it
//! pulls in no runtime or exporter of its own (OpenTelemetry metrics would bring its SDK).
//!
//! Every metric carries a `function` label: the target's name, from the [`MetricsTarget`]
//! request extension (invoke-stack sets it to the Lambda function's name), or empty.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `invoke_attempts_total` | counter | `function`, `outcome` | attempts by how they ended: `final`, `not_retryable`, `throttled`, `transient` (retry layer) |
//! | `invoke_attempt_duration_seconds` | histogram | `function` | each attempt's duration (retry layer) |
//! | `invoke_retries_total` | counter | `function`, `reason` | retries made (not cancelled during their backoff): `throttle` or `transient` |
//! | `invoke_backoff_seconds` | histogram | `function` | the wait before each retry made |
//! | `invoke_rate_limit_waits_total` | counter | `function` | calls that waited for the rate limiter |
//! | `invoke_rate_limit_wait_seconds` | histogram | `function` | how long they waited |
//! | `invoke_rate_limit_refusals_total` | counter | `function` | calls the rate limiter refused |
//! | `invoke_adaptive_limit` | gauge | `function` (the rate-limit key) | the adaptive concurrency limit, after each attempt's feedback |
//!
//! ```
//! use std::sync::Arc;
//! use invoke_layers::metrics::MetricsTarget;
//!
//! let mut req = http::Request::new(bytes::Bytes::new());
//! req.extensions_mut().insert(MetricsTarget(Arc::from("my-function")));
//! ```

use std::sync::Arc;

use metrics::SharedString;

/// The `function` label of the metrics a request's layers record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsTarget(pub Arc<str>);

/// The `function` label for a request: its [`MetricsTarget`], or empty.
#[cfg_attr(not(any(feature = "retry", feature = "rate-limit")), allow(dead_code))]
pub(crate) fn target_of<B>(req: &http::Request<B>) -> SharedString {
    match req.extensions().get::<MetricsTarget>() {
        Some(t) => SharedString::from(Arc::clone(&t.0)),
        None => SharedString::const_str(""),
    }
}
