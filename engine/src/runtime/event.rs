//! Events as the runtime sees them: type-erased, tagged by domain, and encoded into WAL records
//! without the runtime knowing any domain's types.
//!
//! A domain's event type implements [`DomainEvent`] with a `TAG` unique over the registry. In
//! memory an [`Event`] boxes one such value; an actor downcasts it to its own `Entity::Event`.
//!
//! # Record format (unchanged from the closed enum of earlier builds)
//! A WAL record is bincode (standard config) of `origin: ActorKey`, then the entry count (u64
//! varint), then per entry `key: ActorKey`, the event's `TAG` (u32 varint) and the bincode of
//! the event value. That is exactly what `#[derive(Serialize)] enum Event { Counter(..),
//! Social(..), Work(..) }` wrote (a newtype variant is its index then its value), so the demo,
//! social and work domains keep the tags 0, 1 and 2 and every log written before reads as is;
//! `registry.rs`'s test pins the bytes against such an enum.

use std::any::Any;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ActorKey;
use crate::codec;
use crate::error::{Error, Result};

/// A domain's event type. Events are facts that already passed validation: applying them needs
/// no clock and no randomness.
pub trait DomainEvent: Serialize + DeserializeOwned + Debug + Send + Sync + 'static {
    /// This type's tag in WAL records, unique over the registry (see the module docs).
    const TAG: u32;
}

/// The object-safe face of a [`DomainEvent`].
trait Erased: Any + Debug + Send + Sync {
    fn tag(&self) -> u32;
    fn encode_into(&self, out: &mut Vec<u8>);
    fn as_any(&self) -> &dyn Any;
}

impl<T: DomainEvent> Erased for T {
    fn tag(&self) -> u32 {
        T::TAG
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        codec::encode_into(self, out)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One event of some domain.
#[derive(Debug)]
pub struct Event(Box<dyn Erased>);

impl Event {
    pub fn new<T: DomainEvent>(event: T) -> Event {
        Event(Box::new(event))
    }

    /// The event as `T`, if it is one.
    pub fn downcast_ref<T: DomainEvent>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }

    pub fn tag(&self) -> u32 {
        self.0.tag()
    }
}

/// Decodes one event of a registered type from the front of `bytes`.
pub(crate) type DecodeEvent = fn(&[u8]) -> Result<(Event, usize)>;

/// Where [`Record::decode`] finds the decoder of a tag (the registry).
pub(crate) trait EventDecoders {
    fn event_decoder(&self, tag: u32) -> Option<DecodeEvent>;
}

pub(crate) fn decode_event<T: DomainEvent>(bytes: &[u8]) -> Result<(Event, usize)> {
    let (event, read) = codec::decode_prefix::<T>(bytes)?;
    Ok((Event::new(event), read))
}

/// One WAL record: the events of one command. `origin` is the actor that decided them; entries
/// for other actors are "foreign" to those actors.
#[derive(Debug)]
pub struct Record {
    pub origin: ActorKey,
    pub entries: Vec<(ActorKey, Event)>,
}

impl Record {
    /// The record's bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 * (self.entries.len() + 1));
        codec::encode_into(&self.origin, &mut out);
        codec::encode_into(&(self.entries.len() as u64), &mut out);
        for (key, event) in &self.entries {
            codec::encode_into(key, &mut out);
            codec::encode_into(&event.tag(), &mut out);
            event.0.encode_into(&mut out);
        }
        out
    }

    /// Reads a record, decoding each event with the type `decoders` has for its tag.
    pub(crate) fn decode(bytes: &[u8], decoders: &dyn EventDecoders) -> Result<Record> {
        let mut at = 0;
        let next = |at: &mut usize| -> Result<&[u8]> {
            bytes
                .get(*at..)
                .ok_or_else(|| Error::Store("record: truncated".into()))
        };
        let (origin, read) = codec::decode_prefix::<ActorKey>(next(&mut at)?)?;
        at += read;
        let (count, read) = codec::decode_prefix::<u64>(next(&mut at)?)?;
        at += read;
        let mut entries = Vec::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
            let (key, read) = codec::decode_prefix::<ActorKey>(next(&mut at)?)?;
            at += read;
            let (tag, read) = codec::decode_prefix::<u32>(next(&mut at)?)?;
            at += read;
            let decode = decoders.event_decoder(tag).ok_or_else(|| {
                Error::Store(format!("record: event tag {tag} is no registered domain's"))
            })?;
            let (event, read) = decode(next(&mut at)?)?;
            at += read;
            entries.push((key, event));
        }
        if at != bytes.len() {
            return Err(Error::Store(format!(
                "record: {} trailing bytes",
                bytes.len() - at
            )));
        }
        Ok(Record { origin, entries })
    }
}
