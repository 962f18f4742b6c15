//! The scripts scd runs natively. scd embeds no Lua interpreter: session handlers send a handful of
//! well-known scripts (the lock release of phpredis and of most Redis lock libraries), which scd
//! recognises by SHA1 or by text and runs as one atomic store operation. Any other script gets an
//! error that names what is supported.

use std::collections::HashMap;
use std::sync::Mutex;

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

/// How many SHA1s of spelling variants a node remembers. A variant's SHA1 is its own text's, as
/// Redis names it; clients that computed it themselves (node-redis) send it with EVALSHA. Past
/// the bound the cache is emptied, as by SCRIPT FLUSH: a forgotten SHA1 costs its client one
/// `NOSCRIPT` and a fall-back to EVAL, which registers it again.
pub(crate) const SCRIPT_VARIANTS_MAX: usize = 1024;

/// The scripts a node answers EVALSHA for: the canonical texts' SHA1s always (they are built in,
/// so no node of a cluster needs a SCRIPT LOAD first), and the SHA1s of the spelling variants
/// loaded with SCRIPT LOAD or run with EVAL on this node until SCRIPT FLUSH.
#[derive(Debug, Default)]
pub(crate) struct ScriptCache {
    /// Lowercase hexadecimal SHA1 of a variant's text, and what it does.
    variants: Mutex<HashMap<String, NativeScript>>,
}

impl ScriptCache {
    /// The script EVALSHA, SCRIPT EXISTS name by `sha1` (either case of hex digits).
    pub(crate) fn find(&self, sha1: &[u8]) -> Option<NativeScript> {
        NativeScript::from_sha1(sha1).or_else(|| {
            let sha1 = std::str::from_utf8(sha1).ok()?.to_ascii_lowercase();
            self.lock().get(&sha1).copied()
        })
    }

    /// The script of a text given to EVAL or SCRIPT LOAD, and the SHA1 of that text; a
    /// variant's SHA1 is remembered so that EVALSHA finds it.
    pub(crate) fn recognise(&self, text: &[u8]) -> Option<(NativeScript, String)> {
        let script = NativeScript::from_text(text)?;
        if text == script.canonical_text().as_bytes() {
            return Some((script, script.sha1_hex()));
        }
        let sha1 = sha1_hex(text);
        let mut variants = self.lock();
        if variants.len() >= SCRIPT_VARIANTS_MAX && !variants.contains_key(&sha1) {
            variants.clear();
        }
        variants.insert(sha1.clone(), script);
        Some((script, sha1))
    }

    /// SCRIPT FLUSH: forgets the variants; the canonical scripts stay.
    pub(crate) fn flush(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NativeScript>> {
        // A panic while the map was held left it whole: every update is one insert or clear.
        self.variants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    fn a_variant_is_found_by_the_sha1_of_its_own_text_until_flushed() {
        let cache = ScriptCache::default();
        let canonical = NativeScript::CompareAndDelete;
        let variant = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
        let variant_sha1 = sha1_hex(variant.as_bytes());
        assert_ne!(variant_sha1, canonical.sha1_hex());
        assert_eq!(cache.find(variant_sha1.as_bytes()), None);
        assert_eq!(
            cache.recognise(variant.as_bytes()),
            Some((canonical, variant_sha1.clone()))
        );
        assert_eq!(
            cache.find(variant_sha1.to_ascii_uppercase().as_bytes()),
            Some(canonical)
        );
        assert_eq!(
            cache.recognise(canonical.canonical_text().as_bytes()),
            Some((canonical, canonical.sha1_hex()))
        );
        assert_eq!(cache.recognise(b"return 1"), None);
        cache.flush();
        assert_eq!(cache.find(variant_sha1.as_bytes()), None);
        assert_eq!(cache.find(canonical.sha1_hex().as_bytes()), Some(canonical));
    }

    #[test]
    fn the_variant_cache_is_bounded() {
        let cache = ScriptCache::default();
        let variant = |n: usize| {
            format!(
                "if redis.call('get',KEYS[1]) == ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end{}",
                " ".repeat(n)
            )
        };
        for n in 1..=SCRIPT_VARIANTS_MAX {
            assert!(cache.recognise(variant(n).as_bytes()).is_some());
        }
        assert_eq!(cache.lock().len(), SCRIPT_VARIANTS_MAX);
        let (_, last) = cache
            .recognise(variant(SCRIPT_VARIANTS_MAX + 1).as_bytes())
            .expect("a variant");
        assert_eq!(cache.lock().len(), 1);
        assert!(cache.find(last.as_bytes()).is_some());
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
