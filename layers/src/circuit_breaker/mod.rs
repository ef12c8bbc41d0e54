//! A circuit breaker per key: when a target is broken, calls to it fail at once instead
//! of each paying a round trip (or three, with retries); after a break, probe calls find
//! out whether it has recovered.
//!
//! # When to use it
//!
//! When a target can be broken in a way retries cannot fix and callers are better served
//! by an immediate error: for Lambda, a disabled KMS key, an invalid runtime, a VPC subnet
//! out of addresses, a function that errors on every call, or Lambda answering 5xx.
//! Resilience kits (Polly, resilience4j) put one in front of such calls; tower has none.
//!
//! # How it works
//!
//! One circuit per key ([`CircuitKey`] in the extensions by default, or any
//! [`ExtractKey`]; a request without a key goes through unguarded):
//!
//! - **Closed**: calls go through and their [`Outcome`]s are counted in a sliding
//!   sampling window (10 buckets). When the window holds at least `minimum_calls` and
//!   the share of failures reaches `failure_ratio`, the circuit **opens**. A
//!   [`Broken`](Outcome::Broken) outcome (a failure that cannot heal by itself) opens it
//!   at once.
//! - **Open**: calls fail immediately with [`CircuitOpen`] (key, since when, the rest of
//!   the break): they never reach the inner service. After the break the circuit is
//!   **half-open**. The break doubles each time a probe fails (up to a cap), shortened by
//!   a random jitter so that many clients do not probe together.
//! - **Half-open**: up to `half_open_probes` calls at a time go through; the others fail
//!   fast. As many successes close the circuit; one failure opens it again. A probe that
//!   is throttled, ignored or dropped frees its slot. Probes hold their slots on a lease
//!   (`probe_timeout`, 60 s): a probe to a target that hangs counts as failed when its
//!   lease ends (the circuit opens again, for a longer break), and refusals meanwhile
//!   carry the rest of the lease as their `retry_after`.
//!
//! What counts is the classifier's business ([`ClassifyCircuit`]); [`FromRetry`] derives
//! it from the retry layer's classification ([`ClassifyRetry`](crate::classify::ClassifyRetry)),
//! so both layers agree: server faults count, throttles never do (a rate limiter handles
//! those), nor do local errors ([`Outcome::Local`]), client faults only when configured, errors the target reports itself count
//! as successes unless configured (per key, for targets known to fail deterministically).
//!
//! A result counts only in the state its call was let through in: a slow call let
//! through while closed does not close a circuit that opened meanwhile.
//!
//! State changes are traced: `circuit opened` (WARN, with the reason, the window's
//! counts and the break), `circuit half-open` and `circuit closed` (INFO); refusals at
//! DEBUG. [`CircuitBreakerLayer::state`] reads a key's state.
//!
//! **Memory** is bounded: at most `max_keys` circuits; past the cap, a new key is not
//! guarded. Circuits idle for a whole window are dropped: closed ones unused for a window
//! (whose window is therefore empty), open ones whose break ended a window ago, half-open
//! ones with no probe in flight unused for a window; those with calls in flight are kept.
//! The O(keys) pass never runs inside a call: under tokio a call starts it on a task of
//! its own at most every 10 s (sooner when the cap is reached; the key that found the
//! cap full is not guarded, those after the pass are); elsewhere, call
//! [`CircuitBreakerLayer::maintain`] from time to time.
//!
//! # Defaults and why
//!
//! See [`CircuitBreakerConfig`]: failure ratio 0.5 over at least 10 calls in a 30 s
//! window; a 5 s break, doubling per failed probe up to 60 s, with 20 % jitter; one
//! probe at a time, on a 60 s lease; configuration errors open at once.
//!
//! # Where to place it
//!
//! Outside the retry layer: one decision per operation. An open circuit then refuses
//! before any attempt or backoff, the final failure of a retried operation counts once
//! (three attempts of one call are one failed call, not three), and the retry layer
//! never retries a refusal. Outside a rate limiter too, so that a refused call takes no
//! rate or concurrency permit.
//!
//! # `poll_ready`
//!
//! It forwards the inner service's readiness; the circuit is consulted in `call`, as it
//! depends on the request's key.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use invoke_layers::circuit_breaker::{
//!     CircuitBreakerConfig, CircuitBreakerError, CircuitBreakerLayer, CircuitKey, CircuitState,
//!     FromRetry,
//! };
//! use invoke_layers::retry::HttpClassifier;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::new(
//!     FromRetry(HttpClassifier),
//!     CircuitBreakerConfig { minimum_calls: 4, ..CircuitBreakerConfig::default() },
//! );
//! let sent = Arc::new(AtomicU32::new(0));
//! let s = sent.clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(breaker.clone())
//!     .service(service_fn(move |_req: http::Request<()>| {
//!         s.fetch_add(1, Ordering::SeqCst);
//!         async { Ok::<_, std::convert::Infallible>(http::Response::builder().status(503).body(()).unwrap()) }
//!     }));
//! let req = || {
//!     let mut r = http::Request::new(());
//!     r.extensions_mut().insert(CircuitKey("orders".into()));
//!     r
//! };
//! for _ in 0..4 {
//!     let resp = svc.ready().await.unwrap().call(req()).await.unwrap();
//!     assert_eq!(resp.status(), 503);
//! }
//! // Four failures out of four calls: open. The next call fails at once.
//! assert_eq!(breaker.state("orders"), CircuitState::Open);
//! let Err(CircuitBreakerError::Open(open)) = svc.ready().await.unwrap().call(req()).await else { panic!() };
//! assert_eq!((open.key.as_str(), open.retry_after.is_some()), ("orders", true));
//! assert_eq!(sent.load(Ordering::SeqCst), 4);
//! // After the break (at most 5 s), one probe goes through.
//! tokio::time::advance(Duration::from_secs(5)).await;
//! assert_eq!(breaker.state("orders"), CircuitState::HalfOpen);
//! # }
//! ```
//!
//! # Testing
//!
//! The breaker never sleeps: it reads the time through a [`Clock`] when a call comes.
//! Over tower-test mocks, use paused tokio time (the default [`TokioClock`] follows it)
//! and a fixed jitter ([`CircuitBreakerBuilder::jitter`]): breaks are then exact. Over
//! real sockets, where paused time cannot be used, give the breaker a [`ManualClock`]
//! and [`advance`](ManualClock::advance) it to end a break.

mod classify;
mod clock;
mod config;
mod error;
mod future;
mod key;
mod layer;
mod service;
mod state;

pub use classify::{ClassifyCircuit, FromRetry, Outcome};
pub use clock::{Clock, ManualClock, TokioClock};
pub use config::CircuitBreakerConfig;
pub use error::{CircuitBreakerError, CircuitOpen, CircuitState};
pub use future::ResponseFuture;
pub use key::{CircuitKey, ExtensionKey, ExtractKey};
pub use layer::{CircuitBreakerBuilder, CircuitBreakerLayer};
pub use service::CircuitBreaker;

#[cfg(test)]
mod tests;
