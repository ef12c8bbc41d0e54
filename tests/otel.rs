//! The client's spans as OpenTelemetry exports them (through `tracing-opentelemetry`
//! and the OpenTelemetry SDK's in-memory exporter), over real loopback HTTP: kind
//! Client, status Error with a description on a throttle, a fault, a timeout and a
//! function error, Unset on success.

mod common;

use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

use invoke_stack::error::ThrottleReason;
use invoke_stack::testing::{Fault, FunctionFailure, LocalFunction, LocalLambda};
use invoke_stack::{CallOptions, InvokeRequest};

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Runs `calls` with an OpenTelemetry pipeline installed for this thread, and returns
/// the exported spans.
async fn exported<F: std::future::Future<Output = ()>>(calls: F) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("invoke-stack-test")));
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        calls.await;
    }
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn operation_spans(spans: &[SpanData]) -> Vec<&SpanData> {
    spans.iter().filter(|s| s.name == "Lambda.Invoke").collect()
}

fn error_description(span: &SpanData) -> String {
    match &span.status {
        Status::Error { description } => description.to_string(),
        other => panic!("{}: expected an error status, got {other:?}", span.name),
    }
}

// The subscriber is set for this thread: the runtime must poll the calls on it.
#[tokio::test(flavor = "current_thread")]
async fn spans_are_client_spans_with_an_error_status_on_failure() {
    let lambda = LocalLambda::builder()
        .function("echo", LocalFunction::echo())
        .function(
            "crashes",
            LocalFunction::new(|_| async {
                Err(FunctionFailure::unhandled(
                    "Runtime.ExitError",
                    "exit status 1",
                ))
            }),
        )
        .function(
            "hang",
            LocalFunction::new(|_| std::future::pending::<Result<bytes::Bytes, _>>()),
        )
        .start()
        .await
        .unwrap();
    let client = common::client_for(&lambda);
    let spans = exported(async {
        // 1. Success.
        client.invoke_json("echo", &1).await.unwrap();
        // 2. Throttled on every attempt.
        lambda.always(
            "echo",
            Some(Fault::throttle(
                Some(ThrottleReason::FunctionInvocationRateLimitExceeded),
                Some(Duration::ZERO),
            )),
        );
        client.invoke_json("echo", &2).await.unwrap_err();
        lambda.always("echo", None);
        // 3. A server fault (not retried: it may have run).
        lambda.script("echo", [Fault::service_exception()]);
        client.invoke_json("echo", &3).await.unwrap_err();
        // 4. A timeout.
        let req = InvokeRequest::builder("hang")
            .options(CallOptions::new().timeout(Duration::from_millis(100)))
            .build()
            .unwrap();
        client.invoke(req).await.unwrap_err();
        // 5. A function error.
        let resp = client.invoke_json("crashes", &5).await.unwrap();
        assert!(resp.function_error().is_some());
    })
    .await;

    let ops = operation_spans(&spans);
    assert_eq!(
        ops.len(),
        5,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // Every span of the client, operation and attempt, is a client span.
    for span in &spans {
        assert_eq!(span.span_kind, SpanKind::Client, "{}", span.name);
    }
    assert!(spans.iter().any(|s| s.name == "Lambda.Invoke.attempt"));
    // In the order the calls ended.
    assert_eq!(ops[0].status, Status::Unset);
    assert_eq!(attribute(ops[0], "error.type"), None);

    assert_eq!(
        error_description(ops[1]),
        "throttled: TooManyRequestsException (429)"
    );
    assert_eq!(
        attribute(ops[1], "error.type").as_deref(),
        Some("TooManyRequestsException")
    );

    assert_eq!(
        error_description(ops[2]),
        "ServiceException (500, server fault)"
    );
    assert_eq!(
        attribute(ops[2], "aws.lambda.may_have_run").as_deref(),
        Some("unknown")
    );

    let timeout = error_description(ops[3]);
    assert!(
        timeout.starts_with("TimeoutError: operation timeout"),
        "{timeout}"
    );
    assert_eq!(
        attribute(ops[3], "error.type").as_deref(),
        Some("TimeoutError")
    );

    assert_eq!(error_description(ops[4]), "function error: Unhandled");
    assert_eq!(
        attribute(ops[4], "aws.lambda.function_error").as_deref(),
        Some("Unhandled")
    );
    assert_eq!(attribute(ops[4], "error.type"), None);
}
