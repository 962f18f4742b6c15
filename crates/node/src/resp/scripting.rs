//! The scripts scd runs natively. scd embeds no Lua interpreter: session handlers send a handful of
//! well-known scripts (the lock release of phpredis and of most Redis lock libraries), which scd
//! recognises by SHA1 or by text and runs as one atomic store operation. Any other script gets an
//! error that names what is supported.

use bytes::Bytes;

/// What a recognised script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NativeScript {
    /// `if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end`:
    /// delete the key only if it holds the given value (a lock released by its owner).
    CompareAndDelete,
}

impl NativeScript {
    /// Every script scd runs, for SCRIPT EXISTS and error messages.
    pub(crate) const ALL: [NativeScript; 1] = [NativeScript::CompareAndDelete];

    /// The canonical text (phpredis' lock release script; its SHA1 is what phpredis sends).
    pub(crate) fn canonical_text(self) -> &'static str {
        match self {
            NativeScript::CompareAndDelete => {
                "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end"
            }
        }
    }

    /// Lowercase hexadecimal SHA1 of the canonical text.
    pub(crate) fn sha1_hex(self) -> String {
        sha1_hex(self.canonical_text().as_bytes())
    }

    /// How many keys and arguments it takes.
    pub(crate) fn arity(self) -> (usize, usize) {
        match self {
            NativeScript::CompareAndDelete => (1, 1),
        }
    }

    /// The script of a text: the canonical text, or one that differs from it only in white
    /// space, letter case of `redis.call` command names, quote style or `GET`/`DEL` spelling
    /// (Symfony, redlock and others send such variants).
    pub(crate) fn from_text(text: &[u8]) -> Option<NativeScript> {
        let normalized = normalize(text);
        NativeScript::ALL
            .into_iter()
            .find(|script| normalize(script.canonical_text().as_bytes()) == normalized)
    }

    /// The script of a SHA1 given in EVALSHA, SCRIPT EXISTS (either case of hex digits).
    pub(crate) fn from_sha1(sha1: &[u8]) -> Option<NativeScript> {
        NativeScript::ALL
            .into_iter()
            .find(|script| script.sha1_hex().as_bytes().eq_ignore_ascii_case(sha1))
    }
}

/// Lowercase hexadecimal SHA1, as Redis names scripts.
pub(crate) fn sha1_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Drops white space and semicolons, lowercases, and makes all quotes double quotes. Lua source
/// that normalises to the same text does the same thing for these short scripts.
fn normalize(text: &[u8]) -> Vec<u8> {
    text.iter()
        .filter(|byte| !byte.is_ascii_whitespace() && **byte != b';')
        .map(|byte| match byte {
            b'\'' => b'"',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// The error for a script scd does not run.
pub(crate) fn unsupported_script_error(script: &Bytes) -> String {
    let supported: Vec<String> = NativeScript::ALL
        .iter()
        .map(|script| format!("'{}' (sha1 {})", script.canonical_text(), script.sha1_hex()))
        .collect();
    format!(
        "ERR scd runs no Lua; this script (sha1 {}) is not one it implements natively. Supported: {}",
        sha1_hex(script),
        supported.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phpredis_lock_release_script_is_recognised_by_its_sha1() {
        // The SHA1 phpredis sends with EVALSHA (DESIGN.md, Locks).
        assert_eq!(
            NativeScript::CompareAndDelete.sha1_hex(),
            "b70c2384248f88e6b75b9f89241a180f856ad852"
        );
        assert_eq!(
            NativeScript::from_sha1(b"B70C2384248F88E6B75B9F89241A180F856AD852"),
            Some(NativeScript::CompareAndDelete)
        );
        assert_eq!(
            NativeScript::from_sha1(b"0000000000000000000000000000000000000000"),
            None
        );
    }

    #[test]
    fn spelling_variants_of_compare_and_delete_are_recognised() {
        for text in [
            "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end",
            "if redis.call('GET', KEYS[1]) == ARGV[1] then\n  return redis.call('DEL', KEYS[1])\nelse\n  return 0\nend",
            "if redis.call(\"get\", KEYS[1]) == ARGV[1] then return redis.call(\"del\", KEYS[1]); else return 0; end",
        ] {
            assert_eq!(
                NativeScript::from_text(text.as_bytes()),
                Some(NativeScript::CompareAndDelete),
                "{text}"
            );
        }
        assert_eq!(
            NativeScript::from_text(b"return redis.call('get', KEYS[1])"),
            None
        );
        assert_eq!(
            NativeScript::from_text(
                b"if redis.call('get',KEYS[1]) == ARGV[2] then return redis.call('del',KEYS[1]) else return 0 end"
            ),
            None
        );
    }

    #[test]
    fn unsupported_scripts_are_told_what_is_supported() {
        let line = unsupported_script_error(&Bytes::from_static(b"return 1"));
        assert!(line.starts_with("ERR scd runs no Lua"), "{line}");
        assert!(
            line.contains("b70c2384248f88e6b75b9f89241a180f856ad852"),
            "{line}"
        );
        assert!(line.contains(&sha1_hex(b"return 1")), "{line}");
    }
}
