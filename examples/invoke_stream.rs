//! `aws lambda invoke-with-response-stream`, with invoke-stack: the function's chunks go
//! to stdout as they arrive, the completion (function error, log tail) to stderr.
//!
//! With no `--endpoint-url`, it starts the embedded local Lambda endpoint with a `words`
//! function that streams a sentence a word at a time, so it runs with no AWS account:
//!
//! ```text
//! cargo run --example invoke_stream
//! cargo run --example invoke_stream -- --payload '{"words":20}' --log-type Tail
//! cargo run --example invoke_stream -- --function-name words --cli-read-timeout 5
//! RUST_LOG=invoke_stack=info cargo run --example invoke_stream   # with the stream's span
//! ```
//!
//! Against any endpoint that speaks the protocol (credentials from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`):
//!
//! ```text
//! cargo run --example invoke_stream -- --endpoint-url https://lambda.us-east-1.amazonaws.com \
//!     --function-name arn:aws:lambda:us-east-1:123456789012:function:f:prod --payload @event.json
//! ```

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use invoke_stack::layers::sigv4::EnvironmentProvider;
use invoke_stack::model::{InvocationType, LogType};
use invoke_stack::stream::{InvokeStreamRequest, StreamConfig, StreamError};
use invoke_stack::testing::{Invocation, LocalLambda, StreamFunction};
use invoke_stack::{InvokeClient, InvokeError};

/// Invoke a Lambda function and stream its response (flags as
/// `aws lambda invoke-with-response-stream`).
#[derive(Parser, Debug)]
#[command(name = "invoke_stream")]
struct Args {
    /// Function name, partial ARN or ARN, optionally with `:version` or `:alias`.
    #[arg(long, default_value = "words")]
    function_name: String,
    /// JSON payload, or `@path` to read it from a file.
    #[arg(long)]
    payload: Option<String>,
    /// RequestResponse or DryRun.
    #[arg(long, default_value = "RequestResponse")]
    invocation_type: InvocationType,
    /// None or Tail.
    #[arg(long, default_value = "None")]
    log_type: LogType,
    /// Version or alias.
    #[arg(long)]
    qualifier: Option<String>,
    /// Base64 client context.
    #[arg(long)]
    client_context: Option<String>,
    /// Endpoint URL; without it, an embedded local endpoint with a `words` function.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Region (default: AWS_REGION, AWS_DEFAULT_REGION, then us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// Longest wait, in seconds, for the next bytes of the stream (0: no limit). Default:
    /// the function's maximum duration plus a margin (960 s).
    #[arg(long)]
    cli_read_timeout: Option<u64>,
}

/// Streams `{"words": n}` words of a sentence, one per chunk.
fn words() -> StreamFunction {
    StreamFunction::new(|inv: Invocation, out| async move {
        let n = serde_json::from_slice::<serde_json::Value>(inv.payload())
            .ok()
            .and_then(|v| v["words"].as_u64())
            .unwrap_or(9);
        inv.log(format!("streaming {n} words"));
        let text = "the quick brown fox jumps over the lazy dog";
        for (i, w) in text.split(' ').cycle().take(n as usize).enumerate() {
            let sep = if i == 0 { "" } else { " " };
            if out.send(format!("{sep}{w}")).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let _ = out.send("\n").await;
        Ok(())
    })
    .content_type("text/plain")
}

fn read_payload(arg: Option<&str>) -> Result<Bytes, String> {
    match arg {
        Some(p) => match p.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map(Bytes::from)
                .map_err(|e| format!("cannot read payload file {path}: {e}")),
            None => Ok(Bytes::from(p.to_owned())),
        },
        None => Ok(Bytes::new()),
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let region = args
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".to_owned());

    let mut local = None;
    let builder = match &args.endpoint_url {
        Some(url) => {
            let creds = EnvironmentProvider::new()
                .load()
                .map_err(InvokeError::from)?;
            InvokeClient::builder()
                .endpoint_url(url)
                .region(&region)
                .credentials(creds)
        }
        None => {
            let lambda = LocalLambda::builder()
                .region(&region)
                .stream_function("words", words())
                .start()
                .await?;
            eprintln!("local Lambda endpoint on {}", lambda.endpoint_url());
            let b = InvokeClient::builder()
                .endpoint_url(lambda.endpoint_url())
                .region(&region)
                .credentials(lambda.credentials());
            local = Some(lambda);
            b
        }
    };
    let mut config = StreamConfig::default();
    config.idle_timeout = args.cli_read_timeout.map(|s| match s {
        0 => Duration::MAX,
        s => Duration::from_secs(s),
    });
    let client = builder.stream_config(config).build()?;

    let mut req = InvokeStreamRequest::builder(&args.function_name)
        .invocation_type(args.invocation_type)
        .log_type(args.log_type)
        .payload(read_payload(args.payload.as_deref())?);
    if let Some(q) = &args.qualifier {
        req = req.qualifier(q);
    }
    if let Some(cc) = &args.client_context {
        req = req.client_context_base64(cc);
    }
    let req = req.build().map_err(InvokeError::from)?;
    let mut resp = client.invoke_stream(req).await?;

    eprintln!("StatusCode: {}", resp.status_code());
    if let Some(v) = resp.executed_version() {
        eprintln!("ExecutedVersion: {v}");
    }
    if let Some(t) = resp.content_type() {
        eprintln!("ResponseStreamContentType: {t}");
    }
    let mut stdout = std::io::stdout();
    while let Some(chunk) = resp.next_chunk().await {
        stdout.write_all(&chunk?)?;
        stdout.flush()?;
    }
    if let Some(done) = resp.completion() {
        eprintln!("InvokeComplete:");
        if let Some(code) = &done.error_code {
            eprintln!("  ErrorCode: {code}");
        }
        if let Some(details) = &done.error_details {
            eprintln!("  ErrorDetails: {details}");
        }
        if let Some(tail) = done.log_tail() {
            eprintln!("  LogTail:");
            for line in tail.lines() {
                eprintln!("    {line}");
            }
        }
    }
    eprintln!(
        "{} bytes in {} chunks",
        resp.bytes_received(),
        resp.chunks_received()
    );
    drop(local);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(ie) = e.downcast_ref::<InvokeError>() {
                eprintln!("  type: {}", ie.type_name());
                eprintln!("  fault: {}", ie.fault());
                eprintln!("  retryable: {}", ie.is_retryable());
                eprintln!("  attempts: {}", ie.attempts());
                eprintln!("  function: {}", ie.may_have_run());
            }
            if let Some(se) = e.downcast_ref::<StreamError>() {
                eprintln!("  type: {}", se.type_name());
                eprintln!("  bytes received: {}", se.bytes_received());
                eprintln!("  function: {} (not retried)", se.may_have_run());
            }
            ExitCode::FAILURE
        }
    }
}
