//! tower-http's `TraceLayer` with the Lambda classification, on a plain hyper client that
//! calls Invoke (signed by invoke-stack's SigV4 layer), against the embedded local
//! endpoint. tower-http's default classifier (`ServerErrorsAsFailures`) would call the
//! throttle and the function error below successes; `LambdaClassifier` calls them
//! failures.
//!
//! `cargo run --example tower_http_trace --features tower-http`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::trace::TraceLayer;

use invoke_stack::classify::{LambdaClassifier, LambdaFailureClass};
use invoke_stack::layers::sigv4::{SigV4Layer, SigningConfig};
use invoke_stack::testing::{Fault, FunctionFailure, LocalFunction, LocalLambda};

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_http=debug".into()),
        )
        .with_writer(std::io::stderr)
        .init();

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
        .start()
        .await?;
    // The first call to `echo` is throttled.
    lambda.script("echo", [Fault::throttle(None, None)]);

    // Someone's hyper client: `String` request bodies (a `Body` that SigV4 can hash),
    // hyper's streaming response bodies.
    let hyper_client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let plain = tower::service_fn(move |req: http::Request<String>| {
        let client = hyper_client.clone();
        async move { client.request(req.map(|b| Full::new(Bytes::from(b)))).await }
    });

    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&failures);
    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new(LambdaClassifier::default()).on_failure(
            move |class: LambdaFailureClass, latency: Duration, _span: &tracing::Span| {
                tracing::warn!(%class, ?latency, "call failed");
                if let Ok(mut seen) = seen.lock() {
                    seen.push(class.to_string());
                }
            },
        ))
        .layer(SigV4Layer::new(
            lambda.credentials(),
            SigningConfig::new(lambda.region()).service("lambda"),
        ))
        .service(plain);

    for function in ["echo", "echo", "crashes"] {
        let req = http::Request::post(format!(
            "{}/2015-03-31/functions/{function}/invocations",
            lambda.endpoint_url()
        ))
        .header("content-type", "application/json")
        .body(r#"{"n":1}"#.to_owned())?;
        let resp = svc.clone().oneshot(req).await?;
        println!(
            "{function}: HTTP {}{}",
            resp.status().as_u16(),
            resp.headers()
                .get("x-amz-function-error")
                .map(|v| format!(", function error {v:?}"))
                .unwrap_or_default()
        );
    }

    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    println!("failures as tower-http's TraceLayer saw them: {failures:?}");
    assert_eq!(
        failures,
        [
            "throttled: TooManyRequestsException (429)",
            "function error: Unhandled"
        ]
    );
    Ok(())
}
