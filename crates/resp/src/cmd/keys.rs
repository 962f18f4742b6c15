//! Keyspace commands: DEL, UNLINK, EXISTS, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL,
//! PERSIST, TOUCH, TYPE, RENAME, SCAN, KEYS.

use bytes::Bytes;

use super::{Command, Expiry, Keys, is_keyword, lossy, parse_integer, take, take_from};
use crate::error::CommandError;
use crate::number::parse_u64_cursor;

/// A command on keys, whatever their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCommand {
    /// `DEL key [key ...]`, and also UNLINK (scd frees values the same way for both).
    Del {
        /// The keys, at least one.
        keys: Vec<Bytes>,
    },
    /// `EXISTS key [key ...]`: how many of the keys exist, counting repeats.
    Exists {
        /// The keys, at least one.
        keys: Vec<Bytes>,
    },
    /// `EXPIRE key seconds [NX|XX|GT|LT]`, and PEXPIRE, EXPIREAT, PEXPIREAT as the matching
    /// [`Expiry`]. A deadline in the past deletes the key.
    Expire {
        /// The key.
        key: Bytes,
        /// When the key expires.
        expiry: Expiry,
        /// NX, XX, GT, LT.
        conditions: ExpireConditions,
    },
    /// `TTL key` or `PTTL key`.
    Ttl {
        /// The key.
        key: Bytes,
        /// Seconds for TTL, milliseconds for PTTL.
        unit: TimeUnit,
    },
    /// `PERSIST key`.
    Persist {
        /// The key.
        key: Bytes,
    },
    /// `TOUCH key [key ...]`.
    Touch {
        /// The keys, at least one.
        keys: Vec<Bytes>,
    },
    /// `TYPE key`.
    Type {
        /// The key.
        key: Bytes,
    },
    /// `RENAME key newkey`.
    Rename {
        /// The key to rename.
        key: Bytes,
        /// Its new name.
        new_key: Bytes,
    },
    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
    Scan(ScanCommand),
    /// `KEYS pattern`.
    Keys {
        /// The glob-style pattern.
        pattern: Bytes,
    },
}

impl KeyCommand {
    pub(crate) fn keys(&self) -> Keys<'_> {
        match self {
            KeyCommand::Del { keys } | KeyCommand::Exists { keys } | KeyCommand::Touch { keys } => {
                Keys::every(keys, 1)
            }
            KeyCommand::Expire { key, .. }
            | KeyCommand::Ttl { key, .. }
            | KeyCommand::Persist { key }
            | KeyCommand::Type { key } => Keys::one(key),
            KeyCommand::Rename { key, new_key } => Keys::two(key, new_key),
            KeyCommand::Scan(_) | KeyCommand::Keys { .. } => Keys::default(),
        }
    }
}

/// EXPIRE's conditions. Parsing guarantees NX comes alone and GT never with LT; XX may come
/// with GT or LT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ExpireConditions {
    /// NX: only if the key has no expiry.
    pub only_if_no_expiry: bool,
    /// XX: only if the key has an expiry.
    pub only_if_has_expiry: bool,
    /// GT: only if the new expiry is later (a key without expiry counts as infinite).
    pub only_if_later: bool,
    /// LT: only if the new expiry is earlier (a key without expiry counts as infinite).
    pub only_if_earlier: bool,
}

/// The unit of a TTL reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// TTL.
    Seconds,
    /// PTTL.
    Milliseconds,
}

/// SCAN's parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCommand {
    /// Where to continue; 0 starts a new iteration.
    pub cursor: u64,
    /// MATCH's glob-style pattern.
    pub pattern_opt: Option<Bytes>,
    /// COUNT's hint, at least 1; the node caps it.
    pub count_opt: Option<u64>,
    /// TYPE's filter.
    pub type_opt: Option<ValueTypeFilter>,
}

/// SCAN's TYPE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueTypeFilter {
    /// `string`.
    String,
    /// `list`.
    List,
    /// `set`.
    Set,
    /// `zset`.
    SortedSet,
    /// `hash`.
    Hash,
    /// `stream`.
    Stream,
    /// Any other name: Redis 7 accepts it and matches no key.
    Unknown,
}

impl ValueTypeFilter {
    fn from_name(name: &[u8]) -> ValueTypeFilter {
        [
            ("string", ValueTypeFilter::String),
            ("list", ValueTypeFilter::List),
            ("set", ValueTypeFilter::Set),
            ("zset", ValueTypeFilter::SortedSet),
            ("hash", ValueTypeFilter::Hash),
            ("stream", ValueTypeFilter::Stream),
        ]
        .into_iter()
        .find(|(word, _)| is_keyword(name, word))
        .map_or(ValueTypeFilter::Unknown, |(_, filter)| filter)
    }
}

fn key(command: KeyCommand) -> Result<Command, CommandError> {
    Ok(Command::Key(command))
}

pub(crate) fn parse_del(args: Vec<Bytes>) -> Result<Command, CommandError> {
    key(KeyCommand::Del {
        keys: take_from(args, 1),
    })
}

pub(crate) fn parse_unlink(args: Vec<Bytes>) -> Result<Command, CommandError> {
    parse_del(args)
}

pub(crate) fn parse_exists(args: Vec<Bytes>) -> Result<Command, CommandError> {
    key(KeyCommand::Exists {
        keys: take_from(args, 1),
    })
}

pub(crate) fn parse_touch(args: Vec<Bytes>) -> Result<Command, CommandError> {
    key(KeyCommand::Touch {
        keys: take_from(args, 1),
    })
}

/// The four EXPIRE commands, parsed like Redis' `expireGenericCommand`: options first, then
/// the amount.
fn parse_expire_generic(
    mut args: Vec<Bytes>,
    expiry_of_amount: fn(i64) -> Expiry,
    command: &'static str,
) -> Result<Command, CommandError> {
    let mut conditions = ExpireConditions::default();
    for option in &args[3..] {
        if is_keyword(option, "nx") {
            conditions.only_if_no_expiry = true;
        } else if is_keyword(option, "xx") {
            conditions.only_if_has_expiry = true;
        } else if is_keyword(option, "gt") {
            conditions.only_if_later = true;
        } else if is_keyword(option, "lt") {
            conditions.only_if_earlier = true;
        } else {
            return Err(CommandError::UnsupportedExpireOption {
                option: lossy(option),
            });
        }
    }
    if conditions.only_if_no_expiry
        && (conditions.only_if_has_expiry || conditions.only_if_later || conditions.only_if_earlier)
    {
        return Err(CommandError::ExpireNxNotCompatible);
    }
    if conditions.only_if_later && conditions.only_if_earlier {
        return Err(CommandError::ExpireGtLtNotCompatible);
    }
    let expiry = expiry_of_amount(parse_integer(&args[2])?).validated(false, command)?;
    key(KeyCommand::Expire {
        key: take(&mut args, 1),
        expiry,
        conditions,
    })
}

pub(crate) fn parse_expire(args: Vec<Bytes>) -> Result<Command, CommandError> {
    parse_expire_generic(args, Expiry::Seconds, "expire")
}

pub(crate) fn parse_pexpire(args: Vec<Bytes>) -> Result<Command, CommandError> {
    parse_expire_generic(args, Expiry::Milliseconds, "pexpire")
}

pub(crate) fn parse_expireat(args: Vec<Bytes>) -> Result<Command, CommandError> {
    parse_expire_generic(args, Expiry::UnixSeconds, "expireat")
}

pub(crate) fn parse_pexpireat(args: Vec<Bytes>) -> Result<Command, CommandError> {
    parse_expire_generic(args, Expiry::UnixMilliseconds, "pexpireat")
}

pub(crate) fn parse_ttl(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    key(KeyCommand::Ttl {
        key: take(&mut args, 1),
        unit: TimeUnit::Seconds,
    })
}

pub(crate) fn parse_pttl(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    key(KeyCommand::Ttl {
        key: take(&mut args, 1),
        unit: TimeUnit::Milliseconds,
    })
}

pub(crate) fn parse_persist(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    key(KeyCommand::Persist {
        key: take(&mut args, 1),
    })
}

pub(crate) fn parse_type(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    key(KeyCommand::Type {
        key: take(&mut args, 1),
    })
}

pub(crate) fn parse_rename(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    key(KeyCommand::Rename {
        key: take(&mut args, 1),
        new_key: take(&mut args, 2),
    })
}

pub(crate) fn parse_keys(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    key(KeyCommand::Keys {
        pattern: take(&mut args, 1),
    })
}

pub(crate) fn parse_scan(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let cursor = parse_u64_cursor(&args[1]).ok_or(CommandError::InvalidCursor)?;
    let mut scan = ScanCommand {
        cursor,
        pattern_opt: None,
        count_opt: None,
        type_opt: None,
    };
    let mut index = 2;
    while index < args.len() {
        let has_value = index + 1 < args.len();
        if is_keyword(&args[index], "count") && has_value {
            let count = parse_integer(&args[index + 1])?;
            scan.count_opt = Some(
                u64::try_from(count)
                    .ok()
                    .filter(|&count| count >= 1)
                    .ok_or(CommandError::Syntax)?,
            );
        } else if is_keyword(&args[index], "match") && has_value {
            scan.pattern_opt = Some(take(&mut args, index + 1));
        } else if is_keyword(&args[index], "type") && has_value {
            scan.type_opt = Some(ValueTypeFilter::from_name(&args[index + 1]));
        } else {
            return Err(CommandError::Syntax);
        }
        index += 2;
    }
    key(KeyCommand::Scan(scan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::test_support::{b, check, check_error};

    fn keys_of(names: &[&str]) -> Vec<Bytes> {
        names.iter().map(|name| b(name)).collect()
    }

    fn expire(expiry: Expiry, conditions: ExpireConditions) -> Command {
        Command::Key(KeyCommand::Expire {
            key: b("k"),
            expiry,
            conditions,
        })
    }

    fn scan(
        cursor: u64,
        pattern_opt: Option<&str>,
        count_opt: Option<u64>,
        type_opt: Option<ValueTypeFilter>,
    ) -> Command {
        Command::Key(KeyCommand::Scan(ScanCommand {
            cursor,
            pattern_opt: pattern_opt.map(b),
            count_opt,
            type_opt,
        }))
    }

    #[test]
    fn del_and_unlink_are_the_same_command() {
        let del = Command::Key(KeyCommand::Del {
            keys: keys_of(&["a", "b"]),
        });
        check("DEL a b", del.clone());
        check("UNLINK a b", del);
        check_error("DEL", "ERR wrong number of arguments for 'del' command");
        check_error(
            "UNLINK",
            "ERR wrong number of arguments for 'unlink' command",
        );
    }

    #[test]
    fn exists_and_touch_keep_repeated_keys() {
        check(
            "EXISTS a a",
            Command::Key(KeyCommand::Exists {
                keys: keys_of(&["a", "a"]),
            }),
        );
        check(
            "TOUCH a",
            Command::Key(KeyCommand::Touch {
                keys: keys_of(&["a"]),
            }),
        );
        check_error(
            "EXISTS",
            "ERR wrong number of arguments for 'exists' command",
        );
    }

    #[test]
    fn expire_family_parses_amounts_and_conditions() {
        let none = ExpireConditions::default();
        check("EXPIRE k 10", expire(Expiry::Seconds(10), none));
        check("EXPIRE k -5", expire(Expiry::Seconds(-5), none));
        check("EXPIRE k 0", expire(Expiry::Seconds(0), none));
        check("PEXPIRE k 100", expire(Expiry::Milliseconds(100), none));
        check(
            "EXPIREAT k 1700000000",
            expire(Expiry::UnixSeconds(1_700_000_000), none),
        );
        check(
            "PEXPIREAT k 9223372036854775807",
            expire(Expiry::UnixMilliseconds(i64::MAX), none),
        );
        check(
            "EXPIRE k 10 nx",
            expire(
                Expiry::Seconds(10),
                ExpireConditions {
                    only_if_no_expiry: true,
                    ..none
                },
            ),
        );
        check(
            "EXPIRE k 10 XX GT",
            expire(
                Expiry::Seconds(10),
                ExpireConditions {
                    only_if_has_expiry: true,
                    only_if_later: true,
                    ..none
                },
            ),
        );
        check(
            "PEXPIRE k 10 LT",
            expire(
                Expiry::Milliseconds(10),
                ExpireConditions {
                    only_if_earlier: true,
                    ..none
                },
            ),
        );
    }

    #[test]
    fn expire_errors_match_redis() {
        for line in [
            "EXPIRE k 10 NX XX",
            "EXPIRE k 10 NX GT",
            "EXPIRE k 10 LT NX",
        ] {
            check_error(
                line,
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            );
        }
        check_error(
            "EXPIRE k 10 GT LT",
            "ERR GT and LT options at the same time are not compatible",
        );
        check_error("EXPIRE k 10 FOO", "ERR Unsupported option FOO");
        // Options are checked before the amount, as in Redis.
        check_error("EXPIRE k x FOO", "ERR Unsupported option FOO");
        check_error("EXPIRE k x", "ERR value is not an integer or out of range");
        check_error(
            "EXPIRE k 9223372036854776",
            "ERR invalid expire time in 'expire' command",
        );
        check_error(
            "EXPIRE k -9223372036854776",
            "ERR invalid expire time in 'expire' command",
        );
        check_error(
            "PEXPIRE k 9223372036854775807",
            "ERR invalid expire time in 'pexpire' command",
        );
        check_error(
            "EXPIREAT k 9223372036854775807",
            "ERR invalid expire time in 'expireat' command",
        );
        check_error(
            "EXPIRE k",
            "ERR wrong number of arguments for 'expire' command",
        );
        check_error(
            "PEXPIREAT k",
            "ERR wrong number of arguments for 'pexpireat' command",
        );
    }

    #[test]
    fn single_key_commands_parse() {
        check(
            "TTL k",
            Command::Key(KeyCommand::Ttl {
                key: b("k"),
                unit: TimeUnit::Seconds,
            }),
        );
        check(
            "PTTL k",
            Command::Key(KeyCommand::Ttl {
                key: b("k"),
                unit: TimeUnit::Milliseconds,
            }),
        );
        check(
            "PERSIST k",
            Command::Key(KeyCommand::Persist { key: b("k") }),
        );
        check("TYPE k", Command::Key(KeyCommand::Type { key: b("k") }));
        check(
            "RENAME a b",
            Command::Key(KeyCommand::Rename {
                key: b("a"),
                new_key: b("b"),
            }),
        );
        check(
            "KEYS user:*",
            Command::Key(KeyCommand::Keys {
                pattern: b("user:*"),
            }),
        );
        check_error("TTL", "ERR wrong number of arguments for 'ttl' command");
        check_error(
            "RENAME a",
            "ERR wrong number of arguments for 'rename' command",
        );
        check_error("KEYS", "ERR wrong number of arguments for 'keys' command");
        check_error(
            "TYPE a b",
            "ERR wrong number of arguments for 'type' command",
        );
    }

    #[test]
    fn scan_parses_its_options() {
        check("SCAN 0", scan(0, None, None, None));
        check(
            "SCAN 17 MATCH user:* COUNT 100 TYPE string",
            scan(17, Some("user:*"), Some(100), Some(ValueTypeFilter::String)),
        );
        check(
            "scan 0 type ZSET count 5",
            scan(0, None, Some(5), Some(ValueTypeFilter::SortedSet)),
        );
        check(
            "SCAN 0 TYPE hash",
            scan(0, None, None, Some(ValueTypeFilter::Hash)),
        );
        check(
            "SCAN 0 TYPE foo",
            scan(0, None, None, Some(ValueTypeFilter::Unknown)),
        );
        check(
            "SCAN 18446744073709551615",
            scan(u64::MAX, None, None, None),
        );
        check("SCAN 007", scan(7, None, None, None));
        check("SCAN 0 MATCH a MATCH b", scan(0, Some("b"), None, None));
    }

    #[test]
    fn scan_errors_match_redis() {
        check_error("SCAN x", "ERR invalid cursor");
        check_error("SCAN -1", "ERR invalid cursor");
        check_error("SCAN 18446744073709551616", "ERR invalid cursor");
        check_error("SCAN 0 COUNT 0", "ERR syntax error");
        check_error("SCAN 0 COUNT -3", "ERR syntax error");
        check_error(
            "SCAN 0 COUNT x",
            "ERR value is not an integer or out of range",
        );
        check_error("SCAN 0 MATCH", "ERR syntax error");
        check_error("SCAN 0 FOO bar", "ERR syntax error");
        check_error("SCAN", "ERR wrong number of arguments for 'scan' command");
    }
}
