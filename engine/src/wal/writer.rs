//! The writer thread (`wal-writer`): the only code that writes segment files or calls
//! fdatasync while the WAL runs. It turns the queue into batches (group commit):
//!
//! 1. block for the first message, then drain without blocking up to `batch_bytes_max`;
//! 2. frame every record of the batch into one buffer and write it with one `pwrite`
//!    (rolling to a new segment first when the next record would not fit; the old segment is
//!    fdatasync'ed before the new one receives data, so closed segments are always durable);
//! 3. fdatasync once (always in `sync` durability; in `batch` durability only when
//!    `durability_batch_ms` passed since the last one, or on `sync()` or close);
//! 4. publish `durable_lsn` = the last lsn of the batch.
//!
//! With `preallocate`, the next segment is zero-filled ahead of time on a `wal-prep` thread
//! (`segment::prepare_segment`) and adopted at the roll; when none is ready the roll falls back
//! to fallocate, so preparation never delays a write, and its failure only costs that speed-up.
//!
//! Any failed write or fdatasync poisons the WAL and ends the thread; the fsync is never
//! retried (after a failed fdatasync the kernel may have dropped the dirty pages, so a retry
//! that succeeds proves nothing).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::config::Durability;

use super::recovery::SegmentInfo;
use super::segment::{self, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use super::Shared;

/// What travels through the queue to the writer.
pub(crate) enum Message {
    Record {
        lsn: u64,
        payload: Vec<u8>,
    },
    /// Make everything written so far durable now, whatever the durability mode.
    Sync,
    /// Write and sync what is queued before this message, then stop.
    Close,
}

/// A failed step: what was being done, and the error.
pub(crate) struct Failure {
    pub context: String,
    pub error: io::Error,
}

impl Failure {
    fn new(context: impl Into<String>, error: io::Error) -> Self {
        Failure {
            context: context.into(),
            error,
        }
    }
}

struct ActiveSegment {
    file: File,
    path: PathBuf,
    first_lsn: u64,
    /// Where the next record goes (the end of the data, not of the preallocated file).
    write_offset: u64,
}

enum Received {
    Message(Message),
    /// Batch durability: the interval since the last fdatasync has passed.
    SyncDue,
    /// Every sender is gone; treated like `Close`.
    Disconnected,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Message>,
    active: Option<ActiveSegment>,
    batch: Vec<(u64, Vec<u8>)>,
    buffer: Vec<u8>,
    buffer_records: u64,
    buffer_last_lsn: u64,
    /// Last lsn handed to `pwrite`.
    written_lsn: u64,
    /// Last lsn covered by a completed fdatasync; published as `durable_lsn`.
    synced_lsn: u64,
    last_sync: Instant,
    /// The `wal-prep` thread zero-filling the next segment, while it runs or until joined.
    preparer: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, rx: Receiver<Message>, durable_lsn: u64) -> Self {
        Writer {
            shared,
            rx,
            active: None,
            batch: Vec::new(),
            buffer: Vec::new(),
            buffer_records: 0,
            buffer_last_lsn: durable_lsn,
            written_lsn: durable_lsn,
            synced_lsn: durable_lsn,
            last_sync: Instant::now(),
            preparer: None,
        }
    }

    /// The thread body. Returns when closed or poisoned; either way the final state is published
    /// so that no waiter is left hanging.
    pub(crate) fn run(mut self) {
        let outcome = self.run_until_closed();
        // A failure is published first, so no waiter waits on a preparation that is stuck.
        if let Err(failure) = &outcome {
            self.shared.poison(failure);
        }
        // Never leave a preparation writing into the directory after the WAL is gone.
        self.join_preparer();
        if outcome.is_ok() {
            self.shared.publish_closed();
        }
    }

    /// Waits for a running preparation; true when it finished well.
    fn join_preparer(&mut self) -> bool {
        let Some(handle) = self.preparer.take() else {
            return false;
        };
        match handle.join() {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "wal: preparing the next segment failed; using fallocate");
                false
            }
            Err(_) => {
                tracing::warn!("wal: the segment preparation thread panicked");
                false
            }
        }
    }

    /// Whether a prepared segment may be adopted now: no preparation is running (a `next.prep`
    /// left by an earlier run may exist), or one finished well. A running one is not waited for.
    fn preparation_ready(&mut self) -> bool {
        match &self.preparer {
            None => true,
            Some(handle) if handle.is_finished() => self.join_preparer(),
            Some(_) => false,
        }
    }

    /// Starts zero-filling the next segment unless a preparation is already running.
    fn start_preparing(&mut self) {
        if self.preparer.is_some() {
            return;
        }
        let dir = self.shared.config.dir.clone();
        let bytes = self.shared.config.segment_bytes_max;
        match std::thread::Builder::new()
            .name("wal-prep".to_string())
            .spawn(move || segment::prepare_segment(&dir, bytes))
        {
            Ok(handle) => self.preparer = Some(handle),
            Err(error) => tracing::warn!(%error, "wal: cannot start the segment preparation"),
        }
    }

    fn run_until_closed(&mut self) -> Result<(), Failure> {
        let config = &self.shared.config;
        let batch_bytes_max = config.batch_bytes_max;
        let durability = config.durability;
        let sync_interval = Duration::from_millis(config.durability_batch_ms);
        loop {
            let first = match self.receive(durability, sync_interval) {
                Received::Message(message) => message,
                Received::SyncDue => {
                    self.sync()?;
                    continue;
                }
                Received::Disconnected => return self.sync(),
            };
            let mut sync_requested = false;
            let mut close = false;
            let mut batch_bytes = 0usize;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Record { lsn, payload } => {
                        batch_bytes += RECORD_HEADER_BYTES + payload.len();
                        self.batch.push((lsn, payload));
                    }
                    Message::Sync => sync_requested = true,
                    Message::Close => {
                        close = true;
                        break;
                    }
                }
                if batch_bytes >= batch_bytes_max {
                    break;
                }
                next = self.rx.try_recv().ok();
            }
            if !self.batch.is_empty() {
                self.write_batch()?;
            }
            let sync_due = match durability {
                Durability::Sync => true,
                Durability::Batch => {
                    sync_requested || close || self.last_sync.elapsed() >= sync_interval
                }
            };
            if sync_due {
                self.sync()?;
            }
            if close {
                return Ok(());
            }
        }
    }

    fn receive(&self, durability: Durability, sync_interval: Duration) -> Received {
        let unsynced = self.written_lsn > self.synced_lsn;
        let result = if durability == Durability::Batch && unsynced {
            match self.rx.recv_deadline(self.last_sync + sync_interval) {
                Ok(message) => Ok(message),
                Err(RecvTimeoutError::Timeout) => return Received::SyncDue,
                Err(RecvTimeoutError::Disconnected) => Err(()),
            }
        } else {
            self.rx.recv().map_err(|_| ())
        };
        match result {
            Ok(message) => Received::Message(message),
            Err(()) => Received::Disconnected,
        }
    }

    fn write_batch(&mut self) -> Result<(), Failure> {
        let batch = std::mem::take(&mut self.batch);
        let result = self.write_records(&batch);
        self.batch = batch;
        self.batch.clear();
        result
    }

    fn write_records(&mut self, batch: &[(u64, Vec<u8>)]) -> Result<(), Failure> {
        let segment_bytes_max = self.shared.config.segment_bytes_max;
        for (lsn, payload) in batch {
            let framed_bytes = (RECORD_HEADER_BYTES + payload.len()) as u64;
            let needs_segment = match &self.active {
                None => true,
                Some(active) => {
                    let end = active.write_offset + self.buffer.len() as u64;
                    // A record larger than a whole segment goes alone into a fresh one.
                    end + framed_bytes > segment_bytes_max && end > SEGMENT_HEADER_BYTES as u64
                }
            };
            if needs_segment {
                if self.active.is_some() {
                    self.flush()?;
                    self.sync()?;
                    self.retire_active();
                }
                self.open_segment(*lsn)?;
            }
            segment::frame_record(&mut self.buffer, *lsn, self.synced_lsn, payload);
            self.buffer_records += 1;
            self.buffer_last_lsn = *lsn;
        }
        self.flush()
    }

    /// One pwrite of the framed buffer at the end of the active segment's data.
    fn flush(&mut self) -> Result<(), Failure> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        // Invariant: records are framed only after a segment was opened for them.
        let active = self
            .active
            .as_mut()
            .expect("an active segment to flush into");
        let failure = |error| Failure::new(format!("write to {}", active.path.display()), error);
        if let Some(injected) = crate::failpoints::injected(crate::failpoints::WAL_PWRITE) {
            if injected == crate::failpoints::Injected::Short {
                // A full disk: part of the batch reaches the file, then the write fails.
                let half = &self.buffer[..self.buffer.len() / 2];
                let _ = active.file.write_all_at(half, active.write_offset);
            }
            return Err(failure(injected.error(crate::failpoints::WAL_PWRITE)));
        }
        active
            .file
            .write_all_at(&self.buffer, active.write_offset)
            .map_err(failure)?;
        active.write_offset += self.buffer.len() as u64;
        let metrics = &self.shared.metrics;
        metrics.bytes.add(self.buffer.len() as u64);
        metrics.records.add(self.buffer_records);
        metrics.batches.increment();
        self.written_lsn = self.buffer_last_lsn;
        self.buffer.clear();
        self.buffer_records = 0;
        Ok(())
    }

    /// fdatasync of the active segment, then publish the new durable lsn.
    fn sync(&mut self) -> Result<(), Failure> {
        if self.written_lsn == self.synced_lsn {
            return Ok(());
        }
        // Invariant: written_lsn moves past synced_lsn only by a flush into the active segment,
        // and a segment is retired only right after a sync.
        let active = self
            .active
            .as_ref()
            .expect("unsynced records live in the active segment");
        let started = Instant::now();
        crate::failpoints::check(crate::failpoints::WAL_FDATASYNC)
            .and_then(|()| active.file.sync_data())
            .map_err(|error| {
                Failure::new(format!("fdatasync of {}", active.path.display()), error)
            })?;
        let metrics = &self.shared.metrics;
        metrics
            .fdatasync_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics
            .batch_records
            .observe((self.written_lsn - self.synced_lsn) as f64);
        metrics.fdatasyncs.increment();
        self.synced_lsn = self.written_lsn;
        self.last_sync = Instant::now();
        self.shared.publish_durable(self.synced_lsn);
        Ok(())
    }

    /// Hands the (synced) active segment over to the list `remove_covered` works on.
    fn retire_active(&mut self) {
        if let Some(active) = self.active.take() {
            debug_assert_eq!(
                self.written_lsn, self.synced_lsn,
                "retiring an unsynced segment"
            );
            self.shared.lock_segments().push_back(SegmentInfo {
                first_lsn: active.first_lsn,
                last_lsn: self.written_lsn,
                path: active.path,
            });
        }
    }

    fn open_segment(&mut self, first_lsn: u64) -> Result<(), Failure> {
        let preallocate = self.shared.config.preallocate;
        let prepared = preallocate && self.preparation_ready();
        let config = &self.shared.config;
        let adopted = if prepared {
            segment::adopt_prepared(&config.dir, first_lsn, config.segment_bytes_max).map_err(
                |error| {
                    Failure::new(
                        format!(
                            "adopting the prepared segment for {}",
                            segment::segment_path(&config.dir, first_lsn).display()
                        ),
                        error,
                    )
                },
            )?
        } else {
            None
        };
        if adopted.is_some() {
            self.shared.metrics.prepared_segments.increment();
        }
        let preallocate_bytes = config.preallocate.then_some(config.segment_bytes_max);
        let created = match adopted {
            Some(adopted) => Ok(adopted),
            None => segment::create_segment(&config.dir, first_lsn, preallocate_bytes),
        };
        let (file, path) = created.map_err(|error| {
            Failure::new(
                format!(
                    "creating segment {}",
                    segment::segment_path(&config.dir, first_lsn).display()
                ),
                error,
            )
        })?;
        tracing::debug!(path = %path.display(), "wal: opened a new segment");
        self.active = Some(ActiveSegment {
            file,
            path,
            first_lsn,
            write_offset: SEGMENT_HEADER_BYTES as u64,
        });
        if preallocate {
            self.start_preparing();
        }
        Ok(())
    }
}
