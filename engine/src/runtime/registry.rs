//! The domain registry: what the runtime knows of the domains, filled once at `Engine::open`
//! from each domain's [`Domain::register`] and read-only afterwards.
//!
//! A domain declares here its actor kinds (each an [`Entity`] type, with its directory, its
//! replay loader and whether its snapshots are packed), its event type (a [`DomainEvent`] tag
//! and decoder) and its config section ([`DomainConfig`]). Everything else it owns stays in
//! its folder.
//!
//! Invariants: a kind code and an event tag belong to one registration each (checked with an
//! assertion when registering: a clash is a programmer error); a registered kind's directory
//! lives as long as the engine.

use std::any::TypeId;
use std::collections::BTreeMap;

use super::directory::{AnyDirectory, Directory};
use super::event::{decode_event, DecodeEvent, DomainEvent, EventDecoders};
use super::replayed::{load_replayed, LoadReplayed};
use super::Entity;
use crate::config::{DomainConfig, EngineConfig};
use crate::key::{Kind, KindSet};

struct KindEntry {
    name: &'static str,
    domain: &'static str,
    directory: Box<dyn AnyDirectory>,
    load: LoadReplayed,
}

struct EventEntry {
    domain: &'static str,
    type_id: TypeId,
    decode: DecodeEvent,
}

struct SectionEntry {
    domain: &'static str,
    type_id: TypeId,
    fill_default: fn(&mut EngineConfig),
    validate: fn(&EngineConfig) -> Result<(), String>,
}

/// Kinds, event types and config sections of every registered domain.
pub struct Registry {
    kinds: Vec<Option<KindEntry>>,
    events: BTreeMap<u32, EventEntry>,
    sections: BTreeMap<&'static str, SectionEntry>,
    packed: KindSet,
    domains: Vec<&'static str>,
    current: &'static str,
}

impl Registry {
    pub(crate) fn empty() -> Registry {
        Registry {
            kinds: (0..=u8::MAX).map(|_| None).collect(),
            events: BTreeMap::new(),
            sections: BTreeMap::new(),
            packed: KindSet::default(),
            domains: Vec::new(),
            current: "",
        }
    }

    /// Starts the registrations of domain `name` (see `domain::registry_of`).
    pub(crate) fn enter(&mut self, name: &'static str) {
        assert!(
            !self.domains.contains(&name),
            "domain {name} registered twice"
        );
        self.current = name;
        self.domains.push(name);
    }

    /// Registers actor kind `E` (its code, directory, replay loader) and, once per type, its
    /// event type.
    pub fn kind<E: Entity>(&mut self, name: &'static str) {
        let slot = &mut self.kinds[usize::from(E::KIND.code())];
        if let Some(taken) = slot {
            panic!(
                "kind code {} of {name} ({}) is already {} ({})",
                E::KIND.code(),
                self.current,
                taken.name,
                taken.domain
            );
        }
        *slot = Some(KindEntry {
            name,
            domain: self.current,
            directory: Box::new(Directory::<E>::default()),
            load: load_replayed::<E>,
        });
        if E::PACKED {
            self.packed.insert(E::KIND);
        }
        self.event::<E::Event>();
    }

    /// Registers event type `T` under its tag (kinds of one domain share it).
    fn event<T: DomainEvent>(&mut self) {
        let type_id = TypeId::of::<T>();
        match self.events.get(&T::TAG) {
            Some(entry) => assert!(
                entry.type_id == type_id,
                "event tag {} of {} is already {}'s",
                T::TAG,
                self.current,
                entry.domain
            ),
            None => {
                self.events.insert(
                    T::TAG,
                    EventEntry {
                        domain: self.current,
                        type_id,
                        decode: decode_event::<T>,
                    },
                );
            }
        }
    }

    /// Registers config section `C` (`C::SECTION` in the configuration).
    pub fn config<C: DomainConfig>(&mut self) {
        let entry = SectionEntry {
            domain: self.current,
            type_id: TypeId::of::<C>(),
            fill_default: |config| {
                config.section_mut::<C>();
            },
            validate: |config| config.section::<C>().validate(),
        };
        if let Some(taken) = self.sections.insert(C::SECTION, entry) {
            panic!(
                "config section {} of {} is already {}'s",
                C::SECTION,
                self.current,
                taken.domain
            );
        }
    }

    /// Gives `config` every registered section it lacks (at its defaults) and validates each.
    pub(crate) fn complete_config(&self, config: &mut EngineConfig) -> Result<(), String> {
        for (name, section) in &self.sections {
            (section.fill_default)(config);
            (section.validate)(config).map_err(|message| format!("{name}: {message}"))?;
            debug_assert!(config.has_section(section.type_id));
        }
        Ok(())
    }

    /// The directory of kind `E`.
    pub(crate) fn directory<E: Entity>(&self) -> &Directory<E> {
        // Invariant: every kind a command can address was registered (the entity types are the
        // registered ones, and a registered code holds its own type's directory).
        self.kinds[usize::from(E::KIND.code())]
            .as_ref()
            .and_then(|entry| entry.directory.as_any().downcast_ref::<Directory<E>>())
            .unwrap_or_else(|| panic!("kind {:?} is not registered", E::KIND))
    }

    /// The directory of `kind`, whatever its type.
    pub(crate) fn any(&self, kind: Kind) -> &dyn AnyDirectory {
        // Invariant: keys in memory come from registered entities; keys read from disk go
        // through `loader` first, which refuses unknown kinds.
        self.kinds[usize::from(kind.code())]
            .as_ref()
            .map(|entry| entry.directory.as_ref())
            .unwrap_or_else(|| panic!("kind {kind:?} is not registered"))
    }

    /// Every kind's directory.
    pub(crate) fn directories(&self) -> impl Iterator<Item = &dyn AnyDirectory> {
        self.kinds
            .iter()
            .flatten()
            .map(|entry| entry.directory.as_ref())
    }

    pub(crate) fn loader(&self, kind: Kind) -> Option<LoadReplayed> {
        self.kinds[usize::from(kind.code())]
            .as_ref()
            .map(|entry| entry.load)
    }

    /// The kinds whose snapshots are packed.
    pub fn packed(&self) -> KindSet {
        self.packed
    }

    /// Every registered kind: code, name and domain.
    pub fn kinds(&self) -> Vec<(Kind, &'static str, &'static str)> {
        self.kinds
            .iter()
            .enumerate()
            .filter_map(|(code, entry)| {
                let entry = entry.as_ref()?;
                Some((Kind::new(code as u8), entry.name, entry.domain))
            })
            .collect()
    }

    /// The registered domains, in registration order.
    pub fn domains(&self) -> &[&'static str] {
        &self.domains
    }

    /// The registered config sections' names.
    pub fn sections(&self) -> Vec<&'static str> {
        self.sections.keys().copied().collect()
    }
}

impl EventDecoders for Registry {
    fn event_decoder(&self, tag: u32) -> Option<DecodeEvent> {
        self.events.get(&tag).map(|entry| entry.decode)
    }
}
