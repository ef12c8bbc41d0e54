//! `InvokeWithResponseStream` over loopback HTTP: time to first chunk, throughput (MB/s)
//! and client CPU per MB for 1 MB and 100 MB streams, against a bare hyper client reading
//! the same bytes (the floor: no signing, no decoding); and the peak RSS of the process
//! during a 100 MB stream.
//!
//! - `hyper`: a bare hyper client POSTs and reads the body, counting bytes;
//! - `stack`: `InvokeClient::invoke_stream` (signing, the stack's layers, event-stream
//!   decoding with both CRCs checked), reading every chunk.
//!
//! The server (its own thread, its own runtime) answers every request with the same
//! event-stream body: 64 KiB `PayloadChunk` frames (one frame, encoded once, sent again
//! and again), then `InvokeComplete`. It holds one frame, not the body, so the peak RSS
//! is the client's (and hyper's buffers on both sides). The client runs on one thread (a
//! current-thread runtime); its CPU time is read from `/proc/thread-self/schedstat`.
//! Each row is the median of the rounds; the rounds interleave the clients. The peak RSS
//! is `VmHWM` after a 100 MB stream, the high-water mark reset first
//! (`/proc/self/clear_refs`), minus `VmRSS` before it.
//!
//! `cargo bench --bench stream` (`-- rounds=N`, `-- quick` for one round)

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use invoke_stack::layers::sigv4::Credentials;
use invoke_stack::stream::decoder::encode;
use invoke_stack::stream::{InvokeStreamRequest, StreamConfig};
use invoke_stack::InvokeClient;

const FRAME_PAYLOAD: usize = 64 * 1024;
const MB: u64 = 1024 * 1024;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The same frame `left` times, then `InvokeComplete`.
struct RepeatBody {
    frame: Bytes,
    left: u64,
    complete: Option<Bytes>,
}

impl http_body::Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left > 0 {
            self.left -= 1;
            return Poll::Ready(Some(Ok(Frame::data(self.frame.clone()))));
        }
        Poll::Ready(self.complete.take().map(|c| Ok(Frame::data(c))))
    }
}

/// Answers every request with a stream of `path`'s size in MB (`/…/1` or `/…/100`).
fn start_server() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let frame = encode::payload_chunk(vec![7u8; FRAME_PAYLOAD]);
                let complete = encode::invoke_complete("{}");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let _ = stream.set_nodelay(true);
                    let (frame, complete) = (frame.clone(), complete.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(
                            move |req: http::Request<hyper::body::Incoming>| {
                                let (frame, complete) = (frame.clone(), complete.clone());
                                async move {
                                    let mb: u64 = req
                                        .uri()
                                        .path()
                                        .split('/')
                                        .rev()
                                        .nth(1)
                                        .and_then(|s| s.parse().ok())
                                        .unwrap_or(1);
                                    let _ = req.into_body().collect().await;
                                    let body = RepeatBody {
                                        frame,
                                        left: mb * MB / FRAME_PAYLOAD as u64,
                                        complete: Some(complete),
                                    };
                                    Ok::<_, Infallible>(
                                        http::Response::builder()
                                            .header("content-type", "application/octet-stream")
                                            .header("x-amz-executed-version", "$LATEST")
                                            .body(body)
                                            .unwrap(),
                                    )
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
    rx.recv().unwrap()
}

struct Run {
    first: Duration,
    total: Duration,
    cpu_ns: u64,
    bytes: u64,
}

async fn hyper_read(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: std::net::SocketAddr,
    mb: u64,
) -> Run {
    let (start, cpu) = (Instant::now(), thread_cpu_ns());
    let req = http::Request::post(format!(
        "http://{addr}/2021-11-15/functions/{mb}/response-streaming-invocations"
    ))
    .body(Full::new(Bytes::from_static(b"{}")))
    .unwrap();
    let mut body = client.request(req).await.unwrap().into_body();
    let mut first = None;
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            first.get_or_insert_with(|| start.elapsed());
            bytes += data.len() as u64;
        }
    }
    Run {
        first: first.unwrap_or_default(),
        total: start.elapsed(),
        cpu_ns: thread_cpu_ns() - cpu,
        bytes,
    }
}

async fn stack_read(client: &InvokeClient, mb: u64) -> Run {
    let (start, cpu) = (Instant::now(), thread_cpu_ns());
    let req = InvokeStreamRequest::builder(mb.to_string())
        .payload(Bytes::from_static(b"{}"))
        .build()
        .unwrap();
    let mut resp = client.invoke_stream(req).await.unwrap();
    let mut first = None;
    let mut bytes = 0u64;
    while let Some(chunk) = resp.next_chunk().await {
        let chunk = chunk.unwrap();
        first.get_or_insert_with(|| start.elapsed());
        bytes += chunk.len() as u64;
    }
    assert!(resp.completion().is_some());
    Run {
        first: first.unwrap_or_default(),
        total: start.elapsed(),
        cpu_ns: thread_cpu_ns() - cpu,
        bytes,
    }
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rounds: usize = std::env::args()
        .find_map(|a| a.strip_prefix("rounds=").and_then(|c| c.parse().ok()))
        .unwrap_or(if quick { 1 } else { 5 });
    let addr = start_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let stack = InvokeClient::builder()
            .endpoint_url(format!("http://{addr}"))
            .credentials(Credentials::from_keys("AKIDBENCH", "bench-secret", None))
            .stream_config(StreamConfig::default())
            .build()
            .unwrap();
        // Warm up both (connections, allocator).
        let _ = hyper_read(&hyper, addr, 1).await;
        let _ = stack_read(&stack, 1).await;
        println!(
            "| stream | client | first chunk µs | MB/s | CPU ms/MB | CPU vs hyper |\n|---|---|---|---|---|---|"
        );
        for mb in [1u64, 100] {
            let (mut h, mut s) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                h.push(hyper_read(&hyper, addr, mb).await);
                s.push(stack_read(&stack, mb).await);
            }
            let row = |runs: &[Run]| {
                // The stack counts payload bytes; hyper counts the framed body (about
                // 0.16 % more). Rates are per MB of payload for both.
                assert!(runs.iter().all(|r| r.bytes >= mb * MB));
                let first = median(runs.iter().map(|r| r.first.as_secs_f64() * 1e6).collect());
                let mbps = median(
                    runs.iter()
                        .map(|r| mb as f64 / r.total.as_secs_f64())
                        .collect(),
                );
                let cpu = median(
                    runs.iter()
                        .map(|r| r.cpu_ns as f64 / 1e6 / mb as f64)
                        .collect(),
                );
                (first, mbps, cpu)
            };
            let (hf, hm, hc) = row(&h);
            let (sf, sm, sc) = row(&s);
            println!("| {mb} MB | hyper | {hf:.0} | {hm:.0} | {hc:.3} | 1.00× |");
            println!(
                "| {mb} MB | stack | {sf:.0} | {sm:.0} | {sc:.3} | {:.2}× |",
                sc / hc
            );
        }
        // Peak RSS over a 100 MB stream, for each client.
        for (name, is_stack) in [("hyper", false), ("stack", true)] {
            let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
            let before = status_kib("VmRSS:");
            if is_stack {
                let _ = stack_read(&stack, 100).await;
            } else {
                let _ = hyper_read(&hyper, addr, 100).await;
            }
            let hwm = status_kib("VmHWM:");
            println!(
                "peak RSS during a 100 MB stream ({name}): VmRSS before {before} KiB, VmHWM {hwm} KiB{}, growth {} KiB",
                if reset { " (reset before)" } else { " (not reset: process peak)" },
                hwm.saturating_sub(before)
            );
        }
    });
}
