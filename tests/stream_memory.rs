//! A 200 MB stream read slowly keeps the client's memory bounded by the frame cap, not
//! the response size: the reader pauses between chunks, the connection waits for it, and
//! the peak resident set (`VmHWM`) grows by a few megabytes, not hundreds.
//!
//! One test in its own binary, so no other test shares the process's memory. Linux only
//! (it reads `/proc/self/status`); elsewhere it reports itself as ignored.

use std::time::Duration;

use invoke_stack::stream::{InvokeStreamRequest, StreamConfig};
use invoke_stack::testing::{LocalLambda, StreamFunction};
use invoke_stack::InvokeClient;
use libtest_mimic::{Arguments, Trial};

/// Lambda's limit on a streamed response, 200 MiB (Lambda's MB is 1,024 KB).
const TOTAL: u64 = 200 * 1024 * 1024;
/// Chunks of 64 KiB, as a function writing in moderate pieces.
const CHUNK: usize = 64 * 1024;
/// The client's frame cap for this test.
const MAX_FRAME: usize = 1024 * 1024;
/// The bound asserted on the growth of the peak RSS. What the stream may hold at once:
/// the decoder's buffer (at most one frame, ≤ `MAX_FRAME`, plus one read of hyper's,
/// ≤ 400 KiB), the chunk handed out (≤ `MAX_FRAME`), and on the endpoint's side (the
/// same process) one chunk in its channel and one frame being written: about 4 MiB. The
/// bound is four times that, for the allocator's slack and the runtime's threads; a
/// client that buffered the response would exceed it fifty times over.
const BOUND: u64 = 16 * 1024 * 1024;

fn status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn slow_200_mb() -> Result<(), String> {
    let lambda = LocalLambda::builder()
        .stream_function("big", StreamFunction::sized(TOTAL, CHUNK, Duration::ZERO))
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let mut config = StreamConfig::default();
    config.max_frame_bytes = MAX_FRAME;
    config.idle_timeout = Some(Duration::from_secs(30));
    let client = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .stream_config(config)
        .build()
        .map_err(|e| e.to_string())?;
    let req = InvokeStreamRequest::builder("big")
        .build()
        .map_err(|e| e.to_string())?;
    // Warm up (runtime, connection, allocator), then take the baseline.
    let warm = client
        .invoke_stream(req.clone())
        .await
        .map_err(|e| e.to_string())?;
    drop(warm);
    let baseline = status_kib("VmHWM:").ok_or("no VmHWM")?;

    let mut resp = client.invoke_stream(req).await.map_err(|e| e.to_string())?;
    let mut received = 0u64;
    let mut peak_rss = 0u64;
    while let Some(chunk) = resp.next_chunk().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        received += chunk.len() as u64;
        // A slow reader: the endpoint produces as fast as it can, the reader pauses.
        if resp.chunks_received() % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            peak_rss = peak_rss.max(status_kib("VmRSS:").unwrap_or(0));
        }
    }
    if received != TOTAL {
        return Err(format!("received {received} bytes of {TOTAL}"));
    }
    if resp.completion().is_none() {
        return Err("no InvokeComplete".into());
    }
    let hwm = status_kib("VmHWM:").ok_or("no VmHWM")?;
    let growth = hwm.saturating_sub(baseline) * 1024;
    println!(
        "200 MiB streamed: VmHWM {baseline} KiB -> {hwm} KiB (growth {} KiB, bound {} KiB); VmRSS peak seen {peak_rss} KiB",
        growth / 1024,
        BOUND / 1024
    );
    if growth > BOUND {
        return Err(format!(
            "peak RSS grew by {growth} bytes while streaming {TOTAL} bytes (bound {BOUND})"
        ));
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let linux = std::path::Path::new("/proc/self/status").exists();
    let trial = Trial::test(
        "a_200_mb_stream_read_slowly_stays_in_bounded_memory",
        || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(slow_200_mb())
                .map_err(Into::into)
        },
    )
    .with_ignored_flag(!linux);
    libtest_mimic::run(&args, vec![trial]).exit();
}
