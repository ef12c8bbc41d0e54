use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::classify::RetryKind;

/// Token costs and capacity of the retry quota (spec §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Tokens at start, and at most (default 500).
    pub capacity: u32,
    /// Cost of retrying a throttle (default 5).
    pub throttle_cost: u32,
    /// Cost of retrying a transient failure or a timeout (default 10).
    pub transient_cost: u32,
    /// Cost of retrying a throttle whose `Retry-After` says when to come back (a wait of
    /// at least one second, `Retry-After`'s own unit); default 0.
    ///
    /// The quota stops retry storms against a failing service. A throttle that says when
    /// to come back is pacing, not failure: charging it drains the quota of a healthy
    /// client in a burst (the AWS SDKs let 217 of 300 calls fail that way) while the
    /// server asked for exactly those retries. It applies to throttles only: a 5xx with
    /// a `Retry-After` is still a failure, and a hint under a second (`0`, `0.001`)
    /// paces nothing (a proxy answering `429 Retry-After: 0` must still drain the
    /// quota).
    pub hinted_cost: u32,
    /// Tokens returned by a success at the first attempt (default 1).
    pub success_refund: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            capacity: 500,
            throttle_cost: 5,
            transient_cost: 10,
            hinted_cost: 0,
            success_refund: 1,
        }
    }
}

/// The least `Retry-After` that makes a throttle's retry free: one second, the unit of
/// the header's delay-seconds. A shorter hint paces nothing.
const MIN_PACING_HINT: Duration = Duration::from_secs(1);

/// Which bucket of a partitioned quota a request draws from; put it in the request's
/// extensions (e.g. the function name). Requests without one share the default bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RetryPartition(pub String);

/// A token bucket that limits retries; clones share it.
#[derive(Debug, Clone)]
pub struct RetryQuota {
    config: QuotaConfig,
    /// The bucket of an unpartitioned quota: lock-free on the hot path.
    single: Arc<AtomicU32>,
    buckets: Arc<Mutex<HashMap<String, u32>>>,
    partitioned: bool,
}

impl Default for RetryQuota {
    fn default() -> Self {
        Self::new(QuotaConfig::default())
    }
}

impl RetryQuota {
    /// One bucket for every request.
    pub fn new(config: QuotaConfig) -> Self {
        Self {
            config,
            single: Arc::new(AtomicU32::new(config.capacity)),
            buckets: Arc::default(),
            partitioned: false,
        }
    }

    /// One bucket per [`RetryPartition`].
    pub fn partitioned(config: QuotaConfig) -> Self {
        Self {
            partitioned: true,
            ..Self::new(config)
        }
    }

    /// The settings.
    pub fn config(&self) -> QuotaConfig {
        self.config
    }

    /// The partition's key, or `None` for the single bucket.
    fn key<'a>(&self, partition: Option<&'a RetryPartition>) -> Option<&'a str> {
        partition.filter(|_| self.partitioned).map(|p| p.0.as_str())
    }

    /// Applies `f` to a bucket's tokens; `f` returns the new count, or `None` to leave
    /// it. True when it changed.
    fn update(&self, partition: Option<&RetryPartition>, f: impl Fn(u32) -> Option<u32>) -> bool {
        match self.key(partition) {
            None => self
                .single
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, f)
                .is_ok(),
            Some(key) => {
                let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let tokens = b.entry(key.to_owned()).or_insert(self.config.capacity);
                match f(*tokens) {
                    Some(t) => {
                        *tokens = t;
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// The cost of one retry of this kind, given the server's `Retry-After`.
    pub fn cost(&self, kind: RetryKind, retry_after: Option<Duration>) -> u32 {
        match kind {
            RetryKind::Throttling if retry_after.is_some_and(|d| d >= MIN_PACING_HINT) => {
                self.config.hinted_cost
            }
            RetryKind::Throttling => self.config.throttle_cost,
            RetryKind::Transient => self.config.transient_cost,
        }
    }

    /// Takes `cost` tokens if there are enough.
    pub fn try_acquire(&self, partition: Option<&RetryPartition>, cost: u32) -> bool {
        self.update(partition, |t| t.checked_sub(cost))
    }

    /// Returns tokens after a success: `refund` (the last retry's cost) or, without
    /// retries, the success refund. Never above capacity.
    pub fn release(&self, partition: Option<&RetryPartition>, refund: Option<u32>) {
        let amount = refund.unwrap_or(self.config.success_refund);
        let cap = self.config.capacity;
        // At capacity (the common case) there is nothing to write.
        self.update(partition, |t| {
            (t < cap).then(|| t.saturating_add(amount).min(cap))
        });
    }

    /// Tokens left in a bucket.
    pub fn available(&self, partition: Option<&RetryPartition>) -> u32 {
        match self.key(partition) {
            None => self.single.load(Ordering::Acquire),
            Some(key) => {
                let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                b.get(key).copied().unwrap_or(self.config.capacity)
            }
        }
    }
}
