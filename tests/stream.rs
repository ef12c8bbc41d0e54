//! `InvokeWithResponseStream` over loopback HTTP against the local endpoint: chunks as
//! they arrive, the completion, every mid-stream fault as a typed error within its
//! timeout, and retries only before the response headers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use invoke_stack::error::RunStatus;
use invoke_stack::layers::timeout::Timer;
use invoke_stack::model::{InvocationType, LogType};
use invoke_stack::stream::{
    DecodeError, InvokeStreamRequest, InvokeStreamResponse, StreamConfig, StreamError,
    StreamErrorKind,
};
use invoke_stack::testing::{
    Fault, FunctionFailure, LocalLambda, StreamFault, StreamFunction, HTTP_INTEGRATION_CONTENT_TYPE,
};
use invoke_stack::{InvokeClient, InvokeErrorKind};
use tokio::io::AsyncReadExt as _;
use tokio::sync::Notify;

/// Every test ends well within this, whatever the fault.
const GUARD: Duration = Duration::from_secs(20);

async fn endpoint(name: &str, f: StreamFunction) -> LocalLambda {
    LocalLambda::builder()
        .stream_function(name, f)
        .start()
        .await
        .expect("start the local endpoint")
}

fn client_with(lambda: &LocalLambda, idle: Option<Duration>) -> InvokeClient {
    let mut config = StreamConfig::default();
    config.idle_timeout = idle;
    common::builder_for(lambda)
        .stream_config(config)
        .build()
        .expect("client")
}

fn request(name: &str) -> InvokeStreamRequest {
    InvokeStreamRequest::builder(name)
        .payload(r#"{"n":1}"#)
        .build()
        .expect("valid")
}

/// Reads the stream to its end: the chunks, then the error if it failed.
async fn drain(resp: &mut InvokeStreamResponse) -> (Vec<u8>, Option<StreamError>) {
    let mut out = Vec::new();
    while let Some(chunk) = resp.next_chunk().await {
        match chunk {
            Ok(c) => out.extend_from_slice(&c),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

async fn run_fault(
    fault: StreamFault,
    idle: Option<Duration>,
) -> (Vec<u8>, StreamError, LocalLambda) {
    let lambda = endpoint("f", StreamFunction::chunks(["one,", "two,", "three"])).await;
    lambda.script("f", [Fault::Stream(fault)]);
    let client = client_with(&lambda, idle);
    let (data, err) = tokio::time::timeout(GUARD, async {
        let mut resp = client.invoke_stream(request("f")).await.expect("headers");
        drain(&mut resp).await
    })
    .await
    .expect("ends within its timeout");
    let err = err.expect("a stream error");
    assert_eq!(err.may_have_run(), RunStatus::Ran);
    (data, err, lambda)
}

#[tokio::test]
async fn chunks_then_completion_with_headers_first() {
    let lambda = endpoint(
        "words",
        StreamFunction::new(|inv, out| async move {
            inv.log("writing");
            for w in ["Hello", ", ", "world"] {
                out.send(w).await.ok();
            }
            Ok(())
        })
        .content_type("text/plain"),
    )
    .await;
    let client = client_with(&lambda, None);
    let req = InvokeStreamRequest::builder("words")
        .log_type(LogType::Tail)
        .build()
        .expect("valid");
    let mut resp = client.invoke_stream(req).await.expect("headers");
    assert_eq!(resp.status_code(), 200);
    assert_eq!(resp.executed_version(), Some("$LATEST"));
    assert_eq!(resp.content_type(), Some("text/plain"));
    assert!(resp.request_id().is_some());
    assert!(resp.completion().is_none());
    let (data, err) = drain(&mut resp).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(data, b"Hello, world");
    assert_eq!((resp.chunks_received(), resp.bytes_received()), (3, 12));
    let done = resp.completion().expect("InvokeComplete");
    assert!(!done.is_function_error());
    let tail = done.log_tail().expect("a log tail");
    assert!(
        tail.contains("writing") && tail.contains("REPORT RequestId"),
        "{tail}"
    );
    assert_eq!(lambda.invocations("words"), 1);
}

#[tokio::test]
async fn the_first_chunk_arrives_while_the_function_is_still_running() {
    let release = Arc::new(Notify::new());
    let gate = Arc::clone(&release);
    let lambda = endpoint(
        "slow",
        StreamFunction::new(move |_, out| {
            let gate = Arc::clone(&gate);
            async move {
                out.send("first").await.ok();
                // The function finishes only once the test has seen the first chunk.
                gate.notified().await;
                out.send("second").await.ok();
                Ok(())
            }
        }),
    )
    .await;
    let client = client_with(&lambda, None);
    tokio::time::timeout(GUARD, async {
        let mut resp = client
            .invoke_stream(request("slow"))
            .await
            .expect("headers");
        let first = resp.next_chunk().await.expect("a chunk").expect("ok");
        assert_eq!(first.as_ref(), b"first");
        assert!(resp.time_to_first_chunk().is_some());
        assert!(!resp.is_finished());
        release.notify_one();
        let (rest, err) = drain(&mut resp).await;
        assert!(err.is_none());
        assert_eq!(rest, b"second");
    })
    .await
    .expect("no deadlock: the first chunk came before the function finished");
}

#[tokio::test]
async fn a_function_error_arrives_in_the_completion() {
    let lambda = endpoint(
        "fails",
        StreamFunction::new(|_, out| async move {
            out.send("partial").await.ok();
            Err(FunctionFailure::unhandled("Error", "boom"))
        }),
    )
    .await;
    let client = client_with(&lambda, None);
    let collected = client
        .invoke_stream(request("fails"))
        .await
        .expect("headers")
        .collect(1024)
        .await
        .expect("a complete stream");
    assert_eq!(collected.payload.as_ref(), b"partial");
    assert_eq!(collected.function_error(), Some("Unhandled"));
    let details = collected
        .completion
        .as_ref()
        .and_then(|c| c.error_details.clone())
        .expect("details");
    assert!(details.contains("boom"), "{details}");
}

#[tokio::test]
async fn a_stall_is_an_idle_timeout_with_the_bytes_received() {
    let (data, err, _lambda) = run_fault(
        StreamFault::Stall { after: 1 },
        Some(Duration::from_secs(1)),
    )
    .await;
    assert_eq!(data, b"one,");
    assert_eq!(
        err.kind(),
        &StreamErrorKind::IdleTimeout {
            idle: Duration::from_secs(1)
        }
    );
    assert_eq!((err.bytes_received(), err.chunks_received()), (4, 1));
    assert!(err.data_received());
    assert!(err.to_string().contains("the function ran"), "{err}");
}

#[tokio::test]
async fn a_stall_before_any_chunk_says_no_data_arrived() {
    let (data, err, _lambda) = run_fault(
        StreamFault::Stall { after: 0 },
        Some(Duration::from_secs(1)),
    )
    .await;
    assert!(data.is_empty());
    assert!(matches!(err.kind(), StreamErrorKind::IdleTimeout { .. }));
    assert!(!err.data_received());
}

#[tokio::test]
async fn a_body_without_invoke_complete_is_truncated_never_a_short_read() {
    let (data, err, _l) = run_fault(StreamFault::CloseWithoutComplete { after: 2 }, None).await;
    assert_eq!(data, b"one,two,");
    assert_eq!(
        err.kind(),
        &StreamErrorKind::Truncated {
            inside_frame: false
        }
    );
    let (_, err, _l) = run_fault(StreamFault::CutFrame { after: 1 }, None).await;
    assert_eq!(
        err.kind(),
        &StreamErrorKind::Truncated { inside_frame: true }
    );
}

#[tokio::test]
async fn a_corrupted_crc_is_a_decode_error() {
    let (data, err, _l) = run_fault(StreamFault::CorruptCrc { after: 1 }, None).await;
    assert_eq!(data, b"one,");
    match err.kind() {
        StreamErrorKind::Decode(DecodeError::Frame(msg)) => {
            assert!(msg.contains("checksum"), "{msg}");
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn error_and_exception_messages_are_typed() {
    let (_, err, _l) = run_fault(StreamFault::ErrorMessage { after: 1 }, None).await;
    assert_eq!(
        err.kind(),
        &StreamErrorKind::Decode(DecodeError::ErrorMessage {
            code: "InternalFailure".into(),
            message: "mid-stream failure".into()
        })
    );
    let (_, err, _l) = run_fault(StreamFault::Exception { after: 0 }, None).await;
    assert!(matches!(
        err.kind(),
        StreamErrorKind::Decode(DecodeError::Exception { exception_type, .. }) if exception_type == "ServiceException"
    ));
}

#[tokio::test]
async fn an_oversized_prelude_fails_at_once_without_buffering() {
    // The server stalls after the prelude: only a check of the prelude ends the call.
    let (data, err, _l) = run_fault(
        StreamFault::OversizedPrelude {
            after: 1,
            len: 0xFFFF_FF00,
        },
        None,
    )
    .await;
    assert_eq!(data, b"one,");
    assert!(matches!(
        err.kind(),
        StreamErrorKind::Decode(DecodeError::FrameTooLarge {
            len: 0xFFFF_FF00,
            ..
        })
    ));
}

#[tokio::test]
async fn a_reset_mid_stream_is_a_connection_error() {
    let (_, err, _l) = run_fault(StreamFault::Reset { after: 1 }, None).await;
    assert!(
        matches!(
            err.kind(),
            StreamErrorKind::Connection(_) | StreamErrorKind::Truncated { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_operation_deadline_covers_the_stream() {
    let lambda = endpoint("f", StreamFunction::chunks(["one,"])).await;
    lambda.script("f", [Fault::Stream(StreamFault::Stall { after: 1 })]);
    let client = common::builder_for(&lambda)
        .operation_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let mut resp = client.invoke_stream(request("f")).await.expect("headers");
    let (data, err) = tokio::time::timeout(GUARD, drain(&mut resp))
        .await
        .expect("the deadline ends it");
    assert_eq!(data, b"one,");
    assert_eq!(err.expect("an error").kind(), &StreamErrorKind::Deadline);
}

#[tokio::test]
async fn the_header_timeout_is_the_attempt_timeout() {
    let lambda = endpoint("f", StreamFunction::chunks(["x"])).await;
    lambda.script("f", [Fault::Hang]);
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .function(
            "f",
            invoke_stack::client::FunctionSettings::default()
                .max_duration(Duration::from_millis(200)),
        )
        .timeouts(invoke_stack::client::TimeoutConfig {
            sync_margin: Duration::from_millis(100),
            ..Default::default()
        })
        .build()
        .expect("client");
    let err = tokio::time::timeout(GUARD, client.invoke_stream(request("f")))
        .await
        .expect("bounded")
        .expect_err("no headers");
    match err.kind() {
        InvokeErrorKind::Timeout(t) => assert_eq!(t.timer(), Timer::Attempt),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn the_header_timeout_can_be_set_for_streams() {
    let lambda = endpoint("f", StreamFunction::chunks(["x"])).await;
    lambda.script("f", [Fault::Hang]);
    let mut config = StreamConfig::default();
    config.header_timeout = Some(Duration::from_millis(200));
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .stream_config(config)
        .build()
        .expect("client");
    let err = tokio::time::timeout(GUARD, client.invoke_stream(request("f")))
        .await
        .expect("bounded")
        .expect_err("no headers");
    match err.kind() {
        InvokeErrorKind::Timeout(t) => {
            assert_eq!(t.timer(), Timer::Attempt);
            assert!(t.waited() >= Duration::from_millis(200));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
}

#[tokio::test]
async fn a_throttle_and_a_500_before_the_stream_are_retried() {
    let lambda = endpoint("f", StreamFunction::chunks(["ok"])).await;
    lambda.script(
        "f",
        [Fault::throttle(None, None), Fault::service_exception()],
    );
    let client = common::builder_for(&lambda)
        .function(
            "f",
            invoke_stack::client::FunctionSettings::default().idempotent(true),
        )
        .build()
        .expect("client");
    let resp = client
        .invoke_stream(request("f"))
        .await
        .expect("third attempt");
    assert_eq!(resp.attempts(), 3);
    let collected = resp.collect(100).await.expect("complete");
    assert_eq!(collected.payload.as_ref(), b"ok");
    assert_eq!(lambda.invocations("f"), 1);
}

#[tokio::test]
async fn a_failure_after_the_200_is_not_retried_and_says_the_function_ran() {
    let (_, err, lambda) = run_fault(StreamFault::ErrorMessage { after: 1 }, None).await;
    assert_eq!(err.may_have_run(), RunStatus::Ran);
    // One request reached the endpoint, and the function ran once.
    assert_eq!(lambda.requests("f"), 1);
    assert_eq!(lambda.invocations("f"), 1);
}

#[tokio::test]
async fn api_errors_before_the_stream_are_invoke_errors() {
    let lambda = endpoint("f", StreamFunction::chunks(["ok"])).await;
    let client = client_with(&lambda, None);
    let err = client
        .invoke_stream(request("missing"))
        .await
        .expect_err("404");
    assert_eq!(err.type_name(), "ResourceNotFoundException");
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
}

#[tokio::test]
async fn event_is_rejected_before_sending_and_dry_run_has_no_stream() {
    let err = InvokeStreamRequest::builder("f")
        .invocation_type(InvocationType::Event)
        .build()
        .expect_err("Event is not accepted");
    assert_eq!(err.field().as_str(), "InvocationType");
    let lambda = endpoint("f", StreamFunction::chunks(["ok"])).await;
    let client = client_with(&lambda, None);
    let req = InvokeStreamRequest::builder("f")
        .invocation_type(InvocationType::DryRun)
        .build()
        .expect("valid");
    let mut resp = client.invoke_stream(req).await.expect("204");
    assert_eq!(resp.status_code(), 204);
    assert!(resp.next_chunk().await.is_none());
    assert!(resp.completion().is_none());
    assert_eq!(lambda.invocations("f"), 0);
}

#[tokio::test]
async fn the_http_integration_prelude_passes_through() {
    let lambda = endpoint(
        "web",
        StreamFunction::http_integration(201, serde_json::json!({"x-a": "1"}), "body"),
    )
    .await;
    let client = client_with(&lambda, None);
    let resp = client.invoke_stream(request("web")).await.expect("headers");
    assert_eq!(resp.content_type(), Some(HTTP_INTEGRATION_CONTENT_TYPE));
    let collected = resp.collect(1024).await.expect("complete");
    let p = collected.payload.as_ref();
    let nul = p.windows(8).position(|w| w == [0u8; 8]).expect("8 NULs");
    let prelude: serde_json::Value = serde_json::from_slice(&p[..nul]).expect("JSON prelude");
    assert_eq!(prelude["statusCode"], 201);
    assert_eq!(&p[nul + 8..], b"body");
}

#[tokio::test]
async fn collect_has_a_cap_and_async_read_reads_it_all() {
    let lambda = endpoint("f", StreamFunction::sized(10_000, 1000, Duration::ZERO)).await;
    let client = client_with(&lambda, None);
    let err = client
        .invoke_stream(request("f"))
        .await
        .expect("headers")
        .collect(5_000)
        .await
        .expect_err("over the cap");
    assert_eq!(err.kind(), &StreamErrorKind::TooLarge { max: 5_000 });
    let mut reader = client
        .invoke_stream(request("f"))
        .await
        .expect("headers")
        .into_async_read();
    let mut all = Vec::new();
    reader.read_to_end(&mut all).await.expect("read");
    assert_eq!(all.len(), 10_000);
    assert!(reader.response().completion().is_some());
}

#[tokio::test]
async fn a_plain_function_streams_in_one_chunk_and_a_stream_function_answers_invoke() {
    let lambda = LocalLambda::builder()
        .function("echo", invoke_stack::testing::LocalFunction::echo())
        .stream_function("words", StreamFunction::chunks(["a", "b"]))
        .start()
        .await
        .expect("start");
    let client = client_with(&lambda, None);
    let collected = client
        .invoke_stream(request("echo"))
        .await
        .expect("headers")
        .collect(100)
        .await
        .expect("complete");
    assert_eq!(collected.payload.as_ref(), br#"{"n":1}"#);
    let resp = client.invoke_json("words", &1).await.expect("invoke");
    assert_eq!(resp.payload().as_ref(), b"ab");
}

#[tokio::test]
async fn the_operation_span_records_the_stream() {
    let (cap, _g) = common::capture::start();
    let lambda = endpoint("words", StreamFunction::chunks(["ab", "cde"])).await;
    let client = client_with(&lambda, None);
    let mut resp = client
        .invoke_stream(request("words"))
        .await
        .expect("headers");
    let (data, err) = drain(&mut resp).await;
    assert!(err.is_none());
    assert_eq!(data, b"abcde");
    // A failed one records how it ended.
    lambda.script(
        "words",
        [Fault::Stream(StreamFault::CloseWithoutComplete {
            after: 1,
        })],
    );
    let mut resp = client
        .invoke_stream(request("words"))
        .await
        .expect("headers");
    let (_, err) = drain(&mut resp).await;
    assert!(err.is_some());
    drop(resp);

    let c = cap.0.lock().unwrap();
    let ops: Vec<_> = c
        .spans
        .iter()
        .filter(|s| s.name == "Lambda.InvokeWithResponseStream")
        .collect();
    assert_eq!(ops.len(), 2, "one operation span per call");
    let ok = ops[0];
    assert_eq!(ok.field("rpc.method"), Some("InvokeWithResponseStream"));
    assert_eq!(ok.field("faas.invoked_name"), Some("words"));
    assert_eq!(ok.field("http.response.status_code"), Some("200"));
    assert_eq!(ok.field("aws.lambda.stream.bytes"), Some("5"));
    assert_eq!(ok.field("aws.lambda.stream.chunks"), Some("2"));
    assert!(ok.field("aws.lambda.stream.first_chunk_ms").is_some());
    assert_eq!(ok.field("aws.lambda.stream.end"), Some("complete"));
    let failed = ops[1];
    assert_eq!(failed.field("aws.lambda.stream.bytes"), Some("2"));
    assert_eq!(failed.field("aws.lambda.stream.end"), Some("truncated"));
    assert_eq!(failed.field("error.type"), Some("truncated"));
    assert_eq!(failed.field("aws.lambda.may_have_run"), Some("ran"));
    // For OpenTelemetry: client spans, the failed one an error.
    assert_eq!(ok.field("otel.kind"), Some("client"));
    assert_eq!(ok.field("otel.status_code"), None);
    assert_eq!(failed.field("otel.status_code"), Some("ERROR"));
    assert!(failed
        .field("otel.status_description")
        .is_some_and(|d| d.starts_with("truncated")));
    assert!(c.events.iter().any(|e| e.message == "stream finished"
        && e.span.as_deref() == Some("Lambda.InvokeWithResponseStream")));
    // Attempt spans are children of the stream's operation span.
    assert!(c.spans.iter().any(|s| s.name == "Lambda.Invoke.attempt"
        && s.parent.as_deref() == Some("Lambda.InvokeWithResponseStream")));
}

#[tokio::test]
async fn an_error_answer_is_read_only_up_to_its_cap_and_classified() {
    // A proxy's 502 with a 1 MiB page: classified by its status, 64 KiB read at most.
    let lambda = endpoint("f", StreamFunction::chunks(["ok"])).await;
    let page = bytes::Bytes::from(vec![b'x'; 1024 * 1024]);
    lambda.script(
        "f",
        [Fault::Raw {
            status: 502,
            headers: vec![("content-type".into(), "text/html".into())],
            body: page,
        }],
    );
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .build()
        .expect("client");
    let err = tokio::time::timeout(GUARD, client.invoke_stream(request("f")))
        .await
        .expect("bounded")
        .expect_err("502");
    let api = err.as_api().expect("an API error");
    assert_eq!(api.status(), 502);
    assert!(err.is_retryable(), "an unmodeled 502 is transient");
    assert_eq!(lambda.invocations("f"), 0);
}

#[tokio::test]
async fn the_http_integration_prelude_is_taken_off_when_asked_and_only_for_its_type() {
    let lambda = LocalLambda::builder()
        .stream_function(
            "web",
            StreamFunction::http_integration(201, serde_json::json!({"x-a": "1"}), "body"),
        )
        // The same bytes under another content type: never stripped.
        .stream_function(
            "raw",
            StreamFunction::chunks([&b"{\"statusCode\":1}"[..], &[0u8; 8][..], &b"body"[..]]),
        )
        // The delimiter split across chunks.
        .stream_function(
            "split",
            StreamFunction::chunks([
                &b"{\"statusCode\":202}\0\0\0"[..],
                &b"\0\0"[..],
                &b"\0\0\0bo"[..],
                &b"dy"[..],
            ])
            .content_type(HTTP_INTEGRATION_CONTENT_TYPE),
        )
        // A prelude that never ends.
        .stream_function(
            "endless",
            StreamFunction::chunks([&b"{\"statusCode\":200}"[..]])
                .content_type(HTTP_INTEGRATION_CONTENT_TYPE),
        )
        .start()
        .await
        .expect("start");
    let mut config = StreamConfig::default();
    config.strip_http_integration_prelude = true;
    let client = common::builder_for(&lambda)
        .stream_config(config)
        .build()
        .expect("client");
    for (name, prelude_status) in [("web", 201), ("split", 202)] {
        let mut resp = client.invoke_stream(request(name)).await.expect("headers");
        let (body, err) = drain(&mut resp).await;
        assert!(err.is_none(), "{name}: {err:?}");
        assert_eq!(body, b"body", "{name}");
        let prelude: serde_json::Value =
            serde_json::from_slice(resp.http_integration_prelude().expect("prelude"))
                .expect("JSON");
        assert_eq!(prelude["statusCode"], prelude_status, "{name}");
    }
    let mut resp = client.invoke_stream(request("raw")).await.expect("headers");
    let (body, _) = drain(&mut resp).await;
    assert_eq!(body.len(), 16 + 8 + 4, "not stripped: another content type");
    assert!(resp.http_integration_prelude().is_none());
    let mut resp = client
        .invoke_stream(request("endless"))
        .await
        .expect("headers");
    let (body, err) = drain(&mut resp).await;
    assert!(body.is_empty());
    assert_eq!(
        err.expect("an error").kind(),
        &StreamErrorKind::HttpIntegrationPrelude
    );
}

#[tokio::test]
async fn a_slow_reader_does_not_trip_the_idle_timeout() {
    // The idle timeout runs only while the client waits for bytes. The reader takes
    // 1.5 s over the first chunk, the second comes 2 s after it: the client then waits
    // 0.5 s, within its 1 s idle timeout, although 2 s passed since the last bytes.
    let lambda = endpoint(
        "f",
        StreamFunction::new(|_, out| async move {
            out.send("one,").await.ok();
            tokio::time::sleep(Duration::from_secs(2)).await;
            out.send("two").await.ok();
            Ok(())
        }),
    )
    .await;
    let client = client_with(&lambda, Some(Duration::from_secs(1)));
    let mut resp = client.invoke_stream(request("f")).await.expect("headers");
    let first = resp.next_chunk().await.expect("a chunk").expect("ok");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rest, err) = drain(&mut resp).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!([&first[..], &rest[..]].concat(), b"one,two");
    assert!(resp.completion().is_some());
}

/// A stream call carries the User-Agent headers, as `invoke` does (the streaming stack
/// has the same slots): a raw server records the request head, and refuses the call.
#[tokio::test]
async fn a_stream_call_carries_the_user_agent() {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let _ = sock
            .write_all(b"HTTP/1.1 400 Bad Request\r\nx-amzn-errortype: InvalidRequestContentException\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            .await;
        String::from_utf8_lossy(&head).to_lowercase()
    });
    let client = InvokeClient::builder()
        .endpoint_url(url)
        .region("us-east-1")
        .credentials(invoke_stack::layers::sigv4::Credentials::from_keys(
            "AKID", "secret", None,
        ))
        .build()
        .unwrap();
    let _ = client.invoke_stream(request("echo")).await;
    let head = server.await.unwrap();
    assert!(head.contains("\r\nuser-agent: invoke-stack/"), "{head}");
    assert!(
        head.contains("\r\nx-amz-user-agent: invoke-stack/"),
        "{head}"
    );
}

/// A client whose `invoke` goes to a service of the caller's (a test double) refuses
/// `invoke_stream` rather than sending it around the double to the real endpoint.
#[tokio::test]
async fn a_stream_call_does_not_go_around_a_custom_inner_service() {
    use invoke_stack::stack::BoxService;
    let double = BoxService::new(tower::service_fn(
        |_req: http::Request<bytes::Bytes>| async {
            Ok::<_, invoke_stack::InvokeError>(http::Response::new(bytes::Bytes::new()))
        },
    ));
    let client = InvokeClient::builder()
        .endpoint_url("http://127.0.0.1:1")
        .region("us-east-1")
        .credentials(invoke_stack::layers::sigv4::Credentials::from_keys(
            "AKID", "secret", None,
        ))
        .inner_service(double)
        .build()
        .unwrap();
    let err = client.invoke_stream(request("echo")).await.unwrap_err();
    assert!(err.to_string().contains("custom inner service"), "{err}");
}
