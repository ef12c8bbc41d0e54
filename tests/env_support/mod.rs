//! Test servers for the proxy and TLS tests: a certificate authority of the test's own,
//! an https front for the local endpoint, and a CONNECT proxy. All on 127.0.0.1, started
//! and stopped with the test.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA made for the test, and a server certificate it signed.
pub struct TestCa {
    /// The CA's certificate, PEM.
    pub ca_pem: String,
    /// A server configuration with a certificate for `names`, signed by the CA.
    pub server: Arc<rustls::ServerConfig>,
}

pub fn test_ca(names: &[&str]) -> TestCa {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "invoke-stack test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .unwrap();
    TestCa {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// Terminates TLS on a port of its own and relays the plain bytes to `upstream` (the
/// local endpoint). Returns the port.
pub async fn https_front(upstream: SocketAddr, server: Arc<rustls::ServerConfig>) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

/// What a CONNECT proxy was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `host:port` of the CONNECT line.
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A CONNECT proxy. Targets whose host is in `routes` go to the address given there
/// (names the machine cannot resolve), others to their own address. With
/// `require_auth`, a CONNECT without that `Proxy-Authorization` gets a 407.
pub struct ConnectProxy {
    pub url: String,
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Connect>>>,
}

pub async fn connect_proxy(
    routes: Vec<(String, SocketAddr)>,
    require_auth: Option<String>,
) -> ConnectProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (record, routes, require_auth) = (
                Arc::clone(&record),
                Arc::clone(&routes),
                require_auth.clone(),
            );
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut lines = head.lines();
                let request = lines.next().unwrap_or_default().to_owned();
                let mut parts = request.split_whitespace();
                if parts.next() != Some("CONNECT") {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                        .await;
                    return;
                }
                let target = parts.next().unwrap_or_default().to_owned();
                let authorization = lines.find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("proxy-authorization")
                        .then(|| v.trim().to_owned())
                });
                record.lock().unwrap().push(Connect {
                    target: target.clone(),
                    authorization: authorization.clone(),
                });
                if require_auth.is_some() && authorization != require_auth {
                    let _ = client
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let host = target.rsplit_once(':').map_or(target.as_str(), |(h, _)| h);
                let upstream = match routes.iter().find(|(name, _)| name == host) {
                    Some((_, addr)) => tokio::net::TcpStream::connect(*addr).await,
                    None => tokio::net::TcpStream::connect(target.as_str()).await,
                };
                let Ok(mut upstream) = upstream else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    ConnectProxy {
        url: format!("http://127.0.0.1:{port}"),
        port,
        seen,
    }
}

/// A directory of its own under the temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("invoke-stack-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
    pub fn missing(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The variables of a process with `lambda`'s keys and no shared files.
pub fn keys_env(
    lambda: &invoke_stack::testing::LocalLambda,
    dir: &TempDir,
) -> Vec<(String, String)> {
    let creds = lambda.credentials();
    let mut vars = vec![
        (
            "AWS_ACCESS_KEY_ID".to_owned(),
            creds.access_key_id().to_owned(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            creds.secret_access_key().to_owned(),
        ),
        ("AWS_CONFIG_FILE".to_owned(), dir.missing("config")),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            dir.missing("credentials"),
        ),
        ("AWS_REGION".to_owned(), lambda.region().to_owned()),
    ];
    if let Some(token) = creds.session_token() {
        vars.push(("AWS_SESSION_TOKEN".to_owned(), token.to_owned()));
    }
    vars
}

/// `vars` with `more` set (replacing any of the same name).
pub fn env_with(
    mut vars: Vec<(String, String)>,
    more: &[(&str, &str)],
) -> invoke_stack::config::Env {
    for (k, v) in more {
        vars.retain(|(name, _)| name != k);
        vars.push(((*k).to_owned(), (*v).to_owned()));
    }
    invoke_stack::config::Env::from_pairs(vars)
}
