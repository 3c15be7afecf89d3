//! CPU hints for the bulk readers. Compiled into unit-test builds too (it
//! calls nothing of collectd's), from lib.rs; it lives under src/host with
//! the other unsafe code.

/// Asks the CPU to start loading the cache line at `p` into its caches: a
/// hint that changes no result. The bulk readers visit hundreds of
/// thousands of small allocations in an order unrelated to their
/// addresses; asking for the next ones a few iterations ahead hides most of
/// the memory latency.
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no effect on memory, whatever
    // the address; SSE (which has PREFETCHT0) is part of x86_64's baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
