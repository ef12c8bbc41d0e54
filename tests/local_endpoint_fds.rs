//! The local endpoint holds one file descriptor per connection: 10,000 calls in flight
//! must fit its process's limit (`benches/in_flight.rs`). Its own test binary, so that no
//! other test opens descriptors while this one counts them.

#![cfg(target_os = "linux")]

use invoke_stack::testing::{LocalFunction, LocalLambda};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[tokio::test(flavor = "current_thread")]
async fn one_descriptor_per_connection() {
    const N: usize = 64;
    let lambda = LocalLambda::builder()
        .function("echo", LocalFunction::echo())
        .start()
        .await
        .unwrap();
    let before = open_fds();
    let mut conns = Vec::new();
    for _ in 0..N {
        let mut s = tokio::net::TcpStream::connect(lambda.addr()).await.unwrap();
        // Any answer (here an error for an unsigned request) proves the endpoint accepted
        // and serves the connection; HTTP/1.1 keeps it open afterwards.
        s.write_all(b"GET /2015-03-31/functions/echo/invocations HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 "), "{:?}", &buf[..n]);
        conns.push(s);
    }
    let grown = open_fds() - before;
    // N for our ends, N for the endpoint's (a duplicated handle per connection made 3N).
    assert!(
        grown <= 2 * N + 4,
        "{grown} descriptors for {N} connections (client and endpoint ends)"
    );
    drop(conns);
}
