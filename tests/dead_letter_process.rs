//! Issue 17: the spool across processes. Each test re-runs this binary as children
//! (`<self> --role writer|replayer|replay-once ...`):
//!
//! - a writer is killed with SIGKILL at random instants, 50 times: every letter it
//!   acknowledged (printed after its future resolved) is read back exactly once;
//! - two writers append 5,000 letters each while a third process replays: every letter
//!   is delivered or still spooled, exactly once;
//! - a replayer killed mid-replay: the next replay delivers the rest, and at most the
//!   batch in flight twice;
//! - disk full (a 64 KiB tmpfs; needs root and `mount`, else reported ignored with the
//!   reason): the caller's error carries its letter back, and nothing of the refused
//!   batch is left in the file.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use invoke_stack::dead_letter::{
    DeadLetter, DeadLetterErrorKind, DeadLetterSink, FileSpool, ReplayOptions,
};
use invoke_stack::error::{ApiError, ApiErrorKind};
use invoke_stack::layers::sigv4::Credentials;
use invoke_stack::model::{InvocationType, InvokeRequest};
use invoke_stack::testing::{
    Fault, Invocation, LocalFunction, LocalLambda, TEST_ACCESS_KEY_ID, TEST_REGION,
    TEST_SECRET_ACCESS_KEY,
};
use invoke_stack::{InvokeClient, InvokeError};
use libtest_mimic::{Arguments, Failed, Trial};
use tokio::sync::watch;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--role") {
        let rest = &argv[i + 2..];
        let code = match argv.get(i + 1).map(String::as_str) {
            Some("writer") => role_writer(rest),
            Some("replayer") => role_replayer(rest, true),
            Some("replay-once") => role_replayer(rest, false),
            _ => Err("unknown role".into()),
        };
        if let Err(e) = code {
            eprintln!("child failed: {e}");
            std::process::exit(2);
        }
        std::process::exit(0);
    }
    let args = Arguments::from_args();
    let disk_full = match tmpfs_unavailable() {
        Some(reason) => {
            eprintln!("\n*** disk-full test SKIPPED: {reason} ***\n");
            // Ignored, and a failure if run anyway (`--include-ignored`).
            Trial::test("disk_full_hands_the_letter_back", move || {
                Err(format!("not run: {reason}").into())
            })
            .with_ignored_flag(true)
        }
        None => Trial::test("disk_full_hands_the_letter_back", disk_full),
    };
    let trials = vec![
        Trial::test(
            "sigkill_at_random_instants_loses_no_acknowledged_letter",
            sigkill_writer,
        ),
        Trial::test(
            "two_writers_and_a_replayer_lose_and_duplicate_nothing",
            two_writers_and_a_replayer,
        ),
        Trial::test(
            "a_replayer_killed_mid_replay_redelivers_at_most_one_batch",
            replayer_killed,
        ),
        disk_full,
    ];
    libtest_mimic::run(&args, trials).exit();
}

type Res<T = ()> = Result<T, Failed>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// An error after which the event certainly did not run (a throttle): replayed by default.
fn not_run() -> InvokeError {
    ApiError::new(
        ApiErrorKind::TooManyRequests {
            reason: None,
            retry_after: None,
        },
        429,
        None,
    )
    .into()
}

/// An `Event` to `f` whose payload is the letter's key (a JSON string).
fn event(key: &str) -> InvokeRequest {
    InvokeRequest::builder("f")
        .invocation_type(InvocationType::Event)
        .payload(format!("\"{key}\""))
        .build()
        .expect("a valid request")
}

fn key_of(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload)
        .trim_matches('"')
        .to_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("invoke-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spawn_self(args: &[&str], stdin: bool) -> Res<Child> {
    let exe = std::env::current_exe()?;
    Ok(Command::new(exe)
        .arg("--role")
        .args(args)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?)
}

/// Child: appends letters `<tag>-<n>` (forever when count is 0), 32 in flight, and
/// prints `ACK <key>` once each one's future resolved.
fn role_writer(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [path, tag, count] = args else {
        return Err("writer PATH TAG COUNT".into());
    };
    let count: u64 = count.parse()?;
    runtime().block_on(async move {
        let spool = FileSpool::open(path)?;
        let slots = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        let mut n = 0u64;
        while count == 0 || n < count {
            let slot = Arc::clone(&slots).acquire_owned().await?;
            let (spool, key) = (spool.clone(), format!("{tag}-{n}"));
            tasks.spawn(async move {
                let letter = DeadLetter::new(&event(&key), &not_run(), SystemTime::now());
                match spool.send(letter).await {
                    // One line per write: stdout is line-buffered.
                    Ok(()) => println!("ACK {key}"),
                    Err(e) => eprintln!("writer: {e}"),
                }
                drop(slot);
            });
            n += 1;
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    })
}

fn child_client(url: &str) -> Result<InvokeClient, Box<dyn std::error::Error>> {
    Ok(InvokeClient::builder()
        .endpoint_url(url)
        .region(TEST_REGION)
        .credentials(Credentials::from_keys(
            TEST_ACCESS_KEY_ID,
            TEST_SECRET_ACCESS_KEY,
            None,
        ))
        .max_attempts(1)
        .build()?)
}

/// Child: replays `PATH` through the endpoint at `URL` in batches of `BATCH`; with
/// `repeat`, again and again until its stdin closes, then once more.
fn role_replayer(args: &[String], repeat: bool) -> Result<(), Box<dyn std::error::Error>> {
    let [path, url, batch] = args else {
        return Err("replayer PATH URL BATCH".into());
    };
    let options = ReplayOptions::default().batch(batch.parse()?);
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(!repeat));
    if repeat {
        let closed = Arc::clone(&closed);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    runtime().block_on(async move {
        let client = child_client(url)?;
        let spool = FileSpool::open(path)?;
        let (mut delivered, mut rounds) = (0, 0);
        loop {
            let last = closed.load(std::sync::atomic::Ordering::SeqCst);
            let report = spool.replay_with(&client, options).await?;
            if !report.failed.is_empty() {
                return Err(format!("replay failures: {:?}", report.failed).into());
            }
            delivered += report.delivered;
            rounds += 1;
            if last {
                break;
            }
            // Pacing between rounds while the writers append.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("DONE delivered={delivered} rounds={rounds}");
        Ok(())
    })
}

/// Counts the payloads the endpoint's function `f` receives.
#[derive(Clone)]
struct Deliveries {
    seen: Arc<Mutex<HashMap<String, u32>>>,
    runs: Arc<watch::Sender<u64>>,
}

impl Deliveries {
    fn new() -> Self {
        Self {
            seen: Arc::default(),
            runs: Arc::new(watch::channel(0).0),
        }
    }

    fn function(&self) -> LocalFunction {
        let me = self.clone();
        LocalFunction::new(move |inv: Invocation| {
            let me = me.clone();
            async move {
                let key = key_of(inv.payload());
                *me.seen.lock().unwrap().entry(key).or_insert(0) += 1;
                me.runs.send_modify(|n| *n += 1);
                Ok(Bytes::new())
            }
        })
    }

    /// Waits until every event the endpoint queued has run.
    async fn settle(&self, lambda: &LocalLambda) {
        let queued = lambda.invocations("f");
        let mut runs = self.runs.subscribe();
        let _ = runs.wait_for(|n| *n >= queued).await;
    }

    async fn wait_for_runs(&self, n: u64) {
        let mut runs = self.runs.subscribe();
        let _ = runs.wait_for(|r| *r >= n).await;
    }

    fn counts(&self) -> HashMap<String, u32> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads a child's `ACK <key>` lines until `limit` of them (or the end).
fn read_acks(
    reader: &mut impl BufRead,
    limit: Option<usize>,
    acked: &mut Vec<String>,
) -> Res<usize> {
    let mut n = 0;
    let mut line = String::new();
    while limit.is_none_or(|l| n < l) {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if let Some(key) = line.trim_end().strip_prefix("ACK ") {
            acked.push(key.to_owned());
            n += 1;
        }
    }
    Ok(n)
}

fn spooled_keys(path: &Path) -> Res<(HashMap<String, u32>, usize)> {
    let contents = FileSpool::open(path)?.read_blocking()?;
    let mut keys = HashMap::new();
    for l in &contents.letters {
        *keys.entry(key_of(&l.payload)).or_insert(0) += 1;
    }
    Ok((keys, contents.damaged_lines))
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Res {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

fn sigkill_writer() -> Res {
    const ROUNDS: usize = 50;
    let dir = TempDir::new("sigkill");
    let path = dir.0.join("spool");
    let path_s = path.to_string_lossy().into_owned();
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("sigkill: seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        // xorshift64
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acked = Vec::new();
    for round in 0..ROUNDS {
        let mut child = spawn_self(&["writer", &path_s, &format!("r{round}"), "0"], false)?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        // A random instant: after 1 to 400 acknowledged letters, with more in flight.
        let k = 1 + (next() % 400) as usize;
        let got = read_acks(&mut out, Some(k), &mut acked)?;
        child.kill()?;
        // What it acknowledged before it died.
        read_acks(&mut out, None, &mut acked)?;
        child.wait()?;
        check(got == k, || {
            format!("round {round}: the writer ended early")
        })?;
    }
    let (keys, damaged) = spooled_keys(&path)?;
    eprintln!(
        "sigkill: {ROUNDS} kills, {} letters acknowledged, {} stored, {damaged} damaged lines",
        acked.len(),
        keys.len()
    );
    let unique: HashSet<&String> = acked.iter().collect();
    check(unique.len() == acked.len(), || {
        "a key acknowledged twice".into()
    })?;
    for key in &acked {
        let n = keys.get(key).copied().unwrap_or(0);
        check(n == 1, || {
            format!("acknowledged letter {key} read back {n} times")
        })?;
    }
    check(keys.values().all(|n| *n == 1), || {
        "a letter stored twice".into()
    })
}

fn two_writers_and_a_replayer() -> Res {
    const EACH: usize = 5000;
    let dir = TempDir::new("three");
    let path = dir.0.join("spool");
    let path_s = path.to_string_lossy().into_owned();
    let rt = runtime();
    let deliveries = Deliveries::new();
    let lambda = rt.block_on(
        LocalLambda::builder()
            .function("f", deliveries.function())
            .start(),
    )?;
    let url = lambda.endpoint_url();
    let count = EACH.to_string();
    let mut a = spawn_self(&["writer", &path_s, "a", &count], false)?;
    let mut b = spawn_self(&["writer", &path_s, "b", &count], false)?;
    let mut replayer = spawn_self(&["replayer", &path_s, &url, "64"], true)?;
    let (a_out, b_out) = (
        a.stdout.take().ok_or("no stdout")?,
        b.stdout.take().ok_or("no stdout")?,
    );
    let read = |out| {
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            read_acks(&mut BufReader::new(out), None, &mut acked).map(|_| acked)
        })
    };
    let (ta, tb) = (read(a_out), read(b_out));
    let mut acked = ta.join().map_err(|_| "reader panicked")??;
    acked.extend(tb.join().map_err(|_| "reader panicked")??);
    check(a.wait()?.success() && b.wait()?.success(), || {
        "a writer failed".into()
    })?;
    // The writers are done: the replayer makes its last round and reports.
    drop(replayer.stdin.take());
    let mut done = String::new();
    BufReader::new(replayer.stdout.take().ok_or("no stdout")?).read_line(&mut done)?;
    check(replayer.wait()?.success(), || "the replayer failed".into())?;
    rt.block_on(deliveries.settle(&lambda));
    let delivered = deliveries.counts();
    let (spooled, damaged) = spooled_keys(&path)?;
    eprintln!(
        "three processes: {} acknowledged, {} delivered, {} still spooled, {damaged} damaged; replayer: {}",
        acked.len(),
        delivered.len(),
        spooled.len(),
        done.trim()
    );
    check(acked.len() == 2 * EACH, || {
        format!("{} letters acknowledged", acked.len())
    })?;
    check(!delivered.is_empty(), || {
        "the replayer delivered nothing".into()
    })?;
    for key in &acked {
        let (d, s) = (
            delivered.get(key).copied().unwrap_or(0),
            spooled.get(key).copied().unwrap_or(0),
        );
        check(d + s == 1, || {
            format!("letter {key}: delivered {d} times, spooled {s} times")
        })?;
    }
    check(delivered.len() + spooled.len() == 2 * EACH, || {
        "letters that no writer acknowledged".into()
    })
}

fn replayer_killed() -> Res {
    const LETTERS: usize = 300;
    const BATCH: usize = 8;
    let dir = TempDir::new("replay-kill");
    let path = dir.0.join("spool");
    let path_s = path.to_string_lossy().into_owned();
    let rt = runtime();
    let deliveries = Deliveries::new();
    let lambda = rt.block_on(
        LocalLambda::builder()
            .function("f", deliveries.function())
            .start(),
    )?;
    rt.block_on(async {
        let spool = FileSpool::open(&path)?;
        for i in 0..LETTERS {
            let letter = DeadLetter::new(&event(&format!("k-{i}")), &not_run(), SystemTime::now());
            spool.send(letter).await?;
        }
        Ok::<_, Failed>(())
    })?;
    // Each event takes 20 ms: the replay is far from done when the child is killed.
    lambda.always("f", Some(Fault::Delay(Duration::from_millis(20))));
    let url = lambda.endpoint_url();
    let mut child = spawn_self(&["replay-once", &path_s, &url, &BATCH.to_string()], false)?;
    rt.block_on(deliveries.wait_for_runs(100));
    child.kill()?;
    child.wait()?;
    rt.block_on(deliveries.settle(&lambda));
    let first = deliveries.counts().len();
    lambda.always("f", None);
    let client = child_client(&url).map_err(|e| e.to_string())?;
    let report = rt.block_on(async {
        FileSpool::open(&path)?
            .replay_with(&client, ReplayOptions::default().batch(BATCH))
            .await
    })?;
    rt.block_on(deliveries.settle(&lambda));
    let counts = deliveries.counts();
    let twice: u32 = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "replayer killed after {first} deliveries; the next replay delivered {}; {twice} delivered twice",
        report.delivered
    );
    check(report.delivered > 0 && first < LETTERS, || {
        "the first replay was not interrupted".into()
    })?;
    check(counts.len() == LETTERS, || {
        format!("{} of {LETTERS} delivered", counts.len())
    })?;
    check(twice as usize <= BATCH, || {
        format!("{twice} delivered twice (batch {BATCH})")
    })?;
    check(spooled_keys(&path)?.0.is_empty(), || "letters left".into())
}

/// Mounts a small tmpfs, or says why it cannot.
fn tmpfs_unavailable() -> Option<String> {
    let probe = std::env::temp_dir().join(format!("invoke-tmpfs-probe-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&probe);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&probe)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let reason = if mounted {
        let _ = Command::new("umount").arg(&probe).status();
        None
    } else {
        Some("cannot mount a tmpfs here (needs root and `mount`)".to_owned())
    };
    let _ = std::fs::remove_dir(&probe);
    reason
}

struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn disk_full() -> Res {
    let mnt = Tmpfs(std::env::temp_dir().join(format!("invoke-tmpfs-{}", std::process::id())));
    std::fs::create_dir_all(&mnt.0)?;
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt.0)
        .status()?;
    check(status.success(), || "mount failed".into())?;
    let path = mnt.0.join("spool");
    let rt = runtime();
    rt.block_on(async {
        let spool = FileSpool::open(&path)?;
        let lambda = LocalLambda::builder()
            .function("f", LocalFunction::echo())
            .start()
            .await?;
        lambda.always("f", Some(Fault::throttle(None, None)));
        let client = InvokeClient::builder()
            .endpoint_url(lambda.endpoint_url())
            .region(lambda.region())
            .credentials(lambda.credentials())
            .max_attempts(1)
            .dead_letter_sink(spool.clone())
            .build()?;
        let big = "x".repeat(6000);
        let mut stored = 0;
        let refused = loop {
            let key = format!("{stored}-{big}");
            let mut err = client.invoke(event(&key)).await.unwrap_err();
            if err.dead_lettered() {
                stored += 1;
                check(stored < 100, || "64 KiB took 100 letters of 6 KB".into())?;
                continue;
            }
            let refused = err.take_dead_letter_error().ok_or("no dead-letter error")?;
            check(key_of(&refused.letter().payload) == key, || {
                "another letter came back".into()
            })?;
            break refused;
        };
        eprintln!("disk full after {stored} letters: {refused}");
        check(refused.kind() == DeadLetterErrorKind::DiskFull, || {
            format!("{:?}", refused.kind())
        })?;
        let contents = spool.read().await?;
        check(
            contents.letters.len() == stored && contents.damaged_lines == 0,
            || {
                format!(
                    "{} letters, {} damaged lines after the refusal",
                    contents.letters.len(),
                    contents.damaged_lines
                )
            },
        )?;
        // Once there is room again, the letter handed back can be stored after all.
        std::fs::remove_file(mnt.0.join("spool"))?;
        spool.send(refused.into_letter()).await?;
        check(spool.read().await?.letters.len() == 1, || {
            "not stored".into()
        })?;
        Ok::<_, Failed>(())
    })
}
