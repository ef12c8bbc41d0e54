//! [`FileSpool`]: a durable local spool with a group-committing writer thread.

use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::frame::{self, Record};
use super::{DeadLetter, DeadLetterError, DeadLetterErrorKind, DeadLetterSink, SinkFuture};

/// How the writer makes a batch durable: `File::sync_data` unless replaced (tests and
/// benchmarks inject a slow or failing disk through [`FileSpoolBuilder::sync_with`]).
pub type SyncFn = Arc<dyn Fn(&File) -> io::Result<()> + Send + Sync>;

/// Default size bound of a spool file.
const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default number of letters waiting for the writer before senders wait.
const DEFAULT_QUEUE: usize = 4096;
/// Default largest batch (letters per sync).
const DEFAULT_MAX_BATCH: usize = 1024;

/// A durable spool file of dead letters (see the [module documentation](super)).
///
/// Clones share one writer thread. The thread ends when the last clone is dropped, after
/// writing what it was given; a letter whose future resolved `Ok` is on disk.
#[derive(Clone)]
pub struct FileSpool {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    lock_path: PathBuf,
    replay_lock_path: PathBuf,
    tx: mpsc::Sender<Job>,
}

impl fmt::Debug for FileSpool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSpool")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// Builder of [`FileSpool`].
pub struct FileSpoolBuilder {
    path: PathBuf,
    max_bytes: u64,
    queue: usize,
    max_batch: usize,
    sync: SyncFn,
}

impl fmt::Debug for FileSpoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSpoolBuilder")
            .field("path", &self.path)
            .field("max_bytes", &self.max_bytes)
            .field("queue", &self.queue)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// What a spool holds.
#[derive(Debug, Clone, Default)]
pub struct SpoolContents {
    /// Every letter stored and not delivered by a replay, in the order written.
    pub letters: Vec<DeadLetter>,
    /// Lines that are not complete records (a write cut by a crash, a damaged block).
    pub damaged_lines: usize,
    /// Letters a replay delivered whose records are still in the file (until the file
    /// is compacted).
    pub delivered: usize,
}

/// A piece of work for the writer: what to append, and who waits for it.
struct Job {
    content: Content,
    reply: oneshot::Sender<Result<(), WriteError>>,
}

enum Content {
    /// A letter, encoded by the writer (off the runtime). Counts against the size bound.
    Letter(Box<DeadLetter>),
    /// Ready records (tombstones), which do not count against the size bound, or a full
    /// spool could never be drained.
    Records(Vec<u8>),
}

struct WriteError {
    kind: DeadLetterErrorKind,
    error: io::Error,
}

impl WriteError {
    fn of(e: &io::Error) -> Self {
        Self {
            kind: DeadLetterErrorKind::of_io(e),
            error: io::Error::new(e.kind(), e.to_string()),
        }
    }
}

/// A job's records, encoded, and whether they count against the size bound.
type Encoded = Result<(Vec<u8>, bool), WriteError>;

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// Options for files that hold payloads: created owner-only.
fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Opens (creating it `0600`) a lock file. Lock files are never replaced, so a lock on
/// one is a lock on the spool whatever happens to the data file.
pub(crate) fn private_lock_file(path: &Path) -> io::Result<File> {
    private_options()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
}

fn create_dir_private(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

impl FileSpoolBuilder {
    /// The size bound of the file, in bytes (default 1 GiB). A letter that would take
    /// the file over it is refused with [`DeadLetterErrorKind::Full`]. Delivered
    /// letters count until a replay compacts the file.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Letters that may wait for the writer (default 4,096); more senders wait, without
    /// blocking their thread, for room.
    pub fn queue(mut self, letters: usize) -> Self {
        self.queue = letters.max(1);
        self
    }

    /// The most letters committed by one sync (default 1,024). 1 is one sync per
    /// letter (for comparison only: it is much slower under load).
    pub fn max_batch(mut self, letters: usize) -> Self {
        self.max_batch = letters.max(1);
        self
    }

    /// Replaces how a batch is made durable (default [`File::sync_data`]): a seam for
    /// tests and benchmarks to simulate a slow or failing disk. It runs on the writer
    /// thread, never on the runtime.
    pub fn sync_with(
        mut self,
        sync: impl Fn(&File) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.sync = Arc::new(sync);
        self
    }

    /// Creates the file (`0600`) and missing directories (`0700`) if needed, and starts
    /// the writer thread. An existing file or directory keeps its mode. It does a little
    /// file I/O on the calling thread (and may wait for another writer's batch on the
    /// lock): call it at start-up, or in `spawn_blocking`.
    pub fn open(self) -> io::Result<FileSpool> {
        let path = self.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                create_dir_private(dir)?;
            }
        }
        let lock_path = with_suffix(&path, ".lock");
        let replay_lock_path = with_suffix(&path, ".replay.lock");
        let lock = private_lock_file(&lock_path)?;
        {
            lock.lock()?;
            let created = !path.exists();
            let file = private_options().create(true).append(true).open(&path)?;
            // A spool holds payloads, and replay invokes what it finds: one that others
            // can read or write (created by someone else, or before) is refused.
            check_private(&file, &path)?;
            if created {
                sync_dir(&path)?;
            }
            lock.unlock()?;
        }
        let (tx, rx) = mpsc::channel(self.queue);
        let writer = Writer {
            path: path.clone(),
            lock,
            rx,
            max_bytes: self.max_bytes,
            max_batch: self.max_batch,
            sync: self.sync,
        };
        std::thread::Builder::new()
            .name("dead-letter-spool".into())
            .spawn(move || writer.run())?;
        Ok(FileSpool {
            shared: Arc::new(Shared {
                path,
                lock_path,
                replay_lock_path,
                tx,
            }),
        })
    }
}

/// Refuses a spool file that others may read or write, or (on Linux) that another user
/// owns.
#[cfg(unix)]
fn check_private(file: &File, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = file.metadata()?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "dead-letter spool {} is open to other users (mode {mode:o}): it holds \
                 payloads and replay runs what it contains; `chmod 600` it if it is yours",
                path.display()
            ),
        ));
    }
    // The process's user is the owner of /proc/self.
    #[cfg(target_os = "linux")]
    if let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) {
        if meta.uid() != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "dead-letter spool {} belongs to another user (uid {})",
                    path.display(),
                    meta.uid()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_file: &File, _path: &Path) -> io::Result<()> {
    Ok(())
}

impl FileSpool {
    /// Opens (creating it if needed) a spool file with the default settings (see
    /// [`FileSpoolBuilder::open`]).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::builder(path).open()
    }

    /// A builder, to set the size bound, the queue, the batch size or the sync.
    pub fn builder(path: impl AsRef<Path>) -> FileSpoolBuilder {
        FileSpoolBuilder {
            path: path.as_ref().to_owned(),
            max_bytes: DEFAULT_MAX_BYTES,
            queue: DEFAULT_QUEUE,
            max_batch: DEFAULT_MAX_BATCH,
            sync: Arc::new(File::sync_data),
        }
    }

    /// The file's path. Next to it: `<path>.lock` (the append lock) and
    /// `<path>.replay.lock` (held by a running replay).
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub(crate) fn replay_lock_path(&self) -> &Path {
        &self.shared.replay_lock_path
    }

    /// Reads every stored letter not yet delivered (on a blocking thread); damaged
    /// lines are counted, not fatal.
    pub async fn read(&self) -> io::Result<SpoolContents> {
        let this = self.clone();
        run_blocking(move || this.read_blocking()).await
    }

    /// [`read`](Self::read), on the calling thread (which it blocks: not on a runtime).
    pub fn read_blocking(&self) -> io::Result<SpoolContents> {
        let lock = self.open_lock()?;
        lock.lock()?;
        let text = read_all(&self.shared.path);
        lock.unlock()?;
        Ok(parse_all(&text?))
    }

    fn open_lock(&self) -> io::Result<File> {
        private_lock_file(&self.shared.lock_path)
    }

    /// Appends records that need no room (tombstones), durably.
    pub(crate) async fn append_unbounded(&self, bytes: Vec<u8>) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        let closed = || io::Error::other("the spool's writer stopped");
        self.shared
            .tx
            .send(Job {
                content: Content::Records(bytes),
                reply,
            })
            .await
            .map_err(|_| closed())?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(w)) => Err(w.error),
            Err(_) => Err(closed()),
        }
    }

    /// Rewrites the file without delivered letters, tombstones and damaged lines (a
    /// new file, synced, renamed over the old one, under the append lock).
    pub async fn compact(&self) -> io::Result<()> {
        let this = self.clone();
        run_blocking(move || this.compact_blocking()).await
    }

    fn compact_blocking(&self) -> io::Result<()> {
        let lock = self.open_lock()?;
        lock.lock()?;
        let result = self.compact_locked();
        let _ = lock.unlock();
        result
    }

    fn compact_locked(&self) -> io::Result<()> {
        let path = &self.shared.path;
        let contents = parse_all(&read_all(path)?);
        if contents.delivered == 0 && contents.damaged_lines == 0 {
            return Ok(());
        }
        let tmp = with_suffix(path, ".compact");
        {
            let mut out = private_options()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&tmp)?;
            let mut buf = Vec::new();
            for l in &contents.letters {
                buf.extend_from_slice(&frame::letter(l)?);
            }
            out.write_all(&buf)?;
            out.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        sync_dir(path)
    }
}

/// Runs blocking file work off the runtime (inline when there is no runtime).
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h
            .spawn_blocking(f)
            .await
            .map_err(|e| io::Error::other(format!("spool task failed: {e}")))?,
        Err(_) => f(),
    }
}

fn read_all(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf)
}

pub(crate) fn parse_all(bytes: &[u8]) -> SpoolContents {
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut delivered = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut damaged_lines = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        match frame::parse(line) {
            Record::Letter(l) => {
                if seen.insert(l.id.clone()) {
                    letters.push(*l);
                }
            }
            Record::Delivered(id) => {
                delivered.insert(id);
            }
            Record::Damaged => damaged_lines += 1,
            Record::Blank => {}
        }
    }
    let before = letters.len();
    letters.retain(|l| !delivered.contains(&l.id));
    SpoolContents {
        delivered: before - letters.len(),
        letters,
        damaged_lines,
    }
}

impl DeadLetterSink for FileSpool {
    fn send(&self, letter: DeadLetter) -> SinkFuture {
        let tx = self.shared.tx.clone();
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            let closed = |letter| {
                DeadLetterError::new(
                    DeadLetterErrorKind::Closed,
                    letter,
                    "the spool's writer stopped",
                )
            };
            // The writer gets a copy to encode; this one comes back to the caller if the
            // letter cannot be stored, whatever happens to the writer.
            let job = Job {
                content: Content::Letter(Box::new(letter.clone())),
                reply,
            };
            if tx.send(job).await.is_err() {
                return Err(closed(letter));
            }
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(w)) => Err(DeadLetterError::new(w.kind, letter, w.error)),
                Err(_) => Err(closed(letter)),
            }
        })
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    lock: File,
    rx: mpsc::Receiver<Job>,
    max_bytes: u64,
    max_batch: usize,
    sync: SyncFn,
}

impl Writer {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        // Ends when every `FileSpool` clone (every sender) is gone and the queue is empty.
        while let Some(first) = self.rx.blocking_recv() {
            batch.push(first);
            // Group commit: everything queued meanwhile (while the last sync ran) goes
            // into this batch, under one sync.
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let encoded = batch
                .iter_mut()
                .map(|job| match &mut job.content {
                    Content::Letter(l) => frame::letter(l)
                        .map(|b| (b, true))
                        .map_err(|e| WriteError::of(&e.into())),
                    Content::Records(b) => Ok((std::mem::take(b), false)),
                })
                .collect();
            let results = self.commit(encoded);
            for (job, result) in batch.drain(..).zip(results) {
                // A sender that went away no longer waits; its letter is stored anyway.
                let _ = job.reply.send(result);
            }
        }
    }

    /// Appends the batch under the lock and syncs once. One result per job.
    fn commit(&self, batch: Vec<Encoded>) -> Vec<Result<(), WriteError>> {
        let n = batch.len();
        let fail_all = |e: io::Error| (0..n).map(|_| Err(WriteError::of(&e))).collect();
        if let Err(e) = self.lock.lock() {
            return fail_all(e);
        }
        let results = self.commit_locked(batch).unwrap_or_else(fail_all);
        let _ = self.lock.unlock();
        results
    }

    fn commit_locked(&self, batch: Vec<Encoded>) -> io::Result<Vec<Result<(), WriteError>>> {
        // Opened per batch: a compaction (under the same lock) may have replaced the file.
        // If it is gone (removed by hand), the new file's name must be made durable too.
        let created = !self.path.exists();
        let mut file = private_options()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        let start = file.metadata()?.len();
        let mut buf = Vec::new();
        // After a crash mid-write the file may end inside a record: end that line, so
        // the next record is not glued to the damaged one.
        if start > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(start - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                buf.push(b'\n');
            }
        }
        let mut size = start + buf.len() as u64;
        let mut results: Vec<Result<(), WriteError>> = Vec::with_capacity(batch.len());
        let mut accepted = Vec::new();
        for (i, job) in batch.into_iter().enumerate() {
            let (bytes, bounded) = match job {
                Ok(job) => job,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            let len = bytes.len() as u64;
            if bounded && size.saturating_add(len) > self.max_bytes {
                results.push(Err(WriteError {
                    kind: DeadLetterErrorKind::Full,
                    error: io::Error::new(
                        io::ErrorKind::StorageFull,
                        format!("the spool is at its size bound of {} bytes", self.max_bytes),
                    ),
                }));
            } else {
                buf.extend_from_slice(&bytes);
                size += len;
                results.push(Ok(()));
                accepted.push(i);
            }
        }
        if accepted.is_empty() {
            return Ok(results);
        }
        let written = file
            .write_all(&buf)
            .and_then(|()| (self.sync)(&file))
            .and_then(|()| {
                if created {
                    sync_dir(&self.path)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            // Nothing of this batch is acknowledged: take its bytes back out, so that
            // no letter refused to its caller turns up in a later read.
            let _ = file.set_len(start).and_then(|()| file.sync_data());
            for i in accepted {
                results[i] = Err(WriteError::of(&e));
            }
        }
        Ok(results)
    }
}
