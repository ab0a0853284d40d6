//! Actor identity: [`Kind`] (which type of actor) and [`ActorKey`] (kind + id). The lowest layer
//! of the engine: the store names snapshots by key, the runtime routes messages by it, and each
//! domain declares its kinds as constants (`social::USER`, `work::BUCKET`, ...), registered once
//! (see `runtime::registry`), which checks that no code is used twice.
//!
//! Encoding: a kind's code (1..=254) is the first byte of every sled key of its actors. In WAL
//! records (bincode) a kind is written as the index of the enum it once was, `code - 1`, so
//! records written before kinds were registered read unchanged.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The type of an actor: a code 1..=254, unique over every registered domain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(u8);

impl Kind {
    /// A kind with code `code` (1..=254: 0 and 255 are the store's own key tags).
    pub const fn new(code: u8) -> Kind {
        assert!(code != 0 && code != 255, "kind codes are 1..=254");
        Kind(code)
    }

    pub const fn code(self) -> u8 {
        self.0
    }

    pub fn from_u8(code: u8) -> Option<Kind> {
        (code != 0 && code != 255).then_some(Kind(code))
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kind({})", self.0)
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(u32::from(self.0) - 1)
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)?;
        u8::try_from(index + 1)
            .ok()
            .and_then(Kind::from_u8)
            .ok_or_else(|| serde::de::Error::custom(format!("kind index {index} out of range")))
    }
}

/// Identifies one actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorKey {
    pub kind: Kind,
    pub id: u64,
}

impl ActorKey {
    pub const fn new(kind: Kind, id: u64) -> Self {
        ActorKey { kind, id }
    }

    /// The inverse of [`ActorKey::prefix`].
    pub fn from_prefix(bytes: &[u8]) -> Option<ActorKey> {
        let kind = Kind::from_u8(*bytes.first()?)?;
        let id: [u8; 8] = bytes.get(1..9)?.try_into().ok()?;
        Some(ActorKey::new(kind, u64::from_be_bytes(id)))
    }

    /// The sled key of the actor's snapshot header: kind code + big-endian id.
    pub fn prefix(&self) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[0] = self.kind.code();
        out[1..].copy_from_slice(&self.id.to_be_bytes());
        out
    }

    /// The sled key of one part of the actor's snapshot: prefix + `/` + `sub`.
    pub fn sub_key(&self, sub: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + sub.len());
        out.extend_from_slice(&self.prefix());
        out.push(b'/');
        out.extend_from_slice(sub);
        out
    }
}

/// A set of kinds (a bitmap over the 256 codes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindSet([u64; 4]);

impl KindSet {
    pub fn insert(&mut self, kind: Kind) {
        self.0[usize::from(kind.0 / 64)] |= 1 << (kind.0 % 64);
    }

    pub fn contains(&self, kind: Kind) -> bool {
        self.0[usize::from(kind.0 / 64)] & (1 << (kind.0 % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The historical enum's encoding: variant index = code - 1, as bincode wrote it.
    #[test]
    fn kinds_encode_as_the_enum_they_were() {
        #[derive(Serialize)]
        #[allow(dead_code)]
        enum Old {
            A,
            B,
            C,
        }
        let old = crate::codec::encode(&Old::C);
        assert_eq!(crate::codec::encode(&Kind::new(3)), old);
        assert_eq!(crate::codec::decode::<Kind>(&old).unwrap(), Kind::new(3));
        let key = ActorKey::new(Kind::new(6), 77);
        assert_eq!(
            crate::codec::decode::<ActorKey>(&crate::codec::encode(&key)).unwrap(),
            key
        );
        assert_eq!(ActorKey::from_prefix(&key.prefix()), Some(key));
        let mut set = KindSet::default();
        set.insert(Kind::new(6));
        assert!(set.contains(Kind::new(6)) && !set.contains(Kind::new(5)));
    }
}
