//! The spans of a few calls, one of them retried, printed by tracing-subscriber's fmt
//! layer, against the embedded local endpoint.
//!
//! ```text
//! cargo run --example tracing
//! RUST_LOG=invoke_stack=trace,invoke_layers=trace cargo run --example tracing
//! ```

use std::time::Duration;

use invoke_stack::error::ThrottleReason;
use invoke_stack::layers::retry::RetryPolicy;
use invoke_stack::model::{InvokeRequest, LogType};
use invoke_stack::testing::{Fault, Invocation, LocalFunction, LocalLambda};
use invoke_stack::InvokeClient;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("invoke_stack=debug,invoke_layers=debug")),
        )
        .with_writer(std::io::stderr)
        .init();

    let lambda = LocalLambda::builder()
        .function(
            "greeter",
            LocalFunction::new(|inv: Invocation| async move {
                inv.log("greeting someone");
                Ok(inv.payload().clone())
            }),
        )
        .start()
        .await?;
    let client = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .retry_policy(RetryPolicy {
            throttle_base: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
        .build()?;

    // A plain call, with the log tail.
    let req = InvokeRequest::builder("greeter")
        .payload(r#"{"name":"Ada"}"#)
        .log_type(LogType::Tail)
        .build()?;
    client.invoke(req).await?;

    // A call throttled once, then retried.
    lambda.script(
        "greeter",
        [Fault::throttle(
            Some(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded),
            None,
        )],
    );
    client
        .invoke_json("greeter", &serde_json::json!({"name": "Grace"}))
        .await?;

    // A call that fails for good.
    let err = client
        .invoke_json("missing", &serde_json::json!({}))
        .await
        .unwrap_err();
    eprintln!("as expected: {err}");
    Ok(())
}
