//! Periodic maintenance off the call path, shared by the layers that keep state per key
//! (the rate limiter and the circuit breaker).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Starts one maintenance pass if the last one (at `last_pass`, in the caller's clock
/// units) is at least `every` old, and this caller wins the race to claim it: `pass`
/// runs on a task of its own, holding only a weak reference to `owner`, so the caller
/// does O(1) work and a dropped owner is not kept alive. With no tokio runtime nothing
/// is spawned (the owner's `maintain` can be called by hand on other executors).
pub(crate) fn spawn_if_due<T: Send + Sync + 'static>(
    owner: &Arc<T>,
    last_pass: &AtomicU64,
    now: u64,
    every: u64,
    pass: fn(&T),
) {
    let last = last_pass.load(Ordering::Relaxed);
    if now.saturating_sub(last) < every
        || last_pass
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let owner = Arc::downgrade(owner);
        runtime.spawn(async move {
            if let Some(owner) = owner.upgrade() {
                pass(&owner);
            }
        });
    }
}
