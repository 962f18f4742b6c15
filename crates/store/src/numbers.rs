//! Number parsing with the exact rules of Redis (`string2ll`) and memcached (`safe_strtoull`).

/// Longest decimal form of an `i64` (`-9223372036854775808`).
const MAX_I64_DIGITS: usize = 20;

/// Parses `bytes` as Redis's `string2ll` does: an optional `-`, then digits with no leading zero
/// (except `0` itself), nothing else, within `i64`. `+`, spaces, `-0` and `007` are refused.
pub(crate) fn parse_redis_i64(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > MAX_I64_DIGITS {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulate negatively so that i64::MIN, whose magnitude does not fit, parses too.
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_sub(i64::from(digit - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Parses a memcached counter as `safe_strtoull` accepts it: optional leading spaces, at least
/// one digit, optional trailing whitespace (memcached itself pads decremented counters with
/// spaces), within `u64`. Anything else is "non-numeric".
pub(crate) fn parse_memcached_u64(bytes: &[u8]) -> Option<u64> {
    let start = bytes.iter().position(|&byte| byte != b' ')?;
    let digits_and_rest = &bytes[start..];
    let digits_len = digits_and_rest
        .iter()
        .position(|byte| !byte.is_ascii_digit())
        .unwrap_or(digits_and_rest.len());
    if digits_len == 0 {
        return None;
    }
    let (digits, rest) = digits_and_rest.split_at(digits_len);
    if !rest.iter().all(|byte| byte.is_ascii_whitespace()) {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_redis(input: &str, expect: Option<i64>) {
        assert_eq!(parse_redis_i64(input.as_bytes()), expect, "{input:?}");
    }

    fn check_memcached(input: &str, expect: Option<u64>) {
        assert_eq!(parse_memcached_u64(input.as_bytes()), expect, "{input:?}");
    }

    #[test]
    fn redis_integers_parse_like_string2ll() {
        check_redis("0", Some(0));
        check_redis("42", Some(42));
        check_redis("-42", Some(-42));
        check_redis("9223372036854775807", Some(i64::MAX));
        check_redis("-9223372036854775808", Some(i64::MIN));
        check_redis("9223372036854775808", None);
        check_redis("-9223372036854775809", None);
        check_redis("", None);
        check_redis("-", None);
        check_redis("-0", None);
        check_redis("007", None);
        check_redis("+1", None);
        check_redis(" 1", None);
        check_redis("1 ", None);
        check_redis("1.5", None);
        check_redis("abc", None);
        check_redis("123456789012345678901", None);
    }

    #[test]
    fn memcached_counters_parse_like_safe_strtoull() {
        check_memcached("0", Some(0));
        check_memcached("18446744073709551615", Some(u64::MAX));
        check_memcached("18446744073709551616", None);
        check_memcached("12  ", Some(12));
        check_memcached("  12", Some(12));
        check_memcached("12\r\n", Some(12));
        check_memcached("", None);
        check_memcached("   ", None);
        check_memcached("-1", None);
        check_memcached("12a", None);
        check_memcached("abc", None);
    }
}
