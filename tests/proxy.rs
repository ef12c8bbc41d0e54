#![cfg(feature = "rustls")]
//! Proxies (issue 18, item 3): a CONNECT proxy written here sees the tunnel to an https
//! local endpoint; `NO_PROXY` bypasses it; proxy credentials are sent to the proxy and
//! appear nowhere else.

mod env_support;

use env_support::{connect_proxy, env_with, https_front, keys_env, test_ca, TempDir};
use invoke_stack::error::InvokeErrorKind;
use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::transport::{ProxyConfig, TransportConfig};
use invoke_stack::InvokeClient;

/// A name this machine cannot resolve: only the proxy knows where it is, so a call that
/// reaches the endpoint went through the proxy.
const HOST: &str = "lambda.invoke-test";

struct Setup {
    lambda: LocalLambda,
    port: u16,
    ca: String,
    dir: TempDir,
}

async fn setup(tag: &str) -> Setup {
    let lambda = LocalLambda::builder()
        .function("echo", LocalFunction::echo())
        .start()
        .await
        .unwrap();
    let ca = test_ca(&[HOST, "localhost"]);
    let port = https_front(lambda.addr(), ca.server.clone()).await;
    let dir = TempDir::new(&format!("proxy-{tag}"));
    let ca = dir.file("ca.pem", &ca.ca_pem);
    Setup {
        lambda,
        port,
        ca,
        dir,
    }
}

#[tokio::test]
async fn https_proxy_tunnels_with_connect_and_keeps_its_credentials_to_itself() {
    let s = setup("tunnel").await;
    let front = std::net::SocketAddr::from(([127, 0, 0, 1], s.port));
    let proxy = connect_proxy(
        vec![(HOST.to_owned(), front)],
        // Basic base64("user:p@ss w0rd")
        Some("Basic dXNlcjpwQHNzIHcwcmQ=".to_owned()),
    )
    .await;
    let proxy_url = format!("http://user:p%40ss%20w0rd@127.0.0.1:{}", proxy.port);
    let endpoint = format!("https://{HOST}:{}", s.port);
    let env = env_with(
        keys_env(&s.lambda, &s.dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &endpoint),
            ("AWS_CA_BUNDLE", &s.ca),
            ("https_proxy", &proxy_url),
        ],
    );
    let client = InvokeClient::builder().env(env).build().unwrap();
    let resp = client.invoke_json("echo", &1).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");
    let seen = proxy.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, format!("{HOST}:{}", s.port));
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Basic dXNlcjpwQHNzIHcwcmQ=")
    );
    assert!(!format!("{client:?}").contains("w0rd"));

    // Wrong credentials: the proxy refuses (407); the error says so and shows no secret.
    let wrong = format!("http://user:wrong-secret@127.0.0.1:{}", proxy.port);
    let env = env_with(
        keys_env(&s.lambda, &s.dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &endpoint),
            ("AWS_CA_BUNDLE", &s.ca),
            ("HTTPS_PROXY", &wrong),
        ],
    );
    let err = InvokeClient::builder()
        .env(env)
        .max_attempts(1)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert!(!t.request_sent());
    let text = format!("{err} {err:?}");
    assert!(text.contains("proxy authorization required"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
    assert_eq!(s.lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn no_proxy_bypasses_the_proxy() {
    let s = setup("noproxy").await;
    let proxy = connect_proxy(Vec::new(), None).await;
    let endpoint = format!("https://localhost:{}", s.port);
    let base = || {
        vec![
            ("AWS_ENDPOINT_URL_LAMBDA", endpoint.as_str()),
            ("AWS_CA_BUNDLE", s.ca.as_str()),
            ("HTTPS_PROXY", proxy.url.as_str()),
        ]
    };
    // Through the proxy first.
    let env = env_with(keys_env(&s.lambda, &s.dir), &base());
    InvokeClient::builder()
        .env(env)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap();
    assert_eq!(proxy.seen.lock().unwrap().len(), 1);
    // NO_PROXY=localhost: straight to the endpoint.
    let mut vars = base();
    vars.push(("NO_PROXY", "example.com, localhost"));
    let env = env_with(keys_env(&s.lambda, &s.dir), &vars);
    InvokeClient::builder()
        .env(env)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap();
    assert_eq!(proxy.seen.lock().unwrap().len(), 1, "the proxy was used");
    assert_eq!(s.lambda.invocations("echo"), 2);
}

#[tokio::test]
async fn an_explicit_proxy_wins_over_the_environment() {
    let s = setup("explicit").await;
    let front = std::net::SocketAddr::from(([127, 0, 0, 1], s.port));
    let proxy = connect_proxy(vec![(HOST.to_owned(), front)], None).await;
    let endpoint = format!("https://{HOST}:{}", s.port);
    // The environment says another (dead) proxy; the explicit one is used.
    let env = env_with(
        keys_env(&s.lambda, &s.dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &endpoint),
            ("AWS_CA_BUNDLE", &s.ca),
            ("HTTPS_PROXY", "http://127.0.0.1:1"),
        ],
    );
    InvokeClient::builder()
        .env(env.clone())
        .transport(TransportConfig::default().proxy(ProxyConfig::all(&proxy.url)))
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap();
    assert_eq!(proxy.seen.lock().unwrap().len(), 1);
    // ProxyConfig::none(): no proxy, whatever the environment says (and the name then
    // cannot be resolved here).
    let err = InvokeClient::builder()
        .env(env)
        .max_attempts(1)
        .transport(TransportConfig::default().proxy(ProxyConfig::none()))
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), InvokeErrorKind::Transport(_)),
        "{err:?}"
    );
    assert_eq!(proxy.seen.lock().unwrap().len(), 1);
}
