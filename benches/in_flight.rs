//! Many long synchronous calls in flight at once from one `InvokeClient`: 10,000
//! `RequestResponse` calls to a function that runs 60 s, all sent at once.
//!
//! Measured in the client's process: its RSS before the calls (client built, warmed
//! with one call, the requests built, each with its own payload) and when every call is
//! running on the endpoint, so the memory the client adds per call in flight; its CPU time (user + system, all threads) over a window while every
//! call waits; the TCP sockets it holds (entries of `/proc/self/fd`); and that every
//! call succeeds (any failure is printed and the bench exits non-zero).
//!
//! The endpoint (the embedded `LocalLambda`) runs in a child process, this program again
//! (`serve` mode): 10,000 client sockets and 10,000 server sockets would not fit one
//! process's file-descriptor limit, and the client's RSS is then its own. The handler
//! counts the runs in progress, and the child says on stdout when all `n` are running:
//! the client measures then, not after a guessed sleep. Both processes raise their soft
//! `RLIMIT_NOFILE` to the hard limit and fail with a message if that is too low. The
//! endpoint's listen backlog is `n` (the kernel caps it at `net.core.somaxconn`), and
//! the bench reports the SYNs the system dropped for full listen queues meanwhile.
//!
//! The client uses the default settings a user has (default stack, transport, pool and
//! keep-alive; the default `RequestResponse` attempt timeout, 900 s + 60 s, exceeds the
//! function's run). It is given the endpoint, the region and the endpoint's test
//! credentials, and an empty environment (so a proxy or profile of the machine does not
//! change what is measured).
//!
//! ```text
//! cargo bench --bench in_flight                          # n=10000 secs=60 size=128 window=20
//! cargo bench --bench in_flight -- n=1000 secs=10 size=65536 window=5
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use invoke_stack::config::Env;
use invoke_stack::model::InvokeRequest;
use invoke_stack::testing::{LocalFunction, LocalLambda};
use invoke_stack::InvokeClient;

/// Failures printed (each with its error); the rest are counted.
const SHOWN_FAILURES: usize = 10;

/// File descriptors a process needs beyond one per connection (runtime, pipes, stdio).
const FD_MARGIN: u64 = 256;

#[derive(Debug, Clone)]
struct Args {
    serve: bool,
    n: usize,
    secs: u64,
    size: usize,
    window: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        serve: false,
        n: 10_000,
        secs: 60,
        size: 128,
        window: 20,
    };
    for arg in std::env::args().skip(1) {
        if arg == "serve" {
            a.serve = true;
            continue;
        }
        // cargo bench passes `--bench`; libtest-style flags are ignored.
        if arg.starts_with('-') {
            continue;
        }
        let Some((k, v)) = arg.split_once('=') else {
            return Err(format!(
                "unknown argument {arg:?} (n=, secs=, size=, window=)"
            ));
        };
        let num = |v: &str| {
            v.replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{k}={v}: {e}"))
        };
        match k {
            "n" => a.n = num(v)? as usize,
            "secs" => a.secs = num(v)?,
            "size" => a.size = num(v)? as usize,
            "window" => a.window = num(v)?,
            _ => {
                return Err(format!(
                    "unknown argument {arg:?} (n=, secs=, size=, window=)"
                ))
            }
        }
    }
    if a.n == 0 || a.size < 2 {
        return Err("n must be at least 1 and size at least 2".into());
    }
    Ok(a)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; fails if that is below `needed`.
fn raise_nofile(needed: u64, who: &str) -> Result<u64, String> {
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .map_err(|e| format!("{who}: getrlimit: {e}"))?;
    if hard < needed {
        return Err(format!(
            "{who}: needs {needed} file descriptors, but the hard limit (ulimit -Hn) is {hard}; \
             raise it (e.g. `ulimit -Hn {needed}` as root, or LimitNOFILE= in a systemd unit) \
             or run with a smaller n="
        ));
    }
    if soft < hard {
        rlimit::Resource::NOFILE
            .set(hard, hard)
            .map_err(|e| format!("{who}: setrlimit({hard}): {e}"))?;
    }
    Ok(hard)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time of the process (user + system, all threads, living and exited), in clock
/// ticks of 10 ms (`/proc/self/stat` fields 14 and 15; USER_HZ is 100 on Linux).
fn process_cpu_ticks() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// CPU time of the living threads, in nanoseconds (`/proc/self/task/*/schedstat`).
fn threads_cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// The system's count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` in `/proc/net/netstat`): their SYNs are sent again 1 s later.
fn listen_overflows() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/net/netstat") else {
        return 0;
    };
    let mut lines = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn somaxconn() -> String {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// (open file descriptors, of which sockets).
fn fds() -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return (0, 0);
    };
    let mut all = 0;
    let mut sockets = 0;
    for e in dir.flatten() {
        all += 1;
        if std::fs::read_link(e.path())
            .map(|p| p.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false)
        {
            sockets += 1;
        }
    }
    (all, sockets)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("in_flight: {e}");
            std::process::exit(2);
        }
    };
    let result = if args.serve {
        serve(&args)
    } else {
        client(&args)
    };
    if let Err(e) = result {
        eprintln!("in_flight: {e}");
        std::process::exit(1);
    }
}

/// The endpoint: starts `LocalLambda` with `wait` (sleeps `secs`, counting the runs in
/// progress) and `echo`, prints `addr ADDR`, then `running N` once `n` runs are in
/// progress, then `done` when they have all returned. Exits when stdin closes.
fn serve(args: &Args) -> Result<(), String> {
    raise_nofile(args.n as u64 + FD_MARGIN, "server")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("server runtime: {e}"))?;
    // Parent gone (stdin closed): exit, so no server outlives its bench.
    std::thread::spawn(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
        std::process::exit(0);
    });
    rt.block_on(async {
        // (runs started, runs returned)
        let (runs_tx, mut runs_rx) = tokio::sync::watch::channel((0usize, 0usize));
        let runs_tx = Arc::new(runs_tx);
        let (n, secs) = (args.n, args.secs);
        let wait = LocalFunction::new(move |inv| {
            let runs = Arc::clone(&runs_tx);
            async move {
                runs.send_modify(|r| r.0 += 1);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                runs.send_modify(|r| r.1 += 1);
                Ok(Bytes::copy_from_slice(
                    &inv.payload()[..inv.payload().len().min(16)],
                ))
            }
        });
        let lambda = LocalLambda::builder()
            // All connections arrive at once; the kernel caps this at net.core.somaxconn.
            .listen_backlog(u32::try_from(n).unwrap_or(u32::MAX))
            .function("wait", wait)
            .function("echo", LocalFunction::echo())
            .start()
            .await
            .map_err(|e| format!("server: bind: {e}"))?;
        let mut out = std::io::stdout();
        let say = |out: &mut std::io::Stdout, line: String| {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        };
        say(&mut out, format!("addr {}", lambda.endpoint_url()));
        let in_progress = match runs_rx.wait_for(|r| r.0 >= n).await {
            Ok(r) => r.0 - r.1,
            Err(_) => 0,
        };
        say(
            &mut out,
            format!(
                "running {in_progress} server_rss_kib {}",
                status_kib("VmRSS:")
            ),
        );
        let _ = runs_rx.wait_for(|r| r.1 >= n).await;
        say(&mut out, "done".into());
        // Keep serving until the parent closes stdin.
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// Kills the child when the bench ends, whatever the path.
struct Server {
    child: Child,
    _stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(args: &Args) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg(format!("n={}", args.n))
            .arg(format!("secs={}", args.secs))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the server process: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err("server process without pipes".into());
        };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            child,
            _stdin: stdin,
            lines,
        })
    }

    /// The next line, which must start with `prefix` (the server prints nothing else).
    fn expect(&self, prefix: &str, within: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(within) {
            Ok(l) if l.starts_with(prefix) => Ok(l),
            Ok(l) => Err(format!("server said {l:?}, expected {prefix:?}")),
            Err(_) => Err(format!(
                "server did not say {prefix:?} within {within:?} (or exited)"
            )),
        }
    }
}

fn payload(size: usize) -> Bytes {
    // A JSON string of exactly `size` bytes.
    let mut v = vec![b'a'; size];
    v[0] = b'"';
    v[size - 1] = b'"';
    Bytes::from(v)
}

fn client(args: &Args) -> Result<(), String> {
    let n = args.n;
    let limit = raise_nofile(n as u64 + FD_MARGIN, "client")?;
    let server = Server::start(args)?;
    let url = server.expect("addr ", Duration::from_secs(30))?["addr ".len()..].to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("client runtime: {e}"))?;
    rt.block_on(async move {
        let client = InvokeClient::builder()
            .env(Env::from_pairs(std::iter::empty::<(&str, &str)>()))
            .endpoint_url(url.clone())
            .region(invoke_stack::testing::TEST_REGION)
            .credentials(invoke_stack::layers::sigv4::Credentials::from_keys(
                invoke_stack::testing::TEST_ACCESS_KEY_ID,
                invoke_stack::testing::TEST_SECRET_ACCESS_KEY,
                None,
            ))
            .build()
            .map_err(|e| format!("client: {e}"))?;
        let body = payload(args.size);
        // Warm: one call (the runtime's threads, the pool, the signing key cache).
        let warm = InvokeRequest::builder("echo")
            .payload(body.clone())
            .build()
            .map_err(|e| format!("request: {e}"))?;
        client
            .invoke(warm)
            .await
            .map_err(|e| format!("warm-up call: {e}"))?;
        // Each call its own payload, built before the baseline: the delta is what the
        // client adds to requests the caller already holds (a copy of the payload would
        // show in it).
        let reqs = (0..n)
            .map(|_| {
                InvokeRequest::builder("wait")
                    .payload(payload(args.size))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("request: {e}"))?;
        let (fd_before, sock_before) = fds();
        let rss_before = status_kib("VmRSS:");
        let hwm_before = status_kib("VmHWM:");
        println!(
            "in_flight: n={n} secs={} size={} B; RLIMIT_NOFILE raised to {limit}; endpoint {url} (child process {})",
            args.secs, args.size, server.child.id()
        );
        println!(
            "before:     RSS {rss_before} KiB (HWM {hwm_before} KiB), {fd_before} fds ({sock_before} sockets)"
        );

        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let overflows_before = listen_overflows();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for req in reqs {
            let (client, ok, failed) = (client.clone(), Arc::clone(&ok), Arc::clone(&failed));
            tasks.spawn(async move {
                match client.invoke(req).await {
                    Ok(resp) if resp.function_error().is_none() => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < SHOWN_FAILURES {
                            eprintln!("function error: {:?}", resp.function_error());
                        }
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) >= SHOWN_FAILURES {
                            return;
                        }
                        eprintln!(
                            "call failed: {e} (kind {:?}, attempts {}, may have run {:?})",
                            e.kind(),
                            e.attempts(),
                            e.may_have_run()
                        );
                    }
                }
            });
        }
        // Wait for the endpoint to say every call is running (on a blocking thread: the
        // channel is std's).
        let wait_for = Duration::from_secs(120).min(Duration::from_secs(args.secs));
        let (server, line) = tokio::task::spawn_blocking(move || {
            let line = server.expect("running ", wait_for);
            (server, line)
        })
        .await
        .map_err(|e| format!("join: {e}"))?;
        let ramp = started.elapsed();
        let line = line.map_err(|e| {
            format!(
                "{e}; {} calls failed meanwhile (see above)",
                failed.load(Ordering::Relaxed)
            )
        })?;
        let mut words = line.split_whitespace().skip(1);
        let in_progress: usize = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let server_rss = words.nth(1).unwrap_or("?").to_owned();
        if in_progress != n {
            return Err(format!(
                "only {in_progress} of {n} calls were running at once (the first ones returned \
                 before the last ones started, after {:.2} s): use a larger secs=",
                ramp.as_secs_f64()
            ));
        }
        let rss_full = status_kib("VmRSS:");
        let hwm_full = status_kib("VmHWM:");
        let (fd_full, sock_full) = fds();
        println!(
            "in flight:  all {n} running after {:.2} s; RSS {rss_full} KiB (HWM {hwm_full} KiB), {fd_full} fds ({sock_full} sockets); endpoint RSS {server_rss} KiB",
            ramp.as_secs_f64()
        );
        println!(
            "connects:   {} SYNs dropped by a full listen queue (system-wide ListenOverflows; the endpoint's backlog is min(n, net.core.somaxconn = {})), each sent again after 1 s",
            listen_overflows().saturating_sub(overflows_before),
            somaxconn()
        );
        let per_call = (rss_full.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;
        let per_call_hwm = (hwm_full.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;
        println!(
            "per call:   {:.1} KiB of RSS ({:.1} KiB of peak RSS) over the requests built before, payload {} B each; {} new sockets",
            per_call / 1024.0,
            per_call_hwm / 1024.0,
            args.size,
            sock_full.saturating_sub(sock_before)
        );

        // CPU while every call waits: a window that ends before the first call returns.
        let left = Duration::from_secs(args.secs).saturating_sub(started.elapsed());
        let window = Duration::from_secs(args.window).min(left.saturating_sub(Duration::from_secs(2)));
        if window >= Duration::from_secs(1) {
            let (t0, ns0, ticks0) = (Instant::now(), threads_cpu_ns(), process_cpu_ticks());
            tokio::time::sleep(window).await;
            let (el, ns1, ticks1) = (t0.elapsed(), threads_cpu_ns(), process_cpu_ticks());
            let cpu_ns = ns1.saturating_sub(ns0);
            println!(
                "idle wait:  {:.3} ms of CPU per second over {:.1} s ({:.3} µs per call per second; /proc/self/stat: {} ms in total)",
                cpu_ns as f64 / 1e6 / el.as_secs_f64(),
                el.as_secs_f64(),
                cpu_ns as f64 / 1e3 / el.as_secs_f64() / n as f64,
                ticks1.saturating_sub(ticks0) * 10
            );
        } else {
            println!("idle wait:  not measured (secs= too short for a window after the ramp)");
        }

        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("task: {e}");
            }
        }
        let total = started.elapsed();
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        println!(
            "completed:  {ok} ok, {failed} failed, in {:.2} s (the function runs {} s); peak RSS {} KiB",
            total.as_secs_f64(),
            args.secs,
            status_kib("VmHWM:")
        );
        drop(server);
        if ok != n || failed != 0 {
            return Err(format!("{failed} of {n} calls failed"));
        }
        Ok(())
    })
}
