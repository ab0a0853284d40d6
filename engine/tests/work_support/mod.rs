//! Shared set-up of the work tests: an engine on a temp dir with a `ManualClock` (time moves
//! only when a test says so; due lease timers run through `Engine::fire_due_timers`, and the
//! background timer thread is slowed to once an hour of wall time so it never races a test),
//! plus short helpers for registering, leasing and reporting.

#![allow(dead_code)]

use std::sync::Arc;

use switchyard_engine::work::{
    BucketView, ItemResult, Outcome, Registered, Registration, Report, ReportOutcome, WorkConfig,
};
use switchyard_engine::{Engine, EngineConfig, Error, ManualClock};

/// 2026-11-22T14:00:00Z.
pub const START_MS: u64 = 1_795_356_000_000;
/// `WorkConfig::for_tests().lease_seconds`, in ms.
pub const LEASE_MS: u64 = 60_000;

pub struct Harness {
    // Fields drop in declaration order: the engine must close before its directory is deleted.
    engine: Option<Engine>,
    pub clock: ManualClock,
    pub config: EngineConfig,
    pub dir: tempfile::TempDir,
}

/// A registered client: its id and token.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: u64,
    pub token: String,
}

impl From<Registered> for Client {
    fn from(registered: Registered) -> Self {
        Client {
            id: registered.client_id,
            token: registered.token,
        }
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(|_| {})
    }

    /// An engine whose work config is `WorkConfig::for_tests()` changed by `edit`.
    pub fn with(edit: impl FnOnce(&mut WorkConfig)) -> Harness {
        Harness::configured(|config| edit(config.section_mut::<WorkConfig>()))
    }

    /// An engine whose whole config (test defaults) is changed by `edit`.
    pub fn configured(edit: impl FnOnce(&mut EngineConfig)) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = EngineConfig::for_tests(dir.path());
        config.timer_tick_ms = 3_600_000;
        *config.section_mut::<WorkConfig>() = WorkConfig::for_tests();
        edit(&mut config);
        let clock = ManualClock::new(START_MS);
        let engine =
            Engine::open_with_clock(config.clone(), Arc::new(clock.clone())).expect("engine opens");
        Harness {
            dir,
            clock,
            config,
            engine: Some(engine),
        }
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine open")
    }

    pub fn work(&self) -> switchyard_engine::work::Work<'_> {
        self.engine().work()
    }

    pub fn now_ms(&self) -> u64 {
        use switchyard_engine::Clock;
        self.clock.now_ms()
    }

    /// Drops the engine without shutdown (no final checkpoint) and opens it again on the same
    /// directory and clock: what a crash and restart leave.
    pub fn restart(&mut self) {
        drop(self.engine.take());
        self.engine = Some(
            Engine::open_with_clock(self.config.clone(), Arc::new(self.clock.clone()))
                .expect("engine reopens"),
        );
    }

    /// Closes the engine cleanly and keeps it closed (for time passing while it is down).
    pub fn stop(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.shutdown().expect("clean shutdown");
        }
    }

    /// Opens the engine again after `stop`.
    pub fn start(&mut self) {
        assert!(self.engine.is_none());
        self.engine = Some(
            Engine::open_with_clock(self.config.clone(), Arc::new(self.clock.clone()))
                .expect("engine reopens"),
        );
    }

    /// Moves the clock on and runs every timer now due. Returns how many fired.
    pub async fn advance(&self, ms: u64) -> usize {
        self.clock.advance_ms(ms);
        self.engine().fire_due_timers().await
    }

    pub async fn client(&self, label: &str) -> Client {
        self.work()
            .register(registration(label), None)
            .await
            .expect("registration")
            .into()
    }

    pub async fn add(&self, keys: &[&str]) {
        let items = keys
            .iter()
            .map(|key| switchyard_engine::work::NewItem {
                key: (*key).into(),
                priority: None,
            })
            .collect();
        self.work().add_items(items).await.expect("items added");
    }

    /// Adds `count` items named `prefix-0000`...
    pub async fn add_numbered(&self, prefix: &str, count: usize) -> Vec<String> {
        let keys: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:04}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        for chunk in refs.chunks(5000) {
            self.add(chunk).await;
        }
        keys
    }

    /// Leases buckets, then reads each one: a lease returns once durable, but each bucket
    /// applies its grant (and registers its deadline) asynchronously; the read is queued after
    /// the grant, so a test that advances the clock next sees the timer.
    pub async fn lease(&self, client: &Client, max_buckets: i64) -> Vec<BucketView> {
        let buckets = self
            .work()
            .lease(&client.token, max_buckets)
            .await
            .expect("lease");
        for bucket in &buckets {
            let info = self.work().bucket(bucket.id).await.expect("leased bucket");
            assert_eq!(info.holder, Some(client.id));
            assert_eq!(info.lease_expires_at_ms, Some(bucket.lease_expires_at_ms));
        }
        buckets
    }

    pub async fn lease_one(&self, client: &Client) -> BucketView {
        let mut buckets = self.lease(client, 1).await;
        assert_eq!(buckets.len(), 1, "one bucket leased");
        buckets.remove(0)
    }

    /// Reports `outcome` for `keys` of bucket `bucket_id`.
    pub async fn report(
        &self,
        client: &Client,
        bucket_id: u64,
        keys: &[String],
    ) -> Result<ReportOutcome, Error> {
        self.work()
            .report(&client.token, bucket_id, report_of(keys, Outcome::Yes))
            .await
    }

    pub async fn report_all(&self, client: &Client, bucket: &BucketView) -> ReportOutcome {
        self.report(client, bucket.id, &bucket.items)
            .await
            .expect("report")
    }
}

/// The registration of the client called `label`: its `external_id` is a secret derived from
/// the label (at least 16 characters, as the engine requires).
pub fn registration(label: &str) -> Registration {
    Registration {
        screen_name: format!("screen {label}"),
        external_id: secret(label),
    }
}

/// The `external_id` of the client called `label`.
pub fn secret(label: &str) -> String {
    format!("test-secret-of-{label}")
}

pub fn report_of(keys: &[String], outcome: Outcome) -> Report {
    Report {
        results: keys
            .iter()
            .map(|key| ItemResult {
                key: key.clone(),
                outcome,
                detail: None,
            })
            .collect(),
        discovered: Vec::new(),
        epoch: None,
    }
}

/// The API.md code of an expected failure.
pub fn code(error: Error) -> &'static str {
    match error {
        Error::Invalid { code, .. }
        | Error::Conflict { code, .. }
        | Error::Forbidden { code, .. }
        | Error::Unprocessable { code, .. }
        | Error::Unauthenticated { code, .. } => code,
        Error::NotFound(_) => "not_found",
        Error::RateLimited { .. } => "rate_limited",
        other => panic!("unexpected error {other:?}"),
    }
}

/// The field named by an `Invalid` error.
pub fn field(error: Error) -> Option<String> {
    match error {
        Error::Invalid { field, .. } => field,
        other => panic!("expected an invalid-input error, got {other:?}"),
    }
}

/// Runs futures concurrently on the current task and collects their outputs in order.
pub async fn join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut outputs: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (index, future) in set.iter_mut().enumerate() {
            if outputs[index].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => outputs[index] = Some(output),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("ready"))
        .collect()
}

/// Polls `future` at most `polls` times (yielding between polls so actors make progress) and
/// drops it unless it finished: a caller that goes away before the reply.
pub async fn abandon_after_polls<F: std::future::Future>(future: F, polls: usize) {
    let mut future = Box::pin(future);
    for _ in 0..polls {
        let ready =
            std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx).is_ready()))
                .await;
        if ready {
            return;
        }
        tokio::task::yield_now().await;
    }
}
