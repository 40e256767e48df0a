//! The f32 matrix-product peak of this machine through the `gemm` crate (the kernels sd-resnet's
//! convolution calls, AVX-512 where the CPU has it), on the rayon pool: the yardstick of a
//! training step's GFLOP/s in docs/benchmarks.md.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p sd-resnet --example gemm_peak -- [N ...]`
//! times `C = A B` with square `N x N` row-major operands (default 512, 1024, 2048, 4096) and
//! prints the best and the median of 5 runs per size as one JSON object per line.

use std::time::Instant;

#[allow(unsafe_code)]
fn product(n: usize, a: &[f32], b: &[f32], c: &mut [f32], threads: usize) {
    assert!(a.len() >= n * n && b.len() >= n * n && c.len() >= n * n);
    // SAFETY: all three are n x n row-major inside their slices (asserted), `c` is a unique
    // borrow and is only written (`read_dst == false`).
    unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            n as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        );
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("sizes are positive integers"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![512, 1024, 2048, 4096]
    } else {
        sizes
    };
    let threads = rayon::current_num_threads();
    for n in sizes {
        let a: Vec<f32> = (0..n * n)
            .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
            .collect();
        let b: Vec<f32> = (0..n * n)
            .map(|i| ((i % 89) as f32 - 44.0) / 89.0)
            .collect();
        let mut c = vec![0f32; n * n];
        product(n, &a, &b, &mut c, threads); // warm-up
        let mut seconds: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                product(n, &a, &b, &mut c, threads);
                start.elapsed().as_secs_f64()
            })
            .collect();
        seconds.sort_by(f64::total_cmp);
        let flop = 2.0 * (n as f64).powi(3);
        println!(
            "{{\"n\": {n}, \"threads\": {threads}, \"best_gflops\": {:.1}, \"median_gflops\": {:.1}}}",
            flop / seconds[0] / 1e9,
            flop / seconds[2] / 1e9
        );
    }
}
