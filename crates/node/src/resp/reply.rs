//! How store replies are written in RESP. A command's handler picks a [`Shape`] when it runs; the
//! reply is encoded in that shape as soon as it is known, which for a relayed or replicated write is
//! later, so the shape is a value and not code that must run at once.

use resp::ReplyEncoder;
use store::{Reply, StoreError};

/// How to write a store reply for the command that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// The reply as it is: values as bulk strings, `Written` as `+OK`, pairs as a map.
    Plain,
    /// SETNX: 1 if written, 0 if the key existed.
    WrittenAsOne,
    /// HMSET: `+OK` for the count of new fields.
    CountAsOk,
    /// DEL, EXISTS, TOUCH over several keys: the sum of the per-key integers.
    Sum,
    /// MSET over several keys: `+OK`, or the first error.
    AllOk,
    /// HGETALL: a map in RESP3, a flat array in RESP2 (also what `Plain` does for pairs).
    Pairs,
}

/// Writes `reply` as `shape` says.
pub(crate) fn encode(reply: &Reply, shape: Shape, encoder: &mut ReplyEncoder<'_>) {
    match (shape, reply) {
        (_, Reply::Error(error)) => encode_store_error(error, encoder),
        (Shape::WrittenAsOne, Reply::Written { .. } | Reply::Ok) => encoder.integer(1),
        (Shape::WrittenAsOne, _) => encoder.integer(0),
        (Shape::CountAsOk, Reply::Integer(_)) => encoder.ok(),
        (Shape::Sum, Reply::Array(items)) => {
            let mut sum: i64 = 0;
            for item in items {
                match item {
                    Reply::Integer(value) => sum = sum.saturating_add(*value),
                    Reply::Error(error) => return encode_store_error(error, encoder),
                    _ => {}
                }
            }
            encoder.integer(sum);
        }
        (Shape::AllOk, Reply::Array(items)) => {
            match items.iter().find_map(|item| match item {
                Reply::Error(error) => Some(error),
                _ => None,
            }) {
                Some(error) => encode_store_error(error, encoder),
                None => encoder.ok(),
            }
        }
        _ => encode_plain(reply, encoder),
    }
}

/// Writes a store error as Redis would word it.
pub(crate) fn encode_store_error(error: &StoreError, encoder: &mut ReplyEncoder<'_>) {
    encoder.error(error.redis_error_line());
}

fn encode_plain(reply: &Reply, encoder: &mut ReplyEncoder<'_>) {
    match reply {
        Reply::Ok | Reply::Written { .. } => encoder.ok(),
        Reply::Nil | Reply::ConditionNotMet | Reply::NotFound | Reply::CasMismatch => {
            encoder.null()
        }
        Reply::Integer(value) => encoder.integer(*value),
        Reply::Bulk(value) | Reply::Value { value, .. } => encoder.bulk(value),
        Reply::Counter { value, .. } => encoder.integer(i64::try_from(*value).unwrap_or(i64::MAX)),
        Reply::Array(items) => {
            encoder.array_header(items.len());
            for item in items {
                encode_plain(item, encoder);
            }
        }
        Reply::Pairs(pairs) => {
            encoder.map_header(pairs.len());
            for (field, value) in pairs {
                encoder.bulk(field);
                encoder.bulk(value);
            }
        }
        Reply::Type(value_type_opt) => encoder.simple(
            value_type_opt
                .map(|value_type| value_type.name())
                .unwrap_or("none"),
        ),
        Reply::Scan(page) => {
            // A page on its own (the front end normally merges pages into a cursor reply).
            encoder.array_header(page.keys.len());
            for key in &page.keys {
                encoder.bulk(key);
            }
        }
        Reply::Image(_) => encoder.error("ERR internal: an entry image cannot be sent to a client"),
        // SCD.LOCK: the fencing token, or nil when someone else holds the lock.
        Reply::LockGranted { token, .. } => {
            encoder.integer(i64::try_from(*token).unwrap_or(i64::MAX))
        }
        Reply::LockHeld(_) => encoder.null(),
        Reply::Error(error) => encode_store_error(error, encoder),
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use resp::ProtocolVersion;

    use super::*;

    fn check(reply: Reply, shape: Shape, version: ProtocolVersion, expect: &str) {
        let mut out = BytesMut::new();
        encode(&reply, shape, &mut ReplyEncoder::new(&mut out, version));
        assert_eq!(
            String::from_utf8_lossy(&out),
            expect,
            "{reply:?} as {shape:?}"
        );
    }

    #[test]
    fn replies_are_written_in_each_shape() {
        use ProtocolVersion::{Resp2, Resp3};
        check(Reply::Written { cas: 5 }, Shape::Plain, Resp2, "+OK\r\n");
        check(Reply::ConditionNotMet, Shape::Plain, Resp2, "$-1\r\n");
        check(Reply::ConditionNotMet, Shape::Plain, Resp3, "_\r\n");
        check(
            Reply::Written { cas: 5 },
            Shape::WrittenAsOne,
            Resp2,
            ":1\r\n",
        );
        check(Reply::ConditionNotMet, Shape::WrittenAsOne, Resp2, ":0\r\n");
        check(Reply::Integer(3), Shape::CountAsOk, Resp2, "+OK\r\n");
        check(
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::Integer(0),
                Reply::Integer(1),
            ]),
            Shape::Sum,
            Resp2,
            ":2\r\n",
        );
        check(
            Reply::Array(vec![Reply::Written { cas: 1 }, Reply::Written { cas: 2 }]),
            Shape::AllOk,
            Resp2,
            "+OK\r\n",
        );
        let pairs = Reply::Pairs(vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))]);
        check(
            pairs.clone(),
            Shape::Pairs,
            Resp2,
            "*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        );
        check(pairs, Shape::Pairs, Resp3, "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
        check(Reply::Type(None), Shape::Plain, Resp2, "+none\r\n");
        check(
            Reply::Type(Some(store::ValueType::Hash)),
            Shape::Plain,
            Resp2,
            "+hash\r\n",
        );
    }

    #[test]
    fn scd_lock_replies_are_the_token_or_nil_and_fenced_writes_an_error_line() {
        use ProtocolVersion::{Resp2, Resp3};
        let granted = Reply::LockGranted {
            token: 111_546_435_584_001,
            deadline_ms: 9,
        };
        check(granted.clone(), Shape::Plain, Resp2, ":111546435584001\r\n");
        check(granted, Shape::Plain, Resp3, ":111546435584001\r\n");
        let held = Reply::LockHeld(Box::new(store::LockHolder {
            owner: Bytes::from_static(b"w1"),
            token: 5,
            deadline_ms: 9,
            mode: store::LockMode::Lease,
            num_waiters: 2,
        }));
        check(held.clone(), Shape::Plain, Resp2, "$-1\r\n");
        check(held, Shape::Plain, Resp3, "_\r\n");
        check(
            Reply::Error(StoreError::Fenced {
                token: 5,
                held_token_opt: Some(7),
            }),
            Shape::Plain,
            Resp2,
            "-FENCED token 5 is stale: the lock is held with newer token 7\r\n",
        );
    }

    #[test]
    fn an_error_wins_over_the_shape() {
        check(
            Reply::Array(vec![Reply::Integer(1), Reply::Error(StoreError::WrongType)]),
            Shape::Sum,
            ProtocolVersion::Resp2,
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        );
    }
}
