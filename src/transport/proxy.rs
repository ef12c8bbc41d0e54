//! HTTP proxies: from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` (and their
//! lower-case forms), or set in code. Matching is hyper-util's
//! ([`Matcher`](hyper_util::client::proxy::matcher::Matcher), curl's rules), and the
//! connection goes through hyper-util's CONNECT tunnel
//! ([`Tunnel`](hyper_util::client::legacy::connect::proxy::Tunnel)): TLS runs end to end
//! inside the tunnel, so the proxy sees the host and port, never the request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;

use super::connect::BoxError;
use super::TcpConnector;
use invoke_layers::sigv4::Env;

/// Which proxy the transport uses ([`TransportConfig::proxy`](super::TransportConfig::proxy)).
///
/// - [`ProxyConfig::from_env`] (the default): `HTTPS_PROXY` for https endpoints,
///   `HTTP_PROXY` for http ones, `ALL_PROXY` for both when those are unset (each also in
///   lower case), except for hosts matched by `NO_PROXY` (comma-separated domains, which
///   match their subdomains too, IP addresses and CIDR ranges, or `*`). `HTTP_PROXY` is
///   ignored when `REQUEST_METHOD` is set (a CGI environment, where it can be set by a
///   request header).
/// - [`ProxyConfig::none`]: no proxy, whatever the environment says.
/// - [`ProxyConfig::all`], [`https`](ProxyConfig::https), [`http`](ProxyConfig::http),
///   [`no_proxy`](ProxyConfig::no_proxy): explicit rules (the environment is not read).
///
/// Proxies are `http://[user:password@]host:port`; the user and password are sent as
/// `Proxy-Authorization: Basic` in the CONNECT request, and never appear in `Debug`,
/// logs or errors. Every connection through a proxy is a CONNECT tunnel, plain-HTTP
/// endpoints included.
///
/// ```
/// use invoke_stack::transport::{ProxyConfig, TransportConfig};
/// let config = TransportConfig::default()
///     .proxy(ProxyConfig::all("http://user:secret@proxy.corp:3128").no_proxy("localhost,.internal"));
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    mode: Mode,
}

#[derive(Clone, Default, PartialEq, Eq)]
enum Mode {
    #[default]
    FromEnv,
    Rules {
        all: String,
        http: String,
        https: String,
        no: String,
    },
}

impl ProxyConfig {
    /// The proxy variables of the environment (the default).
    pub fn from_env() -> Self {
        Self::default()
    }
    /// No proxy at all.
    pub fn none() -> Self {
        Self {
            mode: Mode::Rules {
                all: String::new(),
                http: String::new(),
                https: String::new(),
                no: String::new(),
            },
        }
    }
    /// This proxy for every endpoint.
    pub fn all(url: impl Into<String>) -> Self {
        Self::none().set(|r| r.0 = url.into())
    }
    /// This proxy for https endpoints.
    pub fn https(self, url: impl Into<String>) -> Self {
        self.set(|r| r.2 = url.into())
    }
    /// This proxy for http endpoints.
    pub fn http(self, url: impl Into<String>) -> Self {
        self.set(|r| r.1 = url.into())
    }
    /// Hosts reached directly (the syntax of `NO_PROXY`).
    pub fn no_proxy(self, hosts: impl Into<String>) -> Self {
        self.set(|r| r.3 = hosts.into())
    }

    fn set(self, f: impl FnOnce(&mut (String, String, String, String))) -> Self {
        let mut rules = match self.mode {
            Mode::FromEnv => Default::default(),
            Mode::Rules {
                all,
                http,
                https,
                no,
            } => (all, http, https, no),
        };
        f(&mut rules);
        Self {
            mode: Mode::Rules {
                all: rules.0,
                http: rules.1,
                https: rules.2,
                no: rules.3,
            },
        }
    }

    /// The matcher for these rules (`None` when no proxy is configured).
    pub(crate) fn matcher(&self, env: &Env) -> Option<Matcher> {
        let (all, http, https, no) = match &self.mode {
            Mode::FromEnv => {
                let first = |names: &[&str]| names.iter().find_map(|n| env.get(n));
                let cgi = env.get("REQUEST_METHOD").is_some();
                (
                    first(&["ALL_PROXY", "all_proxy"]).unwrap_or_default(),
                    if cgi {
                        String::new()
                    } else {
                        first(&["HTTP_PROXY", "http_proxy"]).unwrap_or_default()
                    },
                    first(&["HTTPS_PROXY", "https_proxy"]).unwrap_or_default(),
                    first(&["NO_PROXY", "no_proxy"]).unwrap_or_default(),
                )
            }
            Mode::Rules {
                all,
                http,
                https,
                no,
            } => (all.clone(), http.clone(), https.clone(), no.clone()),
        };
        if all.trim().is_empty() && http.trim().is_empty() && https.trim().is_empty() {
            return None;
        }
        Some(
            Matcher::builder()
                .all(all)
                .http(http)
                .https(https)
                .no(no)
                .build(),
        )
    }
}

/// `scheme://host:port` of a proxy URL, without user info or path.
fn redacted(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    // Everything before the last `@` is user information, even with an unencoded `/`,
    // `#` or `@` in a password: none of it is shown.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    format!("{}{}", &url[..after_scheme], &rest[..authority_end])
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            Mode::FromEnv => f.write_str("ProxyConfig::from_env"),
            Mode::Rules {
                all,
                http,
                https,
                no,
            } => f
                .debug_struct("ProxyConfig")
                .field("all", &redacted(all))
                .field("http", &redacted(http))
                .field("https", &redacted(https))
                .field("no_proxy", no)
                .finish(),
        }
    }
}

/// The TCP connector, through a CONNECT tunnel when the proxy rules say so.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    tcp: TcpConnector,
    matcher: Option<Arc<Matcher>>,
}

impl fmt::Debug for ProxyConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The matcher's own `Debug` shows proxy URIs without their credentials.
        f.debug_struct("ProxyConnector")
            .field("matcher", &self.matcher)
            .finish_non_exhaustive()
    }
}

impl ProxyConnector {
    pub(crate) fn new(tcp: TcpConnector, matcher: Option<Matcher>) -> Self {
        Self {
            tcp,
            matcher: matcher.map(Arc::new),
        }
    }
}

/// A proxy that cannot be used through a CONNECT tunnel.
#[derive(Debug)]
struct UnsupportedProxy(String);

impl fmt::Display for UnsupportedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "proxy {}: only http:// proxies (HTTP CONNECT) are supported",
            self.0
        )
    }
}

impl std::error::Error for UnsupportedProxy {}

impl tower_service::Service<http::Uri> for ProxyConnector {
    type Response = <TcpConnector as tower_service::Service<http::Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        // As curl and the AWS CLI do, only NO_PROXY exempts a host, loopback included: with
        // a proxy set, a local endpoint wants `NO_PROXY=localhost,127.0.0.1`.
        let Some(intercept) = self.matcher.as_ref().and_then(|m| m.intercept(&uri)) else {
            // Once per new connection, not per request: a box here costs nothing measurable.
            let fut = self.tcp.call(uri);
            return Box::pin(async move { fut.await.map_err(Into::into) });
        };
        let proxy = intercept.uri().clone();
        if proxy.scheme_str() != Some("http") {
            let shown = format!(
                "{}://{}",
                proxy.scheme_str().unwrap_or(""),
                proxy.authority().map_or("", |a| a.as_str())
            );
            return Box::pin(async move { Err(Box::new(UnsupportedProxy(shown)) as BoxError) });
        }
        // The tunnel defaults a missing port to 443: give http endpoints theirs.
        let target = match (uri.port_u16(), uri.scheme_str(), uri.authority()) {
            (None, Some("http"), Some(a)) => {
                format!("http://{}:80", a.host()).parse().unwrap_or(uri)
            }
            _ => uri,
        };
        let mut tunnel = Tunnel::new(proxy, self.tcp.clone());
        if let Some(auth) = intercept.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        Box::pin(async move {
            tower::ServiceExt::oneshot(tunnel, target)
                .await
                .map_err(|e| Box::new(e) as BoxError)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_the_user_information_is_hidden() {
        for url in [
            "http://svc_user:Xy7/9kQ@proxy.corp:3128",
            "http://svc_user:p#ss@proxy.corp:3128/",
            "http://svc_user:p@ss@proxy.corp:3128",
        ] {
            let shown = redacted(url);
            assert_eq!(shown, "http://proxy.corp:3128", "{url}");
        }
        assert_eq!(
            redacted("http://proxy.corp:3128/x"),
            "http://proxy.corp:3128"
        );
    }

    #[test]
    fn rules_from_env_and_code() {
        let env = Env::from_pairs([
            ("https_proxy", "http://u:p@proxy:3128"),
            ("NO_PROXY", "localhost,.internal"),
        ]);
        let m = ProxyConfig::from_env().matcher(&env).unwrap();
        let to = |u: &str| {
            m.intercept(&u.parse().unwrap())
                .map(|i| i.uri().to_string())
        };
        assert_eq!(
            to("https://lambda.us-east-1.amazonaws.com").as_deref(),
            Some("http://proxy:3128/")
        );
        assert_eq!(to("https://localhost:1"), None);
        assert_eq!(to("https://lambda.internal"), None);
        assert_eq!(to("http://lambda.us-east-1.amazonaws.com"), None);
        assert!(ProxyConfig::from_env()
            .matcher(&Env::from_pairs([("X", "y")]))
            .is_none());
        assert!(ProxyConfig::none().matcher(&env).is_none());
        // CGI: HTTP_PROXY may come from a request header.
        let cgi = Env::from_pairs([("HTTP_PROXY", "http://evil:1"), ("REQUEST_METHOD", "GET")]);
        assert!(ProxyConfig::from_env().matcher(&cgi).is_none());
        let m = ProxyConfig::all("http://p:1")
            .no_proxy("10.0.0.0/8")
            .matcher(&env)
            .unwrap();
        assert!(m.intercept(&"http://10.1.2.3/".parse().unwrap()).is_none());
        assert!(m
            .intercept(&"http://example.com/".parse().unwrap())
            .is_some());
    }

    #[test]
    fn debug_never_shows_proxy_credentials() {
        let c = ProxyConfig::all("http://user:hunter2@proxy:3128/x").https("http://a:b@other:1");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("a:b"),
            "{shown}"
        );
        assert!(shown.contains("proxy:3128"), "{shown}");
        let m = c.matcher(&Env::from_pairs([("X", "y")]));
        let shown = format!("{m:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
