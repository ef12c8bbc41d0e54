//! The circuit breaker over real loopback HTTP: a function whose KMS key is disabled for
//! a while fails fast while its circuit is open, gets one probe at a time while half-open,
//! and is served normally after it heals; refused `Event`s are dead-lettered; throttles do
//! not open a circuit, server faults do.
//!
//! No paused time (real sockets): the breaker reads a `ManualClock` that stands still
//! until the test advances it, so a break never ends while the test runs, however slow
//! the machine.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use invoke_stack::error::{ApiErrorKind, Fault, InvokeErrorKind, RunStatus};
use invoke_stack::layers::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, ManualClock,
};
use invoke_stack::model::{InvocationType, InvokeRequest};
use invoke_stack::testing::{Fault as LocalFault, LocalFunction, LocalLambda};
use invoke_stack::{InvokeClient, InvokeError};
use tokio::sync::Notify;

/// A function that answers at once, or, while `hold` is set, says it has started and
/// waits for `release`.
struct Held {
    hold: Arc<AtomicBool>,
    started: Arc<Notify>,
    release: Arc<Notify>,
}

impl Held {
    fn new() -> (Self, LocalFunction) {
        let held = Self {
            hold: Arc::default(),
            started: Arc::default(),
            release: Arc::default(),
        };
        let (hold, started, release) = (
            Arc::clone(&held.hold),
            Arc::clone(&held.started),
            Arc::clone(&held.release),
        );
        let f = LocalFunction::new(move |inv| {
            let (hold, started, release) = (
                Arc::clone(&hold),
                Arc::clone(&started),
                Arc::clone(&release),
            );
            async move {
                if hold.load(Ordering::SeqCst) {
                    started.notify_one();
                    release.notified().await;
                }
                Ok(inv.payload().clone())
            }
        });
        (held, f)
    }
}

async fn endpoint() -> (LocalLambda, Held) {
    let (held, vault) = Held::new();
    let lambda = LocalLambda::builder()
        .function("vault", vault)
        .function("echo", LocalFunction::echo())
        .start()
        .await
        .expect("start the local endpoint");
    (lambda, held)
}

fn kms_disabled() -> LocalFault {
    LocalFault::Error(ApiErrorKind::KMSDisabled)
}

/// A client with a breaker on `clock` (exact breaks: no jitter), on the static or the
/// named stack.
fn client_with_breaker(lambda: &LocalLambda, clock: &ManualClock, named: bool) -> InvokeClient {
    let b = common::builder_for(lambda).circuit_breaker(
        CircuitBreakerLayer::builder(CircuitBreakerConfig::default())
            .clock(clock.clone())
            .jitter(|| 0.0),
    );
    let b = if named { b.named_stack(|_| {}) } else { b };
    b.build().expect("build the client")
}

fn open_refusal(err: &InvokeError) -> &invoke_stack::error::CircuitOpen {
    match err.kind() {
        InvokeErrorKind::CircuitOpen(open) => open,
        _ => panic!("not refused by the circuit: {err:?}"),
    }
}

/// How many calls a caller makes in each phase of the scenario.
const BROKEN_CALLS: u64 = 12; // while the KMS key is disabled
const HEALED_CALLS: u64 = 16; // after it is enabled again

async fn kms_outage_with_breaker(named: bool) {
    let (capture, _guard) = common::capture::start();
    let (lambda, held) = endpoint().await;
    let clock = ManualClock::new();
    let client = client_with_breaker(&lambda, &clock, named);
    let breaker = client.circuit_breaker().expect("enabled");
    lambda.always("vault", Some(kms_disabled()));
    // Calls of `vault` made, to compare with the run without a breaker.
    let mut made = 0u64;

    // The first call meets the disabled key: a configuration error opens the circuit.
    let err = client.invoke_json("vault", &1).await.unwrap_err();
    made += 1;
    assert_eq!(err.type_name(), "KMSDisabledException");
    assert_eq!(breaker.state("vault"), CircuitState::Open);
    assert_eq!(lambda.requests("vault"), 1);

    // While open, calls fail at once, without reaching the endpoint.
    for _ in 0..9 {
        let err = client.invoke_json("vault", &1).await.unwrap_err();
        made += 1;
        let open = open_refusal(&err);
        assert_eq!(open.key, "vault");
        assert_eq!(open.state, CircuitState::Open);
        assert_eq!(open.retry_after, Some(Duration::from_secs(5)));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
        assert_eq!(err.type_name(), "CircuitOpen");
        assert_eq!((err.attempts(), err.may_have_run()), (0, RunStatus::NotRun));
        assert!(err.is_retryable() && !err.is_throttle());
        assert_eq!(err.fault(), Fault::Server);
    }
    assert_eq!(lambda.requests("vault"), 1);
    // Another function is not affected.
    client.invoke_json("echo", &1).await.unwrap();

    // The break ends: one probe, still broken: open again, for twice as long.
    clock.advance(Duration::from_secs(5));
    assert_eq!(breaker.state("vault"), CircuitState::HalfOpen);
    let err = client.invoke_json("vault", &1).await.unwrap_err();
    made += 1;
    assert_eq!(err.type_name(), "KMSDisabledException");
    assert_eq!(lambda.requests("vault"), 2);
    let err = client.invoke_json("vault", &1).await.unwrap_err();
    made += 1;
    assert_eq!(
        open_refusal(&err).retry_after,
        Some(Duration::from_secs(10))
    );

    assert_eq!(made, BROKEN_CALLS);

    // The key is enabled again. After the break, one probe at a time: while it runs,
    // every other call fails fast.
    lambda.always("vault", None);
    held.hold.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(10));
    let probe = {
        let c = client.clone();
        tokio::spawn(async move { c.invoke_json("vault", &"probe").await })
    };
    made += 1;
    held.started.notified().await;
    for _ in 0..5 {
        let err = client.invoke_json("vault", &1).await.unwrap_err();
        made += 1;
        let open = open_refusal(&err);
        // The rest of the probe's lease (60 s by default; the clock stands still).
        assert_eq!(
            (open.state, open.retry_after),
            (CircuitState::HalfOpen, Some(Duration::from_secs(60)))
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    }
    assert_eq!(lambda.requests("vault"), 3);
    held.hold.store(false, Ordering::SeqCst);
    held.release.notify_one();
    let resp = probe.await.unwrap().unwrap();
    assert_eq!(resp.payload().as_ref(), br#""probe""#);
    assert_eq!(breaker.state("vault"), CircuitState::Closed);

    // Normal service.
    for i in 0..10 {
        let resp = client.invoke_json("vault", &i).await.unwrap();
        made += 1;
        assert_eq!(resp.payload().as_ref(), i.to_string().as_bytes());
    }
    // The same calls as the run without a breaker (28), but 13 requests: the first
    // failure, two probes, ten healthy calls.
    assert_eq!(made, BROKEN_CALLS + HEALED_CALLS);
    assert_eq!(lambda.requests("vault"), 13);

    // Each transition was traced, in order.
    let c = capture.0.lock().unwrap();
    let transitions: Vec<String> = c
        .events
        .iter()
        .filter(|e| e.message.starts_with("circuit "))
        .map(|e| {
            let reason = e.fields.iter().find(|(k, _)| k == "reason");
            match reason {
                Some((_, r)) => format!("{} ({r})", e.message),
                None => e.message.clone(),
            }
        })
        .collect();
    assert_eq!(
        transitions,
        [
            "circuit opened (broken)",
            "circuit half-open",
            "circuit opened (probe failed)",
            "circuit half-open",
            "circuit closed",
        ]
    );
    // The refusals are failed operations in the operation span.
    assert!(c.events.iter().any(|e| e.message == "invoke failed"
        && e.fields
            .iter()
            .any(|(k, v)| k == "error.type" && v == "CircuitOpen")));
}

#[tokio::test]
async fn a_kms_outage_fails_fast_probes_one_call_at_a_time_and_recovers() {
    kms_outage_with_breaker(false).await;
}

#[tokio::test]
async fn the_same_on_the_named_stack() {
    kms_outage_with_breaker(true).await;
}

#[tokio::test]
async fn without_a_breaker_every_call_of_the_outage_reaches_the_endpoint() {
    let _secrets = common::watch_secrets();
    let (lambda, _held) = endpoint().await;
    let client = common::client_for(&lambda);
    assert!(client.circuit_breaker().is_none());
    lambda.always("vault", Some(kms_disabled()));
    for _ in 0..BROKEN_CALLS {
        let err = client.invoke_json("vault", &1).await.unwrap_err();
        assert_eq!(err.type_name(), "KMSDisabledException");
    }
    lambda.always("vault", None);
    for i in 0..HEALED_CALLS {
        client.invoke_json("vault", &i).await.unwrap();
    }
    // 28 calls, 28 requests (with the breaker: 13).
    assert_eq!(lambda.requests("vault"), BROKEN_CALLS + HEALED_CALLS);
}

#[tokio::test]
async fn an_event_refused_by_an_open_circuit_is_dead_lettered() {
    let _secrets = common::watch_secrets();
    let path = std::env::temp_dir().join(format!("invoke-cb-spool-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let spool = invoke_stack::dead_letter::FileSpool::open(&path).unwrap();
    let (lambda, _held) = endpoint().await;
    let clock = ManualClock::new();
    let client = common::builder_for(&lambda)
        .circuit_breaker(CircuitBreakerLayer::builder(CircuitBreakerConfig::default()).clock(clock))
        .dead_letter_sink(spool.clone())
        .build()
        .unwrap();
    lambda.always("vault", Some(kms_disabled()));
    let event = || {
        InvokeRequest::builder("vault")
            .invocation_type(InvocationType::Event)
            .payload(r#"{"n":1}"#)
            .build()
            .unwrap()
    };
    let first = client.invoke(event()).await.unwrap_err();
    assert_eq!(first.type_name(), "KMSDisabledException");
    let refused = client.invoke(event()).await.unwrap_err();
    open_refusal(&refused);
    assert!(first.dead_lettered() && refused.dead_lettered());
    assert_eq!(lambda.requests("vault"), 1);

    let letters = spool.read().await.unwrap().letters;
    let _ = std::fs::remove_file(&path);
    assert_eq!(letters.len(), 2);
    let l = &letters[1];
    assert_eq!(
        (l.error_type.as_str(), l.attempts, l.may_have_run.as_str()),
        ("CircuitOpen", 0, "NotRun")
    );
    assert_eq!(l.payload.as_ref(), br#"{"n":1}"#);
}

#[tokio::test]
async fn throttles_do_not_open_a_circuit_server_faults_do() {
    let _secrets = common::watch_secrets();
    let (lambda, _held) = endpoint().await;
    let clock = ManualClock::new();
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .circuit_breaker(CircuitBreakerLayer::builder(CircuitBreakerConfig::default()).clock(clock))
        .build()
        .unwrap();
    let breaker = client.circuit_breaker().unwrap();

    lambda.always("vault", Some(LocalFault::throttle(None, None)));
    for _ in 0..30 {
        let err = client.invoke_json("vault", &1).await.unwrap_err();
        assert!(err.is_throttle());
    }
    assert_eq!(breaker.state("vault"), CircuitState::Closed);
    assert_eq!(lambda.requests("vault"), 30);

    // Ten 500s (the minimum number of calls, all failed): open.
    lambda.always("vault", Some(LocalFault::service_exception()));
    for _ in 0..10 {
        let err = client.invoke_json("vault", &1).await.unwrap_err();
        assert_eq!(err.type_name(), "ServiceException");
    }
    assert_eq!(breaker.state("vault"), CircuitState::Open);
    open_refusal(&client.invoke_json("vault", &1).await.unwrap_err());
    assert_eq!(lambda.requests("vault"), 40);
}

#[tokio::test]
async fn identify_lists_the_breaker_only_when_it_is_on() {
    let (lambda, _held) = endpoint().await;
    let clock = ManualClock::new();
    let off = common::client_for(&lambda);
    assert!(!off
        .identify()
        .iter()
        .any(|s| s.starts_with("circuit-breaker")));
    let named_off = common::builder_for(&lambda)
        .named_stack(|_| {})
        .build()
        .unwrap();
    assert_eq!(named_off.identify(), off.identify());
    for named in [false, true] {
        let on = client_with_breaker(&lambda, &clock, named);
        assert_eq!(
            on.identify()[..3],
            [
                "trace (operation)",
                "circuit-breaker (operation)",
                "deadline (operation)"
            ]
        );
        assert_eq!(on.identify().len(), off.identify().len() + 1);
    }
}

/// Issue 23, item 7: functions of the same name in different accounts, invoked by ARN,
/// have circuits of their own: the key carries the account (and region) of the ARN.
#[tokio::test]
async fn functions_of_the_same_name_in_other_accounts_have_their_own_circuit() {
    let _secrets = common::watch_secrets();
    let (lambda, _held) = endpoint().await;
    let clock = ManualClock::new();
    let client = client_with_breaker(&lambda, &clock, false);
    let breaker = client.circuit_breaker().expect("enabled");
    lambda.always("vault", Some(kms_disabled()));
    let ours = format!("{}:function:vault", lambda.account_id());
    let err = client
        .invoke_json(&format!("{ours}:$LATEST"), &1)
        .await
        .unwrap_err();
    assert_eq!(err.type_name(), "KMSDisabledException");
    // The key is the ARN as given, without its qualifier.
    assert_eq!(breaker.state(&ours), CircuitState::Open);
    assert_eq!(
        open_refusal(&client.invoke_json(&ours, &1).await.unwrap_err()).key,
        ours
    );
    // Another account's `vault` is not refused: it reaches the endpoint (which does not
    // know it).
    let theirs = "999999999999:function:vault";
    let err = client.invoke_json(theirs, &1).await.unwrap_err();
    assert_eq!(err.type_name(), "ResourceNotFoundException");
    assert_eq!(breaker.state(theirs), CircuitState::Closed);
    // And so is a full ARN of another region.
    let arn = format!(
        "arn:aws:lambda:eu-west-3:{}:function:vault",
        lambda.account_id()
    );
    let err = client.invoke_json(&arn, &1).await.unwrap_err();
    assert_eq!(err.type_name(), "ResourceNotFoundException");
    assert_eq!(breaker.state(&arn), CircuitState::Closed);
}
