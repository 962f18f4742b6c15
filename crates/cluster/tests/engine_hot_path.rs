//! The local GET/SET path through `Engine::execute`: it allocates nothing beyond what the store
//! allocates itself (checked with a counting allocator), and its cost is printed as ns/op next to
//! the store's own (printed only: timing is not asserted).

mod engine_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use bytes::Bytes;
use cluster::engine::Execution;
use engine_support::{Cluster, PARTITIONS, set_op};
use store::Op;

/// Counts this thread's allocations (tests run on several threads at once).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations and ns per call of `f`, over `count` calls.
fn measure(count: u64, mut f: impl FnMut(u64)) -> (u64, f64) {
    let before = allocations();
    let start = Instant::now();
    for index in 0..count {
        f(index);
    }
    let elapsed = start.elapsed();
    (
        allocations() - before,
        elapsed.as_nanos() as f64 / count as f64,
    )
}

#[test]
fn the_local_path_allocates_only_what_the_store_allocates() {
    let cluster = Cluster::formed_pair();
    let a = 0;
    let primary_of = |node: usize, replicated: bool| {
        (0..PARTITIONS)
            .find(|&p| {
                cluster.nodes[node].engine.record(p).is_some_and(|r| {
                    r.primary == cluster.nodes[node].member && r.backups.is_empty() != replicated
                })
            })
            .expect("a partition of that kind")
    };
    let partition = primary_of(a, true);
    let key = (0..)
        .map(|index| format!("hot:{index}"))
        .find(|key| store::partition_of(key.as_bytes(), PARTITIONS) == partition)
        .expect("a key of the partition");
    let value = "x".repeat(512);
    let engine = &cluster.nodes[a].engine;
    let store = &cluster.nodes[a].store;
    cluster.nodes[a].host.discard_frames();
    let now_ms = cluster.now_ms;
    let set = set_op(&key, &value);
    let get = Op::Get {
        key: Bytes::from(key.clone()),
    };
    // Warm up: the key exists, shared handles are created, queues have their capacity.
    for _ in 0..1_000 {
        engine.execute(partition, 0, set.clone(), now_ms);
        engine.execute(partition, 0, get.clone(), now_ms);
    }
    let count = 20_000;
    let (engine_set_allocations, engine_set_ns) = measure(count, |_| {
        let execution = engine.execute(partition, 0, set.clone(), now_ms);
        assert!(matches!(execution, Execution::AwaitAcks { .. }));
    });
    let (store_set_allocations, store_set_ns) = measure(count, |_| {
        store.partition(partition).execute(0, set.clone(), now_ms);
    });
    let (engine_get_allocations, engine_get_ns) = measure(count, |_| {
        let execution = engine.execute(partition, 0, get.clone(), now_ms);
        assert!(matches!(execution, Execution::Done(_)));
    });
    let (store_get_allocations, store_get_ns) = measure(count, |_| {
        store.partition(partition).execute(0, get.clone(), now_ms);
    });
    println!(
        "replicated SET of 512 bytes: engine {engine_set_ns:.0} ns/op, store alone {store_set_ns:.0} ns/op; \
         GET: engine {engine_get_ns:.0} ns/op, store alone {store_get_ns:.0} ns/op (debug build unless --release)"
    );
    println!(
        "allocations per op: SET engine {:.2} store {:.2}; GET engine {:.2} store {:.2}",
        engine_set_allocations as f64 / count as f64,
        store_set_allocations as f64 / count as f64,
        engine_get_allocations as f64 / count as f64,
        store_get_allocations as f64 / count as f64,
    );
    assert_eq!(engine_get_allocations, store_get_allocations);
    assert_eq!(engine_set_allocations, store_set_allocations);
}
