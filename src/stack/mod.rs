//! The invoke stack: which layers a call goes through, in which order.
//!
//! ```text
//! per operation:  trace -> deadline -> rate-limit -> retry
//! per attempt:    attempt-trace -> rate-limit-feedback -> attempt-timeout -> sign
//!                 -> user-agent -> recursion-detection
//! then:           the transport (hyper)
//! ```
//!
//! With a circuit breaker ([`InvokeClientBuilder::circuit_breaker`](crate::InvokeClientBuilder::circuit_breaker)),
//! the operation slot `circuit-breaker` sits between `trace` and `deadline`.
//!
//! Two ways to build it:
//!
//! 1. **Static composition** (what [`InvokeClient`](crate::InvokeClient) uses by default):
//!    every layer is public, so the stack is a `tower::ServiceBuilder` recipe with no boxing
//!    and no dynamic dispatch:
//!
//!    ```
//!    use std::time::Duration;
//!    use tower::ServiceBuilder;
//!    use invoke_stack::classify::LambdaClassifier;
//!    use invoke_stack::layers::rate_limit::RateLimitLayer;
//!    use invoke_stack::layers::retry::RetryLayer;
//!    use invoke_stack::layers::sigv4::{Credentials, SigV4Layer, SigningConfig};
//!    use invoke_stack::layers::timeout::{DeadlineLayer, TimeoutLayer};
//!    use invoke_stack::layers::trace::TraceLayer;
//!    use invoke_stack::telemetry::LambdaTrace;
//!    use invoke_stack::transport::{HyperTransport, TransportConfig};
//!
//!    # fn main() -> Result<(), Box<dyn std::error::Error>> {
//!    let limiter = RateLimitLayer::builder().build()?;
//!    let stack = ServiceBuilder::new()
//!        .layer(TraceLayer::new(LambdaTrace::operation("us-east-1")))
//!        .layer(DeadlineLayer::new(Duration::from_secs(30)))
//!        .layer(limiter.clone())
//!        .layer(RetryLayer::new(LambdaClassifier::default()))
//!        .layer(TraceLayer::new(LambdaTrace::attempt()))
//!        .layer(limiter.feedback(LambdaClassifier::default()))
//!        .layer(TimeoutLayer::per_request())
//!        .layer(SigV4Layer::new(Credentials::from_keys("AKID", "SECRET", None), SigningConfig::new("us-east-1")))
//!        .service(HyperTransport::new(TransportConfig::default())?);
//!    # let _ = stack; Ok(()) }
//!    ```
//!
//! 2. **A named stack** ([`InvokeStack`]), like the JavaScript SDK's `middlewareStack`:
//!    each slot has a name and a [`Step`]; add, insert before or after a named slot,
//!    remove or replace one, and [`identify`](InvokeStack::identify) lists the resolved
//!    order. Each slot is boxed (one allocation and one dynamic call per layer per call;
//!    `benches/load.rs` measures it against the static stack).
//!
//! ```
//! use invoke_stack::stack::{InvokeStack, Step};
//! use invoke_stack::InvokeClient;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = InvokeClient::builder()
//!     .region("us-east-1")
//!     .named_stack(|stack: &mut InvokeStack| {
//!         stack.remove("rate-limit-feedback").unwrap();
//!         stack
//!             .add_before("sign", "stamp", tower::layer::layer_fn(|s| s))
//!             .unwrap();
//!     })
//!     .build()?;
//! assert_eq!(
//!     client.identify(),
//!     [
//!         "trace (operation)", "deadline (operation)", "rate-limit (operation)", "retry (operation)",
//!         "attempt-trace (attempt)", "attempt-timeout (attempt)", "stamp (attempt)", "sign (attempt)",
//!         "user-agent (attempt)", "recursion-detection (attempt)",
//!     ]
//! );
//! # Ok(()) }
//! ```

pub mod identity;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::error::InvokeError;

/// A boxed service of the named stack: every slot takes and returns one.
pub type BoxService = BoxCloneSyncService<http::Request<Bytes>, http::Response<Bytes>, InvokeError>;

type LayerFn = Arc<dyn Fn(BoxService) -> BoxService + Send + Sync>;

/// Where a slot runs: once per operation, or on every attempt.
///
/// The stack's retry slot (added with [`InvokeStack::add_retry`]) is the boundary:
/// operation slots wrap it, attempt slots sit inside it, so an operation slot sees a
/// call once however many attempts it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Once per call, outside the retry layer.
    Operation,
    /// On every attempt, inside the retry layer.
    Attempt,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Operation => "operation",
            Step::Attempt => "attempt",
        })
    }
}

/// A change to the named stack could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// No slot has this name.
    #[error("no slot named {0:?} in the stack")]
    NoSuchSlot(String),
    /// A slot with this name exists already.
    #[error("a slot named {0:?} is already in the stack")]
    DuplicateName(String),
    /// The stack has a retry slot already (named here); it can have one.
    #[error("the stack already has a retry slot, {0:?}")]
    SecondRetry(String),
}

#[derive(Clone)]
struct Slot {
    name: String,
    step: Step,
    /// The retry slot: the last operation slot, which drives the attempt slots.
    retry: bool,
    layer: LayerFn,
}

/// A named, ordered stack of layers. Outermost first: operation slots, then the retry
/// slot (if any), then attempt slots.
///
/// Where a new slot lands:
///
/// | call | lands |
/// |---|---|
/// | [`add`](Self::add)`(_, Step::Operation, _)` | innermost operation slot: just outside the retry slot |
/// | [`add`](Self::add)`(_, Step::Attempt, _)` | innermost attempt slot: just outside the transport |
/// | [`add_before`](Self::add_before)`("retry", …)` | an operation slot, just outside retry |
/// | [`add_after`](Self::add_after)`("retry", …)` | an attempt slot, just inside retry |
/// | [`add_before`](Self::add_before) / [`add_after`](Self::add_after) any other slot | next to it, in its step |
///
/// ```
/// use invoke_stack::stack::{InvokeStack, Step};
/// let noop = || tower::layer::layer_fn(|s| s);
/// let mut stack = InvokeStack::new();
/// stack.add("sign", Step::Attempt, noop())?;
/// stack.add_retry("retry", noop())?;
/// stack.add("trace", Step::Operation, noop())?;
/// stack.add_after("retry", "attempt-trace", noop())?;
/// stack.add_before("retry", "audit", noop())?;
/// assert_eq!(
///     stack.identify(),
///     ["trace (operation)", "audit (operation)", "retry (operation)",
///      "attempt-trace (attempt)", "sign (attempt)"]
/// );
/// # Ok::<(), invoke_stack::stack::StackError>(())
/// ```
#[derive(Clone, Default)]
pub struct InvokeStack {
    slots: Vec<Slot>,
}

impl fmt::Debug for InvokeStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.identify()).finish()
    }
}

/// A tower layer that can be a slot of the named stack: it wraps a [`BoxService`], and
/// its service's errors convert into [`InvokeError`]. Implemented for every such layer:
/// invoke-stack's own, tower's middleware that passes the inner error through, and any
/// layer failing with a boxed error (`tower::BoxError`, as tower's `Timeout` and
/// `LoadShed` do). A boxed `InvokeError` comes back as itself; any other boxed error
/// becomes [`InvokeErrorKind::Layer`](crate::InvokeErrorKind::Layer), its source kept.
pub trait StackLayer: Send + Sync + 'static {
    /// The layer as a boxing function.
    fn into_slot(self) -> Arc<dyn Fn(BoxService) -> BoxService + Send + Sync>;
}

impl<L> StackLayer for L
where
    L: Layer<BoxService> + Send + Sync + 'static,
    L::Service: Service<http::Request<Bytes>, Response = http::Response<Bytes>>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as Service<http::Request<Bytes>>>::Future: Send + 'static,
    <L::Service as Service<http::Request<Bytes>>>::Error: Into<InvokeError>,
{
    fn into_slot(self) -> LayerFn {
        Arc::new(move |inner| BoxCloneSyncService::new(self.layer(inner).map_err(Into::into)))
    }
}

impl InvokeStack {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    fn index(&self, name: &str) -> Result<usize, StackError> {
        self.slots
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| StackError::NoSuchSlot(name.to_owned()))
    }

    fn check_new(&self, name: &str) -> Result<(), StackError> {
        if self.slots.iter().any(|s| s.name == name) {
            Err(StackError::DuplicateName(name.to_owned()))
        } else {
            Ok(())
        }
    }

    /// Adds a layer as the innermost slot of its step: an operation slot just outside the
    /// retry slot (or, without one, before the attempt slots), an attempt slot just
    /// outside the transport.
    pub fn add<L: StackLayer>(
        &mut self,
        name: &str,
        step: Step,
        layer: L,
    ) -> Result<&mut Self, StackError> {
        self.check_new(name)?;
        let at = match step {
            Step::Operation => self
                .slots
                .iter()
                .position(|s| s.retry || s.step == Step::Attempt)
                .unwrap_or(self.slots.len()),
            Step::Attempt => self.slots.len(),
        };
        self.insert(at, name, step, false, layer.into_slot());
        Ok(self)
    }

    /// Adds the retry slot: the boundary between the operation slots (outside it) and
    /// the attempt slots (inside it), which it runs once per attempt. A stack has at
    /// most one; it is listed as an operation slot.
    pub fn add_retry<L: StackLayer>(
        &mut self,
        name: &str,
        layer: L,
    ) -> Result<&mut Self, StackError> {
        self.check_new(name)?;
        if let Some(existing) = self.slots.iter().find(|s| s.retry) {
            return Err(StackError::SecondRetry(existing.name.clone()));
        }
        let at = self
            .slots
            .iter()
            .position(|s| s.step == Step::Attempt)
            .unwrap_or(self.slots.len());
        self.insert(at, name, Step::Operation, true, layer.into_slot());
        Ok(self)
    }

    /// Inserts a layer just outside the slot `existing`, in the same step (outside the
    /// retry slot: an operation slot).
    pub fn add_before<L: StackLayer>(
        &mut self,
        existing: &str,
        name: &str,
        layer: L,
    ) -> Result<&mut Self, StackError> {
        let at = self.index(existing)?;
        self.check_new(name)?;
        let step = self.slots[at].step;
        self.insert(at, name, step, false, layer.into_slot());
        Ok(self)
    }

    /// Inserts a layer just inside the slot `existing`, in the same step (inside the
    /// retry slot: an attempt slot).
    pub fn add_after<L: StackLayer>(
        &mut self,
        existing: &str,
        name: &str,
        layer: L,
    ) -> Result<&mut Self, StackError> {
        let at = self.index(existing)?;
        self.check_new(name)?;
        let step = if self.slots[at].retry {
            Step::Attempt
        } else {
            self.slots[at].step
        };
        self.insert(at + 1, name, step, false, layer.into_slot());
        Ok(self)
    }

    fn insert(&mut self, at: usize, name: &str, step: Step, retry: bool, layer: LayerFn) {
        self.slots.insert(
            at,
            Slot {
                name: name.to_owned(),
                step,
                retry,
                layer,
            },
        );
    }

    /// Removes a slot.
    pub fn remove(&mut self, name: &str) -> Result<&mut Self, StackError> {
        let at = self.index(name)?;
        self.slots.remove(at);
        Ok(self)
    }

    /// Replaces the layer of a slot, keeping its name, step and place (the retry slot
    /// stays the boundary).
    pub fn replace<L: StackLayer>(
        &mut self,
        name: &str,
        layer: L,
    ) -> Result<&mut Self, StackError> {
        let at = self.index(name)?;
        self.slots[at].layer = layer.into_slot();
        Ok(self)
    }

    /// The resolved order, outermost first: `"name (step)"`.
    pub fn identify(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| format!("{} ({})", s.name, s.step))
            .collect()
    }

    /// Wraps `inner` (the transport) in every slot, innermost first.
    pub fn build(&self, inner: BoxService) -> BoxService {
        self.slots
            .iter()
            .rev()
            .fold(inner, |svc, slot| (slot.layer)(svc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> impl Layer<BoxService, Service = BoxService> + Send + Sync + 'static {
        tower::layer::layer_fn(|s: BoxService| s)
    }

    #[test]
    fn ordering_rules() {
        let mut s = InvokeStack::new();
        s.add("attempt-a", Step::Attempt, noop()).unwrap();
        s.add("op-a", Step::Operation, noop()).unwrap();
        s.add("op-b", Step::Operation, noop()).unwrap();
        s.add("attempt-b", Step::Attempt, noop()).unwrap();
        assert_eq!(
            s.identify(),
            [
                "op-a (operation)",
                "op-b (operation)",
                "attempt-a (attempt)",
                "attempt-b (attempt)"
            ]
        );
        s.add_before("attempt-b", "x", noop()).unwrap();
        s.add_after("op-a", "y", noop()).unwrap();
        assert_eq!(
            s.identify(),
            [
                "op-a (operation)",
                "y (operation)",
                "op-b (operation)",
                "attempt-a (attempt)",
                "x (attempt)",
                "attempt-b (attempt)"
            ]
        );
        s.remove("y").unwrap().replace("x", noop()).unwrap();
        assert_eq!(s.identify().len(), 5);
        assert_eq!(
            s.remove("nope").unwrap_err(),
            StackError::NoSuchSlot("nope".into())
        );
        assert_eq!(
            s.add("op-a", Step::Attempt, noop()).unwrap_err(),
            StackError::DuplicateName("op-a".into())
        );
    }

    /// Issue 16, item 1: the retry slot is the boundary. Operation slots land outside it,
    /// attempt slots inside, and `add_before`/`add_after` next to it take its sides.
    #[test]
    fn operation_slots_wrap_the_retry_slot() {
        let mut s = InvokeStack::new();
        s.add("trace", Step::Operation, noop()).unwrap();
        s.add_retry("retry", noop()).unwrap();
        s.add("sign", Step::Attempt, noop()).unwrap();
        s.add("late-op", Step::Operation, noop()).unwrap();
        s.add_before("retry", "outside", noop()).unwrap();
        s.add_after("retry", "inside", noop()).unwrap();
        assert_eq!(
            s.identify(),
            [
                "trace (operation)",
                "late-op (operation)",
                "outside (operation)",
                "retry (operation)",
                "inside (attempt)",
                "sign (attempt)"
            ]
        );
        assert_eq!(
            s.add_retry("again", noop()).unwrap_err(),
            StackError::SecondRetry("retry".into())
        );
        // Without a retry slot, operation slots go before the attempt slots.
        s.remove("retry").unwrap();
        s.add("last-op", Step::Operation, noop()).unwrap();
        assert_eq!(s.identify()[3], "last-op (operation)");
        s.add_retry("retry", noop()).unwrap();
        assert_eq!(s.identify()[4], "retry (operation)");
    }
}
