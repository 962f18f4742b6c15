//! The command table: every command scd implements, with its arity, flags, key positions
//! and documentation as Redis 7 describes them, and the encoders of `COMMAND`,
//! `COMMAND COUNT|INFO|DOCS` and the container commands' `HELP` replies.
//!
//! The table drives parsing too (lookup and arity), so what `COMMAND INFO` says is what is
//! enforced. Rows are sorted by name (a test checks it) and found by binary search on the
//! lowercased name, without allocating.
//!
//! `redis-cli` calls `COMMAND DOCS` at start-up and builds its hints from the `arguments`;
//! it asserts on the reply's shape, so the shape here is exactly Redis 7's: every map key
//! and string value a bulk string, flags as status replies.

use bytes::Bytes;

use crate::cmd::{self, Command, CommandQuery, HelpTopic};
use crate::encode::ReplyEncoder;
use crate::error::CommandError;

/// A command's flags as `COMMAND INFO` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CommandFlags(u32);

impl CommandFlags {
    /// No flags.
    pub const NONE: CommandFlags = CommandFlags(0);
    /// `write`: may modify data.
    pub const WRITE: CommandFlags = CommandFlags(1 << 0);
    /// `readonly`: never modifies data.
    pub const READONLY: CommandFlags = CommandFlags(1 << 1);
    /// `denyoom`: may grow memory use.
    pub const DENYOOM: CommandFlags = CommandFlags(1 << 2);
    /// `admin`: an administrative command.
    pub const ADMIN: CommandFlags = CommandFlags(1 << 3);
    /// `noscript`: not allowed in scripts.
    pub const NOSCRIPT: CommandFlags = CommandFlags(1 << 4);
    /// `loading`: allowed while loading data.
    pub const LOADING: CommandFlags = CommandFlags(1 << 5);
    /// `stale`: allowed on a stale replica.
    pub const STALE: CommandFlags = CommandFlags(1 << 6);
    /// `skip_monitor`: not shown by MONITOR.
    pub const SKIP_MONITOR: CommandFlags = CommandFlags(1 << 7);
    /// `fast`: O(1) or O(log N).
    pub const FAST: CommandFlags = CommandFlags(1 << 8);
    /// `no_auth`: allowed before authentication.
    pub const NO_AUTH: CommandFlags = CommandFlags(1 << 9);
    /// `may_replicate`: may produce replication traffic.
    pub const MAY_REPLICATE: CommandFlags = CommandFlags(1 << 10);
    /// `no_mandatory_keys`: may have no key at all.
    pub const NO_MANDATORY_KEYS: CommandFlags = CommandFlags(1 << 11);
    /// `movablekeys`: key positions depend on the arguments.
    pub const MOVABLE_KEYS: CommandFlags = CommandFlags(1 << 12);
    /// `allow_busy`: allowed while a script is busy.
    pub const ALLOW_BUSY: CommandFlags = CommandFlags(1 << 13);

    /// Every flag with its name, in the order Redis lists them.
    const NAMES: [(CommandFlags, &'static str); 14] = [
        (CommandFlags::WRITE, "write"),
        (CommandFlags::READONLY, "readonly"),
        (CommandFlags::DENYOOM, "denyoom"),
        (CommandFlags::ADMIN, "admin"),
        (CommandFlags::NOSCRIPT, "noscript"),
        (CommandFlags::LOADING, "loading"),
        (CommandFlags::STALE, "stale"),
        (CommandFlags::SKIP_MONITOR, "skip_monitor"),
        (CommandFlags::FAST, "fast"),
        (CommandFlags::NO_AUTH, "no_auth"),
        (CommandFlags::MAY_REPLICATE, "may_replicate"),
        (CommandFlags::NO_MANDATORY_KEYS, "no_mandatory_keys"),
        (CommandFlags::MOVABLE_KEYS, "movablekeys"),
        (CommandFlags::ALLOW_BUSY, "allow_busy"),
    ];

    /// Both sets of flags.
    pub const fn union(self, other: CommandFlags) -> CommandFlags {
        CommandFlags(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: CommandFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the flags set, in Redis' order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        CommandFlags::NAMES
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }
}

/// Where a command's keys are among its arguments (argument 0 is the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySpec {
    /// No keys.
    None,
    /// Keys from `first` to `last` (negative: counted from the end, -1 the last argument)
    /// every `step` arguments.
    Range {
        /// Index of the first key.
        first: i64,
        /// Index of the last key, or negative from the end.
        last: i64,
        /// Distance between keys (2 for MSET's key-value pairs).
        step: i64,
    },
    /// A key count at `num_keys_index`, then that many keys (EVAL, EVALSHA).
    KeyNum {
        /// Index of the argument holding the number of keys.
        num_keys_index: i64,
    },
}

/// The documentation group of a command, as `COMMAND DOCS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandGroup {
    /// Keyspace commands (`generic`).
    Generic,
    /// String commands.
    String,
    /// Hash commands.
    Hash,
    /// Connection commands.
    Connection,
    /// Server commands.
    Server,
    /// Scripting commands.
    Scripting,
    /// scd's own `SCD.*` commands.
    Scd,
}

impl CommandGroup {
    /// The group's name in `COMMAND DOCS`.
    pub fn name(self) -> &'static str {
        match self {
            CommandGroup::Generic => "generic",
            CommandGroup::String => "string",
            CommandGroup::Hash => "hash",
            CommandGroup::Connection => "connection",
            CommandGroup::Server => "server",
            CommandGroup::Scripting => "scripting",
            CommandGroup::Scd => "scd",
        }
    }

    /// The ACL category `COMMAND INFO` lists for the group.
    fn category(self) -> &'static str {
        match self {
            CommandGroup::Generic => "@keyspace",
            CommandGroup::String => "@string",
            CommandGroup::Hash => "@hash",
            CommandGroup::Connection => "@connection",
            CommandGroup::Server => "@server",
            CommandGroup::Scripting => "@scripting",
            CommandGroup::Scd => "@scd",
        }
    }
}

/// The type of a documented argument, as `COMMAND DOCS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgumentKind {
    /// `string`.
    String,
    /// `integer`.
    Integer,
    /// `key`.
    Key,
    /// `pattern`.
    Pattern,
    /// `unix-time`.
    UnixTime,
    /// `pure-token`: the token alone.
    PureToken,
    /// `oneof`: one of the children.
    OneOf,
    /// `block`: the children in sequence.
    Block,
}

impl ArgumentKind {
    fn name(self) -> &'static str {
        match self {
            ArgumentKind::String => "string",
            ArgumentKind::Integer => "integer",
            ArgumentKind::Key => "key",
            ArgumentKind::Pattern => "pattern",
            ArgumentKind::UnixTime => "unix-time",
            ArgumentKind::PureToken => "pure-token",
            ArgumentKind::OneOf => "oneof",
            ArgumentKind::Block => "block",
        }
    }
}

/// One documented argument of a command, for `COMMAND DOCS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgumentSpec {
    /// The argument's name, e.g. `key` or `seconds`.
    pub name: &'static str,
    /// Its type.
    pub kind: ArgumentKind,
    /// The keyword that introduces it, e.g. `EX`.
    pub token_opt: Option<&'static str>,
    /// Whether it may be left out.
    pub is_optional: bool,
    /// Whether it may repeat.
    pub is_multiple: bool,
    /// The alternatives of a `oneof`, the parts of a `block`.
    pub children: &'static [ArgumentSpec],
}

impl ArgumentSpec {
    const fn new(name: &'static str, kind: ArgumentKind) -> ArgumentSpec {
        ArgumentSpec {
            name,
            kind,
            token_opt: None,
            is_optional: false,
            is_multiple: false,
            children: &[],
        }
    }

    const fn optional(self) -> ArgumentSpec {
        ArgumentSpec {
            is_optional: true,
            ..self
        }
    }

    const fn multiple(self) -> ArgumentSpec {
        ArgumentSpec {
            is_multiple: true,
            ..self
        }
    }

    const fn token(self, token: &'static str) -> ArgumentSpec {
        ArgumentSpec {
            token_opt: Some(token),
            ..self
        }
    }
}

const fn key(name: &'static str) -> ArgumentSpec {
    ArgumentSpec::new(name, ArgumentKind::Key)
}

const fn string(name: &'static str) -> ArgumentSpec {
    ArgumentSpec::new(name, ArgumentKind::String)
}

const fn integer(name: &'static str) -> ArgumentSpec {
    ArgumentSpec::new(name, ArgumentKind::Integer)
}

const fn unix_time(name: &'static str) -> ArgumentSpec {
    ArgumentSpec::new(name, ArgumentKind::UnixTime)
}

const fn pattern(name: &'static str) -> ArgumentSpec {
    ArgumentSpec::new(name, ArgumentKind::Pattern)
}

const fn pure_token(name: &'static str, token: &'static str) -> ArgumentSpec {
    ArgumentSpec::new(name, ArgumentKind::PureToken).token(token)
}

const fn one_of(name: &'static str, children: &'static [ArgumentSpec]) -> ArgumentSpec {
    ArgumentSpec {
        children,
        ..ArgumentSpec::new(name, ArgumentKind::OneOf)
    }
}

const fn block(name: &'static str, children: &'static [ArgumentSpec]) -> ArgumentSpec {
    ArgumentSpec {
        children,
        ..ArgumentSpec::new(name, ArgumentKind::Block)
    }
}

/// The parser of one command: gets the whole request, arity already checked.
type ParseFn = fn(Vec<Bytes>) -> Result<Command, CommandError>;

/// One row of the command table.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// The name to look up, lowercase: `get`, or `setname` for a subcommand.
    pub name: &'static str,
    /// The name `COMMAND INFO` and errors use: `get`, or `client|setname`.
    pub full_name: &'static str,
    /// Redis' arity: N means exactly N arguments (the name included), -N at least N.
    pub arity: i32,
    /// Flags for `COMMAND INFO`.
    pub flags: CommandFlags,
    /// Where the keys are.
    pub key_spec: KeySpec,
    /// Documentation group.
    pub group: CommandGroup,
    /// The Redis version that introduced the command.
    pub since: &'static str,
    /// Time complexity, for `COMMAND DOCS`.
    pub complexity: &'static str,
    /// One-line summary, for `COMMAND DOCS`.
    pub summary: &'static str,
    /// Documented arguments, for `COMMAND DOCS` and `redis-cli` hints.
    pub arguments: &'static [ArgumentSpec],
    /// Subcommands of a container command (CLIENT, COMMAND, CONFIG, SCRIPT).
    pub subcommands: &'static [CommandSpec],
    pub(crate) parse: ParseFn,
}

impl CommandSpec {
    /// Whether a request of `arg_count` arguments (the name included) fits the arity.
    pub fn accepts_arg_count(&self, arg_count: usize) -> bool {
        let arity = usize::try_from(self.arity.unsigned_abs()).unwrap_or(usize::MAX);
        if self.arity >= 0 {
            arg_count == arity
        } else {
            arg_count >= arity
        }
    }

    /// The legacy `first key, last key, step` triple of `COMMAND INFO`.
    pub fn legacy_key_range(&self) -> (i64, i64, i64) {
        match self.key_spec {
            KeySpec::Range { first, last, step } => (first, last, step),
            KeySpec::None | KeySpec::KeyNum { .. } => (0, 0, 0),
        }
    }
}

const fn container(
    name: &'static str,
    arity: i32,
    group: CommandGroup,
    since: &'static str,
    summary: &'static str,
    subcommands: &'static [CommandSpec],
    parse: ParseFn,
) -> CommandSpec {
    CommandSpec {
        name,
        full_name: name,
        arity,
        flags: CommandFlags::NONE,
        key_spec: KeySpec::None,
        group,
        since,
        complexity: "Depends on subcommand.",
        summary,
        arguments: &[],
        subcommands,
        parse,
    }
}

/// What a container without a subcommand does: a wrong-arity error, as in Redis (only
/// COMMAND, arity -1, has a meaning alone and uses its own parser).
fn parse_container_without_subcommand(args: Vec<Bytes>) -> Result<Command, CommandError> {
    let name = args.first().map(|name| &name[..]).unwrap_or_default();
    let spec = lookup(name).ok_or(CommandError::Empty)?;
    Err(CommandError::WrongNumberOfArguments {
        command: spec.full_name,
    })
}

const fn flags(list: &[CommandFlags]) -> CommandFlags {
    let mut union = CommandFlags::NONE;
    let mut index = 0;
    while index < list.len() {
        union = union.union(list[index]);
        index += 1;
    }
    union
}

const WRITE: CommandFlags = CommandFlags::WRITE;
const READONLY: CommandFlags = CommandFlags::READONLY;
const DENYOOM: CommandFlags = CommandFlags::DENYOOM;
const FAST: CommandFlags = CommandFlags::FAST;
const ADMIN: CommandFlags = CommandFlags::ADMIN;
const NOSCRIPT: CommandFlags = CommandFlags::NOSCRIPT;
const LOADING: CommandFlags = CommandFlags::LOADING;
const STALE: CommandFlags = CommandFlags::STALE;
const NO_AUTH: CommandFlags = CommandFlags::NO_AUTH;
const ALLOW_BUSY: CommandFlags = CommandFlags::ALLOW_BUSY;

/// Flags of the commands that must work before authentication and while busy.
const CONNECTION_SETUP: CommandFlags =
    flags(&[NOSCRIPT, LOADING, STALE, FAST, NO_AUTH, ALLOW_BUSY]);
const READ_FAST: CommandFlags = flags(&[READONLY, FAST]);
const WRITE_FAST: CommandFlags = flags(&[WRITE, FAST]);
const WRITE_DENYOOM: CommandFlags = flags(&[WRITE, DENYOOM]);
const WRITE_DENYOOM_FAST: CommandFlags = flags(&[WRITE, DENYOOM, FAST]);
const SCRIPT_CALL: CommandFlags = flags(&[
    NOSCRIPT,
    CommandFlags::SKIP_MONITOR,
    CommandFlags::MAY_REPLICATE,
    CommandFlags::NO_MANDATORY_KEYS,
    STALE,
    CommandFlags::MOVABLE_KEYS,
]);

const ONE_KEY: KeySpec = KeySpec::Range {
    first: 1,
    last: 1,
    step: 1,
};
const ALL_KEYS: KeySpec = KeySpec::Range {
    first: 1,
    last: -1,
    step: 1,
};
const NO_KEYS: KeySpec = KeySpec::None;

const KEY: &[ArgumentSpec] = &[key("key")];
const KEY_VALUE: &[ArgumentSpec] = &[key("key"), string("value")];
const KEYS: &[ArgumentSpec] = &[key("key").multiple()];
const KEY_FIELD: &[ArgumentSpec] = &[key("key"), string("field")];
const KEY_FIELDS: &[ArgumentSpec] = &[key("key"), string("field").multiple()];
const KEY_FIELD_VALUES: &[ArgumentSpec] = &[
    key("key"),
    block("data", &[string("field"), string("value")]).multiple(),
];
const FLUSH_TYPE: &[ArgumentSpec] = &[one_of(
    "flush-type",
    &[pure_token("async", "ASYNC"), pure_token("sync", "SYNC")],
)
.optional()];
const EXPIRE_CONDITION: ArgumentSpec = one_of(
    "condition",
    &[
        pure_token("nx", "NX"),
        pure_token("xx", "XX"),
        pure_token("gt", "GT"),
        pure_token("lt", "LT"),
    ],
)
.optional();
const SCRIPT_CALL_ARGUMENTS: [ArgumentSpec; 3] = [
    integer("numkeys"),
    key("key").optional().multiple(),
    string("arg").optional().multiple(),
];

use CommandGroup::{
    Connection as CONNECTION, Generic as GENERIC, Hash as HASH, Scd as SCD, Scripting as SCRIPTING,
    Server as SERVER, String as STRING,
};

/// The scd version that introduced the `SCD.*` commands (Redis versions name the others).
const SCD_SINCE: &str = "0.1.0";

const CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "getname",
        full_name: "client|getname",
        arity: 2,
        flags: flags(&[NOSCRIPT, LOADING, STALE]),
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "2.6.9",
        complexity: "O(1)",
        summary: "Returns the name of the connection.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_client_getname,
    },
    CommandSpec {
        name: "help",
        full_name: "client|help",
        arity: 2,
        flags: flags(&[LOADING, STALE]),
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "5.0.0",
        complexity: "O(1)",
        summary: "Returns helpful text about the different subcommands.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_client_help,
    },
    CommandSpec {
        name: "id",
        full_name: "client|id",
        arity: 2,
        flags: flags(&[NOSCRIPT, LOADING, STALE]),
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "5.0.0",
        complexity: "O(1)",
        summary: "Returns the unique client ID of the connection.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_client_id,
    },
    CommandSpec {
        name: "info",
        full_name: "client|info",
        arity: 2,
        flags: flags(&[NOSCRIPT, LOADING, STALE]),
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "6.2.0",
        complexity: "O(1)",
        summary: "Returns information about the connection.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_client_info,
    },
    CommandSpec {
        name: "setinfo",
        full_name: "client|setinfo",
        arity: 4,
        flags: flags(&[NOSCRIPT, LOADING, STALE]),
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "7.2.0",
        complexity: "O(1)",
        summary: "Sets information specific to the client or connection.",
        arguments: &[one_of(
            "attr",
            &[
                string("libname").token("LIB-NAME"),
                string("libver").token("LIB-VER"),
            ],
        )],
        subcommands: &[],
        parse: cmd::parse_client_setinfo,
    },
    CommandSpec {
        name: "setname",
        full_name: "client|setname",
        arity: 3,
        flags: flags(&[NOSCRIPT, LOADING, STALE]),
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "2.6.9",
        complexity: "O(1)",
        summary: "Sets the connection name.",
        arguments: &[string("connection-name")],
        subcommands: &[],
        parse: cmd::parse_client_setname,
    },
];

const COMMAND_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "count",
        full_name: "command|count",
        arity: 2,
        flags: flags(&[LOADING, STALE]),
        key_spec: NO_KEYS,
        group: SERVER,
        since: "2.8.13",
        complexity: "O(1)",
        summary: "Returns a count of commands.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_command_count,
    },
    CommandSpec {
        name: "docs",
        full_name: "command|docs",
        arity: -2,
        flags: flags(&[LOADING, STALE]),
        key_spec: NO_KEYS,
        group: SERVER,
        since: "7.0.0",
        complexity: "O(N) where N is the number of commands to look up",
        summary: "Returns documentary information about one, multiple or all commands.",
        arguments: &[string("command-name").optional().multiple()],
        subcommands: &[],
        parse: cmd::parse_command_docs,
    },
    CommandSpec {
        name: "help",
        full_name: "command|help",
        arity: 2,
        flags: flags(&[LOADING, STALE]),
        key_spec: NO_KEYS,
        group: SERVER,
        since: "5.0.0",
        complexity: "O(1)",
        summary: "Returns helpful text about the different subcommands.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_command_help,
    },
    CommandSpec {
        name: "info",
        full_name: "command|info",
        arity: -2,
        flags: flags(&[LOADING, STALE]),
        key_spec: NO_KEYS,
        group: SERVER,
        since: "2.8.13",
        complexity: "O(N) where N is the number of commands to look up",
        summary: "Returns information about one, multiple or all commands.",
        arguments: &[string("command-name").optional().multiple()],
        subcommands: &[],
        parse: cmd::parse_command_info,
    },
];

const CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "get",
        full_name: "config|get",
        arity: -3,
        flags: flags(&[ADMIN, NOSCRIPT, LOADING, STALE]),
        key_spec: NO_KEYS,
        group: SERVER,
        since: "2.0.0",
        complexity: "O(N) when N is the number of configuration parameters provided",
        summary: "Returns the effective values of configuration parameters.",
        arguments: &[string("parameter").multiple()],
        subcommands: &[],
        parse: cmd::parse_config_get,
    },
    CommandSpec {
        name: "help",
        full_name: "config|help",
        arity: 2,
        flags: flags(&[LOADING, STALE]),
        key_spec: NO_KEYS,
        group: SERVER,
        since: "5.0.0",
        complexity: "O(1)",
        summary: "Returns helpful text about the different subcommands.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_config_help,
    },
];

const SCRIPT_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "exists",
        full_name: "script|exists",
        arity: -3,
        flags: flags(&[NOSCRIPT, STALE]),
        key_spec: NO_KEYS,
        group: SCRIPTING,
        since: "2.6.0",
        complexity: "O(N) with N being the number of scripts to check",
        summary: "Determines whether server-side Lua scripts exist in the script cache.",
        arguments: &[string("sha1").multiple()],
        subcommands: &[],
        parse: cmd::parse_script_exists,
    },
    CommandSpec {
        name: "flush",
        full_name: "script|flush",
        arity: -2,
        flags: flags(&[NOSCRIPT]),
        key_spec: NO_KEYS,
        group: SCRIPTING,
        since: "2.6.0",
        complexity: "O(N) with N being the number of scripts in cache",
        summary: "Removes all server-side Lua scripts from the script cache.",
        arguments: FLUSH_TYPE,
        subcommands: &[],
        parse: cmd::parse_script_flush,
    },
    CommandSpec {
        name: "help",
        full_name: "script|help",
        arity: 2,
        flags: flags(&[NOSCRIPT, LOADING, STALE]),
        key_spec: NO_KEYS,
        group: SCRIPTING,
        since: "5.0.0",
        complexity: "O(1)",
        summary: "Returns helpful text about the different subcommands.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_script_help,
    },
    CommandSpec {
        name: "load",
        full_name: "script|load",
        arity: 3,
        flags: flags(&[NOSCRIPT, STALE]),
        key_spec: NO_KEYS,
        group: SCRIPTING,
        since: "2.6.0",
        complexity: "O(N) with N being the length in bytes of the script body.",
        summary: "Loads a server-side Lua script to the script cache.",
        arguments: &[string("script")],
        subcommands: &[],
        parse: cmd::parse_script_load,
    },
];

/// Every command scd implements, sorted by name.
pub static COMMAND_TABLE: &[CommandSpec] = &[
    CommandSpec {
        name: "append",
        full_name: "append",
        arity: 3,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "2.0.0",
        complexity: "O(1)",
        summary: "Appends a string to the value of a key. Creates the key if it doesn't exist.",
        arguments: KEY_VALUE,
        subcommands: &[],
        parse: cmd::parse_append,
    },
    CommandSpec {
        name: "auth",
        full_name: "auth",
        arity: -2,
        flags: CONNECTION_SETUP,
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "1.0.0",
        complexity: "O(N) where N is the number of passwords defined for the user",
        summary: "Authenticates the connection.",
        arguments: &[string("username").optional(), string("password")],
        subcommands: &[],
        parse: cmd::parse_auth,
    },
    container(
        "client",
        -2,
        CONNECTION,
        "2.4.0",
        "A container for client connection commands.",
        CLIENT_SUBCOMMANDS,
        parse_container_without_subcommand,
    ),
    CommandSpec {
        flags: flags(&[LOADING, STALE]),
        complexity: "O(N) where N is the total number of Redis commands",
        ..container(
            "command",
            -1,
            SERVER,
            "2.8.13",
            "Returns detailed information about all commands.",
            COMMAND_SUBCOMMANDS,
            cmd::parse_command,
        )
    },
    container(
        "config",
        -2,
        SERVER,
        "2.0.0",
        "A container for server configuration commands.",
        CONFIG_SUBCOMMANDS,
        parse_container_without_subcommand,
    ),
    CommandSpec {
        name: "dbsize",
        full_name: "dbsize",
        arity: 1,
        flags: READ_FAST,
        key_spec: NO_KEYS,
        group: SERVER,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Returns the number of keys in the database.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_dbsize,
    },
    CommandSpec {
        name: "decr",
        full_name: "decr",
        arity: 2,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_decr,
    },
    CommandSpec {
        name: "decrby",
        full_name: "decrby",
        arity: 3,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
        arguments: &[key("key"), integer("decrement")],
        subcommands: &[],
        parse: cmd::parse_decrby,
    },
    CommandSpec {
        name: "del",
        full_name: "del",
        arity: -2,
        flags: WRITE,
        key_spec: ALL_KEYS,
        group: GENERIC,
        since: "1.0.0",
        complexity: "O(N) where N is the number of keys that will be removed.",
        summary: "Deletes one or more keys.",
        arguments: KEYS,
        subcommands: &[],
        parse: cmd::parse_del,
    },
    CommandSpec {
        name: "echo",
        full_name: "echo",
        arity: 2,
        flags: FAST,
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Returns the given string.",
        arguments: &[string("message")],
        subcommands: &[],
        parse: cmd::parse_echo,
    },
    CommandSpec {
        name: "eval",
        full_name: "eval",
        arity: -3,
        flags: SCRIPT_CALL,
        key_spec: KeySpec::KeyNum { num_keys_index: 2 },
        group: SCRIPTING,
        since: "2.6.0",
        complexity: "Depends on the script that is executed.",
        summary: "Executes a server-side Lua script.",
        arguments: &[
            string("script"),
            SCRIPT_CALL_ARGUMENTS[0],
            SCRIPT_CALL_ARGUMENTS[1],
            SCRIPT_CALL_ARGUMENTS[2],
        ],
        subcommands: &[],
        parse: cmd::parse_eval,
    },
    CommandSpec {
        name: "evalsha",
        full_name: "evalsha",
        arity: -3,
        flags: SCRIPT_CALL,
        key_spec: KeySpec::KeyNum { num_keys_index: 2 },
        group: SCRIPTING,
        since: "2.6.0",
        complexity: "Depends on the script that is executed.",
        summary: "Executes a server-side Lua script by SHA1 digest.",
        arguments: &[
            string("sha1"),
            SCRIPT_CALL_ARGUMENTS[0],
            SCRIPT_CALL_ARGUMENTS[1],
            SCRIPT_CALL_ARGUMENTS[2],
        ],
        subcommands: &[],
        parse: cmd::parse_evalsha,
    },
    CommandSpec {
        name: "exists",
        full_name: "exists",
        arity: -2,
        flags: READ_FAST,
        key_spec: ALL_KEYS,
        group: GENERIC,
        since: "1.0.0",
        complexity: "O(N) where N is the number of keys to check.",
        summary: "Determines whether one or more keys exist.",
        arguments: KEYS,
        subcommands: &[],
        parse: cmd::parse_exists,
    },
    CommandSpec {
        name: "expire",
        full_name: "expire",
        arity: -3,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: GENERIC,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Sets the expiration time of a key in seconds.",
        arguments: &[key("key"), integer("seconds"), EXPIRE_CONDITION],
        subcommands: &[],
        parse: cmd::parse_expire,
    },
    CommandSpec {
        name: "expireat",
        full_name: "expireat",
        arity: -3,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: GENERIC,
        since: "1.2.0",
        complexity: "O(1)",
        summary: "Sets the expiration time of a key to a Unix timestamp.",
        arguments: &[key("key"), unix_time("unix-time-seconds"), EXPIRE_CONDITION],
        subcommands: &[],
        parse: cmd::parse_expireat,
    },
    CommandSpec {
        name: "flushall",
        full_name: "flushall",
        arity: -1,
        flags: WRITE,
        key_spec: NO_KEYS,
        group: SERVER,
        since: "1.0.0",
        complexity: "O(N) where N is the total number of keys in all databases",
        summary: "Removes all keys from all databases.",
        arguments: FLUSH_TYPE,
        subcommands: &[],
        parse: cmd::parse_flushall,
    },
    CommandSpec {
        name: "flushdb",
        full_name: "flushdb",
        arity: -1,
        flags: WRITE,
        key_spec: NO_KEYS,
        group: SERVER,
        since: "1.0.0",
        complexity: "O(N) where N is the number of keys in the selected database",
        summary: "Remove all keys from the current database.",
        arguments: FLUSH_TYPE,
        subcommands: &[],
        parse: cmd::parse_flushdb,
    },
    CommandSpec {
        name: "get",
        full_name: "get",
        arity: 2,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Returns the string value of a key.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_get,
    },
    CommandSpec {
        name: "getdel",
        full_name: "getdel",
        arity: 2,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "6.2.0",
        complexity: "O(1)",
        summary: "Returns the string value of a key after deleting the key.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_getdel,
    },
    CommandSpec {
        name: "getex",
        full_name: "getex",
        arity: -2,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "6.2.0",
        complexity: "O(1)",
        summary: "Returns the string value of a key after setting its expiration time.",
        arguments: &[
            key("key"),
            one_of(
                "expiration",
                &[
                    integer("seconds").token("EX"),
                    integer("milliseconds").token("PX"),
                    unix_time("unix-time-seconds").token("EXAT"),
                    unix_time("unix-time-milliseconds").token("PXAT"),
                    pure_token("persist", "PERSIST"),
                ],
            )
            .optional(),
        ],
        subcommands: &[],
        parse: cmd::parse_getex,
    },
    CommandSpec {
        name: "getset",
        full_name: "getset",
        arity: 3,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Returns the previous string value of a key after setting it to a new value.",
        arguments: KEY_VALUE,
        subcommands: &[],
        parse: cmd::parse_getset,
    },
    CommandSpec {
        name: "hdel",
        full_name: "hdel",
        arity: -3,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(N) where N is the number of fields to be removed.",
        summary: "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.",
        arguments: KEY_FIELDS,
        subcommands: &[],
        parse: cmd::parse_hdel,
    },
    CommandSpec {
        name: "hello",
        full_name: "hello",
        arity: -1,
        flags: CONNECTION_SETUP,
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "6.0.0",
        complexity: "O(1)",
        summary: "Handshakes with the Redis server.",
        arguments: &[block(
            "arguments",
            &[
                integer("protover"),
                block("auth", &[string("username"), string("password")])
                    .token("AUTH")
                    .optional(),
                string("clientname").token("SETNAME").optional(),
            ],
        )
        .optional()],
        subcommands: &[],
        parse: cmd::parse_hello,
    },
    CommandSpec {
        name: "hexists",
        full_name: "hexists",
        arity: 3,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(1)",
        summary: "Determines whether a field exists in a hash.",
        arguments: KEY_FIELD,
        subcommands: &[],
        parse: cmd::parse_hexists,
    },
    CommandSpec {
        name: "hget",
        full_name: "hget",
        arity: 3,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(1)",
        summary: "Returns the value of a field in a hash.",
        arguments: KEY_FIELD,
        subcommands: &[],
        parse: cmd::parse_hget,
    },
    CommandSpec {
        name: "hgetall",
        full_name: "hgetall",
        arity: 2,
        flags: READONLY,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(N) where N is the size of the hash.",
        summary: "Returns all fields and values in a hash.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_hgetall,
    },
    CommandSpec {
        name: "hincrby",
        full_name: "hincrby",
        arity: 4,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(1)",
        summary: "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.",
        arguments: &[key("key"), string("field"), integer("increment")],
        subcommands: &[],
        parse: cmd::parse_hincrby,
    },
    CommandSpec {
        name: "hkeys",
        full_name: "hkeys",
        arity: 2,
        flags: READONLY,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(N) where N is the size of the hash.",
        summary: "Returns all fields in a hash.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_hkeys,
    },
    CommandSpec {
        name: "hlen",
        full_name: "hlen",
        arity: 2,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(1)",
        summary: "Returns the number of fields in a hash.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_hlen,
    },
    CommandSpec {
        name: "hmget",
        full_name: "hmget",
        arity: -3,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(N) where N is the number of fields being requested.",
        summary: "Returns the values of all fields in a hash.",
        arguments: KEY_FIELDS,
        subcommands: &[],
        parse: cmd::parse_hmget,
    },
    CommandSpec {
        name: "hmset",
        full_name: "hmset",
        arity: -4,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(N) where N is the number of fields being set.",
        summary: "Sets the values of multiple fields.",
        arguments: KEY_FIELD_VALUES,
        subcommands: &[],
        parse: cmd::parse_hmset,
    },
    CommandSpec {
        name: "hset",
        full_name: "hset",
        arity: -4,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(1) for each field/value pair added, so O(N) to add N field/value pairs when the command is called with multiple field/value pairs.",
        summary: "Creates or modifies the value of a field in a hash.",
        arguments: KEY_FIELD_VALUES,
        subcommands: &[],
        parse: cmd::parse_hset,
    },
    CommandSpec {
        name: "hvals",
        full_name: "hvals",
        arity: 2,
        flags: READONLY,
        key_spec: ONE_KEY,
        group: HASH,
        since: "2.0.0",
        complexity: "O(N) where N is the size of the hash.",
        summary: "Returns all values in a hash.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_hvals,
    },
    CommandSpec {
        name: "incr",
        full_name: "incr",
        arity: 2,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_incr,
    },
    CommandSpec {
        name: "incrby",
        full_name: "incrby",
        arity: 3,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        arguments: &[key("key"), integer("increment")],
        subcommands: &[],
        parse: cmd::parse_incrby,
    },
    CommandSpec {
        name: "info",
        full_name: "info",
        arity: -1,
        flags: flags(&[LOADING, STALE]),
        key_spec: NO_KEYS,
        group: SERVER,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Returns information and statistics about the server.",
        arguments: &[string("section").optional().multiple()],
        subcommands: &[],
        parse: cmd::parse_info,
    },
    CommandSpec {
        name: "keys",
        full_name: "keys",
        arity: 2,
        flags: READONLY,
        key_spec: NO_KEYS,
        group: GENERIC,
        since: "1.0.0",
        complexity: "O(N) with N being the number of keys in the database, under the assumption that the key names in the database and the given pattern have limited length.",
        summary: "Returns all key names that match a pattern.",
        arguments: &[pattern("pattern")],
        subcommands: &[],
        parse: cmd::parse_keys,
    },
    CommandSpec {
        name: "mget",
        full_name: "mget",
        arity: -2,
        flags: READ_FAST,
        key_spec: ALL_KEYS,
        group: STRING,
        since: "1.0.0",
        complexity: "O(N) where N is the number of keys to retrieve.",
        summary: "Atomically returns the string values of one or more keys.",
        arguments: KEYS,
        subcommands: &[],
        parse: cmd::parse_mget,
    },
    CommandSpec {
        name: "mset",
        full_name: "mset",
        arity: -3,
        flags: WRITE_DENYOOM,
        key_spec: KeySpec::Range {
            first: 1,
            last: -1,
            step: 2,
        },
        group: STRING,
        since: "1.0.1",
        complexity: "O(N) where N is the number of keys to set.",
        summary: "Atomically creates or modifies the string values of one or more keys.",
        arguments: &[block("data", &[key("key"), string("value")]).multiple()],
        subcommands: &[],
        parse: cmd::parse_mset,
    },
    CommandSpec {
        name: "persist",
        full_name: "persist",
        arity: 2,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: GENERIC,
        since: "2.2.0",
        complexity: "O(1)",
        summary: "Removes the expiration time of a key.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_persist,
    },
    CommandSpec {
        name: "pexpire",
        full_name: "pexpire",
        arity: -3,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: GENERIC,
        since: "2.6.0",
        complexity: "O(1)",
        summary: "Sets the expiration time of a key in milliseconds.",
        arguments: &[key("key"), integer("milliseconds"), EXPIRE_CONDITION],
        subcommands: &[],
        parse: cmd::parse_pexpire,
    },
    CommandSpec {
        name: "pexpireat",
        full_name: "pexpireat",
        arity: -3,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: GENERIC,
        since: "2.6.0",
        complexity: "O(1)",
        summary: "Sets the expiration time of a key to a Unix milliseconds timestamp.",
        arguments: &[
            key("key"),
            unix_time("unix-time-milliseconds"),
            EXPIRE_CONDITION,
        ],
        subcommands: &[],
        parse: cmd::parse_pexpireat,
    },
    CommandSpec {
        name: "ping",
        full_name: "ping",
        arity: -1,
        flags: FAST,
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Returns the server's liveliness response.",
        arguments: &[string("message").optional()],
        subcommands: &[],
        parse: cmd::parse_ping,
    },
    CommandSpec {
        name: "psetex",
        full_name: "psetex",
        arity: 4,
        flags: WRITE_DENYOOM,
        key_spec: ONE_KEY,
        group: STRING,
        since: "2.6.0",
        complexity: "O(1)",
        summary: "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.",
        arguments: &[key("key"), integer("milliseconds"), string("value")],
        subcommands: &[],
        parse: cmd::parse_psetex,
    },
    CommandSpec {
        name: "pttl",
        full_name: "pttl",
        arity: 2,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: GENERIC,
        since: "2.6.0",
        complexity: "O(1)",
        summary: "Returns the expiration time in milliseconds of a key.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_pttl,
    },
    CommandSpec {
        name: "quit",
        full_name: "quit",
        arity: -1,
        flags: CONNECTION_SETUP,
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Closes the connection.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_quit,
    },
    CommandSpec {
        name: "rename",
        full_name: "rename",
        arity: 3,
        flags: WRITE,
        key_spec: KeySpec::Range {
            first: 1,
            last: 2,
            step: 1,
        },
        group: GENERIC,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Renames a key and overwrites the destination.",
        arguments: &[key("key"), key("newkey")],
        subcommands: &[],
        parse: cmd::parse_rename,
    },
    CommandSpec {
        name: "reset",
        full_name: "reset",
        arity: 1,
        flags: CONNECTION_SETUP,
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "6.2.0",
        complexity: "O(1)",
        summary: "Resets the connection.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_reset,
    },
    CommandSpec {
        name: "scan",
        full_name: "scan",
        arity: -2,
        flags: READONLY,
        key_spec: NO_KEYS,
        group: GENERIC,
        since: "2.8.0",
        complexity: "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection.",
        summary: "Iterates over the key names in the database.",
        arguments: &[
            integer("cursor"),
            pattern("pattern").token("MATCH").optional(),
            integer("count").token("COUNT").optional(),
            string("type").token("TYPE").optional(),
        ],
        subcommands: &[],
        parse: cmd::parse_scan,
    },
    CommandSpec {
        name: "scd.lock",
        full_name: "scd.lock",
        arity: -3,
        flags: WRITE_DENYOOM,
        key_spec: ONE_KEY,
        group: SCD,
        since: SCD_SINCE,
        complexity: "O(1)",
        summary: "Acquires a session lock with a lease, optionally queueing for it; returns its fencing token.",
        arguments: &[
            key("key"),
            integer("lease-ms"),
            integer("ms").token("WAIT").optional(),
            pure_token("session", "SESSION").optional(),
            string("id").token("OWNER").optional(),
        ],
        subcommands: &[],
        parse: cmd::parse_scd_lock,
    },
    CommandSpec {
        name: "scd.lockinfo",
        full_name: "scd.lockinfo",
        arity: 2,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: SCD,
        since: SCD_SINCE,
        complexity: "O(1)",
        summary: "Returns the holder, token, remaining lease, mode and waiters of a lock.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_scd_lockinfo,
    },
    CommandSpec {
        name: "scd.renew",
        full_name: "scd.renew",
        arity: 4,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: SCD,
        since: SCD_SINCE,
        complexity: "O(1)",
        summary: "Extends the lease of a lock held with the given token.",
        arguments: &[key("key"), integer("token"), integer("lease-ms")],
        subcommands: &[],
        parse: cmd::parse_scd_renew,
    },
    CommandSpec {
        name: "scd.set",
        full_name: "scd.set",
        arity: -4,
        flags: WRITE_DENYOOM,
        key_spec: ONE_KEY,
        group: SCD,
        since: SCD_SINCE,
        complexity: "O(1)",
        summary: "Sets a key only while the given fencing token holds its lock.",
        arguments: &[
            key("key"),
            string("value"),
            integer("token"),
            one_of(
                "expiration",
                &[
                    integer("seconds").token("EX"),
                    integer("milliseconds").token("PX"),
                ],
            )
            .optional(),
        ],
        subcommands: &[],
        parse: cmd::parse_scd_set,
    },
    CommandSpec {
        name: "scd.stale",
        full_name: "scd.stale",
        arity: 2,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: SCD,
        since: SCD_SINCE,
        complexity: "O(1)",
        summary: "Tells whether a key's latest writes may have been lost in a delayed-write failover.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_scd_stale,
    },
    CommandSpec {
        name: "scd.unlock",
        full_name: "scd.unlock",
        arity: 3,
        flags: WRITE_FAST,
        key_spec: ONE_KEY,
        group: SCD,
        since: SCD_SINCE,
        complexity: "O(1)",
        summary: "Releases a lock held with the given fencing token.",
        arguments: &[key("key"), integer("token")],
        subcommands: &[],
        parse: cmd::parse_scd_unlock,
    },
    container(
        "script",
        -2,
        SCRIPTING,
        "2.6.0",
        "A container for Lua scripts management commands.",
        SCRIPT_SUBCOMMANDS,
        parse_container_without_subcommand,
    ),
    CommandSpec {
        name: "select",
        full_name: "select",
        arity: 2,
        flags: flags(&[LOADING, STALE, FAST]),
        key_spec: NO_KEYS,
        group: CONNECTION,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Changes the selected database.",
        arguments: &[integer("index")],
        subcommands: &[],
        parse: cmd::parse_select,
    },
    CommandSpec {
        name: "set",
        full_name: "set",
        arity: -3,
        flags: WRITE_DENYOOM,
        key_spec: ONE_KEY,
        group: STRING,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        arguments: &[
            key("key"),
            string("value"),
            one_of(
                "condition",
                &[pure_token("nx", "NX"), pure_token("xx", "XX")],
            )
            .optional(),
            pure_token("get", "GET").optional(),
            one_of(
                "expiration",
                &[
                    integer("seconds").token("EX"),
                    integer("milliseconds").token("PX"),
                    unix_time("unix-time-seconds").token("EXAT"),
                    unix_time("unix-time-milliseconds").token("PXAT"),
                    pure_token("keepttl", "KEEPTTL"),
                ],
            )
            .optional(),
        ],
        subcommands: &[],
        parse: cmd::parse_set,
    },
    CommandSpec {
        name: "setex",
        full_name: "setex",
        arity: 4,
        flags: WRITE_DENYOOM,
        key_spec: ONE_KEY,
        group: STRING,
        since: "2.0.0",
        complexity: "O(1)",
        summary: "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.",
        arguments: &[key("key"), integer("seconds"), string("value")],
        subcommands: &[],
        parse: cmd::parse_setex,
    },
    CommandSpec {
        name: "setnx",
        full_name: "setnx",
        arity: 3,
        flags: WRITE_DENYOOM_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Set the string value of a key only when the key doesn't exist.",
        arguments: KEY_VALUE,
        subcommands: &[],
        parse: cmd::parse_setnx,
    },
    CommandSpec {
        name: "strlen",
        full_name: "strlen",
        arity: 2,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: STRING,
        since: "2.2.0",
        complexity: "O(1)",
        summary: "Returns the length of a string value.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_strlen,
    },
    CommandSpec {
        name: "time",
        full_name: "time",
        arity: 1,
        flags: flags(&[LOADING, STALE, FAST]),
        key_spec: NO_KEYS,
        group: SERVER,
        since: "2.6.0",
        complexity: "O(1)",
        summary: "Returns the server time.",
        arguments: &[],
        subcommands: &[],
        parse: cmd::parse_time,
    },
    CommandSpec {
        name: "touch",
        full_name: "touch",
        arity: -2,
        flags: READ_FAST,
        key_spec: ALL_KEYS,
        group: GENERIC,
        since: "3.2.1",
        complexity: "O(N) where N is the number of keys that will be touched.",
        summary: "Returns the number of existing keys out of those specified after updating the time they were last accessed.",
        arguments: KEYS,
        subcommands: &[],
        parse: cmd::parse_touch,
    },
    CommandSpec {
        name: "ttl",
        full_name: "ttl",
        arity: 2,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: GENERIC,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Returns the expiration time in seconds of a key.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_ttl,
    },
    CommandSpec {
        name: "type",
        full_name: "type",
        arity: 2,
        flags: READ_FAST,
        key_spec: ONE_KEY,
        group: GENERIC,
        since: "1.0.0",
        complexity: "O(1)",
        summary: "Determines the type of value stored at a key.",
        arguments: KEY,
        subcommands: &[],
        parse: cmd::parse_type,
    },
    CommandSpec {
        name: "unlink",
        full_name: "unlink",
        arity: -2,
        flags: WRITE_FAST,
        key_spec: ALL_KEYS,
        group: GENERIC,
        since: "4.0.0",
        complexity: "O(1) for each key removed regardless of its size. Then the command does O(N) work in a different thread in order to reclaim memory, where N is the number of allocations the deleted objects where composed of.",
        summary: "Asynchronously deletes one or more keys.",
        arguments: KEYS,
        subcommands: &[],
        parse: cmd::parse_unlink,
    },
];

/// Room for the longest command name: a name is hashed as one 128-bit number. A longer input
/// names no command; a test checks every name of the table fits.
const LONGEST_NAME_BYTES: usize = 16;

/// `name` lowercased, as a big-endian number padded with zero bytes. `None` if it is longer
/// than any name.
fn name_number(name: &[u8]) -> Option<u128> {
    let mut buffer = [0u8; LONGEST_NAME_BYTES];
    buffer.get_mut(..name.len())?.copy_from_slice(name);
    Some(u128::from_be_bytes(
        buffer.map(|byte| byte.to_ascii_lowercase()),
    ))
}

/// Slots of the name index: a power of two, at least twice the number of commands (a test
/// checks it) so that a lookup probes one or two slots.
const NAME_INDEX_SLOTS: usize = 512;

/// An open-addressing hash index from name numbers to table rows, built on first use.
struct NameIndex {
    /// `(name number, row)`; `None` is an empty slot.
    slots: Vec<Option<(u128, u16)>>,
}

impl NameIndex {
    fn build() -> NameIndex {
        let mut slots = vec![None; NAME_INDEX_SLOTS];
        for (row, spec) in COMMAND_TABLE.iter().enumerate() {
            let number = name_number(spec.name.as_bytes()).unwrap_or(u128::MAX);
            let mut slot = Self::home_slot(number);
            while slots[slot].is_some() {
                slot = (slot + 1) % NAME_INDEX_SLOTS;
            }
            slots[slot] = Some((number, u16::try_from(row).unwrap_or(u16::MAX)));
        }
        NameIndex { slots }
    }

    /// Fibonacci hashing of the number folded to 64 bits: the top bits of the product.
    fn home_slot(number: u128) -> usize {
        let folded = (number as u64) ^ ((number >> 64) as u64);
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - NAME_INDEX_SLOTS.trailing_zeros()))
            as usize
    }

    fn row(&self, number: u128) -> Option<usize> {
        let mut slot = Self::home_slot(number);
        loop {
            match self.slots[slot] {
                None => return None,
                Some((found, row)) if found == number => return Some(usize::from(row)),
                Some(_) => slot = (slot + 1) % NAME_INDEX_SLOTS,
            }
        }
    }
}

/// The index in [`COMMAND_TABLE`] of a command name, case-insensitively; `None` if scd does not
/// implement it. Runs twice per request (the parser, the node's statistics): one hash probe,
/// where a binary search comparing bytes cost ten times as much.
pub fn lookup_index(name: &[u8]) -> Option<usize> {
    static INDEX: std::sync::OnceLock<NameIndex> = std::sync::OnceLock::new();
    let number = name_number(name)?;
    let row = INDEX.get_or_init(NameIndex::build).row(number)?;
    // Zero padding cannot tell "get" from "get\0": the lengths must agree too.
    (COMMAND_TABLE[row].name.len() == name.len()).then_some(row)
}

/// The row of a command name, case-insensitively; `None` if scd does not implement it.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    lookup_index(name).map(|index| &COMMAND_TABLE[index])
}

/// The row of a full name as `COMMAND INFO` and `COMMAND DOCS` take it: `get`, or
/// `client|setname` for a subcommand.
pub fn lookup_full_name(full_name: &[u8]) -> Option<&'static CommandSpec> {
    let mut parts = full_name.splitn(2, |&byte| byte == b'|');
    let container = lookup(parts.next()?)?;
    match parts.next() {
        None => Some(container),
        Some(subcommand_name) => container.subcommands.iter().find(|subcommand| {
            subcommand
                .name
                .as_bytes()
                .eq_ignore_ascii_case(subcommand_name)
        }),
    }
}

/// Writes the whole reply to a `COMMAND`, `COMMAND COUNT`, `COMMAND INFO` or `COMMAND DOCS`
/// request.
pub fn encode_command_query(query: &CommandQuery, encoder: &mut ReplyEncoder<'_>) {
    match query {
        CommandQuery::Count => {
            encoder.integer(i64::try_from(COMMAND_TABLE.len()).unwrap_or(i64::MAX));
        }
        CommandQuery::All => {
            encoder.array_header(COMMAND_TABLE.len());
            COMMAND_TABLE
                .iter()
                .for_each(|spec| encode_command_info(Some(spec), encoder));
        }
        CommandQuery::Info { names } if names.is_empty() => {
            encode_command_query(&CommandQuery::All, encoder);
        }
        CommandQuery::Info { names } => {
            encoder.array_header(names.len());
            for name in names {
                encode_command_info(lookup_full_name(name), encoder);
            }
        }
        CommandQuery::Docs { names } if names.is_empty() => {
            encoder.map_header(COMMAND_TABLE.len());
            for spec in COMMAND_TABLE {
                encoder.bulk(spec.full_name);
                encode_command_docs(spec, encoder);
            }
        }
        CommandQuery::Docs { names } => {
            let found = || names.iter().filter_map(|name| lookup_full_name(name));
            encoder.map_header(found().count());
            for spec in found() {
                encoder.bulk(spec.full_name);
                encode_command_docs(spec, encoder);
            }
        }
    }
}

/// The ACL categories `COMMAND INFO` lists, derived from the flags and the group.
fn categories(spec: &CommandSpec) -> Vec<&'static str> {
    let mut categories = Vec::with_capacity(5);
    if spec.flags.contains(CommandFlags::WRITE) {
        categories.push("@write");
    } else if spec.flags.contains(CommandFlags::READONLY) {
        categories.push("@read");
    }
    if spec.subcommands.is_empty() {
        categories.push(spec.group.category());
    }
    if spec.flags.contains(CommandFlags::ADMIN) {
        categories.extend(["@admin", "@dangerous"]);
    }
    categories.push(if spec.flags.contains(CommandFlags::FAST) {
        "@fast"
    } else {
        "@slow"
    });
    categories
}

/// Writes one command's `COMMAND INFO` entry in Redis 7's ten-element shape, or a null for
/// a command scd does not have.
pub fn encode_command_info(spec_opt: Option<&CommandSpec>, encoder: &mut ReplyEncoder<'_>) {
    let Some(spec) = spec_opt else {
        encoder.null();
        return;
    };
    let (first_key, last_key, key_step) = spec.legacy_key_range();
    encoder.array_header(10);
    encoder.bulk(spec.full_name);
    encoder.integer(i64::from(spec.arity));
    encoder.set_header(spec.flags.names().count());
    spec.flags.names().for_each(|name| encoder.simple(name));
    encoder.integer(first_key);
    encoder.integer(last_key);
    encoder.integer(key_step);
    let categories = categories(spec);
    encoder.set_header(categories.len());
    categories
        .iter()
        .for_each(|category| encoder.simple(category));
    // Tips: none of scd's commands needs a cluster-wide request or response policy.
    encoder.set_header(0);
    encode_key_specs(spec, encoder);
    encoder.array_header(spec.subcommands.len());
    for subcommand in spec.subcommands {
        encode_command_info(Some(subcommand), encoder);
    }
}

fn encode_type_and_spec(encoder: &mut ReplyEncoder<'_>, type_name: &str, spec_pairs: usize) {
    encoder.map_header(2);
    encoder.bulk("type");
    encoder.bulk(type_name);
    encoder.bulk("spec");
    encoder.map_header(spec_pairs);
}

fn encode_key_specs(spec: &CommandSpec, encoder: &mut ReplyEncoder<'_>) {
    let (begin_index, find_keys) = match spec.key_spec {
        KeySpec::None => {
            encoder.array_header(0);
            return;
        }
        KeySpec::Range { first, .. } => (first, spec.key_spec),
        KeySpec::KeyNum { num_keys_index } => (num_keys_index, spec.key_spec),
    };
    encoder.array_header(1);
    encoder.map_header(3);
    encoder.bulk("flags");
    let key_flags: [&str; 2] = if spec.flags.contains(CommandFlags::WRITE) {
        ["RW", "update"]
    } else {
        ["RO", "access"]
    };
    encoder.set_header(key_flags.len());
    key_flags.iter().for_each(|flag| encoder.simple(flag));
    encoder.bulk("begin_search");
    encode_type_and_spec(encoder, "index", 1);
    encoder.bulk("index");
    encoder.integer(begin_index);
    encoder.bulk("find_keys");
    match find_keys {
        KeySpec::Range { first, last, step } => {
            encode_type_and_spec(encoder, "range", 3);
            encoder.bulk("lastkey");
            // Key specs count the last key from the first one; negative stays from the end.
            encoder.integer(if last >= 0 { last - first } else { last });
            encoder.bulk("keystep");
            encoder.integer(step);
            encoder.bulk("limit");
            encoder.integer(0);
        }
        KeySpec::KeyNum { .. } | KeySpec::None => {
            encode_type_and_spec(encoder, "keynum", 3);
            encoder.bulk("keynumidx");
            encoder.integer(0);
            encoder.bulk("firstkey");
            encoder.integer(1);
            encoder.bulk("keystep");
            encoder.integer(1);
        }
    }
}

/// Writes one command's `COMMAND DOCS` map (without its name) in Redis 7's shape.
pub fn encode_command_docs(spec: &CommandSpec, encoder: &mut ReplyEncoder<'_>) {
    let has_arguments = !spec.arguments.is_empty();
    let has_subcommands = !spec.subcommands.is_empty();
    encoder.map_header(4 + usize::from(has_arguments) + usize::from(has_subcommands));
    encoder.bulk("summary");
    encoder.bulk(spec.summary);
    encoder.bulk("since");
    encoder.bulk(spec.since);
    encoder.bulk("group");
    encoder.bulk(spec.group.name());
    encoder.bulk("complexity");
    encoder.bulk(spec.complexity);
    if has_arguments {
        encoder.bulk("arguments");
        encode_arguments(spec.arguments, encoder);
    }
    if has_subcommands {
        encoder.bulk("subcommands");
        encoder.map_header(spec.subcommands.len());
        for subcommand in spec.subcommands {
            encoder.bulk(subcommand.full_name);
            encode_command_docs(subcommand, encoder);
        }
    }
}

fn encode_arguments(arguments: &[ArgumentSpec], encoder: &mut ReplyEncoder<'_>) {
    // An array, not a set: redis-cli asserts the array type in RESP3.
    encoder.array_header(arguments.len());
    for argument in arguments {
        let is_key = argument.kind == ArgumentKind::Key;
        let has_flags = argument.is_optional || argument.is_multiple;
        let has_children = !argument.children.is_empty();
        encoder.map_header(
            2 + usize::from(is_key)
                + usize::from(argument.token_opt.is_some())
                + usize::from(has_flags)
                + usize::from(has_children),
        );
        encoder.bulk("name");
        encoder.bulk(argument.name);
        encoder.bulk("type");
        encoder.bulk(argument.kind.name());
        if is_key {
            // Every command here has a single key spec, so every key refers to spec 0.
            encoder.bulk("key_spec_index");
            encoder.integer(0);
        }
        if let Some(token) = argument.token_opt {
            encoder.bulk("token");
            encoder.bulk(token);
        }
        if has_flags {
            encoder.bulk("flags");
            let flags = [
                argument.is_optional.then_some("optional"),
                argument.is_multiple.then_some("multiple"),
            ];
            encoder.set_header(flags.iter().flatten().count());
            flags.iter().flatten().for_each(|flag| encoder.simple(flag));
        }
        if has_children {
            encoder.bulk("arguments");
            encode_arguments(argument.children, encoder);
        }
    }
}

impl HelpTopic {
    /// The lines of the HELP reply, as Redis words them for the subcommands scd has.
    pub fn lines(self) -> &'static [&'static str] {
        match self {
            HelpTopic::Client => &[
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "SETINFO <option> <value>",
                "    Set client meta attr. Options are:",
                "    * LIB-NAME: the client lib name.",
                "    * LIB-VER: the client lib version.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "HELP",
                "    Print this help.",
            ],
            HelpTopic::Command => &[
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all commands.",
                "COUNT",
                "    Return the total number of commands in this server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "HELP",
                "    Print this help.",
            ],
            HelpTopic::Config => &[
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "HELP",
                "    Print this help.",
            ],
            HelpTopic::Script => &[
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache. Very dangerous on replicas.",
                "    When called without the optional mode argument, the behavior is determined by the",
                "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
                "    * ASYNC: Asynchronously flush the scripts cache.",
                "    * SYNC: Synchronously flush the scripts cache.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Print this help.",
            ],
        }
    }
}

/// Writes a container's HELP reply: an array of status lines, as Redis' `addReplyHelp`.
pub fn encode_help(topic: HelpTopic, encoder: &mut ReplyEncoder<'_>) {
    let lines = topic.lines();
    encoder.array_header(lines.len());
    lines.iter().for_each(|line| encoder.simple(line));
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::encode::ProtocolVersion;
    use crate::frame::Frame;
    use crate::limits::Limits;

    /// Encodes with `write` in `version` and parses the reply back into one frame.
    fn reply(version: ProtocolVersion, write: impl Fn(&mut ReplyEncoder<'_>)) -> Frame {
        let mut out = BytesMut::new();
        write(&mut ReplyEncoder::new(&mut out, version));
        let frame = Frame::parse(&mut out, &Limits::default())
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|| panic!("incomplete reply"));
        assert!(out.is_empty(), "one reply, nothing after it");
        frame
    }

    fn bulk(text: &str) -> Frame {
        Frame::bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn status(text: &str) -> Frame {
        Frame::simple(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn all_specs() -> impl Iterator<Item = &'static CommandSpec> {
        COMMAND_TABLE
            .iter()
            .flat_map(|spec| std::iter::once(spec).chain(spec.subcommands))
    }

    #[test]
    fn table_is_sorted_lowercase_and_unique() {
        for pair in COMMAND_TABLE.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for spec in COMMAND_TABLE {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert_eq!(spec.full_name, spec.name);
            for subcommand in spec.subcommands {
                assert_eq!(
                    subcommand.full_name,
                    format!("{}|{}", spec.name, subcommand.name)
                );
                assert_eq!(subcommand.name, subcommand.name.to_ascii_lowercase());
                assert!(
                    subcommand.subcommands.is_empty(),
                    "one level of subcommands"
                );
            }
        }
    }

    #[test]
    fn every_command_is_documented() {
        for spec in all_specs() {
            assert!(!spec.summary.is_empty(), "{}", spec.full_name);
            assert!(!spec.since.is_empty(), "{}", spec.full_name);
            assert!(!spec.complexity.is_empty(), "{}", spec.full_name);
            assert!(spec.arity != 0, "{}", spec.full_name);
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_knows_full_names() {
        assert_eq!(lookup(b"GET").map(|spec| spec.name), Some("get"));
        assert_eq!(lookup(b"hGeTaLl").map(|spec| spec.name), Some("hgetall"));
        assert!(lookup(b"lpush").is_none());
        assert!(lookup(b"").is_none());
        assert!(lookup(&[b'g'; LONGEST_NAME_BYTES + 1]).is_none());
        assert!(lookup(b"get\0").is_none());
        assert!(lookup(b"\0").is_none());
        assert!(COMMAND_TABLE.len() * 2 <= NAME_INDEX_SLOTS);
        for (index, spec) in COMMAND_TABLE.iter().enumerate() {
            assert!(
                spec.name.len() <= LONGEST_NAME_BYTES,
                "{} is too long",
                spec.name
            );
            assert_eq!(
                lookup_index(spec.name.to_ascii_uppercase().as_bytes()),
                Some(index)
            );
        }
        assert_eq!(
            lookup_full_name(b"CLIENT|SetName").map(|spec| spec.full_name),
            Some("client|setname")
        );
        assert_eq!(
            lookup_full_name(b"client").map(|spec| spec.full_name),
            Some("client")
        );
        assert!(lookup_full_name(b"client|list").is_none());
        assert!(lookup_full_name(b"get|x").is_none());
    }

    #[test]
    fn every_command_refuses_a_wrong_argument_count_with_its_full_name() {
        let args_for = |spec: &CommandSpec, count: usize| -> Vec<Bytes> {
            let mut args: Vec<Bytes> = spec
                .full_name
                .split('|')
                .map(|part| Bytes::copy_from_slice(part.as_bytes()))
                .collect();
            args.resize(count, Bytes::from_static(b"x"));
            args
        };
        let name_parts = |spec: &CommandSpec| spec.full_name.split('|').count();
        for spec in all_specs() {
            let minimum = usize::try_from(spec.arity.unsigned_abs()).unwrap_or(usize::MAX);
            let mut wrong_counts = vec![minimum - 1];
            if spec.arity > 0 {
                wrong_counts.push(minimum + 1);
            }
            for count in wrong_counts {
                if count < name_parts(spec) || count == 0 {
                    continue;
                }
                assert_eq!(
                    Command::parse(args_for(spec, count)).err(),
                    Some(CommandError::WrongNumberOfArguments {
                        command: spec.full_name
                    }),
                    "{} with {count} arguments",
                    spec.full_name
                );
            }
            assert!(spec.accepts_arg_count(minimum), "{}", spec.full_name);
        }
    }

    #[test]
    fn command_count_is_the_number_of_commands() {
        for version in [ProtocolVersion::Resp2, ProtocolVersion::Resp3] {
            assert_eq!(
                reply(version, |encoder| encode_command_query(
                    &CommandQuery::Count,
                    encoder
                )),
                Frame::Integer(66)
            );
        }
        assert_eq!(COMMAND_TABLE.len(), 66);
    }

    #[test]
    fn command_info_has_redis_7_shape() {
        let frame = reply(ProtocolVersion::Resp3, |encoder| {
            encode_command_query(
                &CommandQuery::Info {
                    names: vec![Bytes::from_static(b"GET"), Bytes::from_static(b"nosuch")],
                },
                encoder,
            )
        });
        let range_spec = |flags: [&str; 2], last: i64, step: i64| {
            Frame::Map(vec![
                (
                    bulk("flags"),
                    Frame::Set(flags.iter().map(|flag| status(flag)).collect()),
                ),
                (
                    bulk("begin_search"),
                    Frame::Map(vec![
                        (bulk("type"), bulk("index")),
                        (
                            bulk("spec"),
                            Frame::Map(vec![(bulk("index"), Frame::Integer(1))]),
                        ),
                    ]),
                ),
                (
                    bulk("find_keys"),
                    Frame::Map(vec![
                        (bulk("type"), bulk("range")),
                        (
                            bulk("spec"),
                            Frame::Map(vec![
                                (bulk("lastkey"), Frame::Integer(last)),
                                (bulk("keystep"), Frame::Integer(step)),
                                (bulk("limit"), Frame::Integer(0)),
                            ]),
                        ),
                    ]),
                ),
            ])
        };
        let expect = Frame::Array(vec![
            Frame::Array(vec![
                bulk("get"),
                Frame::Integer(2),
                Frame::Set(vec![status("readonly"), status("fast")]),
                Frame::Integer(1),
                Frame::Integer(1),
                Frame::Integer(1),
                Frame::Set(vec![status("@read"), status("@string"), status("@fast")]),
                Frame::Set(vec![]),
                Frame::Array(vec![range_spec(["RO", "access"], 0, 1)]),
                Frame::Array(vec![]),
            ]),
            Frame::Null,
        ]);
        assert_eq!(frame, expect);

        let mset = reply(ProtocolVersion::Resp3, |encoder| {
            encode_command_info(lookup(b"mset"), encoder)
        });
        let Frame::Array(fields) = mset else {
            panic!("COMMAND INFO entry is an array");
        };
        assert_eq!(
            fields[3..6],
            [Frame::Integer(1), Frame::Integer(-1), Frame::Integer(2)]
        );
        assert_eq!(
            fields[8],
            Frame::Array(vec![range_spec(["RW", "update"], -1, 2)])
        );
    }

    #[test]
    fn command_info_of_scripts_reports_movable_keys() {
        let Frame::Array(fields) = reply(ProtocolVersion::Resp2, |encoder| {
            encode_command_info(lookup(b"eval"), encoder)
        }) else {
            panic!("COMMAND INFO entry is an array");
        };
        assert_eq!(
            fields[3..6],
            [Frame::Integer(0), Frame::Integer(0), Frame::Integer(0)]
        );
        let Frame::Array(flags) = &fields[2] else {
            panic!("flags are a set");
        };
        assert!(flags.contains(&status("movablekeys")));
        let Frame::Array(key_specs) = &fields[8] else {
            panic!("key specs are an array");
        };
        assert_eq!(key_specs.len(), 1);
    }

    #[test]
    fn command_info_of_a_container_lists_its_subcommands() {
        let Frame::Array(fields) = reply(ProtocolVersion::Resp3, |encoder| {
            encode_command_info(lookup(b"client"), encoder)
        }) else {
            panic!("COMMAND INFO entry is an array");
        };
        let Frame::Array(subcommands) = &fields[9] else {
            panic!("subcommands are an array");
        };
        assert_eq!(subcommands.len(), CLIENT_SUBCOMMANDS.len());
        assert!(
            matches!(&subcommands[0], Frame::Array(entry) if entry[0] == bulk("client|getname"))
        );
    }

    /// Key-value pairs of a map, or of its RESP2 form, a flat array.
    fn pairs(frame: &Frame) -> Vec<(&Frame, &Frame)> {
        match frame {
            Frame::Map(pairs) => pairs.iter().map(|(key, value)| (key, value)).collect(),
            Frame::Array(flat) => {
                assert!(flat.len() % 2 == 0, "a RESP2 map has an even length");
                flat.chunks_exact(2)
                    .map(|pair| (&pair[0], &pair[1]))
                    .collect()
            }
            other => panic!("expected a map, got {other:?}"),
        }
    }

    fn key_name(frame: &Frame) -> String {
        match frame {
            Frame::Bulk(text) => String::from_utf8_lossy(text).into_owned(),
            other => panic!("map keys are bulk strings (redis-cli asserts it), got {other:?}"),
        }
    }

    /// The checks redis-cli's `cliInitCommandHelpEntry` makes with `assert`.
    fn assert_argument_shape(argument: &Frame) {
        let mut has_name = false;
        let mut has_type = false;
        for (key, value) in pairs(argument) {
            match key_name(key).as_str() {
                "name" | "token" | "display_text" => {
                    has_name |= key_name(key) == "name";
                    assert!(matches!(value, Frame::Bulk(_)), "{value:?}");
                }
                "type" => {
                    has_type = true;
                    let kind = key_name(value);
                    assert!(
                        [
                            "string",
                            "integer",
                            "double",
                            "key",
                            "pattern",
                            "unix-time",
                            "pure-token",
                            "oneof",
                            "block"
                        ]
                        .contains(&kind.as_str()),
                        "{kind}"
                    );
                }
                "flags" => {
                    let (Frame::Set(flags) | Frame::Array(flags)) = value else {
                        panic!("argument flags are a set, got {value:?}");
                    };
                    assert!(flags.iter().all(|flag| matches!(flag, Frame::Simple(_))));
                }
                "arguments" => {
                    let Frame::Array(children) = value else {
                        panic!("arguments are an array, got {value:?}");
                    };
                    children.iter().for_each(assert_argument_shape);
                }
                "key_spec_index" => assert!(matches!(value, Frame::Integer(0))),
                other => panic!("unexpected argument field {other}"),
            }
        }
        assert!(has_name && has_type, "{argument:?}");
    }

    fn assert_docs_shape(docs: &Frame) {
        let mut seen = Vec::new();
        for (key, value) in pairs(docs) {
            let field = key_name(key);
            match field.as_str() {
                "summary" | "since" | "group" | "complexity" => {
                    assert!(matches!(value, Frame::Bulk(_)), "{field}: {value:?}");
                }
                "arguments" => {
                    let Frame::Array(arguments) = value else {
                        panic!("arguments are an array (redis-cli asserts it), got {value:?}");
                    };
                    arguments.iter().for_each(assert_argument_shape);
                }
                "subcommands" => {
                    for (name, subcommand_docs) in pairs(value) {
                        assert!(key_name(name).contains('|'));
                        assert_docs_shape(subcommand_docs);
                    }
                }
                other => panic!("unexpected docs field {other}"),
            }
            seen.push(field);
        }
        for required in ["summary", "since", "group"] {
            assert!(
                seen.iter().any(|field| field == required),
                "{required} missing"
            );
        }
    }

    #[test]
    fn command_docs_has_the_shape_redis_cli_asserts_in_both_versions() {
        for version in [ProtocolVersion::Resp2, ProtocolVersion::Resp3] {
            let docs = reply(version, |encoder| {
                encode_command_query(&CommandQuery::Docs { names: vec![] }, encoder)
            });
            let commands = pairs(&docs);
            assert_eq!(commands.len(), COMMAND_TABLE.len(), "{version:?}");
            for (name, command_docs) in commands {
                assert!(lookup(key_name(name).as_bytes()).is_some());
                assert_docs_shape(command_docs);
            }
        }
    }

    #[test]
    fn command_docs_of_named_commands_skips_unknown_ones() {
        let docs = reply(ProtocolVersion::Resp3, |encoder| {
            encode_command_query(
                &CommandQuery::Docs {
                    names: vec![
                        Bytes::from_static(b"set"),
                        Bytes::from_static(b"nosuch"),
                        Bytes::from_static(b"client|setname"),
                    ],
                },
                encoder,
            )
        });
        let names: Vec<String> = pairs(&docs)
            .into_iter()
            .map(|(name, _)| key_name(name))
            .collect();
        assert_eq!(names, ["set", "client|setname"]);
        let set_docs = pairs(&docs)[0].1;
        let summary = pairs(set_docs)
            .into_iter()
            .find(|(key, _)| key_name(key) == "summary")
            .map(|(_, value)| value.clone());
        assert_eq!(
            summary,
            Some(bulk(
                "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."
            ))
        );
    }

    #[test]
    fn command_without_subcommand_lists_every_command_info() {
        let Frame::Array(entries) = reply(ProtocolVersion::Resp2, |encoder| {
            encode_command_query(&CommandQuery::All, encoder)
        }) else {
            panic!("COMMAND replies an array");
        };
        assert_eq!(entries.len(), COMMAND_TABLE.len());
        let Frame::Array(info_entries) = reply(ProtocolVersion::Resp2, |encoder| {
            encode_command_query(&CommandQuery::Info { names: vec![] }, encoder)
        }) else {
            panic!("COMMAND INFO replies an array");
        };
        assert_eq!(info_entries, entries);
    }

    #[test]
    fn help_replies_are_arrays_of_status_lines() {
        for topic in [
            HelpTopic::Client,
            HelpTopic::Command,
            HelpTopic::Config,
            HelpTopic::Script,
        ] {
            let Frame::Array(lines) = reply(ProtocolVersion::Resp3, |encoder| {
                encode_help(topic, encoder)
            }) else {
                panic!("HELP replies an array");
            };
            assert_eq!(lines.len(), topic.lines().len());
            assert!(lines.iter().all(|line| matches!(line, Frame::Simple(_))));
            assert_eq!(lines.last(), Some(&status("    Print this help.")));
        }
    }

    #[test]
    fn flags_name_themselves_in_redis_order() {
        let names: Vec<&str> = CONNECTION_SETUP.names().collect();
        assert_eq!(
            names,
            [
                "noscript",
                "loading",
                "stale",
                "fast",
                "no_auth",
                "allow_busy"
            ]
        );
        assert!(CONNECTION_SETUP.contains(FAST));
        assert!(!CONNECTION_SETUP.contains(WRITE));
    }
}
