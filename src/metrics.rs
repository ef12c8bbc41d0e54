//! Call metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`), beside the layers' own ([`invoke_layers::metrics`]: attempts, retries,
//! backoff, rate-limit waits and refusals, adaptive limits).
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `invoke_calls_total` | counter | `function`, `outcome` | calls by how they ended: `ok`, `function_error`, `throttled`, `timeout`, `rate_limited`, `circuit_open`, `client_fault`, `server_fault`, `cancelled` (the caller dropped the call) |
//! | `invoke_call_duration_seconds` | histogram | `function` | each call's duration from its first poll, every attempt and wait included |
//! | `invoke_calls_in_flight` | gauge | `function` | calls made (`invoke`) and not yet ended |
//! | `invoke_dead_letters_total` | counter | `function`, `outcome` | failed `Event`s handed to the dead-letter sink: `stored` or `refused` |
//!
//! With no recorder installed each record is a no-op; the cost of the feature is then
//! the function-name label made for each call (one allocation), within the noise of a
//! call (see BENCHMARKS.md).

use std::sync::Arc;
use std::time::Instant;

use metrics::SharedString;

use crate::error::{Fault, InvokeError, InvokeErrorKind};
use crate::model::InvokeResponse;

/// One call's metrics: in flight from creation until [`finish`](Self::finish) or drop.
pub(crate) struct CallMetrics {
    function: SharedString,
    /// The gauge incremented at the start: the same handle is decremented at the end,
    /// whatever recorder is installed by then.
    in_flight: metrics::Gauge,
    /// Set at the call's first poll, when it starts running.
    started: Option<Instant>,
    finished: bool,
}

impl std::fmt::Debug for CallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMetrics")
            .field("function", &self.function)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl CallMetrics {
    pub(crate) fn start(function: Arc<str>) -> Self {
        let function = SharedString::from(function);
        let in_flight = metrics::gauge!("invoke_calls_in_flight", "function" => function.clone());
        in_flight.increment(1.0);
        Self {
            function,
            in_flight,
            started: None,
            finished: false,
        }
    }

    /// The call is being polled: its duration counts from the first poll.
    pub(crate) fn polled(&mut self) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
    }

    pub(crate) fn finish(&mut self, result: &Result<InvokeResponse, InvokeError>) {
        let outcome = match result {
            Ok(resp) if resp.function_error().is_some() => "function_error",
            Ok(_) => "ok",
            Err(e) => outcome_of(e),
        };
        self.record(outcome);
    }

    fn record(&mut self, outcome: &'static str) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let function = self.function.clone();
        self.in_flight.decrement(1.0);
        metrics::counter!("invoke_calls_total", "function" => function.clone(), "outcome" => outcome)
            .increment(1);
        // A call never polled has no duration.
        if let Some(started) = self.started {
            metrics::histogram!("invoke_call_duration_seconds", "function" => function)
                .record(started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for CallMetrics {
    fn drop(&mut self) {
        self.record("cancelled");
    }
}

fn outcome_of(e: &InvokeError) -> &'static str {
    match e.kind() {
        _ if e.is_throttle() && !matches!(e.kind(), InvokeErrorKind::RateLimited(_)) => "throttled",
        InvokeErrorKind::Timeout(_) => "timeout",
        InvokeErrorKind::RateLimited(_) => "rate_limited",
        InvokeErrorKind::CircuitOpen(_) => "circuit_open",
        InvokeErrorKind::Validation(_) => "invalid",
        _ => match e.fault() {
            Fault::Client => "client_fault",
            Fault::Server => "server_fault",
        },
    }
}
