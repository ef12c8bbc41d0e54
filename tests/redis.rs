//! Limits shared through a real Redis: each test starts its own `redis-server` on a free
//! loopback port with a temporary directory and no persistence, waits until it answers,
//! and kills it at the end. Where `redis-server` is not installed the tests are
//! reported as ignored, with the reason (`scripts/test.sh` installs it as root).
//!
//! - **Rate**: GCRA in one script on the server's clock: burst, fail fast with the
//!   earliest time, a key's and the global rate taken together or not at all.
//! - **Fleet**: 4 worker processes (this test binary again, `--role worker`, running
//!   `examples/fleet.rs`'s worker) × 16 tasks call a function with reserved concurrency
//!   8 on the local endpoint: shared, the endpoint never runs more than 8 and throttles
//!   none; per process, it throttles.
//! - **Crash**: a worker holding every slot is killed with SIGKILL; the slots come back
//!   when their leases expire, not before.
//! - **Outage**: Redis stops mid-run; calls go on through the local limiter (fail open,
//!   with a WARN event) or are refused (fail closed); Redis comes back; sharing resumes.
//! - **Rate across processes**: 3 workers with a shared 50 calls/s deliver 50/s in total
//!   at the endpoint.

use std::time::{Duration, Instant};

use clap::Parser;
use invoke_stack::layers::rate_limit::redis::RedisStore;
use invoke_stack::layers::rate_limit::store::{OnStoreFailure, SharedLimits};
use invoke_stack::layers::rate_limit::{
    LimitKind, Mode, Rate, RateLimitKey, RateLimitLayer, Refusal,
};
use invoke_stack::model::InvokeRequest;
use invoke_stack::{InvokeClient, InvokeError, InvokeErrorKind};
use libtest_mimic::{Arguments, Failed, Trial};
use tower::{Layer, ServiceExt};

#[path = "../examples/fleet.rs"]
#[allow(dead_code)]
mod fleet;

mod common;

use fleet::{Endpoint, RedisServer};

type Result<T = ()> = std::result::Result<T, Failed>;
type Test = (&'static str, fn() -> Result);

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.iter().any(|a| a == "--role") {
        let args = fleet::Args::parse_from(&argv);
        let code = match runtime().block_on(fleet::worker(&args)) {
            Ok(tally) => {
                println!(
                    "FLEET-WORKER ok={} throttled={} refused={} failed={}",
                    tally.ok, tally.throttled, tally.refused, tally.failed
                );
                0
            }
            Err(e) => {
                eprintln!("worker: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    let mut args = Arguments::from_args();
    // One at a time: each starts processes, and a loaded machine must not turn a slow
    // Redis answer into a fall back to the local limits.
    args.test_threads.get_or_insert(1);
    let tests: [Test; 5] = [
        ("redis_rate_has_the_local_semantics", rate_semantics),
        (
            "redis_fleet_shares_one_concurrency_limit",
            fleet_concurrency,
        ),
        (
            "redis_slots_of_a_killed_worker_come_back_after_the_lease_ttl",
            crash,
        ),
        (
            "redis_outage_fails_open_or_closed_and_sharing_resumes",
            outage,
        ),
        ("redis_fleet_shares_one_rate", fleet_rate),
    ];
    let missing = fleet::redis_server_missing();
    if let Some(reason) = &missing {
        eprintln!("\n*** Redis tests SKIPPED: {reason} ***\n");
    }
    let trials = tests
        .into_iter()
        .map(|(name, f)| match &missing {
            // Ignored, and a failure if run anyway (`--include-ignored`): nothing was tested.
            Some(reason) => {
                let reason = reason.clone();
                Trial::test(name, move || Err(format!("not run: {reason}").into()))
                    .with_ignored_flag(true)
            }
            None => Trial::test(name, f),
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result {
    if ok {
        Ok(())
    } else {
        Err(what().into())
    }
}

fn req(key: &str) -> http::Request<()> {
    let mut r = http::Request::new(());
    r.extensions_mut().insert(RateLimitKey(key.to_owned()));
    r
}

fn ok_service() -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = std::convert::Infallible,
    Future = std::future::Ready<std::result::Result<http::Response<()>, std::convert::Infallible>>,
> + Clone
       + Send
       + 'static {
    tower::service_fn(|_r| std::future::ready(Ok(http::Response::new(()))))
}

/// Burst, fail fast with the earliest time, the key's and the global rate together;
/// two limiters (as two processes would) share the cells. No secret of the URL in
/// errors or `Debug`.
fn rate_semantics() -> Result {
    let server = RedisServer::start()?;
    runtime().block_on(async {
        let layer = || {
            RateLimitLayer::builder()
                .per_key(Rate {
                    calls: 10,
                    per: Duration::from_secs(1),
                    burst: Some(2),
                })
                .global(Rate {
                    calls: 10,
                    per: Duration::from_secs(1),
                    burst: Some(3),
                })
                .mode(Mode::FailFast)
                .shared(SharedLimits::new(
                    RedisStore::open(&server.url(), "rate").map_err(|e| e.to_string())?,
                ))
                .build()
                .map_err(|e| e.to_string())
        };
        let a = layer()?.layer(ok_service());
        let b = layer()?.layer(ok_service());
        a.clone()
            .oneshot(req("f"))
            .await
            .map_err(|e| e.to_string())?;
        b.clone()
            .oneshot(req("f"))
            .await
            .map_err(|e| e.to_string())?;
        let err = a
            .clone()
            .oneshot(req("f"))
            .await
            .err()
            .ok_or("a third call went")?;
        let refusal = err.refusal().ok_or("not a refusal")?;
        check(refusal.limit == LimitKind::Rate, || format!("{refusal:?}"))?;
        let earliest = refusal.earliest.ok_or("no earliest time")?;
        check(
            earliest > Duration::ZERO && earliest <= Duration::from_millis(100),
            || format!("earliest {earliest:?}, expected at most the interval, 100 ms"),
        )?;
        // The refused call took no global cell: another key gets the third one, and a
        // fourth is refused by the global rate.
        a.clone()
            .oneshot(req("g"))
            .await
            .map_err(|e| e.to_string())?;
        let err = b
            .clone()
            .oneshot(req("h"))
            .await
            .err()
            .ok_or("a fourth call went")?;
        let refusal = err.refusal().ok_or("not a refusal")?;
        check(refusal.earliest.is_some(), || format!("{refusal:?}"))?;

        let secret = "hunter2-secret";
        let store = RedisStore::open(&format!("redis://:{secret}@127.0.0.1:1/"), "x")
            .map_err(|e| e.to_string())?;
        check(!format!("{store:?}").contains(secret), || {
            "Debug shows the password".into()
        })?;
        let bad = RedisStore::open(&format!("redis://:{secret}@[::1"), "x");
        check(
            bad.as_ref()
                .err()
                .is_some_and(|e| !e.to_string().contains(secret)),
            || "an invalid URL's error shows the password, or was accepted".into(),
        )?;
        Ok(())
    })
}

/// The fleet: shared, the endpoint never runs more than 8 and throttles none; per
/// process, it throttles.
fn fleet_concurrency() -> Result {
    let server = RedisServer::start()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let args = fleet::Args::parse_from([
        "fleet",
        "--workers",
        "4",
        "--tasks",
        "16",
        "--calls",
        "4",
        "--concurrency",
        "8",
        "--run-ms",
        "20",
        "--redis-url",
        &server.url(),
        "--namespace",
        "fleet-test",
        // On a loaded machine a slow answer must not fail open (and exceed the cap).
        "--store-timeout-ms",
        "2000",
    ]);
    runtime().block_on(async {
        let shared = fleet::run_mode(&exe, &args, "shared")
            .await
            .map_err(|e| e.to_string())?;
        let local = fleet::run_mode(&exe, &args, "local")
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("{shared}\n{local}");
        check(
            shared.peak.is_some_and(|p| p <= 8)
                && shared.endpoint_throttles == Some(0)
                && shared.tally.ok == 4 * 16 * 4,
            || format!("shared: {shared}"),
        )?;
        check(local.endpoint_throttles.is_some_and(|t| t > 0), || {
            format!("per process, expected throttles: {local}")
        })?;
        check(server.leases("fleet-test", "fleet")? == 0, || {
            "leases left behind".into()
        })
    })
}

/// SIGKILL a worker holding every slot: the slots stay taken until the leases expire
/// (2 s), then come back.
fn crash() -> Result {
    let server = RedisServer::start()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    runtime().block_on(async {
        let endpoint = Endpoint::start("hold", 0, "us-east-1").await?;
        let creds = endpoint.lambda.credentials();
        let env = [
            (
                "AWS_ACCESS_KEY_ID".to_owned(),
                creds.access_key_id().to_owned(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                creds.secret_access_key().to_owned(),
            ),
        ];
        let ttl = Duration::from_secs(2);
        let args = fleet::Args::parse_from([
            "fleet",
            "--tasks",
            "4",
            "--calls",
            "1",
            "--concurrency",
            "4",
            "--function",
            "hold",
            "--run-ms",
            "600000",
            "--namespace",
            "crash",
            "--lease-ttl-ms",
            "2000",
            "--store-timeout-ms",
            "500",
            "--endpoint-url",
            &endpoint.lambda.endpoint_url(),
            "--redis-url",
            &server.url(),
        ]);
        let mut child = fleet::spawn_worker(&exe, &args, "shared", &env)?;
        let until = Instant::now() + Duration::from_secs(30);
        while server.leases("crash", "hold")? < 4 {
            check(Instant::now() < until, || "the worker took no slots".into())?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Held past a renewal (every TTL / 3): renewed, not expired.
        tokio::time::sleep(ttl).await;
        check(server.leases("crash", "hold")? == 4, || {
            "a lease was lost".into()
        })?;
        child.kill().map_err(|e| e.to_string())?;
        let _ = child.wait();
        let killed = Instant::now();

        let client = |mode| {
            common::builder_for(&endpoint.lambda)
                .rate_limit(
                    RateLimitLayer::builder()
                        .concurrency_per_key(4)
                        .mode(mode)
                        .shared(
                            SharedLimits::new(
                                RedisStore::open(&server.url(), "crash").expect("a valid URL"),
                            )
                            .lease_ttl(ttl)
                            .timeout(Duration::from_secs(1)),
                        ),
                )
                .build()
                .expect("a client")
        };
        let call = |c: InvokeClient| async move {
            let req = InvokeRequest::builder("hold")
                .payload(&b"{\"ms\":0}"[..])
                .build()
                .expect("a valid request");
            c.invoke(req).await
        };
        // At once, the dead worker's slots are still leased.
        let refused = call(client(Mode::FailFast)).await;
        check(
            matches!(
                refused.as_ref().map_err(InvokeError::kind),
                Err(InvokeErrorKind::RateLimited(_))
            ),
            || format!("expected a refusal, got {refused:?}"),
        )?;
        // A waiting call gets a slot when the leases expire.
        call(client(Mode::Wait {
            jitter: Duration::ZERO,
        }))
        .await
        .map_err(|e| e.to_string())?;
        let waited = killed.elapsed();
        eprintln!("slots back {waited:?} after the kill (lease TTL {ttl:?})");
        check(waited <= ttl + Duration::from_millis(500), || {
            format!("slots came back after {waited:?}, TTL {ttl:?}")
        })
    })
}

fn invoke_f(ms: u64) -> InvokeRequest {
    InvokeRequest::builder("f")
        .payload(format!("{{\"ms\":{ms}}}").into_bytes())
        .build()
        .expect("a valid request")
}

/// Redis stops mid-run: fail open goes on (WARN event), fail closed refuses; Redis
/// comes back: sharing resumes.
fn outage() -> Result {
    let mut server = RedisServer::start()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (capture, _guard) = common::capture::start();
    rt.block_on(async {
        let endpoint = Endpoint::start("f", 0, "us-east-1").await?;
        let client = |on_failure| -> std::result::Result<InvokeClient, String> {
            let store = RedisStore::open(&server.url(), "outage").map_err(|e| e.to_string())?;
            common::builder_for(&endpoint.lambda)
                .rate_limit(
                    RateLimitLayer::builder().concurrency_per_key(2).shared(
                        SharedLimits::new(store)
                            .on_failure(on_failure)
                            .retry_after(Duration::from_millis(200)),
                    ),
                )
                .build()
                .map_err(|e| e.to_string())
        };
        let open = client(OnStoreFailure::FailOpen)?;
        let closed = client(OnStoreFailure::FailClosed)?;
        // Shared: a call in flight holds a lease in Redis.
        let held = |c: &InvokeClient| {
            let c = c.clone();
            tokio::spawn(async move { c.invoke(invoke_f(300)).await })
        };
        let call = held(&open);
        wait_for(|| server.leases("outage", "f").is_ok_and(|n| n == 1)).await?;
        call.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;

        server.stop();
        for _ in 0..5 {
            open.invoke(invoke_f(0)).await.map_err(|e| e.to_string())?;
        }
        let failures = open.rate_limiter().store_failures().unwrap_or(0);
        check(failures >= 1, || "no store failure counted".into())?;
        let err = closed
            .invoke(invoke_f(0))
            .await
            .err()
            .ok_or("fail-closed call went")?;
        match err.kind() {
            InvokeErrorKind::RateLimited(r) if r.reason == Refusal::StoreUnavailable => {}
            other => return Err(format!("expected StoreUnavailable, got {other:?}").into()),
        }
        let warned = capture
            .0
            .lock()
            .map(|c| {
                c.events.iter().any(|e| {
                    e.level == "WARN" && e.message == "shared rate-limit store unavailable"
                })
            })
            .unwrap_or(false);
        check(warned, || "no WARN event for the outage".into())?;

        server.restart()?;
        // Sharing resumes: within a few retry intervals, calls take leases again.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let call = held(&open);
            let shared = wait_for(|| server.leases("outage", "f").is_ok_and(|n| n == 1))
                .await
                .is_ok();
            call.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            if shared {
                break;
            }
            check(Instant::now() < until, || "sharing did not resume".into())?;
        }
        closed
            .invoke(invoke_f(0))
            .await
            .map_err(|e| e.to_string())?;
        let recovered = capture
            .0
            .lock()
            .map(|c| {
                c.events.iter().any(|e| {
                    e.message
                        .starts_with("shared rate-limit store available again")
                })
            })
            .unwrap_or(false);
        check(recovered, || "no event for the recovery".into())
    })
}

/// Polls `cond` until it holds, for at most 1 s.
async fn wait_for(mut cond: impl FnMut() -> bool) -> Result {
    let until = Instant::now() + Duration::from_secs(1);
    while !cond() {
        if Instant::now() > until {
            return Err("condition not reached in 1 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// 3 workers × 4 tasks with a shared 50 calls/s (burst 1) deliver 50/s in total at the
/// endpoint, not 150.
fn fleet_rate() -> Result {
    let server = RedisServer::start()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let args = fleet::Args::parse_from([
        "fleet",
        "--workers",
        "3",
        "--tasks",
        "4",
        "--calls",
        "8",
        "--concurrency",
        "64",
        "--rate",
        "50",
        "--run-ms",
        "0",
        "--redis-url",
        &server.url(),
        "--namespace",
        "rate-test",
        "--store-timeout-ms",
        "2000",
    ]);
    runtime().block_on(async {
        let report = fleet::run_mode(&exe, &args, "shared")
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("{report}");
        let rate = report.rate.ok_or("no rate measured")?;
        check(report.tally.ok == 96, || format!("{report}"))?;
        // GCRA on the server's clock never admits more than 1 + t × 50 calls in t (per
        // process it would be 150/s); with a burst of 1 a cell nobody takes at its time
        // is lost, so a loaded machine delivers less: the lower bound allows for that.
        check((30.0..=52.0).contains(&rate), || {
            format!("{rate:.1} calls/s at the endpoint, expected 50")
        })
    })
}
