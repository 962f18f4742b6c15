//! Hash commands: HSET, HGET, HMSET, HMGET, HGETALL, HDEL, HEXISTS, HLEN, HKEYS, HVALS,
//! HINCRBY.

use bytes::Bytes;

use super::{Command, Pairs, parse_integer, take, take_from};
use crate::error::CommandError;

/// A command on a hash value. Every hash command has exactly one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashCommand {
    /// `HSET key field value [field value ...]`: replies how many fields were added.
    HSet {
        /// The key.
        key: Bytes,
        /// The fields and values, at least one pair.
        fields_and_values: Pairs,
    },
    /// `HMSET key field value [field value ...]`: HSET replying `+OK`.
    HMSet {
        /// The key.
        key: Bytes,
        /// The fields and values, at least one pair.
        fields_and_values: Pairs,
    },
    /// `HGET key field`.
    HGet {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
    /// `HMGET key field [field ...]`.
    HMGet {
        /// The key.
        key: Bytes,
        /// The fields, at least one.
        fields: Vec<Bytes>,
    },
    /// `HGETALL key`.
    HGetAll {
        /// The key.
        key: Bytes,
    },
    /// `HDEL key field [field ...]`.
    HDel {
        /// The key.
        key: Bytes,
        /// The fields, at least one.
        fields: Vec<Bytes>,
    },
    /// `HEXISTS key field`.
    HExists {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
    /// `HLEN key`.
    HLen {
        /// The key.
        key: Bytes,
    },
    /// `HKEYS key`.
    HKeys {
        /// The key.
        key: Bytes,
    },
    /// `HVALS key`.
    HVals {
        /// The key.
        key: Bytes,
    },
    /// `HINCRBY key field delta`.
    HIncrBy {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
        /// What to add; the node replies `ERR increment or decrement would overflow` when
        /// the sum does not fit.
        delta: i64,
    },
}

impl HashCommand {
    /// The hash's key.
    pub fn key(&self) -> &Bytes {
        match self {
            HashCommand::HSet { key, .. }
            | HashCommand::HMSet { key, .. }
            | HashCommand::HGet { key, .. }
            | HashCommand::HMGet { key, .. }
            | HashCommand::HGetAll { key }
            | HashCommand::HDel { key, .. }
            | HashCommand::HExists { key, .. }
            | HashCommand::HLen { key }
            | HashCommand::HKeys { key }
            | HashCommand::HVals { key }
            | HashCommand::HIncrBy { key, .. } => key,
        }
    }
}

fn hash(command: HashCommand) -> Result<Command, CommandError> {
    Ok(Command::Hash(command))
}

/// The key and the field-value pairs of HSET and HMSET, whose arity alone cannot say that
/// the pairs are complete.
fn key_and_pairs(
    mut args: Vec<Bytes>,
    command: &'static str,
) -> Result<(Bytes, Pairs), CommandError> {
    let key = take(&mut args, 1);
    let fields_and_values = Pairs::from_flat(take_from(args, 2))
        .ok_or(CommandError::WrongNumberOfArguments { command })?;
    Ok((key, fields_and_values))
}

pub(crate) fn parse_hset(args: Vec<Bytes>) -> Result<Command, CommandError> {
    let (key, fields_and_values) = key_and_pairs(args, "hset")?;
    hash(HashCommand::HSet {
        key,
        fields_and_values,
    })
}

pub(crate) fn parse_hmset(args: Vec<Bytes>) -> Result<Command, CommandError> {
    let (key, fields_and_values) = key_and_pairs(args, "hmset")?;
    hash(HashCommand::HMSet {
        key,
        fields_and_values,
    })
}

pub(crate) fn parse_hget(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    hash(HashCommand::HGet {
        key: take(&mut args, 1),
        field: take(&mut args, 2),
    })
}

pub(crate) fn parse_hmget(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let key = take(&mut args, 1);
    hash(HashCommand::HMGet {
        key,
        fields: take_from(args, 2),
    })
}

pub(crate) fn parse_hgetall(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    hash(HashCommand::HGetAll {
        key: take(&mut args, 1),
    })
}

pub(crate) fn parse_hdel(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let key = take(&mut args, 1);
    hash(HashCommand::HDel {
        key,
        fields: take_from(args, 2),
    })
}

pub(crate) fn parse_hexists(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    hash(HashCommand::HExists {
        key: take(&mut args, 1),
        field: take(&mut args, 2),
    })
}

pub(crate) fn parse_hlen(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    hash(HashCommand::HLen {
        key: take(&mut args, 1),
    })
}

pub(crate) fn parse_hkeys(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    hash(HashCommand::HKeys {
        key: take(&mut args, 1),
    })
}

pub(crate) fn parse_hvals(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    hash(HashCommand::HVals {
        key: take(&mut args, 1),
    })
}

pub(crate) fn parse_hincrby(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let delta = parse_integer(&args[3])?;
    hash(HashCommand::HIncrBy {
        key: take(&mut args, 1),
        field: take(&mut args, 2),
        delta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::test_support::{b, check, check_error};

    fn pairs(flat: &[&str]) -> Pairs {
        Pairs::from_flat(flat.iter().map(|text| b(text)).collect())
            .unwrap_or_else(|| panic!("odd pairs {flat:?}"))
    }

    #[test]
    fn hset_and_hmset_take_complete_pairs() {
        check(
            "HSET h f v",
            Command::Hash(HashCommand::HSet {
                key: b("h"),
                fields_and_values: pairs(&["f", "v"]),
            }),
        );
        check(
            "HSET h f v f2 v2",
            Command::Hash(HashCommand::HSet {
                key: b("h"),
                fields_and_values: pairs(&["f", "v", "f2", "v2"]),
            }),
        );
        check(
            "HMSET h f v",
            Command::Hash(HashCommand::HMSet {
                key: b("h"),
                fields_and_values: pairs(&["f", "v"]),
            }),
        );
        check_error(
            "HSET h f",
            "ERR wrong number of arguments for 'hset' command",
        );
        check_error(
            "HSET h f v f2",
            "ERR wrong number of arguments for 'hset' command",
        );
        check_error(
            "HMSET h f v f2",
            "ERR wrong number of arguments for 'hmset' command",
        );
    }

    #[test]
    fn hash_reads_parse() {
        check(
            "HGET h f",
            Command::Hash(HashCommand::HGet {
                key: b("h"),
                field: b("f"),
            }),
        );
        check(
            "HMGET h a b",
            Command::Hash(HashCommand::HMGet {
                key: b("h"),
                fields: vec![b("a"), b("b")],
            }),
        );
        check(
            "HGETALL h",
            Command::Hash(HashCommand::HGetAll { key: b("h") }),
        );
        check(
            "HEXISTS h f",
            Command::Hash(HashCommand::HExists {
                key: b("h"),
                field: b("f"),
            }),
        );
        check("HLEN h", Command::Hash(HashCommand::HLen { key: b("h") }));
        check("HKEYS h", Command::Hash(HashCommand::HKeys { key: b("h") }));
        check("HVALS h", Command::Hash(HashCommand::HVals { key: b("h") }));
        check_error("HGET h", "ERR wrong number of arguments for 'hget' command");
        check_error(
            "HMGET h",
            "ERR wrong number of arguments for 'hmget' command",
        );
        check_error(
            "HGETALL",
            "ERR wrong number of arguments for 'hgetall' command",
        );
        check_error(
            "HEXISTS h",
            "ERR wrong number of arguments for 'hexists' command",
        );
        check_error(
            "HLEN h x",
            "ERR wrong number of arguments for 'hlen' command",
        );
        check_error("HKEYS", "ERR wrong number of arguments for 'hkeys' command");
        check_error("HVALS", "ERR wrong number of arguments for 'hvals' command");
    }

    #[test]
    fn hash_writes_parse() {
        check(
            "HDEL h a b",
            Command::Hash(HashCommand::HDel {
                key: b("h"),
                fields: vec![b("a"), b("b")],
            }),
        );
        check(
            "HINCRBY h f -3",
            Command::Hash(HashCommand::HIncrBy {
                key: b("h"),
                field: b("f"),
                delta: -3,
            }),
        );
        check_error("HDEL h", "ERR wrong number of arguments for 'hdel' command");
        check_error(
            "HINCRBY h f x",
            "ERR value is not an integer or out of range",
        );
        check_error(
            "HINCRBY h f",
            "ERR wrong number of arguments for 'hincrby' command",
        );
    }

    #[test]
    fn every_hash_command_names_its_key() {
        let command = HashCommand::HIncrBy {
            key: b("h"),
            field: b("f"),
            delta: 1,
        };
        assert_eq!(command.key(), &b("h"));
    }
}
