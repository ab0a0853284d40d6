//! The one place that encodes and decodes bytes that reach the disk (WAL payloads and checkpoint
//! snapshots). Everything goes through `encode`/`decode`, so the format can be replaced here
//! alone; `FORMAT_VERSION` is written into every WAL segment header and snapshot meta record.
//!
//! Invariant: `decode(encode(x)) == x`; in debug builds `encode` checks the round trip length.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// Version of the byte format produced by this module. Bump it when the encoding changes.
/// 2: social snapshots keep like records, "liked" flags and post-index entries in chunks
/// (`store::Chunked`); post like counts and user counters are recomputed at load.
/// 4: work buckets' snapshots and deadlines are packed (`store::packed`), and the pool's bucket
/// table is stored in chunks of consecutive ids.
/// 5: the work pool keeps a client's `external_id` only as a digest (`Part::Client`,
/// `WorkEvent::ClientRegistered`, both new variants appended last). Format 4 is still read: its
/// encoding is a subset of 5's, and the pool hashes its plain-text client parts and
/// registration events as it loads and replays them; `Engine::open` then rewrites the pool and
/// stamps the data dir 5, so an older build refuses it instead of misreading it.
pub const FORMAT_VERSION: u32 = 5;

/// The oldest format this build opens (and migrates to [`FORMAT_VERSION`] at open).
pub const FORMAT_VERSION_READABLE_MIN: u32 = 4;

/// True for a format this build can read: `FORMAT_VERSION_READABLE_MIN..=FORMAT_VERSION`.
pub fn is_readable(version: u32) -> bool {
    (FORMAT_VERSION_READABLE_MIN..=FORMAT_VERSION).contains(&version)
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` to bytes. Panics only on a type that serde cannot encode (a programmer error).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Invariant: our event and snapshot types are plain data; bincode cannot fail on them.
    bincode::serde::encode_to_vec(value, config()).expect("encodable value")
}

/// Appends the encoding of `value` to `buffer`.
pub fn encode_into<T: Serialize>(value: &T, buffer: &mut Vec<u8>) {
    // Invariant: as in `encode`.
    bincode::serde::encode_into_std_write(value, buffer, config()).expect("encodable value");
}

/// Decodes one value from the front of `bytes`; returns it with the number of bytes it took.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize)> {
    bincode::serde::decode_from_slice(bytes, config())
        .map_err(|error| Error::Store(format!("decode failed (format {FORMAT_VERSION}): {error}")))
}

/// Decodes a whole buffer; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config()).map_err(|error| {
        Error::Store(format!("decode failed (format {FORMAT_VERSION}): {error}"))
    })?;
    if read != bytes.len() {
        return Err(Error::Store(format!(
            "decode left {} trailing bytes",
            bytes.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        tags: Vec<u32>,
    }

    #[test]
    fn round_trip_and_trailing_bytes() {
        let sample = Sample {
            id: 7,
            name: "x".into(),
            tags: vec![1, 2, 3],
        };
        let mut bytes = encode(&sample);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample);
        bytes.push(0);
        assert!(decode::<Sample>(&bytes).is_err());
    }
}
