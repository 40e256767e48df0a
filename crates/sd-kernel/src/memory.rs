//! Refusing problems that cannot fit in memory before allocating them.
//!
//! A dense `n x n` matrix of `f64` takes `8 n^2` bytes; at `n = 50_000` that is 20 GB. Rather than
//! let the allocator abort the process halfway through, [`crate::SelfDistillation::new`] estimates
//! its peak and compares it with what the operating system reports available.

use crate::error::{Error, Result};

/// Bytes of `matrices` dense `n x n` matrices of `f64`: `matrices * 8 n^2`.
pub fn dense_matrices_bytes(n: usize, matrices: usize) -> u64 {
    (n as u64)
        .saturating_mul(n as u64)
        .saturating_mul(8)
        .saturating_mul(matrices as u64)
}

/// Memory available to this process in bytes, if the system says: Linux's `MemAvailable`, lowered
/// to the control group's limit (`memory.max - memory.current`, cgroup v2) when there is one.
/// `None` elsewhere, and then no check is made.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let mut available = available_kib.saturating_mul(1024);
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if let (Some(limit), Some(current)) = (read("memory.max"), read("memory.current")) {
        available = available.min(limit.saturating_sub(current));
    }
    Some(available)
}

/// `Ok` when `matrices` dense `n x n` matrices fit in `available` bytes (always, when `None`).
pub fn check_fits(n: usize, matrices: usize, available: Option<u64>) -> Result<()> {
    let needed = dense_matrices_bytes(n, matrices);
    match available {
        Some(available) if needed > available => Err(Error::TooLarge {
            n,
            matrices,
            needed_mib: needed.div_ceil(1 << 20),
            available_mib: available >> 20,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_with_the_numbers() {
        assert!(check_fits(1000, 3, Some(24_000_000)).is_ok());
        let err = check_fits(100_000, 3, Some(24 << 30)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "problem too large: 100000 training points need about 228882 MiB (3 matrices of \
             100000 x 100000 f64 at 8 n^2 bytes each, plus workspace) but only 24576 MiB are \
             available"
        );
        assert!(check_fits(100_000, 3, None).is_ok());
    }

    #[test]
    fn this_machine_reports_some_memory() {
        if cfg!(target_os = "linux") {
            assert!(available_bytes().unwrap() > 1 << 20);
        }
    }
}
