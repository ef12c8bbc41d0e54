//! A fleet of worker processes calling one function, with the concurrency limit shared
//! through Redis, and without: what the function's endpoint sees.
//!
//! ```text
//! cargo run --example fleet                      # 4 workers × 16 tasks, limit 8, both modes
//! cargo run --example fleet -- --limit shared --workers 8 --calls 20
//! cargo run --example fleet -- --rate 50 --concurrency 64 --calls 20   # a shared 50 calls/s
//! # Any endpoint and Redis (credentials from the usual chain: environment, ~/.aws):
//! cargo run --example fleet -- --endpoint-url http://127.0.0.1:5000 --function f \
//!     --redis-url redis://127.0.0.1:6379/
//! ```
//!
//! Without `--endpoint-url` it starts the embedded local Lambda endpoint with a function
//! whose reserved concurrency is `--concurrency` (the endpoint throttles calls beyond it,
//! as Lambda does), each call running `--run-ms`. Without `--redis-url` it starts a
//! `redis-server` on a free loopback port if one is installed. Each worker is this
//! program again (`--role worker`), a separate process with its own client, configured
//! with `--concurrency` slots per function: local slots only (`local`), or slots leased
//! in Redis (`shared`). It prints, per mode, the calls made, the throttles (the
//! endpoint's count when it is the embedded one, else what the workers were told), the
//! most calls the endpoint ran at once, and the rate at which calls arrived.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use invoke_stack::layers::rate_limit::redis::RedisStore;
use invoke_stack::layers::rate_limit::store::SharedLimits;
use invoke_stack::layers::rate_limit::{Rate, RateLimitLayer};
use invoke_stack::model::InvokeRequest;
use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::{InvokeClient, InvokeErrorKind};

/// Workers sharing one function's concurrency limit through Redis.
#[derive(Parser, Debug, Clone)]
#[command(name = "fleet")]
pub struct Args {
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Tasks per worker, each making `--calls` calls one after the other.
    #[arg(long, default_value_t = 16)]
    pub tasks: usize,
    /// Calls per task.
    #[arg(long, default_value_t = 10)]
    pub calls: usize,
    /// The per-function concurrency limit each worker is configured with (and the
    /// embedded function's reserved concurrency).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The embedded function's reserved concurrency (default: `--concurrency`; 0: none,
    /// to see how many calls the workers send at once).
    #[arg(long)]
    pub reserved: Option<usize>,
    /// A rate limit per function too, in calls per second (burst 1), shared like the
    /// concurrency limit.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Function name.
    #[arg(long, default_value = "fleet")]
    pub function: String,
    /// Endpoint URL; without it, an embedded local endpoint.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Redis URL (or `FLEET_REDIS_URL`, which keeps a password out of `ps`); without
    /// it, a local redis-server if one is installed.
    #[arg(long, env = "FLEET_REDIS_URL")]
    pub redis_url: Option<String>,
    /// shared, local or both.
    #[arg(long, default_value = "both")]
    pub limit: String,
    /// How long each call runs on the embedded endpoint, in milliseconds (sent as the
    /// payload `{"ms": N}`).
    #[arg(long, default_value_t = 20)]
    pub run_ms: u64,
    /// Region (default: AWS_REGION, AWS_DEFAULT_REGION, then us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// Redis key namespace.
    #[arg(long, default_value = "invoke-fleet")]
    pub namespace: String,
    /// Lease TTL of a concurrency slot in Redis, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub lease_ttl_ms: u64,
    /// The longest one Redis call may take, in milliseconds, before the worker falls back
    /// to its local limiter (fail open).
    #[arg(long, default_value_t = 100)]
    pub store_timeout_ms: u64,
    /// Internal: `worker` when run by the parent.
    #[arg(long, hide = true)]
    pub role: Option<String>,
    /// Internal: the worker's mode, `shared` or `local`.
    #[arg(long, hide = true, default_value = "shared")]
    pub mode: String,
}

impl Args {
    fn region(&self) -> String {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned())
    }
}

/// What one worker (or the fleet, summed) got.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed with a throttle from the endpoint (after the retries).
    pub throttled: u64,
    /// Calls the client-side limiter refused.
    pub refused: u64,
    /// Calls that failed otherwise.
    pub failed: u64,
}

impl Tally {
    fn line(&self) -> String {
        format!(
            "FLEET-WORKER ok={} throttled={} refused={} failed={}",
            self.ok, self.throttled, self.refused, self.failed
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("FLEET-WORKER ")?;
        let mut t = Tally::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "ok" => t.ok = v,
                "throttled" => t.throttled = v,
                "refused" => t.refused = v,
                "failed" => t.failed = v,
                _ => {}
            }
        }
        Some(t)
    }

    fn add(&mut self, o: Tally) {
        self.ok += o.ok;
        self.throttled += o.throttled;
        self.refused += o.refused;
        self.failed += o.failed;
    }
}

/// One worker: `tasks` tasks of `calls` calls each, limited locally or through Redis.
pub async fn worker(args: &Args) -> Result<Tally, Box<dyn std::error::Error + Send + Sync>> {
    let url = args
        .endpoint_url
        .as_deref()
        .ok_or("--endpoint-url is required")?;
    let mut limits = RateLimitLayer::builder()
        .concurrency_per_key(args.concurrency)
        .max_wait(Duration::from_secs(600));
    if let Some(calls) = args.rate {
        limits = limits.per_key(Rate {
            calls,
            per: Duration::from_secs(1),
            burst: Some(1),
        });
    }
    if args.mode == "shared" {
        let redis = args.redis_url.as_deref().ok_or("--redis-url is required")?;
        let store = RedisStore::open(redis, &args.namespace)?;
        limits = limits.shared(
            SharedLimits::new(store)
                .lease_ttl(Duration::from_millis(args.lease_ttl_ms))
                .timeout(Duration::from_millis(args.store_timeout_ms)),
        );
    }
    let client = InvokeClient::builder()
        .endpoint_url(url)
        .region(args.region())
        .rate_limit(limits)
        .build()?;
    let payload = Bytes::from(format!("{{\"ms\":{}}}", args.run_ms));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for _ in 0..args.tasks {
        let (client, tally) = (client.clone(), Arc::clone(&tally));
        let (function, payload, calls) = (args.function.clone(), payload.clone(), args.calls);
        tasks.push(tokio::spawn(async move {
            for _ in 0..calls {
                let req = InvokeRequest::builder(&function)
                    .payload(payload.clone())
                    .build();
                let result = match req {
                    Ok(req) => client.invoke(req).await,
                    Err(e) => Err(e.into()),
                };
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(_) => t.ok += 1,
                    Err(e) if matches!(e.kind(), InvokeErrorKind::RateLimited(_)) => t.refused += 1,
                    Err(e) if e.is_throttle() => t.throttled += 1,
                    Err(e) => {
                        if t.failed == 0 {
                            eprintln!("worker {}: {e}", std::process::id());
                        }
                        t.failed += 1
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let t = *tally.lock().unwrap_or_else(|p| p.into_inner());
    Ok(t)
}

/// The embedded endpoint: a function that runs `{"ms": N}` milliseconds, with a
/// reserved concurrency, recording when each call arrived.
pub struct Endpoint {
    /// The endpoint.
    pub lambda: LocalLambda,
    /// When each call arrived.
    pub arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Endpoint {
    /// Starts it with `function` at reserved concurrency `reserved` (0: none).
    pub async fn start(function: &str, reserved: usize, region: &str) -> std::io::Result<Self> {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&arrivals);
        let f = LocalFunction::new(move |inv| {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
            let ms = serde_json::from_slice::<serde_json::Value>(inv.payload())
                .ok()
                .and_then(|v| v.get("ms")?.as_u64())
                .unwrap_or(0);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Bytes::from_static(b"{}"))
            }
        });
        let lambda = LocalLambda::builder()
            .region(region)
            .function(function, f)
            .start()
            .await?;
        // With no reserved concurrency the endpoint still counts the peak.
        lambda.reserved_concurrency(function, Some(reserved).filter(|r| *r > 0));
        Ok(Self { lambda, arrivals })
    }

    /// Calls per second that arrived, from the first to the last.
    pub fn arrival_rate(&self) -> Option<f64> {
        let a = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        let (first, last) = (a.iter().min()?, a.iter().max()?);
        let span = last.duration_since(*first).as_secs_f64();
        (a.len() > 1 && span > 0.0).then(|| (a.len() - 1) as f64 / span)
    }
}

/// A worker process: this program again, with `--role worker`.
pub fn spawn_worker(
    exe: &Path,
    args: &Args,
    mode: &str,
    env: &[(String, String)],
) -> std::io::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.args(["--role", "worker", "--mode", mode])
        .args(["--tasks", &args.tasks.to_string()])
        .args(["--calls", &args.calls.to_string()])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--function", &args.function])
        .args(["--run-ms", &args.run_ms.to_string()])
        .args(["--region", &args.region()])
        .args(["--namespace", &args.namespace])
        .args(["--lease-ttl-ms", &args.lease_ttl_ms.to_string()])
        .args(["--store-timeout-ms", &args.store_timeout_ms.to_string()]);
    if let Some(url) = &args.endpoint_url {
        cmd.args(["--endpoint-url", url]);
    }
    // In the environment, not the arguments: a password in the URL would show in `ps`.
    if let Some(url) = &args.redis_url {
        cmd.env("FLEET_REDIS_URL", url);
    }
    if let Some(rate) = args.rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
}

/// What one mode of the demonstration showed.
#[derive(Debug, Clone)]
pub struct Report {
    /// `shared` or `local`.
    pub mode: String,
    /// The workers' calls, summed.
    pub tally: Tally,
    /// Throttles the embedded endpoint sent.
    pub endpoint_throttles: Option<u64>,
    /// The most calls the embedded endpoint ran at once.
    pub peak: Option<usize>,
    /// Calls per second that arrived at the embedded endpoint.
    pub rate: Option<f64>,
    /// From the first worker started to the last one done.
    pub elapsed: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        write!(
            f,
            "{:<7} calls ok {:>6}  throttled {:>6}  refused {:>4}  failed {:>4}  \
             endpoint throttles {:>6}  peak concurrency {:>4}  {:>7.0} calls/s  {:.2} s",
            self.mode,
            self.tally.ok,
            self.tally.throttled,
            self.tally.refused,
            self.tally.failed,
            opt(self.endpoint_throttles.map(|t| t.to_string())),
            opt(self.peak.map(|p| p.to_string())),
            self.rate.unwrap_or(f64::NAN),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Runs one mode: starts the embedded endpoint unless `args` names one, runs the
/// workers, waits for them, and reports.
pub async fn run_mode(
    exe: &Path,
    args: &Args,
    mode: &str,
) -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    let mut args = args.clone();
    let mut env = Vec::new();
    let endpoint = match &args.endpoint_url {
        Some(_) => None,
        None => {
            let reserved = args.reserved.unwrap_or(args.concurrency);
            let e = Endpoint::start(&args.function, reserved, &args.region()).await?;
            args.endpoint_url = Some(e.lambda.endpoint_url());
            let c = e.lambda.credentials();
            env.push(("AWS_ACCESS_KEY_ID".into(), c.access_key_id().to_owned()));
            env.push((
                "AWS_SECRET_ACCESS_KEY".into(),
                c.secret_access_key().to_owned(),
            ));
            Some(e)
        }
    };
    let start = Instant::now();
    let mut children = Vec::new();
    for _ in 0..args.workers {
        children.push(spawn_worker(exe, &args, mode, &env)?);
    }
    // Blocking reads, each on its own thread: the endpoint runs on this runtime.
    let mut tally = Tally::default();
    let waits: Vec<_> = children
        .into_iter()
        .map(|mut child| {
            tokio::task::spawn_blocking(move || -> Result<Tally, String> {
                let mut out = String::new();
                if let Some(stdout) = child.stdout.as_mut() {
                    let _ = stdout.read_to_string(&mut out);
                }
                let status = child.wait().map_err(|e| e.to_string())?;
                out.lines()
                    .find_map(Tally::parse)
                    .ok_or_else(|| format!("a worker printed no tally ({status})"))
            })
        })
        .collect();
    for w in waits {
        tally.add(w.await??);
    }
    Ok(Report {
        mode: mode.to_owned(),
        tally,
        endpoint_throttles: endpoint
            .as_ref()
            .map(|e| e.lambda.concurrency_throttles(&args.function)),
        peak: endpoint
            .as_ref()
            .map(|e| e.lambda.peak_concurrency(&args.function)),
        rate: endpoint.as_ref().and_then(Endpoint::arrival_rate),
        elapsed: start.elapsed(),
    })
}

/// Why a local redis-server cannot be started here, if it cannot.
pub fn redis_server_missing() -> Option<String> {
    match Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        _ => Some("redis-server is not installed (apt-get install redis-server)".into()),
    }
}

/// A redis-server of our own on a free loopback port, with a temporary directory and no
/// persistence; stopped when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`.
    pub fn start() -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = std::env::temp_dir().join(format!("invoke-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.restart()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it (SIGKILL): an outage.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty), and waits until it answers.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if self.command(&["PING"]).as_deref() == Ok("+PONG") {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("redis-server exited: {status}"));
            }
            if Instant::now() > until {
                return Err("redis-server did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command and returns the first line of the answer (`:8`, `+PONG`).
    pub fn command(&self, parts: &[&str]) -> Result<String, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let mut req = format!("*{}\r\n", parts.len());
        for p in parts {
            req.push_str(&format!("${}\r\n{p}\r\n", p.len()));
        }
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        Ok(line.trim_end().to_owned())
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A field of `INFO section` (for example `commandstats`, `cmdstat_evalsha`).
    pub fn info(&self, section: &str, field: &str) -> Result<String, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let req = format!("*2\r\n$4\r\nINFO\r\n${}\r\n{section}\r\n", section.len());
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut r = BufReader::new(s);
        let mut head = String::new();
        r.read_line(&mut head).map_err(|e| e.to_string())?;
        let len: usize = head
            .trim_end()
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("unexpected answer {head}"))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| Some(l.strip_prefix(field)?.strip_prefix(':')?.trim().to_owned()))
            .ok_or_else(|| format!("no {field} in INFO {section}"))
    }

    /// Leases held now for `function` under `namespace`.
    pub fn leases(&self, namespace: &str, function: &str) -> Result<u64, String> {
        let key = format!("{{{namespace}}}:conc:{function}");
        let line = self.command(&["ZCARD", &key])?;
        line.strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("unexpected answer {line}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let exe = std::env::current_exe()?;
    let modes: &[&str] = match args.limit.as_str() {
        "both" => &["shared", "local"],
        "shared" => &["shared"],
        "local" => &["local"],
        other => return Err(format!("--limit {other}: expected shared, local or both").into()),
    };
    let mut args = args;
    let mut modes = modes.to_vec();
    let mut _server = None;
    if args.redis_url.is_none() && modes.contains(&"shared") {
        match redis_server_missing() {
            // Still show what per-process limits do.
            Some(reason) if modes.len() > 1 => {
                println!("shared mode skipped: no --redis-url, and {reason}");
                modes.retain(|m| *m != "shared");
            }
            Some(reason) => return Err(format!("no --redis-url, and {reason}").into()),
            None => {
                let s = RedisServer::start()?;
                eprintln!("redis-server on {}", s.url());
                args.redis_url = Some(s.url());
                _server = Some(s);
            }
        }
    }
    let reserved = match (
        &args.endpoint_url,
        args.reserved.unwrap_or(args.concurrency),
    ) {
        (Some(_), _) => String::new(),
        (None, 0) => ", the function has no reserved concurrency".into(),
        (None, r) => format!(", the function's reserved concurrency {r}"),
    };
    println!(
        "{} workers × {} tasks × {} calls, {} in flight per worker{reserved}{}",
        args.workers,
        args.tasks,
        args.calls,
        args.concurrency,
        args.rate
            .map(|r| format!(", {r} calls/s"))
            .unwrap_or_default()
    );
    for mode in &modes {
        let report = run_mode(&exe, &args, mode).await?;
        println!("{report}");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleet: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = if args.role.as_deref() == Some("worker") {
        rt.block_on(worker(&args)).map(|t| println!("{}", t.line()))
    } else {
        rt.block_on(run(args))
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
