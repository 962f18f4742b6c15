//! The store alone under random point operations, as a diagnostic for the key index: 100 000
//! keys of the form redis-benchmark uses (`key:<12 digits>`) with 512-byte values over the
//! default 1 024 partitions, then 2 000 000 random GETs and as many SETs, each key built in a
//! fresh buffer as a request's would be. Prints the best of 9 passes in nanoseconds per
//! operation. Not a goal's benchmark (those are in `bench/`, against a reference server):
//!
//!     cargo run --release -p store --example lookup

use std::time::Instant;

use bytes::Bytes;
use store::{Op, SetCondition, SetExpiry, Store, StoreConfig};

const NUM_KEYS: u64 = 100_000;
const VALUE_BYTES: usize = 512;
const OPS_PER_PASS: u32 = 2_000_000;
const PASSES: u32 = 9;
const NOW_MS: u64 = 1_000_000;

fn key(index: u64) -> Bytes {
    Bytes::copy_from_slice(format!("key:{index:012}").as_bytes())
}

fn set(key: Bytes, value: &Bytes) -> Op {
    Op::Set {
        key,
        value: value.clone(),
        expiry: SetExpiry::Never,
        condition: SetCondition::Always,
        return_old: false,
        flags: 0,
    }
}

/// xorshift64: the same sequence of keys in every run.
struct Keys(u64);

impl Keys {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % NUM_KEYS
    }
}

fn main() {
    let store = Store::new(StoreConfig::default()).expect("the default configuration is valid");
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    for index in 0..NUM_KEYS {
        let key = key(index);
        let partition = store.partition_of(&key);
        store
            .partition(partition)
            .execute(0, set(key, &value), NOW_MS);
    }
    let mut keys = Keys(0x1234_5678_9abc_def1);
    for name in ["GET", "SET"] {
        let mut best_ns = f64::MAX;
        for _ in 0..PASSES {
            let started = Instant::now();
            for _ in 0..OPS_PER_PASS {
                let key = key(keys.next());
                let partition = store.partition_of(&key);
                let op = if name == "GET" {
                    Op::Get { key }
                } else {
                    set(key, &value)
                };
                std::hint::black_box(store.partition(partition).execute(0, op, NOW_MS));
            }
            best_ns = best_ns.min(started.elapsed().as_nanos() as f64 / f64::from(OPS_PER_PASS));
        }
        println!("{name}: {best_ns:.0} ns per operation (best of {PASSES} passes)");
    }
}
