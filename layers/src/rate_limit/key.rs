//! Where a request's key comes from.

use std::borrow::Cow;
use std::sync::Arc;

use super::limits::KeyState;

/// The key a request is limited under: put it in the extensions (the default
/// [`ExtensionKey`] extractor reads it), or supply your own [`KeyExtractor`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimitKey(pub String);

/// Where a request's key comes from.
///
/// ```
/// use invoke_layers::rate_limit::{KeyExtractor, Rate, RateLimitLayer};
///
/// /// One rate per tenant, from a header.
/// struct ByTenant;
///
/// impl<B> KeyExtractor<B> for ByTenant {
///     fn key(&self, req: &http::Request<B>) -> Option<String> {
///         req.headers()
///             .get("x-tenant")
///             .and_then(|v| v.to_str().ok())
///             .map(str::to_owned)
///     }
/// }
///
/// let limiter = RateLimitLayer::builder()
///     .per_key(Rate::per_second(10))
///     .key(ByTenant)
///     .build()?;
/// # let _ = limiter;
/// # Ok::<(), invoke_layers::rate_limit::InvalidLimit>(())
/// ```
pub trait KeyExtractor<B>: Send + Sync + 'static {
    /// The key, or `None` for requests limited only globally.
    fn key(&self, req: &http::Request<B>) -> Option<String>;

    /// The key, borrowed from the request when it is there as it is (the limiter asks
    /// this, and allocates no key for a call whose key already has state). By default,
    /// [`key`](Self::key).
    fn key_ref<'r>(&self, req: &'r http::Request<B>) -> Option<Cow<'r, str>> {
        self.key(req).map(Cow::Owned)
    }
}

/// Reads [`RateLimitKey`] from the request's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionKey;

impl<B> KeyExtractor<B> for ExtensionKey {
    fn key(&self, req: &http::Request<B>) -> Option<String> {
        req.extensions().get::<RateLimitKey>().map(|k| k.0.clone())
    }

    fn key_ref<'r>(&self, req: &'r http::Request<B>) -> Option<Cow<'r, str>> {
        req.extensions()
            .get::<RateLimitKey>()
            .map(|k| Cow::Borrowed(k.0.as_str()))
    }
}

impl<B, F> KeyExtractor<B> for F
where
    F: Fn(&http::Request<B>) -> Option<String> + Send + Sync + 'static,
{
    fn key(&self, req: &http::Request<B>) -> Option<String> {
        self(req)
    }
}

/// The state of an operation's key, for the limits the feedback layer applies to each
/// attempt.
#[derive(Clone)]
pub(super) struct AttemptKey(pub(super) Option<Arc<KeyState>>);
