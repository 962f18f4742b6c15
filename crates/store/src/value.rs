//! Stored values (strings and compact hashes), entry images and replication mutations.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::Version;

/// Hashes with at most this many fields are kept as a vector of pairs: a session hash has a
/// handful of attributes, and a linear scan of a few pairs beats hashing, in time and in memory.
pub const SMALL_HASH_MAX_FIELDS: usize = 16;

/// The type of a stored value, as TYPE and SCAN TYPE name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ValueType {
    /// A byte string (Redis string, memcached item).
    String,
    /// A Redis hash of field/value pairs.
    Hash,
}

impl ValueType {
    /// The name Redis's TYPE command replies: `string` or `hash`.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Hash => "hash",
        }
    }
}

/// The full state of a key: what a replica needs to hold exactly what the primary holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryImage {
    /// The value.
    pub value: ValueImage,
    /// The version of the write that produced this state.
    pub version: Version,
    /// Absolute deadline in wall-clock milliseconds after which the key is gone; 0 = none.
    pub expire_at_ms: u64,
    /// memcached's opaque client flags; 0 for values written through Redis.
    pub flags: u32,
}

/// A value as it travels: a string, or a hash's pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueImage {
    /// A byte string.
    String(Bytes),
    /// A hash's field/value pairs, each field once.
    Hash(Vec<(Bytes, Bytes)>),
}

/// One key's change, as a primary streams it to its backups and as merges exchange it.
///
/// State-based: it carries the key's whole new state, so applying it is idempotent and the
/// order of two mutations of a key only matters through their versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    /// The database: a client one (0..`NUM_DATABASES`) or `LOCK_DATABASE`.
    pub db: u8,
    /// The key.
    pub key: Bytes,
    /// The key's new state.
    pub change: Change,
}

/// The new state of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The key holds this image.
    Put(EntryImage),
    /// The key was deleted by the write of this version; replicas keep a tombstone.
    Delete {
        /// The version of the delete.
        version: Version,
    },
}

impl Change {
    /// The version of the write this change describes.
    pub fn version(&self) -> Version {
        match self {
            Change::Put(image) => image.version,
            Change::Delete { version } => *version,
        }
    }
}

/// A value as stored: its bytes were copied into exact-size allocations, so it never keeps a
/// network buffer alive.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    String(Bytes),
    Hash(HashValue),
}

impl Value {
    pub(crate) fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
            Value::Hash(_) => ValueType::Hash,
        }
    }

    /// Takes an image's value as it is, without copying: for images decoded from a peer frame,
    /// whose every string owns an exact-size allocation of its own (or images cloned from a
    /// store, which share a stored value's). A string sliced from a larger buffer, a client's
    /// read buffer say, would keep that whole buffer alive: such images go through `from_image`.
    pub(crate) fn from_owned_image(image: ValueImage) -> Value {
        match image {
            ValueImage::String(bytes) => Value::String(bytes),
            ValueImage::Hash(pairs) => Value::hash_of(pairs),
        }
    }

    /// Copies an image's value into exact-size allocations.
    pub(crate) fn from_image(image: &ValueImage) -> Value {
        match image {
            ValueImage::String(bytes) => Value::String(Bytes::copy_from_slice(bytes)),
            ValueImage::Hash(pairs) => Value::hash_of(pairs.iter().map(|(field, value)| {
                (Bytes::copy_from_slice(field), Bytes::copy_from_slice(value))
            })),
        }
    }

    /// A hash of `pairs`, each field once (later pairs win), stored as given.
    fn hash_of(pairs: impl IntoIterator<Item = (Bytes, Bytes)>) -> Value {
        let mut hash = HashValue::default();
        for (field, value) in pairs {
            hash.insert(field, value);
        }
        Value::Hash(hash)
    }

    pub(crate) fn to_image(&self) -> ValueImage {
        match self {
            Value::String(bytes) => ValueImage::String(bytes.clone()),
            Value::Hash(hash) => ValueImage::Hash(
                hash.iter()
                    .map(|(field, value)| (field.clone(), value.clone()))
                    .collect(),
            ),
        }
    }
}

/// A Redis hash: a vector of pairs while small, a hash map beyond `SMALL_HASH_MAX_FIELDS`.
#[derive(Debug, Clone, Default)]
pub(crate) struct HashValue {
    fields: HashFields,
    /// Sum of the lengths of all fields and values, kept so that limits and memory accounting
    /// never walk the hash.
    payload_bytes: usize,
}

#[derive(Debug, Clone)]
enum HashFields {
    /// Insertion order, like Redis's listpack encoding.
    Small(Vec<(Bytes, Bytes)>),
    /// A fixed-seed hasher: the field count is bounded by `max_hash_fields`, so flooding is
    /// bounded too, and replicas iterate deterministically.
    Large(hashbrown::HashMap<Bytes, Bytes, Xxh3DefaultBuilder>),
}

impl Default for HashFields {
    fn default() -> HashFields {
        HashFields::Small(Vec::new())
    }
}

impl HashValue {
    pub(crate) fn len(&self) -> usize {
        match &self.fields {
            HashFields::Small(pairs) => pairs.len(),
            HashFields::Large(map) => map.len(),
        }
    }

    pub(crate) fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    pub(crate) fn get(&self, field: &[u8]) -> Option<&Bytes> {
        match &self.fields {
            HashFields::Small(pairs) => pairs
                .iter()
                .find(|(existing, _)| existing.as_ref() == field)
                .map(|(_, value)| value),
            HashFields::Large(map) => map.get(field),
        }
    }

    /// Sets `field` to `value`; returns the previous value. Both own their allocations already
    /// (copied by the caller, or decoded from a peer frame).
    pub(crate) fn insert(&mut self, field: Bytes, value: Bytes) -> Option<Bytes> {
        let (field_len, value_len) = (field.len(), value.len());
        let previous = match &mut self.fields {
            HashFields::Small(pairs) => {
                if let Some((_, existing)) = pairs.iter_mut().find(|(f, _)| *f == field) {
                    Some(std::mem::replace(existing, value))
                } else if pairs.len() < SMALL_HASH_MAX_FIELDS {
                    pairs.push((field, value));
                    None
                } else {
                    let mut map = hashbrown::HashMap::with_capacity_and_hasher(
                        pairs.len() * 2,
                        Xxh3DefaultBuilder,
                    );
                    map.extend(pairs.drain(..));
                    map.insert(field, value);
                    self.fields = HashFields::Large(map);
                    None
                }
            }
            HashFields::Large(map) => match map.get_mut(&field) {
                Some(existing) => Some(std::mem::replace(existing, value)),
                None => {
                    map.insert(field, value);
                    None
                }
            },
        };
        match &previous {
            // The field was counted when it was added; only the value changed.
            Some(previous) => self.payload_bytes = self.payload_bytes - previous.len() + value_len,
            None => self.payload_bytes += field_len + value_len,
        }
        previous
    }

    pub(crate) fn remove(&mut self, field: &[u8]) -> Option<Bytes> {
        let removed = match &mut self.fields {
            HashFields::Small(pairs) => {
                let index = pairs.iter().position(|(f, _)| f.as_ref() == field)?;
                Some(pairs.remove(index).1)
            }
            HashFields::Large(map) => map.remove(field),
        };
        if let Some(value) = &removed {
            self.payload_bytes -= field.len() + value.len();
        }
        removed
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        let (small, large) = match &self.fields {
            HashFields::Small(pairs) => (Some(pairs.iter().map(|(f, v)| (f, v))), None),
            HashFields::Large(map) => (None, Some(map.iter())),
        };
        small
            .into_iter()
            .flatten()
            .chain(large.into_iter().flatten())
    }
}
