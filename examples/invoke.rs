//! `aws lambda invoke`, with invoke-stack.
//!
//! With no `--endpoint-url`, it starts the embedded local Lambda endpoint with an `echo`
//! function and invokes it, so it runs on a fresh machine with no AWS account:
//!
//! ```text
//! cargo run --example invoke
//! cargo run --example invoke -- --payload '{"n":1}' --log-type Tail
//! RUST_LOG=invoke_stack=debug cargo run --example invoke    # with the spans of the call
//! ```
//!
//! Against any endpoint that speaks the Invoke protocol, as the AWS CLI: the endpoint from
//! `--endpoint-url`, else `AWS_ENDPOINT_URL_LAMBDA`, else `AWS_ENDPOINT_URL`; the region,
//! `AWS_CA_BUNDLE`, `HTTPS_PROXY` / `NO_PROXY` and the rest from the environment and the
//! profile; credentials from the richest chain this build has (environment and profile
//! keys; with `--features aws-config`, aws-config's whole chain: SSO, assume-role, web
//! identity, ECS, EC2):
//!
//! ```text
//! cargo run --example invoke -- --endpoint-url http://127.0.0.1:5000 \
//!     --function-name arn:aws:lambda:us-east-1:123456789012:function:f:prod --payload @event.json
//! AWS_PROFILE=work cargo run --example invoke --features aws-config -- --function-name f
//! ```
//!
//! Dead letters: an `Event` that finally fails is stored in a spool, and a later run
//! replays it (here a function that does not exist fails with a 404, not run):
//!
//! ```text
//! cargo run --example invoke -- --invocation-type Event --function-name missing \
//!     --dead-letter-spool ~/.local/state/invoke-stack/events.spool
//! cargo run --example invoke -- --replay-spool ~/.local/state/invoke-stack/events.spool
//! ```
//!
//! (The embedded endpoint still has no `missing`, so that replay reports it as failed
//! again; with `--endpoint-url`, a letter is delivered once its function can take it.)

use std::process::ExitCode;

use bytes::Bytes;
use clap::Parser;
use invoke_stack::client::FunctionSettings;
use invoke_stack::config::{Env, EnvSettings};
use invoke_stack::dead_letter::{FileSpool, ReplayOptions};
use invoke_stack::model::{InvocationType, InvokeRequest, LogType};
use invoke_stack::testing::{Invocation, LocalFunction, LocalLambda};
use invoke_stack::{CallOptions, InvokeClient, InvokeClientBuilder, InvokeError};

/// Invoke a Lambda function (flags as `aws lambda invoke`).
#[derive(Parser, Debug)]
#[command(name = "invoke")]
struct Args {
    /// Function name, partial ARN or ARN, optionally with `:version` or `:alias`.
    #[arg(long, default_value = "echo")]
    function_name: String,
    /// JSON payload, or `@path` to read it from a file.
    #[arg(long)]
    payload: Option<String>,
    /// RequestResponse, Event or DryRun.
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
    /// Endpoint URL (default: AWS_ENDPOINT_URL_LAMBDA, then AWS_ENDPOINT_URL); without
    /// any, an embedded local endpoint with an `echo` function.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, then
    /// us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// The function is idempotent: also retry failures after which it may have run.
    #[arg(long)]
    idempotent: bool,
    /// Total attempts, the first included (1 switches retries off; default:
    /// AWS_MAX_ATTEMPTS, the profile's max_attempts, else 3).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Seconds each attempt may wait for its response (as the AWS CLI's); 0 keeps the
    /// client's default, the function's whole run plus a margin.
    #[arg(long, value_name = "SECONDS")]
    cli_read_timeout: Option<u64>,
    /// Seconds to establish a connection (DNS, TCP and TLS), as the AWS CLI's; 0 keeps
    /// the default (3.1 s).
    #[arg(long, value_name = "SECONDS")]
    cli_connect_timeout: Option<u64>,
    /// Store an `Event` that finally fails in this dead-letter spool file.
    #[arg(long, value_name = "PATH")]
    dead_letter_spool: Option<std::path::PathBuf>,
    /// Instead of invoking, replay the letters of this spool and print the counts.
    #[arg(long, value_name = "PATH")]
    replay_spool: Option<std::path::PathBuf>,
    /// With `--replay-spool`: also replay letters whose first try may have run.
    #[arg(long)]
    replay_may_have_run: bool,
}

fn echo_with_log() -> LocalFunction {
    LocalFunction::new(|inv: Invocation| async move {
        inv.log(format!("echo received {} bytes", inv.payload().len()));
        Ok(inv.payload().clone())
    })
}

/// aws-config's whole chain when this build has the feature.
#[cfg(feature = "aws-config")]
async fn richest_chain(builder: InvokeClientBuilder) -> InvokeClientBuilder {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    builder.sdk_config(&sdk)
}

/// Without aws-config: the builder's own chain (environment, then profile keys).
#[cfg(not(feature = "aws-config"))]
async fn richest_chain(builder: InvokeClientBuilder) -> InvokeClientBuilder {
    builder
}

fn read_payload(arg: Option<&str>, local: bool) -> Result<Bytes, String> {
    match arg {
        Some(p) => match p.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map(Bytes::from)
                .map_err(|e| format!("cannot read payload file {path}: {e}")),
            None => Ok(Bytes::from(p.to_owned())),
        },
        None if local => Ok(Bytes::from_static(br#"{"hello":"world"}"#)),
        None => Ok(Bytes::new()),
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // The environment and the profile, as the builder reads them.
    let settings = EnvSettings::load(&Env::process())?;
    let region = args
        .region
        .clone()
        .or(settings.region.clone())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let endpoint_url = args.endpoint_url.clone().or(settings.endpoint_url.clone());

    // Without an endpoint, serve one here (kept alive until the call is done).
    let mut local = None;
    let builder = match endpoint_url {
        Some(url) => richest_chain(InvokeClient::builder())
            .await
            .endpoint_url(url)
            .region(&region),
        None => {
            let lambda = LocalLambda::builder()
                .region(&region)
                .function("echo", echo_with_log().version("1").alias("live", "1"))
                .start()
                .await?;
            eprintln!(
                "no --endpoint-url, AWS_ENDPOINT_URL_LAMBDA or AWS_ENDPOINT_URL: started the \
                 embedded local Lambda endpoint on {}",
                lambda.endpoint_url()
            );
            let b = InvokeClient::builder()
                .endpoint_url(lambda.endpoint_url())
                .region(&region)
                .credentials(lambda.credentials());
            local = Some(lambda);
            b
        }
    };
    let name = invoke_stack::model::FunctionName::new(args.function_name.as_str())
        .map_err(InvokeError::from)?;
    let builder = match args.max_attempts {
        Some(n) => builder.max_attempts(n),
        None => builder,
    };
    // The connect timeout, as the AWS CLI's (the environment's CA bundle and proxy still
    // apply: the builder adds them to any transport configuration).
    let builder = match args.cli_connect_timeout.filter(|s| *s > 0) {
        Some(secs) => builder.transport(
            invoke_stack::transport::TransportConfig::default()
                .connect_timeout(std::time::Duration::from_secs(secs)),
        ),
        None => builder,
    };
    let mut builder = builder.function(
        name.name(),
        FunctionSettings::default().idempotent(args.idempotent),
    );
    if let Some(path) = &args.dead_letter_spool {
        builder = builder.dead_letter_sink(FileSpool::open(path)?);
    }
    let client = builder.build()?;

    if let Some(path) = &args.replay_spool {
        let spool = FileSpool::open(path)?;
        let options = ReplayOptions::default().include_may_have_run(args.replay_may_have_run);
        let report = spool.replay_with(&client, options).await?;
        println!("Delivered: {}", report.delivered);
        println!("LeftMayHaveRun: {}", report.left_may_have_run);
        println!("FailedAgain: {}", report.failed.len());
        for (id, e) in &report.failed {
            println!("  {id}: {e}");
        }
        println!("Invalid: {}", report.invalid);
        println!("DamagedLines: {}", report.damaged_lines);
        drop(local);
        return Ok(());
    }

    let mut req = InvokeRequest::builder(&args.function_name)
        .invocation_type(args.invocation_type)
        .log_type(args.log_type)
        .payload(read_payload(args.payload.as_deref(), local.is_some())?);
    if let Some(q) = &args.qualifier {
        req = req.qualifier(q);
    }
    if let Some(cc) = &args.client_context {
        req = req.client_context_base64(cc);
    }
    // Per-call options: this call's own attempt timeout.
    let mut options = CallOptions::new();
    if let Some(secs) = args.cli_read_timeout.filter(|s| *s > 0) {
        options = options.attempt_timeout(std::time::Duration::from_secs(secs));
    }
    let req = req.options(options).build().map_err(InvokeError::from)?;
    let resp = match client.invoke(req).await {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(path) = &args.dead_letter_spool {
                if e.dead_lettered() {
                    eprintln!(
                        "the event was stored in the dead-letter spool {}",
                        path.display()
                    );
                } else if let Some(refused) = e.dead_letter_error() {
                    eprintln!("the event could NOT be stored in the dead-letter spool: {refused}");
                }
            }
            return Err(e.into());
        }
    };

    println!("StatusCode: {}", resp.status_code());
    if let Some(v) = resp.executed_version() {
        println!("ExecutedVersion: {v}");
    }
    if let Some(fe) = resp.function_error() {
        println!("FunctionError: {}", fe.kind());
        if let Some(t) = fe.error_type() {
            println!("  errorType: {t}");
        }
        if let Some(m) = fe.error_message() {
            println!("  errorMessage: {m}");
        }
    }
    if let Some(tail) = resp.log_tail() {
        println!("LogTail:");
        for line in tail.lines() {
            println!("  {line}");
        }
    }
    if let Some(id) = resp.request_id() {
        println!("RequestId: {id}");
    }
    println!("Payload: {}", String::from_utf8_lossy(resp.payload()));
    drop(local);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // `RUST_LOG=invoke_stack=debug` shows the spans of the call on stderr.
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
                if let Some(stop) = ie.stop_reason() {
                    eprintln!("  retries stopped: {stop}");
                }
                eprintln!("  function: {}", ie.may_have_run());
            }
            ExitCode::FAILURE
        }
    }
}
