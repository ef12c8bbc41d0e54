//! Nothing lost for `Event`: when an asynchronous invocation finally fails, the request
//! goes to a [`DeadLetterSink`]. [`FileSpool`] is a durable one (append-only JSON lines,
//! flushed and fsync'd per record, readable after a crash mid-write), and
//! [`FileSpool::replay`] re-submits its events and removes those Lambda accepted.
//!
//! ```
//! use invoke_stack::dead_letter::FileSpool;
//! use invoke_stack::InvokeClient;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::env::temp_dir().join(format!("doc-spool-{}.jsonl", std::process::id()));
//! let spool = FileSpool::open(&path)?;
//! let client = InvokeClient::builder()
//!     .region("us-east-1")
//!     .dead_letter_sink(spool.clone())
//!     .build()?;
//! // Later (e.g. at start-up): client-side redelivery of what could not be delivered.
//! // let report = spool.replay(&client).await?;
//! # let _ = client; std::fs::remove_file(&path)?; Ok(()) }
//! ```

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{InvokeError, RunStatus};
use crate::model::{InvocationType, InvokeRequest};
use crate::InvokeClient;

/// An `Event` invocation that could not be delivered.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Unique id of this letter.
    pub id: String,
    /// The function, as the request named it.
    pub function_name: String,
    /// The `Qualifier` field, if any.
    pub qualifier: Option<String>,
    /// The payload (base64 in the spool).
    #[serde(with = "base64_bytes")]
    pub payload: Bytes,
    /// The base64 client context, if any.
    pub client_context: Option<String>,
    /// The tenant id, if any.
    pub tenant_id: Option<String>,
    /// The error's type (its code).
    pub error_type: String,
    /// The error's message.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// Whether the event may have been queued anyway (`NotRun`, `Unknown`).
    pub may_have_run: String,
    /// When the operation started (milliseconds since the Unix epoch).
    pub started_at_ms: u64,
    /// When it failed (milliseconds since the Unix epoch).
    pub failed_at_ms: u64,
}

impl fmt::Debug for DeadLetter {
    // The payload is sensitive: only its size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("id", &self.id)
            .field("function_name", &self.function_name)
            .field("qualifier", &self.qualifier)
            .field("payload_len", &self.payload.len())
            .field("error_type", &self.error_type)
            .field("attempts", &self.attempts)
            .field("may_have_run", &self.may_have_run)
            .finish_non_exhaustive()
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl DeadLetter {
    /// A letter for a failed request.
    pub fn new(req: &InvokeRequest, err: &InvokeError, started_at: SystemTime) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            function_name: req.function_name().to_string(),
            qualifier: req.qualifier().map(str::to_owned),
            payload: req.payload().clone(),
            client_context: req.client_context().map(str::to_owned),
            tenant_id: req.tenant_id().map(str::to_owned),
            error_type: err.type_name().to_owned(),
            error: err.to_string(),
            attempts: err.attempts(),
            may_have_run: match err.may_have_run() {
                RunStatus::NotRun => "NotRun",
                RunStatus::Ran => "Ran",
                RunStatus::Unknown => "Unknown",
            }
            .to_owned(),
            started_at_ms: millis(started_at),
            failed_at_ms: millis(SystemTime::now()),
        }
    }

    /// The `Event` request to deliver it again.
    pub fn to_request(&self) -> Result<InvokeRequest, crate::model::ValidationError> {
        let mut b = InvokeRequest::builder(self.function_name.as_str())
            .invocation_type(InvocationType::Event)
            .payload(self.payload.clone());
        if let Some(q) = &self.qualifier {
            b = b.qualifier(q);
        }
        if let Some(cc) = &self.client_context {
            b = b.client_context_base64(cc);
        }
        if let Some(t) = &self.tenant_id {
            b = b.tenant_id(t);
        }
        b.build()
    }
}

/// Where undeliverable `Event` invocations go.
pub trait DeadLetterSink: Send + Sync + fmt::Debug + 'static {
    /// Stores a letter durably, or says why it could not.
    fn send(&self, letter: &DeadLetter) -> io::Result<()>;
}

/// A durable, append-only spool file of JSON lines. Clones share one file and lock.
#[derive(Clone, Debug)]
pub struct FileSpool {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

/// What a spool holds.
#[derive(Debug, Clone, Default)]
pub struct SpoolContents {
    /// Every complete record.
    pub letters: Vec<DeadLetter>,
    /// Lines that are not complete records (a write cut by a crash).
    pub damaged_lines: usize,
}

/// The outcome of [`FileSpool::replay`].
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Events Lambda accepted (removed from the spool).
    pub delivered: usize,
    /// Events that failed again (kept), with the error.
    pub failed: Vec<(String, InvokeError)>,
    /// Records that could not even be turned into a request (kept).
    pub invalid: usize,
}

impl FileSpool {
    /// Opens (creating it if needed) a spool file.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_owned();
        OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            lock: Arc::default(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads every complete record; damaged lines are counted, not fatal.
    pub fn read(&self) -> io::Result<SpoolContents> {
        let _g = self.guard();
        self.read_locked()
    }

    fn read_locked(&self) -> io::Result<SpoolContents> {
        let mut text = String::new();
        File::open(&self.path)?.read_to_string(&mut text)?;
        let mut out = SpoolContents::default();
        for line in text.split_inclusive('\n') {
            // A last line without its newline was cut by a crash mid-write.
            let complete = line.ends_with('\n');
            match serde_json::from_str::<DeadLetter>(line.trim_end()) {
                Ok(l) if complete => out.letters.push(l),
                _ if line.trim().is_empty() => {}
                _ => out.damaged_lines += 1,
            }
        }
        Ok(out)
    }

    /// Re-submits every spooled event through `client` (once each) and removes those
    /// Lambda accepted. Events that fail again stay, without being spooled twice.
    pub async fn replay(&self, client: &InvokeClient) -> io::Result<ReplayReport> {
        let contents = self.read()?;
        let mut report = ReplayReport::default();
        let mut delivered = std::collections::HashSet::new();
        for letter in contents.letters {
            let Ok(req) = letter.to_request() else {
                report.invalid += 1;
                continue;
            };
            match client.invoke_without_dead_letter(req).await {
                Ok(_) => {
                    delivered.insert(letter.id);
                }
                Err(e) => report.failed.push((letter.id, e)),
            }
        }
        report.delivered = delivered.len();
        if !delivered.is_empty() {
            self.remove(&delivered)?;
        }
        Ok(report)
    }

    /// Rewrites the spool without the given letters: a new file, fsync'd, renamed over
    /// the old one. Letters appended meanwhile are kept (the file is read again under
    /// the lock).
    fn remove(&self, ids: &std::collections::HashSet<String>) -> io::Result<()> {
        let _g = self.guard();
        let mut text = String::new();
        File::open(&self.path)?.read_to_string(&mut text)?;
        let tmp = self.path.with_extension("rewrite");
        {
            let mut out = File::create(&tmp)?;
            for line in text.split_inclusive('\n') {
                let keep = match serde_json::from_str::<DeadLetter>(line.trim_end()) {
                    Ok(l) => !ids.contains(&l.id),
                    Err(_) => !line.trim().is_empty(),
                };
                if keep {
                    out.write_all(line.as_bytes())?;
                    if !line.ends_with('\n') {
                        out.write_all(b"\n")?;
                    }
                }
            }
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl DeadLetterSink for FileSpool {
    fn send(&self, letter: &DeadLetter) -> io::Result<()> {
        let mut line = serde_json::to_vec(letter)?;
        line.push(b'\n');
        let _g = self.guard();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        // After a crash mid-write the file may end inside a record: end that line, so
        // this record is not glued to the damaged one.
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        file.write_all(&line)?;
        file.flush()?;
        file.sync_data()
    }
}
