//! Binary requests: the parser, the commands it decodes, and an encoder for clients and tests.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::header::{HEADER_BYTES, REQUEST_MAGIC, RequestHeader};
use super::{BinaryError, opcode};
use crate::{Direction, Limits, StoreMode};

/// Longest SASL mechanism name (the key of SASL_AUTH/SASL_STEP), memcached's
/// `MAX_SASL_MECH_LEN`.
pub const MAX_SASL_MECHANISM_BYTES: usize = 32;

/// Largest SASL payload (the value of SASL_AUTH/SASL_STEP). PLAIN's `authzid\0user\0password` is
/// far smaller; the bound keeps authentication from buffering a value-sized body before the client
/// is even authenticated.
pub const MAX_SASL_DATA_BYTES: usize = 1024;

/// One complete binary request: the header as sent, and the command it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryRequest {
    /// The header, for the opcode and opaque that every answer echoes.
    pub header: RequestHeader,
    /// What the client asks for.
    pub command: BinaryCommand,
}

impl BinaryRequest {
    /// Whether this is a quiet command (see the module documentation for what that changes).
    pub fn quiet(&self) -> bool {
        self.command.quiet()
    }
}

/// What a [`BinaryRequest`] asks for. Keys are never empty and at most `max_key_bytes` long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryCommand {
    /// GET, GETQ, GETK, GETKQ: answer with [`super::encode_get_hit`] or
    /// [`super::encode_get_miss`].
    Get {
        /// The key.
        key: Bytes,
        /// GETK/GETKQ: the answer carries the key.
        return_key: bool,
        /// GETQ/GETKQ: no answer on a miss.
        quiet: bool,
    },
    /// GAT, GATQ, GATK, GATKQ: touch, then answer as a get.
    GetAndTouch {
        /// The key.
        key: Bytes,
        /// The new exptime (0 to 2^32 - 1); see [`crate::exptime_to_deadline`].
        exptime: i64,
        /// GATK/GATKQ: the answer carries the key.
        return_key: bool,
        /// GATQ/GATKQ: no answer on a miss.
        quiet: bool,
    },
    /// TOUCH: change the expiry; answer with [`super::encode_get_hit`] (the flags, no value), or
    /// [`super::encode_failure`] with `KeyNotFound`.
    Touch {
        /// The key.
        key: Bytes,
        /// The new exptime.
        exptime: i64,
    },
    /// SET, ADD, REPLACE, APPEND, PREPEND and their quiet forms: answer with
    /// [`super::encode_success`] and the new CAS value, or [`super::encode_failure`] with
    /// `KeyExists` (ADD of an existing key, CAS mismatch), `KeyNotFound` (REPLACE of a missing key,
    /// CAS on a missing key) or `ItemNotStored` (APPEND/PREPEND to a missing key), as memcached
    /// does.
    Store {
        /// How the value combines with what is stored.
        mode: StoreMode,
        /// The key.
        key: Bytes,
        /// Client flags; 0 for APPEND/PREPEND, which carry none.
        client_flags: u32,
        /// See [`crate::exptime_to_deadline`]; 0 for APPEND/PREPEND.
        exptime: i64,
        /// The value, at most `max_value_bytes`.
        value: Bytes,
        /// The header's CAS when not 0: store only if the item's CAS value is this one
        /// (memcached turns any storage command with a CAS into a compare-and-swap).
        compare_cas_opt: Option<u64>,
        /// The quiet form: no answer on success.
        quiet: bool,
    },
    /// DELETE, DELETEQ: answer with [`super::encode_success`], or [`super::encode_failure`] with
    /// `KeyNotFound` or `KeyExists` (CAS mismatch).
    Delete {
        /// The key.
        key: Bytes,
        /// The header's CAS when not 0: delete only if the item's CAS value is this one.
        compare_cas_opt: Option<u64>,
        /// The quiet form: no answer on success.
        quiet: bool,
    },
    /// INCREMENT, DECREMENT and their quiet forms: answer with [`super::encode_counter`], or
    /// [`super::encode_failure`] with `KeyNotFound`, `KeyExists` (CAS mismatch) or
    /// `NonNumericValue`.
    Arithmetic {
        /// The key of the counter.
        key: Bytes,
        /// Up (wrapping) or down (stopping at 0).
        direction: Direction,
        /// The amount.
        delta: u64,
        /// What to do when the counter is missing: create it, or (`None`, an expiration of
        /// 0xffffffff on the wire) answer `KeyNotFound`.
        create_opt: Option<CreateCounter>,
        /// The header's CAS when not 0: change the counter only if its CAS value is this one.
        compare_cas_opt: Option<u64>,
        /// The quiet form: no answer on success.
        quiet: bool,
    },
    /// FLUSH, FLUSHQ: invalidate every item, now or after a delay; answer with
    /// [`super::encode_success`].
    Flush {
        /// 0 for now, else an exptime.
        delay_seconds: i64,
        /// The quiet form: no answer on success.
        quiet: bool,
    },
    /// NOOP: answer with [`super::encode_success`]. Clients send it after quiet commands.
    Noop,
    /// VERBOSITY: answer with [`super::encode_success`]; the level is accepted and has no
    /// effect (scd's logging is `--log-level`), as the text protocol's `verbosity`.
    Verbosity {
        /// The level asked for.
        level: u32,
    },
    /// VERSION: answer with [`super::encode_version`].
    Version,
    /// QUIT, QUITQ: answer with [`super::encode_success`] (nothing for QUITQ), then close.
    Quit {
        /// QUITQ: close without an answer.
        quiet: bool,
    },
    /// STAT: answer with [`super::encode_stat`] per statistic, then [`super::encode_stat_end`];
    /// an unknown group with [`super::encode_failure`] and `KeyNotFound`, as memcached does.
    Stat {
        /// The group asked for (`settings`, `items`, ...) or `None` for the general statistics.
        group_opt: Option<Bytes>,
    },
    /// SASL_LIST_MECHS: answer with [`super::encode_sasl_mechanisms`].
    SaslListMechanisms,
    /// SASL_AUTH: answer with [`super::encode_sasl_authenticated`] or [`super::encode_failure`]
    /// and `AuthError`.
    SaslAuth {
        /// The mechanism, e.g. `PLAIN`; at most [`MAX_SASL_MECHANISM_BYTES`].
        mechanism: Bytes,
        /// The mechanism's payload (PLAIN: `authzid\0user\0password`); at most
        /// [`MAX_SASL_DATA_BYTES`].
        data: Bytes,
    },
    /// SASL_STEP: the next step of a multi-step mechanism; PLAIN has none.
    SaslStep {
        /// The mechanism.
        mechanism: Bytes,
        /// The step's payload.
        data: Bytes,
    },
}

/// How INCREMENT/DECREMENT create a missing counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CreateCounter {
    /// The counter's value when created (the delta is not applied to it).
    pub initial: u64,
    /// The new counter's exptime (0 to 2^32 - 2).
    pub exptime: i64,
}

impl BinaryCommand {
    /// Whether this is a quiet form.
    pub fn quiet(&self) -> bool {
        match self {
            BinaryCommand::Get { quiet, .. }
            | BinaryCommand::GetAndTouch { quiet, .. }
            | BinaryCommand::Store { quiet, .. }
            | BinaryCommand::Delete { quiet, .. }
            | BinaryCommand::Arithmetic { quiet, .. }
            | BinaryCommand::Flush { quiet, .. }
            | BinaryCommand::Quit { quiet } => *quiet,
            BinaryCommand::Touch { .. }
            | BinaryCommand::Noop
            | BinaryCommand::Verbosity { .. }
            | BinaryCommand::Version
            | BinaryCommand::Stat { .. }
            | BinaryCommand::SaslListMechanisms
            | BinaryCommand::SaslAuth { .. }
            | BinaryCommand::SaslStep { .. } => false,
        }
    }
}

/// The command an opcode stands for, before its body is read.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Get { return_key: bool, quiet: bool },
    GetAndTouch { return_key: bool, quiet: bool },
    Touch,
    Store { mode: StoreMode, quiet: bool },
    Delete { quiet: bool },
    Arithmetic { direction: Direction, quiet: bool },
    Flush { quiet: bool },
    Noop,
    Verbosity,
    Version,
    Quit { quiet: bool },
    Stat,
    SaslListMechanisms,
    SaslAuth,
    SaslStep,
}

impl Kind {
    fn of(opcode: u8) -> Option<Kind> {
        use Direction::{Decrement, Increment};
        use StoreMode::{Add, Append, Prepend, Replace, Set};
        let kind = match opcode {
            opcode::GET => Kind::Get {
                return_key: false,
                quiet: false,
            },
            opcode::GETQ => Kind::Get {
                return_key: false,
                quiet: true,
            },
            opcode::GETK => Kind::Get {
                return_key: true,
                quiet: false,
            },
            opcode::GETKQ => Kind::Get {
                return_key: true,
                quiet: true,
            },
            opcode::GAT => Kind::GetAndTouch {
                return_key: false,
                quiet: false,
            },
            opcode::GATQ => Kind::GetAndTouch {
                return_key: false,
                quiet: true,
            },
            opcode::GATK => Kind::GetAndTouch {
                return_key: true,
                quiet: false,
            },
            opcode::GATKQ => Kind::GetAndTouch {
                return_key: true,
                quiet: true,
            },
            opcode::TOUCH => Kind::Touch,
            opcode::SET => Kind::Store {
                mode: Set,
                quiet: false,
            },
            opcode::SETQ => Kind::Store {
                mode: Set,
                quiet: true,
            },
            opcode::ADD => Kind::Store {
                mode: Add,
                quiet: false,
            },
            opcode::ADDQ => Kind::Store {
                mode: Add,
                quiet: true,
            },
            opcode::REPLACE => Kind::Store {
                mode: Replace,
                quiet: false,
            },
            opcode::REPLACEQ => Kind::Store {
                mode: Replace,
                quiet: true,
            },
            opcode::APPEND => Kind::Store {
                mode: Append,
                quiet: false,
            },
            opcode::APPENDQ => Kind::Store {
                mode: Append,
                quiet: true,
            },
            opcode::PREPEND => Kind::Store {
                mode: Prepend,
                quiet: false,
            },
            opcode::PREPENDQ => Kind::Store {
                mode: Prepend,
                quiet: true,
            },
            opcode::DELETE => Kind::Delete { quiet: false },
            opcode::DELETEQ => Kind::Delete { quiet: true },
            opcode::INCREMENT => Kind::Arithmetic {
                direction: Increment,
                quiet: false,
            },
            opcode::INCREMENTQ => Kind::Arithmetic {
                direction: Increment,
                quiet: true,
            },
            opcode::DECREMENT => Kind::Arithmetic {
                direction: Decrement,
                quiet: false,
            },
            opcode::DECREMENTQ => Kind::Arithmetic {
                direction: Decrement,
                quiet: true,
            },
            opcode::FLUSH => Kind::Flush { quiet: false },
            opcode::FLUSHQ => Kind::Flush { quiet: true },
            opcode::NOOP => Kind::Noop,
            opcode::VERBOSITY => Kind::Verbosity,
            opcode::VERSION => Kind::Version,
            opcode::QUIT => Kind::Quit { quiet: false },
            opcode::QUITQ => Kind::Quit { quiet: true },
            opcode::STAT => Kind::Stat,
            opcode::SASL_LIST_MECHS => Kind::SaslListMechanisms,
            opcode::SASL_AUTH => Kind::SaslAuth,
            opcode::SASL_STEP => Kind::SaslStep,
            _ => return None,
        };
        Some(kind)
    }
}

/// Turns the bytes of a binary-protocol connection into requests, one at a time.
///
/// Everything about a request is checked from its header before its body is buffered, so a
/// client can never make the node buffer more than 24 bytes of header, 20 of extras, a key and a
/// value within [`Limits`]. One parser per connection.
#[derive(Debug, Default)]
pub struct BinaryParser {
    /// Bytes of a refused request's body still to be dropped as they arrive.
    skip_remaining_bytes: usize,
}

impl BinaryParser {
    /// A parser for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next complete request off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not hold a complete request yet (read more and call
    /// again), `Ok(Some(_))` with the request's bytes removed from `buf`, or an error to answer
    /// with [`super::encode_error`]; after an error that does not
    /// [close the connection](BinaryError::closes_connection), parsing simply goes on.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<BinaryRequest>, BinaryError> {
        if self.skip_remaining_bytes > 0 {
            let skipped_bytes = self.skip_remaining_bytes.min(buf.len());
            buf.advance(skipped_bytes);
            self.skip_remaining_bytes -= skipped_bytes;
            if self.skip_remaining_bytes > 0 {
                return Ok(None);
            }
        }
        let Some(header_bytes) = buf.first_chunk::<HEADER_BYTES>() else {
            return Ok(None);
        };
        let header = RequestHeader::parse(header_bytes);
        let kind = match check(&header, limits) {
            Ok(kind) => kind,
            Err(error) if error.closes_connection() => return Err(error),
            Err(error) => {
                // A refusal that leaves the stream readable: drop the header now and the body
                // as it arrives, as memcached's conn_swallow does.
                buf.advance(HEADER_BYTES);
                self.skip_remaining_bytes = header.total_body_length as usize;
                return Err(error);
            }
        };
        // check() bounded the body by the limits, so this is what the node may buffer.
        let request_bytes = HEADER_BYTES + header.total_body_length as usize;
        if buf.len() < request_bytes {
            buf.reserve(request_bytes - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_BYTES);
        let body = buf.split_to(request_bytes - HEADER_BYTES).freeze();
        Ok(Some(BinaryRequest {
            header,
            command: decode(kind, &header, body),
        }))
    }
}

/// Checks everything about a request that its header tells, in memcached's order: magic, lengths,
/// key length, then the shape the opcode needs.
fn check(header: &RequestHeader, limits: &Limits) -> Result<Kind, BinaryError> {
    let header = *header;
    if header.magic != REQUEST_MAGIC {
        return Err(BinaryError::BadMagic { header });
    }
    let Some(value_bytes) = header.value_length() else {
        return Err(BinaryError::LengthsInconsistent { header });
    };
    let key_bytes = usize::from(header.key_length);
    if key_bytes > limits.max_key_bytes {
        return Err(BinaryError::KeyTooLong {
            header,
            max_key_bytes: limits.max_key_bytes,
        });
    }
    let body_bytes = header.total_body_length as usize;
    let skipped = body_bytes <= limits.max_skip_bytes();
    let Some(kind) = Kind::of(header.opcode) else {
        return Err(BinaryError::UnknownCommand { header, skipped });
    };
    let extras_bytes = header.extras_length;
    let has_key = key_bytes > 0;
    let no_value = value_bytes == 0;
    let shape_is_valid = match kind {
        Kind::Get { .. } | Kind::Delete { .. } => extras_bytes == 0 && has_key && no_value,
        Kind::GetAndTouch { .. } | Kind::Touch => extras_bytes == 4 && has_key && no_value,
        Kind::Store { mode, .. } => {
            let extras_needed = match mode {
                StoreMode::Append | StoreMode::Prepend => 0,
                StoreMode::Set | StoreMode::Add | StoreMode::Replace => 8,
            };
            if extras_bytes == extras_needed
                && has_key
                && value_bytes as usize > limits.max_value_bytes
            {
                return Err(BinaryError::ValueTooLarge {
                    header,
                    value_bytes,
                    max_value_bytes: limits.max_value_bytes,
                    skipped,
                });
            }
            extras_bytes == extras_needed && has_key
        }
        Kind::Arithmetic { .. } => extras_bytes == 20 && has_key && no_value,
        Kind::Flush { .. } => (extras_bytes == 0 || extras_bytes == 4) && !has_key && no_value,
        Kind::Verbosity => extras_bytes == 4 && !has_key && no_value,
        Kind::Noop | Kind::Version | Kind::Quit { .. } | Kind::SaslListMechanisms => {
            header.total_body_length == 0
        }
        // memcached lets a STAT carry a value it never reads, which then desynchronizes the
        // stream; scd refuses it.
        Kind::Stat => extras_bytes == 0 && no_value,
        Kind::SaslAuth | Kind::SaslStep => {
            extras_bytes == 0
                && has_key
                && key_bytes <= MAX_SASL_MECHANISM_BYTES
                && value_bytes as usize <= MAX_SASL_DATA_BYTES
        }
    };
    if shape_is_valid {
        Ok(kind)
    } else {
        Err(BinaryError::InvalidArguments { header })
    }
}

/// Builds the command from a body whose shape [`check`] accepted.
fn decode(kind: Kind, header: &RequestHeader, body: Bytes) -> BinaryCommand {
    let extras_bytes = usize::from(header.extras_length);
    let key_end = extras_bytes + usize::from(header.key_length);
    let mut extras = body.slice(..extras_bytes);
    let key = body.slice(extras_bytes..key_end);
    let value = body.slice(key_end..);
    let compare_cas_opt = (header.cas != 0).then_some(header.cas);
    match kind {
        Kind::Get { return_key, quiet } => BinaryCommand::Get {
            key,
            return_key,
            quiet,
        },
        Kind::GetAndTouch { return_key, quiet } => BinaryCommand::GetAndTouch {
            key,
            exptime: i64::from(extras.get_u32()),
            return_key,
            quiet,
        },
        Kind::Touch => BinaryCommand::Touch {
            key,
            exptime: i64::from(extras.get_u32()),
        },
        Kind::Store { mode, quiet } => {
            let (client_flags, exptime) = if extras.is_empty() {
                (0, 0)
            } else {
                (extras.get_u32(), i64::from(extras.get_u32()))
            };
            BinaryCommand::Store {
                mode,
                key,
                client_flags,
                exptime,
                value,
                compare_cas_opt,
                quiet,
            }
        }
        Kind::Delete { quiet } => BinaryCommand::Delete {
            key,
            compare_cas_opt,
            quiet,
        },
        Kind::Arithmetic { direction, quiet } => {
            let delta = extras.get_u64();
            let initial = extras.get_u64();
            let expiration = extras.get_u32();
            BinaryCommand::Arithmetic {
                key,
                direction,
                delta,
                create_opt: (expiration != u32::MAX).then_some(CreateCounter {
                    initial,
                    exptime: i64::from(expiration),
                }),
                compare_cas_opt,
                quiet,
            }
        }
        Kind::Flush { quiet } => BinaryCommand::Flush {
            delay_seconds: if extras.is_empty() {
                0
            } else {
                i64::from(extras.get_u32())
            },
            quiet,
        },
        Kind::Noop => BinaryCommand::Noop,
        Kind::Verbosity => BinaryCommand::Verbosity {
            level: extras.get_u32(),
        },
        Kind::Version => BinaryCommand::Version,
        Kind::Quit { quiet } => BinaryCommand::Quit { quiet },
        Kind::Stat => BinaryCommand::Stat {
            group_opt: (!key.is_empty()).then_some(key),
        },
        Kind::SaslListMechanisms => BinaryCommand::SaslListMechanisms,
        Kind::SaslAuth => BinaryCommand::SaslAuth {
            mechanism: key,
            data: value,
        },
        Kind::SaslStep => BinaryCommand::SaslStep {
            mechanism: key,
            data: value,
        },
    }
}

/// An exptime as the 32-bit field of the wire, clamped into the range it can express.
fn wire_exptime(exptime: i64, max: u32) -> u32 {
    exptime.clamp(0, i64::from(max)) as u32
}

/// Appends `command` as a request packet with `opaque`, the way a client sends it (for tests,
/// benchmarks and interop checks; the node only parses requests).
///
/// Exptimes are written as the protocol's unsigned 32-bit field, clamped into it; a
/// [`CreateCounter`] exptime stops one short of 0xffffffff, which means "do not create".
pub fn encode_request(out: &mut BytesMut, opaque: u32, command: &BinaryCommand) {
    let mut extras = BytesMut::new();
    let mut cas = 0;
    let (opcode, key, value): (u8, &[u8], &[u8]) = match command {
        BinaryCommand::Get {
            key,
            return_key,
            quiet,
        } => {
            let opcode = match (return_key, quiet) {
                (false, false) => opcode::GET,
                (false, true) => opcode::GETQ,
                (true, false) => opcode::GETK,
                (true, true) => opcode::GETKQ,
            };
            (opcode, key, &[])
        }
        BinaryCommand::GetAndTouch {
            key,
            exptime,
            return_key,
            quiet,
        } => {
            extras.put_u32(wire_exptime(*exptime, u32::MAX));
            let opcode = match (return_key, quiet) {
                (false, false) => opcode::GAT,
                (false, true) => opcode::GATQ,
                (true, false) => opcode::GATK,
                (true, true) => opcode::GATKQ,
            };
            (opcode, key, &[])
        }
        BinaryCommand::Touch { key, exptime } => {
            extras.put_u32(wire_exptime(*exptime, u32::MAX));
            (opcode::TOUCH, key, &[])
        }
        BinaryCommand::Store {
            mode,
            key,
            client_flags,
            exptime,
            value,
            compare_cas_opt,
            quiet,
        } => {
            cas = compare_cas_opt.unwrap_or(0);
            let (loud, silent) = match mode {
                StoreMode::Set => (opcode::SET, opcode::SETQ),
                StoreMode::Add => (opcode::ADD, opcode::ADDQ),
                StoreMode::Replace => (opcode::REPLACE, opcode::REPLACEQ),
                StoreMode::Append => (opcode::APPEND, opcode::APPENDQ),
                StoreMode::Prepend => (opcode::PREPEND, opcode::PREPENDQ),
            };
            if matches!(mode, StoreMode::Set | StoreMode::Add | StoreMode::Replace) {
                extras.put_u32(*client_flags);
                extras.put_u32(wire_exptime(*exptime, u32::MAX));
            }
            (if *quiet { silent } else { loud }, key, value)
        }
        BinaryCommand::Delete {
            key,
            compare_cas_opt,
            quiet,
        } => {
            cas = compare_cas_opt.unwrap_or(0);
            (
                if *quiet {
                    opcode::DELETEQ
                } else {
                    opcode::DELETE
                },
                key,
                &[],
            )
        }
        BinaryCommand::Arithmetic {
            key,
            direction,
            delta,
            create_opt,
            compare_cas_opt,
            quiet,
        } => {
            cas = compare_cas_opt.unwrap_or(0);
            extras.put_u64(*delta);
            match create_opt {
                Some(create) => {
                    extras.put_u64(create.initial);
                    extras.put_u32(wire_exptime(create.exptime, u32::MAX - 1));
                }
                None => {
                    extras.put_u64(0);
                    extras.put_u32(u32::MAX);
                }
            }
            let opcode = match (direction, quiet) {
                (Direction::Increment, false) => opcode::INCREMENT,
                (Direction::Increment, true) => opcode::INCREMENTQ,
                (Direction::Decrement, false) => opcode::DECREMENT,
                (Direction::Decrement, true) => opcode::DECREMENTQ,
            };
            (opcode, key, &[])
        }
        BinaryCommand::Flush {
            delay_seconds,
            quiet,
        } => {
            if *delay_seconds != 0 {
                extras.put_u32(wire_exptime(*delay_seconds, u32::MAX));
            }
            (
                if *quiet {
                    opcode::FLUSHQ
                } else {
                    opcode::FLUSH
                },
                &[],
                &[],
            )
        }
        BinaryCommand::Noop => (opcode::NOOP, &[], &[]),
        BinaryCommand::Verbosity { level } => {
            extras.put_u32(*level);
            (opcode::VERBOSITY, &[], &[])
        }
        BinaryCommand::Version => (opcode::VERSION, &[], &[]),
        BinaryCommand::Quit { quiet } => {
            (if *quiet { opcode::QUITQ } else { opcode::QUIT }, &[], &[])
        }
        BinaryCommand::Stat { group_opt } => {
            (opcode::STAT, group_opt.as_deref().unwrap_or(&[]), &[])
        }
        BinaryCommand::SaslListMechanisms => (opcode::SASL_LIST_MECHS, &[], &[]),
        BinaryCommand::SaslAuth { mechanism, data } => (opcode::SASL_AUTH, mechanism, data),
        BinaryCommand::SaslStep { mechanism, data } => (opcode::SASL_STEP, mechanism, data),
    };
    let header = RequestHeader {
        magic: REQUEST_MAGIC,
        opcode,
        // Lengths beyond the fields' range cannot be sent; truncating would corrupt the stream,
        // so saturate and let the server refuse the packet as inconsistent.
        key_length: u16::try_from(key.len()).unwrap_or(u16::MAX),
        extras_length: extras.len() as u8,
        data_type: 0,
        vbucket: 0,
        total_body_length: u32::try_from(extras.len() + key.len() + value.len())
            .unwrap_or(u32::MAX),
        opaque,
        cas,
    };
    out.reserve(HEADER_BYTES + extras.len() + key.len() + value.len());
    header.encode(out);
    out.put_slice(&extras);
    out.put_slice(key);
    out.put_slice(value);
}
