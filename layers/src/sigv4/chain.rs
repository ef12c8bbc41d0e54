//! Provider chains, the credentials cache, and the adapter for `aws-credential-types`
//! providers (aws-config's full chain: SSO, IMDS, ECS, web identity, ...).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::credentials::{
    Credentials, CredentialsFuture, EnvironmentProvider, ProvideCredentials,
    SharedCredentialsProvider,
};
use super::error::{CredentialsError, CredentialsErrorKind};
use super::profile::ProfileProvider;
use super::sign::{Clock, SystemClock};

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
        CredentialsCache::new(
            ProviderChain::first_try(EnvironmentProvider::new()).or_else(ProfileProvider::new()),
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
/// - One refresh at a time: concurrent callers wait for the refresh under way instead of
///   each calling the provider (single flight).
/// - When a refresh fails while the cached credentials are still valid, those are served
///   and the refresh is tried again 10 s later; only expired credentials make the error
///   visible.
///
/// Clones share one cache.
#[derive(Clone)]
pub struct CredentialsCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    provider: SharedCredentialsProvider,
    clock: Arc<dyn Clock>,
    buffer: Duration,
    jitter: Duration,
    default_expiration: Duration,
    retry_after_failure: Duration,
    state: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Cached {
    credentials: Credentials,
    expires_at: SystemTime,
    refresh_at: SystemTime,
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
        }
    }

    fn fresh(&self, now: SystemTime) -> Option<Credentials> {
        let state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.credentials.clone())
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
    /// After a failed refresh, wait this long before trying again (default 10 s).
    pub fn retry_after_failure(mut self, d: Duration) -> Self {
        self.retry_after_failure = d;
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
                state: Mutex::new(None),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl CacheInner {
    fn store(&self, c: Option<Cached>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = c;
    }

    fn cached(&self) -> Option<Cached> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn refresh(self: Arc<Self>) -> Result<Credentials, CredentialsError> {
        let _single_flight = self.refresh.lock().await;
        let now = self.clock.now();
        // Another caller may have refreshed while this one waited.
        if let Some(c) = self.cached().filter(|c| now < c.refresh_at) {
            return Ok(c.credentials);
        }
        match self.provider.provide_credentials().await {
            Ok(credentials) => {
                let now = self.clock.now();
                let expires_at = credentials
                    .expiry()
                    .unwrap_or(now + self.default_expiration);
                let jitter = self.jitter.mul_f64(fastrand::f64());
                let refresh_at = expires_at
                    .checked_sub(self.buffer + jitter)
                    .filter(|t| *t > now)
                    // Short-lived credentials: use them, refresh at the next call.
                    .unwrap_or(now);
                self.store(Some(Cached {
                    credentials: credentials.clone(),
                    expires_at,
                    refresh_at,
                }));
                Ok(credentials)
            }
            Err(e) => match self.cached().filter(|c| now < c.expires_at) {
                Some(mut still_valid) => {
                    still_valid.refresh_at =
                        (now + self.retry_after_failure).min(still_valid.expires_at);
                    let credentials = still_valid.credentials.clone();
                    self.store(Some(still_valid));
                    Ok(credentials)
                }
                None => Err(e),
            },
        }
    }
}

impl ProvideCredentials for CredentialsCache {
    fn provide_credentials(&self) -> CredentialsFuture {
        match self.fresh(self.inner.clock.now()) {
            Some(c) => CredentialsFuture::ready(Ok(c)),
            None => CredentialsFuture::new(Arc::clone(&self.inner).refresh()),
        }
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
