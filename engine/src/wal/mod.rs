//! The write-ahead log. Owns the append-only segment files under `WalConfig::dir` and the one
//! thread that writes them. The runtime appends encoded event batches and replies to a request
//! only after the WAL reports the batch durable; the checkpointer calls `sync` and
//! `remove_covered`; `Engine::open` calls `Wal::open` to replay the log after the checkpoint.
//!
//! # Durability contract
//!
//! 1. **Append to batch.** `Wal::append` assigns the next LSN and queues the payload in one short
//!    critical section, so LSNs are dense and the queue is in LSN order. It never touches the
//!    disk; a full queue is `Error::Overloaded` and consumes no LSN.
//! 2. **Write.** The writer thread takes everything queued (up to `batch_bytes_max`), frames it
//!    and writes it with one `pwrite` to the end of the active segment. A new segment is created
//!    with its header, preallocated, fsync'ed, and **its directory fsync'ed** before any record
//!    goes into it; the previous segment is fdatasync'ed before that.
//! 3. **fdatasync.** One fdatasync per batch (`Durability::Sync`), or at most one per
//!    `durability_batch_ms` (`Durability::Batch`, plus on `sync()` and close).
//! 4. **Acknowledge.** Only after fdatasync returned does `durable_lsn` move to the batch's last
//!    LSN, waking `wait_durable`. A caller that replies after `wait_durable(lsn)` never reveals a
//!    write that a crash could lose. In batch mode the caller may reply before step 4 and accepts
//!    losing up to `durability_batch_ms` of writes.
//!
//! A failed write or fdatasync **poisons** the WAL: every waiter and every later append gets
//! `Error::Io`, and the fsync is never retried. Only a restart (recovery) clears it.
//!
//! # Format
//!
//! `dir/<first lsn, 20 digits>.log`: a 32-byte header (magic `SWYDWAL1`, `codec::FORMAT_VERSION`,
//! record framing, first lsn, CRC32C) followed by records
//! `[len u32][crc32c u32][lsn u64][synced lsn u64][payload]`, little endian, CRC over lsn,
//! synced lsn and payload. `len == 0` marks the end of the data (the preallocated zero
//! tail). Byte offsets are in the module doc of `wal/segment.rs`. A segment is rolled when the
//! next record would take it past `segment_bytes_max`; every open starts a new segment named by
//! the next LSN, so no segment is ever appended to after a restart. `dir/next.prep` (with
//! `preallocate`) is a whole zero-filled file waiting to become the next segment; it is not a
//! segment, and recovery ignores it (see `writer.rs`).
//!
//! # Torn tail vs corruption
//!
//! Recovery reads the segments in order and checks that LSNs run densely (`first record ==
//! header's first lsn == previous segment's last + 1`). It stops at the first zero length,
//! short record, CRC mismatch, wrong LSN or over-long record, then judges (details in
//! `recovery.rs`):
//!
//! - damage in a segment that a later segment follows (it was synced whole before the next was
//!   created), damage at or below the *durable floor* (the highest LSN checkpointed snapshots reflect),
//!   or damage followed by a valid record whose *synced lsn* (each record carries the writer's
//!   durable LSN at the time it was written) says the damaged one was already durable: the log
//!   is **corrupt**: `open` fails with `Error::Corruption` naming the segment file and the
//!   offset, and changes nothing on disk;
//! - otherwise it is a **torn tail**: everything from the damage on was written after the last
//!   fdatasync, so none of it was acknowledged, even where a power cut persisted a later page of
//!   the last batch and lost an earlier one. The segment is truncated there and a warning says
//!   how many bytes (and valid unsynced records) were dropped
//!   (`RecoveryReport::torn_bytes_dropped` counts from the cut to the last non-zero byte, not
//!   the preallocated zeros). A last segment whose header is short or all zeros (a crash while
//!   creating it) is removed the same way.
//!
//! A log that ends below the durable floor lost acknowledged records and is refused too, naming
//! both LSNs, unless the operator accepts the loss (`RecoveryFrom::accept_loss`). Either way the
//! next LSN is above the floor, so an LSN a snapshot reflects is never reused.
//!
//! Nothing is ever skipped silently. A gap between segments (or before the first one) is
//! corruption when it hides LSNs above the caller's `after_lsn`; below it the records are
//! covered by the checkpoint and the gap is legitimate. Segments written by older builds
//! (record framing 0, no synced lsn) are read; there, any valid record after damage makes it
//! corruption, as before.
//!
//! # Layout
//!
//! - `mod.rs`: the `Wal` handle (append, waits, sync, segment removal, metrics, close) and the
//!   state it shares with the writer.
//! - `segment.rs`: the byte format (names, header, record framing) and segment creation.
//! - `recovery.rs`: the start-up scan and the torn-tail/corruption decision.
//! - `writer.rs`: the `wal-writer` thread (group commit, rolling, poisoning).
//!
//! Architecture invariants: only the writer thread calls fdatasync on a live WAL (recovery syncs
//! the files it replayed before the writer starts). Appenders never wait on I/O. Segments other
//! than the active one are fully durable, which is what lets `remove_covered` delete them.
//! Deliberately absent: a directory lock (the engine holds one for the whole data directory).

mod recovery;
pub(crate) mod segment;
mod writer;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::watch;

use crate::config::WalConfig;
use crate::error::{Error, Result};
use crate::metrics::{Counter, Histogram, LATENCY_SECONDS_BOUNDS, SIZE_BOUNDS};

use recovery::SegmentInfo;
pub use segment::preallocate;
use writer::{Failure, Message, Writer};

/// What `Wal::open` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files kept (after removing torn ones).
    pub segments: usize,
    /// Records passed to `replay` (valid records with lsn > `after_lsn`).
    pub records: u64,
    /// The last valid lsn in the log, 0 if it holds no record.
    pub last_lsn: u64,
    /// Bytes cut off a torn tail: from the cut to the last non-zero byte (preallocated zeros are
    /// not counted).
    pub torn_bytes_dropped: u64,
}

/// Where recovery starts and what it must find (see `recovery.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryFrom {
    /// Records at or below this lsn are covered by the checkpoint: checked, not replayed.
    pub after_lsn: u64,
    /// Every lsn at or below this one was durable once (checkpointed snapshots reflect it): damage
    /// there, or a log that ends below it, is lost acknowledged data and refused.
    pub durable_floor: u64,
    /// Accept such a loss (an operator's explicit choice): judge damage as if there were no
    /// floor, log the loss loudly, and still start above the floor.
    pub accept_loss: bool,
}

/// Totals since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalStats {
    /// Writes (`pwrite` calls of a framed batch).
    pub batches: u64,
    pub records: u64,
    /// Bytes written, record headers included.
    pub bytes: u64,
    /// Completed fdatasyncs of segment data.
    pub fsyncs: u64,
    /// Segments that started from a zero-filled prepared file (the rest used fallocate or none).
    pub prepared_segments: u64,
}

/// Handle to the write-ahead log. Cheap to clone; the writer stops when the last handle is
/// dropped (or at `close`).
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    append: Mutex<AppendState>,
    /// Mirror of `AppendState::next_lsn` for lock-free reads.
    next_lsn: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct AppendState {
    next_lsn: u64,
    /// `None` once closed.
    tx: Option<Sender<Message>>,
}

/// State shared with the writer thread.
pub(crate) struct Shared {
    config: WalConfig,
    durable_lsn: AtomicU64,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    state: watch::Sender<DurableState>,
    /// Wakes `wait_durable_blocking`; held while checking and while notifying.
    waiters: Mutex<()>,
    waiters_changed: Condvar,
    /// Segments that are no longer written to, oldest first.
    segments: Mutex<VecDeque<SegmentInfo>>,
    metrics: WalMetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DurableState {
    durable_lsn: u64,
    poisoned: bool,
    closed: bool,
}

struct WalMetrics {
    batch_records: Histogram,
    fdatasync_seconds: Histogram,
    records: Counter,
    bytes: Counter,
    batches: Counter,
    fdatasyncs: Counter,
    prepared_segments: Counter,
}

impl Wal {
    /// Scans the segments in `config.dir` (created if missing) in LSN order and calls
    /// `replay(lsn, payload)` for every valid record with lsn > `after_lsn`, in order; an error
    /// from `replay` aborts `open` and is returned. Truncates a torn tail; refuses with
    /// `Error::Corruption` (segment path and offset) on anything else. The next LSN is
    /// `max(last lsn in the log, after_lsn) + 1`. Starts the writer thread; the first append
    /// goes to a new segment.
    pub fn open(
        config: WalConfig,
        after_lsn: u64,
        replay: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<(Wal, RecoveryReport)> {
        Wal::open_from(
            config,
            RecoveryFrom {
                after_lsn,
                ..RecoveryFrom::default()
            },
            replay,
        )
    }

    /// [`Wal::open`] with a durable floor (see [`RecoveryFrom`]). The next LSN is
    /// `max(last lsn in the log, after_lsn, durable_floor) + 1`, so no LSN that a snapshot may
    /// reflect is ever assigned again.
    pub fn open_from(
        config: WalConfig,
        from: RecoveryFrom,
        mut replay: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<(Wal, RecoveryReport)> {
        validate(&config)?;
        let dir_existed = config.dir.is_dir();
        std::fs::create_dir_all(&config.dir)
            .map_err(|error| Error::io(format!("wal: creating {}", config.dir.display()), error))?;
        if !dir_existed {
            if let Some(parent) = config.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent).map_err(|error| {
                    Error::io(format!("wal: syncing {}", parent.display()), error)
                })?;
            }
        }

        let recovered = recovery::recover(&config, from, &mut replay)?;
        let report = recovered.report;
        let next_lsn = report.last_lsn.max(from.after_lsn).max(from.durable_floor) + 1;
        let durable_lsn = next_lsn - 1;
        tracing::info!(
            dir = %config.dir.display(),
            segments = report.segments,
            records = report.records,
            last_lsn = report.last_lsn,
            torn_bytes_dropped = report.torn_bytes_dropped,
            next_lsn,
            "wal: recovered"
        );

        let (tx, rx) = crossbeam_channel::bounded(config.queue_depth_max);
        let (state, _) = watch::channel(DurableState {
            durable_lsn,
            poisoned: false,
            closed: false,
        });
        let shared = Arc::new(Shared {
            config,
            durable_lsn: AtomicU64::new(durable_lsn),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(None),
            state,
            waiters: Mutex::new(()),
            waiters_changed: Condvar::new(),
            segments: Mutex::new(recovered.segments.into()),
            metrics: WalMetrics {
                batch_records: Histogram::new(SIZE_BOUNDS),
                fdatasync_seconds: Histogram::new(LATENCY_SECONDS_BOUNDS),
                records: Counter::default(),
                bytes: Counter::default(),
                batches: Counter::default(),
                fdatasyncs: Counter::default(),
                prepared_segments: Counter::default(),
            },
        });
        let writer = Writer::new(Arc::clone(&shared), rx, durable_lsn);
        let handle = std::thread::Builder::new()
            .name("wal-writer".to_string())
            .spawn(move || writer.run())
            .map_err(|error| Error::io("wal: starting the writer thread", error))?;
        let wal = Wal {
            inner: Arc::new(Inner {
                shared,
                append: Mutex::new(AppendState {
                    next_lsn,
                    tx: Some(tx),
                }),
                next_lsn: AtomicU64::new(next_lsn),
                writer: Mutex::new(Some(handle)),
            }),
        };
        Ok((wal, report))
    }

    /// Assigns the next LSN and queues `payload` for the writer without waiting for I/O.
    /// `Error::Overloaded` when the queue is full (nothing queued, no LSN consumed); `Error::Io`
    /// once poisoned or closed; `Error::Invalid` for an empty payload or one over
    /// `record_bytes_max`.
    pub fn append(&self, payload: Vec<u8>) -> Result<u64> {
        let shared = &self.inner.shared;
        if payload.is_empty() {
            return Err(Error::invalid(
                "record_empty",
                "a WAL record cannot be empty",
            ));
        }
        if payload.len() > shared.config.record_bytes_max {
            return Err(Error::invalid(
                "record_too_large",
                format!(
                    "a WAL record of {} bytes exceeds record_bytes_max {}",
                    payload.len(),
                    shared.config.record_bytes_max
                ),
            ));
        }
        let mut state = lock(&self.inner.append);
        if shared.poisoned.load(Ordering::Acquire) {
            return Err(shared.poisoned_error());
        }
        let Some(tx) = state.tx.as_ref() else {
            return Err(closed_error());
        };
        let lsn = state.next_lsn;
        match tx.try_send(Message::Record { lsn, payload }) {
            Ok(()) => {
                state.next_lsn = lsn + 1;
                self.inner.next_lsn.store(lsn + 1, Ordering::Release);
                Ok(lsn)
            }
            Err(TrySendError::Full(_)) => Err(Error::Overloaded("wal queue")),
            // The writer only stops early when poisoned.
            Err(TrySendError::Disconnected(_)) => Err(shared.poisoned_error()),
        }
    }

    /// The LSN the next successful append will get.
    pub fn next_lsn(&self) -> u64 {
        self.inner.next_lsn.load(Ordering::Acquire)
    }

    /// Every lsn up to and including this one has been fdatasync'ed.
    pub fn durable_lsn(&self) -> u64 {
        self.inner.shared.durable_lsn.load(Ordering::Acquire)
    }

    /// Resolves once `durable_lsn() >= lsn`; `Error::Io` if the WAL is poisoned or closed before
    /// that. Always waits for a real fdatasync, in either durability mode.
    pub async fn wait_durable(&self, lsn: u64) -> Result<()> {
        if self.durable_lsn() >= lsn {
            return Ok(());
        }
        let shared = &self.inner.shared;
        let mut rx = shared.state.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            if let Some(result) = shared.outcome(state, lsn) {
                return result;
            }
            if rx.changed().await.is_err() {
                // Invariant: `Shared` owns the sender and outlives this borrow; kept as an error
                // rather than a panic all the same.
                return Err(closed_error());
            }
        }
    }

    /// `wait_durable` for threads outside an async runtime (the checkpointer).
    pub fn wait_durable_blocking(&self, lsn: u64) -> Result<()> {
        if self.durable_lsn() >= lsn {
            return Ok(());
        }
        let shared = &self.inner.shared;
        let mut guard = lock(&shared.waiters);
        loop {
            let state = *shared.state.borrow();
            if let Some(result) = shared.outcome(state, lsn) {
                return result;
            }
            guard = shared
                .waiters_changed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Blocks until everything appended before the call is durable, in either durability mode.
    pub fn sync(&self) -> Result<()> {
        let (target, tx) = {
            let state = lock(&self.inner.append);
            (state.next_lsn - 1, state.tx.clone())
        };
        if let Some(tx) = tx {
            // A blocking send: the writer drains the queue without waiting on anyone, so this
            // cannot deadlock. If the writer is gone, the wait below reports why.
            let _ = tx.send(Message::Sync);
        }
        self.wait_durable_blocking(target)
    }

    /// Deletes the oldest segments all of whose records have lsn <= `covered_lsn`, never the
    /// active one, then fsyncs the directory. Returns how many were deleted. A segment that
    /// cannot be removed stays listed (the next call tries again); what was removed before it
    /// is still made durable, and the error is returned.
    pub fn remove_covered(&self, covered_lsn: u64) -> Result<usize> {
        let shared = &self.inner.shared;
        let mut removed = 0;
        let mut failed = None;
        {
            let mut segments = shared.lock_segments();
            while let Some(oldest) = segments.front() {
                if oldest.last_lsn > covered_lsn {
                    break;
                }
                let removal = crate::failpoints::check(crate::failpoints::WAL_SEGMENT_REMOVE)
                    .and_then(|()| std::fs::remove_file(&oldest.path));
                if let Err(error) = removal {
                    failed = Some(Error::io(
                        format!("wal: removing {}", oldest.path.display()),
                        error,
                    ));
                    break;
                }
                tracing::debug!(
                    path = %oldest.path.display(),
                    first_lsn = oldest.first_lsn,
                    last_lsn = oldest.last_lsn,
                    "wal: removed a covered segment"
                );
                segments.pop_front();
                removed += 1;
            }
        }
        if removed > 0 {
            let dir = &shared.config.dir;
            segment::sync_dir(dir)
                .map_err(|error| Error::io(format!("wal: syncing {}", dir.display()), error))?;
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(removed),
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.inner.shared.poisoned.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> WalStats {
        let metrics = &self.inner.shared.metrics;
        WalStats {
            batches: metrics.batches.get(),
            records: metrics.records.get(),
            bytes: metrics.bytes.get(),
            fsyncs: metrics.fdatasyncs.get(),
            prepared_segments: metrics.prepared_segments.get(),
        }
    }

    /// Appends the WAL's metrics in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let metrics = &self.inner.shared.metrics;
        let queue_depth = lock(&self.inner.append)
            .tx
            .as_ref()
            .map_or(0, |tx| tx.len());
        let _ = writeln!(
            out,
            "# HELP switchyard_wal_batch_records Records made durable per fdatasync."
        );
        let _ = writeln!(out, "# TYPE switchyard_wal_batch_records histogram");
        metrics
            .batch_records
            .render(out, "switchyard_wal_batch_records", "");
        let _ = writeln!(
            out,
            "# HELP switchyard_wal_fdatasync_seconds Duration of one fdatasync of a segment."
        );
        let _ = writeln!(out, "# TYPE switchyard_wal_fdatasync_seconds histogram");
        metrics
            .fdatasync_seconds
            .render(out, "switchyard_wal_fdatasync_seconds", "");
        let counters = [
            ("records_total", "Records written.", metrics.records.get()),
            (
                "bytes_total",
                "Bytes written, record headers included.",
                metrics.bytes.get(),
            ),
            (
                "batches_total",
                "Batches written (one pwrite each).",
                metrics.batches.get(),
            ),
            (
                "fdatasyncs_total",
                "Completed fdatasyncs.",
                metrics.fdatasyncs.get(),
            ),
            (
                "prepared_segments_total",
                "Segments started from a zero-filled prepared file.",
                metrics.prepared_segments.get(),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP switchyard_wal_{name} {help}");
            let _ = writeln!(out, "# TYPE switchyard_wal_{name} counter");
            let _ = writeln!(out, "switchyard_wal_{name} {value}");
        }
        let gauges = [
            (
                "durable_lsn",
                "Every lsn up to this one is on disk.",
                self.durable_lsn(),
            ),
            ("next_lsn", "The lsn the next append gets.", self.next_lsn()),
            (
                "queue_depth",
                "Records and requests waiting for the writer.",
                queue_depth as u64,
            ),
            (
                "poisoned",
                "1 after a failed write or fdatasync: every write fails until restart.",
                u64::from(self.is_poisoned()),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP switchyard_wal_{name} {help}");
            let _ = writeln!(out, "# TYPE switchyard_wal_{name} gauge");
            let _ = writeln!(out, "switchyard_wal_{name} {value}");
        }
    }

    /// Stops accepting appends, lets the writer write and fdatasync everything queued, and joins
    /// it. Idempotent; `Error::Io` if the WAL is poisoned (not everything appended is durable).
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.shared.config.dir)
            .field("next_lsn", &self.next_lsn())
            .field("durable_lsn", &self.durable_lsn())
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

impl Inner {
    fn close(&self) -> Result<()> {
        let tx = lock(&self.append).tx.take();
        if let Some(tx) = tx {
            // Blocking: Close must not be refused by a full queue. Fails only if the writer has
            // already stopped (poisoned), which the check below reports.
            let _ = tx.send(Message::Close);
        }
        // Holding the lock while joining makes a concurrent `close` wait for the join too.
        let mut writer = lock(&self.writer);
        if let Some(handle) = writer.take() {
            if handle.join().is_err() {
                tracing::error!("wal: the writer thread panicked");
                self.shared.poison(&Failure {
                    context: "the writer thread".to_string(),
                    error: io::Error::other("panicked"),
                });
            }
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(self.shared.poisoned_error());
        }
        Ok(())
    }
}

/// Drop guard: the last handle stops the writer cleanly.
impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(%error, "wal: closed on drop");
        }
    }
}

impl Shared {
    /// `Some` once a waiter for `lsn` can stop waiting.
    fn outcome(&self, state: DurableState, lsn: u64) -> Option<Result<()>> {
        if state.durable_lsn >= lsn {
            Some(Ok(()))
        } else if state.poisoned {
            Some(Err(self.poisoned_error()))
        } else if state.closed {
            Some(Err(closed_error()))
        } else {
            None
        }
    }

    fn publish(&self, update: impl FnOnce(&mut DurableState)) {
        self.state.send_modify(update);
        let _guard = lock(&self.waiters);
        self.waiters_changed.notify_all();
    }

    pub(crate) fn publish_durable(&self, lsn: u64) {
        self.durable_lsn.store(lsn, Ordering::Release);
        self.publish(|state| state.durable_lsn = lsn);
    }

    pub(crate) fn publish_closed(&self) {
        self.publish(|state| state.closed = true);
    }

    /// Fail-stop after a failed write or fdatasync.
    pub(crate) fn poison(&self, failure: &Failure) {
        let reason = format!("{} failed: {}", failure.context, failure.error);
        tracing::error!(
            dir = %self.config.dir.display(),
            "wal: poisoned, every later write fails until restart: {reason}"
        );
        lock(&self.poison_reason).get_or_insert(reason);
        self.poisoned.store(true, Ordering::Release);
        self.publish(|state| state.poisoned = true);
    }

    fn poisoned_error(&self) -> Error {
        let reason = lock(&self.poison_reason)
            .clone()
            .unwrap_or_else(|| "an earlier write failed".to_string());
        Error::io(
            "wal",
            io::Error::other(format!(
                "the WAL is poisoned ({reason}); restart to recover"
            )),
        )
    }

    pub(crate) fn lock_segments(&self) -> MutexGuard<'_, VecDeque<SegmentInfo>> {
        lock(&self.segments)
    }
}

fn closed_error() -> Error {
    Error::io("wal", io::Error::other("the WAL is closed"))
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical section
/// here is a few plain assignments).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn validate(config: &WalConfig) -> Result<()> {
    let invalid = |message: String| Err(Error::invalid("wal_config_invalid", message));
    if config.queue_depth_max == 0 {
        return invalid("wal queue_depth_max must be at least 1".to_string());
    }
    if config.batch_bytes_max == 0 {
        return invalid("wal batch_bytes_max must be at least 1".to_string());
    }
    if config.record_bytes_max == 0 || config.record_bytes_max > u32::MAX as usize {
        return invalid(format!(
            "wal record_bytes_max must be in 1..={}, is {}",
            u32::MAX,
            config.record_bytes_max
        ));
    }
    if config.segment_bytes_max <= segment::SEGMENT_HEADER_BYTES as u64 {
        return invalid(format!(
            "wal segment_bytes_max must exceed the {}-byte segment header, is {}",
            segment::SEGMENT_HEADER_BYTES,
            config.segment_bytes_max
        ));
    }
    Ok(())
}
