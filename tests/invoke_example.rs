#![cfg(feature = "rustls")]
//! The `invoke` example behaves like the AWS CLI (issue 18): the endpoint from
//! `AWS_ENDPOINT_URL_LAMBDA`, trust from `AWS_CA_BUNDLE`, the tunnel from `HTTPS_PROXY`;
//! and without any endpoint it starts the embedded one and says so on stderr.
//!
//! Runs the example's binary, which `cargo test` builds with the tests; when it is not
//! there (a run limited to this test target), the test says so and passes.

mod env_support;

use std::path::PathBuf;

use env_support::{connect_proxy, https_front, keys_env, test_ca, TempDir};
use invoke_stack::testing::{LocalFunction, LocalLambda};

fn example() -> Option<PathBuf> {
    // target/debug/deps/invoke_example-… → target/debug/examples/invoke
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join("invoke");
    path.exists().then_some(path)
}

async fn run(vars: &[(String, String)], args: &[&str]) -> Option<(bool, String, String)> {
    let Some(path) = example() else {
        eprintln!("skipped: the invoke example is not built (run `cargo test` for every target)");
        return None;
    };
    let mut cmd = tokio::process::Command::new(path);
    cmd.args(args)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn endpoint_ca_bundle_and_proxy_from_the_environment() {
    const HOST: &str = "lambda.invoke-test";
    let lambda = LocalLambda::builder()
        .function("echo", LocalFunction::echo())
        .start()
        .await
        .unwrap();
    let ca = test_ca(&[HOST]);
    let port = https_front(lambda.addr(), ca.server.clone()).await;
    let proxy = connect_proxy(
        vec![(
            HOST.to_owned(),
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )],
        None,
    )
    .await;
    let dir = TempDir::new("example");
    let mut vars = keys_env(&lambda, &dir);
    vars.push(("HOME".into(), dir.0.display().to_string()));
    vars.push((
        "AWS_ENDPOINT_URL_LAMBDA".into(),
        format!("https://{HOST}:{port}"),
    ));
    vars.push(("AWS_CA_BUNDLE".into(), dir.file("ca.pem", &ca.ca_pem)));
    vars.push(("HTTPS_PROXY".into(), proxy.url.clone()));
    let Some((ok, stdout, stderr)) =
        run(&vars, &["--function-name", "echo", "--payload", "[7]"]).await
    else {
        return;
    };
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("StatusCode: 200") && stdout.contains("Payload: [7]"),
        "{stdout}"
    );
    assert!(!stderr.contains("embedded"), "{stderr}");
    assert_eq!(proxy.seen.lock().unwrap().len(), 1);
    assert_eq!(lambda.invocations("echo"), 1);
}

#[tokio::test]
async fn without_an_endpoint_it_starts_the_embedded_one_and_says_so() {
    let dir = TempDir::new("example-local");
    let vars = vec![
        ("HOME".to_owned(), dir.0.display().to_string()),
        ("AWS_CONFIG_FILE".to_owned(), dir.missing("config")),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            dir.missing("credentials"),
        ),
    ];
    let Some((ok, stdout, stderr)) = run(&vars, &[]).await else {
        return;
    };
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("started the embedded local Lambda endpoint on http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(stdout.contains("StatusCode: 200"), "{stdout}");
}
