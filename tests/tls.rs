#![cfg(feature = "rustls")]
//! Certificate verification is always on: a server whose certificate is not signed by
//! a trusted root is refused during the handshake, before any request byte is sent.

use std::sync::Arc;

use invoke_stack::error::{InvokeErrorKind, RunStatus, TransportErrorKind};
use invoke_stack::layers::sigv4::Credentials;
use invoke_stack::InvokeClient;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn self_signed_certificate_is_refused() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // The handshake must fail: the client does not trust this certificate.
        match acceptor.accept(tcp).await {
            Ok(mut tls) => {
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
                false
            }
            Err(_) => true,
        }
    });

    let client = InvokeClient::builder()
        .endpoint_url(format!("https://localhost:{port}"))
        .credentials(Credentials::from_keys("A", "S", None))
        .build()
        .unwrap();
    let err = client.invoke_json("f", &1).await.unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    // A configuration fault, not retried (issue 16 item 7; it was `Connect`, retried).
    assert_eq!(t.kind(), TransportErrorKind::Certificate, "{t}");
    assert_eq!(err.fault(), invoke_stack::error::Fault::Client);
    assert!(!t.request_sent());
    assert_eq!(err.may_have_run(), RunStatus::NotRun);
    assert!(server.await.unwrap(), "the handshake succeeded");
}
