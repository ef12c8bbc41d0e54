//! Nothing lost for `Event`: failed events go to the spool, the spool survives a crash
//! mid-write, and a replay delivers each event once.

mod common;

use std::io::Write;

use invoke_stack::dead_letter::{DeadLetterSink, FileSpool};
use invoke_stack::model::{InvocationType, InvokeRequest};
use invoke_stack::testing::Fault;

struct TempSpool(std::path::PathBuf);

impl TempSpool {
    fn new(tag: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("invoke-spool-{tag}-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&p);
        Self(p)
    }
}

impl Drop for TempSpool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn event(payload: &str) -> InvokeRequest {
    InvokeRequest::builder("echo")
        .invocation_type(InvocationType::Event)
        .qualifier("live")
        .client_context_json(&serde_json::json!({"custom": {"k": 1}}))
        .payload(payload.to_owned())
        .build()
        .unwrap()
}

#[tokio::test]
async fn failed_events_are_spooled_and_replayed_once() {
    let _secrets = common::watch_secrets();
    let tmp = TempSpool::new("replay");
    let spool = FileSpool::open(&tmp.0).unwrap();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .dead_letter_sink(spool.clone())
        .build()
        .unwrap();

    lambda.always("echo", Some(Fault::service_exception()));
    for i in 0..3 {
        let err = client
            .invoke(event(&format!(r#"{{"n":{i}}}"#)))
            .await
            .unwrap_err();
        assert!(err.dead_lettered());
        assert_eq!(err.type_name(), "ServiceException");
    }
    // A synchronous failure is the caller's to handle, not spooled.
    client.invoke_json("echo", &1).await.unwrap_err();

    let contents = spool.read().unwrap();
    assert_eq!((contents.letters.len(), contents.damaged_lines), (3, 0));
    let l = &contents.letters[0];
    assert_eq!(l.function_name, "echo");
    assert_eq!(l.qualifier.as_deref(), Some("live"));
    assert_eq!(l.payload.as_ref(), br#"{"n":0}"#);
    assert!(l.client_context.is_some());
    assert_eq!(
        (l.error_type.as_str(), l.may_have_run.as_str(), l.attempts),
        ("ServiceException", "Unknown", 1)
    );
    assert!(l.failed_at_ms >= l.started_at_ms && l.started_at_ms > 0);

    // Still failing: the replay keeps everything and spools nothing twice.
    let report = spool.replay(&client).await.unwrap();
    assert_eq!((report.delivered, report.failed.len()), (0, 3));
    assert_eq!(spool.read().unwrap().letters.len(), 3);

    // Healthy again: each event is delivered once and removed.
    lambda.always("echo", None);
    let before = lambda.invocations("echo");
    let report = spool.replay(&client).await.unwrap();
    assert_eq!((report.delivered, report.failed.len()), (3, 0));
    assert_eq!(lambda.invocations("echo") - before, 3);
    assert!(spool.read().unwrap().letters.is_empty());
    let report = spool.replay(&client).await.unwrap();
    assert_eq!(report.delivered, 0);
    assert_eq!(lambda.invocations("echo") - before, 3);
}

#[test]
fn a_crash_mid_write_loses_nothing_complete() {
    let tmp = TempSpool::new("crash");
    let spool = FileSpool::open(&tmp.0).unwrap();
    let err = invoke_stack::InvokeError::from(invoke_stack::error::ApiError::new(
        invoke_stack::error::ApiErrorKind::Service,
        500,
        None,
    ));
    let letter = |p: &str| {
        invoke_stack::dead_letter::DeadLetter::new(&event(p), &err, std::time::SystemTime::now())
    };
    spool.send(&letter(r#"{"a":1}"#)).unwrap();
    spool.send(&letter(r#"{"a":2}"#)).unwrap();
    // The process dies half-way through the third record.
    let third = serde_json::to_string(&letter(r#"{"a":3}"#)).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&tmp.0)
        .unwrap();
    f.write_all(&third.as_bytes()[..third.len() / 2]).unwrap();
    drop(f);

    let contents = spool.read().unwrap();
    assert_eq!((contents.letters.len(), contents.damaged_lines), (2, 1));
    // After the restart, new records are not glued to the damaged one.
    spool.send(&letter(r#"{"a":4}"#)).unwrap();
    let contents = spool.read().unwrap();
    assert_eq!((contents.letters.len(), contents.damaged_lines), (3, 1));
    assert_eq!(contents.letters[2].payload.as_ref(), br#"{"a":4}"#);
}

/// Issue 16, item 2: the future of an `Event` with a dead-letter sink answers a poll
/// after completion with an error (it used to panic: "`async fn` resumed after
/// completion").
#[tokio::test]
async fn dead_letter_future_polled_after_completion_is_an_error() {
    let tmp = TempSpool::new("polled-again");
    let spool = FileSpool::open(&tmp.0).unwrap();
    let (lambda, _) = common::echo_endpoint().await;
    let client = common::builder_for(&lambda)
        .dead_letter_sink(spool)
        .build()
        .unwrap();
    let req = InvokeRequest::builder("echo")
        .invocation_type(InvocationType::Event)
        .build()
        .unwrap();
    let mut fut = Box::pin(client.invoke(req));
    assert!((&mut fut).await.is_ok());
    let again = std::future::poll_fn(|cx| std::future::Future::poll(fut.as_mut(), cx)).await;
    let err = again.unwrap_err();
    assert!(err.to_string().contains("polled after completion"), "{err}");
}
