//! An actor being replayed at start-up, whatever its kind: the registry keeps one loader per
//! kind ([`load_replayed`]), and `recovery` applies the log's events through [`Replayed`].

use super::{ActorKey, Entity, Event};
use crate::error::{Error, Result};
use crate::store::{SnapshotBatch, Store};

/// An actor being replayed, whatever its kind.
pub(crate) trait Replayed {
    fn apply(&mut self, event: &Event, own: bool, lsn: u64) -> Result<()>;
    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch);
    fn deadline(&self) -> Option<crate::clock::Millis>;
}

struct ReplayedEntity<E: Entity>(E);

impl<E: Entity> Replayed for ReplayedEntity<E> {
    fn apply(&mut self, event: &Event, own: bool, lsn: u64) -> Result<()> {
        let Some(event) = event.downcast_ref::<E::Event>() else {
            return Err(Error::Store(format!(
                "replay: an event of tag {} was addressed to kind {:?}",
                event.tag(),
                E::KIND
            )));
        };
        if own {
            self.0.apply(event)
        } else {
            self.0.apply_foreign_at(event, lsn)
        }
        Ok(())
    }

    fn save(&mut self, key: ActorKey, batch: &mut SnapshotBatch) {
        self.0.save(key, batch)
    }

    fn deadline(&self) -> Option<crate::clock::Millis> {
        self.0.next_deadline()
    }
}

/// Loads actor `id` of kind `E` for replay (the registry keeps one per kind).
pub(crate) type LoadReplayed = fn(u64, &Store) -> Result<Box<dyn Replayed>>;

pub(crate) fn load_replayed<E: Entity>(id: u64, store: &Store) -> Result<Box<dyn Replayed>> {
    Ok(Box::new(ReplayedEntity(E::load(id, store)?)))
}
