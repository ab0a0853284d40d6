//! The [`Domain`] trait: what a domain folder implements once, and `lib.rs`'s `domains!` lists.

use super::recovery::Replay;
use super::registry::Registry;
use crate::config::EngineConfig;
use crate::error::Result;
use crate::store::Store;

/// A domain: one registration call declares everything the runtime must know of it; the
/// optional hooks let it take part in opening the engine.
pub trait Domain: Send + Sync + 'static {
    /// Short name, for logs and the registry's listing.
    fn name(&self) -> &'static str;

    /// Declares the domain's kinds and config section.
    fn register(&self, registry: &mut Registry);

    /// Test settings for the domain's section, where the defaults are costly (password
    /// hashing, say). `EngineConfig::for_tests` calls it.
    fn configure_for_tests(&self, _config: &mut EngineConfig) {}

    /// Called at open on a data dir of an older readable format (`from_version`), after replay
    /// and before the open-time checkpoint: bring in (`Replay::include`) every actor whose
    /// snapshot must be rewritten in this build's format.
    fn migrate(&self, _from_version: u32, _store: &Store, _replay: &mut Replay) -> Result<()> {
        Ok(())
    }

    /// The domain's state shared by its API handles (id allocators, caches), built at open once
    /// the store is recovered; the domain finds it again with `Engine::state`.
    fn start(
        &self,
        _store: &Store,
        _config: &EngineConfig,
    ) -> Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
        Ok(None)
    }

    /// Called once the engine is open and ready, before `open` returns: wake the actors that
    /// must run from the start (a singleton whose durable timer arms itself on first
    /// activation, say).
    fn opened(&self, _engine: &crate::Engine) -> Result<()> {
        Ok(())
    }
}

/// The registry of `domains`, registered in order.
pub fn registry_of(domains: &[&dyn Domain]) -> Registry {
    let mut registry = Registry::empty();
    // The runtime's own kinds.
    registry.enter("runtime");
    registry.kind::<super::outbox::Outbox>("outbox");
    for domain in domains {
        registry.enter(domain.name());
        domain.register(&mut registry);
    }
    registry
}
