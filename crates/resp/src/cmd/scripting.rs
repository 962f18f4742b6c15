//! Scripting commands: EVAL, EVALSHA and SCRIPT LOAD, EXISTS, FLUSH. scd runs no Lua; the
//! node recognises the scripts it implements natively (phpredis' lock release) by SHA1 and
//! text, and refuses others.

use bytes::Bytes;

use super::{Command, FlushMode, HelpTopic, Keys, is_keyword, parse_integer, take, take_from};
use crate::error::CommandError;

/// A scripting command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptingCommand {
    /// `EVAL script numkeys [key ...] [arg ...]`.
    Eval(ScriptCall),
    /// `EVALSHA sha1 numkeys [key ...] [arg ...]`.
    EvalSha(ScriptCall),
    /// `SCRIPT LOAD script`.
    ScriptLoad {
        /// The script text.
        script: Bytes,
    },
    /// `SCRIPT EXISTS sha1 [sha1 ...]`.
    ScriptExists {
        /// The digests asked about, at least one.
        sha1s: Vec<Bytes>,
    },
    /// `SCRIPT FLUSH [ASYNC|SYNC]`.
    ScriptFlush {
        /// ASYNC or SYNC.
        mode: FlushMode,
    },
}

impl ScriptingCommand {
    pub(crate) fn keys(&self) -> Keys<'_> {
        match self {
            ScriptingCommand::Eval(call) | ScriptingCommand::EvalSha(call) => {
                Keys::every(call.keys(), 1)
            }
            _ => Keys::default(),
        }
    }
}

/// An EVAL or EVALSHA call: the script (or its SHA1, as sent: Redis compares digests
/// case-insensitively) and its keys and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCall {
    /// EVAL's script text, or EVALSHA's hex SHA1 digest.
    pub script_or_sha1: Bytes,
    /// The keys followed by the arguments, kept in one list to reuse the request's
    /// allocation.
    keys_and_args: Vec<Bytes>,
    /// How many of `keys_and_args` are keys; at most its length.
    num_keys: usize,
}

impl ScriptCall {
    /// The keys (Lua's `KEYS`).
    pub fn keys(&self) -> &[Bytes] {
        &self.keys_and_args[..self.num_keys]
    }

    /// The arguments after the keys (Lua's `ARGV`).
    pub fn args(&self) -> &[Bytes] {
        &self.keys_and_args[self.num_keys..]
    }
}

fn scripting(command: ScriptingCommand) -> Result<Command, CommandError> {
    Ok(Command::Scripting(command))
}

/// EVAL and EVALSHA, checked like Redis' `evalGenericCommand`: the key count must be an
/// integer, at most the number of arguments left, and not negative.
fn parse_script_call(mut args: Vec<Bytes>) -> Result<ScriptCall, CommandError> {
    let num_keys = parse_integer(&args[2])?;
    let args_after_num_keys = args.len() - 3;
    let num_keys = match usize::try_from(num_keys) {
        Ok(num_keys) if num_keys > args_after_num_keys => {
            return Err(CommandError::TooManyKeys);
        }
        Ok(num_keys) => num_keys,
        // Only a negative count fails to convert on a 64-bit target; a huge positive one on
        // a smaller target would also exceed the arguments.
        Err(_) if num_keys > 0 => return Err(CommandError::TooManyKeys),
        Err(_) => return Err(CommandError::NegativeNumberOfKeys),
    };
    let script_or_sha1 = take(&mut args, 1);
    Ok(ScriptCall {
        script_or_sha1,
        keys_and_args: take_from(args, 3),
        num_keys,
    })
}

pub(crate) fn parse_eval(args: Vec<Bytes>) -> Result<Command, CommandError> {
    scripting(ScriptingCommand::Eval(parse_script_call(args)?))
}

pub(crate) fn parse_evalsha(args: Vec<Bytes>) -> Result<Command, CommandError> {
    scripting(ScriptingCommand::EvalSha(parse_script_call(args)?))
}

pub(crate) fn parse_script_load(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    scripting(ScriptingCommand::ScriptLoad {
        script: take(&mut args, 2),
    })
}

pub(crate) fn parse_script_exists(args: Vec<Bytes>) -> Result<Command, CommandError> {
    scripting(ScriptingCommand::ScriptExists {
        sha1s: take_from(args, 2),
    })
}

pub(crate) fn parse_script_flush(args: Vec<Bytes>) -> Result<Command, CommandError> {
    let mode = match args.get(2) {
        None => FlushMode::Default,
        Some(option) if args.len() == 3 && is_keyword(option, "sync") => FlushMode::Sync,
        Some(option) if args.len() == 3 && is_keyword(option, "async") => FlushMode::Async,
        Some(_) => return Err(CommandError::ScriptFlushOption),
    };
    scripting(ScriptingCommand::ScriptFlush { mode })
}

pub(crate) fn parse_script_help(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    Ok(Command::Help(HelpTopic::Script))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::test_support::{args, b, check, check_error};

    fn call(script_or_sha1: &str, keys_and_args: &[&str], num_keys: usize) -> ScriptCall {
        ScriptCall {
            script_or_sha1: b(script_or_sha1),
            keys_and_args: keys_and_args.iter().map(|text| b(text)).collect(),
            num_keys,
        }
    }

    #[test]
    fn eval_splits_keys_from_arguments() {
        check(
            "EVAL \"return 1\" 0",
            Command::Scripting(ScriptingCommand::Eval(call("return 1", &[], 0))),
        );
        check(
            "EVAL s 2 k1 k2 a1",
            Command::Scripting(ScriptingCommand::Eval(call("s", &["k1", "k2", "a1"], 2))),
        );
        check(
            "EVALSHA b70c2384248f88e6b75b9f89241a180f856ad852 1 sid_LOCK secret",
            Command::Scripting(ScriptingCommand::EvalSha(call(
                "b70c2384248f88e6b75b9f89241a180f856ad852",
                &["sid_LOCK", "secret"],
                1,
            ))),
        );
        let Ok(Command::Scripting(ScriptingCommand::Eval(parsed))) =
            Command::parse(args("EVAL s 2 k1 k2 a1 a2"))
        else {
            panic!("EVAL did not parse");
        };
        assert_eq!(parsed.keys(), &[b("k1"), b("k2")]);
        assert_eq!(parsed.args(), &[b("a1"), b("a2")]);
    }

    #[test]
    fn eval_errors_match_redis() {
        check_error(
            "EVAL s 3 k1 k2",
            "ERR Number of keys can't be greater than number of args",
        );
        check_error(
            "EVAL s 9223372036854775807",
            "ERR Number of keys can't be greater than number of args",
        );
        check_error("EVAL s -1", "ERR Number of keys can't be negative");
        check_error("EVALSHA s x", "ERR value is not an integer or out of range");
        check_error("EVAL s", "ERR wrong number of arguments for 'eval' command");
        check_error(
            "EVALSHA",
            "ERR wrong number of arguments for 'evalsha' command",
        );
    }

    #[test]
    fn script_subcommands_parse() {
        check(
            "SCRIPT LOAD \"return 1\"",
            Command::Scripting(ScriptingCommand::ScriptLoad {
                script: b("return 1"),
            }),
        );
        check(
            "SCRIPT EXISTS a b",
            Command::Scripting(ScriptingCommand::ScriptExists {
                sha1s: vec![b("a"), b("b")],
            }),
        );
        let flush = |mode| Command::Scripting(ScriptingCommand::ScriptFlush { mode });
        check("SCRIPT FLUSH", flush(FlushMode::Default));
        check("SCRIPT FLUSH ASYNC", flush(FlushMode::Async));
        check("script flush sync", flush(FlushMode::Sync));
        check("SCRIPT HELP", Command::Help(HelpTopic::Script));
    }

    #[test]
    fn script_errors_match_redis() {
        check_error(
            "SCRIPT FLUSH foo",
            "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
        );
        check_error(
            "SCRIPT FLUSH SYNC x",
            "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
        );
        check_error(
            "SCRIPT LOAD",
            "ERR wrong number of arguments for 'script|load' command",
        );
        check_error(
            "SCRIPT LOAD a b",
            "ERR wrong number of arguments for 'script|load' command",
        );
        check_error(
            "SCRIPT EXISTS",
            "ERR wrong number of arguments for 'script|exists' command",
        );
        check_error(
            "SCRIPT KILL",
            "ERR unknown subcommand 'KILL'. Try SCRIPT HELP.",
        );
        check_error(
            "SCRIPT",
            "ERR wrong number of arguments for 'script' command",
        );
    }
}
