//! `glob_match`: Redis's `stringmatchlen` pattern language for KEYS, SCAN MATCH and friends.
//!
//! `*` any run of bytes, `?` one byte, `[abc]` `[^a]` `[a-z]` classes, `\x` a literal `x`.
//! Matching is iterative with one backtrack point, so no pattern can blow the stack or take
//! exponential time (Redis needed a nesting limit for its recursive version).

/// Whether `key` matches `pattern` with Redis's `stringmatchlen` semantics (case-sensitive).
///
/// The corners follow Redis: an unterminated class runs to the end of the pattern, a trailing
/// lone `\` matches a `\`, a reversed range `[z-a]` is swapped, and `*` never matches an empty
/// key on its own (Redis's loop stops when the key is exhausted).
pub fn glob_match(pattern: &[u8], key: &[u8]) -> bool {
    let mut pattern_index = 0;
    let mut key_index = 0;
    // Where to resume after the last `*`: the pattern just past it, and the next key byte to try
    // giving to the star.
    let mut backtrack: Option<(usize, usize)> = None;
    while key_index < key.len() {
        if pattern.get(pattern_index) == Some(&b'*') {
            while pattern.get(pattern_index) == Some(&b'*') {
                pattern_index += 1;
            }
            if pattern_index == pattern.len() {
                return true;
            }
            backtrack = Some((pattern_index, key_index));
            continue;
        }
        if pattern_index < pattern.len() {
            let (matched, next_pattern_index) = match_one(pattern, pattern_index, key[key_index]);
            if matched {
                pattern_index = next_pattern_index;
                key_index += 1;
                if key_index == key.len() {
                    while pattern.get(pattern_index) == Some(&b'*') {
                        pattern_index += 1;
                    }
                }
                continue;
            }
        }
        match backtrack {
            Some((star_pattern_index, star_key_index)) if star_key_index + 1 < key.len() => {
                backtrack = Some((star_pattern_index, star_key_index + 1));
                pattern_index = star_pattern_index;
                key_index = star_key_index + 1;
            }
            _ => return false,
        }
    }
    pattern_index == pattern.len()
}

/// Matches the single-byte token at `pattern[index]` (anything but `*`) against `byte`.
/// Returns whether it matched and the index just past the token.
fn match_one(pattern: &[u8], index: usize, byte: u8) -> (bool, usize) {
    match pattern[index] {
        b'?' => (true, index + 1),
        b'\\' if index + 1 < pattern.len() => (pattern[index + 1] == byte, index + 2),
        b'[' => match_class(pattern, index + 1, byte),
        literal => (literal == byte, index + 1),
    }
}

/// Matches a class whose body starts at `pattern[index]` (just past `[`), the way Redis parses it.
fn match_class(pattern: &[u8], mut index: usize, byte: u8) -> (bool, usize) {
    let negate = pattern.get(index) == Some(&b'^');
    if negate {
        index += 1;
    }
    let mut matched = false;
    loop {
        let remaining = pattern.len().saturating_sub(index);
        if remaining == 0 {
            // Unterminated class: Redis steps back onto the last byte and stops, so the class
            // consumes the rest of the pattern.
            break;
        }
        let current = pattern[index];
        if current == b'\\' && remaining >= 2 {
            index += 1;
            if pattern[index] == byte {
                matched = true;
            }
        } else if current == b']' {
            index += 1;
            break;
        } else if remaining >= 3 && pattern[index + 1] == b'-' {
            let (mut start, mut end) = (current, pattern[index + 2]);
            if start > end {
                std::mem::swap(&mut start, &mut end);
            }
            if (start..=end).contains(&byte) {
                matched = true;
            }
            index += 2;
        } else if current == byte {
            matched = true;
        }
        index += 1;
    }
    (matched != negate, index.min(pattern.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, key: &str, expect: bool) {
        assert_eq!(
            glob_match(pattern.as_bytes(), key.as_bytes()),
            expect,
            "pattern {pattern:?} against {key:?}"
        );
    }

    #[test]
    fn glob_patterns_match_like_redis_stringmatchlen() {
        check("*", "anything", true);
        check("*", "", false);
        check("", "", true);
        check("", "a", false);
        check("h?llo", "hello", true);
        check("h?llo", "hllo", false);
        check("h*llo", "hllo", true);
        check("h*llo", "heeeello", true);
        check("h[ae]llo", "hello", true);
        check("h[ae]llo", "hillo", false);
        check("h[^e]llo", "hallo", true);
        check("h[^e]llo", "hello", false);
        check("h[a-b]llo", "hbllo", true);
        check("h[a-b]llo", "hcllo", false);
        check("h[b-a]llo", "hallo", true);
        check("h\\*llo", "h*llo", true);
        check("h\\*llo", "hello", false);
        check("sess:*", "sess:abc", true);
        check("sess:*", "session", false);
        check("*:lock", "abc:lock", true);
        check("*:lock", "abc:locks", false);
        check("a*b*c", "aXbYc", true);
        check("a*b*c", "aXbY", false);
        check("a*", "a", true);
        check("a**", "a", true);
        check("*a*", "a", true);
        check("[]a", "a", false);
        check("[abc", "b", true);
        check("[abc", "d", false);
        check("[a\\]]", "]", true);
        check("x\\", "x\\", true);
        check("[a-]", "b", false);
        check("[a-]", "^", true);
        check("ab?", "ab", false);
        check("?", "", false);
    }

    #[test]
    fn a_pathological_pattern_finishes_quickly() {
        let pattern = "a*".repeat(50) + "b";
        let key = "a".repeat(10_000);
        assert!(!glob_match(pattern.as_bytes(), key.as_bytes()));
    }
}
