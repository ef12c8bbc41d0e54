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

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use invoke_stack::error::{Fault, RunStatus};
use invoke_stack::layers::sigv4::Credentials;
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
