//! The whole client over real loopback HTTP against the local endpoint: invocation types,
//! qualifiers, log tails, function errors, limits, SigV4 verification and faults.

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tower::ServiceExt;

use invoke_stack::error::{InvokeError, InvokeErrorKind, RunStatus, TransportErrorKind};
use invoke_stack::layers::sigv4::{sign_request, Credentials, SigningConfig};
use invoke_stack::model::{InvocationType, InvokeRequest, LogType};
use invoke_stack::testing::{Fault, FunctionFailure, LocalFunction, LocalLambda, Outcome};
use invoke_stack::transport::{HyperTransport, TransportConfig};
use invoke_stack::{codec, InvokeClient};

fn req(name: &str) -> invoke_stack::model::InvokeRequestBuilder {
    InvokeRequest::builder(name).payload(r#"{"k":"v"}"#)
}

#[tokio::test]
async fn sync_invoke_echoes_and_reports_version() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    let resp = client.invoke(req("echo").build().unwrap()).await.unwrap();
    assert_eq!(resp.status_code(), 200);
    assert_eq!(resp.payload().as_ref(), br#"{"k":"v"}"#);
    assert_eq!(resp.executed_version(), Some("$LATEST"));
    assert!(resp.function_error().is_none());
    assert!(resp.request_id().is_some());
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn qualifiers_in_every_form() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    let arn = lambda.function_arn("echo");
    let cases = [
        (req("echo").qualifier("1"), "1"),
        (req("echo:live"), "2"),
        (req("echo").qualifier("$LATEST"), "$LATEST"),
        (req(&format!("{arn}:live")), "2"),
        (
            req(&format!("{}:function:echo", lambda.account_id())).qualifier("2"),
            "2",
        ),
        (req(&arn), "$LATEST"),
    ];
    for (builder, version) in cases {
        let r = builder.build().unwrap();
        let name = r.function_name().to_string();
        let resp = client.invoke(r).await.unwrap();
        assert_eq!(resp.executed_version(), Some(version), "{name}");
    }
    let err = client
        .invoke(req("echo").qualifier("9").build().unwrap())
        .await
        .unwrap_err();
    let api = err.as_api().unwrap();
    assert_eq!(
        (api.status(), api.code()),
        (404, "ResourceNotFoundException")
    );
    assert!(api.message().unwrap().ends_with("function:echo:9"), "{api}");
    let err = client.invoke_json("missing", &1).await.unwrap_err();
    assert_eq!(err.as_api().unwrap().status(), 404);
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
    assert_eq!(lambda.invocations("echo"), 6);
}

#[tokio::test]
async fn event_is_queued_and_runs_in_the_background() {
    let _secrets = common::watch_secrets();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let lambda = LocalLambda::builder()
        .function(
            "worker",
            LocalFunction::new(move |inv| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(inv.payload().clone());
                    Ok(Bytes::new())
                }
            }),
        )
        .start()
        .await
        .unwrap();
    let client = common::client_for(&lambda);
    let resp = client.invoke_event("worker", r#"{"job":1}"#).await.unwrap();
    assert_eq!(resp.status_code(), 202);
    assert!(resp.payload().is_empty());
    assert_eq!(lambda.invocations("worker"), 1);
    assert_eq!(rx.recv().await.unwrap().as_ref(), br#"{"job":1}"#);
}

#[tokio::test]
async fn client_context_and_tenant_reach_the_function() {
    let _secrets = common::watch_secrets();
    let lambda = LocalLambda::builder()
        .function(
            "ctx",
            LocalFunction::new(|inv| async move {
                let out = serde_json::json!({
                    "cc": inv.client_context(),
                    "tenant": inv.tenant_id(),
                    "type": inv.invocation_type().as_str(),
                });
                Ok(Bytes::from(out.to_string()))
            }),
        )
        .start()
        .await
        .unwrap();
    let client = common::client_for(&lambda);
    let resp = client
        .invoke(
            InvokeRequest::builder("ctx")
                .client_context_json(&serde_json::json!({"custom": {"k": "v"}}))
                .tenant_id("tenant-7")
                .durable_execution_name("run-1")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let v: serde_json::Value = resp.payload_json().unwrap();
    assert_eq!(v["cc"], r#"{"custom":{"k":"v"}}"#);
    assert_eq!(v["tenant"], "tenant-7");
    assert_eq!(v["type"], "RequestResponse");
}

#[tokio::test]
async fn dry_run_does_not_run() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    let resp = client.dry_run("echo").await.unwrap();
    assert_eq!(resp.status_code(), 204);
    assert_eq!(lambda.invocations("echo"), 0);
    assert_eq!(lambda.records()[0].outcome, Outcome::DryRun);
    // DryRun still checks that the function exists.
    let err = client.dry_run("missing").await.unwrap_err();
    assert_eq!(err.as_api().unwrap().status(), 404);
}

#[tokio::test]
async fn log_tail_is_the_last_4kb() {
    let _secrets = common::watch_secrets();
    let lambda = LocalLambda::builder()
        .function(
            "chatty",
            LocalFunction::new(|inv| async move {
                for i in 0..200 {
                    inv.log(format!("line {i:03} of a long log"));
                }
                Ok(Bytes::from_static(b"null"))
            }),
        )
        .start()
        .await
        .unwrap();
    let client = common::client_for(&lambda);
    let resp = client
        .invoke(
            InvokeRequest::builder("chatty")
                .log_type(LogType::Tail)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let tail = resp.log_tail().unwrap();
    assert!(tail.len() <= 4096, "{}", tail.len());
    assert!(tail.contains("line 199 of a long log"));
    assert!(!tail.contains("line 000"));
    assert!(tail.contains("END RequestId: ") && tail.contains("REPORT RequestId: "));
    assert!(resp.log_result().unwrap().len() > tail.len());
    // Without Tail, no log.
    let resp = client.invoke_json("chatty", &1).await.unwrap();
    assert!(resp.log_result().is_none());
}

#[tokio::test]
async fn function_errors_are_results() {
    let _secrets = common::watch_secrets();
    let lambda = LocalLambda::builder()
        .function(
            "fails",
            LocalFunction::new(|inv| async move {
                if inv.payload().as_ref() == b"1" {
                    Err(FunctionFailure::handled("ValidationError", "bad order"))
                } else {
                    Err(FunctionFailure::unhandled(
                        "Runtime.ExitError",
                        "exit status 1",
                    ))
                }
            }),
        )
        .function(
            "huge",
            LocalFunction::new(|_| async { Ok(Bytes::from(vec![b'1'; 6_300_000])) }),
        )
        .start()
        .await
        .unwrap();
    let client = common::client_for(&lambda);
    let resp = client.invoke_json("fails", &1).await.unwrap();
    assert_eq!(resp.status_code(), 200);
    let fe = resp.function_error().unwrap();
    assert_eq!(
        (fe.kind(), fe.error_type(), fe.error_message()),
        ("Handled", Some("ValidationError"), Some("bad order"))
    );
    let resp = client.invoke_json("fails", &2).await.unwrap();
    let fe = resp.function_error().unwrap();
    assert!(fe.is_unhandled());
    assert_eq!(fe.error_type(), Some("Runtime.ExitError"));

    let resp = client.invoke_json("huge", &1).await.unwrap();
    let fe = resp.function_error().unwrap();
    assert_eq!(fe.error_type(), Some("Function.ResponseSizeTooLarge"));
}

/// Signs and sends a hand-made request, bypassing the client's validation, so the
/// endpoint's own checks are exercised.
async fn raw(
    lambda: &LocalLambda,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    creds: Option<Credentials>,
) -> http::Response<Bytes> {
    let mut b = http::Request::post(format!("{}{path}", lambda.endpoint_url()))
        .header("host", lambda.addr().to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut r = b.body(body.into()).unwrap();
    if let Some(c) = creds {
        sign_request(
            &mut r,
            &c,
            &SigningConfig::new(lambda.region()),
            SystemTime::now(),
        )
        .unwrap();
    }
    HyperTransport::new(TransportConfig::default())
        .unwrap()
        .oneshot(r)
        .await
        .unwrap()
}

fn code_of(resp: &http::Response<Bytes>) -> (u16, String) {
    let status = resp.status().as_u16();
    let err = codec::decode(resp.clone()).map(|_| ()).unwrap_err();
    (status, err.code().to_owned())
}

#[tokio::test]
async fn endpoint_enforces_limits_and_validation() {
    let _secrets = common::watch_secrets();
    let (lambda, _client) = common::echo_endpoint().await;
    let creds = || Some(lambda.credentials());
    let path = "/2015-03-31/functions/echo/invocations";

    let big_event = vec![b' '; 1_048_577];
    let r = raw(
        &lambda,
        path,
        &[("x-amz-invocation-type", "Event")],
        big_event,
        creds(),
    )
    .await;
    assert_eq!(code_of(&r), (413, "RequestTooLargeException".into()));

    let big_sync = vec![b' '; 6_291_456];
    let r = raw(&lambda, path, &[], big_sync, creds()).await;
    let api = codec::decode(r).unwrap_err();
    assert_eq!(api.status(), 413);
    assert!(api.message().unwrap().contains("6291456"));

    // (path, headers, body, expected code)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let bad: &[Case] = &[
        (path, &[], "{not json", "InvalidRequestContentException"),
        (
            path,
            &[("x-amz-client-context", "bm90IGpzb24=")],
            "{}",
            "InvalidRequestContentException",
        ),
        (
            path,
            &[("x-amz-invocation-type", "Later")],
            "{}",
            "InvalidParameterValueException",
        ),
        (
            "/2015-03-31/functions/echo%3A1/invocations?Qualifier=2",
            &[],
            "{}",
            "InvalidParameterValueException",
        ),
        (
            "/2015-03-31/functions/my%20fn/invocations",
            &[],
            "{}",
            "ValidationException",
        ),
    ];
    for &(path, headers, body, code) in bad {
        let r = raw(&lambda, path, headers, body, creds()).await;
        assert_eq!(code_of(&r), (400, code.into()), "{path} {headers:?} {body}");
    }

    assert_eq!(lambda.invocations("echo"), 0);
}

#[tokio::test]
async fn endpoint_verifies_signatures() {
    let _secrets = common::watch_secrets();
    let (lambda, _client) = common::echo_endpoint().await;
    let path = "/2015-03-31/functions/echo/invocations";
    let good = raw(&lambda, path, &[], "{}", Some(lambda.credentials())).await;
    assert_eq!(good.status(), 200);

    let wrong_secret = Credentials::from_keys(lambda.credentials().access_key_id(), "wrong", None);
    let r = raw(&lambda, path, &[], "{}", Some(wrong_secret)).await;
    assert_eq!(code_of(&r), (403, "InvalidSignatureException".into()));

    let unknown = Credentials::from_keys("AKIDUNKNOWN", "secret", None);
    let r = raw(&lambda, path, &[], "{}", Some(unknown)).await;
    assert_eq!(code_of(&r), (403, "UnrecognizedClientException".into()));

    let r = raw(&lambda, path, &[], "{}", None).await;
    assert_eq!(
        code_of(&r),
        (403, "MissingAuthenticationTokenException".into())
    );

    // A body changed after signing no longer matches.
    let mut tampered = http::Request::post(format!("{}{path}", lambda.endpoint_url()))
        .header("host", lambda.addr().to_string())
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    sign_request(
        &mut tampered,
        &lambda.credentials(),
        &SigningConfig::new(lambda.region()),
        SystemTime::now(),
    )
    .unwrap();
    *tampered.body_mut() = Bytes::from_static(b"[]");
    let r = HyperTransport::new(TransportConfig::default())
        .unwrap()
        .oneshot(tampered)
        .await
        .unwrap();
    assert_eq!(code_of(&r), (403, "InvalidSignatureException".into()));
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn session_tokens_are_checked() {
    let _secrets = common::watch_secrets();
    let lambda = LocalLambda::builder()
        .accept_key("ASIATEMP", "temp-secret", Some("the-token".into()))
        .function("echo", LocalFunction::echo())
        .start()
        .await
        .unwrap();
    let client = common::client_for(&lambda);
    assert_eq!(lambda.credentials().session_token(), Some("the-token"));
    client.invoke_json("echo", &1).await.unwrap();
    let wrong = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(Credentials::from_keys(
            "ASIATEMP",
            "temp-secret",
            Some("stale".into()),
        ))
        .build()
        .unwrap();
    let err = wrong.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(err.as_api().unwrap().code(), "UnrecognizedClientException");
}

#[tokio::test]
async fn skewed_clock_is_rejected_as_clock_skew() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    // One attempt, to see the rejection itself (a retry would heal it).
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .build()
        .unwrap();
    lambda.set_clock_skew(true, Duration::from_secs(600));
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    let api = err.as_api().unwrap();
    assert_eq!(api.code(), "InvalidSignatureException");
    assert!(api.is_clock_skew(), "{api}");
    // A fresh client (nothing learned yet) against a clock that is behind.
    lambda.set_clock_skew(false, Duration::from_secs(600));
    let err = common::builder_for(&lambda)
        .max_attempts(1)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    assert!(err
        .as_api()
        .unwrap()
        .message()
        .unwrap()
        .starts_with("Signature not yet current"));
    // Within the 5 minutes SigV4 tolerates, a fresh client gets through at once.
    lambda.set_clock_skew(true, Duration::from_secs(60));
    common::client_for(&lambda)
        .invoke_json("echo", &1)
        .await
        .unwrap();
}

#[tokio::test]
async fn skewed_clock_is_corrected_after_one_rejection() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    // The endpoint's clock is 12 minutes ahead of ours (within the 15 the signer believes).
    lambda.set_clock_skew(true, Duration::from_secs(720));
    // The first attempt is rejected; the signer learns the offset from the rejection's
    // Date header and the retry, signed with the corrected time, goes through.
    let resp = client.invoke_json("echo", &2).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"2");
    let records = lambda.records();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].outcome,
        Outcome::Rejected {
            status: 403,
            code: "InvalidSignatureException".into()
        }
    );
    assert_eq!(records[1].attempt.as_deref(), Some("attempt=2; max=3"));
    assert_eq!(lambda.invocations("echo"), 1);
    // Later calls are signed right the first time.
    client.invoke_json("echo", &3).await.unwrap();
    assert_eq!(lambda.requests("echo"), 3);
}

#[tokio::test]
async fn reset_before_request_never_runs_the_function() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script("echo", [Fault::ResetBeforeRequest]);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.kind(), TransportErrorKind::Exchange);
    // From the client's side the request was written: it cannot know it was not read.
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert!(err.is_retryable());
    assert_eq!(lambda.invocations("echo"), 0);
    assert_eq!(lambda.requests("echo"), 1);
    // The endpoint serves the next request normally.
    client.invoke_json("echo", &2).await.unwrap();
}

#[tokio::test]
async fn reset_after_request_ran_the_function_once() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script("echo", [Fault::ResetAfterRequest]);
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert!(
        matches!(err.kind(), InvokeErrorKind::Transport(_)),
        "{err:?}"
    );
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn truncated_body_is_a_transport_error_after_the_function_ran() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script("echo", [Fault::Truncated]);
    let err = client
        .invoke(
            req("echo")
                .payload(r#"{"some":"payload to cut"}"#)
                .build()
                .unwrap(),
        )
        .await
        .unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.kind(), TransportErrorKind::ResponseBody);
    assert!(t.request_sent());
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn garbage_and_delay_faults() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    lambda.script(
        "echo",
        [
            Fault::Garbage { status: 500 },
            Fault::Delay(Duration::from_millis(20)),
        ],
    );
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert_eq!(err.as_api().unwrap().code(), "500");
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    let ok = client.invoke_json("echo", &2).await.unwrap();
    assert_eq!(ok.payload().as_ref(), b"2");
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn hang_ends_in_an_operation_timeout() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    lambda.always("echo", Some(Fault::Hang));
    let client = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .operation_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = client.invoke_json("echo", &1).await.unwrap_err();
    assert!(matches!(err.kind(), InvokeErrorKind::Timeout(_)), "{err:?}");
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(lambda.invocations("echo"), 0);
}

#[tokio::test]
async fn event_attempts_time_out_quickly() {
    let _secrets = common::watch_secrets();
    use invoke_stack::client::TimeoutConfig;
    use invoke_stack::error::Timer;
    let (lambda, _) = common::echo_endpoint().await;
    lambda.always("echo", Some(Fault::Hang));
    let client = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .timeouts(TimeoutConfig {
            async_attempt: Duration::from_millis(100),
            ..TimeoutConfig::default()
        })
        .build()
        .unwrap();
    let err = client.invoke_event("echo", "{}").await.unwrap_err();
    let InvokeErrorKind::Timeout(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.timer(), Timer::Attempt);
    assert!(
        t.request_sent(),
        "the body was written before the timer fired"
    );
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
}

#[tokio::test]
async fn per_operation_counts_use_the_invocation_id() {
    let _secrets = common::watch_secrets();
    let (lambda, _client) = common::echo_endpoint().await;
    let path = "/2015-03-31/functions/echo/invocations";
    for attempt in ["attempt=1; max=3", "attempt=2; max=3"] {
        let headers = [
            ("amz-sdk-invocation-id", "op-1"),
            ("amz-sdk-request", attempt),
        ];
        raw(&lambda, path, &headers, "{}", Some(lambda.credentials())).await;
    }
    assert_eq!(lambda.invocations_of_operation("op-1"), 2);
    assert_eq!(
        lambda.records()[1].attempt.as_deref(),
        Some("attempt=2; max=3")
    );
}

#[tokio::test]
async fn connection_refused_is_not_sent() {
    let _secrets = common::watch_secrets();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = InvokeClient::builder()
        .endpoint_url(format!("http://{addr}"))
        .credentials(Credentials::from_keys("A", "S", None))
        .build()
        .unwrap();
    let err = client.invoke_json("f", &1).await.unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.kind(), TransportErrorKind::Connect);
    assert!(!t.request_sent());
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
}

#[tokio::test]
async fn response_cap_and_insecure_http_are_enforced() {
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    let client = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .transport(TransportConfig::default().max_response_bytes(1000))
        .build()
        .unwrap();
    let big = format!("\"{}\"", "x".repeat(5000));
    let err = client
        .invoke(InvokeRequest::builder("echo").payload(big).build().unwrap())
        .await
        .unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.kind(), TransportErrorKind::ResponseTooLarge);

    // Plain HTTP to a non-loopback host is refused before any connection is made.
    let remote = InvokeClient::builder()
        .endpoint_url("http://203.0.113.10:9000")
        .credentials(lambda.credentials())
        .build()
        .unwrap();
    let err = remote.invoke_json("echo", &1).await.unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.kind(), TransportErrorKind::InvalidRequest);
    assert!(!t.request_sent());
    assert_eq!(err.fault(), invoke_stack::error::Fault::Client);
}

#[tokio::test]
async fn validation_happens_before_the_network() {
    let _secrets = common::watch_secrets();
    let (lambda, client) = common::echo_endpoint().await;
    let err = InvokeRequest::builder("echo")
        .invocation_type(InvocationType::Event)
        .payload(vec![b' '; 2_000_000])
        .build()
        .map_err(InvokeError::from)
        .unwrap_err();
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
    let err = client.invoke_json("bad name!", &1).await.unwrap_err();
    assert!(matches!(err.kind(), InvokeErrorKind::Validation(_)));
    assert_eq!(lambda.requests("bad name!"), 0);
    assert!(lambda.records().is_empty());
}

/// Issue 16, item 22: `Duration::MAX` as "no limit", anywhere a duration is set, neither
/// panics at build nor at invoke.
#[tokio::test]
async fn duration_max_means_no_limit() {
    use invoke_stack::client::{FunctionSettings, TimeoutConfig};
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .timeouts(TimeoutConfig {
            max_function_duration: Duration::MAX,
            sync_margin: Duration::MAX,
            ..TimeoutConfig::default()
        })
        .operation_timeout(Duration::MAX)
        .function(
            "echo",
            FunctionSettings::default().max_duration(Duration::MAX),
        )
        .build()
        .unwrap();
    let resp = client.invoke_json("echo", &7).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"7");
    let named = common::builder_for(&lambda)
        .operation_timeout(Duration::MAX)
        .function(
            "echo",
            FunctionSettings::default().max_duration(Duration::MAX),
        )
        .named_stack(|_| {})
        .build()
        .unwrap();
    assert_eq!(
        named
            .invoke_json("echo", &8)
            .await
            .unwrap()
            .payload()
            .as_ref(),
        b"8"
    );
}

/// Issue 16 item 23: `http://127.0.0.1:99999` used to be answered by a listener on port 80
/// (the port that does not parse was dropped). Every URL that cannot be used as given is
/// refused when the client is built, with the reason.
#[test]
fn invalid_endpoint_urls_are_refused_at_build_time() {
    use invoke_stack::client::BuildError;
    use invoke_stack::transport::EndpointError;
    let cases = [
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:65536", "port"),
        ("http://127.0.0.1:0", "port"),
        ("http://127.0.0.1:80x", "port"),
        ("http://127.0.0.1:", "port"),
        ("http://[::1]:70000/", "port"),
        ("http://user:secret@127.0.0.1:9001", "user info"),
        ("http://user@127.0.0.1:9001", "user info"),
        ("http://127.0.0.1:9001/base?x=1", "query"),
        ("http://127.0.0.1:9001/#top", "fragment"),
        ("http://127.0.0.1:9001#top", "fragment"),
        ("ftp://127.0.0.1:9001", "scheme"),
        ("127.0.0.1:9001", "scheme"),
        ("http://:9001", "host"),
    ];
    for (url, reason) in cases {
        let err = InvokeClient::builder()
            .endpoint_url(url)
            .region("us-east-1")
            .credentials(Credentials::from_keys("A", "S", None))
            .build()
            .map(|_| ())
            .expect_err(url);
        let BuildError::Endpoint(EndpointError::InvalidUrl {
            url: given,
            reason: why,
        }) = &err
        else {
            panic!("{url}: {err:?}")
        };
        assert!(why.contains(reason), "{url}: {why}");
        // The error names the URL and the reason, but never a password in the URL.
        if reason == "user info" {
            assert!(
                !given.contains("user") && !given.contains("secret"),
                "{given}"
            );
            assert!(given.ends_with("@127.0.0.1:9001"), "{given}");
        } else {
            assert_eq!(given, url);
        }
        assert!(!format!("{err} {err:?}").contains("secret"), "{err}");
    }
    // A password holding the characters that end an authority is masked all the same.
    for url in [
        "https://AKID:se/cret@lambda.us-east-1.amazonaws.com",
        "http://user:p#secret@127.0.0.1:9001",
        "http://user:p?secret@127.0.0.1:9001",
        "http://user:p@secret@127.0.0.1:9001",
        "https:/user:secret@host",
    ] {
        let err = InvokeClient::builder()
            .endpoint_url(url)
            .region("us-east-1")
            .credentials(Credentials::from_keys("A", "S", None))
            .build()
            .map(|_| ())
            .expect_err(url);
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("cret"),
            "{url}: {shown}"
        );
    }
    // What is allowed: a port in range, a base path (for proxies), IPv6 literals.
    for url in [
        "http://127.0.0.1:65535",
        "http://127.0.0.1:1/proxy/",
        "https://lambda.us-east-1.amazonaws.com",
        "http://[::1]:4566",
    ] {
        let client = InvokeClient::builder()
            .endpoint_url(url)
            .region("us-east-1")
            .credentials(Credentials::from_keys("A", "S", None))
            .build()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(client
            .endpoint()
            .url()
            .starts_with(url.trim_end_matches('/')));
    }
}

/// A TLS endpoint that accepts TCP connections and never answers the ClientHello (a
/// middlebox that stalls the handshake). Returns its port and how many connections it
/// accepted; it holds them open until the test ends.
#[cfg(feature = "rustls")]
async fn stalled_tls() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, accepted)
}

/// Issue 16 item 17: a request with an empty body (`DryRun`, an empty payload) counted as
/// sent before any connection existed, so a timeout during the connect phase read "may
/// have run". Now it is sent when a connection takes it.
#[cfg(feature = "rustls")]
#[tokio::test]
async fn empty_body_timed_out_while_connecting_has_not_run() {
    use invoke_stack::client::TimeoutConfig;
    use invoke_stack::error::Timer;
    let _secrets = common::watch_secrets();
    let (port, accepted) = stalled_tls().await;
    let builder = || {
        InvokeClient::builder()
            .endpoint_url(format!("https://127.0.0.1:{port}"))
            .region("us-east-1")
            .credentials(Credentials::from_keys("A", "S", None))
            .max_attempts(1)
            // The connect timer must not be the one that fires here.
            .transport(TransportConfig::default().connect_timeout(Duration::from_secs(600)))
    };
    // DryRun: its attempt timer fires during the TLS handshake.
    let client = builder()
        .timeouts(TimeoutConfig {
            async_attempt: Duration::from_millis(200),
            ..TimeoutConfig::default()
        })
        .build()
        .unwrap();
    let err = client.dry_run("f").await.unwrap_err();
    let InvokeErrorKind::Timeout(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.timer(), Timer::Attempt);
    assert!(!t.request_sent(), "{t}");
    assert_eq!(err.may_have_run(), RunStatus::NotRun, "{err}");

    // An empty synchronous payload: the operation deadline fires during the handshake.
    let client = builder()
        .operation_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = client
        .invoke(InvokeRequest::builder("f").build().unwrap())
        .await
        .unwrap_err();
    let InvokeErrorKind::Timeout(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.timer(), Timer::Operation);
    assert!(!t.request_sent(), "{t}");
    assert_eq!(err.may_have_run(), RunStatus::NotRun, "{err}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// The other side of item 17: once a connection has taken an empty-body request, a
/// timeout reads "may have run".
#[tokio::test]
async fn empty_body_taken_by_a_connection_counts_as_sent() {
    use invoke_stack::client::TimeoutConfig;
    use invoke_stack::error::Timer;
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    lambda.always("echo", Some(Fault::Hang));
    // Long enough for a loaded machine to hand the request to a connection; the
    // function hangs anyway.
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .timeouts(TimeoutConfig {
            async_attempt: Duration::from_secs(2),
            ..TimeoutConfig::default()
        })
        .build()
        .unwrap();
    let err = client.dry_run("echo").await.unwrap_err();
    let InvokeErrorKind::Timeout(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.timer(), Timer::Attempt);
    assert!(t.request_sent(), "{t}");
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(lambda.requests("echo"), 1);
}

/// Issue 16 item 16: the connect timeout covered the TCP connect only, so a middlebox
/// that accepts TCP and stalls the TLS handshake held a synchronous call for its whole
/// attempt timeout (960 s). It now covers DNS, TCP and TLS, and says so with
/// `Timer::Connect`.
#[cfg(feature = "rustls")]
#[tokio::test]
async fn connect_timeout_covers_the_tls_handshake() {
    use invoke_stack::error::{Fault as ErrorFault, TimeoutError, Timer};
    let _secrets = common::watch_secrets();
    let (port, accepted) = stalled_tls().await;
    let client = InvokeClient::builder()
        .endpoint_url(format!("https://127.0.0.1:{port}"))
        .region("us-east-1")
        .credentials(Credentials::from_keys("A", "S", None))
        .max_attempts(1)
        .transport(TransportConfig::default().connect_timeout(Duration::from_millis(200)))
        // Only so that the test ends when the connect timer does not fire.
        .operation_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = client.invoke_json("f", &1).await.unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.kind(), TransportErrorKind::ConnectTimeout, "{t}");
    assert!(!t.request_sent());
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
    assert_eq!(err.fault(), ErrorFault::Server);
    assert!(err.is_retryable());
    // The timer that fired is named in the error's sources.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(t);
    let mut timer = None;
    while let Some(e) = source {
        if let Some(elapsed) = e.downcast_ref::<TimeoutError>() {
            timer = Some((elapsed.timer(), elapsed.waited(), elapsed.request_sent()));
        }
        source = e.source();
    }
    assert_eq!(
        timer,
        Some((Timer::Connect, Duration::from_millis(200), false)),
        "{t}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Issue 16 item 7: a response over the size cap is deterministic; it was retried (three
/// downloads of it for an idempotent function).
#[tokio::test]
async fn a_response_over_the_cap_is_not_retried() {
    use invoke_stack::client::FunctionSettings;
    let _secrets = common::watch_secrets();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .function("echo", FunctionSettings::default().idempotent(true))
        .transport(TransportConfig::default().max_response_bytes(1000))
        .build()
        .unwrap();
    let big = format!("\"{}\"", "x".repeat(5000));
    let err = client
        .invoke(InvokeRequest::builder("echo").payload(big).build().unwrap())
        .await
        .unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.kind(), TransportErrorKind::ResponseTooLarge);
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.attempts(), 1);
    // The function ran, but the answer was not read: the error cannot say more.
    assert_eq!(err.may_have_run(), RunStatus::Unknown, "{err}");
    assert_eq!(lambda.requests("echo"), 1);
}

/// Issue 16 item 7: a certificate that cannot be trusted is a configuration fault that no
/// retry heals; it was retried as a connect failure.
#[cfg(feature = "rustls")]
#[tokio::test]
async fn an_untrusted_certificate_is_not_retried() {
    use invoke_stack::error::Fault as ErrorFault;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let _secrets = common::watch_secrets();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    let client = InvokeClient::builder()
        .endpoint_url(format!("https://localhost:{port}"))
        .region("us-east-1")
        .credentials(Credentials::from_keys("A", "S", None))
        .retry_policy(invoke_stack::layers::retry::RetryPolicy {
            transient_base: Duration::from_millis(5),
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = client.invoke_json("f", &1).await.unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.kind(), TransportErrorKind::Certificate, "{t}");
    assert!(t.to_string().contains("certificate"), "{t}");
    assert!(!t.request_sent());
    assert_eq!(err.fault(), ErrorFault::Client);
    assert!(!err.is_retryable());
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
    assert_eq!(err.attempts(), 1);
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
}

/// Connections a raw HTTP/1.1 server has open now, the most it had at once, and the
/// requests it answered.
#[derive(Default)]
struct ConnectionCount {
    open: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    requests: std::sync::atomic::AtomicUsize,
}

/// A keep-alive HTTP/1.1 server that answers each request `{}` after `delay`, or never
/// when `delay` is `None`.
async fn slow_server(delay: Option<Duration>) -> (u16, std::sync::Arc<ConnectionCount>) {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(ConnectionCount::default());
    let counts = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counts = counts.clone();
            let now = counts.open.fetch_add(1, SeqCst) + 1;
            counts.most.fetch_max(now, SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                'conn: loop {
                    // One request: its head, then its body (content-length).
                    let head_end = loop {
                        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break 'conn,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while seen.len() < head_end + length {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break 'conn,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.drain(..head_end + length);
                    counts.requests.fetch_add(1, SeqCst);
                    match delay {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                    if stream.write_all(answer).await.is_err() {
                        break;
                    }
                }
                counts.open.fetch_sub(1, SeqCst);
            });
        }
    });
    (port, count)
}

/// Issue 16 item 29: a burst opened one connection per call. With a cap per host, the
/// calls over it wait for a connection, and all complete.
#[tokio::test]
async fn connections_per_host_are_capped() {
    use std::sync::atomic::Ordering::SeqCst;
    let _secrets = common::watch_secrets();
    let (port, count) = slow_server(Some(Duration::from_millis(50))).await;
    let client = InvokeClient::builder()
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region("us-east-1")
        .credentials(Credentials::from_keys("A", "S", None))
        .transport(TransportConfig::default().max_connections_per_host(2))
        .build()
        .unwrap();
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.invoke_json("f", &i).await })
        })
        .collect();
    for call in calls {
        let resp = call.await.unwrap().unwrap();
        assert_eq!(resp.payload().as_ref(), b"{}");
    }
    assert_eq!(count.requests.load(SeqCst), 10);
    assert!(count.most.load(SeqCst) <= 2, "{}", count.most.load(SeqCst));
}

/// The wait for a connection counts against the attempt's timeout (and the operation's
/// deadline: both timers are outside the transport), and a call that timed out waiting
/// was not sent.
#[tokio::test]
async fn waiting_for_a_connection_counts_against_the_timeout() {
    use invoke_stack::error::Timer;
    use std::sync::atomic::Ordering::SeqCst;
    let _secrets = common::watch_secrets();
    let (port, count) = slow_server(None).await;
    // A synchronous call's attempt timeout is the function's duration plus a margin
    // (16 minutes); a DryRun's is 100 ms here.
    let client = InvokeClient::builder()
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region("us-east-1")
        .credentials(Credentials::from_keys("A", "S", None))
        .transport(TransportConfig::default().max_connections_per_host(1))
        .max_attempts(1)
        .timeouts(invoke_stack::client::TimeoutConfig {
            async_attempt: Duration::from_millis(100),
            ..Default::default()
        })
        .build()
        .unwrap();
    // The first call takes the only connection and hangs.
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.invoke_json("f", &1).await }
    });
    while count.requests.load(SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let err = client.dry_run("f").await.unwrap_err();
    let InvokeErrorKind::Timeout(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.timer(), Timer::Attempt);
    assert!(!t.request_sent(), "{t}");
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
    assert_eq!(count.most.load(SeqCst), 1);
    assert_eq!(count.requests.load(SeqCst), 1);
    first.abort();
}
