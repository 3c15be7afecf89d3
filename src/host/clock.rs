//! The write path's clock. Compiled into unit-test builds too (it calls
//! nothing of collectd's), from lib.rs; it lives under src/host with the
//! other unsafe code.

/// Nanoseconds of CLOCK_MONOTONIC_COARSE: monotonic, a few milliseconds
/// coarse (the kernel's tick), and read from the vDSO without the TSC, so
/// cheaper than `Instant::now()` (about 20 instructions against 80). The
/// store stamps every value update with it, for expiry (seconds) and
/// /v1/health's "last value" age.
pub fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the valid pointer it is
    // given; CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn coarse_clock_is_monotonic_and_moves() {
        let a = super::monotonic_coarse_ns();
        assert!(a > 0);
        let start = std::time::Instant::now();
        let mut b = a;
        while b == a && start.elapsed() < std::time::Duration::from_secs(5) {
            b = super::monotonic_coarse_ns();
            assert!(b >= a);
        }
        assert!(b > a, "the coarse clock did not move in 5 s");
    }
}
