//! Typed commands: [`Command::parse`] turns a request's arguments into a [`Command`] with
//! its options parsed and validated the way Redis 7 validates them, or into the exact error
//! Redis 7 would send.
//!
//! Parsing follows Redis' `processCommand`: the name (case-insensitive) is looked up in the
//! [command table](crate::table), container commands (CLIENT, COMMAND, CONFIG, SCRIPT) look
//! up their subcommand, the argument count is checked against the table's arity, and only
//! then does the command's own parser run. Keeping the arity in the table alone means the
//! table `COMMAND INFO` reports and the checks applied cannot disagree.
//!
//! Commands that differ only in their defaults parse into one variant, so the node
//! implements each behaviour once: SETEX, PSETEX and GETSET become a SET; INCR, DECR and
//! DECRBY become an INCRBY; UNLINK becomes a DEL; PEXPIRE, EXPIREAT and PEXPIREAT become an
//! EXPIRE with the matching [`Expiry`]. Commands whose replies differ (SETNX, HMSET) keep
//! their own variant.
//!
//! # Extension point: `SCD.*` commands
//!
//! scd's own commands (locks, failover status) are added like the Redis ones: a file
//! `cmd/scd.rs` with an `ScdCommand` enum and its parsers, a `Command::Scd(ScdCommand)`
//! variant, and rows in [`crate::table`] with the group [`crate::table::CommandGroup::Scd`].
//! Names are looked up lowercased, so `SCD.LOCK` finds a row named `scd.lock`; nothing else
//! needs to change.

mod connection;
mod hashes;
mod keys;
mod scd;
mod scripting;
mod server;
mod strings;

pub use connection::{ClientCommand, ClientInfoAttribute, ConnectionCommand, Credentials, Hello};
pub use hashes::HashCommand;
pub use keys::{ExpireConditions, KeyCommand, ScanCommand, TimeUnit, ValueTypeFilter};
pub use scd::{SCD_LEASE_MS_MAX, SCD_OWNER_MAX_BYTES, SCD_WAIT_MS_MAX, ScdCommand};
pub use scripting::{ScriptCall, ScriptingCommand};
pub use server::{CommandQuery, FlushMode, ServerCommand};
pub use strings::{SetCommand, SetCondition, StringCommand};

pub(crate) use connection::{
    parse_auth, parse_client_getname, parse_client_help, parse_client_id, parse_client_info,
    parse_client_setinfo, parse_client_setname, parse_echo, parse_hello, parse_ping, parse_quit,
    parse_reset, parse_select,
};
pub(crate) use hashes::{
    parse_hdel, parse_hexists, parse_hget, parse_hgetall, parse_hincrby, parse_hkeys, parse_hlen,
    parse_hmget, parse_hmset, parse_hset, parse_hvals,
};
pub(crate) use keys::{
    parse_del, parse_exists, parse_expire, parse_expireat, parse_keys, parse_persist,
    parse_pexpire, parse_pexpireat, parse_pttl, parse_rename, parse_scan, parse_touch, parse_ttl,
    parse_type, parse_unlink,
};
pub(crate) use scd::{
    parse_lock as parse_scd_lock, parse_lockinfo as parse_scd_lockinfo,
    parse_renew as parse_scd_renew, parse_set as parse_scd_set, parse_stale as parse_scd_stale,
    parse_unlock as parse_scd_unlock,
};
pub(crate) use scripting::{
    parse_eval, parse_evalsha, parse_script_exists, parse_script_flush, parse_script_help,
    parse_script_load,
};
pub(crate) use server::{
    parse_command, parse_command_count, parse_command_docs, parse_command_help, parse_command_info,
    parse_config_get, parse_config_help, parse_dbsize, parse_flushall, parse_flushdb, parse_info,
    parse_time,
};
pub(crate) use strings::{
    parse_append, parse_decr, parse_decrby, parse_get, parse_getdel, parse_getex, parse_getset,
    parse_incr, parse_incrby, parse_mget, parse_mset, parse_psetex, parse_set, parse_setex,
    parse_setnx, parse_strlen,
};

use bytes::Bytes;

use crate::error::CommandError;
use crate::number::parse_i64_strict;
use crate::table::{self, CommandSpec};

/// A parsed command, grouped by family so the node can route a family as a whole (the
/// connection family runs locally, keyed families go to the key's partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, CLIENT.
    Connection(ConnectionCommand),
    /// GET, SET and the other string commands.
    String(StringCommand),
    /// DEL, EXPIRE, SCAN and the other keyspace commands.
    Key(KeyCommand),
    /// HSET, HGET and the other hash commands.
    Hash(HashCommand),
    /// EVAL, EVALSHA, SCRIPT.
    Scripting(ScriptingCommand),
    /// COMMAND, INFO, DBSIZE, TIME, CONFIG GET, FLUSHDB, FLUSHALL.
    Server(ServerCommand),
    /// The HELP subcommand of a container command; answer with [`table::encode_help`].
    Help(HelpTopic),
    /// scd's own `SCD.*` commands: locks and the failover mark.
    Scd(ScdCommand),
}

/// The container command whose HELP was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelpTopic {
    /// CLIENT HELP.
    Client,
    /// COMMAND HELP.
    Command,
    /// CONFIG HELP.
    Config,
    /// SCRIPT HELP.
    Script,
}

impl Command {
    /// Parses a request's arguments (the command name first) into a command, or the error
    /// Redis 7 would reply. Takes the arguments by value so they move into the command
    /// without copying or reference counting.
    pub fn parse(args: Vec<Bytes>) -> Result<Command, CommandError> {
        let row_opt = args.first().and_then(|name| table::lookup_index(name));
        Self::parse_looked_up(args, row_opt)
    }

    /// [`Command::parse`] for a caller that already looked the name up: `row_opt` is what
    /// [`table::lookup_index`] answered for `args[0]`, so the name is not looked up twice.
    pub fn parse_looked_up(
        args: Vec<Bytes>,
        row_opt: Option<usize>,
    ) -> Result<Command, CommandError> {
        let spec = resolve(&args, row_opt)?;
        (spec.parse)(args)
    }

    /// The keys this command reads or writes, in argument order, for routing to partitions.
    /// Empty for commands without keys (and for SCAN and KEYS, which cover all keys).
    pub fn keys(&self) -> Keys<'_> {
        let none = Keys::default();
        match self {
            Command::Connection(_) | Command::Server(_) | Command::Help(_) => none,
            Command::String(command) => command.keys(),
            Command::Key(command) => command.keys(),
            Command::Hash(command) => Keys::one(command.key()),
            Command::Scripting(command) => command.keys(),
            Command::Scd(command) => command.keys(),
        }
    }
}

/// Finds the table row for a request: the command, or the subcommand of a container, with
/// the argument count checked against its arity.
/// `row_opt` is the row of `args[0]` (`table::lookup_index`).
fn resolve(args: &[Bytes], row_opt: Option<usize>) -> Result<&'static CommandSpec, CommandError> {
    if args.is_empty() {
        return Err(CommandError::Empty);
    }
    let Some(mut spec) = row_opt.and_then(|row| table::COMMAND_TABLE.get(row)) else {
        return Err(unknown_command(args));
    };
    if !spec.subcommands.is_empty()
        && let Some(subcommand_name) = args.get(1)
    {
        spec = spec
            .subcommands
            .iter()
            .find(|subcommand| {
                subcommand
                    .name
                    .as_bytes()
                    .eq_ignore_ascii_case(subcommand_name)
            })
            .ok_or_else(|| CommandError::UnknownSubcommand {
                container: spec.name.to_ascii_uppercase(),
                subcommand: lossy(truncate_c_string(subcommand_name, 128)),
            })?;
    }
    if !spec.accepts_arg_count(args.len()) {
        return Err(CommandError::WrongNumberOfArguments {
            command: spec.full_name,
        });
    }
    Ok(spec)
}

/// Builds Redis' unknown-command error: the name (at most 128 bytes) and the first
/// arguments, each quoted and followed by a space, until about 128 bytes are shown.
fn unknown_command(args: &[Bytes]) -> CommandError {
    const PREVIEW_BYTES: usize = 128;
    let mut preview = Vec::new();
    for arg in args.iter().skip(1) {
        if preview.len() >= PREVIEW_BYTES {
            break;
        }
        let room = PREVIEW_BYTES - preview.len();
        preview.push(b'\'');
        preview.extend_from_slice(truncate_c_string(arg, room));
        preview.extend_from_slice(b"' ");
    }
    let name = args.first().map(|name| &name[..]).unwrap_or_default();
    CommandError::UnknownCommand {
        name: lossy(truncate_c_string(name, PREVIEW_BYTES)),
        args_preview: lossy(&preview),
    }
}

/// What C's `%.*s` prints of an argument: up to its first NUL, at most `max_bytes`.
fn truncate_c_string(arg: &[u8], max_bytes: usize) -> &[u8] {
    let end = arg.iter().position(|&byte| byte == 0).unwrap_or(arg.len());
    &arg[..end.min(max_bytes)]
}

/// Client bytes as text for an error line. Invalid UTF-8 becomes U+FFFD; error lines are
/// for people, and Redis' raw bytes would not be valid in a Rust `String`.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether an argument is the keyword `word` (ASCII, case-insensitive), as `strcasecmp`.
pub(crate) fn is_keyword(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Parses an argument as Redis' `getLongLongFromObjectOrReply` with the default message.
pub(crate) fn parse_integer(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64_strict(arg).ok_or(CommandError::NotAnInteger)
}

/// Moves argument `index` out of `args`, leaving an empty `Bytes` (no allocation). The
/// caller has checked the argument count through the arity.
pub(crate) fn take(args: &mut [Bytes], index: usize) -> Bytes {
    args.get_mut(index).map(std::mem::take).unwrap_or_default()
}

/// The arguments from `first` on, reusing `args`' allocation.
pub(crate) fn take_from(mut args: Vec<Bytes>, first: usize) -> Vec<Bytes> {
    args.drain(..first.min(args.len()));
    args
}

/// When a key expires, as the client gave it. Relative forms stay relative: the node adds
/// its own clock with [`Expiry::deadline_unix_ms`].
///
/// Parsing guarantees the milliseconds fit an `i64` and that a relative expiry plus any
/// clock before the year 3000 does not overflow, so the node's conversion cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// EX / EXPIRE / SETEX: seconds from now.
    Seconds(i64),
    /// PX / PEXPIRE / PSETEX: milliseconds from now.
    Milliseconds(i64),
    /// EXAT / EXPIREAT: a Unix time in seconds.
    UnixSeconds(i64),
    /// PXAT / PEXPIREAT: a Unix time in milliseconds.
    UnixMilliseconds(i64),
}

/// Unix milliseconds of 3000-01-01, the latest clock [`Expiry`] validation leaves room for.
const YEAR_3000_UNIX_MS: i64 = 32_503_680_000_000;

impl Expiry {
    /// The absolute deadline in Unix milliseconds, given the node's clock. May be in the
    /// past (EXPIRE accepts negative times: the key is deleted at once).
    pub fn deadline_unix_ms(self, now_unix_ms: i64) -> i64 {
        match self {
            Expiry::Seconds(seconds) => seconds.saturating_mul(1000).saturating_add(now_unix_ms),
            Expiry::Milliseconds(milliseconds) => milliseconds.saturating_add(now_unix_ms),
            Expiry::UnixSeconds(seconds) => seconds.saturating_mul(1000),
            Expiry::UnixMilliseconds(milliseconds) => milliseconds,
        }
    }

    /// Whether the expiry is relative to the time of the command.
    pub fn is_relative(self) -> bool {
        matches!(self, Expiry::Seconds(_) | Expiry::Milliseconds(_))
    }

    /// Checks the amount like Redis: in milliseconds it must fit an `i64`; a relative expiry
    /// must leave room for the clock. `must_be_positive` is SET's and GETEX's rule (EXPIRE
    /// accepts zero and negative amounts).
    pub(crate) fn validated(
        self,
        must_be_positive: bool,
        command: &'static str,
    ) -> Result<Expiry, CommandError> {
        let invalid = CommandError::InvalidExpireTime { command };
        let (amount, milliseconds_opt) = match self {
            Expiry::Seconds(seconds) | Expiry::UnixSeconds(seconds) => {
                (seconds, seconds.checked_mul(1000))
            }
            Expiry::Milliseconds(milliseconds) | Expiry::UnixMilliseconds(milliseconds) => {
                (milliseconds, Some(milliseconds))
            }
        };
        let milliseconds = milliseconds_opt.ok_or_else(|| invalid.clone())?;
        if must_be_positive && amount <= 0 {
            return Err(invalid);
        }
        if self.is_relative() && milliseconds > i64::MAX - YEAR_3000_UNIX_MS {
            return Err(invalid);
        }
        Ok(self)
    }
}

/// How a write changes the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TtlUpdate {
    /// Leave the TTL as it is (SET's KEEPTTL, GETEX without options).
    Keep,
    /// Make the key persistent (SET's default, GETEX's PERSIST).
    Remove,
    /// Expire the key at this time.
    Set(Expiry),
}

/// An even-length list of arguments read as pairs: MSET's keys and values, HSET's fields
/// and values. Kept flat to reuse the request's allocation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pairs {
    flat: Vec<Bytes>,
}

impl Pairs {
    /// Pairs from a flat list; `None` if its length is odd.
    pub fn from_flat(flat: Vec<Bytes>) -> Option<Pairs> {
        flat.len().is_multiple_of(2).then_some(Pairs { flat })
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.flat.len() / 2
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.flat.is_empty()
    }

    /// The pairs in argument order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Bytes, &Bytes)> + '_ {
        self.flat.chunks_exact(2).map(|pair| (&pair[0], &pair[1]))
    }

    /// The first element of each pair, e.g. MSET's keys.
    pub fn firsts(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.flat.iter().step_by(2)
    }

    /// The pairs as owned values, for storing them without copying.
    pub fn into_pairs(self) -> impl Iterator<Item = (Bytes, Bytes)> {
        let mut flat = self.flat.into_iter();
        std::iter::from_fn(move || Some((flat.next()?, flat.next()?)))
    }

    /// The flat list back.
    pub fn into_flat(self) -> Vec<Bytes> {
        self.flat
    }

    pub(crate) fn as_flat(&self) -> &[Bytes] {
        &self.flat
    }
}

/// The keys of a command, from [`Command::keys`]; allocation-free.
#[derive(Debug, Clone, Default)]
pub struct Keys<'a> {
    first_opt: Option<&'a Bytes>,
    second_opt: Option<&'a Bytes>,
    /// Further keys: every `step`-th element of `rest`, starting with its first.
    rest: &'a [Bytes],
    step: usize,
}

impl<'a> Keys<'a> {
    pub(crate) fn one(key: &'a Bytes) -> Keys<'a> {
        Keys {
            first_opt: Some(key),
            ..Keys::default()
        }
    }

    pub(crate) fn two(first: &'a Bytes, second: &'a Bytes) -> Keys<'a> {
        Keys {
            first_opt: Some(first),
            second_opt: Some(second),
            ..Keys::default()
        }
    }

    pub(crate) fn every(keys: &'a [Bytes], step: usize) -> Keys<'a> {
        Keys {
            rest: keys,
            step: step.max(1),
            ..Keys::default()
        }
    }
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a Bytes;

    fn next(&mut self) -> Option<&'a Bytes> {
        if let Some(key) = self.first_opt.take().or_else(|| self.second_opt.take()) {
            return Some(key);
        }
        let (key, _) = self.rest.split_first()?;
        self.rest = &self.rest[self.step.min(self.rest.len())..];
        Some(key)
    }
}

/// Helpers for the data-driven command tests of every family.
#[cfg(test)]
pub(crate) mod test_support {
    use bytes::{Bytes, BytesMut};

    use super::Command;
    use crate::encode::{ProtocolVersion, ReplyEncoder};
    use crate::limits::Limits;
    use crate::request::{RequestParser, split_inline_args};

    /// A `Bytes` from text, for expected values.
    pub(crate) fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    /// The arguments of a request written the way a person types it into `redis-cli`.
    pub(crate) fn args(line: &str) -> Vec<Bytes> {
        split_inline_args(&b(line)).unwrap_or_else(|error| panic!("{line:?}: {error}"))
    }

    /// The same request as a client library sends it, parsed back through the request
    /// parser, so every case also runs the multibulk path.
    fn args_through_multibulk(args: &[Bytes]) -> Vec<Bytes> {
        let mut wire = BytesMut::new();
        let mut encoder = ReplyEncoder::new(&mut wire, ProtocolVersion::Resp2);
        encoder.array_header(args.len());
        args.iter().for_each(|arg| encoder.bulk(arg));
        let request = RequestParser::new()
            .parse(&mut wire, &Limits::default())
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|| panic!("incomplete request {args:?}"));
        request.args
    }

    /// Parses `line` both as typed and as sent by a library, and compares with `expect`.
    pub(crate) fn check(line: &str, expect: Command) {
        let typed = args(line);
        assert_eq!(
            Command::parse(args_through_multibulk(&typed)),
            Ok(expect.clone()),
            "{line:?} sent as multibulk"
        );
        assert_eq!(Command::parse(typed), Ok(expect), "{line:?} typed inline");
    }

    /// Parses `line` and compares the error with the exact reply Redis 7 sends, in both
    /// protocol versions (errors are the same line in RESP2 and RESP3).
    pub(crate) fn check_error(line: &str, expect_reply_line: &str) {
        let error = match Command::parse(args(line)) {
            Ok(command) => panic!("{line:?} parsed as {command:?}"),
            Err(error) => error,
        };
        for version in [ProtocolVersion::Resp2, ProtocolVersion::Resp3] {
            let mut out = BytesMut::new();
            ReplyEncoder::new(&mut out, version).error(error.reply_line());
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("-{expect_reply_line}\r\n"),
                "{line:?} in {version:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{args, b, check, check_error};
    use super::*;

    #[test]
    fn names_are_case_insensitive() {
        let get = Command::String(StringCommand::Get { key: b("k") });
        check("get k", get.clone());
        check("GeT k", get);
    }

    #[test]
    fn unknown_commands_show_their_first_arguments_like_redis() {
        check_error(
            "FOO a b",
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ",
        );
        check_error(
            "foo",
            "ERR unknown command 'foo', with args beginning with: ",
        );
        check_error(
            "LPUSH list x",
            "ERR unknown command 'LPUSH', with args beginning with: 'list' 'x' ",
        );
        let long_name = "n".repeat(200);
        check_error(
            &long_name,
            &format!(
                "ERR unknown command '{}', with args beginning with: ",
                "n".repeat(128)
            ),
        );
        // The preview stops once 128 bytes are shown; each argument is cut to the room left.
        let long_arg = "a".repeat(200);
        check_error(
            &format!("FOO {long_arg} b"),
            &format!(
                "ERR unknown command 'FOO', with args beginning with: '{}' ",
                "a".repeat(128)
            ),
        );
        check_error(
            "FOO \"x\\r\\ny\"",
            "ERR unknown command 'FOO', with args beginning with: 'x  y' ",
        );
    }

    #[test]
    fn an_empty_request_is_an_error_not_a_panic() {
        assert_eq!(Command::parse(Vec::new()), Err(CommandError::Empty));
    }

    #[test]
    fn keys_are_listed_in_argument_order_for_routing() {
        let check_keys = |line: &str, expect: &[&str]| {
            let command = Command::parse(args(line)).unwrap_or_else(|error| panic!("{error}"));
            let keys: Vec<&Bytes> = command.keys().collect();
            let expect: Vec<Bytes> = expect.iter().map(|key| b(key)).collect();
            assert_eq!(keys, expect.iter().collect::<Vec<_>>(), "{line:?}");
        };
        check_keys("GET k", &["k"]);
        check_keys("SET k v EX 10", &["k"]);
        check_keys("MGET a b c", &["a", "b", "c"]);
        check_keys("MSET a 1 b 2", &["a", "b"]);
        check_keys("DEL a b", &["a", "b"]);
        check_keys("RENAME a b", &["a", "b"]);
        check_keys("HSET h f v", &["h"]);
        check_keys("EVAL s 2 k1 k2 a1", &["k1", "k2"]);
        check_keys("EVALSHA s 0 a1", &[]);
        check_keys("PING", &[]);
        check_keys("SCAN 0", &[]);
        check_keys("CLIENT ID", &[]);
    }

    #[test]
    fn expiries_convert_to_deadlines_with_the_nodes_clock() {
        let now_unix_ms = 1_700_000_000_000;
        assert_eq!(
            Expiry::Seconds(10).deadline_unix_ms(now_unix_ms),
            now_unix_ms + 10_000
        );
        assert_eq!(
            Expiry::Milliseconds(5).deadline_unix_ms(now_unix_ms),
            now_unix_ms + 5
        );
        assert_eq!(Expiry::UnixSeconds(7).deadline_unix_ms(now_unix_ms), 7_000);
        assert_eq!(Expiry::UnixMilliseconds(7).deadline_unix_ms(now_unix_ms), 7);
        assert_eq!(
            Expiry::Seconds(-1).deadline_unix_ms(now_unix_ms),
            now_unix_ms - 1000
        );
        assert!(Expiry::Seconds(1).is_relative());
        assert!(!Expiry::UnixSeconds(1).is_relative());
    }

    #[test]
    fn pairs_read_a_flat_list_two_by_two() {
        assert!(Pairs::from_flat(vec![b("a")]).is_none());
        let pairs = Pairs::from_flat(vec![b("a"), b("1"), b("b"), b("2")])
            .unwrap_or_else(|| panic!("even length"));
        assert_eq!(pairs.len(), 2);
        assert!(!pairs.is_empty());
        assert_eq!(
            pairs.iter().collect::<Vec<_>>(),
            vec![(&b("a"), &b("1")), (&b("b"), &b("2"))]
        );
        assert_eq!(pairs.firsts().collect::<Vec<_>>(), vec![&b("a"), &b("b")]);
        assert_eq!(
            pairs.clone().into_pairs().collect::<Vec<_>>(),
            vec![(b("a"), b("1")), (b("b"), b("2"))]
        );
        assert_eq!(pairs.into_flat().len(), 4);
    }
}
