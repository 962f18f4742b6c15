//! Keys across a cluster of real `scd` processes (issue 3): what is written through one node is
//! read the same through every other — strings, hashes, expiries, `SELECT`ed databases — and
//! the commands that span partitions (`MGET`, `DEL`, `EXISTS`, `SCAN`, `DBSIZE`, `RENAME`) cover
//! the whole cluster whichever node they are sent to. Run with 3 nodes and `--backups 0` (the
//! plain cluster of issue 3) and with 5 nodes at the defaults.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Scd;
use common::cluster::{self, call, connect, show};

/// Plain string keys `str:0..` with values `value-N`.
const NUM_STRINGS: usize = 200;
/// Hash keys `hash:0..` with two fields each.
const NUM_HASHES: usize = 50;
/// String keys `ttl:0..` written with `EX TTL_SECONDS`.
const NUM_EXPIRING: usize = 20;
const TTL_SECONDS: i64 = 300;
/// Keys of database 3 (`db3:0..`), besides `shared`, which exists in databases 0 and 3.
const NUM_DB3: usize = 30;

/// Runs each command of `table` through `node` on database `db` and compares the reply, shown by
/// [`cluster::show`], with the expectation.
fn check(node: &Scd, db: u8, table: &[(&[&str], &str)]) {
    let mut connection = connect(node, db);
    for (args, expect) in table {
        let reply = cluster::command(args).query(&mut connection);
        assert_eq!(
            show(&reply),
            *expect,
            "{args:?} on database {db} through {}",
            node.name
        );
    }
}

fn string_keys() -> Vec<String> {
    (0..NUM_STRINGS)
        .map(|index| format!("str:{index}"))
        .collect()
}

/// Writes the data set through `writer`.
fn write_data_set(writer: &Scd) {
    let mut db0 = connect(writer, 0);
    let mut pipeline = redis::pipe();
    for index in 0..NUM_STRINGS {
        pipeline
            .cmd("SET")
            .arg(format!("str:{index}"))
            .arg(format!("value-{index}"));
    }
    for index in 0..NUM_HASHES {
        pipeline
            .cmd("HSET")
            .arg(format!("hash:{index}"))
            .arg("user")
            .arg(format!("user-{index}"))
            .arg("visits")
            .arg(index);
    }
    for index in 0..NUM_EXPIRING {
        pipeline
            .cmd("SET")
            .arg(format!("ttl:{index}"))
            .arg("expiring")
            .arg("EX")
            .arg(TTL_SECONDS);
    }
    pipeline.cmd("SET").arg("shared").arg("in database 0");
    let _: Vec<redis::Value> = pipeline.query(&mut db0).expect("the data set is written");

    let mut db3 = connect(writer, 3);
    let mut pipeline = redis::pipe();
    for index in 0..NUM_DB3 {
        pipeline
            .cmd("SET")
            .arg(format!("db3:{index}"))
            .arg(format!("three-{index}"));
    }
    pipeline.cmd("SET").arg("shared").arg("in database 3");
    let _: Vec<redis::Value> = pipeline.query(&mut db3).expect("database 3 is written");
}

/// Everything `write_data_set` wrote, read back through `node`.
fn read_data_set_through(node: &Scd) {
    let mut db0 = connect(node, 0);
    let names = string_keys();
    let mut mget = vec!["MGET"];
    mget.extend(names.iter().map(String::as_str));
    mget.push("missing:1");
    let values: Vec<Option<String>> = call(&mut db0, &mget);
    let mut expected: Vec<Option<String>> = (0..NUM_STRINGS)
        .map(|index| Some(format!("value-{index}")))
        .collect();
    expected.push(None);
    assert_eq!(
        values, expected,
        "MGET of every string through {}",
        node.name
    );

    for index in 0..NUM_HASHES {
        let key = format!("hash:{index}");
        let fields: BTreeMap<String, String> = call(&mut db0, &["HGETALL", &key]);
        let expected = BTreeMap::from([
            ("user".to_string(), format!("user-{index}")),
            ("visits".to_string(), index.to_string()),
        ]);
        assert_eq!(fields, expected, "HGETALL {key} through {}", node.name);
    }
    for index in 0..NUM_EXPIRING {
        let key = format!("ttl:{index}");
        let ttl: i64 = call(&mut db0, &["TTL", &key]);
        // The test takes seconds, not minutes: the expiry is the one written, counted down.
        assert!(
            (TTL_SECONDS - 60..=TTL_SECONDS).contains(&ttl),
            "TTL {key} through {} is {ttl}",
            node.name
        );
    }
    check(
        node,
        0,
        &[
            (&["GET", "shared"], "\"in database 0\""),
            (&["TTL", "str:0"], "-1"),
            (&["TTL", "missing:1"], "-2"),
            (&["HGET", "hash:7", "user"], "\"user-7\""),
            (&["HLEN", "hash:7"], "2"),
            (&["TYPE", "hash:7"], "hash"),
            (&["TYPE", "str:7"], "string"),
            (&["EXISTS", "db3:0"], "0"),
            (
                &["EXISTS", "str:0", "str:1", "missing:1", "hash:0", "ttl:0"],
                "4",
            ),
            // Redis counts a key named twice twice.
            (&["EXISTS", "str:5", "str:5"], "2"),
        ],
    );
    check(
        node,
        3,
        &[
            (&["GET", "shared"], "\"in database 3\""),
            (&["GET", "db3:29"], "\"three-29\""),
            (&["EXISTS", "str:0"], "0"),
            (&["DBSIZE"], &(NUM_DB3 + 1).to_string()),
        ],
    );
    let mut db3 = connect(node, 3);
    for index in 0..NUM_DB3 {
        let value: String = call(&mut db3, &["GET", &format!("db3:{index}")]);
        assert_eq!(value, format!("three-{index}"), "through {}", node.name);
    }
}

/// The keys of database 0 after `write_data_set`.
fn data_set_keys() -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = string_keys().into_iter().collect();
    keys.extend((0..NUM_HASHES).map(|index| format!("hash:{index}")));
    keys.extend((0..NUM_EXPIRING).map(|index| format!("ttl:{index}")));
    keys.insert("shared".to_string());
    keys
}

/// `SCAN` through every node returns every key of the cluster, once per database; a `MATCH`
/// pattern selects across partitions; `DBSIZE` agrees with it on every node.
fn scan_and_dbsize_agree(nodes: &[Scd], expected_db0: &BTreeSet<String>) {
    let expected_db3: BTreeSet<String> = (0..NUM_DB3)
        .map(|index| format!("db3:{index}"))
        .chain(["shared".to_string()])
        .collect();
    let expected_matching: BTreeSet<String> = expected_db0
        .iter()
        .filter(|key| key.starts_with("str:1"))
        .cloned()
        .collect();
    for node in nodes {
        assert_eq!(
            &cluster::scan_all(node, 0, None),
            expected_db0,
            "SCAN of database 0 through {}",
            node.name
        );
        assert_eq!(
            cluster::scan_all(node, 3, None),
            expected_db3,
            "SCAN of database 3 through {}",
            node.name
        );
        assert_eq!(
            cluster::scan_all(node, 0, Some("str:1*")),
            expected_matching,
            "SCAN MATCH str:1* through {}",
            node.name
        );
        let size: usize = call(&mut connect(node, 0), &["DBSIZE"]);
        assert_eq!(size, expected_db0.len(), "DBSIZE through {}", node.name);
        let keys: BTreeSet<String> = call(&mut connect(node, 0), &["KEYS", "hash:*"]);
        assert_eq!(keys.len(), NUM_HASHES, "KEYS hash:* through {}", node.name);
    }
}

fn keys_written_through_one_node_are_read_through_every_other(size: usize, args: &[&str]) {
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let cluster = cluster::start_settled(size, args);
    let nodes = &cluster.nodes;
    write_data_set(&nodes[0]);
    for node in nodes {
        read_data_set_through(node);
    }
    let mut expected = data_set_keys();
    scan_and_dbsize_agree(nodes, &expected);

    // DEL across partitions through the second node counts what it deleted, and every node
    // then misses those keys.
    let deleted: Vec<String> = (0..10).map(|index| format!("str:{index}")).collect();
    let mut del = vec!["DEL"];
    del.extend(deleted.iter().map(String::as_str));
    del.push("missing:2");
    let num_deleted: usize = call(&mut connect(&nodes[1], 0), &del);
    assert_eq!(num_deleted, deleted.len());
    for key in &deleted {
        expected.remove(key);
    }
    for node in nodes {
        let mut exists = vec!["EXISTS"];
        exists.extend(deleted.iter().map(String::as_str));
        let num_existing: usize = call(&mut connect(node, 0), &exists);
        assert_eq!(num_existing, 0, "deleted keys exist through {}", node.name);
        let values: Vec<Option<String>> =
            call(&mut connect(node, 0), &["MGET", "str:0", "str:9", "str:10"]);
        assert_eq!(
            values,
            [None, None, Some("value-10".to_string())],
            "through {}",
            node.name
        );
    }

    // RENAME across partitions (no hash tags: the names land in different partitions, except
    // with a chance of 1 in the partition count) through the last node: strings keep their
    // value and expiry, hashes their fields, in database 0 and in a SELECTed database.
    let renamer = &nodes[size - 1];
    check(
        renamer,
        0,
        &[
            (&["RENAME", "str:10", "renamed:10"], "OK"),
            (&["RENAME", "ttl:0", "renamed:ttl"], "OK"),
            (&["RENAME", "hash:0", "renamed:hash"], "OK"),
            (
                &["RENAME", "missing:3", "renamed:missing"],
                "ERR no such key",
            ),
        ],
    );
    check(renamer, 3, &[(&["RENAME", "db3:0", "renamed:db3"], "OK")]);
    for (old, new) in [
        ("str:10", "renamed:10"),
        ("ttl:0", "renamed:ttl"),
        ("hash:0", "renamed:hash"),
    ] {
        expected.remove(old);
        expected.insert(new.to_string());
    }
    for node in nodes {
        check(
            node,
            0,
            &[
                (&["GET", "renamed:10"], "\"value-10\""),
                (&["EXISTS", "str:10", "ttl:0", "hash:0"], "0"),
                (&["GET", "renamed:ttl"], "\"expiring\""),
                (&["HGET", "renamed:hash", "user"], "\"user-0\""),
                (&["EXISTS", "renamed:missing"], "0"),
            ],
        );
        let ttl: i64 = call(&mut connect(node, 0), &["TTL", "renamed:ttl"]);
        assert!(
            (TTL_SECONDS - 60..=TTL_SECONDS).contains(&ttl),
            "RENAME kept the expiry: TTL {ttl} through {}",
            node.name
        );
        check(
            node,
            3,
            &[
                (&["GET", "renamed:db3"], "\"three-0\""),
                (&["EXISTS", "db3:0"], "0"),
            ],
        );
    }
    for node in nodes {
        assert_eq!(
            cluster::scan_all(node, 0, None),
            expected,
            "SCAN after DEL and RENAME through {}",
            node.name
        );
        let size: usize = call(&mut connect(node, 0), &["DBSIZE"]);
        assert_eq!(
            size,
            expected.len(),
            "DBSIZE after DEL and RENAME through {}",
            node.name
        );
    }
}

#[test]
fn three_nodes_without_backups_serve_every_key_through_every_node() {
    keys_written_through_one_node_are_read_through_every_other(3, &["--backups", "0"]);
}

#[test]
fn five_nodes_at_the_defaults_serve_every_key_through_every_node() {
    keys_written_through_one_node_are_read_through_every_other(5, &[]);
}
