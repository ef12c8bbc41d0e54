//! invoke-stack's generic layers on someone else's client and service: the retry layer
//! (with the generic HTTP classifier) and the SigV4 layer (for API Gateway,
//! `execute-api`) on a plain hyper client that calls an HTTP service which is not Lambda.
//! Neither layer needs anything else from invoke-stack.
//!
//! `cargo run --example existing_service`

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{ServiceBuilder, ServiceExt};

use invoke_stack::layers::retry::{HttpClassifier, RetryLayer, RetryPolicy, RetryStats};
use invoke_stack::layers::sigv4::{Credentials, SigV4Layer, SigningConfig};

/// A small HTTP service: 503 on its first request, then 200; it reports whether the
/// request was signed.
async fn serve(listener: tokio::net::TcpListener) {
    let calls = Arc::new(AtomicU32::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let calls = Arc::clone(&calls);
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    let signed = req.headers().contains_key("authorization");
                    async move {
                        let (status, body) = if n == 0 {
                            (503, "busy")
                        } else {
                            (200, if signed { "signed" } else { "unsigned" })
                        };
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/prod/orders", listener.local_addr()?);
    tokio::spawn(serve(listener));

    // Someone's existing hyper client, adapted to Bytes bodies both ways.
    let hyper_client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let plain = tower::service_fn(move |req: http::Request<Bytes>| {
        let client = hyper_client.clone();
        async move {
            let resp = client.request(req.map(Full::new)).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http::Response::from_parts(
                parts, body,
            ))
        }
    });

    // tower's Buffer outside: it needs the layers' errors to convert into a BoxError,
    // which they do for a service failing with one.
    let svc = ServiceBuilder::new()
        .buffer(16)
        .layer(RetryLayer::new(HttpClassifier).policy(RetryPolicy {
            transient_base: Duration::from_millis(50),
            idempotent_by_default: true, // GET-like: safe to repeat
            ..RetryPolicy::default()
        }))
        .layer(SigV4Layer::new(
            Credentials::from_keys("AKIDEXAMPLE", "example-secret", None),
            SigningConfig::new("us-east-1").service("execute-api"),
        ))
        .service(plain);

    let req = http::Request::get(&url).body(Bytes::new())?;
    // The layers' errors (here a BoxError under SigV4 and retry, boxed by the buffer) go
    // into a boxed error with `?`.
    let resp = svc.oneshot(req).await?;
    let stats = *resp.extensions().get::<RetryStats>().expect("retry stats");
    println!(
        "status {} after {} attempts: {}",
        resp.status(),
        stats.attempts,
        String::from_utf8_lossy(resp.body())
    );
    assert_eq!((resp.status().as_u16(), stats.attempts), (200, 2));
    assert_eq!(resp.body().as_ref(), b"signed");
    Ok(())
}
