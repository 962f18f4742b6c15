//! Server commands: COMMAND, INFO, DBSIZE, TIME, CONFIG GET, FLUSHDB, FLUSHALL.

use bytes::Bytes;

use super::{Command, HelpTopic, is_keyword, take_from};
use crate::error::CommandError;

/// A command about the server rather than a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCommand {
    /// `COMMAND [COUNT|DOCS [name ...]|INFO [name ...]]`: answered entirely from the command
    /// table by [`crate::table::encode_command_query`].
    Command(CommandQuery),
    /// `INFO [section ...]`.
    Info {
        /// The sections asked for; none means the default set.
        sections: Vec<Bytes>,
    },
    /// `DBSIZE`.
    DbSize,
    /// `TIME`.
    Time,
    /// `CONFIG GET parameter [parameter ...]`.
    ConfigGet {
        /// Glob-style parameter names, at least one.
        patterns: Vec<Bytes>,
    },
    /// `FLUSHDB [ASYNC|SYNC]`.
    FlushDb {
        /// ASYNC or SYNC.
        mode: FlushMode,
    },
    /// `FLUSHALL [ASYNC|SYNC]`.
    FlushAll {
        /// ASYNC or SYNC.
        mode: FlushMode,
    },
}

/// What COMMAND was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND`: the info of every command.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND DOCS [name ...]`: none means all commands.
    Docs {
        /// Command names, `container|sub` for a subcommand.
        names: Vec<Bytes>,
    },
    /// `COMMAND INFO [name ...]`: none means all commands.
    Info {
        /// Command names, `container|sub` for a subcommand.
        names: Vec<Bytes>,
    },
}

/// The ASYNC or SYNC option of FLUSHDB, FLUSHALL and SCRIPT FLUSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FlushMode {
    /// No option: the server's default (Redis' `lazyfree-lazy-user-flush`).
    #[default]
    Default,
    /// SYNC: free before replying.
    Sync,
    /// ASYNC: free in the background.
    Async,
}

fn server(command: ServerCommand) -> Result<Command, CommandError> {
    Ok(Command::Server(command))
}

pub(crate) fn parse_command(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::Command(CommandQuery::All))
}

pub(crate) fn parse_command_count(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::Command(CommandQuery::Count))
}

pub(crate) fn parse_command_docs(args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::Command(CommandQuery::Docs {
        names: take_from(args, 2),
    }))
}

pub(crate) fn parse_command_info(args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::Command(CommandQuery::Info {
        names: take_from(args, 2),
    }))
}

pub(crate) fn parse_command_help(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    Ok(Command::Help(HelpTopic::Command))
}

pub(crate) fn parse_info(args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::Info {
        sections: take_from(args, 1),
    })
}

pub(crate) fn parse_dbsize(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::DbSize)
}

pub(crate) fn parse_time(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::Time)
}

pub(crate) fn parse_config_get(args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::ConfigGet {
        patterns: take_from(args, 2),
    })
}

pub(crate) fn parse_config_help(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    Ok(Command::Help(HelpTopic::Config))
}

/// FLUSHDB's and FLUSHALL's option, as Redis' `getFlushCommandFlags`.
fn flush_mode(args: &[Bytes]) -> Result<FlushMode, CommandError> {
    match args {
        [_] => Ok(FlushMode::Default),
        [_, option] if is_keyword(option, "sync") => Ok(FlushMode::Sync),
        [_, option] if is_keyword(option, "async") => Ok(FlushMode::Async),
        _ => Err(CommandError::Syntax),
    }
}

pub(crate) fn parse_flushdb(args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::FlushDb {
        mode: flush_mode(&args)?,
    })
}

pub(crate) fn parse_flushall(args: Vec<Bytes>) -> Result<Command, CommandError> {
    server(ServerCommand::FlushAll {
        mode: flush_mode(&args)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::test_support::{b, check, check_error};

    fn server(command: ServerCommand) -> Command {
        Command::Server(command)
    }

    #[test]
    fn command_queries_parse() {
        check("COMMAND", server(ServerCommand::Command(CommandQuery::All)));
        check(
            "COMMAND COUNT",
            server(ServerCommand::Command(CommandQuery::Count)),
        );
        check(
            "COMMAND DOCS",
            server(ServerCommand::Command(CommandQuery::Docs { names: vec![] })),
        );
        check(
            "command docs get client|setname",
            server(ServerCommand::Command(CommandQuery::Docs {
                names: vec![b("get"), b("client|setname")],
            })),
        );
        check(
            "COMMAND INFO get",
            server(ServerCommand::Command(CommandQuery::Info {
                names: vec![b("get")],
            })),
        );
        check("COMMAND HELP", Command::Help(HelpTopic::Command));
        check_error(
            "COMMAND LIST",
            "ERR unknown subcommand 'LIST'. Try COMMAND HELP.",
        );
        check_error(
            "COMMAND COUNT x",
            "ERR wrong number of arguments for 'command|count' command",
        );
    }

    #[test]
    fn info_dbsize_and_time_parse() {
        check("INFO", server(ServerCommand::Info { sections: vec![] }));
        check(
            "INFO server clients",
            server(ServerCommand::Info {
                sections: vec![b("server"), b("clients")],
            }),
        );
        check("DBSIZE", server(ServerCommand::DbSize));
        check("TIME", server(ServerCommand::Time));
        check_error(
            "DBSIZE x",
            "ERR wrong number of arguments for 'dbsize' command",
        );
        check_error("TIME x", "ERR wrong number of arguments for 'time' command");
    }

    #[test]
    fn config_get_parses_and_other_config_subcommands_are_unknown() {
        check(
            "CONFIG GET save",
            server(ServerCommand::ConfigGet {
                patterns: vec![b("save")],
            }),
        );
        check(
            "config get save appendonly",
            server(ServerCommand::ConfigGet {
                patterns: vec![b("save"), b("appendonly")],
            }),
        );
        check("CONFIG HELP", Command::Help(HelpTopic::Config));
        check_error(
            "CONFIG GET",
            "ERR wrong number of arguments for 'config|get' command",
        );
        check_error(
            "CONFIG SET a b",
            "ERR unknown subcommand 'SET'. Try CONFIG HELP.",
        );
        check_error(
            "CONFIG",
            "ERR wrong number of arguments for 'config' command",
        );
    }

    #[test]
    fn flushes_parse_their_mode() {
        check(
            "FLUSHDB",
            server(ServerCommand::FlushDb {
                mode: FlushMode::Default,
            }),
        );
        check(
            "FLUSHDB ASYNC",
            server(ServerCommand::FlushDb {
                mode: FlushMode::Async,
            }),
        );
        check(
            "flushdb sync",
            server(ServerCommand::FlushDb {
                mode: FlushMode::Sync,
            }),
        );
        check(
            "FLUSHALL",
            server(ServerCommand::FlushAll {
                mode: FlushMode::Default,
            }),
        );
        check(
            "FLUSHALL ASYNC",
            server(ServerCommand::FlushAll {
                mode: FlushMode::Async,
            }),
        );
        check_error("FLUSHDB foo", "ERR syntax error");
        check_error("FLUSHDB ASYNC x", "ERR syntax error");
        check_error("FLUSHALL foo", "ERR syntax error");
    }
}
