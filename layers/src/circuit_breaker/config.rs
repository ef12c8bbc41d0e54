use std::collections::HashSet;
use std::time::Duration;

use crate::deadline::MAX_BUDGET;

/// When a circuit opens, how long it stays open, how it probes, and what counts.
///
/// The defaults and why (see the [module docs](super) for the whole picture):
///
/// | field | default | why |
/// |---|---|---|
/// | `failure_ratio` | 0.5 | half the calls failing is an outage, not noise (resilience4j's default) |
/// | `minimum_calls` | 10 | small enough that a function called once a second can trip within the window; large enough that 5 failures of a healthy but flaky function (5 % errors) in one window are rarer than 1 in 10,000 |
/// | `sampling_window` | 30 s | Polly's; long enough to hold `minimum_calls` at a low call rate, short enough to forget an old incident |
/// | `break_duration` | 5 s, doubling per failed probe | Polly's; a broken function's fix (re-enable a key, redeploy) takes seconds to minutes: start short, back off |
/// | `max_break_duration` | 60 s | resilience4j's open wait: a repaired function is found within a minute |
/// | `break_jitter` | 0.2 | breaks end at up to 20 % earlier, so the clients of one broken function do not probe in lockstep |
/// | `half_open_probes` | 1 | one call at a time tests the function; the others fail fast until it answers |
/// | `probe_timeout` | 60 s | the longest break: a probe that hangs (a function that never answers) holds the half-open circuit no longer than a break would |
/// | `open_on_broken` | true | a failure that cannot heal by itself (a configuration error) is proof enough |
/// | `count_client_faults` | false | a bad request says nothing of the target's health |
/// | `count_target_errors` | false | an error the target itself reports (a Lambda function error) means the path to it works |
/// | `max_keys` | 10,000 | a few hundred bytes per key: a few MB at most |
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    /// Share of failed calls in the window at which the circuit opens (default 0.5;
    /// clamped to `(0, 1]`).
    pub failure_ratio: f64,
    /// Calls the window must hold before its ratio is judged (default 10).
    pub minimum_calls: u32,
    /// The sampling window: outcomes older than this are forgotten (default 30 s). It is
    /// kept in 10 buckets, so it slides by a tenth of its length.
    pub sampling_window: Duration,
    /// How long the circuit stays open the first time (default 5 s); each failed probe
    /// doubles it, up to `max_break_duration`.
    pub break_duration: Duration,
    /// The longest break (default 60 s). Breaks are capped at 30 years
    /// ([`MAX_BUDGET`](crate::deadline::MAX_BUDGET)): `Duration::MAX` means "until a
    /// probe may go in 30 years", not a panic.
    pub max_break_duration: Duration,
    /// Each break is shortened by a random fraction up to this (default 0.2).
    pub break_jitter: f64,
    /// Calls let through while half-open, at a time; as many must succeed to close the
    /// circuit (default 1).
    pub half_open_probes: u32,
    /// The lease of a half-open circuit's probes (default 60 s, the longest break): when
    /// none has answered within this of the last one let through, they count as failed
    /// and the circuit opens again, for a longer break (their late answers do not count).
    /// Meanwhile refusals say when the lease ends. At least 1 ms, at most 30 years.
    pub probe_timeout: Duration,
    /// A [`Broken`](super::Outcome::Broken) outcome opens the circuit at once, whatever
    /// the window says (default true). When false it counts as a failure.
    pub open_on_broken: bool,
    /// Count [`ClientFault`](super::Outcome::ClientFault)s as failures (default false:
    /// they are ignored).
    pub count_client_faults: bool,
    /// Count [`TargetError`](super::Outcome::TargetError)s as failures for every key
    /// (default false: they count as successes).
    pub count_target_errors: bool,
    /// Keys whose target errors count as failures, for targets known to fail
    /// deterministically (default none).
    pub target_error_keys: HashSet<String>,
    /// The most keys tracked at once (default 10,000). Keys idle for a whole window
    /// (closed, or open or half-open a window past their break) are dropped first; past
    /// the cap a new key is not guarded.
    pub max_keys: usize,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_ratio: 0.5,
            minimum_calls: 10,
            sampling_window: Duration::from_secs(30),
            break_duration: Duration::from_secs(5),
            max_break_duration: Duration::from_secs(60),
            break_jitter: 0.2,
            half_open_probes: 1,
            probe_timeout: Duration::from_secs(60),
            open_on_broken: true,
            count_client_faults: false,
            count_target_errors: false,
            target_error_keys: HashSet::new(),
            max_keys: 10_000,
        }
    }
}

impl CircuitBreakerConfig {
    /// Counts the target errors of this key as failures (a function known to fail
    /// deterministically when it fails at all).
    ///
    /// ```
    /// use invoke_layers::circuit_breaker::CircuitBreakerConfig;
    /// let config = CircuitBreakerConfig::default().count_target_errors_of("payments");
    /// assert!(config.target_error_keys.contains("payments"));
    /// ```
    pub fn count_target_errors_of(mut self, key: impl Into<String>) -> Self {
        self.target_error_keys.insert(key.into());
        self
    }

    /// The configuration with every value in its range (a zero or NaN where a positive
    /// number is needed takes the smallest sensible value).
    pub(crate) fn normalized(mut self) -> Self {
        let defaults = Self::default();
        if self.failure_ratio.is_nan() || self.failure_ratio <= 0.0 {
            self.failure_ratio = defaults.failure_ratio;
        }
        self.failure_ratio = self.failure_ratio.min(1.0);
        self.minimum_calls = self.minimum_calls.max(1);
        // Ten buckets of at least a microsecond each.
        self.sampling_window = self.sampling_window.max(Duration::from_micros(10));
        // `Duration::MAX` means "never" elsewhere in the crate: a break that long is
        // capped like a deadline, so that the time it ends can be computed.
        self.break_duration = self.break_duration.min(MAX_BUDGET);
        self.max_break_duration = self
            .max_break_duration
            .min(MAX_BUDGET)
            .max(self.break_duration);
        if self.break_jitter.is_nan() || self.break_jitter < 0.0 {
            self.break_jitter = 0.0;
        }
        self.break_jitter = self.break_jitter.min(1.0);
        self.half_open_probes = self.half_open_probes.max(1);
        self.probe_timeout = self
            .probe_timeout
            .clamp(Duration::from_millis(1), MAX_BUDGET);
        self.max_keys = self.max_keys.max(1);
        self
    }

    /// The break after `opens` consecutive openings, before jitter.
    pub(crate) fn break_for(&self, opens: u32) -> Duration {
        let doublings = opens.saturating_sub(1).min(30);
        self.break_duration
            .saturating_mul(1u32 << doublings)
            .min(self.max_break_duration)
    }

    /// Whether the target errors of `key` count as failures.
    pub(crate) fn counts_target_errors(&self, key: &str) -> bool {
        self.count_target_errors || self.target_error_keys.contains(key)
    }
}
