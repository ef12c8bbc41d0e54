//! Provider chains, the credentials cache, and the adapter for `aws-credential-types`
//! providers (aws-config's full chain: SSO, IMDS, ECS, web identity, ...).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::credentials::{
    Credentials, CredentialsFuture, EnvironmentProvider, ProvideCredentials,
    SharedCredentialsProvider,
};
use super::error::{CredentialsError, CredentialsErrorKind};
use super::profile::ProfileProvider;
use super::sign::{Clock, SystemClock};
use super::Env;

/// Tries providers in order: the first that has credentials wins. A provider that has
/// none (`NotLoaded`) passes to the next; any other error stops the chain, since it
/// means a source is configured but broken.
///
/// ```
/// use invoke_layers::sigv4::{Credentials, EnvironmentProvider, ProviderChain};
/// let chain = ProviderChain::first_try(EnvironmentProvider::new())
///     .or_else(Credentials::from_keys("AKIDFALLBACK", "secret", None));
/// # let _ = chain;
/// ```
#[derive(Clone, Debug)]
pub struct ProviderChain {
    providers: Vec<SharedCredentialsProvider>,
}

impl ProviderChain {
    /// A chain starting with `provider`.
    pub fn first_try(provider: impl ProvideCredentials) -> Self {
        Self {
            providers: vec![SharedCredentialsProvider::new(provider)],
        }
    }

    /// Adds a provider to try next.
    pub fn or_else(mut self, provider: impl ProvideCredentials) -> Self {
        self.providers
            .push(SharedCredentialsProvider::new(provider));
        self
    }

    /// The default chain, cached: environment variables, then the shared profile files.
    pub fn default_chain() -> CredentialsCache {
        Self::default_chain_with_env(Env::process())
    }

    /// The default chain reading its variables (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`,
    /// `AWS_CONFIG_FILE`, ...) from `env`.
    ///
    /// ```
    /// use invoke_layers::sigv4::{Env, ProviderChain};
    /// let chain = ProviderChain::default_chain_with_env(Env::from_pairs([("HOME", "/nonexistent")]));
    /// # let _ = chain;
    /// ```
    pub fn default_chain_with_env(env: Env) -> CredentialsCache {
        CredentialsCache::new(
            ProviderChain::first_try(EnvironmentProvider::with_env(env.clone()))
                .or_else(ProfileProvider::new().env(env)),
        )
    }
}

fn none_found(reasons: &[String]) -> CredentialsError {
    CredentialsError::new(
        "credential chain",
        CredentialsErrorKind::NotLoaded,
        format!("no provider had credentials: {}", reasons.join("; ")),
    )
}

async fn resume(
    first: CredentialsFuture,
    rest: Vec<SharedCredentialsProvider>,
    mut reasons: Vec<String>,
) -> Result<Credentials, CredentialsError> {
    let mut next = Some(first);
    let mut rest = rest.into_iter();
    while let Some(fut) = next.take() {
        match fut.await {
            Ok(c) => return Ok(c),
            Err(e) if e.kind() == CredentialsErrorKind::NotLoaded => reasons.push(e.to_string()),
            Err(e) => return Err(e),
        }
        next = rest.next().map(|p| p.provide_credentials());
    }
    Err(none_found(&reasons))
}

impl ProvideCredentials for ProviderChain {
    fn provide_credentials(&self) -> CredentialsFuture {
        let mut reasons = Vec::new();
        for (i, provider) in self.providers.iter().enumerate() {
            let mut fut = provider.provide_credentials();
            match fut.take_ready() {
                Some(Ok(c)) => return CredentialsFuture::ready(Ok(c)),
                Some(Err(e)) if e.kind() == CredentialsErrorKind::NotLoaded => {
                    reasons.push(e.to_string());
                }
                Some(Err(e)) => return CredentialsFuture::ready(Err(e)),
                // This one does I/O: go on asynchronously from here.
                None => {
                    let rest = self.providers[i + 1..].to_vec();
                    return CredentialsFuture::new(resume(fut, rest, reasons));
                }
            }
        }
        CredentialsFuture::ready(Err(none_found(&reasons)))
    }
}

/// Caches credentials from a provider and refreshes them before they expire.
///
/// - Credentials are served from memory (no allocation, no I/O) until their refresh time:
///   `expiry − buffer − jitter` (buffer 5 min, jitter up to 1 min, so many processes do
///   not refresh at the same instant). Credentials without an expiry are re-read after
///   15 minutes (so a rotated key file is picked up).
/// - **Refresh in the background.** From the refresh time on, callers keep getting the
///   cached credentials as long as they are valid, while one refresh runs on its own
///   task (`tokio::spawn` when a Tokio runtime is present): a caller that gives up
///   does not cancel it. Without a runtime, the caller that finds the refresh due runs
///   it. At most one provider call per 10 s (`min_refresh_interval`), however short-lived
///   the credentials it returns.
/// - **Single flight.** When nothing valid is cached, callers wait for the one fetch under
///   way instead of each calling the provider.
/// - **Failures are cached.** After a failed call, the provider is not asked again for
///   10 s (`retry_after_failure`): credentials still valid keep being served, and when
///   none are, callers get the error at once.
///
/// Clones share one cache.
#[derive(Clone)]
pub struct CredentialsCache {
    inner: Arc<CacheInner>,
}

type Outcome = Result<Credentials, CredentialsError>;

struct CacheInner {
    provider: SharedCredentialsProvider,
    clock: Arc<dyn Clock>,
    buffer: Duration,
    jitter: Duration,
    default_expiration: Duration,
    retry_after_failure: Duration,
    min_refresh_interval: Duration,
    provider_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// No provider call before this, unless nothing valid is cached and the last call
    /// succeeded.
    next_call_at: Option<SystemTime>,
    /// The last call's error, until a call succeeds.
    failure: Option<CredentialsError>,
    /// The provider call under way, if any.
    flight: Option<Flight>,
    flights: u64,
}

struct Flight {
    id: u64,
    done: watch::Receiver<Option<Outcome>>,
}

#[derive(Clone)]
struct Cached {
    credentials: Credentials,
    expires_at: SystemTime,
    refresh_at: SystemTime,
}

/// `now + d`, saturating at a time far enough to mean "never" (`Duration::MAX` is a fair
/// way to ask for that, and must not panic).
fn later(now: SystemTime, d: Duration) -> SystemTime {
    const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

/// What a caller does next, decided under the state lock.
enum Next {
    Ready(Outcome),
    Wait(watch::Receiver<Option<Outcome>>),
    /// A provider call to make: spawned when there is a runtime, else made by the caller.
    Drive(Flying),
}

impl Next {
    /// A new provider call goes to the runtime when there is one: detached, it outlives
    /// the caller that started it. Called without the state lock held (a runtime that
    /// is shutting down drops the task at once, and `Flying::drop` takes the lock).
    fn spawned(self) -> Next {
        match self {
            Next::Drive(flying) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let rx = flying.done.subscribe();
                    drop(runtime.spawn(flying.fly()));
                    Next::Wait(rx)
                }
                Err(_) => Next::Drive(flying),
            },
            other => other,
        }
    }
}

/// A provider call to make, owned by whoever makes it (a spawned task, or a caller
/// without a runtime). Dropped before it finishes (the runtime shut down, the caller
/// gave up), it clears its flight so that waiters start another instead of waiting
/// for nothing.
struct Flying {
    inner: Arc<CacheInner>,
    id: u64,
    done: watch::Sender<Option<Outcome>>,
    finished: bool,
}

impl Flying {
    async fn fly(mut self) -> Outcome {
        let call = self.inner.provider.provide_credentials();
        // Bounded when a runtime's timer can bound it (a caller without a runtime makes
        // the call itself, and its own future is what it waits on).
        let result = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::time::timeout(self.inner.provider_timeout, call)
                .await
                .unwrap_or_else(|_| {
                    Err(CredentialsError::new(
                        "credentials cache",
                        super::CredentialsErrorKind::TimedOut,
                        format!(
                            "the credentials provider did not answer within {:?}",
                            self.inner.provider_timeout
                        ),
                    ))
                }),
            Err(_) => call.await,
        };
        let outcome = self.inner.finish(self.id, result);
        self.finished = true;
        self.done.send_replace(Some(outcome.clone()));
        outcome
    }
}

impl Drop for Flying {
    fn drop(&mut self) {
        // Runs before `done` is dropped: waiters woken by its closing find the flight gone.
        if !self.finished {
            let mut state = self.inner.lock();
            if state.flight.as_ref().is_some_and(|f| f.id == self.id) {
                state.flight = None;
            }
        }
    }
}

impl fmt::Debug for CredentialsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsCache")
            .field("provider", &self.inner.provider)
            .field("buffer", &self.inner.buffer)
            .field("jitter", &self.inner.jitter)
            .finish_non_exhaustive()
    }
}

impl CredentialsCache {
    /// Caches `provider` with the default timings.
    pub fn new(provider: impl ProvideCredentials) -> Self {
        Self::builder(provider).build()
    }

    /// Starts a builder, to change timings or the clock.
    pub fn builder(provider: impl ProvideCredentials) -> CredentialsCacheBuilder {
        CredentialsCacheBuilder {
            provider: SharedCredentialsProvider::new(provider),
            clock: Arc::new(SystemClock),
            buffer: Duration::from_secs(300),
            jitter: Duration::from_secs(60),
            default_expiration: Duration::from_secs(900),
            retry_after_failure: Duration::from_secs(10),
            min_refresh_interval: Duration::from_secs(10),
            provider_timeout: Duration::from_secs(30),
        }
    }
}

/// Builder of [`CredentialsCache`].
pub struct CredentialsCacheBuilder {
    provider: SharedCredentialsProvider,
    clock: Arc<dyn Clock>,
    buffer: Duration,
    jitter: Duration,
    default_expiration: Duration,
    retry_after_failure: Duration,
    min_refresh_interval: Duration,
    provider_timeout: Duration,
}

impl fmt::Debug for CredentialsCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsCacheBuilder")
            .finish_non_exhaustive()
    }
}

impl CredentialsCacheBuilder {
    /// Refresh this long before expiry (default 5 min).
    pub fn buffer(mut self, d: Duration) -> Self {
        self.buffer = d;
        self
    }
    /// Refresh up to this much earlier still, at random (default 1 min).
    pub fn jitter(mut self, d: Duration) -> Self {
        self.jitter = d;
        self
    }
    /// Lifetime given to credentials without an expiry (default 15 min).
    pub fn default_expiration(mut self, d: Duration) -> Self {
        self.default_expiration = d;
        self
    }
    /// After a failed provider call, wait this long before the next one (default 10 s).
    pub fn retry_after_failure(mut self, d: Duration) -> Self {
        self.retry_after_failure = d;
        self
    }
    /// While the cached credentials are valid, refresh them at most once per this
    /// interval (default 10 s), even when the provider returns credentials that are
    /// already due for refresh.
    pub fn min_refresh_interval(mut self, d: Duration) -> Self {
        self.min_refresh_interval = d;
        self
    }
    /// A provider call that takes longer fails with
    /// [`CredentialsErrorKind::TimedOut`](super::CredentialsErrorKind::TimedOut)
    /// (default 30 s; on a Tokio runtime), so that one that never answers (a hung file
    /// system, a metadata service that stopped answering) cannot hold the cache for
    /// ever: the next refresh calls the provider again.
    pub fn provider_timeout(mut self, d: Duration) -> Self {
        self.provider_timeout = d;
        self
    }
    /// The clock that decides expiry (for tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Builds the cache.
    pub fn build(self) -> CredentialsCache {
        CredentialsCache {
            inner: Arc::new(CacheInner {
                provider: self.provider,
                clock: self.clock,
                buffer: self.buffer,
                jitter: self.jitter,
                default_expiration: self.default_expiration,
                retry_after_failure: self.retry_after_failure,
                min_refresh_interval: self.min_refresh_interval,
                provider_timeout: self.provider_timeout,
                state: Mutex::new(State::default()),
            }),
        }
    }
}

impl CacheInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new provider call, to be made by whoever holds the result.
    fn launch(self: &Arc<Self>, state: &mut State) -> Flying {
        state.flights += 1;
        let id = state.flights;
        let (done, rx) = watch::channel(None);
        state.flight = Some(Flight { id, done: rx });
        Flying {
            inner: Arc::clone(self),
            id,
            done,
            finished: false,
        }
    }

    fn finish(&self, id: u64, result: Outcome) -> Outcome {
        let now = self.clock.now();
        let mut state = self.lock();
        if state.flight.as_ref().is_some_and(|f| f.id == id) {
            state.flight = None;
        }
        match result {
            Ok(credentials) => {
                let expires_at = credentials
                    .expiry()
                    .unwrap_or_else(|| later(now, self.default_expiration));
                let jitter = self.jitter.mul_f64(fastrand::f64());
                let refresh_at = expires_at
                    .checked_sub(self.buffer.saturating_add(jitter))
                    .unwrap_or(now);
                state.cached = Some(Cached {
                    credentials: credentials.clone(),
                    expires_at,
                    refresh_at,
                });
                state.failure = None;
                state.next_call_at = Some(later(now, self.min_refresh_interval));
                Ok(credentials)
            }
            Err(e) => {
                state.failure = Some(e.clone());
                state.next_call_at = Some(later(now, self.retry_after_failure));
                match state.cached.as_ref().filter(|c| now < c.expires_at) {
                    Some(still_valid) => Ok(still_valid.credentials.clone()),
                    None => Err(e),
                }
            }
        }
    }

    /// For a caller with nothing valid in the cache: the cached failure, the flight under
    /// way, or a new flight.
    fn join(self: &Arc<Self>, now: SystemTime) -> Next {
        let mut state = self.lock();
        if let Some(c) = state.cached.as_ref().filter(|c| now < c.expires_at) {
            return Next::Ready(Ok(c.credentials.clone()));
        }
        if let Some(e) = &state.failure {
            if state.next_call_at.is_some_and(|t| now < t) {
                return Next::Ready(Err(e.clone()));
            }
        }
        if let Some(flight) = &state.flight {
            return Next::Wait(flight.done.clone());
        }
        Next::Drive(self.launch(&mut state))
    }

    /// Waits for the flight `rx` reports on; if it is dropped unfinished, joins or
    /// drives another.
    async fn wait(self: Arc<Self>, mut next: Next) -> Outcome {
        loop {
            match next {
                Next::Ready(outcome) => return outcome,
                Next::Drive(flying) => return flying.fly().await,
                Next::Wait(mut rx) => {
                    if let Ok(done) = rx.wait_for(Option::is_some).await {
                        if let Some(outcome) = done.as_ref() {
                            return outcome.clone();
                        }
                    }
                    // The flight was dropped: this caller takes over (without spawning,
                    // so a runtime that drops new tasks cannot make this loop spin).
                    next = self.join(self.clock.now());
                }
            }
        }
    }
}

impl ProvideCredentials for CredentialsCache {
    fn provide_credentials(&self) -> CredentialsFuture {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut state = inner.lock();
        let Some(cached) = state.cached.as_ref().filter(|c| now < c.expires_at) else {
            drop(state);
            return match inner.join(now).spawned() {
                Next::Ready(outcome) => CredentialsFuture::ready(outcome),
                next => CredentialsFuture::new(Arc::clone(inner).wait(next)),
            };
        };
        let credentials = cached.credentials.clone();
        let refresh_due = now >= cached.refresh_at
            && state.flight.is_none()
            && state.next_call_at.is_none_or(|t| now >= t);
        if refresh_due {
            let flying = inner.launch(&mut state);
            drop(state);
            if let Next::Drive(flying) = Next::Drive(flying).spawned() {
                // No runtime: this caller refreshes (and gets the valid credentials if
                // the refresh fails).
                return CredentialsFuture::new(flying.fly());
            }
        }
        CredentialsFuture::ready(Ok(credentials))
    }
}

/// Uses any `aws_credential_types::provider::ProvideCredentials` (for example
/// aws-config's `DefaultCredentialsChain`, with SSO, IMDS, ECS and web identity) as a
/// provider here.
///
/// ```
/// use invoke_layers::sigv4::{AwsSdkProvider, CredentialsCache};
/// // Any aws-credential-types provider works; static credentials stand in for aws-config here.
/// let sdk_provider = aws_credential_types::Credentials::from_keys("AKID", "secret", None);
/// let provider = CredentialsCache::new(AwsSdkProvider::new(sdk_provider));
/// # let _ = provider;
/// ```
#[derive(Debug)]
pub struct AwsSdkProvider<P> {
    inner: Arc<P>,
}

impl<P> AwsSdkProvider<P> {
    /// Wraps an SDK provider.
    pub fn new(provider: P) -> Self {
        Self {
            inner: Arc::new(provider),
        }
    }
}

impl<P> Clone for AwsSdkProvider<P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

fn from_sdk_error(e: &aws_credential_types::provider::error::CredentialsError) -> CredentialsError {
    use aws_credential_types::provider::error::CredentialsError as E;
    let kind = match e {
        E::CredentialsNotLoaded(_) => CredentialsErrorKind::NotLoaded,
        E::ProviderTimedOut(_) => CredentialsErrorKind::TimedOut,
        E::InvalidConfiguration(_) => CredentialsErrorKind::InvalidConfiguration,
        _ => CredentialsErrorKind::ProviderError,
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    CredentialsError::new("aws-sdk provider", kind, message)
}

impl<P> ProvideCredentials for AwsSdkProvider<P>
where
    P: aws_credential_types::provider::ProvideCredentials + 'static,
{
    fn provide_credentials(&self) -> CredentialsFuture {
        let inner = Arc::clone(&self.inner);
        CredentialsFuture::new(async move {
            inner
                .provide_credentials()
                .await
                .map_err(|e| from_sdk_error(&e))
        })
    }
}
