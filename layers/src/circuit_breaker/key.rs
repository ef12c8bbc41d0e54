use std::borrow::Cow;

/// The key a request's circuit is found under: put it in the extensions (the default
/// [`ExtensionKey`] reads it), or supply your own [`ExtractKey`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CircuitKey(pub String);

/// Where a request's key comes from.
///
/// ```
/// use std::borrow::Cow;
/// use invoke_layers::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, ExtractKey, FromRetry};
/// use invoke_layers::retry::HttpClassifier;
///
/// /// One circuit per host.
/// struct ByHost;
///
/// impl<B> ExtractKey<http::Request<B>> for ByHost {
///     fn key<'r>(&self, req: &'r http::Request<B>) -> Option<Cow<'r, str>> {
///         req.uri().host().map(Cow::Borrowed)
///     }
/// }
///
/// let breaker = CircuitBreakerLayer::builder(CircuitBreakerConfig::default())
///     .key(ByHost)
///     .build(FromRetry(HttpClassifier));
/// # let _ = breaker;
/// ```
pub trait ExtractKey<Req>: Send + Sync + 'static {
    /// The key, or `None` for a request no circuit guards (it goes through, uncounted).
    fn key<'r>(&self, req: &'r Req) -> Option<Cow<'r, str>>;
}

/// Reads [`CircuitKey`] from an `http::Request`'s extensions (without copying it).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionKey;

impl<B> ExtractKey<http::Request<B>> for ExtensionKey {
    fn key<'r>(&self, req: &'r http::Request<B>) -> Option<Cow<'r, str>> {
        req.extensions()
            .get::<CircuitKey>()
            .map(|k| Cow::Borrowed(k.0.as_str()))
    }
}

/// Any function of the request: one circuit per host, per path, or one for everything.
///
/// ```
/// use invoke_layers::circuit_breaker::ExtractKey;
/// let by_host = |req: &http::Request<()>| req.uri().host().map(str::to_owned);
/// let req = http::Request::get("http://example.com/x").body(()).unwrap();
/// assert_eq!(by_host.key(&req).as_deref(), Some("example.com"));
/// ```
impl<Req, F> ExtractKey<Req> for F
where
    F: Fn(&Req) -> Option<String> + Send + Sync + 'static,
{
    fn key<'r>(&self, req: &'r Req) -> Option<Cow<'r, str>> {
        self(req).map(Cow::Owned)
    }
}
