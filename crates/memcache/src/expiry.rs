//! memcached's expiration times (`exptime`) turned into deadlines.

/// Largest exptime that counts as seconds from now (30 days, memcached's `REALTIME_MAXDELTA`);
/// anything larger is an absolute Unix time in seconds.
pub const RELATIVE_EXPTIME_MAX_SECONDS: i64 = 60 * 60 * 24 * 30;

/// When an item written with some exptime stops being readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// exptime 0: the item never expires.
    Never,
    /// The item expires at this Unix time in milliseconds.
    AtMs(u64),
    /// The item is expired as soon as it is written: a negative exptime, or an absolute time that
    /// is not in the future. memcached stores it and nobody can read it; a store may skip it.
    AlreadyExpired,
}

/// The deadline of an exptime sent at `now_unix_ms`, by memcached's rules (`realtime()` in
/// memcached.c): 0 never expires, 1 to 30 days are seconds from now, larger values are an absolute
/// Unix time in seconds, and negative values are already expired.
///
/// Arithmetic saturates, so no exptime a client can send overflows.
pub fn exptime_to_deadline(exptime: i64, now_unix_ms: u64) -> Expiry {
    match exptime {
        0 => Expiry::Never,
        seconds if seconds < 0 => Expiry::AlreadyExpired,
        seconds if seconds <= RELATIVE_EXPTIME_MAX_SECONDS => {
            // Positive and at most 30 days here, so the cast and the product are exact.
            Expiry::AtMs(now_unix_ms.saturating_add(seconds as u64 * 1000))
        }
        unix_seconds => {
            let deadline_ms = (unix_seconds as u64).saturating_mul(1000);
            if deadline_ms <= now_unix_ms {
                Expiry::AlreadyExpired
            } else {
                Expiry::AtMs(deadline_ms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn check(exptime: i64, expect: Expiry) {
        assert_eq!(
            exptime_to_deadline(exptime, NOW_MS),
            expect,
            "exptime {exptime}"
        );
    }

    #[test]
    fn zero_never_expires() {
        check(0, Expiry::Never);
    }

    #[test]
    fn up_to_thirty_days_counts_from_now() {
        check(1, Expiry::AtMs(NOW_MS + 1000));
        check(3600, Expiry::AtMs(NOW_MS + 3_600_000));
        check(
            RELATIVE_EXPTIME_MAX_SECONDS,
            Expiry::AtMs(NOW_MS + 2_592_000_000),
        );
    }

    #[test]
    fn beyond_thirty_days_is_an_absolute_unix_time() {
        check(1_800_000_000, Expiry::AtMs(1_800_000_000_000));
        // Just past the relative range is 1970: long gone.
        check(RELATIVE_EXPTIME_MAX_SECONDS + 1, Expiry::AlreadyExpired);
        check(1_700_000_000, Expiry::AlreadyExpired);
        check(1_700_000_001, Expiry::AtMs(1_700_000_001_000));
    }

    #[test]
    fn negative_is_already_expired() {
        check(-1, Expiry::AlreadyExpired);
        check(i64::MIN, Expiry::AlreadyExpired);
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        check(i64::MAX, Expiry::AtMs(u64::MAX));
        assert_eq!(
            exptime_to_deadline(5, u64::MAX - 10),
            Expiry::AtMs(u64::MAX)
        );
    }
}
