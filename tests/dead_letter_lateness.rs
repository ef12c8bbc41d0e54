//! Issue 17: dead-lettering never blocks the runtime. A `current_thread` runtime keeps a
//! 1 ms interval on schedule while 2,000 `Event`s fail into a spool whose disk is slow
//! (each sync takes 200 ms, injected through the writer's seam).
//!
//! On the code before the fix (the spool wrote and synced inline, on the runtime thread)
//! the same measurement, with the slow sync injected as a 100 ms sleep before each
//! `fdatasync`, showed the stall: see the numbers in BENCHMARKS.md ("Dead letters").

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use invoke_stack::dead_letter::FileSpool;
use invoke_stack::layers::rate_limit::{Rate, RateLimitLayer};
use invoke_stack::model::{InvocationType, InvokeRequest};
use invoke_stack::testing::Fault;

const EVENTS: usize = 2000;
const IN_FLIGHT: usize = 128;
/// The injected duration of one sync of the spool.
const SLOW_SYNC: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "current_thread")]
async fn a_slow_disk_does_not_stall_the_runtime() {
    let dir = std::env::temp_dir().join(format!("invoke-spool-lateness-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let syncs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&syncs);
    let spool = FileSpool::builder(dir.join("spool"))
        .sync_with(move |file| {
            // The slow disk: this runs on the spool's writer thread.
            std::thread::sleep(SLOW_SYNC);
            counted.fetch_add(1, Ordering::SeqCst);
            file.sync_data()
        })
        .open()
        .unwrap();
    let (lambda, _) = common::echo_endpoint().await;
    lambda.always("echo", Some(Fault::throttle(None, None)));
    // The calls fail at once, refused by the client's rate limiter (after the first,
    // which the endpoint throttles): the runtime's own work per call stays small, so
    // what the interval measures is what the spool does to the runtime.
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .rate_limit(
            RateLimitLayer::builder()
                .global(Rate::per_second(1))
                .max_wait(Duration::ZERO),
        )
        .dead_letter_sink(spool.clone())
        .build()
        .unwrap();

    // The unrelated task: a 1 ms interval, ticks scheduled at fixed times (missed ticks
    // burst): how far behind its schedule it ever falls is how long the runtime was held.
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

    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..EVENTS {
        let slot = Arc::clone(&slots).acquire_owned().await.unwrap();
        let client = client.clone();
        calls.spawn(async move {
            let req = InvokeRequest::builder("echo")
                .invocation_type(InvocationType::Event)
                .payload(format!(r#"{{"n":{i}}}"#))
                .build()
                .unwrap();
            let result = client.invoke(req).await;
            drop(slot);
            result
        });
    }
    let mut spooled = 0;
    while let Some(result) = calls.join_next().await {
        spooled += usize::from(result.unwrap().unwrap_err().dead_lettered());
    }
    done.store(true, Ordering::SeqCst);
    let late = ticker.await.unwrap();
    let max_lateness = late.last().copied().unwrap_or_default();
    let syncs = syncs.load(Ordering::SeqCst);
    eprintln!(
        "{EVENTS} events dead-lettered in {:?} with {syncs} syncs of {SLOW_SYNC:?}; \
         1 ms interval: {} ticks, lateness p50 {:?}, p99 {:?}, max {max_lateness:?}",
        started.elapsed(),
        late.len(),
        late[late.len() / 2],
        late[late.len() * 99 / 100],
    );
    assert_eq!(spooled, EVENTS);
    assert_eq!(spool.read().await.unwrap().letters.len(), EVENTS);
    // Group commit: one sync per batch, not per letter. Each sync takes SLOW_SYNC, so
    // per-letter syncs would need 2,000 × 200 ms; this allows 200 batches (10 letters
    // per sync on average), far from one per letter. (With 128 calls waiting, about 64
    // letters arrive during each sync: some 32 syncs.)
    assert!(syncs * 10 <= EVENTS, "{syncs} syncs for {EVENTS} letters");
    // The bound: with syncs on the runtime thread (the old code), every letter held the
    // runtime for a whole SLOW_SYNC, and the interval fell behind by the sum of them
    // (minutes). Here the runtime never waits for a sync, so its lateness has nothing to
    // do with the disk: it must stay below the duration of a single injected sync, so
    // that one sync on the runtime thread would fail the test. (Starting the calls
    // released by one batch takes a few milliseconds; the margin to 200 ms is for a
    // loaded machine. Speed itself is measured in benches/dead_letter.rs.)
    assert!(
        max_lateness < SLOW_SYNC,
        "the interval fell {max_lateness:?} behind (one sync is {SLOW_SYNC:?}, {syncs} syncs)"
    );
    drop(spool);
    let _ = std::fs::remove_dir_all(&dir);
}
