//! Dispatch and notifications (ORIGINALS.md §3, "VOLTANS"): a catalog of programs, event types,
//! groups and contacts; dispatches that notify every contact of an event type's groups on each
//! of its channels, at a start time or when a market signal holds; delivery through the
//! [`courier::Courier`] the server gives, with retries, dead letters and failover.

pub mod config;
pub mod courier;

use crate::error::Result;
use crate::runtime::{Domain, Registry};
use crate::store::Store;

pub use config::NotifyConfig;
pub use courier::{Channel, Courier, Message, OfflineCourier, Outcome};

/// The dispatch domain: registered in `lib.rs`'s `domains!`.
pub const DOMAIN: DispatchDomain = DispatchDomain;

pub struct DispatchDomain;

impl Domain for DispatchDomain {
    fn name(&self) -> &'static str {
        "dispatch"
    }

    fn register(&self, registry: &mut Registry) {
        registry.config::<NotifyConfig>();
    }

    fn start(
        &self,
        _store: &Store,
        _config: &crate::config::EngineConfig,
    ) -> Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
        Ok(None)
    }
}
