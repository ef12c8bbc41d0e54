//! A client with its own stack: the default named stack, a custom layer inserted before
//! signing (so the header it adds is signed), and the resolved order from `identify()`.
//!
//! `cargo run --example custom_client`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use invoke_stack::stack::{BoxService, InvokeStack};
use invoke_stack::testing::{Invocation, LocalFunction, LocalLambda};
use invoke_stack::InvokeClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lambda = LocalLambda::builder()
        .function(
            "hello",
            LocalFunction::new(|inv: Invocation| async move {
                let who = inv.tenant_id().unwrap_or("nobody").to_owned();
                Ok(Bytes::from(format!("\"hello, {who}\"")))
            }),
        )
        .start()
        .await?;

    // A layer of our own: stamps every attempt with the calling tenant and counts them.
    let attempts = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&attempts);
    let stamp = tower::layer::layer_fn(move |inner: BoxService| {
        let counter = Arc::clone(&counter);
        BoxService::new(tower::util::MapRequest::new(
            inner,
            move |mut req: http::Request<Bytes>| {
                counter.fetch_add(1, Ordering::Relaxed);
                req.headers_mut().insert(
                    "x-amz-tenant-id",
                    http::HeaderValue::from_static("team-blue"),
                );
                req
            },
        ))
    });

    let client = InvokeClient::builder()
        .endpoint_url(lambda.endpoint_url())
        .credentials(lambda.credentials())
        .named_stack(move |stack: &mut InvokeStack| {
            stack
                .add_before("sign", "tenant-stamp", stamp)
                .expect("the default stack has a sign slot");
            // This client needs no client-side rate limiting.
            stack.remove("rate-limit-feedback").expect("slot exists");
            stack.remove("rate-limit").expect("slot exists");
        })
        .build()?;

    println!("stack, outermost first:");
    for (i, name) in client.identify().iter().enumerate() {
        println!("  {}. {name}", i + 1);
    }
    let resp = client.invoke_json("hello", &serde_json::json!({})).await?;
    println!("payload: {}", String::from_utf8_lossy(resp.payload()));
    println!(
        "attempts seen by tenant-stamp: {}",
        attempts.load(Ordering::Relaxed)
    );
    assert_eq!(resp.payload().as_ref(), b"\"hello, team-blue\"");
    Ok(())
}
