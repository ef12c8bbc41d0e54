use std::fmt;

/// No credentials could be loaded. Says which source failed and why; never contains a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsError {
    source_name: String,
    kind: CredentialsErrorKind,
    message: String,
}

/// The kind of [`CredentialsError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsErrorKind {
    /// The source has no credentials (e.g. the variables are not set).
    NotLoaded,
    /// The source is configured wrongly (e.g. a key without its secret).
    InvalidConfiguration,
    /// The source failed (I/O, a remote provider answered with an error).
    ProviderError,
    /// The source took too long.
    TimedOut,
    /// The credentials have expired and no fresh ones could be had.
    Expired,
}

impl CredentialsError {
    /// Builds an error for the named source.
    pub fn new(
        source_name: impl Into<String>,
        kind: CredentialsErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            source_name: source_name.into(),
            kind,
            message: message.into(),
        }
    }
    /// The source that failed (`environment`, `profile file`, ...).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }
    /// What kind of failure.
    pub fn kind(&self) -> CredentialsErrorKind {
        self.kind
    }
    /// Whether trying again later can help (provider failures and timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            CredentialsErrorKind::ProviderError | CredentialsErrorKind::TimedOut
        )
    }
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "credentials from {}: {}", self.source_name, self.message)
    }
}

impl std::error::Error for CredentialsError {}

/// The request could not be signed (e.g. a header value that is not visible ASCII).
/// Names the problem, never a secret or a header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningError {
    message: String,
}

impl SigningError {
    /// Builds a signing error.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for SigningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot sign the request: {}", self.message)
    }
}

impl std::error::Error for SigningError {}

/// Error of the [`SigV4`](super::SigV4) service.
#[derive(Debug)]
#[non_exhaustive]
pub enum SigV4Error<E> {
    /// No credentials.
    Credentials(CredentialsError),
    /// Signing failed.
    Signing(SigningError),
    /// The inner service failed.
    Inner(E),
}

impl<E: fmt::Display> fmt::Display for SigV4Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigV4Error::Credentials(e) => e.fmt(f),
            SigV4Error::Signing(e) => e.fmt(f),
            SigV4Error::Inner(e) => e.fmt(f),
        }
    }
}

/// `Error` for every inner error that is `Debug + Display`, boxed errors included;
/// see [`BoxError`](crate::BoxError) for the source.
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for SigV4Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SigV4Error::Credentials(e) => Some(e),
            SigV4Error::Signing(e) => Some(e),
            SigV4Error::Inner(e) => crate::inner_source(e),
        }
    }
}
