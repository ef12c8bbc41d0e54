#![cfg(feature = "rustls")]
//! TLS trust (issue 18, item 4): a local https endpoint whose certificate comes from a CA
//! of the test's own is refused by default, with a clear certificate error, and trusted
//! once the CA is given: `AWS_CA_BUNDLE`, the profile's `ca_bundle`, PEM in code, or a
//! whole rustls configuration. Verification itself can never be turned off.

mod env_support;

use std::sync::Arc;

use env_support::{env_with, https_front, keys_env, test_ca, TempDir};
use invoke_stack::error::{Fault, InvokeErrorKind, TransportErrorKind};
use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::transport::{TlsConfig, TlsRoots, TransportConfig};
use invoke_stack::InvokeClient;

struct Setup {
    lambda: LocalLambda,
    url: String,
    ca_pem: String,
    dir: TempDir,
}

async fn setup(tag: &str) -> Setup {
    let lambda = LocalLambda::builder()
        .function("echo", LocalFunction::echo())
        .start()
        .await
        .unwrap();
    let ca = test_ca(&["localhost"]);
    let port = https_front(lambda.addr(), ca.server.clone()).await;
    Setup {
        url: format!("https://localhost:{port}"),
        ca_pem: ca.ca_pem,
        lambda,
        dir: TempDir::new(&format!("tls-{tag}")),
    }
}

#[tokio::test]
async fn a_private_ca_is_refused_by_default_and_trusted_with_aws_ca_bundle() {
    let s = setup("bundle").await;
    let base = || keys_env(&s.lambda, &s.dir);
    // Default: the platform's roots, which do not hold the test's CA.
    let env = env_with(base(), &[("AWS_ENDPOINT_URL_LAMBDA", &s.url)]);
    let err = InvokeClient::builder()
        .env(env)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    let InvokeErrorKind::Transport(t) = err.kind() else {
        panic!("{err:?}")
    };
    assert_eq!(t.kind(), TransportErrorKind::Certificate, "{t}");
    assert_eq!(err.fault(), Fault::Client);
    assert!(t.to_string().contains("AWS_CA_BUNDLE"), "{t}");
    assert_eq!(err.attempts(), 1, "a certificate error is not retried");
    assert_eq!(s.lambda.requests("echo"), 0);

    // AWS_CA_BUNDLE=ca.pem: trusted (in addition to the platform's roots).
    let ca = s.dir.file("ca.pem", &s.ca_pem);
    let env = env_with(
        base(),
        &[("AWS_ENDPOINT_URL_LAMBDA", &s.url), ("AWS_CA_BUNDLE", &ca)],
    );
    let client = InvokeClient::builder().env(env).build().unwrap();
    let resp = client.invoke_json("echo", &1).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"1");
    assert_eq!(s.lambda.invocations("echo"), 1);

    // The profile's ca_bundle too.
    let config = s
        .dir
        .file("config", &format!("[default]\nca_bundle = {ca}\n"));
    let env = env_with(
        base(),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &s.url),
            ("AWS_CONFIG_FILE", &config),
        ],
    );
    InvokeClient::builder()
        .env(env)
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_ca_bundle_that_cannot_be_used_fails_the_build_with_its_path() {
    let s = setup("badbundle").await;
    let missing = s.dir.missing("nope.pem");
    let env = env_with(
        keys_env(&s.lambda, &s.dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &s.url),
            ("AWS_CA_BUNDLE", &missing),
        ],
    );
    let err = InvokeClient::builder().env(env).build().unwrap_err();
    assert!(err.to_string().contains(&missing), "{err}");
    let not_pem = s.dir.file("not.pem", "hello");
    let env = env_with(
        keys_env(&s.lambda, &s.dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &s.url),
            ("AWS_CA_BUNDLE", &not_pem),
        ],
    );
    let err = InvokeClient::builder().env(env).build().unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

#[tokio::test]
async fn trust_set_in_code() {
    let s = setup("code").await;
    let builder = || {
        InvokeClient::builder()
            .env(env_with(keys_env(&s.lambda, &s.dir), &[]))
            .endpoint_url(&s.url)
    };
    // The bundled webpki roots alone: refused.
    let err = builder()
        .transport(TransportConfig::default().tls(TlsConfig::default().roots(TlsRoots::Webpki)))
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // Webpki roots and the CA's PEM: trusted.
    builder()
        .transport(
            TransportConfig::default().tls(
                TlsConfig::default()
                    .roots(TlsRoots::Webpki)
                    .add_root_pem(s.ca_pem.clone()),
            ),
        )
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap();
    // A whole rustls configuration, used as given.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(s.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    builder()
        .transport(
            TransportConfig::default().tls(TlsConfig::default().client_config(Arc::new(config))),
        )
        .build()
        .unwrap()
        .invoke_json("echo", &1)
        .await
        .unwrap();
    assert_eq!(s.lambda.invocations("echo"), 2);
}

/// Issue 21: a client whose endpoint is plain http (a local endpoint) makes no TLS
/// connection, so it reads no trusted roots: an unusable `AWS_CA_BUNDLE` does not fail it
/// (building it parsed the platform's store and the bundle: a few hundred KiB of heap
/// per process for nothing), while the same bundle still fails an https client.
#[tokio::test]
async fn a_plain_http_client_reads_no_trusted_roots() {
    let s = setup("plainhttp").await;
    let missing = s.dir.missing("nope.pem");
    let env = env_with(
        keys_env(&s.lambda, &s.dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", s.lambda.endpoint_url().as_str()),
            ("AWS_CA_BUNDLE", &missing),
        ],
    );
    let client = InvokeClient::builder().env(env).build().unwrap();
    let resp = client.invoke_json("echo", &7).await.unwrap();
    assert_eq!(resp.payload().as_ref(), b"7");

    let env = env_with(
        keys_env(&s.lambda, &s.dir),
        &[
            ("AWS_ENDPOINT_URL_LAMBDA", &s.url),
            ("AWS_CA_BUNDLE", &missing),
        ],
    );
    let err = InvokeClient::builder().env(env).build().unwrap_err();
    assert!(err.to_string().contains(&missing), "{err}");
}
