//! Decimal parsing and formatting without allocation, with Redis' exact acceptance rules.

/// The longest decimal `i64`, with its sign: `-9223372036854775808`.
pub(crate) const MAX_I64_DECIMAL_BYTES: usize = 20;

/// Parses a decimal `i64` the way Redis' `string2ll` does, because clients rely on the same
/// numbers being accepted and refused: no sign other than a leading `-`, no leading zeros,
/// no spaces, no empty string, no `-0`.
pub(crate) fn parse_i64_strict(digits: &[u8]) -> Option<i64> {
    let (is_negative, magnitude_digits) = match digits.split_first()? {
        (b'-', rest) => (true, rest),
        (b'0', []) => return Some(0),
        _ => (false, digits),
    };
    let (&first, rest) = magnitude_digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) || magnitude_digits.len() > 19 {
        return None;
    }
    let mut magnitude = u64::from(first - b'0');
    for &digit in rest {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if is_negative {
        // `i64::MIN` has no positive counterpart, so negate in the wider type.
        0i128
            .checked_sub(i128::from(magnitude))
            .and_then(|value| i64::try_from(value).ok())
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Parses an unsigned cursor the way Redis' `string2ull` does for the inputs clients send:
/// a strict `i64` that is not negative, or else digits with optional leading blanks, an
/// optional `+` and leading zeros that fit a `u64` (what `strtoull` accepts).
pub(crate) fn parse_u64_cursor(digits: &[u8]) -> Option<u64> {
    if let Some(value) = parse_i64_strict(digits) {
        return u64::try_from(value).ok();
    }
    let trimmed_start = digits
        .iter()
        .position(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))?;
    let unsigned_digits = match &digits[trimmed_start..] {
        [b'+', rest @ ..] => rest,
        rest => rest,
    };
    if unsigned_digits.is_empty() {
        return None;
    }
    let mut value = 0u64;
    for &digit in unsigned_digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    Some(value)
}

/// Parses an integer in a RESP3 frame sent by a server: an optional sign, then digits.
/// More lenient than [`parse_i64_strict`] because servers other than Redis may send `+5`.
pub(crate) fn parse_i64_lenient(digits: &[u8]) -> Option<i64> {
    let (is_negative, unsigned_digits) = match digits {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    };
    if unsigned_digits.is_empty() || unsigned_digits.len() > 40 {
        return None;
    }
    let mut magnitude = 0i128;
    for &digit in unsigned_digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude * 10 + i128::from(digit - b'0');
    }
    i64::try_from(if is_negative { -magnitude } else { magnitude }).ok()
}

/// Writes `value` in decimal into the end of `buffer` and returns the used tail, so replies
/// can format integers without `format!` or an allocation.
pub(crate) fn format_i64(value: i64, buffer: &mut [u8; MAX_I64_DECIMAL_BYTES]) -> &[u8] {
    let mut magnitude = value.unsigned_abs();
    let mut start = buffer.len();
    loop {
        start -= 1;
        // `magnitude % 10` is below 10, so the cast cannot truncate.
        buffer[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        buffer[start] = b'-';
    }
    &buffer[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_strict(input: &str, expect: Option<i64>) {
        assert_eq!(
            parse_i64_strict(input.as_bytes()),
            expect,
            "input {input:?}"
        );
    }

    #[test]
    fn strict_parsing_accepts_what_redis_string2ll_accepts() {
        check_strict("0", Some(0));
        check_strict("7", Some(7));
        check_strict("-7", Some(-7));
        check_strict("1234567890", Some(1_234_567_890));
        check_strict("9223372036854775807", Some(i64::MAX));
        check_strict("-9223372036854775808", Some(i64::MIN));
    }

    #[test]
    fn strict_parsing_refuses_what_redis_string2ll_refuses() {
        for input in [
            "",
            "-",
            "-0",
            "00",
            "01",
            "+1",
            " 1",
            "1 ",
            "1a",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "1.5",
        ] {
            check_strict(input, None);
        }
    }

    #[test]
    fn cursor_parsing_accepts_leading_zeros_plus_and_the_full_u64_range() {
        let check = |input: &str, expect: Option<u64>| {
            assert_eq!(
                parse_u64_cursor(input.as_bytes()),
                expect,
                "input {input:?}"
            );
        };
        check("0", Some(0));
        check("0017", Some(17));
        check("+5", Some(5));
        check(" 5", Some(5));
        check("18446744073709551615", Some(u64::MAX));
        check("18446744073709551616", None);
        check("-1", None);
        check("", None);
        check("+", None);
        check("abc", None);
    }

    #[test]
    fn lenient_parsing_accepts_a_plus_sign_and_leading_zeros() {
        assert_eq!(parse_i64_lenient(b"+12"), Some(12));
        assert_eq!(parse_i64_lenient(b"-007"), Some(-7));
        assert_eq!(parse_i64_lenient(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64_lenient(b"9223372036854775808"), None);
        assert_eq!(parse_i64_lenient(b""), None);
        assert_eq!(parse_i64_lenient(b"-"), None);
        assert_eq!(parse_i64_lenient(b"1x"), None);
    }

    #[test]
    fn formatting_matches_the_standard_library_at_the_edges() {
        for value in [0, 1, -1, 9, 10, -10, 12345, i64::MAX, i64::MIN] {
            let mut buffer = [0u8; MAX_I64_DECIMAL_BYTES];
            assert_eq!(format_i64(value, &mut buffer), value.to_string().as_bytes());
        }
    }
}
