//! `StoreConfig`: the store's limits and identity, with validation.

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The largest number of partitions a store accepts; a partition table of this size is already
/// far more than a farm of web servers needs.
pub const MAX_NUM_PARTITIONS: u32 = 1 << 16;

/// Limits and identity of a `Store`. Every limit is enforced on the writes a client asks for;
/// replicated writes (`Partition::apply`) mirror the primary and are never refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Number of partitions; a power of two, the same on every node of the cluster.
    pub num_partitions: u32,
    /// Accounted memory above which writes that would grow memory are refused; 0 = unlimited.
    pub max_memory_bytes: u64,
    /// Largest string value, and largest hash (sum of field and value lengths), in bytes.
    pub max_value_bytes: usize,
    /// Largest key, in bytes.
    pub max_key_bytes: usize,
    /// Most fields a hash may have.
    pub max_hash_fields: usize,
    /// How long a tombstone (the trace of a delete, or of an expiry from its deadline) is kept,
    /// so that a late, older write or a merge after a network split cannot resurrect the key.
    pub tombstone_ttl_ms: u64,
    /// This node's id, stamped into every version it creates.
    pub node_id: u32,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            num_partitions: 1024,
            max_memory_bytes: 0,
            max_value_bytes: 1024 * 1024,
            max_key_bytes: 64 * 1024,
            max_hash_fields: 4096,
            tombstone_ttl_ms: 10 * 60 * 1000,
            node_id: 0,
        }
    }
}

impl StoreConfig {
    /// Checks the configuration; the error names the setting and says how to fix it.
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |reason: String| Err(StoreError::InvalidConfig { reason });
        if !self.num_partitions.is_power_of_two() || self.num_partitions > MAX_NUM_PARTITIONS {
            return invalid(format!(
                "num_partitions must be a power of two between 1 and {MAX_NUM_PARTITIONS}, not {}",
                self.num_partitions
            ));
        }
        if self.max_value_bytes == 0 {
            return invalid("max_value_bytes must be at least 1".to_string());
        }
        if self.max_key_bytes == 0 {
            return invalid("max_key_bytes must be at least 1".to_string());
        }
        if self.max_hash_fields == 0 {
            return invalid("max_hash_fields must be at least 1".to_string());
        }
        if self.tombstone_ttl_ms == 0 {
            // Without tombstones a late or merged older write would bring deleted keys back.
            return invalid("tombstone_ttl_ms must be at least 1".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(change: impl FnOnce(&mut StoreConfig), expect_error_containing: Option<&str>) {
        let mut config = StoreConfig::default();
        change(&mut config);
        match (config.validate(), expect_error_containing) {
            (Ok(()), None) => {}
            (Err(error), Some(text)) => assert!(error.to_string().contains(text), "{error}"),
            (result, expect) => panic!("got {result:?}, expected an error containing {expect:?}"),
        }
    }

    #[test]
    fn the_default_configuration_is_valid_and_sensible() {
        let config = StoreConfig::default();
        assert_eq!(config.num_partitions, 1024);
        assert_eq!(config.max_value_bytes, 1_048_576);
        assert_eq!(config.tombstone_ttl_ms, 600_000);
        check(|_| {}, None);
    }

    #[test]
    fn invalid_configurations_are_refused_with_the_setting_named() {
        check(
            |config| config.num_partitions = 1000,
            Some("num_partitions"),
        );
        check(|config| config.num_partitions = 0, Some("num_partitions"));
        check(
            |config| config.num_partitions = 1 << 17,
            Some("num_partitions"),
        );
        check(|config| config.num_partitions = 1, None);
        check(|config| config.max_value_bytes = 0, Some("max_value_bytes"));
        check(|config| config.max_key_bytes = 0, Some("max_key_bytes"));
        check(|config| config.max_hash_fields = 0, Some("max_hash_fields"));
    }
}
