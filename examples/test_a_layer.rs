//! Unit-testing one layer the way invoke-stack's own tests do: the retry layer over a
//! `tower-test` mock, with paused tokio time, so delays are exact and take no time.
//!
//! `cargo run --example test_a_layer`

use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_test::mock;

use invoke_stack::layers::retry::{HttpClassifier, RetryLayer, RetryStats};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let (mock, mut handle) = mock::pair::<http::Request<()>, http::Response<()>>();
    // Fixed jitter: the delay before retry n is 0.5 × min(2^(n-1) s, 20 s).
    let svc = RetryLayer::new(HttpClassifier).jitter(|| 0.5).layer(mock);

    let start = Instant::now();
    let call = tokio::spawn(svc.oneshot(http::Request::new(())));

    // The mock plays the server: throttled with Retry-After: 2, then 200.
    let (_first, send) = handle.next_request().await.expect("first attempt");
    send.send_response(
        http::Response::builder()
            .status(429)
            .header("retry-after", "2")
            .body(())
            .unwrap(),
    );
    let (second, send) = handle.next_request().await.expect("second attempt");
    let waited = start.elapsed();
    send.send_response(http::Response::new(()));

    let resp = call.await.expect("task").expect("response");
    let stats = resp.extensions().get::<RetryStats>().expect("stats");
    println!("second attempt after {waited:?} (Retry-After 2 s beats 0.5 s of backoff)");
    println!(
        "headers of the retry: {:?}",
        second.headers().get("amz-sdk-request")
    );
    println!("{stats:?}");
    assert_eq!(waited, Duration::from_secs(2));
    assert_eq!(stats.attempts, 2);
    assert_eq!(second.headers()["amz-sdk-request"], "attempt=2; max=3");
}
