//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET and CLIENT.

use bytes::Bytes;

use super::{Command, HelpTopic, is_keyword, lossy, parse_integer, take};
use crate::encode::ProtocolVersion;
use crate::error::CommandError;
use crate::number::parse_i64_strict;

/// A command about the connection itself; the node answers it without touching data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionCommand {
    /// `PING [message]`: `+PONG`, or the message as a bulk string.
    Ping {
        /// The message to echo instead of PONG.
        message_opt: Option<Bytes>,
    },
    /// `ECHO message`.
    Echo {
        /// The message to send back.
        message: Bytes,
    },
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`.
    Hello(Hello),
    /// `AUTH [username] password`.
    Auth {
        /// The user; absent means Redis' `default` user.
        username_opt: Option<Bytes>,
        /// The password.
        password: Bytes,
    },
    /// `SELECT index`: the index is not negative; the node refuses indexes it does not have
    /// with [`CommandError::DbIndexOutOfRange`].
    Select {
        /// The database index.
        db_index: u32,
    },
    /// `QUIT`: reply `+OK`, then close.
    Quit,
    /// `RESET`: back to a fresh connection's state, reply `+RESET`.
    Reset,
    /// `CLIENT <subcommand>`.
    Client(ClientCommand),
}

/// HELLO's parsed options. Absent options leave the connection as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version to switch to.
    pub protocol_version_opt: Option<ProtocolVersion>,
    /// AUTH's username and password, to authenticate before switching.
    pub credentials_opt: Option<Credentials>,
    /// SETNAME's client name, already checked like CLIENT SETNAME's.
    pub client_name_opt: Option<Bytes>,
}

/// A username and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: Bytes,
    /// The password.
    pub password: Bytes,
}

impl std::fmt::Debug for Credentials {
    /// Leaves the password out, because commands end up in logs.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The CLIENT subcommands scd implements; the others get Redis' unknown-subcommand error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `CLIENT SETNAME name`: an empty name clears it.
    SetName {
        /// The name, checked to hold only `!`..`~`.
        name: Bytes,
    },
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    Id,
    /// `CLIENT INFO`.
    Info,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    SetInfo {
        /// Which attribute.
        attribute: ClientInfoAttribute,
        /// The value, checked to hold only `!`..`~`.
        value: Bytes,
    },
}

/// The attributes CLIENT SETINFO sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientInfoAttribute {
    /// `LIB-NAME`: the client library's name.
    LibraryName,
    /// `LIB-VER`: the client library's version.
    LibraryVersion,
}

/// Redis' `validateClientAttr`: names and library attributes hold printable ASCII without
/// spaces, so `CLIENT LIST` stays splittable on spaces.
fn is_valid_client_attribute(value: &[u8]) -> bool {
    value.iter().all(|byte| (b'!'..=b'~').contains(byte))
}

fn connection(command: ConnectionCommand) -> Result<Command, CommandError> {
    Ok(Command::Connection(command))
}

pub(crate) fn parse_ping(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    if args.len() > 2 {
        return Err(CommandError::WrongNumberOfArguments { command: "ping" });
    }
    let message_opt = (args.len() == 2).then(|| take(&mut args, 1));
    connection(ConnectionCommand::Ping { message_opt })
}

pub(crate) fn parse_echo(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    connection(ConnectionCommand::Echo {
        message: take(&mut args, 1),
    })
}

pub(crate) fn parse_hello(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let mut hello = Hello {
        protocol_version_opt: None,
        credentials_opt: None,
        client_name_opt: None,
    };
    if args.len() >= 2 {
        let number = parse_i64_strict(&args[1]).ok_or(CommandError::ProtocolVersionNotAnInteger)?;
        hello.protocol_version_opt = Some(
            ProtocolVersion::from_number(number).ok_or(CommandError::UnsupportedProtocolVersion)?,
        );
    }
    let mut index = 2;
    while index < args.len() {
        let more_args = args.len() - 1 - index;
        if is_keyword(&args[index], "auth") && more_args >= 2 {
            hello.credentials_opt = Some(Credentials {
                username: take(&mut args, index + 1),
                password: take(&mut args, index + 2),
            });
            index += 3;
        } else if is_keyword(&args[index], "setname") && more_args >= 1 {
            let name = take(&mut args, index + 1);
            if !is_valid_client_attribute(&name) {
                return Err(CommandError::InvalidClientName);
            }
            hello.client_name_opt = Some(name);
            index += 2;
        } else {
            return Err(CommandError::HelloOption {
                option: lossy(&args[index]),
            });
        }
    }
    connection(ConnectionCommand::Hello(hello))
}

pub(crate) fn parse_auth(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let (username_opt, password) = match args.len() {
        2 => (None, take(&mut args, 1)),
        3 => (Some(take(&mut args, 1)), take(&mut args, 2)),
        _ => return Err(CommandError::Syntax),
    };
    connection(ConnectionCommand::Auth {
        username_opt,
        password,
    })
}

pub(crate) fn parse_select(args: Vec<Bytes>) -> Result<Command, CommandError> {
    // Redis reads the index as a C int: out of that range it is not an integer at all.
    let db_index =
        i32::try_from(parse_integer(&args[1])?).map_err(|_| CommandError::NotAnInteger)?;
    let db_index = u32::try_from(db_index).map_err(|_| CommandError::DbIndexOutOfRange)?;
    connection(ConnectionCommand::Select { db_index })
}

pub(crate) fn parse_quit(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    connection(ConnectionCommand::Quit)
}

pub(crate) fn parse_reset(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    connection(ConnectionCommand::Reset)
}

pub(crate) fn parse_client_setname(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let name = take(&mut args, 2);
    if !is_valid_client_attribute(&name) {
        return Err(CommandError::InvalidClientName);
    }
    connection(ConnectionCommand::Client(ClientCommand::SetName { name }))
}

pub(crate) fn parse_client_getname(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    connection(ConnectionCommand::Client(ClientCommand::GetName))
}

pub(crate) fn parse_client_id(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    connection(ConnectionCommand::Client(ClientCommand::Id))
}

pub(crate) fn parse_client_info(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    connection(ConnectionCommand::Client(ClientCommand::Info))
}

pub(crate) fn parse_client_setinfo(mut args: Vec<Bytes>) -> Result<Command, CommandError> {
    let attribute = if is_keyword(&args[2], "lib-name") {
        ClientInfoAttribute::LibraryName
    } else if is_keyword(&args[2], "lib-ver") {
        ClientInfoAttribute::LibraryVersion
    } else {
        return Err(CommandError::UnrecognizedClientInfoOption {
            option: lossy(&args[2]),
        });
    };
    let value = take(&mut args, 3);
    if !is_valid_client_attribute(&value) {
        return Err(CommandError::InvalidClientInfoValue {
            attribute: lossy(&args[2]),
        });
    }
    connection(ConnectionCommand::Client(ClientCommand::SetInfo {
        attribute,
        value,
    }))
}

pub(crate) fn parse_client_help(_args: Vec<Bytes>) -> Result<Command, CommandError> {
    Ok(Command::Help(HelpTopic::Client))
}
