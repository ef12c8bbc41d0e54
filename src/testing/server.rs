//! The HTTP side of the local endpoint: accept loop, per-connection control (reset,
//! raw responses), and the Invoke request handler.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use super::function::{FunctionFailure, Invocation};
use super::{lock, Fault, Outcome, RequestRecord, State};
use crate::error::ApiErrorKind;
use crate::model::{FunctionName, InvocationType};

/// Largest request body read; beyond it the endpoint answers 413 without reading more.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Lambda's synchronous request limit: a request must be smaller than this.
const SYNC_REQUEST_LIMIT: usize = 6_291_456;
/// The `Event` payload limit.
const EVENT_LIMIT: usize = 1_048_576;
/// Lambda's synchronous response limit.
const RESPONSE_LIMIT: usize = 6_291_556;
/// `LogType=Tail` returns the last 4 KB of the log.
const LOG_TAIL_BYTES: usize = 4096;

pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(connection(stream, Arc::clone(&state), shutdown.clone()));
                }
            }
        }
    }
}

/// What a handler asks its connection to do instead of answering through hyper.
enum Takeover {
    /// Close with a TCP RST.
    Reset,
    /// Write these bytes as the raw response, then close.
    Raw(Bytes),
    /// Serve an `InvokeWithResponseStream` answer on the raw connection, then close.
    Stream(Box<StreamPlan>),
}

#[derive(Default)]
struct ConnControl {
    notify: Notify,
    action: Mutex<Option<Takeover>>,
}

impl ConnControl {
    fn take_over(&self, t: Takeover) {
        *lock(&self.action) = Some(t);
        self.notify.notify_one();
    }
}

/// hyper's handle on a connection's socket, shared with the connection task (which
/// resets it, or writes a raw response, after hyper's handle is dropped) without a
/// second file descriptor: with a duplicated descriptor per connection, an endpoint
/// holding 10,000 calls would need 20,000 descriptors.
struct SharedStream(Arc<TcpStream>);

impl tokio::io::AsyncRead for SharedStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return std::task::Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for SharedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return std::task::Poll::Ready(r),
            }
        }
    }

    // Vectored, as tokio's own stream: hyper then writes a head and its body in one call
    // instead of copying the body into its buffer.
    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return std::task::Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

async fn connection(stream: TcpStream, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    // A second handle on the socket survives hyper's: it resets the connection or writes
    // a raw (truncated) response after hyper's handle is dropped.
    let stream = Arc::new(stream);
    let spare = Arc::clone(&stream);
    let control = Arc::new(ConnControl::default());
    let svc = {
        let control = Arc::clone(&control);
        hyper::service::service_fn(move |req| handle(req, Arc::clone(&state), Arc::clone(&control)))
    };
    // Boxed so that `drop` below really closes hyper's handle before the spare one acts.
    let mut conn = Box::pin(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(SharedStream(stream)), svc),
    );
    let takeover = tokio::select! {
        _ = conn.as_mut() => None,
        () = control.notify.notified() => lock(&control.action).take(),
        _ = shutdown.changed() => None,
    };
    drop(conn);
    match takeover {
        Some(Takeover::Reset) => {
            // Linger 0: closing the last handle sends RST instead of FIN.
            let _ = socket2::SockRef::from(&*spare).set_linger(Some(Duration::ZERO));
        }
        Some(Takeover::Raw(bytes)) => {
            let mut s = SharedStream(spare);
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
        Some(Takeover::Stream(plan)) => {
            // hyper's handle is gone: this is the only one left.
            if let Ok(s) = Arc::try_unwrap(spare) {
                tokio::select! {
                    () = serve_stream(s, *plan) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        None => {}
    }
}

type Resp = Response<Full<Bytes>>;

fn now(state: &State) -> SystemTime {
    let (ahead, by) = *lock(&state.clock_skew);
    if ahead {
        SystemTime::now() + by
    } else {
        SystemTime::now() - by
    }
}

fn new_request_id() -> String {
    crate::id::uuid_v4()
}

/// Renders an error the way Lambda does: status, `x-amzn-ErrorType`, and a JSON body
/// with `Type`, the message (under the shape's own key) and the shape's members.
fn error_response(state: &State, request_id: &str, kind: &ApiErrorKind, message: &str) -> Resp {
    let (status, key) = kind
        .shape()
        .map_or((400, "message"), |s| (s.status, s.message_key));
    let mut body = serde_json::Map::new();
    body.insert(
        "Type".into(),
        (if status >= 500 { "Service" } else { "User" }).into(),
    );
    body.insert(key.into(), message.into());
    let mut builder = Response::builder()
        .status(status)
        .header("x-amzn-ErrorType", kind.code())
        .header("content-type", "application/json");
    match kind {
        ApiErrorKind::TooManyRequests {
            reason,
            retry_after,
        } => {
            if let Some(r) = reason {
                body.insert("Reason".into(), r.as_str().into());
            }
            if let Some(d) = retry_after {
                builder = builder.header("Retry-After", d.as_secs().to_string());
            }
        }
        ApiErrorKind::EC2Unexpected {
            ec2_error_code: Some(c),
        } => {
            body.insert("EC2ErrorCode".into(), c.as_str().into());
        }
        _ => {}
    }
    finish(
        state,
        request_id,
        builder,
        Bytes::from(serde_json::Value::Object(body).to_string()),
    )
}

fn unknown_error(state: &State, request_id: &str, status: u16, code: &str, message: &str) -> Resp {
    let body = serde_json::json!({ "message": message, "Type": "User" }).to_string();
    let builder = Response::builder()
        .status(status)
        .header("x-amzn-ErrorType", code)
        .header("content-type", "application/json");
    finish(state, request_id, builder, Bytes::from(body))
}

fn finish(state: &State, request_id: &str, builder: http::response::Builder, body: Bytes) -> Resp {
    let date = httpdate::fmt_http_date(now(state));
    builder
        .header("x-amzn-RequestId", request_id)
        .header("date", date)
        .body(Full::new(body))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

fn default_message(kind: &ApiErrorKind) -> String {
    match kind {
        ApiErrorKind::TooManyRequests { .. } => "Rate Exceeded.".to_owned(),
        ApiErrorKind::Service => "Lambda encountered an internal error.".to_owned(),
        other => format!("{} injected by the local endpoint", other.code()),
    }
}

struct Rejected {
    status: u16,
    code: String,
    resp: Resp,
}

impl Rejected {
    fn new(resp: Resp) -> Self {
        let status = resp.status().as_u16();
        let code = resp
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Self { status, code, resp }
    }
}

fn header<'a>(req: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn take_fault(state: &State, function: &str, operation: Option<&str>) -> Option<Fault> {
    let mut faults = lock(&state.faults);
    let plan = faults.get_mut(function)?;
    if let Some(f) = plan.script.pop_front() {
        return Some(f);
    }
    if let Some((n, fault)) = plan.each_operation.clone() {
        let seen = match operation {
            Some(id) => {
                let count = plan.seen.entry(id.to_owned()).or_insert(0);
                *count += 1;
                *count
            }
            None => 1,
        };
        if seen <= n {
            return Some(fault);
        }
    }
    plan.always.clone()
}

/// The requests' log, where each request is entered on arrival and updated as it
/// progresses: a function that is still running (or whose client gave up) is visible.
struct Entry<'a> {
    state: &'a State,
    index: usize,
}

impl<'a> Entry<'a> {
    fn new(state: &'a State, rec: &RequestRecord) -> Self {
        let mut records = lock(&state.records);
        records.push(rec.clone());
        Self {
            state,
            index: records.len() - 1,
        }
    }

    fn update(&self, rec: &RequestRecord) {
        if let Some(r) = lock(&self.state.records).get_mut(self.index) {
            r.clone_from(rec);
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    control: Arc<ConnControl>,
) -> Result<Resp, Infallible> {
    let request_id = new_request_id();
    let (parts, body) = req.into_parts();
    let mut rec = RequestRecord {
        function: None,
        qualifier: None,
        invocation_type: None,
        invocation_id: header(&parts, "amz-sdk-invocation-id").map(str::to_owned),
        attempt: header(&parts, "amz-sdk-request").map(str::to_owned),
        fault: None,
        outcome: Outcome::Dropped,
    };

    // Route: POST /2015-03-31/functions/{FunctionName}/invocations, or
    // POST /2021-11-15/functions/{FunctionName}/response-streaming-invocations.
    let path = parts.uri.path();
    let streaming_label = path
        .strip_prefix("/2021-11-15/functions/")
        .and_then(|p| p.strip_suffix("/response-streaming-invocations"));
    let streaming = streaming_label.is_some();
    let label = streaming_label
        .or_else(|| {
            path.strip_prefix("/2015-03-31/functions/")
                .and_then(|p| p.strip_suffix("/invocations"))
        })
        .filter(|l| !l.contains('/'));
    let (Some(label), true) = (label, parts.method == http::Method::POST) else {
        let resp = unknown_error(
            &state,
            &request_id,
            404,
            "UnknownOperationException",
            "Unknown operation",
        );
        rec.outcome = Outcome::Rejected {
            status: 404,
            code: "UnknownOperationException".into(),
        };
        Entry::new(&state, &rec);
        return Ok(resp);
    };
    let decoded_name = percent_encoding::percent_decode_str(label)
        .decode_utf8_lossy()
        .into_owned();
    let short_name = FunctionName::new(decoded_name.as_str())
        .map(|f| f.name().to_owned())
        .unwrap_or_else(|_| decoded_name.clone());
    rec.function = Some(short_name.clone());

    let fault = take_fault(&state, &short_name, rec.invocation_id.as_deref());
    rec.fault.clone_from(&fault);
    let entry = Entry::new(&state, &rec);
    match fault {
        Some(Fault::ResetBeforeRequest) => {
            control.take_over(Takeover::Reset);
            return Ok(std::future::pending::<Resp>().await);
        }
        Some(Fault::Hang) => {
            return Ok(std::future::pending::<Resp>().await);
        }
        _ => {}
    }

    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let resp = unknown_error(
                &state,
                &request_id,
                413,
                "RequestEntityTooLargeException",
                &format!("Request must be smaller than {SYNC_REQUEST_LIMIT} bytes for the InvokeFunction operation"),
            );
            rec.outcome = Outcome::Rejected {
                status: 413,
                code: "RequestEntityTooLargeException".into(),
            };
            entry.update(&rec);
            return Ok(resp);
        }
    };

    let label = label.to_owned();
    let result = invoke(
        &state,
        &request_id,
        &parts,
        (&label, streaming),
        body,
        fault.as_ref(),
        &mut rec,
        &entry,
    )
    .await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(rejected) => {
            rec.outcome = Outcome::Rejected {
                status: rejected.status,
                code: rejected.code,
            };
            entry.update(&rec);
            return Ok(rejected.resp);
        }
    };
    entry.update(&rec);
    if let Some(plan) = resp
        .extensions_mut()
        .remove::<StreamSlot>()
        .and_then(|slot| lock(&slot.0).take())
    {
        control.take_over(Takeover::Stream(Box::new(plan)));
        return Ok(std::future::pending::<Resp>().await);
    }
    match fault {
        Some(Fault::ResetAfterRequest) => {
            control.take_over(Takeover::Reset);
            Ok(std::future::pending::<Resp>().await)
        }
        Some(Fault::Truncated) => {
            let (head, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            control.take_over(Takeover::Raw(truncated(&head, &body)));
            Ok(std::future::pending::<Resp>().await)
        }
        _ => Ok(resp),
    }
}

/// A raw HTTP/1.1 response whose body is cut in half (at least one byte short of its
/// `Content-Length`).
fn truncated(head: &http::response::Parts, body: &[u8]) -> Bytes {
    let mut out = format!("HTTP/1.1 {}\r\n", head.status);
    for (k, v) in &head.headers {
        if k != http::header::CONTENT_LENGTH {
            out.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or_default()));
        }
    }
    let declared = body.len().max(2);
    out.push_str(&format!("content-length: {declared}\r\n\r\n"));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body[..body.len() / 2]);
    Bytes::from(bytes)
}

/// A running synchronous call, counted against the function's reserved concurrency
/// until dropped (also when the client goes away mid-run).
struct Running {
    state: Arc<State>,
    function: String,
}

impl Running {
    fn enter(state: &Arc<State>, function: &str) -> Option<Self> {
        let mut map = lock(&state.concurrency);
        let c = map.entry(function.to_owned()).or_default();
        if c.limit.is_some_and(|l| c.running >= l) {
            c.throttled += 1;
            return None;
        }
        c.running += 1;
        c.peak = c.peak.max(c.running);
        Some(Self {
            state: Arc::clone(state),
            function: function.to_owned(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.state.concurrency).get_mut(&self.function) {
            c.running = c.running.saturating_sub(1);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn invoke(
    state: &Arc<State>,
    request_id: &str,
    parts: &http::request::Parts,
    (label, streaming): (&str, bool),
    body: Bytes,
    fault: Option<&Fault>,
    rec: &mut RequestRecord,
    entry: &Entry<'_>,
) -> Result<Resp, Rejected> {
    let reject = |resp: Resp| Rejected::new(resp);

    if state.verify_signatures {
        super::verify::verify(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &body,
            &state.keys,
            &state.region,
            now(state),
        )
        .map_err(|r| reject(unknown_error(state, request_id, 403, r.code, &r.message)))?;
    }

    let raw_name = percent_encoding::percent_decode_str(label)
        .decode_utf8_lossy()
        .into_owned();
    let name = FunctionName::new(raw_name.as_str()).map_err(|e| {
        reject(unknown_error(
            state,
            request_id,
            400,
            "ValidationException",
            &format!("1 validation error detected: Value '{raw_name}' at 'functionName' failed to satisfy constraint: {e}"),
        ))
    })?;
    let query_qualifier = parts.uri.query().and_then(|q| {
        q.split('&').find_map(|kv| {
            kv.strip_prefix("Qualifier=").map(|v| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    });
    if let (Some(q), Some(in_name)) = (&query_qualifier, name.qualifier()) {
        if q != in_name {
            return Err(reject(error_response(
                state,
                request_id,
                &ApiErrorKind::InvalidParameterValue,
                "The derived qualifier from the function name does not match the specified qualifier.",
            )));
        }
    }
    let qualifier = query_qualifier.or_else(|| name.qualifier().map(str::to_owned));
    rec.qualifier.clone_from(&qualifier);

    let arn = |q: Option<&str>| {
        let base = format!(
            "arn:aws:lambda:{}:{}:function:{}",
            state.region,
            state.account_id,
            name.name()
        );
        match q {
            Some(q) => format!("{base}:{q}"),
            None => base,
        }
    };
    let not_found = |q: Option<&str>| {
        reject(error_response(
            state,
            request_id,
            &ApiErrorKind::ResourceNotFound,
            &format!("Function not found: {}", arn(q)),
        ))
    };
    let foreign = name.account().is_some_and(|a| a != state.account_id)
        || name.region().is_some_and(|r| r != state.region);
    let function = lock(&state.functions).get(name.name()).cloned();
    let (function, version) = match function {
        Some(f) if !foreign => match f.resolve(qualifier.as_deref()) {
            Some(v) => (f, v),
            None => return Err(not_found(qualifier.as_deref())),
        },
        _ => return Err(not_found(qualifier.as_deref())),
    };

    let invocation_type = match header(parts, "x-amz-invocation-type") {
        None => InvocationType::RequestResponse,
        Some(t) => t.parse().map_err(|_| {
            reject(error_response(
                state,
                request_id,
                &ApiErrorKind::InvalidParameterValue,
                &format!("1 validation error detected: Value '{t}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"),
            ))
        })?,
    };
    rec.invocation_type = Some(invocation_type);
    if streaming && invocation_type == InvocationType::Event {
        return Err(reject(error_response(
            state,
            request_id,
            &ApiErrorKind::InvalidParameterValue,
            "1 validation error detected: Value 'Event' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]",
        )));
    }
    let tail = match header(parts, "x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(reject(error_response(
                state,
                request_id,
                &ApiErrorKind::InvalidParameterValue,
                &format!("1 validation error detected: Value '{other}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]"),
            )))
        }
    };

    match invocation_type {
        InvocationType::Event if body.len() > EVENT_LIMIT => {
            return Err(reject(unknown_error(
                state,
                request_id,
                413,
                "RequestEntityTooLargeException",
                &format!("{} byte payload is too large for the Event invocation type (limit {EVENT_LIMIT} bytes)", body.len()),
            )))
        }
        _ if body.len() >= SYNC_REQUEST_LIMIT => {
            return Err(reject(unknown_error(
                state,
                request_id,
                413,
                "RequestEntityTooLargeException",
                &format!("Request must be smaller than {SYNC_REQUEST_LIMIT} bytes for the InvokeFunction operation"),
            )))
        }
        _ => {}
    }
    if !body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return Err(reject(error_response(
            state,
            request_id,
            &ApiErrorKind::InvalidRequestContent,
            "Could not parse request body into json: Unexpected character",
        )));
    }
    let client_context = match header(parts, "x-amz-client-context") {
        None => None,
        Some(cc) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(cc)
                .ok()
                .filter(|d| {
                    matches!(
                        serde_json::from_slice::<serde_json::Value>(d),
                        Ok(serde_json::Value::Object(_))
                    )
                });
            match decoded {
                Some(d) => Some(String::from_utf8_lossy(&d).into_owned()),
                None => {
                    return Err(reject(error_response(
                        state,
                        request_id,
                        &ApiErrorKind::InvalidRequestContent,
                        "Client context must be a valid Base64-encoded JSON object.",
                    )))
                }
            }
        }
    };

    match fault {
        Some(Fault::Error(kind)) => {
            return Err(reject(error_response(
                state,
                request_id,
                kind,
                &default_message(kind),
            )))
        }
        Some(Fault::Raw {
            status,
            headers,
            body,
        }) => {
            let mut b = Response::builder().status(*status);
            for (k, v) in headers {
                b = b.header(k.as_str(), v.as_str());
            }
            return Err(reject(finish(state, request_id, b, body.clone())));
        }
        Some(Fault::Garbage { status }) => {
            let b = Response::builder()
                .status(*status)
                .header("content-type", "application/octet-stream");
            return Err(reject(finish(
                state,
                request_id,
                b,
                Bytes::from_static(b"\x00\xff{{not json]] \x7f garbage"),
            )));
        }
        Some(Fault::Html { status }) => {
            let b = Response::builder()
                .status(*status)
                .header("content-type", "text/html");
            let page = format!(
                "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>"
            );
            return Err(reject(finish(state, request_id, b, Bytes::from(page))));
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }

    let invocation = Invocation {
        function_name: name.name().to_owned(),
        executed_version: version.clone(),
        invocation_type,
        payload: body,
        client_context,
        tenant_id: header(parts, "x-amz-tenant-id").map(str::to_owned),
        request_id: request_id.to_owned(),
        log: Arc::default(),
    };
    let base = Response::builder().header("content-type", "application/json");
    match invocation_type {
        InvocationType::DryRun => {
            rec.outcome = Outcome::DryRun;
            Ok(finish(state, request_id, base.status(204), Bytes::new()))
        }
        InvocationType::Event => {
            rec.outcome = Outcome::Queued;
            entry.update(rec);
            let handler = Arc::clone(&function.handler);
            let bg_state = Arc::clone(state);
            let fname = name.name().to_owned();
            tokio::spawn(async move {
                let _ = handler(invocation).await;
                *lock(&bg_state.runs).entry(fname).or_insert(0) += 1;
            });
            Ok(finish(state, request_id, base.status(202), Bytes::new()))
        }
        InvocationType::RequestResponse => {
            let Some(_running) = Running::enter(state, name.name()) else {
                return Err(reject(error_response(
                    state,
                    request_id,
                    &ApiErrorKind::TooManyRequests {
                        reason: Some(crate::error::ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
                        retry_after: None,
                    },
                    "Rate Exceeded.",
                )));
            };
            rec.outcome = Outcome::Ran;
            entry.update(rec);
            if streaming {
                let stream = function.stream.clone().unwrap_or_else(|| {
                    // A function that does not stream answers in one chunk, as Lambda.
                    let handler = Arc::clone(&function.handler);
                    super::StreamFunction::new(move |inv, out| {
                        let handler = Arc::clone(&handler);
                        async move {
                            let payload = handler(inv).await?;
                            let _ = out.send(payload).await;
                            Ok(())
                        }
                    })
                });
                let fault = match fault {
                    Some(Fault::Stream(f)) => Some(f.clone()),
                    _ => None,
                };
                let plan = StreamPlan {
                    state: Arc::clone(state),
                    function: name.name().to_owned(),
                    stream,
                    invocation,
                    version,
                    request_id: request_id.to_owned(),
                    tail,
                    fault,
                    _running,
                };
                let mut resp = finish(
                    state,
                    request_id,
                    Response::builder().status(200),
                    Bytes::new(),
                );
                resp.extensions_mut()
                    .insert(StreamSlot(Arc::new(Mutex::new(Some(plan)))));
                return Ok(resp);
            }
            let log = Arc::clone(&invocation.log);
            let started = std::time::Instant::now();
            let result = (function.handler)(invocation).await;
            *lock(&state.runs).entry(name.name().to_owned()).or_insert(0) += 1;
            let result = match result {
                Ok(payload) if payload.len() > RESPONSE_LIMIT => Err(FunctionFailure::unhandled(
                    "Function.ResponseSizeTooLarge",
                    format!("Response payload size exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes)."),
                )),
                other => other,
            };
            let mut b = base
                .status(200)
                .header("x-amz-executed-version", version.as_str());
            let payload = match result {
                Ok(p) => p,
                Err(failure) => {
                    b = b.header("x-amz-function-error", failure.header());
                    failure.body()
                }
            };
            if tail {
                let encoded = log_tail(&log, request_id, &version, started);
                if let Ok(v) = HeaderValue::from_str(&encoded) {
                    b = b.header("x-amz-log-result", v);
                }
            }
            Ok(finish(state, request_id, b, payload))
        }
    }
}

/// The base64 log tail of a run: the last 4 KB of its log with Lambda's lines around it.
fn log_tail(
    log: &Mutex<String>,
    request_id: &str,
    version: &str,
    started: std::time::Instant,
) -> String {
    let user = lock(log).clone();
    let text = format!(
        "START RequestId: {request_id} Version: {version}\n{user}END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: {:.2} ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 32 MB\n",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut start = text.len().saturating_sub(LOG_TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    base64::engine::general_purpose::STANDARD.encode(&text[start..])
}

/// A streaming run, handed from the handler to its connection (in the response's
/// extensions, which need `Clone`).
#[derive(Clone)]
struct StreamSlot(Arc<Mutex<Option<StreamPlan>>>);

/// What the connection needs to serve a stream.
pub(crate) struct StreamPlan {
    state: Arc<State>,
    function: String,
    stream: super::StreamFunction,
    invocation: Invocation,
    version: String,
    request_id: String,
    tail: bool,
    fault: Option<super::StreamFault>,
    _running: Running,
}

/// One chunk of HTTP/1.1 chunked encoding.
fn http_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A function whose client is gone goes on to its end, as Lambda's does (its output is
/// dropped), and counts as a run.
fn run_on_without_client(
    mut running: super::stream::RunningStream,
    state: Arc<State>,
    function: String,
) {
    tokio::spawn(async move {
        while running.chunks.recv().await.is_some() {}
        let _ = running.run.await;
        *lock(&state.runs).entry(function).or_insert(0) += 1;
    });
}

/// Waits until the client closes the connection (a stalled stream ends with it).
async fn until_closed(s: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Writes the 200 head, then the function's chunks as event-stream frames in HTTP
/// chunks as they come, then `InvokeComplete`, applying the plan's fault.
async fn serve_stream(mut s: TcpStream, plan: StreamPlan) {
    use super::StreamFault as F;
    use crate::stream::decoder::encode;
    let StreamPlan {
        state,
        function,
        stream,
        invocation,
        version,
        request_id,
        tail,
        fault,
        _running,
    } = plan;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {}\r\nx-amz-executed-version: {version}\r\nx-amzn-requestid: {request_id}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        stream.content_type
    );
    if s.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let log = Arc::clone(&invocation.log);
    let started = std::time::Instant::now();
    let mut running = stream.start(invocation);
    let mut sent = 0usize;
    loop {
        if let Some(f) = fault.as_ref().filter(|f| f.after() == sent) {
            let end: &[u8] = b"0\r\n\r\n";
            match f {
                F::Stall { .. } => {
                    let _ = s.flush().await;
                    until_closed(&mut s).await;
                }
                F::CloseWithoutComplete { .. } => {
                    let _ = s.write_all(end).await;
                }
                F::CutFrame { .. } => {
                    let frame = encode::payload_chunk(Bytes::from_static(b"cut short"));
                    let _ = s.write_all(&http_chunk(&frame[..frame.len() / 2])).await;
                    let _ = s.write_all(end).await;
                }
                F::CorruptCrc { .. } => {
                    let mut frame =
                        encode::payload_chunk(Bytes::from_static(b"corrupted")).to_vec();
                    if let Some(last) = frame.last_mut() {
                        *last ^= 1;
                    }
                    let _ = s.write_all(&http_chunk(&frame)).await;
                    let _ = s.write_all(end).await;
                }
                F::ErrorMessage { .. } => {
                    let frame = encode::error_message("InternalFailure", "mid-stream failure");
                    let _ = s.write_all(&http_chunk(&frame)).await;
                    let _ = s.write_all(end).await;
                }
                F::Exception { .. } => {
                    let frame = encode::exception(
                        "ServiceException",
                        Bytes::from_static(br#"{"message":"mid-stream exception"}"#),
                    );
                    let _ = s.write_all(&http_chunk(&frame)).await;
                    let _ = s.write_all(end).await;
                }
                F::OversizedPrelude { len, .. } => {
                    let _ = s
                        .write_all(&http_chunk(&super::stream::oversized_prelude(*len)))
                        .await;
                    let _ = s.flush().await;
                    until_closed(&mut s).await;
                }
                F::Reset { .. } => {
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    drop(s);
                }
            }
            run_on_without_client(running, state, function);
            return;
        }
        let Some(chunk) = running.chunks.recv().await else {
            break;
        };
        let frame = encode::payload_chunk(chunk);
        if s.write_all(&http_chunk(&frame)).await.is_err() {
            run_on_without_client(running, state, function);
            return;
        }
        sent += 1;
    }
    let result = match (&mut running.run).await {
        Ok(r) => r,
        Err(_) => Err(FunctionFailure::unhandled(
            "Runtime.Crash",
            "the handler panicked",
        )),
    };
    *lock(&state.runs).entry(function).or_insert(0) += 1;
    let mut complete = serde_json::Map::new();
    if let Err(failure) = result {
        complete.insert("ErrorCode".into(), failure.header().into());
        complete.insert(
            "ErrorDetails".into(),
            String::from_utf8_lossy(&failure.body()).into_owned().into(),
        );
    }
    if tail {
        complete.insert(
            "LogResult".into(),
            log_tail(&log, &request_id, &version, started).into(),
        );
    }
    let json = serde_json::Value::Object(complete).to_string();
    let frame = encode::invoke_complete(json);
    let _ = s.write_all(&http_chunk(&frame)).await;
    let _ = s.write_all(b"0\r\n\r\n").await;
    let _ = s.shutdown().await;
}
