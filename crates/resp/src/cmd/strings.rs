//! String commands: GET, SET (and SETEX, PSETEX, GETSET), SETNX, GETEX, GETDEL, MGET, MSET,
//! APPEND, STRLEN, INCR, INCRBY, DECR, DECRBY.

use bytes::Bytes;

use super::{Command, Expiry, Keys, Pairs, TtlUpdate, is_keyword, parse_integer, take, take_from};
use crate::error::CommandError;

/// A command on string values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringCommand {
    /// `GET key`.
    Get {
        /// The key.
        key: Bytes,
    },
    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT n|KEEPTTL]`, and also SETEX, PSETEX
    /// (an expiry, reply `+OK`) and GETSET (`returns_old_value`, reply the old value).
    Set(SetCommand),
    /// `SETNX key value`: SET NX, but the reply is the integer 1 or 0.
    SetNx {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// `GETEX key [EX|PX|EXAT|PXAT n|PERSIST]`: GET, then change the TTL if the key exists.
    GetEx {
        /// The key.
        key: Bytes,
        /// The TTL change; [`TtlUpdate::Keep`] without options.
        ttl: TtlUpdate,
    },
    /// `GETDEL key`.
    GetDel {
        /// The key.
        key: Bytes,
    },
    /// `MGET key [key ...]`.
    MGet {
        /// The keys, at least one.
        keys: Vec<Bytes>,
    },
    /// `MSET key value [key value ...]`.
    MSet {
        /// The keys and values, at least one pair.
        keys_and_values: Pairs,
    },
    /// `APPEND key value`.
    Append {
        /// The key.
        key: Bytes,
        /// The bytes to append.
        value: Bytes,
    },
    /// `STRLEN key`.
    StrLen {
        /// The key.
        key: Bytes,
    },
    /// `INCRBY key delta`, and also INCR (+1), DECR (-1) and DECRBY (the negated delta).
    IncrBy {
        /// The key.
        key: Bytes,
        /// What to add; the node replies `ERR increment or decrement would overflow` when
        /// the sum does not fit.
        delta: i64,
    },
}

impl StringCommand {
    pub(crate) fn keys(&self) -> Keys<'_> {
        match self {
            StringCommand::Get { key }
            | StringCommand::SetNx { key, .. }
            | StringCommand::GetEx { key, .. }
            | StringCommand::GetDel { key }
            | StringCommand::Append { key, .. }
            | StringCommand::StrLen { key }
            | StringCommand::IncrBy { key, .. } => Keys::one(key),
            StringCommand::Set(set) => Keys::one(&set.key),
            StringCommand::MGet { keys } => Keys::every(keys, 1),
            StringCommand::MSet { keys_and_values } => Keys::every(keys_and_values.as_flat(), 2),
        }
    }
}

/// SET's parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCommand {
    /// The key.
    pub key: Bytes,
    /// The new value.
    pub value: Bytes,
    /// NX or XX.
    pub condition: SetCondition,
    /// EX/PX/EXAT/PXAT, KEEPTTL, or by default [`TtlUpdate::Remove`].
    pub ttl: TtlUpdate,
    /// GET (or GETSET): reply with the old value (or null) instead of `+OK`; when the
    /// condition fails the reply is still the old value.
    pub returns_old_value: bool,
}

/// When SET writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetCondition {
    /// Always (no NX or XX).
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

fn string(command: StringCommand) -> Result<Command, CommandError> {
    Ok(Command::String(command))
}

/// Which expiry option was given, before its amount is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpiryOption {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// The options SET and GETEX share, parsed like Redis' `parseExtendedStringArgumentsOrReply`:
/// options are checked for conflicts first (`ERR syntax error`), amounts afterwards.
struct ExtendedOptions {
    condition: SetCondition,
    returns_old_value: bool,
    keep_ttl: bool,
    persist: bool,
    expiry_opt: Option<Expiry>,
}

fn parse_extended_options(
    args: &[Bytes],
    first_option: usize,
    is_set: bool,
    command: &'static str,
) -> Result<ExtendedOptions, CommandError> {
    let mut condition = SetCondition::Always;
    let mut returns_old_value = false;
    let mut keep_ttl = false;
    let mut persist = false;
    let mut expiry_option_opt: Option<(ExpiryOption, usize)> = None;
    let mut index = first_option;
    while index < args.len() {
        let option = &args[index];
        let has_next = index + 1 < args.len();
        // Repeating an expiry option is allowed (the last one wins); mixing two is not.
        let may_set_expiry = |wanted: ExpiryOption| {
            !keep_ttl
                && !persist
                && has_next
                && expiry_option_opt.is_none_or(|(given, _)| given == wanted)
        };
        let expiry_option = [
            ("ex", ExpiryOption::Ex),
            ("px", ExpiryOption::Px),
            ("exat", ExpiryOption::ExAt),
            ("pxat", ExpiryOption::PxAt),
        ]
        .into_iter()
        .find(|(word, _)| is_keyword(option, word))
        .map(|(_, expiry_option)| expiry_option);
        if is_set && is_keyword(option, "nx") && condition != SetCondition::IfPresent {
            condition = SetCondition::IfAbsent;
        } else if is_set && is_keyword(option, "xx") && condition != SetCondition::IfAbsent {
            condition = SetCondition::IfPresent;
        } else if is_set && is_keyword(option, "get") {
            returns_old_value = true;
        } else if is_set && is_keyword(option, "keepttl") && expiry_option_opt.is_none() {
            keep_ttl = true;
        } else if !is_set && is_keyword(option, "persist") && expiry_option_opt.is_none() {
            persist = true;
        } else if let Some(expiry_option) = expiry_option
            && may_set_expiry(expiry_option)
        {
            expiry_option_opt = Some((expiry_option, index + 1));
            index += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        index += 1;
    }
    let expiry_opt = match expiry_option_opt {
        None => None,
        Some((expiry_option, amount_index)) => {
            let amount = parse_integer(&args[amount_index])?;
            let expiry = match expiry_option {
                ExpiryOption::Ex => Expiry::Seconds(amount),
                ExpiryOption::Px => Expiry::Milliseconds(amount),
                ExpiryOption::ExAt => Expiry::UnixSeconds(amount),
                ExpiryOption::PxAt => Expiry::UnixMilliseconds(amount),
            };
            Some(expiry.validated(true, command)?)
        }
    };
    Ok(ExtendedOptions {
        condition,
        returns_old_value,
        keep_ttl,
        persist,
        expiry_opt,
    })
}

pub(crate) fn parse_get(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    string(StringCommand::Get {
        key: take(&mut args, 1),
    })
}

pub(crate) fn parse_set(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let options = parse_extended_options(&args, 3, true, "set")?;
    let ttl = match (options.expiry_opt, options.keep_ttl) {
        (Some(expiry), _) => TtlUpdate::Set(expiry),
        (None, true) => TtlUpdate::Keep,
        (None, false) => TtlUpdate::Remove,
    };
    string(StringCommand::Set(SetCommand {
        key: take(&mut args, 1),
        value: take(&mut args, 2),
        condition: options.condition,
        ttl,
        returns_old_value: options.returns_old_value,
    }))
}

/// SETEX and PSETEX: `key amount value`.
fn parse_set_with_expiry(
    mut args: Vec<Bytes>,
    expiry_of_amount: fn(i64) -> Expiry,
    command: &'static str,
) -> Result<Command, CommandError> {
    let expiry = expiry_of_amount(parse_integer(&args[2])?).validated(true, command)?;
    string(StringCommand::Set(SetCommand {
        key: take(&mut args, 1),
        value: take(&mut args, 3),
        condition: SetCondition::Always,
        ttl: TtlUpdate::Set(expiry),
        returns_old_value: false,
    }))
}

pub(crate) fn parse_setex(args: Vec<Bytes>) -> Result<Command, CommandError> {
    parse_set_with_expiry(args, Expiry::Seconds, "setex")
}

pub(crate) fn parse_psetex(args: Vec<Bytes>) -> Result<Command, CommandError> {
    parse_set_with_expiry(args, Expiry::Milliseconds, "psetex")
}

pub(crate) fn parse_getset(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    string(StringCommand::Set(SetCommand {
        key: take(&mut args, 1),
        value: take(&mut args, 2),
        condition: SetCondition::Always,
        ttl: TtlUpdate::Remove,
        returns_old_value: true,
    }))
}

pub(crate) fn parse_setnx(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    string(StringCommand::SetNx {
        key: take(&mut args, 1),
        value: take(&mut args, 2),
    })
}

pub(crate) fn parse_getex(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let options = parse_extended_options(&args, 2, false, "getex")?;
    let ttl = match (options.expiry_opt, options.persist) {
        (Some(expiry), _) => TtlUpdate::Set(expiry),
        (None, true) => TtlUpdate::Remove,
        (None, false) => TtlUpdate::Keep,
    };
    string(StringCommand::GetEx {
        key: take(&mut args, 1),
        ttl,
    })
}

pub(crate) fn parse_getdel(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    string(StringCommand::GetDel {
        key: take(&mut args, 1),
    })
}

pub(crate) fn parse_mget(args: Vec<Bytes>) -> Result<Command, CommandError> {
    string(StringCommand::MGet {
        keys: take_from(args, 1),
    })
}

pub(crate) fn parse_mset(args: Vec<Bytes>) -> Result<Command, CommandError> {
    let keys_and_values = Pairs::from_flat(take_from(args, 1))
        .ok_or(CommandError::WrongNumberOfArguments { command: "mset" })?;
    string(StringCommand::MSet { keys_and_values })
}

pub(crate) fn parse_append(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    string(StringCommand::Append {
        key: take(&mut args, 1),
        value: take(&mut args, 2),
    })
}

pub(crate) fn parse_strlen(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    string(StringCommand::StrLen {
        key: take(&mut args, 1),
    })
}

pub(crate) fn parse_incr(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    string(StringCommand::IncrBy {
        key: take(&mut args, 1),
        delta: 1,
    })
}

pub(crate) fn parse_decr(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    string(StringCommand::IncrBy {
        key: take(&mut args, 1),
        delta: -1,
    })
}

pub(crate) fn parse_incrby(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let delta = parse_integer(&args[2])?;
    string(StringCommand::IncrBy {
        key: take(&mut args, 1),
        delta,
    })
}

pub(crate) fn parse_decrby(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let delta = parse_integer(&args[2])?
        .checked_neg()
        .ok_or(CommandError::DecrementWouldOverflow)?;
    string(StringCommand::IncrBy {
        key: take(&mut args, 1),
        delta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::test_support::{b, check, check_error};

    fn set(condition: SetCondition, ttl: TtlUpdate, returns_old_value: bool) -> Command {
        Command::String(StringCommand::Set(SetCommand {
            key: b("k"),
            value: b("v"),
            condition,
            ttl,
            returns_old_value,
        }))
    }

    fn expire_at(expiry: Expiry) -> TtlUpdate {
        TtlUpdate::Set(expiry)
    }

    #[test]
    fn get_parses() {
        check("GET k", Command::String(StringCommand::Get { key: b("k") }));
        check_error("GET", "ERR wrong number of arguments for 'get' command");
        check_error("GET a b", "ERR wrong number of arguments for 'get' command");
    }

    #[test]
    fn set_parses_every_option() {
        use SetCondition::{Always, IfAbsent, IfPresent};
        check("SET k v", set(Always, TtlUpdate::Remove, false));
        check("SET k v NX", set(IfAbsent, TtlUpdate::Remove, false));
        check("set k v xx", set(IfPresent, TtlUpdate::Remove, false));
        check("SET k v NX GET", set(IfAbsent, TtlUpdate::Remove, true));
        check(
            "SET k v EX 10",
            set(Always, expire_at(Expiry::Seconds(10)), false),
        );
        check(
            "SET k v PX 100",
            set(Always, expire_at(Expiry::Milliseconds(100)), false),
        );
        check(
            "SET k v EXAT 1700000000",
            set(Always, expire_at(Expiry::UnixSeconds(1_700_000_000)), false),
        );
        check(
            "SET k v PXAT 1700000000000",
            set(
                Always,
                expire_at(Expiry::UnixMilliseconds(1_700_000_000_000)),
                false,
            ),
        );
        check("SET k v KEEPTTL", set(Always, TtlUpdate::Keep, false));
        check(
            "SET k v NX PX 30000",
            set(IfAbsent, expire_at(Expiry::Milliseconds(30_000)), false),
        );
        check(
            "SET k v EX 10 EX 20",
            set(Always, expire_at(Expiry::Seconds(20)), false),
        );
        check(
            "SET k v GET XX EX 5",
            set(IfPresent, expire_at(Expiry::Seconds(5)), true),
        );
        check(
            "SET k v PXAT 9223372036854775807",
            set(Always, expire_at(Expiry::UnixMilliseconds(i64::MAX)), false),
        );
        check(
            "SET k v EXAT 9223372036854775",
            set(
                Always,
                expire_at(Expiry::UnixSeconds(9_223_372_036_854_775)),
                false,
            ),
        );
    }

    #[test]
    fn set_refuses_conflicting_or_incomplete_options() {
        for line in [
            "SET k v NX XX",
            "SET k v XX NX",
            "SET k v EX 10 PX 10",
            "SET k v KEEPTTL EX 10",
            "SET k v EX 10 KEEPTTL",
            "SET k v EX",
            "SET k v PERSIST",
            "SET k v FOO",
            // Option conflicts are found before amounts are parsed, as in Redis.
            "SET k v EX abc NX XX",
        ] {
            check_error(line, "ERR syntax error");
        }
        check_error("SET k", "ERR wrong number of arguments for 'set' command");
    }

    #[test]
    fn set_refuses_invalid_expire_times() {
        for line in [
            "SET k v EX 0",
            "SET k v EX -1",
            "SET k v PX 0",
            "SET k v EXAT 0",
            "SET k v EX 9223372036854775807",
            "SET k v EX 9223372036854776",
            "SET k v EXAT 9223372036854776",
            "SET k v PX 9223372036854775807",
        ] {
            check_error(line, "ERR invalid expire time in 'set' command");
        }
        check_error(
            "SET k v EX abc",
            "ERR value is not an integer or out of range",
        );
        check_error(
            "SET k v EX 1.5",
            "ERR value is not an integer or out of range",
        );
    }

    #[test]
    fn setex_psetex_and_getset_are_sets() {
        use SetCondition::Always;
        check(
            "SETEX k 10 v",
            set(Always, expire_at(Expiry::Seconds(10)), false),
        );
        check(
            "PSETEX k 100 v",
            set(Always, expire_at(Expiry::Milliseconds(100)), false),
        );
        check("GETSET k v", set(Always, TtlUpdate::Remove, true));
        check_error("SETEX k 0 v", "ERR invalid expire time in 'setex' command");
        check_error("SETEX k x v", "ERR value is not an integer or out of range");
        check_error(
            "SETEX k 10",
            "ERR wrong number of arguments for 'setex' command",
        );
        check_error(
            "PSETEX k -5 v",
            "ERR invalid expire time in 'psetex' command",
        );
        check_error(
            "GETSET k",
            "ERR wrong number of arguments for 'getset' command",
        );
    }

    #[test]
    fn setnx_parses() {
        check(
            "SETNX k v",
            Command::String(StringCommand::SetNx {
                key: b("k"),
                value: b("v"),
            }),
        );
        check_error(
            "SETNX k",
            "ERR wrong number of arguments for 'setnx' command",
        );
    }

    #[test]
    fn getex_parses_its_ttl_change() {
        let getex = |ttl| Command::String(StringCommand::GetEx { key: b("k"), ttl });
        check("GETEX k", getex(TtlUpdate::Keep));
        check("GETEX k PERSIST", getex(TtlUpdate::Remove));
        check("GETEX k EX 5", getex(expire_at(Expiry::Seconds(5))));
        check(
            "getex k pxat 5",
            getex(expire_at(Expiry::UnixMilliseconds(5))),
        );
        check_error("GETEX k PX 5 PERSIST", "ERR syntax error");
        check_error("GETEX k PERSIST EX 5", "ERR syntax error");
        check_error("GETEX k NX", "ERR syntax error");
        check_error("GETEX k KEEPTTL", "ERR syntax error");
        check_error("GETEX k GET", "ERR syntax error");
        check_error("GETEX k EX 0", "ERR invalid expire time in 'getex' command");
        check_error("GETEX", "ERR wrong number of arguments for 'getex' command");
    }

    #[test]
    fn multi_key_string_commands_parse() {
        check(
            "GETDEL k",
            Command::String(StringCommand::GetDel { key: b("k") }),
        );
        check(
            "MGET a b c",
            Command::String(StringCommand::MGet {
                keys: vec![b("a"), b("b"), b("c")],
            }),
        );
        check_error("MGET", "ERR wrong number of arguments for 'mget' command");
        let pairs = Pairs::from_flat(vec![b("a"), b("1"), b("b"), b("2")])
            .unwrap_or_else(|| panic!("even"));
        check(
            "MSET a 1 b 2",
            Command::String(StringCommand::MSet {
                keys_and_values: pairs,
            }),
        );
        check_error(
            "MSET a 1 b",
            "ERR wrong number of arguments for 'mset' command",
        );
        check_error("MSET a", "ERR wrong number of arguments for 'mset' command");
    }

    #[test]
    fn append_and_strlen_parse() {
        check(
            "APPEND k v",
            Command::String(StringCommand::Append {
                key: b("k"),
                value: b("v"),
            }),
        );
        check(
            "STRLEN k",
            Command::String(StringCommand::StrLen { key: b("k") }),
        );
        check_error(
            "APPEND k",
            "ERR wrong number of arguments for 'append' command",
        );
    }

    #[test]
    fn counters_become_incrby() {
        let incrby = |delta| Command::String(StringCommand::IncrBy { key: b("k"), delta });
        check("INCR k", incrby(1));
        check("DECR k", incrby(-1));
        check("INCRBY k 5", incrby(5));
        check("INCRBY k -5", incrby(-5));
        check("DECRBY k 5", incrby(-5));
        check("DECRBY k 9223372036854775807", incrby(-i64::MAX));
        check_error("INCRBY k x", "ERR value is not an integer or out of range");
        check_error(
            "INCRBY k 9223372036854775808",
            "ERR value is not an integer or out of range",
        );
        check_error(
            "DECRBY k -9223372036854775808",
            "ERR decrement would overflow",
        );
        check_error("INCR", "ERR wrong number of arguments for 'incr' command");
        check_error(
            "DECRBY k",
            "ERR wrong number of arguments for 'decrby' command",
        );
    }
}
