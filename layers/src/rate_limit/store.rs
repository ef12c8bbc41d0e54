//! Limits shared by many processes: a [`SharedStore`] holds the rate cells and the
//! concurrency slots, so a fleet of workers calling one function stays within one
//! limit, as Lambda counts it (per function, across every caller).
//!
//! Without a store (the default) every limit is local to the process, as before. With
//! one ([`RateLimitBuilder::shared`](super::RateLimitBuilder::shared)):
//!
//! - **Rates** (global, per key, a key's own): one atomic call to the store takes a cell
//!   of the key's rate and of the global rate together, or says how long until both have
//!   one. Same semantics as the local cells: burst, wait or fail fast, the earliest time
//!   on a refusal, waits bounded by the deadline and the maximum wait. Callers of one key
//!   in a process queue, and only the head of the queue asks the store again.
//! - **Concurrency cap per key**: a call first takes a local slot (so callers in one
//!   process queue first come, first served, and a process never asks for more than the
//!   cap), then its rate cells and a *lease* on a slot in the store together, in one
//!   round trip (a call that finds every slot leased takes no cell), with a TTL
//!   ([`SharedLimits::lease_ttl`]). A task renews the lease every third of its TTL while
//!   the call runs (a 15-minute call keeps its slot); the lease is released when the
//!   response arrives or the call fails (before the answer is returned, waiting for the
//!   store at most its timeout, and not at all while it is marked down), or when the
//!   call's future is dropped (then in a spawned task: `drop` never waits). A process killed while holding slots loses them only until
//!   their TTL ends. A call refused a lease tries again every
//!   [`SharedLimits::poll`] (with jitter) within its wait budget: waiters in different
//!   processes are not served in order.
//! - **Adaptive limits stay per process**: see the README ("Fleet-wide limits") for why.
//!
//! # When the store fails
//!
//! Every store call is bounded by [`SharedLimits::timeout`] (default 100 ms), and by the
//! operation [`Deadline`] when that is sooner: the time counts
//! against the deadline like any wait. A call that fails or times out marks the store
//! down for [`SharedLimits::retry_after`] (default 1 s), logged once at WARN
//! (`shared rate-limit store unavailable`); meanwhile no call waits for it. Then
//! ([`OnStoreFailure`]):
//!
//! - [`OnStoreFailure::FailOpen`] (the default): the call is limited by the local
//!   limiter alone, with the same limits (so a fleet of `N` processes may send up to `N`
//!   times the shared limits until the store returns);
//! - [`OnStoreFailure::FailClosed`]: the call is refused with [`RateLimited`] whose
//!   reason is [`Refusal::StoreUnavailable`].
//!
//! The first call after `retry_after` tries the store again; when it answers, sharing
//! resumes (logged at INFO, `shared rate-limit store available again`).
//! [`RateLimitLayer::store_failures`](super::RateLimitLayer::store_failures) counts the
//! failures.
//!
//! [`RateLimited`]: super::RateLimited

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{LimitKind, RateLimited, Refusal};
use super::limits::{nanos, KeyState, Limits};
use super::wait::{self, Budget, Slot};
use crate::deadline::Deadline;

/// The future a [`SharedStore`] returns: owned (`'static`), so a release can be spawned
/// from `drop`.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// A store call failed (the store is unreachable, answered an error, or timed out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// An error with a message. It must hold no secret (no password of a URL): it is
    /// logged.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The call did not answer in time.
    pub fn timeout() -> Self {
        Self::new("the store did not answer in time")
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared rate-limit store: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// One rate cell to take in the store: a name (the store adds its namespace), and the
/// cell's interval and burst as the local limiter has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellSpec {
    /// `rate-global`, or `rate:` followed by the key.
    pub name: String,
    /// One more call every `interval`.
    pub interval: Duration,
    /// Calls at once.
    pub burst: u32,
}

/// A lease to take with the cells: one of `cap` slots of `key`, for `ttl` unless
/// renewed, under the lease id `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSpec {
    /// The key (the function).
    pub key: String,
    /// Slots of the key.
    pub cap: usize,
    /// How long the lease lasts unless renewed.
    pub ttl: Duration,
    /// The lease's id (random, unique per call).
    pub id: String,
}

/// The store's answer to [`SharedStore::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The cells and the lease were taken.
    Admitted,
    /// Nothing was taken: every slot is leased (expired leases do not count).
    Full,
    /// Nothing was taken: a cell would have one in this long.
    RateWait(Duration),
}

/// A place where many processes keep their rate cells and concurrency leases, reached
/// with one round trip per operation. [`RedisStore`](super::redis::RedisStore) (feature
/// `redis`) is the one that ships; tests can supply their own.
///
/// Each operation must be atomic in the store, and should use the store's clock, not the
/// caller's (processes' clocks differ).
pub trait SharedStore: Send + Sync + 'static {
    /// Takes one cell of each rate in `cells` and the lease, all together or nothing: a
    /// call's whole admission in one round trip. The lease is checked first: a call
    /// that finds every slot taken takes no cell.
    fn admit(&self, cells: Vec<CellSpec>, lease: Option<LeaseSpec>) -> StoreFuture<Admission>;
    /// Extends a lease to `ttl` from now; `false` if it had expired (it is then gone).
    fn renew(&self, key: &str, ttl: Duration, lease: &str) -> StoreFuture<bool>;
    /// Gives a lease back.
    fn release(&self, key: &str, lease: &str) -> StoreFuture<()>;
}

/// What a call does when the store cannot be reached in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnStoreFailure {
    /// Use the local limiter alone (the same limits, per process) until the store is
    /// back. Calls go on; the fleet may exceed the shared limits meanwhile.
    #[default]
    FailOpen,
    /// Refuse the call ([`Refusal::StoreUnavailable`]): the shared limits are never
    /// exceeded, and nothing is sent while the store is down.
    FailClosed,
}

/// Where and how limits are shared: a store and what to do when it fails. Give it to
/// [`RateLimitBuilder::shared`](super::RateLimitBuilder::shared).
///
/// ```
/// use std::time::Duration;
/// use invoke_layers::rate_limit::{store::{OnStoreFailure, SharedLimits}, RateLimitLayer};
/// # use invoke_layers::rate_limit::store::{Admission, CellSpec, LeaseSpec, SharedStore, StoreFuture};
/// # struct MyStore;
/// # impl SharedStore for MyStore {
/// #     fn admit(&self, _: Vec<CellSpec>, _: Option<LeaseSpec>) -> StoreFuture<Admission> { Box::pin(async { Ok(Admission::Admitted) }) }
/// #     fn renew(&self, _: &str, _: Duration, _: &str) -> StoreFuture<bool> { Box::pin(async { Ok(true) }) }
/// #     fn release(&self, _: &str, _: &str) -> StoreFuture<()> { Box::pin(async { Ok(()) }) }
/// # }
/// let layer = RateLimitLayer::builder()
///     .concurrency_per_key(8)
///     .shared(
///         SharedLimits::new(MyStore)
///             .on_failure(OnStoreFailure::FailClosed)
///             .timeout(Duration::from_millis(50)),
///     )
///     .build()?;
/// assert_eq!(layer.store_failures(), Some(0));
/// # Ok::<(), invoke_layers::rate_limit::InvalidLimit>(())
/// ```
#[derive(Clone)]
pub struct SharedLimits {
    pub(crate) store: Arc<dyn SharedStore>,
    pub(crate) on_failure: OnStoreFailure,
    pub(crate) timeout: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) poll: Duration,
}

impl fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimits")
            .field("on_failure", &self.on_failure)
            .field("timeout", &self.timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("retry_after", &self.retry_after)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Limits shared through `store`: fail open, 100 ms per store call, leases of 30 s
    /// (renewed every 10 s), the store skipped for 1 s after a failure, a refused lease
    /// tried again every 10 ms (± 50 %).
    pub fn new(store: impl SharedStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Limits shared through Redis at `url`, every key under `namespace` (feature
    /// `redis`): [`RedisStore::open`](super::redis::RedisStore::open) with the defaults
    /// of [`new`](Self::new).
    ///
    /// ```
    /// use invoke_layers::rate_limit::{store::SharedLimits, RateLimitLayer};
    /// let layer = RateLimitLayer::builder()
    ///     .concurrency_per_key(8)
    ///     .shared(SharedLimits::redis("redis://127.0.0.1:6379/", "orders-workers")?)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(url: &str, namespace: &str) -> Result<Self, super::redis::InvalidRedisUrl> {
        Ok(Self::new(super::redis::RedisStore::open(url, namespace)?))
    }

    /// [`new`](Self::new) with a store already shared.
    pub fn from_arc(store: Arc<dyn SharedStore>) -> Self {
        Self {
            store,
            on_failure: OnStoreFailure::FailOpen,
            timeout: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(30),
            retry_after: Duration::from_secs(1),
            poll: Duration::from_millis(10),
        }
    }

    /// Fail open (default) or closed when the store fails.
    pub fn on_failure(mut self, on_failure: OnStoreFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// The longest one store call may take (default 100 ms); the operation deadline
    /// bounds it too. A store call that takes longer counts as a failure.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a lease on a concurrency slot lasts unless renewed (default 30 s; it is
    /// renewed every third of it while the call runs). The slots of a killed process
    /// come back after this long.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long the store is skipped after a failure (default 1 s): calls meanwhile fail
    /// open or closed at once, without waiting for the store's timeout.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// How often a call refused a lease asks again (default 10 ms, ± 50 % jitter).
    pub fn poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Whether the settings can be enforced: timeouts, TTL and poll above zero, and
    /// the lease TTL at least a millisecond (the store's clock unit).
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.timeout.is_zero() {
            Some("the store timeout must be above 0")
        } else if self.lease_ttl < Duration::from_millis(3) {
            Some("the lease TTL must be at least 3 ms")
        } else if self.lease_ttl > Duration::from_secs(24 * 3600) {
            Some("the lease TTL must be at most a day (leases are renewed while calls run)")
        } else if self.poll.is_zero() {
            Some("the poll interval must be above 0")
        } else {
            None
        }
    }
}

/// The shared limits of a limiter, and whether the store is up.
pub(crate) struct Shared {
    pub cfg: SharedLimits,
    pub health: Arc<Health>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("cfg", &self.cfg)
            .field("down", &self.health.down)
            .finish_non_exhaustive()
    }
}

/// Whether the store is up, shared with the leases (their renewals and releases report
/// failures too).
pub(crate) struct Health {
    origin: Instant,
    /// Until when the store is skipped (nanoseconds since `origin`; 0: up).
    down_until: AtomicU64,
    down: AtomicBool,
    failures: AtomicU64,
    retry_after: Duration,
    on_failure: OnStoreFailure,
}

impl Health {
    /// Whether the store is skipped now, after a recent failure.
    fn skipped(&self) -> bool {
        nanos(self.origin.elapsed()) < self.down_until.load(Ordering::Relaxed)
    }

    fn answered(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("shared rate-limit store available again: limits shared");
        }
    }

    /// Counts a failure and skips the store for `retry_after`; the first failure after
    /// a success is logged at WARN.
    fn failed(&self, error: &StoreError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let until = nanos(self.origin.elapsed())
            .saturating_add(nanos(self.retry_after))
            .max(1);
        self.down_until.store(until, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %error,
                on_failure = ?self.on_failure,
                retry_after_ms = self.retry_after.as_millis() as u64,
                "shared rate-limit store unavailable"
            );
        }
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Why a store call gave no answer.
enum Unanswered {
    /// The store failed (now or lately): fail open or closed.
    Failed,
    /// The wait budget ended first.
    Budget,
}

impl Shared {
    pub(crate) fn new(cfg: SharedLimits) -> Self {
        let health = Arc::new(Health {
            origin: Instant::now(),
            down_until: AtomicU64::new(0),
            down: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            retry_after: cfg.retry_after,
            on_failure: cfg.on_failure,
        });
        Self { cfg, health }
    }

    /// Runs one store call within the store timeout and the budget. The store is
    /// skipped while it is marked down.
    async fn call<T>(
        &self,
        budget: &Budget,
        fut: impl FnOnce() -> StoreFuture<T>,
    ) -> Result<T, Unanswered> {
        if self.health.skipped() {
            return Err(Unanswered::Failed);
        }
        let remaining = budget.remaining();
        let limit = remaining.map_or(self.cfg.timeout, |r| r.min(self.cfg.timeout));
        if limit.is_zero() {
            return Err(Unanswered::Budget);
        }
        let error = match tokio::time::timeout(limit, fut()).await {
            Ok(Ok(v)) => {
                self.health.answered();
                return Ok(v);
            }
            Ok(Err(e)) => e,
            Err(_) if limit < self.cfg.timeout => return Err(Unanswered::Budget),
            Err(_) => StoreError::timeout(),
        };
        self.health.failed(&error);
        Err(Unanswered::Failed)
    }

    fn refuse_failed(&self, budget: &Budget, key: Option<&str>, limit: LimitKind) -> RateLimited {
        budget.refuse_because(key, limit, None, Refusal::StoreUnavailable)
    }
}

/// The rate cells of a call (its key's, the global one) as the store names them.
fn cell_specs(limits: &Limits, state: Option<&KeyState>) -> Vec<CellSpec> {
    let mut cells = Vec::with_capacity(2);
    if let Some(s) = state {
        if let Some(c) = &s.rate {
            cells.push(CellSpec {
                name: format!("rate:{}", s.name),
                interval: Duration::from_nanos(c.interval()),
                burst: c.burst(),
            });
        }
    }
    if let Some(g) = &limits.global {
        cells.push(CellSpec {
            name: "rate-global".into(),
            interval: Duration::from_nanos(g.interval()),
            burst: g.burst(),
        });
    }
    cells
}

/// Takes the call's rate cells: in the store when the limiter has one, else locally.
pub(crate) async fn rate_cells(
    limits: &Limits,
    state: Option<&KeyState>,
    key: Option<&str>,
    budget: &Budget,
) -> Result<(), RateLimited> {
    let Some(shared) = &limits.shared else {
        return wait::rate_cells(limits, state, key, budget).await;
    };
    let cells = cell_specs(limits, state);
    if cells.is_empty() {
        return Ok(());
    }
    // Callers of one key in this process queue (first come, first served), and only the
    // head of the queue asks the store, once per cell time: the store sees one waiter
    // per process, not one per caller.
    let turn = state.map_or(&limits.unkeyed_turn, |s| &s.rate_turn);
    let mut held = None;
    loop {
        let answer = shared
            .call(budget, || shared.cfg.store.admit(cells.clone(), None))
            .await;
        match answer {
            // (`Full` cannot be the answer without a lease.)
            Ok(Admission::Admitted | Admission::Full) => return Ok(()),
            Ok(Admission::RateWait(wait)) => {
                if !budget.allows(wait) {
                    return Err(budget.refuse(key, LimitKind::Rate, Some(wait)));
                }
                if held.is_none() {
                    budget.jitter().await;
                    match budget.permit(turn).await {
                        Some(p) => held = Some(p),
                        None => return Err(budget.refuse(key, LimitKind::Rate, None)),
                    }
                    // The turn may have come after a wait: ask again at once.
                    continue;
                }
                // The heads of other processes' queues wake for the same cell: up to a
                // millisecond of jitter spreads them without leaving the cell unused.
                let spread = wait + Duration::from_micros(fastrand::u64(..1000));
                let pause = if budget.allows(spread) { spread } else { wait };
                budget.mark_waiting();
                tokio::time::sleep(pause).await;
            }
            Err(Unanswered::Budget) => return Err(budget.refuse(key, LimitKind::Rate, None)),
            Err(Unanswered::Failed) => {
                return match shared.cfg.on_failure {
                    OnStoreFailure::FailOpen => wait::rate_cells(limits, state, key, budget).await,
                    OnStoreFailure::FailClosed => {
                        Err(shared.refuse_failed(budget, key, LimitKind::Rate))
                    }
                };
            }
        }
    }
}

/// Admits a call before its first attempt: its rate cells, then a slot under its key's
/// static cap. Without a store, as the local limiter always did. With one: the rate cells
/// alone if the key has no cap; else a local slot (callers in this process queue first
/// come, first served, and a process never asks for more than the cap), then the cells
/// and a lease together, in one round trip.
pub(crate) async fn admit(
    limits: &Limits,
    state: Option<&Arc<KeyState>>,
    key: Option<&str>,
    budget: &Budget,
) -> Result<Option<Slot>, RateLimited> {
    let local_slot = |budget| async move {
        match (state, key) {
            (Some(s), Some(k)) => wait::static_slot(s, k, budget).await,
            _ => Ok(None),
        }
    };
    let (Some(shared), Some((state, key, cap))) = (
        &limits.shared,
        state
            .filter(|s| s.slots.is_some())
            .zip(key)
            .zip(limits.concurrency)
            .map(|((s, k), c)| (s, k, c)),
    ) else {
        rate_cells(limits, state.map(|s| &**s), key, budget).await?;
        return local_slot(budget).await;
    };
    let Some(mut slot) = wait::static_slot(state, key, budget).await? else {
        return Ok(None);
    };
    let cells = cell_specs(limits, Some(state));
    let lease = LeaseSpec {
        key: key.to_owned(),
        cap,
        ttl: shared.cfg.lease_ttl,
        id: format!("{:032x}", lease_id_bits()),
    };
    // An admission the store may have carried out although its answer never came (a
    // timeout, a cancelled call) would hold a fleet slot until the lease's TTL: the
    // guard releases it (a release of no lease is harmless).
    let mut orphan = OrphanGuard {
        store: Arc::clone(&shared.cfg.store),
        key,
        id: &lease.id,
        timeout: shared.cfg.timeout,
        armed: false,
    };
    loop {
        orphan.armed = true;
        let answer = shared
            .call(budget, || {
                shared.cfg.store.admit(cells.clone(), Some(lease.clone()))
            })
            .await;
        orphan.armed = answer.is_err();
        let pause = match answer {
            Ok(Admission::Admitted) => {
                orphan.armed = false;
                drop(orphan);
                slot.attach(Lease::start(shared, key, lease.id));
                return Ok(Some(slot));
            }
            Ok(Admission::RateWait(wait)) => {
                if !budget.allows(wait) {
                    return Err(budget.refuse(Some(key), LimitKind::Rate, Some(wait)));
                }
                let spread = wait + Duration::from_micros(fastrand::u64(..1000));
                if budget.allows(spread) {
                    spread
                } else {
                    wait
                }
            }
            Ok(Admission::Full) => {
                let pause = shared.cfg.poll.mul_f64(0.5 + fastrand::f64());
                if !budget.allows(pause) {
                    return Err(budget.refuse(Some(key), LimitKind::Concurrency, None));
                }
                pause
            }
            Err(Unanswered::Budget) => {
                return Err(budget.refuse(Some(key), LimitKind::Concurrency, None))
            }
            Err(Unanswered::Failed) => {
                return match shared.cfg.on_failure {
                    OnStoreFailure::FailOpen => {
                        wait::rate_cells(limits, Some(state), Some(key), budget).await?;
                        Ok(Some(slot))
                    }
                    OnStoreFailure::FailClosed => {
                        Err(shared.refuse_failed(budget, Some(key), LimitKind::Concurrency))
                    }
                };
            }
        };
        budget.mark_waiting();
        tokio::time::sleep(pause).await;
    }
}

/// A lease on a slot in the store, renewed by a task while held, released (by a spawned
/// task) when dropped.
/// Releases a lease whose admission was sent but not answered (see [`admit`]).
struct OrphanGuard<'a> {
    store: Arc<dyn SharedStore>,
    key: &'a str,
    id: &'a str,
    timeout: Duration,
    armed: bool,
}

impl Drop for OrphanGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let release = self.store.release(self.key, self.id);
            let timeout = self.timeout;
            rt.spawn(async move {
                let _ = tokio::time::timeout(timeout, release).await;
            });
        }
    }
}

pub(crate) struct Lease {
    store: Arc<dyn SharedStore>,
    health: Arc<Health>,
    key: Arc<str>,
    id: Arc<str>,
    timeout: Duration,
    renewal: Option<tokio::task::AbortHandle>,
    /// Released already (by [`release`](Self::release)): nothing to do on drop.
    released: bool,
}

impl Lease {
    fn start(shared: &Shared, key: &str, id: String) -> Self {
        let store = Arc::clone(&shared.cfg.store);
        let health = Arc::clone(&shared.health);
        let key: Arc<str> = Arc::from(key);
        let id: Arc<str> = Arc::from(id);
        let ttl = shared.cfg.lease_ttl;
        let timeout = shared.cfg.timeout;
        let renewal = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (store, health) = (Arc::clone(&store), Arc::clone(&health));
            let (key, id) = (Arc::clone(&key), Arc::clone(&id));
            rt.spawn(async move {
                let every = ttl / 3;
                loop {
                    tokio::time::sleep(every).await;
                    let error =
                        match tokio::time::timeout(timeout, store.renew(&key, ttl, &id)).await {
                            Ok(Ok(true)) => {
                                health.answered();
                                continue;
                            }
                            Ok(Ok(false)) => {
                                tracing::warn!(
                                    key = &*key,
                                    "concurrency lease expired before it was renewed; the call \
                                 goes on without it"
                                );
                                return;
                            }
                            Ok(Err(error)) => error,
                            Err(_) => StoreError::timeout(),
                        };
                    // Tried again at the next renewal, while the lease may still be valid.
                    tracing::warn!(key = &*key, %error, "concurrency lease not renewed");
                    health.failed(&error);
                }
            })
            .abort_handle()
        });
        Self {
            store,
            health,
            key,
            id,
            timeout,
            renewal,
            released: false,
        }
    }

    /// Releases the lease now, waiting for the store (at most its timeout): the slot is
    /// free before the caller has its answer, so its next call finds it, and a process
    /// that exits after its calls leaves no lease behind. While the store is marked down
    /// the release is left to a task (as on drop), so no answer waits for a store that
    /// is failing; a failure leaves the lease to its TTL.
    ///
    /// `deadline`: the operation's, if any. The answer is not held past it (the lease is
    /// then released in a task): a call that succeeded must not fail for its release.
    pub(crate) async fn release(mut self, deadline: Option<Deadline>) {
        let limit = deadline.map_or(self.timeout, |d| d.remaining().min(self.timeout));
        if self.health.skipped() || limit.is_zero() {
            return;
        }
        if let Some(r) = self.renewal.take() {
            r.abort();
        }
        let release = self.store.release(&self.key, &self.id);
        let outcome = match tokio::time::timeout(limit, release).await {
            Ok(outcome) => outcome,
            // The deadline's doing, not the store's: released in a task on drop.
            Err(_) if limit < self.timeout => return,
            Err(_) => Err(StoreError::timeout()),
        };
        // Only now: a release cancelled on the way (the caller dropped the call) is made
        // again, in a task, when the lease drops.
        self.released = true;
        if let Err(error) = outcome {
            tracing::debug!(key = &*self.key, %error, "concurrency lease not released");
            self.health.failed(&error);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(r) = self.renewal.take() {
            r.abort();
        }
        if self.released {
            return;
        }
        // Released off the caller's path; without a runtime the lease ends with its TTL.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let release = self.store.release(&self.key, &self.id);
            let timeout = self.timeout;
            rt.spawn(async move {
                let _ = tokio::time::timeout(timeout, release).await;
            });
        }
    }
}

/// A lease id's 128 bits, from the operating system's generator: fastrand's thread-local
/// state is copied into a forked child, and workers forked from one parent would then
/// share lease ids (one worker's release would free another's slot). If the generator
/// fails (it does not on supported platforms), fastrand's bits mixed with the process id
/// and the time.
fn lease_id_bits() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_ok() {
        return u128::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    fastrand::u128(..) ^ (u128::from(std::process::id()) << 64) ^ nanos
}

#[cfg(test)]
mod lease_id_tests {
    /// Review of issue 21: lease ids came from fastrand's thread-local state, which a
    /// forked child inherits. Reseeding fastrand to the same state, as a fork does, must
    /// not repeat an id.
    #[test]
    fn lease_ids_do_not_repeat_when_fastrands_state_does() {
        fastrand::seed(7);
        let a = super::lease_id_bits();
        fastrand::seed(7);
        let b = super::lease_id_bits();
        assert_ne!(a, b);
    }
}
