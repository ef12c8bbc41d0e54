//! Conformance against moto's Lambda endpoint: a real server we did not write.
//!
//! The test starts `python3 -m moto.server` on a port of the kernel's choosing, reads the
//! port from its log, switches Lambda to the no-Docker backend and invokes through our
//! client. Under `CI=true` a missing moto is a failure; elsewhere the test says loudly
//! that it was skipped (`.ci/run` installs moto).
//!
//! Moto's habits, and where it departs from the spec (the spec wins):
//! - it picks the Lambda backend from the SigV4 credential scope, so requests are signed
//!   (any key works; signatures are not checked unless auth is switched on);
//! - the no-Docker backend echoes the body for any function name and ignores
//!   `?Qualifier=` (so the qualifier is sent but cannot be checked here);
//! - it sends no log tail and closes every connection;
//! - it fails with a bare 500 when the payload is JSON but not an object (e.g. `1`),
//!   where Lambda passes any JSON value to the function: payloads here are objects;
//! - for `Event` it answers 202 *with* the payload as body, where Lambda sends none
//!   (spec §2.1): we assert the status only.

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use invoke_stack::error::{Fault, RunStatus};
use invoke_stack::layers::sigv4::{sign_request, Credentials, SigningConfig};
use invoke_stack::model::{InvocationType, InvokeRequest};
use invoke_stack::InvokeClient;

struct Moto {
    _child: Child,
    url: String,
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

async fn moto_installed() -> bool {
    Command::new(python())
        .args(["-c", "import moto.server, flask"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Starts moto on a free loopback port and waits for its "Running on" line.
async fn start_moto() -> Option<Moto> {
    if !moto_installed().await {
        let msg = "moto is not installed (pip install 'moto[server]'); the moto conformance test cannot run";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    let mut child = Command::new(python())
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn moto");
    let stderr = child.stderr.take().expect("moto stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("Running on ").nth(1) {
                return Some(rest.trim().to_owned());
            }
        }
        None
    })
    .await
    .expect("moto did not start within 60 s")
    .expect("moto exited before it was ready");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Moto { _child: child, url })
}

async fn set_docker(moto: &Moto, use_docker: bool) {
    use tower::ServiceExt;
    let body = format!(r#"{{"lambda": {{"use_docker": {use_docker}}}}}"#);
    let req = http::Request::post(format!("{}/moto-api/config", moto.url))
        .header("content-type", "application/json")
        .body(bytes::Bytes::from(body))
        .unwrap();
    let transport = invoke_stack::transport::HyperTransport::new(Default::default()).unwrap();
    let resp = transport.oneshot(req).await.expect("configure moto");
    assert!(resp.status().is_success(), "moto config: {}", resp.status());
}

fn client(moto: &Moto) -> InvokeClient {
    InvokeClient::builder()
        .endpoint_url(&moto.url)
        .region("us-east-1")
        .credentials(Credentials::from_keys("AKIDMOTO", "moto-secret", None))
        .build()
        .unwrap()
}

#[tokio::test]
async fn invoke_against_moto() {
    let _secrets = common::watch_secrets();
    let Some(moto) = start_moto().await else {
        return;
    };
    let client = client(&moto);

    set_docker(&moto, false).await;

    let names = [
        "echo",
        "123456789012:function:echo",
        "arn:aws:lambda:us-east-1:123456789012:function:echo:prod",
    ];
    for name in names {
        let req = InvokeRequest::builder(name)
            .payload(r#"{"n":1}"#)
            .build()
            .unwrap();
        let resp = client.invoke(req).await.unwrap();
        assert_eq!(resp.status_code(), 200, "{name}");
        assert_eq!(resp.payload().as_ref(), br#"{"n":1}"#, "{name}");
        assert!(resp.request_id().is_some());
    }
    // A Qualifier field travels as ?Qualifier=; moto ignores it, the call must still work.
    let req = InvokeRequest::builder("echo")
        .qualifier("$LATEST")
        .payload("{}")
        .build()
        .unwrap();
    assert_eq!(client.invoke(req).await.unwrap().status_code(), 200);

    let event = InvokeRequest::builder("echo")
        .invocation_type(InvocationType::Event)
        .payload(r#"{"e":1}"#)
        .build()
        .unwrap();
    assert_eq!(client.invoke(event).await.unwrap().status_code(), 202);

    let dry = client.dry_run("echo").await.unwrap();
    assert_eq!(dry.status_code(), 204);
    assert!(dry.payload().is_empty());

    // With Docker back on, an unknown function gets a real 404 in the `__type` form.
    set_docker(&moto, true).await;
    let err = client
        .invoke_json("no-such-function", &serde_json::json!({"n": 1}))
        .await
        .unwrap_err();
    let api = err.as_api().expect("an API error");
    assert_eq!(api.status(), 404);
    assert_eq!(api.code(), "ResourceNotFoundException");
    assert!(api
        .message()
        .unwrap_or_default()
        .contains("no-such-function"));
    assert_eq!(err.fault(), Fault::Client);
    assert!(!err.is_retryable());
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
}

/// Sends a signed AWS query-protocol call (IAM) and returns the body.
async fn iam(moto: &Moto, form: &str) -> String {
    use tower::ServiceExt;
    let mut req = http::Request::post(format!("{}/", moto.url))
        .header("host", moto.url.trim_start_matches("http://"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(bytes::Bytes::from(format!("{form}&Version=2010-05-08")))
        .unwrap();
    let admin = Credentials::from_keys("AKIDADMIN", "admin-secret", None);
    sign_request(
        &mut req,
        &admin,
        &SigningConfig::new("us-east-1").service("iam"),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let transport = invoke_stack::transport::HyperTransport::new(Default::default()).unwrap();
    let resp = transport.oneshot(req).await.expect("IAM call");
    let body = String::from_utf8_lossy(resp.body()).into_owned();
    assert!(
        resp.status().is_success(),
        "IAM {form}: {} {body}",
        resp.status()
    );
    body
}

fn xml_field(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).map(|i| i + open.len()).expect(tag);
    let end = xml[start..].find("</").expect(tag) + start;
    xml[start..end].to_owned()
}

/// Moto as a second, independent SigV4 verifier: with authentication switched on it
/// recomputes each signature with botocore and answers 403 `SignatureDoesNotMatch`
/// (an XML body) to a wrong secret.
///
/// What it cannot check: it signs the *decoded* path, so it falsely rejects names with
/// `:` (partial and full ARNs) and a `$LATEST` qualifier; and it expects
/// `x-amz-content-sha256` for an empty body. Those cases are covered by the botocore
/// vectors (`tests/sigv4_oracle.rs`) and the local endpoint instead; here: plain names,
/// non-empty payloads.
#[tokio::test]
async fn moto_verifies_our_signatures() {
    let _secrets = common::watch_secrets();
    let Some(moto) = start_moto().await else {
        return;
    };
    set_docker(&moto, false).await;
    // An IAM user allowed everything, and its key, made while auth is still off.
    iam(&moto, "Action=CreateUser&UserName=invoker").await;
    let policy =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let policy: String = policy
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    iam(
        &moto,
        &format!("Action=PutUserPolicy&UserName=invoker&PolicyName=all&PolicyDocument={policy}"),
    )
    .await;
    let key_xml = iam(&moto, "Action=CreateAccessKey&UserName=invoker").await;
    let key = xml_field(&key_xml, "AccessKeyId");
    let secret = xml_field(&key_xml, "SecretAccessKey");

    // Authentication on from the next request.
    {
        use tower::ServiceExt;
        let req = http::Request::post(format!("{}/moto-api/reset-auth", moto.url))
            .header("content-type", "text/plain")
            .body(bytes::Bytes::from_static(b"0"))
            .unwrap();
        let transport = invoke_stack::transport::HyperTransport::new(Default::default()).unwrap();
        let resp = transport.oneshot(req).await.unwrap();
        assert!(resp.status().is_success(), "reset-auth: {}", resp.status());
    }

    let signed_by = |secret: &str| {
        InvokeClient::builder()
            .endpoint_url(&moto.url)
            .region("us-east-1")
            .credentials(Credentials::from_keys(key.clone(), secret.to_owned(), None))
            .build()
            .unwrap()
    };
    let good = signed_by(&secret);
    for payload in [r#"{"n":1}"#, r#"{"text":"a b/c?d=e&f"}"#] {
        let req = InvokeRequest::builder("echo")
            .payload(payload)
            .build()
            .unwrap();
        let resp = good.invoke(req).await.expect("moto accepts our signature");
        assert_eq!(resp.payload().as_ref(), payload.as_bytes());
    }
    let event = InvokeRequest::builder("echo")
        .invocation_type(InvocationType::Event)
        .payload(r#"{"e":1}"#)
        .build()
        .unwrap();
    assert_eq!(good.invoke(event).await.unwrap().status_code(), 202);

    let err = signed_by("not-the-secret")
        .invoke_json("echo", &serde_json::json!({"n": 1}))
        .await
        .unwrap_err();
    let api = err.as_api().expect("an API error");
    assert_eq!((api.status(), api.code()), (403, "SignatureDoesNotMatch"));
    assert!(!api.is_clock_skew());
    assert_eq!(err.fault(), Fault::Client);
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
}
