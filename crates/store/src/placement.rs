//! Where a key lives: its Redis hash tag, its partition, and its SCAN position.

use xxhash_rust::xxh3::xxh3_64;

/// Bits dropped from `xxh3_64(key)` to form a SCAN position, leaving 48 bits.
///
/// 48 bits keep positions unique in practice while leaving room in a 64-bit cursor for the
/// node's partition index.
pub const SCAN_POSITION_SHIFT: u32 = 16;

/// The part of `key` that decides its partition, by Redis's hash tag rule: the bytes between the
/// first `{` and the next `}` after it, if they are not empty; otherwise the whole key.
///
/// Keys sharing a tag share a partition, so a client can keep `{sid}:data` and `{sid}:lock`
/// together for RENAME and multi-key scripts.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&byte| byte == b'{') else {
        return key;
    };
    let after_open = &key[open + 1..];
    match after_open.iter().position(|&byte| byte == b'}') {
        Some(close) if close > 0 => &after_open[..close],
        _ => key,
    }
}

/// The partition of `key`: `xxh3_64(hash_tag(key)) & (num_partitions - 1)`.
///
/// `num_partitions` must be a power of two (`StoreConfig::validate` enforces it), so the mask is
/// the same as `mod` and every node computes the same placement.
pub fn partition_of(key: &[u8], num_partitions: u32) -> u32 {
    debug_assert!(num_partitions.is_power_of_two());
    let mask = u64::from(num_partitions.max(1) - 1);
    (xxh3_64(hash_tag(key)) & mask) as u32
}

/// The SCAN position of `key`: `xxh3_64(key) >> 16`, 48 bits.
///
/// The position depends on the key alone, not on the node or the table that holds it, so a SCAN
/// cursor stays meaningful when the partition moves to another node.
pub fn scan_position_of(key: &[u8]) -> u64 {
    xxh3_64(key) >> SCAN_POSITION_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, expect: &str) {
        assert_eq!(
            std::str::from_utf8(hash_tag(key.as_bytes())).expect("utf-8"),
            expect,
            "hash tag of {key:?}"
        );
    }

    #[test]
    fn hash_tags_follow_the_redis_rule() {
        check("user1000", "user1000");
        check("{user1000}.following", "user1000");
        check("foo{}{bar}", "foo{}{bar}");
        check("foo{{bar}}zap", "{bar");
        check("foo{bar}{zap}", "bar");
        check("{}", "{}");
        check("{", "{");
        check("no}open{", "no}open{");
        check("a{b}", "b");
    }

    #[test]
    fn keys_with_the_same_tag_share_a_partition() {
        for num_partitions in [1, 2, 1024, 65_536] {
            let data = partition_of(b"{sess:42}:data", num_partitions);
            assert_eq!(data, partition_of(b"{sess:42}:lock", num_partitions));
            assert!(data < num_partitions);
        }
    }

    #[test]
    fn partitions_spread_keys() {
        let mut seen = [false; 16];
        for index in 0..1_000 {
            seen[partition_of(format!("key:{index}").as_bytes(), 16) as usize] = true;
        }
        assert!(seen.iter().all(|&hit| hit));
    }

    #[test]
    fn scan_positions_have_48_bits() {
        for index in 0..1_000 {
            assert!(scan_position_of(format!("k{index}").as_bytes()) < 1 << 48);
        }
        assert_eq!(scan_position_of(b"abc"), xxh3_64(b"abc") >> 16);
    }
}
