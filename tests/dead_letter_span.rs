//! An `Event` with a dead-letter sink runs in a task of its own; its spans keep the
//! caller's span as their parent. Alone in its test binary: tracing's per-callsite
//! interest is global, so a test without a subscriber running beside it on another thread
//! can leave the call's spans disabled for this one's thread-local subscriber.

mod common;

use invoke_stack::dead_letter::{
    DeadLetter, DeadLetterError, DeadLetterErrorKind, DeadLetterSink, SinkFuture,
};
use invoke_stack::model::{InvocationType, InvokeRequest};
use invoke_stack::testing::Fault;
use tokio::sync::mpsc;

#[derive(Debug)]
struct ChannelSink(mpsc::UnboundedSender<DeadLetter>);

impl DeadLetterSink for ChannelSink {
    fn send(&self, letter: DeadLetter) -> SinkFuture {
        let sent = self.0.send(letter);
        Box::pin(async move {
            sent.map_err(|e| DeadLetterError::new(DeadLetterErrorKind::Closed, e.0, "closed"))
        })
    }
}

fn event(payload: &str) -> InvokeRequest {
    InvokeRequest::builder("echo")
        .invocation_type(InvocationType::Event)
        .payload(payload.to_owned())
        .build()
        .unwrap()
}

/// The task an `Event` with a sink runs in keeps the caller's span as the parent of the
/// call's spans.
#[tokio::test]
async fn a_dead_lettered_event_keeps_the_callers_span() {
    use tracing::Instrument as _;
    let (capture, _guard) = common::capture::start();
    let (tx, _rx) = mpsc::unbounded_channel();
    let (lambda, _) = common::echo_endpoint().await;
    lambda.always("echo", Some(Fault::throttle(None, None)));
    let client = common::builder_for(&lambda)
        .max_attempts(1)
        .dead_letter_sink(ChannelSink(tx))
        .build()
        .unwrap();
    let caller = tracing::info_span!("caller");
    let err = client
        .invoke(event("{}"))
        .instrument(caller)
        .await
        .unwrap_err();
    assert!(err.dead_lettered());
    let c = capture.0.lock().unwrap();
    let op = c.spans.iter().find(|s| s.name == "Lambda.Invoke").unwrap();
    assert_eq!(op.parent.as_deref(), Some("caller"));
}
