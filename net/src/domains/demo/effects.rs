//! The demo domain's effect handlers: what runs an effect it asked for once it is durable
//! (`switchyard_engine::runtime::outbox`), on the engine's worker threads. The engine does no
//! network I/O; these do, through the adapters' HTTP client on a small runtime of their own
//! (the worker threads block on it, never an actor thread).
//!
//! - `demo.notify`: POSTs `{"counter", "value", "seq"}` to the notice's URL with an
//!   `Idempotency-Key` header (the effect's key, the same on every attempt); a 2xx completes it,
//!   anything else is retried with exponential backoff, and after `DEMO_NOTIFY_ATTEMPTS_MAX`
//!   attempts it is given up (logged).

use std::sync::Arc;
use std::time::Duration;

use switchyard_engine::demo::{DemoNotice, NOTIFY_EFFECT};
use switchyard_engine::runtime::effects::{EffectContext, EffectHandler, EffectOutcome, EffectPool};
use switchyard_engine::runtime::outbox::Effect;

use crate::adapters::AdapterClient;
use crate::error::Error;

/// Worker threads of the `demo.notify` pool (attempts at once).
const DEMO_NOTIFY_WORKERS: usize = 4;
/// Notices waiting for a worker.
const DEMO_NOTIFY_QUEUE_DEPTH_MAX: usize = 1024;
/// One attempt gives up waiting after this long.
const DEMO_NOTIFY_TIMEOUT_MS: u64 = 5_000;
/// Attempts before a notice is given up.
const DEMO_NOTIFY_ATTEMPTS_MAX: u32 = 10;
/// First retry delay; doubles per attempt up to `DEMO_NOTIFY_RETRY_MAX_MS`.
const DEMO_NOTIFY_RETRY_BASE_MS: u64 = 200;
const DEMO_NOTIFY_RETRY_MAX_MS: u64 = 30_000;

/// The effect pools of the demo domain (its `HttpDomain::effects`).
pub fn pools(_: &switchyard_engine::EngineConfig) -> Result<Vec<EffectPool>, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("effects-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the effects' I/O runtime", e))?;
    let runtime = Arc::new(runtime);
    let client = {
        let _entered = runtime.enter();
        AdapterClient::new(None)?
    };
    Ok(vec![EffectPool {
        kind: NOTIFY_EFFECT.to_string(),
        handler: Arc::new(DemoNotify { runtime, client }),
        workers: DEMO_NOTIFY_WORKERS,
        queue_depth_max: DEMO_NOTIFY_QUEUE_DEPTH_MAX,
    }])
}

struct DemoNotify {
    runtime: Arc<tokio::runtime::Runtime>,
    client: AdapterClient,
}

impl EffectHandler for DemoNotify {
    fn run(&self, effect: &Effect, attempts: u32, _: &EffectContext<'_>) -> EffectOutcome {
        let notice = match DemoNotice::decode(&effect.payload) {
            Ok(notice) => notice,
            Err(error) => {
                return EffectOutcome::GiveUp {
                    error: format!("unreadable notice: {error}"),
                }
            }
        };
        let body = serde_json::json!({
            "counter": notice.counter,
            "value": notice.value,
            "seq": notice.seq,
        })
        .to_string()
        .into_bytes();
        let sent = self.runtime.block_on(self.client.post_json(
            &notice.url,
            &[("idempotency-key", &effect.key)],
            body,
            Duration::from_millis(DEMO_NOTIFY_TIMEOUT_MS),
        ));
        let error = match sent {
            Ok(status) if status.is_success() => return EffectOutcome::Done,
            Ok(status) => format!("answered {status}"),
            Err(failure) => failure.0,
        };
        if attempts + 1 >= DEMO_NOTIFY_ATTEMPTS_MAX {
            return EffectOutcome::GiveUp { error };
        }
        let after_ms = DEMO_NOTIFY_RETRY_BASE_MS
            .saturating_mul(1 << attempts.min(20))
            .min(DEMO_NOTIFY_RETRY_MAX_MS);
        EffectOutcome::Retry { after_ms, error }
    }
}
