//! Instructions per call of the default client, for `valgrind --tool=callgrind`, which
//! counts instructions rather than time: the same binary and input give the same count
//! whatever else the machine is doing, so two builds (before and after a change, or with
//! and without a feature) compare on a shared, noisy machine.
//!
//! One thread runs the client and a hyper server that echoes the payload (128 B), in one
//! process. Each call builds and validates its request, invokes, and reads the payload,
//! as a user does. Run it twice with different call counts; the difference divided by
//! the difference in calls is the cost of one call, startup and warm-up excluded:
//!
//! ```text
//! cargo bench --bench instructions --no-run
//! B=$(ls -t target/release/deps/instructions-* | grep -v '\.d$' | head -1)
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null $B 200 2>&1 | grep Collected
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null $B 1200 2>&1 | grep Collected
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

use invoke_stack::layers::sigv4::Credentials;
use invoke_stack::{InvokeClient, InvokeRequest};

async fn echo(listener: tokio::net::TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .header("x-amz-executed-version", "$LATEST")
                            .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
                            .body(Full::new(body))
                            .unwrap_or_default(),
                    )
                });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() {
    let calls: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(echo(listener));
        let client = InvokeClient::builder()
            .endpoint_url(url)
            .region("us-east-1")
            .credentials(Credentials::from_keys("AKIDEXAMPLE", "secret", None))
            .build()
            .expect("client");
        let payload = Bytes::from(vec![b'7'; 128]);
        // Warm-up: the connection, the pools, the caches.
        for _ in 0..50 {
            call(&client, &payload).await;
        }
        for _ in 0..calls {
            call(&client, &payload).await;
        }
    });
}

async fn call(client: &InvokeClient, payload: &Bytes) {
    let req = InvokeRequest::builder("my-function")
        .payload(payload.clone())
        .build()
        .expect("request");
    let resp = client.invoke(req).await.expect("call");
    assert_eq!(resp.payload().len(), payload.len());
}
