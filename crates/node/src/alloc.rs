//! A global allocator wrapper that counts the bytes the process holds, so `INFO memory`'s
//! `used_memory` is what was really allocated (as Redis' zmalloc counts). The binary installs it
//! with `#[global_allocator]`; a program that does not (tests) reads 0 and INFO falls back to the
//! store's own accounting.
//!
//! Each thread counts in a thread-local cell and adds to the process-wide total only when its
//! count has moved by [`FLUSH_BYTES`]: a shared atomic touched by every allocation of every thread
//! would bounce its cache line between cores several times per command. The total is therefore
//! exact to within `FLUSH_BYTES` per thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

/// Bytes currently allocated through [`CountingAllocator`], minus what threads have not flushed.
static ALLOCATED_BYTES: AtomicI64 = AtomicI64::new(0);

/// A thread's unflushed count is added to the total once it moves this far from zero.
const FLUSH_BYTES: i64 = 256 * 1024;

thread_local! {
    /// Bytes this thread allocated (positive) or freed (negative) since it last flushed. A
    /// `const`-initialised `Cell` of a plain integer: no lazy initialisation and no destructor, so
    /// using it inside the allocator cannot allocate or recurse.
    static UNFLUSHED_BYTES: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    // `try_with` fails only while the thread is being torn down; count straight into the total
    // then.
    let flushed = UNFLUSHED_BYTES.try_with(|unflushed| {
        let value = unflushed.get() + delta;
        if value.abs() >= FLUSH_BYTES {
            unflushed.set(0);
            ALLOCATED_BYTES.fetch_add(value, Ordering::Relaxed);
        } else {
            unflushed.set(value);
        }
    });
    if flushed.is_err() {
        ALLOCATED_BYTES.fetch_add(delta, Ordering::Relaxed);
    }
}

/// The system allocator, counting.
#[derive(Debug, Default)]
pub struct CountingAllocator;

// SAFETY: every method forwards to `System` with the same arguments and only adds bookkeeping,
// which neither allocates nor touches the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            count(layout.size() as i64);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            count(layout.size() as i64);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` was allocated by `System` with `layout` (through this allocator).
        unsafe { System.dealloc(pointer, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        let new_pointer = unsafe { System.realloc(pointer, layout, new_size) };
        if !new_pointer.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        new_pointer
    }
}

/// Bytes currently allocated (to within 256 KiB per thread), or 0 when [`CountingAllocator`] is
/// not the global allocator.
pub fn allocated_bytes() -> u64 {
    u64::try_from(ALLOCATED_BYTES.load(Ordering::Relaxed)).unwrap_or(0)
}
