//! Dead letters into a `FileSpool`: letters per second (group commit against one sync
//! per letter, and against the old way, a write and sync inline on the runtime thread),
//! and how late an unrelated 1 ms interval runs meanwhile on the same `current_thread`
//! runtime (p50, p99, max).
//!
//! ```text
//! cargo bench --bench dead_letter    # DEAD_LETTER_BENCH_N=5000 letters, _ROUNDS=3 rounds
//! ```
//!
//! The spool lives under Cargo's target tmp dir (a real disk; set `DEAD_LETTER_BENCH_DIR`
//! to measure another): on tmpfs a sync costs nothing and the comparison says nothing.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use invoke_stack::dead_letter::{
    DeadLetter, DeadLetterError, DeadLetterErrorKind, DeadLetterSink, FileSpool, SinkFuture,
};
use invoke_stack::error::{ApiError, ApiErrorKind};
use invoke_stack::model::{InvocationType, InvokeRequest};

const IN_FLIGHT: usize = 256;

/// The old way: open, append and `fdatasync` inline, on the thread that polls.
#[derive(Debug)]
struct InlineSpool(std::path::PathBuf);

impl DeadLetterSink for InlineSpool {
    fn send(&self, letter: DeadLetter) -> SinkFuture {
        let result = (|| {
            let mut line = serde_json::to_vec(&letter)?;
            line.push(b'\n');
            let mut f = OpenOptions::new().create(true).append(true).open(&self.0)?;
            f.write_all(&line)?;
            f.sync_data()
        })();
        Box::pin(std::future::ready(result.map_err(|e| {
            DeadLetterError::new(DeadLetterErrorKind::Io, letter, e)
        })))
    }
}

fn letter(i: usize) -> DeadLetter {
    let req = InvokeRequest::builder("f")
        .invocation_type(InvocationType::Event)
        .payload(format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(200)))
        .build()
        .expect("valid");
    let err = ApiError::new(ApiErrorKind::Service, 500, None).into();
    DeadLetter::new(&req, &err, SystemTime::now())
}

type MakeSink = Box<dyn Fn(&std::path::Path) -> Arc<dyn DeadLetterSink>>;

struct Run {
    letters_per_s: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn run(sink: Arc<dyn DeadLetterSink>, n: usize) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&done);
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            let mut late = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let due = interval.tick().await.into_std();
                late.push(Instant::now().saturating_duration_since(due));
            }
            late.sort();
            late
        });
        tokio::task::yield_now().await;
        let letters: Vec<DeadLetter> = (0..n).map(letter).collect();
        let started = Instant::now();
        let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        for l in letters {
            let slot = Arc::clone(&slots).acquire_owned().await.expect("open");
            let sink = Arc::clone(&sink);
            tasks.spawn(async move {
                let r = sink.send(l).await;
                drop(slot);
                r.is_ok()
            });
        }
        let mut ok = 0;
        while let Some(r) = tasks.join_next().await {
            ok += usize::from(r.unwrap_or(false));
        }
        let elapsed = started.elapsed();
        assert_eq!(ok, n, "every letter stored");
        done.store(true, Ordering::SeqCst);
        let late = ticker.await.expect("ticker");
        Run {
            letters_per_s: n as f64 / elapsed.as_secs_f64(),
            p50: late[late.len() / 2],
            p99: late[late.len() * 99 / 100],
            max: late[late.len() - 1],
        }
    })
}

fn main() {
    let n: usize = std::env::var("DEAD_LETTER_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let dir = std::env::var_os("DEAD_LETTER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join(format!("dead-letter-bench-{}", std::process::id()));
    let rounds: usize = std::env::var("DEAD_LETTER_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    println!(
        "{n} letters of ~0.6 KB, {IN_FLIGHT} senders in flight, median of {rounds} rounds, spool in {}",
        dir.display()
    );
    println!("| spool | letters/s | 1 ms interval lateness p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    let cases: Vec<(&str, MakeSink)> = vec![
        (
            "FileSpool, group commit (default)",
            Box::new(|p| Arc::new(FileSpool::open(p).expect("spool"))),
        ),
        (
            "FileSpool, one sync per letter (`max_batch(1)`)",
            Box::new(|p| Arc::new(FileSpool::builder(p).max_batch(1).open().expect("spool"))),
        ),
        (
            "inline write + sync on the runtime (the old FileSpool)",
            Box::new(|p| Arc::new(InlineSpool(p.to_owned()))),
        ),
    ];
    // Rounds interleave the cases, so that drift on the machine hits them alike; each
    // figure is the median of the rounds.
    let mut runs: Vec<Vec<Run>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, (_, make)) in cases.iter().enumerate() {
            let path = dir.join(format!("spool-{i}-{round}"));
            runs[i].push(run(make(&path), n));
            let _ = std::fs::remove_file(&path);
        }
    }
    fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    }
    for ((name, _), r) in cases.iter().zip(&runs) {
        println!(
            "| {name} | {:.0} | {:.2?} | {:.2?} | {:.2?} |",
            median(r.iter().map(|r| r.letters_per_s).collect()),
            median(r.iter().map(|r| r.p50).collect()),
            median(r.iter().map(|r| r.p99).collect()),
            median(r.iter().map(|r| r.max).collect()),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
