//! Hints that ask the CPU to start loading memory a coming step will read, so that the cache
//! miss overlaps other work instead of stalling it. Hints only: they change nothing in memory,
//! never fault, and are no-ops on architectures other than x86_64.

use bytes::Bytes;

/// The most cache lines of one value [`value_lines`] asks for: the hardware prefetcher follows a
/// sequential copy on its own once it has started, so the first lines matter most.
const VALUE_LINES_MAX: usize = 16;

const CACHE_LINE_BYTES: usize = 64;

/// Asks for the allocator's header of the block `bytes` points into: a SET that replaces a value
/// frees the old one, and glibc's `free` first reads the size word just before the block, which
/// for a value written long ago is a cache miss (11 % of scd's CPU under `redis-benchmark -P 16`
/// SETs before this hint).
pub(crate) fn allocation_header(bytes: &Bytes) {
    line(bytes.as_ptr().wrapping_sub(8));
}

/// Asks for the first cache lines of `bytes` (at most [`VALUE_LINES_MAX`]) and for its allocation
/// header: what a GET copies into its reply, or what a SET frees.
pub(crate) fn value_lines(bytes: &Bytes) {
    allocation_header(bytes);
    let start = bytes.as_ptr();
    let num_lines = bytes.len().div_ceil(CACHE_LINE_BYTES).min(VALUE_LINES_MAX);
    for index in 0..num_lines {
        line(start.wrapping_add(index * CACHE_LINE_BYTES));
    }
}

/// Asks for the cache line holding `address`.
pub(crate) fn line(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has; a prefetch neither reads into
    // the program nor faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
