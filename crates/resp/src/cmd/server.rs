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
