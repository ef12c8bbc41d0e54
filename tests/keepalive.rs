//! A connection opened by the transport's connector has `SO_KEEPALIVE` on and
//! `TCP_KEEPIDLE` / `TCP_KEEPINTVL` / `TCP_KEEPCNT` as configured, read back from the socket.
#![cfg(target_os = "linux")]

use std::time::Duration;

use tower::ServiceExt;

use invoke_stack::layers::keepalive::{KeepAlive, TcpSocket};
use invoke_stack::transport::{tcp_connector, TransportConfig};

async fn connect_and_read(config: TransportConfig) -> Option<KeepAlive> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri: http::Uri = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let accept = tokio::spawn(async move { listener.accept().await.unwrap() });
    let conn = tcp_connector(&config).oneshot(uri).await.unwrap();
    let _server_side = accept.await.unwrap();
    KeepAlive::read_from(&conn.socket()).unwrap()
}

#[tokio::test]
async fn default_keepalive_is_set_on_the_socket() {
    let read = connect_and_read(TransportConfig::default()).await;
    assert_eq!(read, Some(KeepAlive::default()));
    let k = read.unwrap();
    // Detects a dead peer, and refreshes NAT state, well inside 350 s.
    assert!(k.idle + k.interval * k.retries < Duration::from_secs(350));
}

#[tokio::test]
async fn configured_keepalive_is_set_on_the_socket() {
    let custom = KeepAlive {
        idle: Duration::from_secs(7),
        interval: Duration::from_secs(3),
        retries: 2,
    };
    let read = connect_and_read(TransportConfig::default().keepalive(Some(custom))).await;
    assert_eq!(read, Some(custom));
}

#[tokio::test]
async fn keepalive_can_be_switched_off() {
    assert_eq!(
        connect_and_read(TransportConfig::default().keepalive(None)).await,
        None
    );
}

/// Issue 16, item 2: the connect future answers a poll after completion with an error.
#[tokio::test]
async fn connect_future_polled_after_completion_is_an_error() {
    use invoke_stack::layers::keepalive::KeepAliveLayer;
    use tower::Layer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connect =
        tower::service_fn(|addr: std::net::SocketAddr| tokio::net::TcpStream::connect(addr));
    let mut svc = KeepAliveLayer::new(KeepAlive::default()).layer(connect);
    let mut fut = Box::pin(tower::Service::call(&mut svc, addr));
    let _conn = (&mut fut).await.unwrap();
    let again = std::future::poll_fn(|cx| std::future::Future::poll(fut.as_mut(), cx)).await;
    let err = again.map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("polled after completion"), "{err}");
}
