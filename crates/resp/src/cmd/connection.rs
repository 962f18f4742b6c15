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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::test_support::{b, check, check_error};

    fn connection(command: ConnectionCommand) -> Command {
        Command::Connection(command)
    }

    fn hello(
        protocol_version_opt: Option<ProtocolVersion>,
        credentials_opt: Option<(&str, &str)>,
        client_name_opt: Option<&str>,
    ) -> Command {
        connection(ConnectionCommand::Hello(Hello {
            protocol_version_opt,
            credentials_opt: credentials_opt.map(|(username, password)| Credentials {
                username: b(username),
                password: b(password),
            }),
            client_name_opt: client_name_opt.map(b),
        }))
    }

    fn client(command: ClientCommand) -> Command {
        connection(ConnectionCommand::Client(command))
    }

    #[test]
    fn ping_and_echo_parse() {
        check(
            "PING",
            connection(ConnectionCommand::Ping { message_opt: None }),
        );
        check(
            "PING hi",
            connection(ConnectionCommand::Ping {
                message_opt: Some(b("hi")),
            }),
        );
        check_error(
            "PING a b",
            "ERR wrong number of arguments for 'ping' command",
        );
        check(
            "ECHO \"a b\"",
            connection(ConnectionCommand::Echo { message: b("a b") }),
        );
        check_error("ECHO", "ERR wrong number of arguments for 'echo' command");
        check_error(
            "ECHO a b",
            "ERR wrong number of arguments for 'echo' command",
        );
    }

    #[test]
    fn hello_parses_its_version_and_options_in_any_order() {
        check("HELLO", hello(None, None, None));
        check("HELLO 3", hello(Some(ProtocolVersion::Resp3), None, None));
        check("HELLO 2", hello(Some(ProtocolVersion::Resp2), None, None));
        check(
            "HELLO 3 AUTH default secret SETNAME app",
            hello(
                Some(ProtocolVersion::Resp3),
                Some(("default", "secret")),
                Some("app"),
            ),
        );
        check(
            "hello 2 setname app auth user pass",
            hello(
                Some(ProtocolVersion::Resp2),
                Some(("user", "pass")),
                Some("app"),
            ),
        );
        check(
            "HELLO 3 SETNAME a SETNAME b",
            hello(Some(ProtocolVersion::Resp3), None, Some("b")),
        );
    }

    #[test]
    fn hello_errors_match_redis() {
        check_error(
            "HELLO three",
            "ERR Protocol version is not an integer or out of range",
        );
        check_error("HELLO 4", "NOPROTO unsupported protocol version");
        check_error("HELLO 1", "NOPROTO unsupported protocol version");
        check_error("HELLO 4 FOO", "NOPROTO unsupported protocol version");
        check_error(
            "HELLO 3 AUTH user",
            "ERR Syntax error in HELLO option 'AUTH'",
        );
        check_error(
            "HELLO 3 SETNAME",
            "ERR Syntax error in HELLO option 'SETNAME'",
        );
        check_error("HELLO 3 FOO", "ERR Syntax error in HELLO option 'FOO'");
        check_error(
            "HELLO 3 SETNAME \"a b\"",
            "ERR Client names cannot contain spaces, newlines or special characters.",
        );
    }

    #[test]
    fn auth_takes_a_password_and_optionally_a_user() {
        check(
            "AUTH secret",
            connection(ConnectionCommand::Auth {
                username_opt: None,
                password: b("secret"),
            }),
        );
        check(
            "AUTH user secret",
            connection(ConnectionCommand::Auth {
                username_opt: Some(b("user")),
                password: b("secret"),
            }),
        );
        check_error("AUTH a b c", "ERR syntax error");
        check_error("AUTH", "ERR wrong number of arguments for 'auth' command");
    }

    #[test]
    fn credentials_never_show_the_password_in_debug_output() {
        let credentials = Credentials {
            username: b("user"),
            password: b("hunter2"),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }

    #[test]
    fn select_checks_the_index_like_redis() {
        check(
            "SELECT 0",
            connection(ConnectionCommand::Select { db_index: 0 }),
        );
        check(
            "SELECT 15",
            connection(ConnectionCommand::Select { db_index: 15 }),
        );
        check_error("SELECT -1", "ERR DB index is out of range");
        check_error("SELECT x", "ERR value is not an integer or out of range");
        check_error(
            "SELECT 2147483648",
            "ERR value is not an integer or out of range",
        );
        check_error(
            "SELECT",
            "ERR wrong number of arguments for 'select' command",
        );
    }

    #[test]
    fn quit_and_reset_parse() {
        check("QUIT", connection(ConnectionCommand::Quit));
        check("QUIT now", connection(ConnectionCommand::Quit));
        check("RESET", connection(ConnectionCommand::Reset));
        check_error(
            "RESET x",
            "ERR wrong number of arguments for 'reset' command",
        );
    }

    #[test]
    fn client_subcommands_parse() {
        check(
            "CLIENT SETNAME app",
            client(ClientCommand::SetName { name: b("app") }),
        );
        check(
            "client setname \"\"",
            client(ClientCommand::SetName { name: b("") }),
        );
        check("CLIENT GETNAME", client(ClientCommand::GetName));
        check("CLIENT ID", client(ClientCommand::Id));
        check("CLIENT INFO", client(ClientCommand::Info));
        check(
            "CLIENT SETINFO LIB-NAME redis-py",
            client(ClientCommand::SetInfo {
                attribute: ClientInfoAttribute::LibraryName,
                value: b("redis-py"),
            }),
        );
        check(
            "CLIENT SETINFO lib-ver 5.0.1",
            client(ClientCommand::SetInfo {
                attribute: ClientInfoAttribute::LibraryVersion,
                value: b("5.0.1"),
            }),
        );
        check("CLIENT HELP", Command::Help(HelpTopic::Client));
    }

    #[test]
    fn client_errors_match_redis() {
        check_error(
            "CLIENT SETNAME \"a b\"",
            "ERR Client names cannot contain spaces, newlines or special characters.",
        );
        check_error("CLIENT SETINFO foo bar", "ERR Unrecognized option 'foo'");
        check_error(
            "CLIENT SETINFO LIB-NAME \"a b\"",
            "ERR LIB-NAME cannot contain spaces, newlines or special characters.",
        );
        check_error(
            "CLIENT LIST",
            "ERR unknown subcommand 'LIST'. Try CLIENT HELP.",
        );
        check_error(
            "client kill x",
            "ERR unknown subcommand 'kill'. Try CLIENT HELP.",
        );
        check_error(
            "CLIENT",
            "ERR wrong number of arguments for 'client' command",
        );
        check_error(
            "CLIENT SETNAME",
            "ERR wrong number of arguments for 'client|setname' command",
        );
        check_error(
            "CLIENT ID x",
            "ERR wrong number of arguments for 'client|id' command",
        );
        check_error(
            "CLIENT SETINFO LIB-NAME",
            "ERR wrong number of arguments for 'client|setinfo' command",
        );
    }
}
