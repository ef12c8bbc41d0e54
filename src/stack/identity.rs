//! Who is calling: the `User-Agent` and `x-amz-user-agent` headers, and recursion
//! detection (`X-Amzn-Trace-Id` inside a Lambda function), as the AWS SDKs send them.
//!
//! Both are slots of the stack (`user-agent` and `recursion-detection`, after `sign`, so
//! neither header is signed). In a named stack they are tower-http's
//! `tower_http::set_header::SetRequestHeaderLayer`s; the default (static) stack does the
//! same in one service, which sets the three headers in one pass instead of moving each
//! request through three services (and cloning them for every call). A header the
//! caller set already is left as it is.
//!
//! ```
//! use invoke_stack::stack::identity::user_agent;
//! let ua = user_agent(Some("billing"));
//! let ua = ua.to_str().unwrap();
//! assert!(ua.starts_with(concat!("invoke-stack/", env!("CARGO_PKG_VERSION"), " ua/2.1 os/")));
//! assert!(ua.contains(" lang/rust#") && ua.ends_with(" app/billing"));
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue};
use tower::layer::util::Stack;
use tower_http::set_header::{MakeHeaderValue, SetRequestHeaderLayer};

use invoke_layers::sigv4::Env;

/// `x-amz-user-agent`.
pub const X_AMZ_USER_AGENT: HeaderName = HeaderName::from_static("x-amz-user-agent");
/// `x-amzn-trace-id`.
pub const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// Keeps the characters a User-Agent token may hold, `-` in place of the others.
fn token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The User-Agent, in the AWS SDKs' format:
/// `invoke-stack/{version} ua/2.1 os/{os} lang/rust#{rustc} [exec-env/{AWS_EXECUTION_ENV}] [app/{app_id}]`.
pub fn user_agent(app_id: Option<&str>) -> HeaderValue {
    user_agent_with(app_id, &Env::process())
}

pub(crate) fn user_agent_with(app_id: Option<&str>, env: &Env) -> HeaderValue {
    let mut ua = format!(
        "invoke-stack/{} ua/2.1 os/{} lang/rust#{}",
        env!("CARGO_PKG_VERSION"),
        token(std::env::consts::OS),
        token(env!("INVOKE_STACK_RUSTC_VERSION")),
    );
    if let Some(exec) = env.non_empty("AWS_EXECUTION_ENV") {
        ua.push_str(" exec-env/");
        ua.push_str(&token(exec.trim()));
    }
    if let Some(app) = app_id.map(str::trim).filter(|a| !a.is_empty()) {
        ua.push_str(" app/");
        ua.push_str(&token(app));
    }
    // Only token characters and spaces: always a valid header value.
    HeaderValue::from_str(&ua).unwrap_or_else(|_| HeaderValue::from_static("invoke-stack"))
}

/// The layer of the `user-agent` slot: sets `User-Agent` and `x-amz-user-agent` to `value`
/// unless the request has them.
pub type UserAgentLayer =
    Stack<SetRequestHeaderLayer<HeaderValue>, SetRequestHeaderLayer<HeaderValue>>;

/// The layer of the `user-agent` slot.
pub fn user_agent_layer(value: HeaderValue) -> UserAgentLayer {
    Stack::new(
        SetRequestHeaderLayer::if_not_present(X_AMZ_USER_AGENT, value.clone()),
        SetRequestHeaderLayer::if_not_present(http::header::USER_AGENT, value),
    )
}

/// The trace id to forward, read on every request: inside a Lambda function
/// (`AWS_LAMBDA_FUNCTION_NAME` set), the value of `_X_AMZN_TRACE_ID`, which the runtime
/// updates for each invocation; outside one, none.
///
/// Characters that may not appear in a header are percent-encoded, as the AWS SDKs do.
#[derive(Clone, Debug)]
pub struct TraceIdFromEnv {
    env: Env,
    in_lambda: bool,
}

impl TraceIdFromEnv {
    /// Reads the process environment.
    pub fn new() -> Self {
        Self::with_env(Env::process())
    }

    /// Reads `env` (whether this is a Lambda function is decided now).
    pub fn with_env(env: Env) -> Self {
        let in_lambda = env.non_empty("AWS_LAMBDA_FUNCTION_NAME").is_some();
        Self { env, in_lambda }
    }

    /// The header value for the current invocation, if any.
    pub fn current(&self) -> Option<HeaderValue> {
        if !self.in_lambda {
            return None;
        }
        let id = self.env.non_empty("_X_AMZN_TRACE_ID")?;
        let mut encoded = String::with_capacity(id.len());
        for b in id.trim().bytes() {
            if b.is_ascii_graphic() && b != b'%' {
                encoded.push(char::from(b));
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        HeaderValue::from_str(&encoded).ok()
    }
}

impl Default for TraceIdFromEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> MakeHeaderValue<T> for TraceIdFromEnv {
    fn make_header_value(&mut self, _message: &T) -> Option<HeaderValue> {
        self.current()
    }
}

/// The layer of the `recursion-detection` slot.
pub type RecursionDetectionLayer = SetRequestHeaderLayer<TraceIdFromEnv>;

/// The layer of the `recursion-detection` slot: `X-Amzn-Trace-Id` from
/// [`TraceIdFromEnv`], unless the request has one.
pub fn recursion_detection_layer(trace_id: TraceIdFromEnv) -> RecursionDetectionLayer {
    SetRequestHeaderLayer::if_not_present(X_AMZN_TRACE_ID, trace_id)
}

/// The `user-agent` and `recursion-detection` slots in one layer (the default stack's):
/// sets `User-Agent`, then `x-amz-user-agent`, then `X-Amzn-Trace-Id` (inside a Lambda
/// function), each unless the request has it, as the two slots' three tower-http layers
/// do in that order.
#[derive(Clone, Debug)]
pub(crate) struct IdentityHeadersLayer {
    shared: Arc<IdentityHeaders>,
}

#[derive(Debug)]
struct IdentityHeaders {
    user_agent: HeaderValue,
    trace_id: TraceIdFromEnv,
}

impl IdentityHeadersLayer {
    pub(crate) fn new(user_agent: HeaderValue, trace_id: TraceIdFromEnv) -> Self {
        Self {
            shared: Arc::new(IdentityHeaders {
                user_agent,
                trace_id,
            }),
        }
    }
}

impl<S> tower::Layer<S> for IdentityHeadersLayer {
    type Service = IdentityHeadersService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        IdentityHeadersService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of [`IdentityHeadersLayer`].
#[derive(Clone, Debug)]
pub(crate) struct IdentityHeadersService<S> {
    inner: S,
    shared: Arc<IdentityHeaders>,
}

impl<S, B> tower::Service<http::Request<B>> for IdentityHeadersService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // As tower-http's `SetRequestHeader` in its "if not present" mode: look, then
        // insert; the trace id is read only when the request has none.
        let headers = req.headers_mut();
        let ua = &self.shared.user_agent;
        if !headers.contains_key(http::header::USER_AGENT) {
            headers.insert(http::header::USER_AGENT, ua.clone());
        }
        if !headers.contains_key(&X_AMZ_USER_AGENT) {
            headers.insert(X_AMZ_USER_AGENT, ua.clone());
        }
        if !headers.contains_key(&X_AMZN_TRACE_ID) {
            if let Some(id) = self.shared.trace_id.current() {
                headers.insert(X_AMZN_TRACE_ID, id);
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    /// The default stack's one layer sets what the named stack's two slots set, in the
    /// same order, and keeps what the caller set: inside and outside a Lambda function.
    #[tokio::test]
    async fn one_identity_layer_sets_what_the_two_slots_set() {
        let echo = || {
            // Answers with the headers the request arrived with.
            tower::service_fn(|req: http::Request<()>| async move {
                let mut resp = http::Response::new(());
                *resp.headers_mut() = req.headers().clone();
                Ok::<_, std::convert::Infallible>(resp)
            })
        };
        // Inside Lambda the runtime changes `_X_AMZN_TRACE_ID` for every invocation:
        // each request must carry the current one.
        let trace = Arc::new(std::sync::Mutex::new(String::from("Root=1-first")));
        let current = Arc::clone(&trace);
        let lambda = Env::from_fn(move |name| match name {
            "AWS_LAMBDA_FUNCTION_NAME" => Some("caller".into()),
            "_X_AMZN_TRACE_ID" => current.lock().ok().map(|t| t.clone()),
            _ => None,
        });
        let envs = [Env::from_pairs([("X", "y")]), lambda];
        let requests = || {
            let plain = http::Request::new(());
            let mut preset = http::Request::new(());
            for (name, value) in [
                ("user-agent", "caller-ua"),
                ("x-amz-user-agent", "caller-amz-ua"),
                ("x-amzn-trace-id", "Root=1-from-caller"),
                ("content-type", "application/json"),
            ] {
                preset
                    .headers_mut()
                    .insert(name, HeaderValue::from_static(value));
            }
            let mut some = http::Request::new(());
            some.headers_mut()
                .insert("x-amz-user-agent", HeaderValue::from_static("mine"));
            // Several values, and an empty one: present, so left alone.
            let mut odd = http::Request::new(());
            odd.headers_mut()
                .append("user-agent", HeaderValue::from_static("a"));
            odd.headers_mut()
                .append("user-agent", HeaderValue::from_static("b"));
            odd.headers_mut()
                .insert("x-amzn-trace-id", HeaderValue::from_static(""));
            [plain, preset, some, odd]
        };
        for env in envs {
            let in_lambda = env.get("AWS_LAMBDA_FUNCTION_NAME").is_some();
            let ua = user_agent_with(Some("app"), &env);
            let mut slots = tower::ServiceBuilder::new()
                .layer(user_agent_layer(ua.clone()))
                .layer(recursion_detection_layer(TraceIdFromEnv::with_env(
                    env.clone(),
                )))
                .service(echo());
            let mut fused =
                IdentityHeadersLayer::new(ua, TraceIdFromEnv::with_env(env)).layer(echo());
            for (i, req) in requests().into_iter().enumerate() {
                if let Ok(mut t) = trace.lock() {
                    *t = format!("Root=1-call-{i}");
                }
                let plain = req.headers().is_empty();
                let copy = {
                    let mut c = http::Request::new(());
                    *c.headers_mut() = req.headers().clone();
                    c
                };
                let want = slots.ready().await.unwrap().call(req).await.unwrap();
                let got = fused.ready().await.unwrap().call(copy).await.unwrap();
                let pairs = |r: &http::Response<()>| -> Vec<(String, String)> {
                    r.headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                        .collect()
                };
                assert_eq!(pairs(&got), pairs(&want));
                assert!(got.headers().contains_key("user-agent"));
                if plain && in_lambda {
                    assert_eq!(got.headers()["x-amzn-trace-id"], format!("Root=1-call-{i}"));
                }
            }
        }
    }

    #[test]
    fn trace_id_only_inside_lambda_and_encoded() {
        let outside = TraceIdFromEnv::with_env(Env::from_pairs([("_X_AMZN_TRACE_ID", "Root=1")]));
        assert_eq!(outside.current(), None);
        let inside = TraceIdFromEnv::with_env(Env::from_pairs([
            ("AWS_LAMBDA_FUNCTION_NAME", "caller"),
            (
                "_X_AMZN_TRACE_ID",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a:1 é",
            ),
        ]));
        assert_eq!(
            inside.current().unwrap(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a:1%20%C3%A9"
        );
        let no_id = TraceIdFromEnv::with_env(Env::from_pairs([("AWS_LAMBDA_FUNCTION_NAME", "f")]));
        assert_eq!(no_id.current(), None);
    }

    #[test]
    fn user_agent_format() {
        let env = Env::from_pairs([("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE")]);
        let ua = user_agent_with(Some("my app/1"), &env);
        let ua = ua.to_str().unwrap();
        assert!(
            ua.contains(" exec-env/AWS_ECS_FARGATE app/my-app-1"),
            "{ua}"
        );
        assert!(!user_agent_with(None, &Env::from_pairs([("X", "y")]))
            .to_str()
            .unwrap()
            .contains("app/"));
    }
}
