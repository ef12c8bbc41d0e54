//! Generic tower middleware for AWS-style HTTP services.
//!
//! Each layer lives in its own module behind its own cargo feature (like tower-http) and
//! works on any `tower::Service<http::Request<B>>`: nothing here knows about Lambda. What
//! a layer needs to know about a response it asks through a small trait that the caller
//! implements.
//!
//! | module | feature | what it does |
//! |---|---|---|
//! | [`sigv4`] | `sigv4` | signs requests with AWS SigV4 (`aws-sigv4`), credentials from providers |
//! | [`rate_limit`] | `rate-limit` | rates (global, per key; GCRA), per-key concurrency caps, adaptive limits |
//! | `rate_limit::redis` | `redis` | the rates and concurrency caps shared by many processes through Redis |
//! | [`circuit_breaker`] | `circuit-breaker` | fails fast per key while a target is broken, probes, recovers |
//! | [`retry`] | `retry` | retries by failure class, backoff with jitter, `Retry-After`, quota, may-have-run |
//! | [`timeout`] | `timeout` | operation deadline (in the extensions) and per-attempt timeouts |
//! | [`trace`] | `trace` | operation and attempt spans with pluggable descriptions, no secrets |
//! | [`keepalive`] | `keepalive` | TCP keep-alive on the connections a connector opens |
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub mod circuit_breaker;
#[cfg(feature = "keepalive")]
#[cfg_attr(docsrs, doc(cfg(feature = "keepalive")))]
pub mod keepalive;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
#[cfg(feature = "sigv4")]
#[cfg_attr(docsrs, doc(cfg(feature = "sigv4")))]
pub mod sigv4;
#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
pub mod timeout;
#[cfg(feature = "trace")]
#[cfg_attr(docsrs, doc(cfg(feature = "trace")))]
pub mod trace;

#[cfg(any(feature = "rate-limit", feature = "circuit-breaker"))]
mod maintenance;

/// A response future was polled again after it had returned its result.
///
/// tower's own futures panic then; every future of this crate answers with this error
/// instead (inside its layer's error type), so a careless caller gets an error, not a
/// panic or a future that never wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolledAfterCompletion;

impl std::fmt::Display for PolledAfterCompletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("future polled after completion")
    }
}

impl std::error::Error for PolledAfterCompletion {}
