//! Authentication on the memcached port when `--requirepass` is set.
//!
//! - Binary: SASL with the one mechanism scd offers, `PLAIN` (RFC 4616: `authzid\0user\0password`),
//!   as libmemcached and php-memcached speak it. The user name is not checked: scd has one
//!   password, and clients must send some name.
//! - Text: memcached's convention for its `-Y` option (`proto_text.c`, `process_auth`): the first
//!   command is `set <any key> <flags> <exptime> <bytes>` whose data is `<user> <password>`,
//!   answered `STORED`, `CLIENT_ERROR authentication failure` or `CLIENT_ERROR bad authentication
//!   token format`; any other command before it gets `CLIENT_ERROR unauthenticated`. A password
//!   with a space cannot be sent this way (nor to memcached).
//!
//! Without `--requirepass` every exchange succeeds, so a client configured with credentials works
//! against a node without a password.

use memcache::Limits;
use memcache::binary::MAX_SASL_DATA_BYTES;

use crate::config::NodeConfig;

/// The SASL mechanisms scd offers, as SASL_LIST_MECHS lists them.
pub(super) const SASL_MECHANISMS: &str = "PLAIN";

/// Limits before a client has authenticated: room for the authentication and little else, so an
/// unauthenticated connection cannot make the node buffer a value-sized request. The line bound
/// is memcached's own before authentication (2048 bytes).
pub(super) const BEFORE_AUTH_LIMITS: Limits = Limits {
    max_key_bytes: 250,
    max_value_bytes: MAX_SASL_DATA_BYTES,
    max_line_bytes: 2048,
    max_keys_per_get: 1,
};

/// Whether a SASL_AUTH with `mechanism` and `data` authenticates.
pub(super) fn sasl_authenticates(config: &NodeConfig, mechanism: &[u8], data: &[u8]) -> bool {
    if mechanism != SASL_MECHANISMS.as_bytes() {
        return false;
    }
    // authzid \0 authcid \0 password; the password may not contain \0, the names may be empty.
    let mut parts = data.split(|&byte| byte == 0);
    let (Some(_authzid), Some(_user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    password_matches(config, password)
}

/// Why the text protocol's authenticating `set` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextAuthError {
    /// The data is not `<user> <password>`.
    BadFormat,
    /// The password is wrong.
    Failure,
}

impl TextAuthError {
    /// memcached's reply line for it, without `CLIENT_ERROR `.
    pub(super) fn message(self) -> &'static str {
        match self {
            TextAuthError::BadFormat => "bad authentication token format",
            TextAuthError::Failure => "authentication failure",
        }
    }
}

/// Checks the data of the text protocol's authenticating `set`: `<user> <password>`, split on
/// spaces as memcached's tokenizer does (more tokens are ignored).
pub(super) fn text_token_authenticates(
    config: &NodeConfig,
    data: &[u8],
) -> Result<(), TextAuthError> {
    let mut tokens = data
        .split(|&byte| byte == b' ')
        .filter(|token| !token.is_empty());
    let (Some(_user), Some(password)) = (tokens.next(), tokens.next()) else {
        return Err(TextAuthError::BadFormat);
    };
    if password_matches(config, password) {
        Ok(())
    } else {
        Err(TextAuthError::Failure)
    }
}

fn password_matches(config: &NodeConfig, password: &[u8]) -> bool {
    match &config.requirepass_opt {
        None => true,
        Some(expected) => constant_time_eq(expected.as_bytes(), password),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the password.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(password_opt: Option<&str>) -> NodeConfig {
        let mut config = NodeConfig::with_name("auth-test");
        config.requirepass_opt = password_opt.map(str::to_string);
        config
    }

    #[test]
    fn sasl_plain_checks_the_password_and_ignores_the_names() {
        let with_password = config(Some("s3cret"));
        let check = |mechanism: &[u8], data: &[u8], expect: bool| {
            assert_eq!(
                sasl_authenticates(&with_password, mechanism, data),
                expect,
                "{:?} {:?}",
                String::from_utf8_lossy(mechanism),
                String::from_utf8_lossy(data)
            );
        };
        check(b"PLAIN", b"\0user\0s3cret", true);
        check(b"PLAIN", b"admin\0anyone\0s3cret", true);
        check(b"PLAIN", b"\0user\0wrong", false);
        check(b"PLAIN", b"\0user\0s3cret\0", false);
        check(b"PLAIN", b"user\0s3cret", false);
        check(b"PLAIN", b"", false);
        check(b"CRAM-MD5", b"\0user\0s3cret", false);
        assert!(sasl_authenticates(&config(None), b"PLAIN", b"\0u\0any"));
    }

    #[test]
    fn the_text_token_is_a_user_and_a_password_separated_by_spaces() {
        let with_password = config(Some("s3cret"));
        let check = |data: &[u8], expect| {
            assert_eq!(
                text_token_authenticates(&with_password, data),
                expect,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        };
        check(b"user s3cret", Ok(()));
        check(b"  user   s3cret  extra", Ok(()));
        check(b"user wrong", Err(TextAuthError::Failure));
        check(b"s3cret", Err(TextAuthError::BadFormat));
        check(b"", Err(TextAuthError::BadFormat));
    }

    #[test]
    fn constant_time_comparison_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
