//! Client-side rate limiting: a global rate, a rate per key (GCRA cells, as
//! [governor](https://docs.rs/governor)'s), a concurrency cap per key, and an adaptive
//! per-key limit that backs off on throttles.
//!
//! - **Keys.** Lambda's limits are per function (reserved concurrency) and per account,
//!   so the limiter is keyed: by default the [`RateLimitKey`] in the request's extensions
//!   (`invoke-stack` puts the function name there: reserved concurrency covers all of a
//!   function's versions and aliases), or any [`KeyExtractor`]. One key can have a rate
//!   of its own ([`RateLimitBuilder::key_rate`]), in place of the per-key rate.
//! - **A key's rate and the global rate together.** A call takes a cell of its key's
//!   rate first, then one of the global rate. A call refused by its key takes nothing
//!   from the global rate, and a call refused by the global rate gives its key's cell
//!   back: a refusal leaves both rates as it found them, so callers waiting on a busy key
//!   never use up the global rate other keys need. Waiting calls queue per key, and only
//!   the head of a key's queue waits for the global rate, in turn with the heads of the
//!   other keys: a key with many callers counts as one, and each key waiting gets an
//!   equal share of the global rate (up to its own rate).
//! - **Rates count attempts** ([`RateCount`]): every attempt on the wire takes a cell,
//!   retries included, as the AWS SDKs' client rate limiter and Lambda's own limits
//!   count. The first attempt takes its cell before the operation; each retry takes one
//!   in the [`feedback`](RateLimitLayer::feedback) layer, inside the retry layer (so
//!   without that layer only operations count). [`RateCount::Operations`] counts calls.
//! - **Wait or fail fast** ([`Mode`]). A call that must wait for a rate first sleeps a
//!   random part of the jitter, then queues. Waits never pass the operation
//!   [`Deadline`](crate::deadline::Deadline) nor the limiter's
//!   [maximum wait](RateLimitBuilder::max_wait) (default [`DEFAULT_MAX_WAIT`], so a call
//!   with no deadline never waits forever): a rate wait that would is refused at once with
//!   [`RateLimited`] carrying the earliest time a call could go; a wait in a queue that
//!   reaches either is refused then. Fail-fast returns the same error immediately. The
//!   error says why ([`Refusal`]) and how long the call waited. The request never left
//!   the machine.
//! - **Concurrency cap per key**: in-flight calls, like reserved concurrency. Waiters
//!   queue first come, first served (a slot freed while callers wait goes to the one that
//!   waited longest, never to a caller arriving just then). The slot is released when the
//!   response arrives, or when the call fails, is dropped or cancelled.
//! - **Adaptive** ([`Adaptive`]): each key's in-flight limit doubles every round of
//!   successful calls until its first throttle (slow start), then grows by one per round
//!   and is cut by 30 % on a throttle (at most once per round of calls), AIMD. A call
//!   still in flight after a second counts as a success (Lambda throttles at once), so
//!   the limit grows during long calls too; a key keeps its limit across idle gaps of up
//!   to 15 minutes. Why not CUBIC, as the AWS SDKs' adaptive mode (spec §4.4)? The SDKs
//!   limit a *send rate* for a whole client and probe it back along a cubic curve. Lambda's
//!   throttles come mostly from *concurrency* limits (reserved or account concurrency),
//!   so the quantity to control is in-flight calls per function, where the capacity is
//!   fixed and known to be stable; AIMD converges to it and stays, without CUBIC's
//!   time-based probing that overshoots a fixed limit again and again. The limiter learns
//!   from every attempt through the [`feedback`](RateLimitLayer::feedback) layer, placed
//!   inside the retry layer and using the retry layer's classification trait.
//! - **Shared by many processes** ([`RateLimitBuilder::shared`]): the rates and the
//!   concurrency cap kept in a [`store`] (Redis with the `redis` feature) so a fleet of
//!   workers stays within one limit; the adaptive limit stays per process.
//! - **Bounded memory.** The state of a key that no call refers to and that would be
//!   the same if made afresh (its rate cell full; its adaptive limit unused for
//!   [`Adaptive::forget_after`]) is dropped, so 100,000 distinct keys do not stay in
//!   memory. The pass runs on a task of its own, started by the first call 10 s after the
//!   last pass, never inside a call; it holds a weak reference, so it keeps no dropped
//!   limiter alive. With no tokio runtime it is not started: call
//!   [`RateLimitLayer::maintain`] yourself.
//!
//! # `poll_ready`
//!
//! It forwards the inner service's readiness. The limits are applied in the response
//! future, because keyed limits need the request; nothing is taken before `call`, so a
//! service made ready and then dropped holds no permit.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use invoke_layers::rate_limit::{Mode, Rate, RateLimitKey, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let limiter = RateLimitLayer::builder()
//!     .per_key(Rate::per_second(10))
//!     .concurrency_per_key(4)
//!     .mode(Mode::FailFast)
//!     .build()
//!     .expect("valid limits");
//! let svc = ServiceBuilder::new().layer(limiter).service(service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(()))
//! }));
//! let mut req = http::Request::new(());
//! req.extensions_mut().insert(RateLimitKey("orders".into()));
//! svc.oneshot(req).await.unwrap();
//! # }
//! ```
//!
//! # Testing
//!
//! The limiter runs on tokio's clock: with paused time, waits are exact and instant.

mod error;
mod feedback;
mod future;
mod gcra;
mod key;
mod layer;
mod limits;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod service;
mod shards;
pub mod store;
mod wait;

pub use error::{InvalidLimit, LimitKind, RateLimitError, RateLimited, Refusal};
pub use feedback::{Feedback, FeedbackLayer};
pub use future::ResponseFuture;
pub use key::{ExtensionKey, KeyExtractor, RateLimitKey};
pub use layer::{Mode, RateCount, RateLimitBuilder, RateLimitLayer, DEFAULT_MAX_WAIT};
pub use limits::{Adaptive, Rate};
pub use service::RateLimit;

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
