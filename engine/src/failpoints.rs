//! Named failpoints on every step of the write path, so tests can fail one exact step and check
//! that nothing acknowledged is lost and that the engine either keeps working or refuses loudly.
//!
//! Compiled in only with the crate feature `failpoints` (the crate's own dev-dependency turns it
//! on for `cargo test`; release builds have none: every check below is then an inlined `Ok`).
//! Backed by the `fail` crate: a point is configured with an action string such as
//! `return(eio)`, `1*return(enospc)` (once), `50%return(eio)`, `off`; the argument of `return`
//! picks the error: `eio` (the default), `enospc`, or `short` (for [`WAL_PWRITE`]: half the
//! buffer reaches the file, then the write fails with ENOSPC, as a full disk does).
//!
//! Points are process-wide. Tests that arm them hold a [`Scenario`] (one at a time per process)
//! and live in test binaries of their own, so no other test's engine meets an armed point. A
//! binary built with the feature reads `FAILPOINTS=name=action;...` at start-up
//! ([`from_env`]), which lets tests arm points in the real server.

use std::io;

/// The `pwrite` of a batch into the active segment.
pub const WAL_PWRITE: &str = "wal.pwrite";
/// The fdatasync of a batch.
pub const WAL_FDATASYNC: &str = "wal.fdatasync";
/// Creating a new segment file (header, preallocation, fsync).
pub const WAL_SEGMENT_CREATE: &str = "wal.segment_create";
/// Zero-filling the next segment on the `wal-prep` thread.
pub const WAL_PREPARE: &str = "wal.prepare";
/// Writing the header into the prepared segment and syncing it.
pub const WAL_ADOPT: &str = "wal.adopt";
/// Renaming the prepared segment into place.
pub const WAL_RENAME: &str = "wal.rename";
/// The fsync of the WAL directory (after a create, rename or removal).
pub const WAL_DIR_FSYNC: &str = "wal.dir_fsync";
/// Removing a segment the checkpoint covers.
pub const WAL_SEGMENT_REMOVE: &str = "wal.segment_remove";
/// Applying a checkpoint pass's batch to the checkpoint store (its write transaction).
pub const STORE_APPLY: &str = "store.apply";
/// Flushing the checkpoint store after a pass (or after the meta record).
pub const STORE_FLUSH: &str = "store.flush";
/// Writing the meta record (coverage LSN).
pub const STORE_META_WRITE: &str = "store.meta_write";
/// Reading an actor's snapshot when it is activated.
pub const STORE_READ: &str = "store.read";
/// The checkpoint `Engine::open` takes of what it replayed.
pub const OPEN_CHECKPOINT: &str = "engine.open_checkpoint";

/// Every point, for table tests.
pub const ALL: &[&str] = &[
    WAL_PWRITE,
    WAL_FDATASYNC,
    WAL_SEGMENT_CREATE,
    WAL_PREPARE,
    WAL_ADOPT,
    WAL_RENAME,
    WAL_DIR_FSYNC,
    WAL_SEGMENT_REMOVE,
    STORE_APPLY,
    STORE_FLUSH,
    STORE_META_WRITE,
    STORE_READ,
    OPEN_CHECKPOINT,
];

/// What an armed point asks of the step it guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) enum Injected {
    /// Fail with this error.
    Error(i32),
    /// Write part of the data, then fail with ENOSPC.
    Short,
}

impl Injected {
    pub(crate) fn error(self, name: &str) -> io::Error {
        let code = match self {
            Injected::Error(code) => code,
            Injected::Short => libc::ENOSPC,
        };
        let os = io::Error::from_raw_os_error(code);
        io::Error::new(os.kind(), format!("failpoint {name}: {os}"))
    }
}

#[cfg(feature = "failpoints")]
fn parse(argument: Option<String>) -> Injected {
    match argument.as_deref().map(str::trim) {
        Some("enospc") => Injected::Error(libc::ENOSPC),
        Some("short") => Injected::Short,
        Some("eacces") => Injected::Error(libc::EACCES),
        _ => Injected::Error(libc::EIO),
    }
}

/// Whether point `name` fires now, and how.
#[cfg(feature = "failpoints")]
pub(crate) fn injected(name: &str) -> Option<Injected> {
    fail::eval(name, parse)
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn injected(_name: &str) -> Option<Injected> {
    None
}

/// `Err` when point `name` fires: the step it guards fails with that error.
#[inline]
pub(crate) fn check(name: &str) -> io::Result<()> {
    match injected(name) {
        Some(injected) => Err(injected.error(name)),
        None => Ok(()),
    }
}

/// Arms point `name` with a `fail` action string; `Err` names what is wrong with it.
#[cfg(feature = "failpoints")]
pub fn set(name: &str, actions: &str) -> Result<(), String> {
    assert!(ALL.contains(&name), "unknown failpoint {name:?}");
    fail::cfg(name, actions)
}

/// Disarms point `name`.
#[cfg(feature = "failpoints")]
pub fn clear(name: &str) {
    fail::remove(name)
}

/// Holds the process's failpoints for one test: arms what `FAILPOINTS` names, and disarms every
/// point when dropped. One at a time per process (a second `Scenario::new` waits).
#[cfg(feature = "failpoints")]
pub struct Scenario(#[allow(dead_code)] fail::FailScenario<'static>);

#[cfg(feature = "failpoints")]
impl Scenario {
    pub fn new() -> Scenario {
        Scenario(fail::FailScenario::setup())
    }
}

#[cfg(feature = "failpoints")]
impl Default for Scenario {
    fn default() -> Self {
        Scenario::new()
    }
}

/// Whether this build has failpoints (a test build).
pub const fn compiled() -> bool {
    cfg!(feature = "failpoints")
}

/// Arms the points named in `FAILPOINTS` for the life of the process (a server binary built
/// with the feature); a no-op without it.
pub fn from_env() {
    #[cfg(feature = "failpoints")]
    if std::env::var_os("FAILPOINTS").is_some() {
        std::mem::forget(fail::FailScenario::setup());
        tracing::warn!("failpoints armed from FAILPOINTS (a test build)");
    }
}
