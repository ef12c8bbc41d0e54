//! Settings for a synchronous call that may take the full 15 minutes.
//!
//! - The attempt timeout is the function's maximum duration plus a margin (960 s):
//!   no timer fires before the function can finish.
//! - No operation timeout shorter than that.
//! - TCP keep-alive (first probe after 60 s, then every 15 s) keeps the idle connection
//!   alive through NAT gateways and NLBs, which drop flows idle for 350 s.
//! - Not idempotent: if the answer is lost, the call is not repeated (the function may be
//!   running still); the error says the function may have run.
//! - Behind an ALB, CLB or HTTP proxy, TCP keep-alive does not help: their idle timeout
//!   must exceed 900 s.
//!
//! The demo calls a local function that takes 3 s with no byte on the wire.
//!
//! `cargo run --example long_call`

use std::time::Duration;

use invoke_stack::client::{FunctionSettings, TimeoutConfig};
use invoke_stack::model::InvokeRequest;
use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::transport::{KeepAlive, TransportConfig};
use invoke_stack::InvokeClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lambda = LocalLambda::builder()
        .function(
            "report",
            LocalFunction::new(|inv| async move {
                tokio::time::sleep(Duration::from_secs(3)).await; // a (short) long call
                Ok(inv.payload().clone())
            }),
        )
        .start()
        .await?;

    let keepalive = KeepAlive::default();
    let client = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .transport(TransportConfig::default().keepalive(Some(keepalive)))
        .function(
            "report",
            FunctionSettings::default()
                .max_duration(Duration::from_secs(900))
                .idempotent(false),
        )
        .timeouts(TimeoutConfig {
            operation: Some(Duration::from_secs(20 * 60)),
            ..TimeoutConfig::default()
        })
        .build()?;

    let req = InvokeRequest::builder("report")
        .payload(r#"{"month":"2026-11"}"#)
        .build()?;
    println!("attempt timeout: {:?}", client.attempt_timeout(&req));
    println!(
        "TCP keep-alive: first probe after {:?}, every {:?}, {} probes",
        keepalive.idle, keepalive.interval, keepalive.retries
    );
    let resp = client.invoke(req).await?;
    println!(
        "status {} payload {}",
        resp.status_code(),
        String::from_utf8_lossy(resp.payload())
    );
    Ok(())
}
