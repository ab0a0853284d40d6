//! The `btc_eur` signal watcher: a thread that follows the market's price subscription (the
//! engine API `Engine::market().subscribe()`, not an HTTP poll) and tells each dispatch waiting
//! for a condition the new quote; it also looks every `notify.signal_check_ms`, so a dispatch
//! that began waiting after the last quote (its start time came, or it was just created) fires
//! on the price already there. A dispatch fires once: it decides on its own state.
//!
//! The thread holds the engine weakly and ends when the engine is gone or the feed closes.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::catalog::{Catalog, CatalogCommand, CatalogReply};
use super::job::{Job, JobCommand};
use crate::error::{Error, Result};
use crate::market::Quote;
use crate::runtime::Shared;

pub(crate) fn spawn(engine: &crate::Engine, check_ms: u64) -> Result<()> {
    let shared: Weak<Shared> = Arc::downgrade(engine.shared());
    let mut quotes = engine.market().subscribe();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::io("start the dispatch signal watcher", e))?;
    std::thread::Builder::new()
        .name("dispatch-signal".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let wait = tokio::time::timeout(Duration::from_millis(check_ms), quotes.changed());
                    if let Ok(Err(_)) = wait.await {
                        return; // the feed is gone with the engine
                    }
                    let Some(shared) = shared.upgrade() else { return };
                    if shared.stopped().is_some() {
                        return;
                    }
                    let quote = quotes.borrow_and_update().clone();
                    if let Some(quote) = quote {
                        tell_waiting(&shared, quote).await;
                    }
                }
            })
        })
        .map_err(|e| Error::io("spawn the dispatch signal watcher", e))?;
    Ok(())
}

async fn tell_waiting(shared: &Arc<Shared>, quote: Quote) {
    let waiting = match shared.ask::<Catalog>(0, CatalogCommand::Waiting).await {
        Ok(CatalogReply::Waiting(waiting)) => waiting,
        _ => return,
    };
    let price = quote.rate(crate::market::Currency::Eur);
    for (id, condition) in waiting {
        if condition.holds(price) {
            // The dispatch re-checks (freshness, its status); an error is retried next time.
            let _ = shared.ask::<Job>(id, JobCommand::Signal(quote.clone())).await;
        }
    }
}
