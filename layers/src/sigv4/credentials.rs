//! Where signing credentials come from.
//!
//! [`ProvideCredentials`] is the provider trait; [`Credentials`] (re-exported from
//! `aws-credential-types`, whose `Debug` redacts the secret) is a static provider, and
//! [`EnvironmentProvider`] reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use aws_credential_types::Credentials;

use super::error::{CredentialsError, CredentialsErrorKind};

type BoxFuture = Pin<Box<dyn Future<Output = Result<Credentials, CredentialsError>> + Send>>;

/// The future of [`ProvideCredentials::provide_credentials`]: ready at once for cached or
/// static credentials (no allocation), boxed for providers that do I/O.
pub struct CredentialsFuture {
    inner: Inner,
}

enum Inner {
    Ready(Option<Result<Credentials, CredentialsError>>),
    Pending(BoxFuture),
}

impl fmt::Debug for CredentialsFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Inner::Ready(_) => "CredentialsFuture::Ready",
            Inner::Pending(_) => "CredentialsFuture::Pending",
        })
    }
}

impl CredentialsFuture {
    /// A future that is already resolved.
    pub fn ready(result: Result<Credentials, CredentialsError>) -> Self {
        Self {
            inner: Inner::Ready(Some(result)),
        }
    }

    /// A future that does work (it must not borrow the provider).
    pub fn new(
        fut: impl Future<Output = Result<Credentials, CredentialsError>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Inner::Pending(Box::pin(fut)),
        }
    }

    /// Takes the result if it is available without polling.
    pub fn take_ready(&mut self) -> Option<Result<Credentials, CredentialsError>> {
        match &mut self.inner {
            Inner::Ready(r) => r.take(),
            Inner::Pending(_) => None,
        }
    }
}

impl Future for CredentialsFuture {
    type Output = Result<Credentials, CredentialsError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            Inner::Ready(r) => Poll::Ready(r.take().unwrap_or_else(|| {
                Err(CredentialsError::new(
                    "provider",
                    CredentialsErrorKind::ProviderError,
                    "credentials future polled after completion",
                ))
            })),
            Inner::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// A source of credentials.
///
/// The returned future must not borrow `self` (clone what it needs, e.g. an `Arc`), so
/// signing services can hold it across an await.
///
/// ```
/// use invoke_layers::sigv4::{
///     Credentials, CredentialsCache, CredentialsError, CredentialsFuture, ProvideCredentials,
///     SigV4Layer, SigningConfig,
/// };
///
/// /// Keys from a secret store of the application's (here, a fixed answer).
/// #[derive(Debug)]
/// struct FromVault;
///
/// impl ProvideCredentials for FromVault {
///     fn provide_credentials(&self) -> CredentialsFuture {
///         CredentialsFuture::new(async {
///             // An async lookup; an error says whether trying again may help.
///             Ok::<_, CredentialsError>(Credentials::from_keys("AKID", "secret", None))
///         })
///     }
/// }
///
/// // Cached, and refreshed before expiry, like any provider.
/// let signer = SigV4Layer::new(CredentialsCache::new(FromVault), SigningConfig::new("us-east-1"));
/// # let _ = signer;
/// ```
pub trait ProvideCredentials: Send + Sync + fmt::Debug + 'static {
    /// Returns credentials, or why there are none.
    fn provide_credentials(&self) -> CredentialsFuture;
}

impl ProvideCredentials for Credentials {
    fn provide_credentials(&self) -> CredentialsFuture {
        CredentialsFuture::ready(Ok(self.clone()))
    }
}

impl<T: ProvideCredentials + ?Sized> ProvideCredentials for Arc<T> {
    fn provide_credentials(&self) -> CredentialsFuture {
        (**self).provide_credentials()
    }
}

/// A provider shared by clones of a signing layer.
#[derive(Clone, Debug)]
pub struct SharedCredentialsProvider(Arc<dyn ProvideCredentials>);

impl SharedCredentialsProvider {
    /// Wraps a provider.
    pub fn new(provider: impl ProvideCredentials) -> Self {
        Self(Arc::new(provider))
    }
}

impl ProvideCredentials for SharedCredentialsProvider {
    fn provide_credentials(&self) -> CredentialsFuture {
        self.0.provide_credentials()
    }
}

/// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional
/// `AWS_SESSION_TOKEN` on every call.
///
/// ```
/// use invoke_layers::sigv4::{EnvironmentProvider, ProvideCredentials};
/// let provider = EnvironmentProvider::new();
/// # let _ = provider;
/// ```
#[derive(Debug, Clone, Default)]
pub struct EnvironmentProvider {
    env: super::Env,
}

impl EnvironmentProvider {
    /// Name used in errors.
    pub const SOURCE: &'static str = "environment";

    /// A provider over the process environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider reading the variables from `env` instead of the process environment.
    ///
    /// ```
    /// use invoke_layers::sigv4::{Env, EnvironmentProvider};
    /// let env = Env::from_pairs([("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "s")]);
    /// assert_eq!(EnvironmentProvider::with_env(env).load()?.access_key_id(), "AKID");
    /// # Ok::<(), invoke_layers::sigv4::CredentialsError>(())
    /// ```
    pub fn with_env(env: super::Env) -> Self {
        Self { env }
    }

    /// Reads the variables now.
    pub fn load(&self) -> Result<Credentials, CredentialsError> {
        Self::load_from(|k| self.env.get(k))
    }

    /// Reads the variables through `get` (for tests and custom environments).
    pub fn load_from(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, CredentialsError> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let key = non_empty("AWS_ACCESS_KEY_ID");
        let secret = non_empty("AWS_SECRET_ACCESS_KEY");
        match (key, secret) {
            (None, None) => Err(CredentialsError::new(
                Self::SOURCE,
                CredentialsErrorKind::NotLoaded,
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
            )),
            (Some(_), None) => Err(CredentialsError::new(
                Self::SOURCE,
                CredentialsErrorKind::InvalidConfiguration,
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
            )),
            (None, Some(_)) => Err(CredentialsError::new(
                Self::SOURCE,
                CredentialsErrorKind::InvalidConfiguration,
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
            )),
            (Some(key), Some(secret)) => Ok(Credentials::new(
                key.trim(),
                secret.trim(),
                non_empty("AWS_SESSION_TOKEN").map(|t| t.trim().to_owned()),
                None,
                "environment",
            )),
        }
    }
}

impl ProvideCredentials for EnvironmentProvider {
    fn provide_credentials(&self) -> CredentialsFuture {
        CredentialsFuture::ready(self.load())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_variables() {
        let c = EnvironmentProvider::load_from(env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_SESSION_TOKEN", "TOKEN"),
        ]))
        .unwrap();
        assert_eq!(c.access_key_id(), "AKID");
        assert_eq!(c.session_token(), Some("TOKEN"));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SECRET") && !dbg.contains("TOKEN"), "{dbg}");

        let e = EnvironmentProvider::load_from(env(&[])).unwrap_err();
        assert_eq!(e.kind(), CredentialsErrorKind::NotLoaded);
        let e = EnvironmentProvider::load_from(env(&[("AWS_ACCESS_KEY_ID", "AKID")])).unwrap_err();
        assert_eq!(e.kind(), CredentialsErrorKind::InvalidConfiguration);
        assert_eq!(e.source_name(), "environment");
    }
}
