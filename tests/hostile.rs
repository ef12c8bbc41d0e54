//! Hostile servers: tiny raw TCP servers, written here, that answer the client in ways no
//! Lambda endpoint should (headers that never end, a body past the cap, a short body, bad
//! header values, broken chunked encoding, HTTP/1.0, a server that never reads, one that
//! drips its answer, odd `Retry-After` values). Each call must end within the client's
//! timeouts in a typed error (or a sound result), without a panic, with the right fault,
//! retry decision and "may the function have run?", and with bounded memory.
//!
//! # How memory is checked
//!
//! The servers count the bytes their socket accepted. A client that stops reading at its
//! limit (the response cap, or hyper's 400 KiB buffer for a response head) can have been
//! sent at most that limit, plus what the kernel buffers between the two sockets: the
//! client's receive buffer and the server's send buffer, at most `tcp_rmem[2]` and
//! `tcp_wmem[2]`. The endless servers stop at four times that bound, so a client
//! that kept reading would take it all and fail the assertion. The check is exact and
//! deterministic, unlike a sample of the process's RSS, which the other tests running in
//! parallel would blur.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use invoke_stack::client::{FunctionSettings, TimeoutConfig};
use invoke_stack::error::{
    Fault, InvokeError, InvokeErrorKind, RunStatus, Timer, TransportErrorKind,
};
use invoke_stack::layers::retry::RetryPolicy;
use invoke_stack::layers::sigv4::Credentials;
use invoke_stack::model::InvokeRequest;
use invoke_stack::{InvokeClient, InvokeClientBuilder};

/// Where an endless server stops: far above anything a client may have buffered (the
/// caps used here are far below [`HYPER_BUFFER`]).
fn endless() -> usize {
    4 * (HYPER_BUFFER + kernel_buffers())
}

/// hyper's largest read buffer (for a response head), with room to spare.
const HYPER_BUFFER: usize = 1 << 20;

/// What a server does once it has read a request.
enum Script {
    /// Sends these bytes and keeps the connection for the next request.
    Reply(Vec<u8>),
    /// Sends these bytes and closes the connection.
    ReplyAndClose(Vec<u8>),
    /// Sends `head`, then `unit` again and again (up to [`endless`] bytes in all).
    Endless { head: Vec<u8>, unit: Vec<u8> },
    /// Sends these bytes one at a time, `every` apart.
    Drip { bytes: Vec<u8>, every: Duration },
    /// Accepts connections and never reads from them (nor answers).
    NeverRead,
}

/// What a server saw and did.
#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    sent: AtomicUsize,
}

impl Stats {
    fn requests(&self) -> usize {
        self.requests.load(SeqCst)
    }
    fn connections(&self) -> usize {
        self.connections.load(SeqCst)
    }
    fn sent(&self) -> usize {
        self.sent.load(SeqCst)
    }
}

struct Server {
    url: String,
    stats: Arc<Stats>,
}

async fn serve(script: Script) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stats = Arc::new(Stats::default());
    let script = Arc::new(script);
    let counts = stats.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counts.connections.fetch_add(1, SeqCst);
            tokio::spawn(connection(stream, script.clone(), counts.clone()));
        }
    });
    Server { url, stats }
}

async fn connection(mut stream: TcpStream, script: Arc<Script>, stats: Arc<Stats>) {
    if let Script::NeverRead = *script {
        // Hold the connection, unread, until the test ends.
        std::future::pending::<()>().await;
    }
    let mut seen = Vec::new();
    while read_request(&mut stream, &mut seen).await {
        stats.requests.fetch_add(1, SeqCst);
        let keep = match &*script {
            Script::Reply(bytes) => send(&mut stream, bytes, &stats).await,
            Script::ReplyAndClose(bytes) => {
                send(&mut stream, bytes, &stats).await;
                let _ = stream.shutdown().await;
                return;
            }
            Script::Endless { head, unit } => {
                let end = endless();
                let mut ok = send(&mut stream, head, &stats).await;
                while ok && stats.sent() < end {
                    ok = send(&mut stream, unit, &stats).await;
                }
                ok
            }
            Script::Drip { bytes, every } => {
                let mut ok = true;
                for b in bytes {
                    ok = send(&mut stream, &[*b], &stats).await;
                    if !ok {
                        break;
                    }
                    tokio::time::sleep(*every).await;
                }
                ok
            }
            Script::NeverRead => false,
        };
        if !keep {
            break;
        }
    }
    // Wait for the client to close (or reset) before dropping the socket.
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Reads one request (head, then a `content-length` body); false at the end of input.
async fn read_request(stream: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while seen.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    seen.drain(..head_end + length);
    true
}

/// Writes `bytes`, counting what the socket accepted; false once the client is gone.
async fn send(stream: &mut TcpStream, bytes: &[u8], stats: &Stats) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        match stream.write(rest).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                stats.sent.fetch_add(n, SeqCst);
                rest = &rest[n..];
            }
        }
    }
    true
}

/// What the kernel may hold between a server and the client: the client's receive
/// buffer and the server's send buffer, at their largest.
fn kernel_buffers() -> usize {
    let largest = |path: &str, fallback: usize| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
            .unwrap_or(fallback)
    };
    largest("/proc/sys/net/ipv4/tcp_rmem", 64 << 20)
        + largest("/proc/sys/net/ipv4/tcp_wmem", 64 << 20)
}

/// Asserts that the server cannot have pushed more than `limit` bytes (plus the buffers
/// of hyper and of the kernel) into the client.
fn assert_bounded(stats: &Stats, limit: usize) {
    let bound = limit + HYPER_BUFFER + kernel_buffers();
    assert!(
        bound < endless(),
        "the bound must be below what an endless server sends"
    );
    assert!(
        stats.sent() <= bound,
        "the server sent {} bytes; the client may hold at most {bound}",
        stats.sent()
    );
}

/// The usual end of a hostile exchange: one request, a transport error of `kind` that is
/// the server's fault and retryable, a function that may have run (so, not idempotent,
/// not retried), and no more taken from the server than `limit` allows.
fn assert_one_failed_exchange(
    err: &InvokeError,
    server: &Server,
    kind: TransportErrorKind,
    limit: usize,
) {
    assert_eq!(transport_kind(err), kind, "{err}");
    assert_eq!(err.fault(), Fault::Server);
    assert!(err.is_retryable());
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.stats.requests(), 1);
    assert_bounded(&server.stats, limit);
}

/// A response with a body and the given extra header lines (raw bytes).
fn response(status: &str, headers: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    for h in headers {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A client for `server`: fast backoff, and a 10 s attempt timeout as a guard (no case
/// that passes comes near it).
fn client(server: &Server) -> InvokeClientBuilder {
    InvokeClient::builder()
        .endpoint_url(&server.url)
        .region("us-east-1")
        .credentials(Credentials::from_keys(
            "AKIDHOSTILE",
            "hostile-secret",
            None,
        ))
        .retry_policy(RetryPolicy {
            transient_base: Duration::from_millis(5),
            throttle_base: Duration::from_millis(5),
            ..RetryPolicy::default()
        })
        .timeouts(short_attempts(Duration::from_secs(10)))
}

fn short_attempts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig {
        max_function_duration: attempt,
        sync_margin: Duration::ZERO,
        async_attempt: attempt,
        ..TimeoutConfig::default()
    }
}

async fn call(client: &InvokeClient) -> Result<invoke_stack::InvokeResponse, InvokeError> {
    client
        .invoke(InvokeRequest::builder("f").payload("{}").build().unwrap())
        .await
}

fn transport_kind(err: &InvokeError) -> TransportErrorKind {
    match err.kind() {
        InvokeErrorKind::Transport(t) => t.kind(),
        _ => panic!("not a transport error: {err:?}"),
    }
}

#[tokio::test]
async fn response_headers_that_never_end() {
    let _secrets = common::watch_secrets();
    let mut unit = b"x-filler: ".to_vec();
    unit.extend(std::iter::repeat_n(b'a', 1000));
    unit.extend_from_slice(b"\r\n");
    let server = serve(Script::Endless {
        head: b"HTTP/1.1 200 OK\r\n".to_vec(),
        unit,
    })
    .await;
    let err = call(&client(&server).build().unwrap()).await.unwrap_err();
    assert_eq!(transport_kind(&err), TransportErrorKind::Exchange, "{err}");
    assert_eq!(err.fault(), Fault::Server);
    // The request was written: the function may have run, so it is not retried.
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.stats.requests(), 1);
    assert_bounded(&server.stats, 0);
}

#[tokio::test]
async fn a_body_that_streams_past_the_cap() {
    let _secrets = common::watch_secrets();
    let mut unit = b"400\r\n".to_vec();
    unit.extend(std::iter::repeat_n(b'x', 1024));
    unit.extend_from_slice(b"\r\n");
    let server = serve(Script::Endless {
        head: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
        unit,
    })
    .await;
    let cap = 64 * 1024;
    let client = client(&server)
        // Idempotent: even so, a response over the cap is not fetched again.
        .function("f", FunctionSettings::default().idempotent(true))
        .transport(invoke_stack::transport::TransportConfig::default().max_response_bytes(cap))
        .build()
        .unwrap();
    let err = call(&client).await.unwrap_err();
    assert_eq!(
        transport_kind(&err),
        TransportErrorKind::ResponseTooLarge,
        "{err}"
    );
    assert_eq!(err.fault(), Fault::Server);
    assert!(!err.is_retryable());
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.stats.requests(), 1);
    assert_bounded(&server.stats, cap);
}

#[tokio::test]
async fn a_content_length_larger_than_the_body_then_close() {
    let _secrets = common::watch_secrets();
    let server = serve(Script::ReplyAndClose(
        b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{\"partial\":".to_vec(),
    ))
    .await;
    let err = call(&client(&server).build().unwrap()).await.unwrap_err();
    // The function ran (or may have): not retried, as it is not marked idempotent.
    assert_one_failed_exchange(&err, &server, TransportErrorKind::ResponseBody, 0);
}

#[tokio::test]
async fn invalid_utf8_in_the_function_error_header_is_still_a_function_error() {
    let _secrets = common::watch_secrets();
    let server = serve(Script::Reply(response(
        "200 OK",
        &[b"x-amz-function-error: Unhandled\xff\xfe"],
        br#"{"errorType":"Runtime.ExitError","errorMessage":"exit status 1"}"#,
    )))
    .await;
    let resp = call(&client(&server).build().unwrap()).await.unwrap();
    assert!(
        resp.function_error().is_some(),
        "the function failed: the header says so, whatever its bytes"
    );
    assert_eq!(server.stats.requests(), 1);
    assert_bounded(&server.stats, 0);
}

/// A control character is not allowed in a header value: the response cannot be parsed.
#[tokio::test]
async fn control_characters_in_the_function_error_header() {
    let _secrets = common::watch_secrets();
    let server = serve(Script::Reply(response(
        "200 OK",
        &[b"x-amz-function-error: Unhan\x01dled"],
        br#"{"errorMessage":"boom"}"#,
    )))
    .await;
    let err = call(&client(&server).build().unwrap()).await.unwrap_err();
    assert_eq!(transport_kind(&err), TransportErrorKind::Exchange, "{err}");
    assert_eq!(err.fault(), Fault::Server);
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.stats.requests(), 1);
    assert_bounded(&server.stats, 0);
}

/// A version that is not text is not a version; the call itself succeeded.
#[tokio::test]
async fn invalid_utf8_and_control_characters_in_the_executed_version() {
    let _secrets = common::watch_secrets();
    let server = serve(Script::Reply(response(
        "200 OK",
        &[b"x-amz-executed-version: 1\xff2"],
        b"{}",
    )))
    .await;
    let resp = call(&client(&server).build().unwrap()).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"{}");
    assert!(resp.function_error().is_none());
    // Kept, with the byte that is not UTF-8 escaped: never raw, never silently gone.
    assert_eq!(resp.executed_version(), Some("1\\xff2"));

    let server = serve(Script::Reply(response(
        "200 OK",
        &[b"x-amz-executed-version: 1\x7f"],
        b"{}",
    )))
    .await;
    let err = call(&client(&server).build().unwrap()).await.unwrap_err();
    assert_eq!(transport_kind(&err), TransportErrorKind::Exchange, "{err}");
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(server.stats.requests(), 1);
    assert_bounded(&server.stats, 0);
}

#[tokio::test]
async fn invalid_base64_in_the_log_result() {
    let _secrets = common::watch_secrets();
    let server = serve(Script::Reply(response(
        "200 OK",
        &[b"x-amz-log-result: not*base64!\xff"],
        b"{}",
    )))
    .await;
    let resp = call(&client(&server).build().unwrap()).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"{}");
    assert_eq!(resp.log_tail(), None);
    assert_eq!(server.stats.requests(), 1);
    assert_bounded(&server.stats, 0);
}

#[tokio::test]
async fn a_broken_chunked_encoding() {
    let _secrets = common::watch_secrets();
    let server = serve(Script::Reply(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n".to_vec(),
    ))
    .await;
    let err = call(&client(&server).build().unwrap()).await.unwrap_err();
    assert_one_failed_exchange(&err, &server, TransportErrorKind::ResponseBody, 0);
}

/// HTTP/1.0: the body ends when the server closes; the connection is not reused.
#[tokio::test]
async fn an_http_1_0_answer() {
    let _secrets = common::watch_secrets();
    let server = serve(Script::ReplyAndClose(
        b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"ok\":true}".to_vec(),
    ))
    .await;
    let client = client(&server).build().unwrap();
    for _ in 0..2 {
        let resp = call(&client).await.unwrap();
        assert_eq!(resp.status_code(), 200);
        assert_eq!(resp.payload().as_ref(), br#"{"ok":true}"#);
    }
    assert_eq!(server.stats.requests(), 2);
    assert_eq!(server.stats.connections(), 2);
    assert_bounded(&server.stats, 0);
}

/// The request is written into the kernel's buffers (1 MiB may not fit: then the write
/// blocks); either way no answer comes and the attempt timer ends the call.
#[tokio::test]
async fn a_server_that_accepts_and_never_reads() {
    let _secrets = common::watch_secrets();
    let server = serve(Script::NeverRead).await;
    let client = client(&server)
        .timeouts(short_attempts(Duration::from_secs(2)))
        .build()
        .unwrap();
    let err = client
        .invoke(
            InvokeRequest::builder("f")
                .payload(vec![b' '; 1 << 20])
                .build()
                .unwrap(),
        )
        .await
        .unwrap_err();
    let InvokeErrorKind::Timeout(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.timer(), Timer::Attempt);
    assert!(t.request_sent());
    assert_eq!(err.fault(), Fault::Server);
    assert!(err.is_retryable());
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.stats.connections(), 1);
    assert_bounded(&server.stats, 0);
}

/// One byte a second: the attempt timer (2 s here) ends the call, whatever the pace.
#[tokio::test]
async fn a_response_at_one_byte_per_second() {
    let _secrets = common::watch_secrets();
    let server = serve(Script::Drip {
        bytes: response("200 OK", &[], b"{}"),
        every: Duration::from_secs(1),
    })
    .await;
    let client = client(&server)
        .timeouts(short_attempts(Duration::from_secs(2)))
        .build()
        .unwrap();
    let err = call(&client).await.unwrap_err();
    let InvokeErrorKind::Timeout(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.timer(), Timer::Attempt);
    assert!(t.request_sent());
    assert_eq!(err.fault(), Fault::Server);
    assert_eq!(err.may_have_run(), RunStatus::Unknown);
    assert_eq!(err.attempts(), 1);
    assert_eq!(server.stats.requests(), 1);
    assert_bounded(&server.stats, 0);
}

/// A throttle with this `Retry-After` value, answered to every request.
async fn throttled(retry_after: &str) -> (Server, InvokeError) {
    let header = format!("retry-after: {retry_after}");
    let server = serve(Script::Reply(response(
        "429 Too Many Requests",
        &[b"x-amzn-errortype: TooManyRequestsException", header.as_bytes()],
        br#"{"message":"Rate exceeded","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}"#,
    )))
    .await;
    let err = call(&client(&server).build().unwrap()).await.unwrap_err();
    assert!(err.is_throttle(), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.fault(), Fault::Client);
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
    assert_bounded(&server.stats, 0);
    (server, err)
}

/// A negative delay means nothing: ignored, the usual backoff applies (3 attempts).
#[tokio::test]
async fn retry_after_negative() {
    let _secrets = common::watch_secrets();
    let (server, err) = throttled("-1").await;
    assert_eq!(err.retry_after(), None);
    assert_eq!((server.stats.requests(), err.attempts()), (3, 3));
}

/// A delay too large to represent is a very long one, not none: it ends the retries
/// (as any over 60 s) instead of retrying at once.
#[tokio::test]
async fn retry_after_too_large_to_represent() {
    let _secrets = common::watch_secrets();
    let (server, err) = throttled("1e20").await;
    assert_eq!((server.stats.requests(), err.attempts()), (1, 1));
}

/// An HTTP date in the past asks for no wait: retried with the usual backoff; one far in
/// the future ends the retries.
#[tokio::test]
async fn retry_after_http_dates() {
    let _secrets = common::watch_secrets();
    let (server, err) = throttled("Thu, 01 Jan 1970 00:00:00 GMT").await;
    assert_eq!((server.stats.requests(), err.attempts()), (3, 3));
    let (server, err) = throttled("Fri, 31 Dec 9999 23:59:59 GMT").await;
    assert_eq!((server.stats.requests(), err.attempts()), (1, 1));
}

/// Ten days is over the 60 s the client waits for: no retry, and the hint is kept for
/// the caller, capped at a day (`RETRY_AFTER_CAP`: no hint overflows anything).
#[tokio::test]
async fn retry_after_ten_days() {
    let _secrets = common::watch_secrets();
    let (server, err) = throttled("864000").await;
    assert_eq!(
        err.retry_after(),
        Some(invoke_stack::layers::retry::RETRY_AFTER_CAP)
    );
    assert_eq!((server.stats.requests(), err.attempts()), (1, 1));
}
