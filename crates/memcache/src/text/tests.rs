//! Data-driven tests of the text parser and encoders.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::{Direction, Limits, StoreMode};

type Outcome = Result<TextRequest, TextError>;

/// Feeds `chunks` to one parser, taking every request after each chunk, the way the node does.
/// Stops at an error that closes the connection. Returns the outcomes and what is left buffered.
fn feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, limits: &Limits) -> (Vec<Outcome>, usize) {
    let mut parser = TextParser::new();
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut buf, limits) {
                Ok(None) => break,
                Ok(Some(request)) => outcomes.push(Ok(request)),
                Err(error) => {
                    let closes = error.closes_connection();
                    outcomes.push(Err(error));
                    if closes {
                        return (outcomes, buf.len());
                    }
                }
            }
        }
    }
    (outcomes, buf.len())
}

/// Parses `input` whole, byte by byte, and split in two at every boundary, and checks that each
/// way gives `expect` and leaves nothing but an unfinished tail buffered.
fn check_with(input: &[u8], limits: &Limits, expect: &[Outcome]) {
    let (whole, _) = feed([input], limits);
    assert_eq!(whole, expect, "input {:?}", String::from_utf8_lossy(input));
    let (bytewise, _) = feed(input.chunks(1), limits);
    assert_eq!(
        bytewise,
        expect,
        "byte by byte: {:?}",
        String::from_utf8_lossy(input)
    );
    for split in 0..=input.len() {
        let (head, tail) = input.split_at(split);
        let (outcomes, _) = feed([head, tail], limits);
        assert_eq!(
            outcomes,
            expect,
            "split at {split}: {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

fn check(input: &[u8], expect: &[Outcome]) {
    check_with(input, &Limits::default(), expect);
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn get(keys: &[&str], return_cas: bool, touch_exptime_opt: Option<i64>) -> Outcome {
    Ok(TextRequest::Get(GetRequest {
        keys: keys.iter().map(|key| b(key)).collect(),
        return_cas,
        touch_exptime_opt,
    }))
}

fn store(mode: StoreMode, key: &str, flags: u32, exptime: i64, value: &str) -> StoreRequest {
    StoreRequest {
        mode,
        key: b(key),
        client_flags: flags,
        exptime,
        value: b(value),
        compare_cas_opt: None,
        noreply: false,
    }
}

fn ok_store(request: StoreRequest) -> Outcome {
    Ok(TextRequest::Store(request))
}

const BAD_FORMAT: TextError = TextError::BadCommandLineFormat { noreply: false };
const ERROR: TextError = TextError::UnknownCommand;

#[test]
fn get_and_gets_name_one_or_more_keys() {
    check(b"get a\r\n", &[get(&["a"], false, None)]);
    check(b"get a b  c\r\n", &[get(&["a", "b", "c"], false, None)]);
    check(b"gets a\r\n", &[get(&["a"], true, None)]);
    // A bare "\n" ends a line too, as in memcached.
    check(b"get a\n", &[get(&["a"], false, None)]);
}

#[test]
fn gat_and_gats_take_an_exptime_first() {
    check(b"gat 30 a b\r\n", &[get(&["a", "b"], false, Some(30))]);
    check(b"gats -1 a\r\n", &[get(&["a"], true, Some(-1))]);
    // memcached answers a gat without keys with a bare END.
    check(b"gat 30\r\n", &[get(&[], false, Some(30))]);
    check(
        b"gat soon a\r\n",
        &[Err(TextError::InvalidExptime { noreply: false })],
    );
}

#[test]
fn get_refuses_missing_long_and_invalid_keys() {
    check(b"get\r\n", &[Err(ERROR)]);
    check(b"gets \r\n", &[Err(ERROR)]);
    let longest_key = "k".repeat(250);
    check(
        format!("get {longest_key}\r\n").as_bytes(),
        &[get(&[&longest_key], false, None)],
    );
    check(
        format!("get {longest_key}x\r\n").as_bytes(),
        &[Err(BAD_FORMAT)],
    );
    // Only spaces separate tokens, so a tab is part of the key, and a control character.
    check(b"get a\tb\r\n", &[Err(BAD_FORMAT)]);
    check(b"get a\x7f\r\n", &[Err(BAD_FORMAT)]);
}

#[test]
fn get_refuses_more_keys_than_the_limit() {
    let limits = Limits {
        max_keys_per_get: 3,
        ..Limits::default()
    };
    check_with(
        b"get a b c\r\n",
        &limits,
        &[get(&["a", "b", "c"], false, None)],
    );
    let too_many = Err(TextError::TooManyKeys {
        max_keys_per_get: 3,
    });
    check_with(b"get a b c d\r\n", &limits, std::slice::from_ref(&too_many));
    // Far past the token bound of the tokenizer too.
    let line = format!("get{}\r\n", " k".repeat(1000));
    check_with(line.as_bytes(), &limits, &[too_many]);
}

#[test]
fn storage_commands_read_their_data_block() {
    check(
        b"set k 5 60 5\r\nhello\r\n",
        &[ok_store(store(StoreMode::Set, "k", 5, 60, "hello"))],
    );
    check(
        b"add k 0 0 1\r\nx\r\n",
        &[ok_store(store(StoreMode::Add, "k", 0, 0, "x"))],
    );
    check(
        b"replace k 4294967295 -1 1\r\nx\r\n",
        &[ok_store(store(StoreMode::Replace, "k", u32::MAX, -1, "x"))],
    );
    check(
        b"append k 0 0 2\r\nab\r\n",
        &[ok_store(store(StoreMode::Append, "k", 0, 0, "ab"))],
    );
    check(
        b"prepend k 0 0 2\r\nab\r\n",
        &[ok_store(store(StoreMode::Prepend, "k", 0, 0, "ab"))],
    );
}

#[test]
fn data_blocks_may_be_empty_or_hold_line_breaks() {
    check(
        b"set k 0 0 0\r\n\r\n",
        &[ok_store(store(StoreMode::Set, "k", 0, 0, ""))],
    );
    check(
        b"set k 0 0 6\r\na\r\nb\nc\r\n",
        &[ok_store(store(StoreMode::Set, "k", 0, 0, "a\r\nb\nc"))],
    );
}

#[test]
fn cas_carries_the_value_to_compare() {
    let mut expected = store(StoreMode::Set, "k", 1, 2, "abc");
    expected.compare_cas_opt = Some(18_446_744_073_709_551_615);
    check(
        b"cas k 1 2 3 18446744073709551615\r\nabc\r\n",
        &[ok_store(expected.clone())],
    );
    expected.noreply = true;
    check(
        b"cas k 1 2 3 18446744073709551615 noreply\r\nabc\r\n",
        &[ok_store(expected)],
    );
    check(b"cas k 1 2 3\r\nabc\r\n", &[Err(ERROR), Err(ERROR)]);
    check(b"cas k 1 2 3 -4\r\nabc\r\n", &[Err(BAD_FORMAT), Err(ERROR)]);
}

#[test]
fn noreply_is_read_from_the_last_token() {
    let mut expected = store(StoreMode::Set, "k", 0, 0, "v");
    expected.noreply = true;
    check(b"set k 0 0 1 noreply\r\nv\r\n", &[ok_store(expected)]);
    // memcached ignores any other sixth token.
    check(
        b"set k 0 0 1 whatever\r\nv\r\n",
        &[ok_store(store(StoreMode::Set, "k", 0, 0, "v"))],
    );
}

#[test]
fn storage_commands_with_a_wrong_argument_count_are_unknown() {
    // The data line is then read as a command of its own, as memcached does.
    check(b"set k 0 0\r\nv\r\n", &[Err(ERROR), Err(ERROR)]);
    check(
        b"set k 0 0 1 noreply extra\r\nv\r\n",
        &[Err(ERROR), Err(ERROR)],
    );
}

#[test]
fn malformed_storage_numbers_are_a_bad_format_and_the_block_is_read_as_a_command() {
    for line in [
        "set k x 0 1",
        "set k 4294967296 0 1",
        "set k 0 soon 1",
        "set k 0 0 -1",
        "set k 0 0 2147483646",
        "set k 0 0 one",
    ] {
        check(
            format!("{line}\r\nv\r\n").as_bytes(),
            &[Err(BAD_FORMAT), Err(ERROR)],
        );
    }
    check(
        b"set k x 0 1 noreply\r\nget a\r\n",
        &[
            Err(TextError::BadCommandLineFormat { noreply: true }),
            get(&["a"], false, None),
        ],
    );
}

#[test]
fn a_bad_key_in_a_storage_command_skips_its_block() {
    let long_key = "k".repeat(251);
    check(
        format!("set {long_key} 0 0 5\r\nhello\r\nget a\r\n").as_bytes(),
        &[Err(BAD_FORMAT), get(&["a"], false, None)],
    );
}

#[test]
fn data_not_followed_by_crlf_is_a_bad_data_chunk() {
    check(
        b"set k 0 0 1\r\nxyz\r\nget a\r\n",
        &[
            Err(TextError::BadDataChunk { noreply: false }),
            Err(ERROR),
            get(&["a"], false, None),
        ],
    );
    check(
        b"set k 0 0 1 noreply\r\nx\n\r\n",
        &[Err(TextError::BadDataChunk { noreply: true }), Err(ERROR)],
    );
}

#[test]
fn a_value_over_the_limit_is_refused_and_skipped() {
    let limits = Limits {
        max_value_bytes: 4,
        ..Limits::default()
    };
    check_with(
        b"set k 0 0 4\r\nabcd\r\n",
        &limits,
        &[ok_store(store(StoreMode::Set, "k", 0, 0, "abcd"))],
    );
    check_with(
        b"set k 0 0 5\r\nab\r\nd\r\nget a\r\n",
        &limits,
        &[
            Err(TextError::ObjectTooLarge {
                noreply: false,
                skipped: true,
            }),
            get(&["a"], false, None),
        ],
    );
    check_with(
        b"append k 0 0 5 noreply\r\nabcde\r\nget a\r\n",
        &limits,
        &[
            Err(TextError::ObjectTooLarge {
                noreply: true,
                skipped: true,
            }),
            get(&["a"], false, None),
        ],
    );
}

#[test]
fn a_value_beyond_the_skip_bound_closes_the_connection() {
    let limits = Limits::default();
    let line = format!("set k 0 0 {}\r\n", limits.max_skip_bytes() + 1);
    let error = TextError::ObjectTooLarge {
        noreply: false,
        skipped: false,
    };
    assert!(error.closes_connection());
    assert!(!error.reply_suppressed());
    check_with(line.as_bytes(), &limits, &[Err(error)]);
}

#[test]
fn delete_accepts_a_zero_hold_time_and_noreply() {
    let delete = |noreply| {
        Ok(TextRequest::Delete {
            key: b("k"),
            noreply,
        })
    };
    check(b"delete k\r\n", &[delete(false)]);
    check(b"delete k noreply\r\n", &[delete(true)]);
    check(b"delete k 0\r\n", &[delete(false)]);
    check(b"delete k 0 noreply\r\n", &[delete(true)]);
    check(
        b"delete k 10\r\n",
        &[Err(TextError::DeleteUsage { noreply: false })],
    );
    check(
        b"delete k 10 noreply\r\n",
        &[Err(TextError::DeleteUsage { noreply: true })],
    );
    check(b"delete\r\n", &[Err(ERROR)]);
    check(b"delete k 0 noreply x\r\n", &[Err(ERROR)]);
}

#[test]
fn incr_and_decr_take_an_unsigned_delta() {
    let arithmetic = |direction, delta, noreply| {
        Ok(TextRequest::Arithmetic(ArithmeticRequest {
            key: b("n"),
            direction,
            delta,
            noreply,
        }))
    };
    check(
        b"incr n 5\r\n",
        &[arithmetic(Direction::Increment, 5, false)],
    );
    check(
        b"decr n 18446744073709551615 noreply\r\n",
        &[arithmetic(Direction::Decrement, u64::MAX, true)],
    );
    check(
        b"incr n -1\r\n",
        &[Err(TextError::InvalidDelta { noreply: false })],
    );
    check(
        b"incr n 18446744073709551616 noreply\r\n",
        &[Err(TextError::InvalidDelta { noreply: true })],
    );
    check(b"incr n\r\n", &[Err(ERROR)]);
}

#[test]
fn touch_takes_an_exptime() {
    check(
        b"touch k 10\r\n",
        &[Ok(TextRequest::Touch {
            key: b("k"),
            exptime: 10,
            noreply: false,
        })],
    );
    check(
        b"touch k 10 noreply\r\n",
        &[Ok(TextRequest::Touch {
            key: b("k"),
            exptime: 10,
            noreply: true,
        })],
    );
    check(
        b"touch k ten\r\n",
        &[Err(TextError::InvalidExptime { noreply: false })],
    );
    check(b"touch k\r\n", &[Err(ERROR)]);
}

#[test]
fn flush_all_takes_an_optional_delay_and_noreply() {
    let flush = |delay_seconds, noreply| {
        Ok(TextRequest::FlushAll {
            delay_seconds,
            noreply,
        })
    };
    check(b"flush_all\r\n", &[flush(0, false)]);
    check(b"flush_all noreply\r\n", &[flush(0, true)]);
    check(b"flush_all 30\r\n", &[flush(30, false)]);
    check(b"flush_all 30 noreply\r\n", &[flush(30, true)]);
    check(
        b"flush_all later\r\n",
        &[Err(TextError::InvalidExptime { noreply: false })],
    );
    check(b"flush_all 1 2 3\r\n", &[Err(ERROR)]);
}

#[test]
fn server_commands_parse() {
    check(b"version\r\n", &[Ok(TextRequest::Version)]);
    check(b"quit\r\n", &[Ok(TextRequest::Quit)]);
    check(
        b"stats\r\n",
        &[Ok(TextRequest::Stats {
            arguments: Vec::new(),
        })],
    );
    check(
        b"stats detail dump\r\n",
        &[Ok(TextRequest::Stats {
            arguments: vec![b("detail"), b("dump")],
        })],
    );
    check(
        b"verbosity 1\r\n",
        &[Ok(TextRequest::Verbosity {
            level: 1,
            noreply: false,
        })],
    );
    check(
        b"verbosity 1 noreply\r\n",
        &[Ok(TextRequest::Verbosity {
            level: 1,
            noreply: true,
        })],
    );
    check(b"verbosity loud\r\n", &[Err(BAD_FORMAT)]);
    check(b"verbosity\r\n", &[Err(ERROR)]);
}

#[test]
fn unknown_and_empty_lines_are_an_error() {
    check(b"\r\n", &[Err(ERROR)]);
    check(b"\n", &[Err(ERROR)]);
    check(b"   \r\n", &[Err(ERROR)]);
    check(b"g\r\n", &[Err(ERROR)]);
    // Command names are case-sensitive.
    check(b"GET a\r\n", &[Err(ERROR)]);
    check(b"shutdown\r\n", &[Err(ERROR)]);
    check(b"me k\r\n", &[Err(ERROR)]);
}

#[test]
fn requests_pipelined_in_one_buffer_come_out_in_order() {
    check(
        b"set a 0 0 1\r\n1\r\nget a\r\nbogus\r\ndelete a\r\nmn\r\n",
        &[
            ok_store(store(StoreMode::Set, "a", 0, 0, "1")),
            get(&["a"], false, None),
            Err(ERROR),
            Ok(TextRequest::Delete {
                key: b("a"),
                noreply: false,
            }),
            Ok(TextRequest::MetaNoop),
        ],
    );
}

#[test]
fn a_line_longer_than_the_limit_closes_the_connection() {
    let limits = Limits {
        max_line_bytes: 10,
        ..Limits::default()
    };
    // Ten bytes before the '\n' (the '\r' counts) is the most a line may hold.
    check_with(b"get 12345\r\n", &limits, &[get(&["12345"], false, None)]);
    check_with(b"get 123456\r\n", &limits, &[Err(TextError::LineTooLong)]);
    // Without any line end, eleven bytes are enough to know.
    check_with(b"get 1234567", &limits, &[Err(TextError::LineTooLong)]);
    check_with(b"get 123456", &limits, &[]);
    assert!(TextError::LineTooLong.closes_connection());
}

#[test]
fn an_incomplete_request_is_kept_until_it_completes() {
    let limits = Limits::default();
    let mut parser = TextParser::new();
    let mut buf = BytesMut::from(&b"set k 0 0 3\r\nab"[..]);
    assert_eq!(parser.parse(&mut buf, &limits), Ok(None));
    // The line is consumed once; only the data block waits in the buffer.
    assert_eq!(&buf[..], b"ab");
    buf.extend_from_slice(b"c\r");
    assert_eq!(parser.parse(&mut buf, &limits), Ok(None));
    buf.extend_from_slice(b"\n");
    assert_eq!(
        parser.parse(&mut buf, &limits),
        Ok(Some(TextRequest::Store(store(
            StoreMode::Set,
            "k",
            0,
            0,
            "abc"
        ))))
    );
    assert!(buf.is_empty());
}

fn meta_get(key: &str) -> MetaGet {
    MetaGet {
        key: b(key),
        return_value: false,
        quiet: false,
        no_lru_bump: false,
        touch_exptime_opt: None,
        vivify_exptime_opt: None,
        recache_threshold_opt: None,
        new_cas_opt: None,
        opaque_opt: None,
        return_flags: Vec::new(),
    }
}

#[test]
fn mg_keeps_return_flags_in_request_order() {
    let mut expected = meta_get("k");
    expected.return_value = true;
    expected.opaque_opt = Some(b("123"));
    expected.return_flags = vec![
        MetaFlag::Ttl,
        MetaFlag::Opaque,
        MetaFlag::ClientFlags,
        MetaFlag::Cas,
        MetaFlag::Size,
        MetaFlag::Key,
        MetaFlag::Hit,
        MetaFlag::LastAccess,
    ];
    check(
        b"mg k t v O123 f c s k h l\r\n",
        &[Ok(TextRequest::MetaGet(expected))],
    );
    check(b"mg k\r\n", &[Ok(TextRequest::MetaGet(meta_get("k")))]);
}

#[test]
fn mg_reads_the_tokens_of_its_flags() {
    let mut expected = meta_get("k");
    expected.quiet = true;
    expected.no_lru_bump = true;
    expected.touch_exptime_opt = Some(30);
    expected.vivify_exptime_opt = Some(-1);
    expected.recache_threshold_opt = Some(5);
    expected.new_cas_opt = Some(77);
    check(
        b"mg k q u T30 N-1 R5 E77\r\n",
        &[Ok(TextRequest::MetaGet(expected))],
    );
}

#[test]
fn mg_refuses_bad_flags_with_memcached_words() {
    check(b"mg\r\n", &[Err(ERROR)]);
    check(b"mg k v v\r\n", &[Err(TextError::DuplicateFlag)]);
    check(b"mg k z\r\n", &[Err(TextError::InvalidFlag)]);
    check(b"mg k Tsoon\r\n", &[Err(TextError::BadToken)]);
    check(b"mg k E-1\r\n", &[Err(TextError::BadToken)]);
    check(b"mg k b\r\n", &[Err(TextError::Base64KeyUnsupported)]);
    let opaque = "O".repeat(MAX_OPAQUE_BYTES);
    let mut expected = meta_get("k");
    expected.opaque_opt = Some(b(&opaque[1..]));
    expected.return_flags = vec![MetaFlag::Opaque];
    check(
        format!("mg k {opaque}\r\n").as_bytes(),
        &[Ok(TextRequest::MetaGet(expected))],
    );
    check(
        format!("mg k {opaque}O\r\n").as_bytes(),
        &[Err(TextError::OpaqueTooLong)],
    );
    // Up to MAX_META_TOKENS tokens the flags are read (and found repeated here); one more is
    // refused before they are.
    let flags = " v".repeat(MAX_META_TOKENS - 2);
    check(
        format!("mg k{flags}\r\n").as_bytes(),
        &[Err(TextError::DuplicateFlag)],
    );
    check(
        format!("mg k{flags} v\r\n").as_bytes(),
        &[Err(TextError::TooManyFlags)],
    );
    check(
        format!("mg {} v\r\n", "k".repeat(251)).as_bytes(),
        &[Err(BAD_FORMAT)],
    );
}

fn meta_set(key: &str, value: &str) -> MetaSet {
    MetaSet {
        key: b(key),
        value: b(value),
        mode: StoreMode::Set,
        client_flags: 0,
        exptime: 0,
        compare_cas_opt: None,
        new_cas_opt: None,
        invalidate: false,
        vivify_exptime_opt: None,
        quiet: false,
        opaque_opt: None,
        return_flags: Vec::new(),
    }
}

#[test]
fn ms_reads_flags_and_its_data_block() {
    check(
        b"ms k 2\r\nhi\r\n",
        &[Ok(TextRequest::MetaSet(meta_set("k", "hi")))],
    );
    let mut expected = meta_set("k", "hi");
    expected.client_flags = 7;
    expected.exptime = 90;
    expected.compare_cas_opt = Some(5);
    expected.new_cas_opt = Some(6);
    expected.invalidate = true;
    expected.quiet = true;
    expected.vivify_exptime_opt = Some(30);
    expected.mode = StoreMode::Append;
    expected.opaque_opt = Some(b("x"));
    expected.return_flags = vec![MetaFlag::Key, MetaFlag::Opaque, MetaFlag::Cas];
    check(
        b"ms k 2 F7 T90 C5 E6 I q N30 MA k Ox c\r\nhi\r\n",
        &[Ok(TextRequest::MetaSet(expected))],
    );
}

#[test]
fn ms_mode_letters_select_the_store_mode() {
    for (letter, mode) in [
        ("S", StoreMode::Set),
        ("E", StoreMode::Add),
        ("A", StoreMode::Append),
        ("P", StoreMode::Prepend),
        ("R", StoreMode::Replace),
    ] {
        let mut expected = meta_set("k", "v");
        expected.mode = mode;
        check(
            format!("ms k 1 M{letter}\r\nv\r\n").as_bytes(),
            &[Ok(TextRequest::MetaSet(expected))],
        );
    }
}

#[test]
fn ms_errors_skip_the_data_block() {
    for (line, error) in [
        ("ms k 5 MX", TextError::InvalidSetMode),
        ("ms k 5 MSS", TextError::BadModeTokenLength),
        ("ms k 5 v", TextError::InvalidFlag),
        ("ms k 5 T1 T2", TextError::DuplicateFlag),
        ("ms k 5 Tx", TextError::BadToken),
        ("ms k 5 F-1", BAD_FORMAT),
        ("ms k 5 b", TextError::Base64KeyUnsupported),
    ] {
        check(
            format!("{line}\r\nhello\r\nmn\r\n").as_bytes(),
            &[Err(error), Ok(TextRequest::MetaNoop)],
        );
    }
    let limits = Limits {
        max_value_bytes: 4,
        ..Limits::default()
    };
    check_with(
        b"ms k 5 q\r\nhello\r\nmn\r\n",
        &limits,
        &[
            Err(TextError::ObjectTooLarge {
                noreply: false,
                skipped: true,
            }),
            Ok(TextRequest::MetaNoop),
        ],
    );
}

#[test]
fn ms_without_a_readable_length_cannot_skip() {
    check(b"ms k\r\n", &[Err(BAD_FORMAT)]);
    check(b"ms k x\r\nhi\r\n", &[Err(BAD_FORMAT), Err(ERROR)]);
    check(b"ms\r\n", &[Err(ERROR)]);
}

#[test]
fn ms_bad_data_chunk_is_reported_even_when_quiet() {
    let error = TextError::BadDataChunk { noreply: false };
    check(b"ms k 1 q\r\nabc", &[Err(error.clone())]);
    assert!(!error.reply_suppressed());
}

#[test]
fn md_reads_its_flags_and_collapses_flag_errors() {
    let mut expected = MetaDelete {
        key: b("k"),
        compare_cas_opt: Some(9),
        new_cas_opt: Some(10),
        invalidate: true,
        new_exptime_opt: Some(30),
        quiet: true,
        opaque_opt: Some(b("op")),
        return_flags: vec![MetaFlag::Opaque, MetaFlag::Key],
    };
    check(
        b"md k C9 E10 I T30 q Oop k\r\n",
        &[Ok(TextRequest::MetaDelete(expected.clone()))],
    );
    expected = MetaDelete {
        compare_cas_opt: None,
        new_cas_opt: None,
        invalidate: false,
        new_exptime_opt: None,
        quiet: false,
        opaque_opt: None,
        return_flags: Vec::new(),
        ..expected
    };
    check(b"md k\r\n", &[Ok(TextRequest::MetaDelete(expected))]);
    for line in ["md k v", "md k q q", "md k Cx"] {
        check(
            format!("{line}\r\n").as_bytes(),
            &[Err(TextError::InvalidOrDuplicateFlag)],
        );
    }
    check(b"md k b\r\n", &[Err(TextError::Base64KeyUnsupported)]);
    check(b"md\r\n", &[Err(ERROR)]);
}

#[test]
fn ma_defaults_to_incrementing_by_one() {
    let expected = MetaArithmetic {
        key: b("n"),
        direction: Direction::Increment,
        delta: 1,
        initial: 0,
        vivify_exptime_opt: None,
        touch_exptime_opt: None,
        compare_cas_opt: None,
        new_cas_opt: None,
        return_value: false,
        quiet: false,
        opaque_opt: None,
        return_flags: Vec::new(),
    };
    check(
        b"ma n\r\n",
        &[Ok(TextRequest::MetaArithmetic(expected.clone()))],
    );
    let full = MetaArithmetic {
        direction: Direction::Decrement,
        delta: 5,
        initial: 100,
        vivify_exptime_opt: Some(60),
        touch_exptime_opt: Some(30),
        compare_cas_opt: Some(3),
        new_cas_opt: Some(4),
        return_value: true,
        quiet: true,
        opaque_opt: Some(b("1")),
        return_flags: vec![
            MetaFlag::Cas,
            MetaFlag::Ttl,
            MetaFlag::Key,
            MetaFlag::Opaque,
        ],
        ..expected.clone()
    };
    check(
        b"ma n MD D5 J100 N60 T30 C3 E4 v q c t k O1\r\n",
        &[Ok(TextRequest::MetaArithmetic(full))],
    );
    for (mode, direction) in [
        ("I", Direction::Increment),
        ("+", Direction::Increment),
        ("-", Direction::Decrement),
    ] {
        check(
            format!("ma n M{mode}\r\n").as_bytes(),
            &[Ok(TextRequest::MetaArithmetic(MetaArithmetic {
                direction,
                ..expected.clone()
            }))],
        );
    }
}

#[test]
fn ma_refuses_bad_modes_and_flags() {
    check(b"ma n Mx\r\n", &[Err(TextError::InvalidArithmeticMode)]);
    for line in ["ma n D-1", "ma n Jx", "ma n f", "ma n MII", "ma n v v"] {
        check(
            format!("{line}\r\n").as_bytes(),
            &[Err(TextError::InvalidOrDuplicateFlag)],
        );
    }
}

#[test]
fn error_replies_use_memcached_words() {
    let cases: &[(TextError, &str)] = &[
        (ERROR, "ERROR"),
        (BAD_FORMAT, "CLIENT_ERROR bad command line format"),
        (
            TextError::DeleteUsage { noreply: false },
            "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
        ),
        (
            TextError::InvalidExptime { noreply: false },
            "CLIENT_ERROR invalid exptime argument",
        ),
        (
            TextError::InvalidDelta { noreply: false },
            "CLIENT_ERROR invalid numeric delta argument",
        ),
        (
            TextError::ObjectTooLarge {
                noreply: false,
                skipped: true,
            },
            "SERVER_ERROR object too large for cache",
        ),
        (
            TextError::BadDataChunk { noreply: false },
            "CLIENT_ERROR bad data chunk",
        ),
        (TextError::LineTooLong, "CLIENT_ERROR line too long"),
        (TextError::DuplicateFlag, "CLIENT_ERROR duplicate flag"),
        (TextError::InvalidFlag, "CLIENT_ERROR invalid flag"),
        (
            TextError::InvalidOrDuplicateFlag,
            "CLIENT_ERROR invalid or duplicate flag",
        ),
        (
            TextError::BadToken,
            "CLIENT_ERROR bad token in command line format",
        ),
        (
            TextError::BadModeTokenLength,
            "CLIENT_ERROR incorrect length for M token",
        ),
        (
            TextError::InvalidSetMode,
            "CLIENT_ERROR invalid mode for ms M token",
        ),
        (
            TextError::InvalidArithmeticMode,
            "CLIENT_ERROR invalid mode for ma M token",
        ),
        (
            TextError::OpaqueTooLong,
            "CLIENT_ERROR opaque token too long",
        ),
        (
            TextError::TooManyFlags,
            "CLIENT_ERROR options flags too long",
        ),
        (
            TextError::TooManyKeys {
                max_keys_per_get: 256,
            },
            "CLIENT_ERROR too many keys (max-keys-per-get is 256)",
        ),
        (
            TextError::Base64KeyUnsupported,
            "CLIENT_ERROR base64 keys (b flag) are not supported",
        ),
    ];
    for (error, expect) in cases {
        let mut out = BytesMut::new();
        encode_error(&mut out, error);
        assert_eq!(&out[..], format!("{expect}\r\n").as_bytes(), "{error:?}");
    }
}

#[test]
fn errors_of_noreply_requests_are_not_sent() {
    let mut out = BytesMut::new();
    encode_error(&mut out, &TextError::BadCommandLineFormat { noreply: true });
    encode_error(
        &mut out,
        &TextError::ObjectTooLarge {
            noreply: true,
            skipped: true,
        },
    );
    assert!(out.is_empty());
    // An error that closes the connection is always explained.
    encode_error(
        &mut out,
        &TextError::ObjectTooLarge {
            noreply: true,
            skipped: false,
        },
    );
    assert_eq!(&out[..], b"SERVER_ERROR object too large for cache\r\n");
}

fn encoded(encode: impl FnOnce(&mut BytesMut)) -> String {
    let mut out = BytesMut::new();
    encode(&mut out);
    String::from_utf8(out.to_vec()).expect("replies in these tests are text")
}

#[test]
fn classic_replies_encode_as_memcached_sends_them() {
    let cases: &[(TextStatus, &str)] = &[
        (TextStatus::Stored, "STORED\r\n"),
        (TextStatus::NotStored, "NOT_STORED\r\n"),
        (TextStatus::Exists, "EXISTS\r\n"),
        (TextStatus::NotFound, "NOT_FOUND\r\n"),
        (TextStatus::Deleted, "DELETED\r\n"),
        (TextStatus::Touched, "TOUCHED\r\n"),
        (TextStatus::Ok, "OK\r\n"),
        (TextStatus::End, "END\r\n"),
        (TextStatus::Reset, "RESET\r\n"),
    ];
    for (status, expect) in cases {
        assert_eq!(encoded(|out| encode_status(out, *status)), *expect);
    }
    assert_eq!(
        encoded(|out| encode_value(out, b"k", 5, b"hello", None)),
        "VALUE k 5 5\r\nhello\r\n"
    );
    assert_eq!(
        encoded(|out| encode_value(out, b"k", u32::MAX, b"", Some(u64::MAX))),
        "VALUE k 4294967295 0 18446744073709551615\r\n\r\n"
    );
    assert_eq!(encoded(|out| encode_number(out, 0)), "0\r\n");
    assert_eq!(encoded(|out| encode_number(out, 1234)), "1234\r\n");
    assert_eq!(
        encoded(|out| encode_version(out, "1.6.0")),
        "VERSION 1.6.0\r\n"
    );
    assert_eq!(
        encoded(|out| encode_stat(out, "curr_items", "3")),
        "STAT curr_items 3\r\n"
    );
}

#[test]
fn free_text_in_replies_cannot_break_the_line() {
    assert_eq!(
        encoded(|out| encode_client_error(out, NON_NUMERIC_VALUE_MESSAGE)),
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    );
    assert_eq!(
        encoded(|out| encode_server_error(out, "bad\r\nEND")),
        "SERVER_ERROR bad  END\r\n"
    );
    assert_eq!(
        encoded(|out| encode_stat(out, "a\nb", "c\rd")),
        "STAT a b c d\r\n"
    );
}

fn hit(value: &[u8]) -> MetaGetHit<'_> {
    MetaGetHit {
        value,
        client_flags: 30,
        cas: 99,
        ttl_remaining_seconds_opt: Some(78),
        seconds_since_last_access: 4,
        fetched_before: true,
        won: false,
        stale: false,
        win_already_sent: false,
    }
}

#[test]
fn mg_replies_carry_flags_in_request_order() {
    let mut request = meta_get("foo");
    request.return_value = true;
    request.opaque_opt = Some(b("7"));
    request.return_flags = vec![
        MetaFlag::Size,
        MetaFlag::Ttl,
        MetaFlag::ClientFlags,
        MetaFlag::Opaque,
        MetaFlag::Cas,
        MetaFlag::Key,
        MetaFlag::Hit,
        MetaFlag::LastAccess,
    ];
    assert_eq!(
        encoded(|out| encode_meta_get_hit(out, &request, &hit(b"hi"))),
        "VA 2 s2 t78 f30 O7 c99 kfoo h1 l4\r\nhi\r\n"
    );
    request.return_value = false;
    request.return_flags = vec![MetaFlag::Ttl];
    let forever = MetaGetHit {
        ttl_remaining_seconds_opt: None,
        won: true,
        stale: true,
        win_already_sent: true,
        ..hit(b"hi")
    };
    assert_eq!(
        encoded(|out| encode_meta_get_hit(out, &request, &forever)),
        "HD t-1 Z X W\r\n"
    );
}

#[test]
fn mg_misses_echo_opaque_and_key_unless_quiet() {
    let mut request = meta_get("foo");
    request.opaque_opt = Some(b("1"));
    request.return_flags = vec![MetaFlag::Cas, MetaFlag::Key, MetaFlag::Opaque];
    assert_eq!(
        encoded(|out| encode_meta_get_miss(out, &request)),
        "EN kfoo O1\r\n"
    );
    request.quiet = true;
    assert_eq!(encoded(|out| encode_meta_get_miss(out, &request)), "");
    // A quiet mg still answers hits.
    assert_eq!(
        encoded(|out| encode_meta_get_hit(out, &request, &hit(b""))),
        "HD c99 kfoo O1\r\n"
    );
}

#[test]
fn ms_md_ma_replies_hide_only_success_when_quiet() {
    let mut set = meta_set("k", "v");
    set.return_flags = vec![MetaFlag::Cas, MetaFlag::Opaque];
    set.opaque_opt = Some(b("9"));
    let stored = MetaSetOutcome::Stored { cas: 12 };
    assert_eq!(
        encoded(|out| encode_meta_set(out, &set, stored)),
        "HD c12 O9\r\n"
    );
    assert_eq!(
        encoded(|out| encode_meta_set(out, &set, MetaSetOutcome::NotStored)),
        "NS O9\r\n"
    );
    assert_eq!(
        encoded(|out| encode_meta_set(out, &set, MetaSetOutcome::Exists)),
        "EX O9\r\n"
    );
    assert_eq!(
        encoded(|out| encode_meta_set(out, &set, MetaSetOutcome::NotFound)),
        "NF O9\r\n"
    );
    set.quiet = true;
    assert_eq!(encoded(|out| encode_meta_set(out, &set, stored)), "");
    assert_eq!(
        encoded(|out| encode_meta_set(out, &set, MetaSetOutcome::NotStored)),
        "NS O9\r\n"
    );

    let mut delete = MetaDelete {
        key: b("k"),
        compare_cas_opt: None,
        new_cas_opt: None,
        invalidate: false,
        new_exptime_opt: None,
        quiet: false,
        opaque_opt: None,
        return_flags: vec![MetaFlag::Key],
    };
    assert_eq!(
        encoded(|out| encode_meta_delete(out, &delete, MetaDeleteOutcome::Deleted)),
        "HD kk\r\n"
    );
    assert_eq!(
        encoded(|out| encode_meta_delete(out, &delete, MetaDeleteOutcome::NotFound)),
        "NF kk\r\n"
    );
    delete.quiet = true;
    assert_eq!(
        encoded(|out| encode_meta_delete(out, &delete, MetaDeleteOutcome::Deleted)),
        ""
    );
    assert_eq!(
        encoded(|out| encode_meta_delete(out, &delete, MetaDeleteOutcome::Exists)),
        "EX kk\r\n"
    );

    let mut arithmetic = MetaArithmetic {
        key: b("n"),
        direction: Direction::Increment,
        delta: 1,
        initial: 0,
        vivify_exptime_opt: None,
        touch_exptime_opt: None,
        compare_cas_opt: None,
        new_cas_opt: None,
        return_value: true,
        quiet: false,
        opaque_opt: None,
        return_flags: vec![MetaFlag::Ttl, MetaFlag::Cas],
    };
    let done = MetaArithmeticOutcome::Done {
        value: 42,
        cas: 8,
        ttl_remaining_seconds_opt: None,
    };
    assert_eq!(
        encoded(|out| encode_meta_arithmetic(out, &arithmetic, done)),
        "VA 2 t-1 c8\r\n42\r\n"
    );
    arithmetic.return_value = false;
    assert_eq!(
        encoded(|out| encode_meta_arithmetic(out, &arithmetic, done)),
        "HD t-1 c8\r\n"
    );
    assert_eq!(
        encoded(|out| encode_meta_arithmetic(out, &arithmetic, MetaArithmeticOutcome::NotFound)),
        "NF\r\n"
    );
    assert_eq!(
        encoded(|out| encode_meta_arithmetic(out, &arithmetic, MetaArithmeticOutcome::NotStored)),
        "NS\r\n"
    );
    arithmetic.quiet = true;
    assert_eq!(
        encoded(|out| encode_meta_arithmetic(out, &arithmetic, done)),
        ""
    );
    assert_eq!(
        encoded(|out| encode_meta_arithmetic(out, &arithmetic, MetaArithmeticOutcome::Exists)),
        "EX\r\n"
    );
    assert_eq!(encoded(encode_meta_noop), "MN\r\n");
}
