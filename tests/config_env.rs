//! Settings from the environment and the shared config file (issue 18, item 2), the lean
//! credential chain's error, and the identity headers (item 5), over real loopback HTTP
//! against the local endpoint, which checks every signature. The environment is given
//! to the builder (`InvokeClientBuilder::env`): no test changes the process's.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use invoke_stack::config::Env;
use invoke_stack::error::InvokeErrorKind;
use invoke_stack::stack::InvokeStack;
use invoke_stack::testing::{Fault, LocalFunction, LocalLambda};
use invoke_stack::InvokeClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A directory of its own under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "invoke-stack-config-env-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
    fn missing(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn endpoint(region: &str) -> LocalLambda {
    LocalLambda::builder()
        .region(region)
        .function("echo", LocalFunction::echo())
        .start()
        .await
        .unwrap()
}

/// The environment of a process with the endpoint's keys, and no files.
fn base_env(lambda: &LocalLambda, dir: &TempDir) -> Vec<(String, String)> {
    let creds = lambda.credentials();
    let mut vars = vec![
        (
            "AWS_ACCESS_KEY_ID".to_owned(),
            creds.access_key_id().to_owned(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            creds.secret_access_key().to_owned(),
        ),
        ("AWS_CONFIG_FILE".to_owned(), dir.missing("config")),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            dir.missing("credentials"),
        ),
        ("AWS_ENDPOINT_URL_LAMBDA".to_owned(), lambda.endpoint_url()),
    ];
    if let Some(token) = creds.session_token() {
        vars.push(("AWS_SESSION_TOKEN".to_owned(), token.to_owned()));
    }
    vars
}

fn with(mut vars: Vec<(String, String)>, more: &[(&str, &str)]) -> Env {
    for (k, v) in more {
        vars.retain(|(name, _)| name != k);
        vars.push(((*k).to_owned(), (*v).to_owned()));
    }
    Env::from_pairs(vars)
}

/// Proof of item 2: `AWS_CONFIG_FILE` with `region = eu-west-1` and no region variable;
/// the endpoint accepts only signatures scoped to eu-west-1.
#[tokio::test]
async fn the_profile_region_scopes_the_signature() {
    let dir = TempDir::new("region");
    let lambda = endpoint("eu-west-1").await;
    let config = dir.file(
        "config",
        "[default]\nregion = eu-west-1\n[profile other]\nregion = ap-south-1\n",
    );
    let env = with(base_env(&lambda, &dir), &[("AWS_CONFIG_FILE", &config)]);
    // No region, endpoint or credentials on the builder: all from the environment.
    let client = InvokeClient::builder().env(env.clone()).build().unwrap();
    let resp = client.invoke_json("echo", &1).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");

    // Another profile's region is another scope, refused by the endpoint.
    let other = with(
        base_env(&lambda, &dir),
        &[("AWS_CONFIG_FILE", &config), ("AWS_PROFILE", "other")],
    );
    let err = InvokeClient::builder()
        .env(other)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ap-south-1"), "{err}");

    // A region variable wins over the profile, and the builder over both.
    let env_region = with(
        base_env(&lambda, &dir),
        &[("AWS_CONFIG_FILE", &config), ("AWS_REGION", "ap-south-1")],
    );
    let err = InvokeClient::builder()
        .env(env_region.clone())
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ap-south-1"), "{err}");
    let client = InvokeClient::builder()
        .env(env_region)
        .region("eu-west-1")
        .build()
        .unwrap();
    client.invoke_json("echo", &1).await.unwrap();
}

#[tokio::test]
async fn endpoint_urls_from_the_environment() {
    let dir = TempDir::new("endpoint");
    let lambda = endpoint("us-east-1").await;
    let env = |more: &[(&str, &str)]| with(base_env(&lambda, &dir), more);
    let url = |e: Env| {
        InvokeClient::builder()
            .env(e)
            .build()
            .map(|c| c.endpoint().url())
    };
    // AWS_ENDPOINT_URL_LAMBDA wins over AWS_ENDPOINT_URL.
    assert_eq!(
        url(env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:1")])).unwrap(),
        lambda.endpoint_url()
    );
    let only_global = with(
        base_env(&lambda, &dir)
            .into_iter()
            .filter(|(k, _)| k != "AWS_ENDPOINT_URL_LAMBDA")
            .collect(),
        &[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_REGION", "us-west-2"),
        ],
    );
    assert_eq!(url(only_global.clone()).unwrap(), "http://127.0.0.1:1");
    // Ignored on request: the regional endpoint.
    let mut ignored: Vec<(String, String)> =
        vec![("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS".into(), "true".into())];
    ignored.extend([
        ("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:1".into()),
        ("AWS_REGION".into(), "us-west-2".into()),
        ("AWS_CONFIG_FILE".into(), dir.missing("config")),
    ]);
    assert_eq!(
        url(Env::from_pairs(ignored)).unwrap(),
        "https://lambda.us-west-2.amazonaws.com"
    );
    // FIPS and dual-stack from the environment.
    let variants = Env::from_pairs([
        ("AWS_REGION", "us-east-2"),
        ("AWS_USE_FIPS_ENDPOINT", "true"),
        ("AWS_USE_DUALSTACK_ENDPOINT", "True"),
        ("AWS_CONFIG_FILE", "/nonexistent/config"),
    ]);
    assert_eq!(
        url(variants.clone()).unwrap(),
        "https://lambda-fips.us-east-2.api.aws"
    );
    // The builder wins over the environment.
    let c = InvokeClient::builder()
        .env(variants)
        .use_fips(false)
        .use_dual_stack(false)
        .build()
        .unwrap();
    assert_eq!(c.endpoint().url(), "https://lambda.us-east-2.amazonaws.com");
    // An invalid value fails the build, naming the variable.
    let err = url(env(&[("AWS_USE_FIPS_ENDPOINT", "yes")])).unwrap_err();
    assert!(err.to_string().contains("AWS_USE_FIPS_ENDPOINT"), "{err}");
}

#[tokio::test]
async fn max_attempts_from_the_environment_and_the_profile() {
    let dir = TempDir::new("attempts");
    let lambda = endpoint("us-east-1").await;
    let config = dir.file("config", "[default]\nmax_attempts = 2\n");
    let throttled = |n: usize| {
        lambda.script("echo", std::iter::repeat_n(Fault::throttle(None, None), n));
    };
    let fast = invoke_stack::layers::retry::RetryPolicy {
        throttle_base: std::time::Duration::from_millis(1),
        transient_base: std::time::Duration::from_millis(1),
        ..Default::default()
    };
    // AWS_MAX_ATTEMPTS=1: no retry.
    let env = with(base_env(&lambda, &dir), &[("AWS_MAX_ATTEMPTS", "1")]);
    throttled(1);
    let err = InvokeClient::builder()
        .env(env.clone())
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 1);
    lambda.script("echo", []);
    // The profile's max_attempts = 2: one retry.
    let env = with(base_env(&lambda, &dir), &[("AWS_CONFIG_FILE", &config)]);
    let client = InvokeClient::builder().env(env.clone()).build().unwrap();
    throttled(2);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(err.attempts(), 2);
    lambda.script("echo", []);
    // An explicit policy wins.
    let client = InvokeClient::builder()
        .env(env)
        .retry_policy(fast)
        .build()
        .unwrap();
    throttled(2);
    client.invoke_json("echo", &1).await.unwrap();
}

/// The lean chain (no aws-config) names what it tried and what the feature adds.
#[tokio::test]
async fn without_credentials_the_error_names_the_sources_tried() {
    let dir = TempDir::new("nocreds");
    let lambda = endpoint("us-east-1").await;
    let env = Env::from_pairs(
        base_env(&lambda, &dir)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET")),
    );
    let err = InvokeClient::builder()
        .env(env)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), InvokeErrorKind::Credentials(_)),
        "{err:?}"
    );
    let text = err.to_string();
    for needle in [
        "environment",
        "AWS_ACCESS_KEY_ID",
        "profile files",
        "ECS",
        "EKS",
        "EC2",
        "SSO",
        "`aws-config` feature",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert_eq!(lambda.requests("echo"), 0);
}

/// A TCP relay in front of `upstream` that records what clients send.
async fn recording_relay(upstream: std::net::SocketAddr) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = [0u8; 8192];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Proof of item 5: the User-Agent and the trace id reach the endpoint, unsigned, and the
/// endpoint accepts the signature.
#[tokio::test]
async fn user_agent_and_trace_id_are_sent_and_not_signed() {
    let dir = TempDir::new("ua");
    let lambda = endpoint("us-east-1").await;
    let (relay, seen) = recording_relay(lambda.addr()).await;
    let env = with(
        base_env(&lambda, &dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &relay),
            ("AWS_SDK_UA_APP_ID", "billing"),
            ("AWS_LAMBDA_FUNCTION_NAME", "caller"),
            (
                "_X_AMZN_TRACE_ID",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            ),
        ],
    );
    let client = InvokeClient::builder().env(env).build().unwrap();
    assert_eq!(
        client.identify()[client.identify().len() - 3..],
        [
            "sign (attempt)",
            "user-agent (attempt)",
            "recursion-detection (attempt)"
        ]
    );
    client.invoke_json("echo", &1).await.unwrap();
    let head = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let ua = header(&head, "user-agent").expect("a User-Agent");
    assert!(
        ua.starts_with(concat!(
            "invoke-stack/",
            env!("CARGO_PKG_VERSION"),
            " ua/2.1 os/"
        )),
        "{ua}"
    );
    assert!(
        ua.contains(" lang/rust#") && ua.ends_with(" app/billing"),
        "{ua}"
    );
    assert_eq!(header(&head, "x-amz-user-agent"), Some(ua));
    assert_eq!(
        header(&head, "x-amzn-trace-id"),
        Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
    );
    let auth = header(&head, "authorization").expect("signed");
    let signed = auth
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap();
    for name in signed.split(';') {
        assert!(
            !["user-agent", "x-amz-user-agent", "x-amzn-trace-id"].contains(&name),
            "{name} signed: {signed}"
        );
    }
}

/// Outside a Lambda function no trace id is sent; one the caller set is kept.
#[tokio::test]
async fn trace_id_only_inside_lambda_and_the_callers_is_kept() {
    let dir = TempDir::new("trace");
    let lambda = endpoint("us-east-1").await;
    let (relay, seen) = recording_relay(lambda.addr()).await;
    let outside = with(
        base_env(&lambda, &dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &relay),
            ("_X_AMZN_TRACE_ID", "Root=1-a-b"),
        ],
    );
    InvokeClient::builder()
        .env(outside)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&std::mem::take(&mut *seen.lock().unwrap())).into_owned();
    assert_eq!(header(&head, "x-amzn-trace-id"), None, "{head}");

    let inside = with(
        base_env(&lambda, &dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &relay),
            ("AWS_LAMBDA_FUNCTION_NAME", "caller"),
            ("_X_AMZN_TRACE_ID", "Root=1-from-env"),
        ],
    );
    let client = InvokeClient::builder()
        .env(inside)
        .named_stack(|stack: &mut InvokeStack| {
            stack
                .add_before(
                    "recursion-detection",
                    "caller-trace",
                    tower::layer::layer_fn(|inner| {
                        invoke_stack::stack::BoxService::new(tower::util::MapRequest::new(
                            inner,
                            |mut req: http::Request<bytes::Bytes>| {
                                req.headers_mut().insert(
                                    "x-amzn-trace-id",
                                    http::HeaderValue::from_static("Root=1-from-caller"),
                                );
                                req
                            },
                        ))
                    }),
                )
                .unwrap();
        })
        .build()
        .unwrap();
    client.invoke_json("echo", &1).await.unwrap();
    let head = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert_eq!(header(&head, "x-amzn-trace-id"), Some("Root=1-from-caller"));
}

/// A profile the lean chain cannot use (assume-role) says how to get it working.
#[tokio::test]
async fn an_assume_role_profile_points_to_the_aws_config_feature() {
    let dir = TempDir::new("role");
    let lambda = endpoint("us-east-1").await;
    let config = dir.file(
        "config",
        "[default]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = base\n",
    );
    let env = Env::from_pairs(
        base_env(&lambda, &dir)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
            .chain([("AWS_CONFIG_FILE".to_owned(), config)]),
    );
    let err = InvokeClient::builder()
        .env(env)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("role_arn"), "{text}");
    assert!(
        text.contains("`aws-config` feature") && text.contains("sdk_config"),
        "{text}"
    );
    assert_eq!(lambda.requests("echo"), 0);
}
