//! scd's own commands: session locks with fencing tokens (`SCD.LOCK`, `SCD.UNLOCK`,
//! `SCD.RENEW`, `SCD.LOCKINFO`, `SCD.SET`) and the delayed-write failover mark (`SCD.STALE`).
//!
//! Every one names one key, so the node routes it to the key's partition like a Redis
//! command. Arguments are checked here, with errors that name the argument and what is
//! allowed; whether a token holds a lock is the store's business.

use bytes::Bytes;

use super::{Command, Expiry, Keys, is_keyword, take};
use crate::error::CommandError;
use crate::number::parse_i64_strict;

/// The longest lease `SCD.LOCK` and `SCD.RENEW` take: one day. A crashed holder keeps a lock
/// until its lease runs out, so an unbounded lease would be a lock nobody can ever take again.
pub const SCD_LEASE_MS_MAX: u64 = 86_400_000;

/// The longest `WAIT` of `SCD.LOCK`: ten minutes. A waiting client holds a connection and a
/// place in the primary's queue.
pub const SCD_WAIT_MS_MAX: u64 = 600_000;

/// The longest `OWNER` id of `SCD.LOCK`, in bytes (the store's limit on what it keeps per lock).
pub const SCD_OWNER_MAX_BYTES: usize = 256;

/// An `SCD.*` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScdCommand {
    /// `SCD.LOCK key lease-ms [WAIT ms] [SESSION] [OWNER id]`: the fencing token, or nil when
    /// the lock is held (and `WAIT` ran out).
    Lock {
        /// The locked key.
        key: Bytes,
        /// The lease, 1 to [`SCD_LEASE_MS_MAX`].
        lease_ms: u64,
        /// How long to queue for the lock, up to [`SCD_WAIT_MS_MAX`]; 0 (no `WAIT`) does not
        /// queue.
        wait_ms: u64,
        /// `SESSION`: the lock is released when the connection closes.
        session: bool,
        /// `OWNER id`: who holds the lock; the node makes one per connection otherwise.
        owner_opt: Option<Bytes>,
    },
    /// `SCD.UNLOCK key token`: 1 if released, 0 if the token does not hold the lock.
    Unlock {
        /// The locked key.
        key: Bytes,
        /// The fencing token of the grant.
        token: u64,
    },
    /// `SCD.RENEW key token lease-ms`: 1 if the lease was renewed, 0 if the token does not hold
    /// the lock.
    Renew {
        /// The locked key.
        key: Bytes,
        /// The fencing token of the grant.
        token: u64,
        /// The new lease from now, 1 to [`SCD_LEASE_MS_MAX`].
        lease_ms: u64,
    },
    /// `SCD.LOCKINFO key`: the holder, its token, the remaining lease in ms, its mode and the
    /// number of waiters; nil when the lock is free.
    LockInfo {
        /// The locked key.
        key: Bytes,
    },
    /// `SCD.SET key value token [EX seconds|PX milliseconds]`: SET, only while `token` holds the
    /// lock of `key`; `-FENCED …` otherwise.
    Set {
        /// The data key, which is also the locked key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// The fencing token the writer holds.
        token: u64,
        /// `EX`/`PX`, relative to the node's clock; none removes any TTL, as SET does.
        expiry_opt: Option<Expiry>,
    },
    /// `SCD.STALE key`: 1 if the key's latest writes may have been lost in a delayed-write
    /// failover, else 0.
    Stale {
        /// The key.
        key: Bytes,
    },
}

impl ScdCommand {
    /// The command's one key.
    pub fn key(&self) -> &Bytes {
        match self {
            ScdCommand::Lock { key, .. }
            | ScdCommand::Unlock { key, .. }
            | ScdCommand::Renew { key, .. }
            | ScdCommand::LockInfo { key }
            | ScdCommand::Set { key, .. }
            | ScdCommand::Stale { key } => key,
        }
    }

    pub(crate) fn keys(&self) -> Keys<'_> {
        Keys::one(self.key())
    }
}

fn scd(command: ScdCommand) -> Result<Command, CommandError> {
    Ok(Command::Scd(command))
}

fn invalid(command: &'static str, argument: &'static str, allowed: &'static str) -> CommandError {
    CommandError::InvalidArgument {
        command,
        argument,
        allowed,
    }
}

/// An integer argument in `minimum..=maximum`, or an error naming the argument and the range.
fn bounded(
    arg: &[u8],
    minimum: u64,
    maximum: u64,
    command: &'static str,
    argument: &'static str,
    allowed: &'static str,
) -> Result<u64, CommandError> {
    parse_i64_strict(arg)
        .and_then(|value| u64::try_from(value).ok())
        .filter(|value| (minimum..=maximum).contains(value))
        .ok_or_else(|| invalid(command, argument, allowed))
}

fn lease_ms(arg: &[u8], command: &'static str) -> Result<u64, CommandError> {
    bounded(
        arg,
        1,
        SCD_LEASE_MS_MAX,
        command,
        "lease-ms",
        "an integer from 1 to 86400000",
    )
}

/// A fencing token: what `SCD.LOCK` returned, a positive 64-bit integer.
fn token(arg: &[u8], command: &'static str) -> Result<u64, CommandError> {
    bounded(
        arg,
        1,
        i64::MAX as u64,
        command,
        "token",
        "a positive integer as SCD.LOCK returned it",
    )
}

/// `SCD.LOCK key lease-ms [WAIT ms] [SESSION] [OWNER id]`, options in any order, each once.
pub(crate) fn parse_lock(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    const COMMAND: &str = "scd.lock";
    let lease_ms = lease_ms(&args[2], COMMAND)?;
    let mut wait_ms_opt = None;
    let mut session = false;
    let mut owner_opt: Option<Bytes> = None;
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        let value_opt = args.get(index + 1);
        if is_keyword(option, "WAIT") && wait_ms_opt.is_none() {
            let value = value_opt.ok_or(CommandError::Syntax)?;
            wait_ms_opt = Some(bounded(
                value,
                0,
                SCD_WAIT_MS_MAX,
                COMMAND,
                "WAIT",
                "an integer from 0 to 600000 (milliseconds)",
            )?);
            index += 2;
        } else if is_keyword(option, "SESSION") && !session {
            session = true;
            index += 1;
        } else if is_keyword(option, "OWNER") && owner_opt.is_none() {
            let value = value_opt.ok_or(CommandError::Syntax)?;
            if value.is_empty() || value.len() > SCD_OWNER_MAX_BYTES {
                return Err(invalid(COMMAND, "OWNER", "1 to 256 bytes"));
            }
            owner_opt = Some(value.clone());
            index += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    scd(ScdCommand::Lock {
        key: take(&mut args, 1),
        lease_ms,
        wait_ms: wait_ms_opt.unwrap_or(0),
        session,
        owner_opt,
    })
}

pub(crate) fn parse_unlock(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let token = token(&args[2], "scd.unlock")?;
    scd(ScdCommand::Unlock {
        key: take(&mut args, 1),
        token,
    })
}

pub(crate) fn parse_renew(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let token = token(&args[2], "scd.renew")?;
    let lease_ms = lease_ms(&args[3], "scd.renew")?;
    scd(ScdCommand::Renew {
        key: take(&mut args, 1),
        token,
        lease_ms,
    })
}

pub(crate) fn parse_lockinfo(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    scd(ScdCommand::LockInfo {
        key: take(&mut args, 1),
    })
}

/// `SCD.SET key value token [EX seconds|PX milliseconds]`, with SET's rules for the amounts.
pub(crate) fn parse_set(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    const COMMAND: &str = "scd.set";
    let token = token(&args[3], COMMAND)?;
    let expiry_opt = match &args[4..] {
        [] => None,
        [unit, amount] => {
            let amount = parse_i64_strict(amount).ok_or(CommandError::NotAnInteger)?;
            let expiry = if is_keyword(unit, "EX") {
                Expiry::Seconds(amount)
            } else if is_keyword(unit, "PX") {
                Expiry::Milliseconds(amount)
            } else {
                return Err(CommandError::Syntax);
            };
            Some(expiry.validated(true, COMMAND)?)
        }
        _ => return Err(CommandError::Syntax),
    };
    scd(ScdCommand::Set {
        key: take(&mut args, 1),
        value: take(&mut args, 2),
        token,
        expiry_opt,
    })
}

pub(crate) fn parse_stale(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    scd(ScdCommand::Stale {
        key: take(&mut args, 1),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{b, check, check_error};
    use super::*;

    fn lock(key: &str, lease_ms: u64, wait_ms: u64, session: bool, owner: Option<&str>) -> Command {
        Command::Scd(ScdCommand::Lock {
            key: b(key),
            lease_ms,
            wait_ms,
            session,
            owner_opt: owner.map(b),
        })
    }

    #[test]
    fn scd_lock_takes_a_lease_and_options_in_any_order() {
        check("SCD.LOCK s1 30000", lock("s1", 30_000, 0, false, None));
        check("scd.lock s1 1 WAIT 0", lock("s1", 1, 0, false, None));
        check(
            "SCD.LOCK s1 86400000 wait 600000 session owner w-7",
            lock("s1", 86_400_000, 600_000, true, Some("w-7")),
        );
        check(
            "SCD.LOCK s1 500 OWNER w SESSION WAIT 20",
            lock("s1", 500, 20, true, Some("w")),
        );
        check(
            &format!("SCD.LOCK s1 500 OWNER {}", "o".repeat(256)),
            lock("s1", 500, 0, false, Some(&"o".repeat(256))),
        );
    }

    #[test]
    fn scd_lock_refuses_bad_leases_waits_owners_and_options() {
        let lease = "ERR invalid lease-ms in 'scd.lock' command: an integer from 1 to 86400000";
        check_error("SCD.LOCK s1 0", lease);
        check_error("SCD.LOCK s1 -5", lease);
        check_error("SCD.LOCK s1 86400001", lease);
        check_error("SCD.LOCK s1 ten", lease);
        let wait =
            "ERR invalid WAIT in 'scd.lock' command: an integer from 0 to 600000 (milliseconds)";
        check_error("SCD.LOCK s1 100 WAIT -1", wait);
        check_error("SCD.LOCK s1 100 WAIT 600001", wait);
        check_error("SCD.LOCK s1 100 WAIT soon", wait);
        let owner = "ERR invalid OWNER in 'scd.lock' command: 1 to 256 bytes";
        check_error("SCD.LOCK s1 100 OWNER \"\"", owner);
        check_error(&format!("SCD.LOCK s1 100 OWNER {}", "o".repeat(257)), owner);
        check_error("SCD.LOCK s1 100 WAIT", "ERR syntax error");
        check_error("SCD.LOCK s1 100 OWNER", "ERR syntax error");
        check_error("SCD.LOCK s1 100 SESSION SESSION", "ERR syntax error");
        check_error("SCD.LOCK s1 100 WAIT 1 WAIT 2", "ERR syntax error");
        check_error("SCD.LOCK s1 100 NX", "ERR syntax error");
        check_error(
            "SCD.LOCK s1",
            "ERR wrong number of arguments for 'scd.lock' command",
        );
    }

    #[test]
    fn scd_unlock_renew_and_lockinfo_take_tokens_and_leases() {
        check(
            "SCD.UNLOCK s1 123",
            Command::Scd(ScdCommand::Unlock {
                key: b("s1"),
                token: 123,
            }),
        );
        check(
            "scd.renew s1 9223372036854775807 1000",
            Command::Scd(ScdCommand::Renew {
                key: b("s1"),
                token: i64::MAX as u64,
                lease_ms: 1_000,
            }),
        );
        check(
            "SCD.LOCKINFO s1",
            Command::Scd(ScdCommand::LockInfo { key: b("s1") }),
        );
        let token = |command: &str| {
            format!(
                "ERR invalid token in '{command}' command: a positive integer as SCD.LOCK returned it"
            )
        };
        check_error("SCD.UNLOCK s1 0", &token("scd.unlock"));
        check_error("SCD.UNLOCK s1 -1", &token("scd.unlock"));
        check_error("SCD.UNLOCK s1 abc", &token("scd.unlock"));
        check_error("SCD.RENEW s1 x 100", &token("scd.renew"));
        check_error(
            "SCD.RENEW s1 5 0",
            "ERR invalid lease-ms in 'scd.renew' command: an integer from 1 to 86400000",
        );
        check_error(
            "SCD.UNLOCK s1",
            "ERR wrong number of arguments for 'scd.unlock' command",
        );
        check_error(
            "SCD.RENEW s1 5",
            "ERR wrong number of arguments for 'scd.renew' command",
        );
        check_error(
            "SCD.LOCKINFO s1 s2",
            "ERR wrong number of arguments for 'scd.lockinfo' command",
        );
    }

    #[test]
    fn scd_set_takes_a_token_and_an_optional_ex_or_px() {
        let set = |expiry_opt| {
            Command::Scd(ScdCommand::Set {
                key: b("s1"),
                value: b("data"),
                token: 42,
                expiry_opt,
            })
        };
        check("SCD.SET s1 data 42", set(None));
        check(
            "SCD.SET s1 data 42 EX 1440",
            set(Some(Expiry::Seconds(1_440))),
        );
        check(
            "scd.set s1 data 42 px 500",
            set(Some(Expiry::Milliseconds(500))),
        );
        check_error(
            "SCD.SET s1 data 42 EX 0",
            "ERR invalid expire time in 'scd.set' command",
        );
        check_error(
            "SCD.SET s1 data 42 PX -1",
            "ERR invalid expire time in 'scd.set' command",
        );
        check_error(
            "SCD.SET s1 data 42 EX soon",
            "ERR value is not an integer or out of range",
        );
        check_error("SCD.SET s1 data 42 KEEPTTL", "ERR syntax error");
        check_error("SCD.SET s1 data 42 EX 1 PX 2", "ERR syntax error");
        check_error("SCD.SET s1 data 42 NX 1", "ERR syntax error");
        check_error(
            "SCD.SET s1 data nope",
            "ERR invalid token in 'scd.set' command: a positive integer as SCD.LOCK returned it",
        );
        check_error(
            "SCD.SET s1 data",
            "ERR wrong number of arguments for 'scd.set' command",
        );
    }

    #[test]
    fn scd_stale_takes_one_key() {
        check(
            "SCD.STALE sess:1",
            Command::Scd(ScdCommand::Stale { key: b("sess:1") }),
        );
        check_error(
            "SCD.STALE",
            "ERR wrong number of arguments for 'scd.stale' command",
        );
    }

    #[test]
    fn every_scd_command_routes_by_its_one_key() {
        for line in [
            "SCD.LOCK k 1",
            "SCD.UNLOCK k 1",
            "SCD.RENEW k 1 1",
            "SCD.LOCKINFO k",
            "SCD.SET k v 1",
            "SCD.STALE k",
        ] {
            let command = Command::parse(super::super::test_support::args(line))
                .unwrap_or_else(|error| panic!("{line}: {error}"));
            let keys: Vec<&Bytes> = command.keys().collect();
            assert_eq!(keys, vec![&b("k")], "{line}");
        }
    }
}
