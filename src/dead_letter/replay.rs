//! [`FileSpool::replay`]: honest redelivery of spooled letters.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use super::frame;
use super::spool::FileSpool;
use crate::error::InvokeError;
use crate::{InvokeClient, InvokeFuture};

/// Default letters re-submitted at once (one batch).
const DEFAULT_BATCH: usize = 16;

/// Options of [`FileSpool::replay_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Also replay letters whose first try may have reached Lambda (`may_have_run` not
    /// `NotRun`): such an event may then be run twice. Default false: they are left in
    /// the spool and counted in [`ReplayReport::left_may_have_run`].
    pub include_may_have_run: bool,
    /// Letters re-submitted at once (default 16). Deliveries are recorded after each
    /// batch: a crash mid-replay re-delivers at most one batch.
    pub batch: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            include_may_have_run: false,
            batch: DEFAULT_BATCH,
        }
    }
}

impl ReplayOptions {
    /// Sets [`include_may_have_run`](Self::include_may_have_run).
    pub fn include_may_have_run(mut self, yes: bool) -> Self {
        self.include_may_have_run = yes;
        self
    }

    /// Sets [`batch`](Self::batch) (at least 1).
    pub fn batch(mut self, letters: usize) -> Self {
        self.batch = letters.max(1);
        self
    }
}

/// The outcome of [`FileSpool::replay`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Events Lambda accepted (recorded as delivered, then compacted out of the spool).
    pub delivered: usize,
    /// Letters left in the spool, not re-submitted, because their first try may have
    /// reached Lambda (see [`ReplayOptions::include_may_have_run`]).
    pub left_may_have_run: usize,
    /// Events that failed again (kept, not spooled twice), with the letter id and error.
    pub failed: Vec<(String, InvokeError)>,
    /// Records that could not even be turned into a request (kept).
    pub invalid: usize,
    /// Damaged lines met (a write cut by a crash); dropped by the compaction.
    pub damaged_lines: usize,
}

impl FileSpool {
    /// [`replay_with`](Self::replay_with) with the default options: letters whose first
    /// try may have reached Lambda are left in the spool.
    pub async fn replay(&self, client: &InvokeClient) -> io::Result<ReplayReport> {
        self.replay_with(client, ReplayOptions::default()).await
    }

    /// Re-submits the spooled letters through `client`'s stack (without its dead-letter
    /// sink: a letter that fails again stays as it is). Each batch's deliveries are made
    /// durable before the next batch starts; at the end the file is compacted.
    ///
    /// One replay of a spool runs at a time, across processes: while another holds
    /// `<path>.replay.lock`, this fails at once with [`io::ErrorKind::WouldBlock`].
    /// Letters appended while a replay runs are kept for the next one.
    pub async fn replay_with(
        &self,
        client: &InvokeClient,
        options: ReplayOptions,
    ) -> io::Result<ReplayReport> {
        let replay_lock = super::spool::private_lock_file(self.replay_lock_path())?;
        match replay_lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another replay of this spool is in progress",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let contents = self.read().await?;
        let mut report = ReplayReport {
            damaged_lines: contents.damaged_lines,
            ..ReplayReport::default()
        };
        let mut todo = Vec::new();
        for letter in contents.letters {
            if !options.include_may_have_run && !letter.certainly_not_run() {
                report.left_may_have_run += 1;
                continue;
            }
            match letter.to_request() {
                Ok(req) => todo.push((letter.id, req)),
                Err(_) => report.invalid += 1,
            }
        }
        for chunk in todo.chunks(options.batch.max(1)) {
            let started = std::time::SystemTime::now();
            let futures = chunk
                .iter()
                .map(|(_, req)| Box::pin(client.invoke_without_dead_letter(req.clone())))
                .collect();
            let results = join_all(futures).await;
            let mut tombstones = Vec::new();
            let mut delivered = 0;
            for ((id, req), result) in chunk.iter().zip(results) {
                match result {
                    Ok(_) => {
                        tombstones.extend_from_slice(&frame::delivered(id));
                        delivered += 1;
                    }
                    Err(e) => {
                        // A failure after which the function may have run: the letter is
                        // rewritten as such (the old one delivered, a new one saying "may
                        // have run"), so a default replay does not send it again.
                        if e.may_have_run() != crate::error::RunStatus::NotRun {
                            let again = super::DeadLetter::new(req, &e, started);
                            if let Ok(line) = frame::letter(&again) {
                                tombstones.extend_from_slice(&frame::delivered(id));
                                tombstones.extend_from_slice(&line);
                            }
                        }
                        report.failed.push((id.clone(), e));
                    }
                }
            }
            if !tombstones.is_empty() {
                self.append_unbounded(tombstones).await?;
                report.delivered += delivered;
            }
        }
        if report.delivered > 0 || report.damaged_lines > 0 {
            self.compact().await?;
        }
        drop(replay_lock);
        Ok(report)
    }
}

/// Polls every future to completion, concurrently, on this task.
async fn join_all(
    mut futures: Vec<Pin<Box<InvokeFuture>>>,
) -> Vec<Result<crate::InvokeResponse, InvokeError>> {
    let mut results: Vec<Option<Result<crate::InvokeResponse, InvokeError>>> =
        futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, slot) in futures.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(r) => *slot = Some(r),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}
