//! What each Redis command does on a node: connection commands run here, keyed commands become
//! store operations routed to their partitions, whole-keyspace commands visit every partition.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use resp::{
    ClientCommand, ClientInfoAttribute, Command, ConnectionCommand, ExpireConditions, Expiry,
    HashCommand, KeyCommand, ProtocolVersion, ReplyEncoder, ScanCommand, ScdCommand, ScriptCall,
    ScriptingCommand, ServerCommand, SetCondition, StringCommand, TtlUpdate, ValueTypeFilter,
};
use store::{
    ExpireCondition, ExpireTarget, LockMode, Op, Reply, SetExpiry, StoreError, TimeUnit, ValueType,
};

use super::reply::{self, Shape};
use super::scripting::{self, NativeScript};
use super::session::Session;
use crate::pending::{BoxFuture, Pending};
use crate::state::NodeState;

/// What running a command produced.
pub(crate) enum Dispatched {
    /// The reply is already written.
    Written,
    /// A store reply to write in `Shape` once known.
    Store(Pending<Reply>, Shape),
    /// A reply that needs more than one round of store work; resolves to its encoded bytes.
    Encoded(BoxFuture<BytesMut>),
}

/// Runs `command` for `session`. `out` receives replies that are known at once.
pub(crate) fn dispatch(
    state: &Arc<NodeState>,
    session: &mut Session,
    command: Command,
    out: &mut BytesMut,
) -> Dispatched {
    let db = session.db;
    match command {
        Command::String(command) => strings(state, db, command),
        Command::Key(command) => keys(state, session, command),
        Command::Hash(command) => hashes(state, db, command),
        Command::Connection(command) => connection(state, session, command, out),
        Command::Server(command) => server(state, session, command, out),
        Command::Scripting(command) => scripting(state, db, command, session.protocol, out),
        Command::Help(topic) => {
            resp::table::encode_help(topic, &mut ReplyEncoder::new(out, session.protocol));
            Dispatched::Written
        }
        Command::Scd(command) => scd(state, session, command, out),
    }
}

fn one(state: &NodeState, db: u8, op: Op, shape: Shape) -> Dispatched {
    Dispatched::Store(state.router.execute(db, op), shape)
}

/// One operation per key, replies gathered in key order into an array.
fn per_key(state: &NodeState, db: u8, ops: impl Iterator<Item = Op>) -> Pending<Reply> {
    let pendings: Vec<Pending<Reply>> = ops.map(|op| state.router.execute(db, op)).collect();
    Pending::join_all(pendings).map(Reply::Array)
}

/// An absolute deadline from a Redis expiry, never 0 (which the store reads as "no expiry").
fn deadline_ms(expiry: Expiry, now_ms: u64) -> u64 {
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    u64::try_from(expiry.deadline_unix_ms(now))
        .unwrap_or(0)
        .max(1)
}

fn strings(state: &NodeState, db: u8, command: StringCommand) -> Dispatched {
    match command {
        StringCommand::Get { key } => one(state, db, Op::Get { key }, Shape::Plain),
        StringCommand::Set(set) => {
            let expiry = match set.ttl {
                TtlUpdate::Keep => SetExpiry::Keep,
                TtlUpdate::Remove => SetExpiry::Never,
                TtlUpdate::Set(expiry) => SetExpiry::AtMs(deadline_ms(expiry, state.now_ms())),
            };
            let condition = match set.condition {
                SetCondition::Always => store::SetCondition::Always,
                SetCondition::IfAbsent => store::SetCondition::IfAbsent,
                SetCondition::IfPresent => store::SetCondition::IfPresent,
            };
            let op = Op::Set {
                key: set.key,
                value: set.value,
                expiry,
                condition,
                return_old: set.returns_old_value,
                flags: 0,
            };
            one(state, db, op, Shape::Plain)
        }
        StringCommand::SetNx { key, value } => {
            let op = Op::Set {
                key,
                value,
                expiry: SetExpiry::Never,
                condition: store::SetCondition::IfAbsent,
                return_old: false,
                flags: 0,
            };
            one(state, db, op, Shape::WrittenAsOne)
        }
        StringCommand::GetEx { key, ttl } => {
            let op = match ttl {
                TtlUpdate::Keep => Op::Get { key },
                TtlUpdate::Remove => Op::GetEx {
                    key,
                    expiry: ExpireTarget::Persist,
                },
                TtlUpdate::Set(expiry) => Op::GetEx {
                    key,
                    expiry: ExpireTarget::AtMs(deadline_ms(expiry, state.now_ms())),
                },
            };
            one(state, db, op, Shape::Plain)
        }
        StringCommand::GetDel { key } => one(state, db, Op::GetDel { key }, Shape::Plain),
        StringCommand::MGet { keys } => {
            // MGET answers nil for a key of another type rather than failing, as Redis does.
            let replies =
                per_key(state, db, keys.into_iter().map(|key| Op::Get { key })).map(|reply| {
                    match reply {
                        Reply::Array(items) => Reply::Array(
                            items
                                .into_iter()
                                .map(|item| match item {
                                    Reply::Error(StoreError::WrongType) => Reply::Nil,
                                    other => other,
                                })
                                .collect(),
                        ),
                        other => other,
                    }
                });
            Dispatched::Store(replies, Shape::Plain)
        }
        StringCommand::MSet { keys_and_values } => {
            let ops = keys_and_values.into_pairs().map(|(key, value)| Op::Set {
                key,
                value,
                expiry: SetExpiry::Never,
                condition: store::SetCondition::Always,
                return_old: false,
                flags: 0,
            });
            Dispatched::Store(per_key(state, db, ops), Shape::AllOk)
        }
        StringCommand::Append { key, value } => {
            one(state, db, Op::Append { key, value }, Shape::Plain)
        }
        StringCommand::StrLen { key } => one(state, db, Op::Strlen { key }, Shape::Plain),
        StringCommand::IncrBy { key, delta } => {
            one(state, db, Op::IncrBy { key, delta }, Shape::Plain)
        }
    }
}

fn expire_condition(conditions: ExpireConditions) -> ExpireCondition {
    match conditions {
        ExpireConditions {
            only_if_no_expiry: true,
            ..
        } => ExpireCondition::IfNoExpiry,
        ExpireConditions {
            only_if_later: true,
            ..
        } => ExpireCondition::IfGreater,
        ExpireConditions {
            only_if_earlier: true,
            only_if_has_expiry: true,
            ..
        } => ExpireCondition::IfHasExpiryAndLess,
        ExpireConditions {
            only_if_earlier: true,
            ..
        } => ExpireCondition::IfLess,
        ExpireConditions {
            only_if_has_expiry: true,
            ..
        } => ExpireCondition::IfHasExpiry,
        _ => ExpireCondition::Always,
    }
}

fn keys(state: &Arc<NodeState>, session: &Session, command: KeyCommand) -> Dispatched {
    let db = session.db;
    match command {
        KeyCommand::Del { mut keys } if keys.len() == 1 => {
            let key = keys.remove(0);
            one(state, db, Op::Delete { key, cas_opt: None }, Shape::Plain)
        }
        KeyCommand::Del { keys } => {
            let ops = keys
                .into_iter()
                .map(|key| Op::Delete { key, cas_opt: None });
            Dispatched::Store(per_key(state, db, ops), Shape::Sum)
        }
        KeyCommand::Exists { keys } | KeyCommand::Touch { keys } => {
            let ops = keys.into_iter().map(|key| Op::Exists { key });
            Dispatched::Store(per_key(state, db, ops), Shape::Sum)
        }
        KeyCommand::Expire {
            key,
            expiry,
            conditions,
        } => {
            let target = ExpireTarget::AtMs(deadline_ms(expiry, state.now_ms()));
            let op = Op::Expire {
                key,
                target,
                condition: expire_condition(conditions),
            };
            one(state, db, op, Shape::Plain)
        }
        KeyCommand::Ttl { key, unit } => {
            let unit = match unit {
                resp::TimeUnit::Seconds => TimeUnit::Seconds,
                resp::TimeUnit::Milliseconds => TimeUnit::Milliseconds,
            };
            one(state, db, Op::Ttl { key, unit }, Shape::Plain)
        }
        KeyCommand::Persist { key } => {
            let op = Op::Expire {
                key,
                target: ExpireTarget::Persist,
                condition: ExpireCondition::Always,
            };
            one(state, db, op, Shape::Plain)
        }
        KeyCommand::Type { key } => one(state, db, Op::Type { key }, Shape::Plain),
        KeyCommand::Rename { key, new_key } => rename(state, db, key, new_key, session.protocol),
        KeyCommand::Scan(scan) => {
            Dispatched::Encoded(scan_page(Arc::clone(state), db, scan, session.protocol))
        }
        KeyCommand::Keys { pattern } => {
            let pendings = (0..state.router.num_partitions())
                .map(|partition| {
                    state.router.execute_on(
                        partition,
                        db,
                        Op::Keys {
                            pattern: pattern.clone(),
                        },
                    )
                })
                .collect();
            let merged = Pending::join_all(pendings).map(|replies| {
                let mut keys = Vec::new();
                for reply in replies {
                    match reply {
                        Reply::Array(items) => keys.extend(items),
                        error @ Reply::Error(_) => return error,
                        _ => {}
                    }
                }
                Reply::Array(keys)
            });
            Dispatched::Store(merged, Shape::Plain)
        }
    }
}

/// RENAME. Within one partition it is one atomic operation. Across partitions it is three: read
/// the entry, write it under the new name (replacing what was there), delete the old name if it
/// still holds the version read (README, "What differs from a single Redis"). The new key exists
/// before the old one is removed, so a failure between the steps leaves both, never neither; a
/// write of the old name after the read is kept, as if it came after the RENAME.
fn rename(
    state: &Arc<NodeState>,
    db: u8,
    from: Bytes,
    to: Bytes,
    protocol: ProtocolVersion,
) -> Dispatched {
    if state.router.partition_of(&from) == state.router.partition_of(&to) {
        let op = Op::Rename {
            from,
            to,
            only_if_target_absent: false,
        };
        return one(state, db, op, Shape::Plain);
    }
    let state = Arc::clone(state);
    Dispatched::Encoded(Box::pin(async move {
        let reply = rename_across_partitions(&state, db, from, to).await;
        encoded(protocol, |encoder| {
            reply::encode(&reply, Shape::Plain, encoder)
        })
    }))
}

async fn rename_across_partitions(state: &NodeState, db: u8, from: Bytes, to: Bytes) -> Reply {
    let image = match state
        .router
        .execute(db, Op::Dump { key: from.clone() })
        .resolve()
        .await
    {
        Reply::Image(image) => image,
        Reply::Nil => return Reply::Error(StoreError::NoSuchKey),
        other => return other,
    };
    // The version the copy carries: the old name is deleted only if it still has it, so a write
    // of the old name between the read and the delete is not dropped but stays, as a write that
    // came after the RENAME. The HLC of the version is the entry's memcached CAS.
    let copied_version = image.version.hlc;
    let restored = state
        .router
        .execute(
            db,
            Op::Restore {
                key: to,
                image: *image,
                replace: true,
            },
        )
        .resolve()
        .await;
    if let Reply::Error(_) = restored {
        return restored;
    }
    match state
        .router
        .execute(
            db,
            Op::Delete {
                key: from,
                cas_opt: Some(copied_version),
            },
        )
        .resolve()
        .await
    {
        error @ Reply::Error(_) => error,
        // Deleted; already gone (a concurrent DEL or RENAME took it); or written since the read
        // (`CasMismatch`): in each case the copy under the new name stands.
        _ => Reply::Ok,
    }
}

/// Bits of a SCAN cursor below the partition index: the 48-bit position within the partition.
const SCAN_POSITION_BITS: u32 = 48;

/// SCAN: the cursor is the partition index and a position in that partition's key-hash order
/// (PROTOCOL.md §12), so it means the same whichever node holds the partition. One call visits
/// partitions in order until it has `COUNT` keys or has visited `MAX_PARTITIONS_PER_SCAN_CALL`.
fn scan_page(
    state: Arc<NodeState>,
    db: u8,
    scan: ScanCommand,
    protocol: ProtocolVersion,
) -> BoxFuture<BytesMut> {
    /// A bound on the work of one SCAN call when most partitions are empty.
    const MAX_PARTITIONS_PER_SCAN_CALL: u32 = 64;
    Box::pin(async move {
        let count = usize::try_from(scan.count_opt.unwrap_or(10))
            .unwrap_or(usize::MAX)
            .clamp(1, 100_000);
        let type_filter = match scan.type_opt {
            None => Ok(None),
            Some(ValueTypeFilter::String) => Ok(Some(ValueType::String)),
            Some(ValueTypeFilter::Hash) => Ok(Some(ValueType::Hash)),
            // scd stores no lists, sets, sorted sets or streams: no key can match.
            Some(_) => Err(()),
        };
        let num_partitions = state.router.num_partitions();
        let mut partition = u32::try_from(scan.cursor >> SCAN_POSITION_BITS).unwrap_or(u32::MAX);
        let mut position = scan.cursor & ((1 << SCAN_POSITION_BITS) - 1);
        let mut keys: Vec<Bytes> = Vec::new();
        let mut visited = 0;
        let next_cursor = loop {
            let Ok(type_filter) = type_filter else {
                break 0;
            };
            if partition >= num_partitions {
                break 0;
            }
            let op = Op::Scan {
                start_position: position,
                count: count - keys.len().min(count - 1),
                pattern: scan.pattern_opt.clone(),
                type_filter,
            };
            match state.router.execute_on(partition, db, op).resolve().await {
                Reply::Scan(page) => {
                    keys.extend(page.keys);
                    match page.next_position {
                        Some(next_position) => {
                            position = next_position;
                        }
                        None => {
                            partition += 1;
                            position = 0;
                        }
                    }
                }
                Reply::Error(error) => {
                    return encoded(protocol, |encoder| {
                        reply::encode_store_error(&error, encoder)
                    });
                }
                _ => {
                    partition += 1;
                    position = 0;
                }
            }
            visited += 1;
            if partition >= num_partitions {
                break 0;
            }
            if keys.len() >= count || visited >= MAX_PARTITIONS_PER_SCAN_CALL {
                break (u64::from(partition) << SCAN_POSITION_BITS) | position;
            }
        };
        encoded(protocol, |encoder| {
            encoder.array_header(2);
            encoder.bulk(next_cursor.to_string());
            encoder.array_header(keys.len());
            for key in &keys {
                encoder.bulk(key);
            }
        })
    })
}

fn hashes(state: &NodeState, db: u8, command: HashCommand) -> Dispatched {
    match command {
        HashCommand::HSet {
            key,
            fields_and_values,
        } => {
            let op = Op::HashSet {
                key,
                pairs: fields_and_values.into_pairs().collect(),
            };
            one(state, db, op, Shape::Plain)
        }
        HashCommand::HMSet {
            key,
            fields_and_values,
        } => {
            let op = Op::HashSet {
                key,
                pairs: fields_and_values.into_pairs().collect(),
            };
            one(state, db, op, Shape::CountAsOk)
        }
        HashCommand::HGet { key, field } => {
            one(state, db, Op::HashGet { key, field }, Shape::Plain)
        }
        HashCommand::HMGet { key, fields } => {
            one(state, db, Op::HashMultiGet { key, fields }, Shape::Plain)
        }
        HashCommand::HGetAll { key } => one(state, db, Op::HashGetAll { key }, Shape::Pairs),
        HashCommand::HDel { key, fields } => {
            one(state, db, Op::HashDelete { key, fields }, Shape::Plain)
        }
        HashCommand::HExists { key, field } => {
            one(state, db, Op::HashExists { key, field }, Shape::Plain)
        }
        HashCommand::HLen { key } => one(state, db, Op::HashLen { key }, Shape::Plain),
        HashCommand::HKeys { key } => one(state, db, Op::HashKeys { key }, Shape::Plain),
        HashCommand::HVals { key } => one(state, db, Op::HashValues { key }, Shape::Plain),
        HashCommand::HIncrBy { key, field, delta } => one(
            state,
            db,
            Op::HashIncrBy { key, field, delta },
            Shape::Plain,
        ),
    }
}

fn scripting(
    state: &NodeState,
    db: u8,
    command: ScriptingCommand,
    protocol: ProtocolVersion,
    out: &mut BytesMut,
) -> Dispatched {
    let mut encoder = ReplyEncoder::new(out, protocol);
    match command {
        ScriptingCommand::Eval(call) => match state.scripts.recognise(&call.script_or_sha1) {
            Some((script, _)) => run_script(state, db, script, call, &mut encoder),
            None => {
                encoder.error(scripting::unsupported_script_error(&call.script_or_sha1));
                Dispatched::Written
            }
        },
        ScriptingCommand::EvalSha(call) => match state.scripts.find(&call.script_or_sha1) {
            Some(script) => run_script(state, db, script, call, &mut encoder),
            None => {
                encoder.error("NOSCRIPT No matching script. Please use EVAL.");
                Dispatched::Written
            }
        },
        ScriptingCommand::ScriptLoad { script } => {
            match state.scripts.recognise(&script) {
                // Redis names a script by the SHA1 of its text; a variant's is remembered.
                Some((_, sha1)) => encoder.bulk(sha1),
                None => encoder.error(scripting::unsupported_script_error(&script)),
            }
            Dispatched::Written
        }
        ScriptingCommand::ScriptExists { sha1s } => {
            encoder.array_header(sha1s.len());
            for sha1 in &sha1s {
                encoder.integer(i64::from(state.scripts.find(sha1).is_some()));
            }
            Dispatched::Written
        }
        ScriptingCommand::ScriptFlush { .. } => {
            // The canonical scripts are built in and stay; the variants' SHA1s are forgotten.
            state.scripts.flush();
            encoder.ok();
            Dispatched::Written
        }
    }
}

fn run_script(
    state: &NodeState,
    db: u8,
    script: NativeScript,
    call: ScriptCall,
    encoder: &mut ReplyEncoder<'_>,
) -> Dispatched {
    let (num_keys, num_args) = script.arity();
    // Like the Lua it stands for, a script ignores keys and arguments beyond the ones it reads.
    if call.keys().len() < num_keys || call.args().len() < num_args {
        encoder.error(format!(
            "ERR scd's native script '{}' takes {num_keys} key(s) and {num_args} argument(s), got {} and {}",
            script.canonical_text(),
            call.keys().len(),
            call.args().len()
        ));
        return Dispatched::Written;
    }
    match script {
        NativeScript::CompareAndDelete => {
            let op = Op::DeleteIfEquals {
                key: call.keys()[0].clone(),
                value: call.args()[0].clone(),
            };
            one(state, db, op, Shape::Plain)
        }
    }
}

fn connection(
    state: &NodeState,
    session: &mut Session,
    command: ConnectionCommand,
    out: &mut BytesMut,
) -> Dispatched {
    // HELLO and RESET change the protocol version their own reply is written in.
    let command = match command {
        ConnectionCommand::Hello(hello) => {
            hello_command(state, session, hello, out);
            return Dispatched::Written;
        }
        ConnectionCommand::Reset => {
            session.reset(&state.config);
            ReplyEncoder::new(out, session.protocol).simple("RESET");
            return Dispatched::Written;
        }
        other => other,
    };
    let mut encoder = ReplyEncoder::new(out, session.protocol);
    match command {
        ConnectionCommand::Ping { message_opt } => match message_opt {
            Some(message) => encoder.bulk(message),
            None => encoder.simple("PONG"),
        },
        ConnectionCommand::Echo { message } => encoder.bulk(message),
        ConnectionCommand::Auth {
            username_opt,
            password,
        } => match authenticate(state, username_opt.as_deref(), &password) {
            Ok(()) => {
                session.authenticated = true;
                encoder.ok();
            }
            Err(line) => encoder.error(line),
        },
        ConnectionCommand::Hello(_) | ConnectionCommand::Reset => {
            unreachable!("HELLO and RESET are handled before the encoder is made")
        }
        ConnectionCommand::Select { db_index } => match u8::try_from(db_index) {
            Ok(db) if db < store::NUM_DATABASES => {
                session.db = db;
                encoder.ok();
            }
            _ => encoder.error("ERR DB index is out of range"),
        },
        ConnectionCommand::Quit => {
            encoder.ok();
            session.closing = true;
        }
        ConnectionCommand::Client(client) => match client {
            ClientCommand::SetName { name } => {
                session.name_opt = (!name.is_empty()).then_some(name);
                encoder.ok();
            }
            ClientCommand::GetName => match &session.name_opt {
                Some(name) => encoder.bulk(name),
                None => encoder.null(),
            },
            ClientCommand::Id => encoder.integer(i64::try_from(session.id).unwrap_or(i64::MAX)),
            ClientCommand::Info => encoder.verbatim(*b"txt", session.client_info_line()),
            ClientCommand::SetInfo { attribute, value } => {
                match attribute {
                    ClientInfoAttribute::LibraryName => session.library_name_opt = Some(value),
                    ClientInfoAttribute::LibraryVersion => {
                        session.library_version_opt = Some(value)
                    }
                }
                encoder.ok();
            }
        },
    }
    Dispatched::Written
}

fn hello_command(state: &NodeState, session: &mut Session, hello: resp::Hello, out: &mut BytesMut) {
    if let Some(credentials) = &hello.credentials_opt {
        if let Err(line) = authenticate(state, Some(&credentials.username), &credentials.password) {
            ReplyEncoder::new(out, session.protocol).error(line);
            return;
        }
        session.authenticated = true;
    } else if !session.authenticated {
        ReplyEncoder::new(out, session.protocol).error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        );
        return;
    }
    if let Some(version) = hello.protocol_version_opt {
        session.protocol = version;
    }
    if let Some(name) = hello.client_name_opt {
        session.name_opt = Some(name);
    }
    encode_hello(
        &mut ReplyEncoder::new(out, session.protocol),
        session.id,
        session.protocol,
    );
}

/// Checks a password against `--requirepass`. Only the `default` user exists.
fn authenticate(
    state: &NodeState,
    username_opt: Option<&[u8]>,
    password: &[u8],
) -> Result<(), &'static str> {
    const WRONG_PASSWORD: &str = "WRONGPASS invalid username-password pair or user is disabled.";
    let is_default_user = username_opt.is_none_or(|username| username == b"default");
    match &state.config.requirepass_opt {
        None if username_opt.is_none() => Err(
            "ERR AUTH <password> called without any password configured for the default user. Are you \
             sure your configuration is correct?",
        ),
        // Without a password the default user takes any password, as Redis' `nopass` user does.
        None if is_default_user => Ok(()),
        None => Err(WRONG_PASSWORD),
        Some(expected) => {
            if is_default_user && constant_time_eq(expected.as_bytes(), password) {
                Ok(())
            } else {
                Err(WRONG_PASSWORD)
            }
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the password.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// The Redis version scd reports: clients enable features by it, and scd implements the
/// commands of that version that session stores use.
pub(crate) const REDIS_COMPATIBLE_VERSION: &str = "7.2.0";

fn encode_hello(encoder: &mut ReplyEncoder<'_>, client_id: u64, protocol: ProtocolVersion) {
    encoder.map_header(7);
    encoder.bulk("server");
    encoder.bulk("redis");
    encoder.bulk("version");
    encoder.bulk(REDIS_COMPATIBLE_VERSION);
    encoder.bulk("proto");
    encoder.integer(protocol.number());
    encoder.bulk("id");
    encoder.integer(i64::try_from(client_id).unwrap_or(i64::MAX));
    encoder.bulk("mode");
    // "standalone": every node serves every key, so clients must not act as cluster clients.
    encoder.bulk("standalone");
    encoder.bulk("role");
    encoder.bulk("master");
    encoder.bulk("modules");
    encoder.array_header(0);
}

fn server(
    state: &Arc<NodeState>,
    session: &Session,
    command: ServerCommand,
    out: &mut BytesMut,
) -> Dispatched {
    let db = session.db;
    let mut encoder = ReplyEncoder::new(out, session.protocol);
    match command {
        ServerCommand::Command(query) => resp::table::encode_command_query(&query, &mut encoder),
        ServerCommand::Info { sections } => {
            let text = super::info::render(state, &sections);
            encoder.verbatim(*b"txt", text);
        }
        ServerCommand::DbSize => {
            let pendings = (0..state.router.num_partitions())
                .map(|partition| state.router.execute_on(partition, db, Op::DbSize))
                .collect();
            return Dispatched::Store(Pending::join_all(pendings).map(Reply::Array), Shape::Sum);
        }
        ServerCommand::Time => {
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_micros())
                .unwrap_or(0);
            encoder.array_header(2);
            encoder.bulk((now_us / 1_000_000).to_string());
            encoder.bulk((now_us % 1_000_000).to_string());
        }
        ServerCommand::ConfigGet { patterns } => {
            let settings = super::info::config_settings(state);
            // Redis matches setting names regardless of case; they are all lowercase.
            let patterns: Vec<Vec<u8>> = patterns
                .iter()
                .map(|pattern| pattern.to_ascii_lowercase())
                .collect();
            let matching: Vec<&(&str, String)> = settings
                .iter()
                .filter(|(name, _)| {
                    patterns
                        .iter()
                        .any(|pattern| store::glob_match(pattern, name.as_bytes()))
                })
                .collect();
            encoder.map_header(matching.len());
            for (name, value) in matching {
                encoder.bulk(name);
                encoder.bulk(value);
            }
        }
        ServerCommand::FlushDb { .. } => return flush(state, db, Op::FlushDb),
        ServerCommand::FlushAll { .. } => return flush(state, 0, Op::FlushAll),
    }
    Dispatched::Written
}

fn flush(state: &NodeState, db: u8, op: Op) -> Dispatched {
    let pendings = (0..state.router.num_partitions())
        .map(|partition| state.router.execute_on(partition, db, op.clone()))
        .collect();
    Dispatched::Store(Pending::join_all(pendings).map(Reply::Array), Shape::AllOk)
}

// The resp crate bounds OWNER ids by the store's limit on what it keeps per lock.
const _: () = assert!(resp::SCD_OWNER_MAX_BYTES == store::LOCK_OWNER_MAX_BYTES);

/// scd's own commands: lock operations go through the node's lock manager (which queues
/// waiters on the primary), guarded writes and STALE through the router.
fn scd(
    state: &Arc<NodeState>,
    session: &mut Session,
    command: ScdCommand,
    out: &mut BytesMut,
) -> Dispatched {
    let db = session.db;
    let locks = &state.locks;
    match command {
        ScdCommand::Lock {
            key,
            lease_ms,
            wait_ms,
            session: tied_to_connection,
            owner_opt,
        } => {
            let session_locks_opt = if tied_to_connection {
                let session_locks = session
                    .locks_opt
                    .get_or_insert_with(|| crate::locks::SessionLocks::new(Arc::clone(locks)));
                if !session_locks.has_room(state.now_ms()) {
                    ReplyEncoder::new(out, session.protocol).error(format!(
                        "ERR too many SESSION locks on this connection (max {})",
                        crate::locks::SESSION_LOCKS_PER_CONNECTION_MAX
                    ));
                    return Dispatched::Written;
                }
                Some(session_locks.clone())
            } else {
                None
            };
            let op = Op::LockAcquire {
                key,
                owner: owner_opt.unwrap_or_else(|| locks.connection_owner(session.id)),
                mode: if tied_to_connection {
                    LockMode::Session
                } else {
                    LockMode::Lease
                },
                lease_ms,
                wait_ms,
            };
            // The token, or nil when the lock stayed held.
            Dispatched::Store(locks.execute(db, op, session_locks_opt), Shape::Plain)
        }
        ScdCommand::Unlock { key, token } => {
            let op = Op::LockRelease { key, token };
            Dispatched::Store(
                locks.execute(db, op, session.locks_opt.clone()),
                Shape::Plain,
            )
        }
        ScdCommand::Renew {
            key,
            token,
            lease_ms,
        } => {
            if let Some(session_locks) = &session.locks_opt {
                session_locks.renewed(&key, token, state.now_ms().saturating_add(lease_ms));
            }
            let op = Op::LockRenew {
                key,
                token,
                lease_ms,
            };
            Dispatched::Store(locks.execute(db, op, None), Shape::Plain)
        }
        ScdCommand::LockInfo { key } => {
            let clock = Arc::clone(&state.clock);
            let reply = locks
                .execute(db, Op::LockInspect { key }, None)
                .map(move |reply| lock_info(reply, clock.now_ms()));
            Dispatched::Store(reply, Shape::Plain)
        }
        ScdCommand::Set {
            key,
            value,
            token,
            expiry_opt,
        } => {
            let expiry = match expiry_opt {
                Some(expiry) => SetExpiry::AtMs(deadline_ms(expiry, state.now_ms())),
                None => SetExpiry::Never,
            };
            let op = Op::GuardedSet {
                key,
                value,
                expiry,
                token,
            };
            one(state, db, op, Shape::Plain)
        }
        ScdCommand::Stale { key } => {
            // DUMP carries the version of a string or a hash alike (GET's CAS is strings only).
            let partition = state.router.partition_of(&key);
            let io = Arc::clone(&state.io);
            let reply = state
                .router
                .execute(db, Op::Dump { key })
                .map(move |reply| match reply {
                    Reply::Image(image) => Reply::Integer(i64::from(
                        io.engine.is_possibly_stale(partition, image.version.hlc),
                    )),
                    Reply::Nil => Reply::Integer(0),
                    other => other,
                });
            Dispatched::Store(reply, Shape::Plain)
        }
    }
}

/// SCD.LOCKINFO's answer: `[holder, token, remaining lease ms, mode, waiters]`, or nil.
fn lock_info(reply: Reply, now_ms: u64) -> Reply {
    match reply {
        Reply::LockHeld(holder) => Reply::Array(vec![
            Reply::Bulk(holder.owner),
            Reply::Integer(i64::try_from(holder.token).unwrap_or(i64::MAX)),
            Reply::Integer(
                i64::try_from(holder.deadline_ms.saturating_sub(now_ms)).unwrap_or(i64::MAX),
            ),
            Reply::Bulk(bytes::Bytes::from_static(holder.mode.name().as_bytes())),
            Reply::Integer(i64::from(holder.num_waiters)),
        ]),
        other => other,
    }
}

/// Encodes a reply into a fresh buffer.
fn encoded(protocol: ProtocolVersion, write: impl FnOnce(&mut ReplyEncoder<'_>)) -> BytesMut {
    let mut out = BytesMut::new();
    write(&mut ReplyEncoder::new(&mut out, protocol));
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use store::{LockHolder, LockMode, Reply};

    use super::lock_info;

    fn check(reply: Reply, now_ms: u64, expect: Reply) {
        assert_eq!(lock_info(reply.clone(), now_ms), expect, "{reply:?}");
    }

    #[test]
    fn lockinfo_shows_holder_token_remaining_lease_mode_and_waiters() {
        let held = |deadline_ms, mode| {
            Reply::LockHeld(Box::new(LockHolder {
                owner: Bytes::from_static(b"w1"),
                token: 42,
                deadline_ms,
                mode,
                num_waiters: 3,
            }))
        };
        let expect = |remaining_ms, mode: &'static str| {
            Reply::Array(vec![
                Reply::Bulk(Bytes::from_static(b"w1")),
                Reply::Integer(42),
                Reply::Integer(remaining_ms),
                Reply::Bulk(Bytes::from_static(mode.as_bytes())),
                Reply::Integer(3),
            ])
        };
        check(held(10_500, LockMode::Lease), 10_000, expect(500, "lease"));
        check(
            held(10_500, LockMode::Session),
            10_000,
            expect(500, "session"),
        );
        // A deadline this node's clock already passed (the primary's clock is behind): 0 left.
        check(held(9_000, LockMode::Lease), 10_000, expect(0, "lease"));
        check(Reply::Nil, 10_000, Reply::Nil);
    }
}
