#![cfg(feature = "aws-config")]
//! The `aws-config` feature (issue 18, item 1): aws-config's default chain, through
//! `InvokeClientBuilder::sdk_config`, gets credentials from fake ECS, EC2 IMDSv2 and STS
//! servers started here on 127.0.0.1; the local endpoint accepts only those keys and
//! checks every signature.
//!
//! aws-config reads the process environment, and a test must not change the environment
//! of a process whose other tests run at the same time: each case runs this test binary
//! again as a child process (`child_process_entry`), with exactly the variables it needs
//! (`env_clear`), while the parent serves the fakes and the endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::InvokeClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHILD: &str = "INVOKE_STACK_AWS_CONFIG_CHILD";

/// One request a fake server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// Status, body, and extra header lines of an answer.
type Handler = Arc<dyn Fn(&Seen) -> (u16, String, &'static str) + Send + Sync>;

/// A minimal HTTP/1.1 server: one request per connection, answered by `handler`.
async fn fake_server(handler: Handler) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (handler, record) = (Arc::clone(&handler), Arc::clone(&record));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.lines();
                let mut first = lines.next().unwrap_or_default().split_whitespace();
                let method = first.next().unwrap_or_default().to_owned();
                let path = first.next().unwrap_or_default().to_owned();
                let headers: HashMap<String, String> = lines
                    .filter_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    })
                    .collect();
                let length: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let seen = Seen {
                    method,
                    path,
                    headers,
                    body: String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
                };
                let (status, body, extra) = handler(&seen);
                record.lock().unwrap().push(seen);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn expiration() -> String {
    // An hour from now, as RFC 3339.
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn json_credentials(key: &str) -> String {
    format!(
        r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{key}","SecretAccessKey":"secret-{key}","Token":"token-{key}","Expiration":"{}","LastUpdated":"2024-01-01T00:00:00Z"}}"#,
        expiration()
    )
}

/// A local endpoint that accepts only `key` (with its secret and session token).
async fn endpoint_for(key: &str) -> LocalLambda {
    LocalLambda::builder()
        .region("eu-west-1")
        .accept_key(key, format!("secret-{key}"), Some(format!("token-{key}")))
        .function("echo", LocalFunction::echo())
        .start()
        .await
        .unwrap()
}

/// Runs `child_process_entry` in a child process with exactly `vars` (plus what every
/// case needs), and returns its exit status and output.
async fn run_child(lambda: &LocalLambda, vars: &[(&str, String)]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!(
        "invoke-stack-aws-config-{}-{}",
        std::process::id(),
        lambda.addr().port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_clear()
    .env(CHILD, "1")
    .env("HOME", &dir)
    .env("AWS_CONFIG_FILE", dir.join("config"))
    .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"))
    .env("AWS_REGION", lambda.region())
    .env("AWS_ENDPOINT_URL_LAMBDA", lambda.endpoint_url())
    .env("AWS_EC2_METADATA_DISABLED", "true");
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The child's side: aws-config's default chain, mapped by `sdk_config`, one call.
#[tokio::test]
async fn child_process_entry() {
    if std::env::var(CHILD).is_err() {
        return; // Only meaningful in the child process the other tests start.
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = InvokeClient::builder()
        .sdk_config(&sdk)
        .max_attempts(1)
        .build()
        .unwrap();
    // The endpoint came from AWS_ENDPOINT_URL_LAMBDA through aws-config.
    println!("endpoint {}", client.endpoint().url());
    match client.invoke_json("echo", &1).await {
        Ok(resp) => println!("CHILD OK {}", String::from_utf8_lossy(resp.payload())),
        Err(e) => panic!("CHILD FAILED: {e}"),
    }
}

#[tokio::test]
async fn ecs_container_credentials() {
    let lambda = endpoint_for("AKIDECS").await;
    let (addr, seen) = fake_server(Arc::new(|req: &Seen| {
        if req.path == "/creds"
            && req.headers.get("authorization").map(String::as_str) == Some("ecs-auth")
        {
            (200, json_credentials("AKIDECS"), "")
        } else {
            (403, "{}".to_owned(), "")
        }
    }))
    .await;
    let (ok, out) = run_child(
        &lambda,
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://{addr}/creds"),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth".to_owned()),
        ],
    )
    .await;
    assert!(ok && out.contains("CHILD OK 1"), "{out}");
    assert!(!seen.lock().unwrap().is_empty());
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn ec2_instance_metadata_v2() {
    let lambda = endpoint_for("AKIDEC2").await;
    let (addr, seen) = fake_server(Arc::new(|req: &Seen| {
        let token_ok = req
            .headers
            .get("x-aws-ec2-metadata-token")
            .map(String::as_str)
            == Some("imds-token");
        match (req.method.as_str(), req.path.as_str()) {
            ("PUT", "/latest/api/token")
                if req
                    .headers
                    .contains_key("x-aws-ec2-metadata-token-ttl-seconds") =>
            {
                (
                    200,
                    "imds-token".to_owned(),
                    "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n",
                )
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") if token_ok => {
                (200, "test-role".to_owned(), "")
            }
            ("GET", "/latest/meta-data/iam/security-credentials/test-role") if token_ok => {
                (200, json_credentials("AKIDEC2"), "")
            }
            _ => (404, String::new(), ""),
        }
    }))
    .await;
    let (ok, out) = run_child(
        &lambda,
        &[
            ("AWS_EC2_METADATA_DISABLED", "false".to_owned()),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                format!("http://{addr}"),
            ),
        ],
    )
    .await;
    assert!(ok && out.contains("CHILD OK 1"), "{out}");
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .any(|r| r.method == "PUT" && r.path == "/latest/api/token"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn web_identity_through_sts() {
    let lambda = endpoint_for("AKIDWEB").await;
    let (addr, seen) = fake_server(Arc::new(|req: &Seen| {
        if req.method == "POST"
            && req.body.contains("Action=AssumeRoleWithWebIdentity")
            && req.body.contains("WebIdentityToken=the-oidc-token")
        {
            (
                200,
                format!(
                    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                     <AssumeRoleWithWebIdentityResult>\
                     <Credentials><AccessKeyId>AKIDWEB</AccessKeyId><SecretAccessKey>secret-AKIDWEB</SecretAccessKey>\
                     <SessionToken>token-AKIDWEB</SessionToken><Expiration>{}</Expiration></Credentials>\
                     <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>\
                     <AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>\
                     </AssumeRoleWithWebIdentityResult>\
                     <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>\
                     </AssumeRoleWithWebIdentityResponse>",
                    expiration()
                ),
                "",
            )
        } else {
            (400, "<ErrorResponse/>".to_owned(), "")
        }
    }))
    .await;
    let token = std::env::temp_dir().join(format!("invoke-stack-oidc-{}", std::process::id()));
    std::fs::write(&token, "the-oidc-token").unwrap();
    let (ok, out) = run_child(
        &lambda,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/r".to_owned(),
            ),
            ("AWS_ROLE_SESSION_NAME", "s".to_owned()),
            ("AWS_ENDPOINT_URL_STS", format!("http://{addr}")),
        ],
    )
    .await;
    let _ = std::fs::remove_file(&token);
    assert!(ok && out.contains("CHILD OK 1"), "{out}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// The settings of an `SdkConfig` reach the client; the builder wins over them.
#[tokio::test]
async fn sdk_config_settings_are_mapped() {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let sdk = aws_types::SdkConfig::builder()
        .region(aws_types::region::Region::new("ap-southeast-2"))
        .use_fips(true)
        .retry_config(RetryConfig::adaptive().with_max_attempts(5))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(std::time::Duration::from_secs(42))
                .build(),
        )
        .app_name(aws_types::app_name::AppName::new("billing").unwrap())
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let env = invoke_stack::config::Env::from_pairs([("AWS_CONFIG_FILE", "/nonexistent/config")]);
    let client = InvokeClient::builder()
        .env(env.clone())
        .sdk_config(&sdk)
        .build()
        .unwrap();
    assert_eq!(
        client.endpoint().url(),
        "https://lambda-fips.ap-southeast-2.amazonaws.com"
    );
    // Adaptive retry mode: an adaptive limit per function.
    assert!(client.rate_limiter().is_keyed());
    let client = InvokeClient::builder()
        .region("eu-west-1")
        .env(env)
        .sdk_config(&sdk)
        .use_fips(false)
        .build()
        .unwrap();
    assert_eq!(
        client.endpoint().url(),
        "https://lambda.eu-west-1.amazonaws.com"
    );
    // Standard mode: no client-side limit, as without an SdkConfig.
    let standard = aws_types::SdkConfig::builder()
        .region(aws_types::region::Region::new("eu-west-1"))
        .retry_config(RetryConfig::standard())
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let client = InvokeClient::builder()
        .env(invoke_stack::config::Env::from_pairs([(
            "AWS_CONFIG_FILE",
            "/nonexistent/config",
        )]))
        .sdk_config(&standard)
        .build()
        .unwrap();
    assert!(!client.rate_limiter().is_keyed());
}
