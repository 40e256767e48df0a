//! Shared plumbing of this crate's CPU kernels.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout};

/// The f32 values of a contiguous tensor's CPU storage; an error naming `op` otherwise.
pub(crate) fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let (Some((start, end)), CpuStorage::F32(data)) = (layout.contiguous_offsets(), storage) else {
        candle_core::bail!("{op} takes contiguous f32 tensors")
    };
    Ok(&data[start..end])
}

/// Runs `f` compiled for the widest instruction set this CPU has (AVX-512 or AVX2 with FMA on
/// x86-64, chosen at run time through [`pulp`]; the baseline elsewhere), so that the compiler
/// vectorizes our element-wise loops with wide registers: the crate itself is built for the
/// baseline (SSE2 on x86-64), where an f32-to-f64 sum runs one value per instruction.
///
/// Rust never contracts `a * b + c` into a fused multiply-add, so the results are the same bit
/// for bit on every instruction set. `f` must be inlined into the dispatched function to profit:
/// call this around a plane's or a chunk's loop, inside any rayon closure, not around one.
#[inline(always)]
pub(crate) fn wide<R>(f: impl FnOnce() -> R) -> R {
    struct Op<F>(F);
    impl<R, F: FnOnce() -> R> pulp::WithSimd for Op<F> {
        type Output = R;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> R {
            (self.0)()
        }
    }
    pulp::Arch::new().dispatch(Op(f))
}

/// `f(scratch, i, block)` for each block `i` of `block` floats of `values`, in parallel over the
/// rayon pool, each call under [`wide`]; `scratch` comes from `init`, one per rayon job. The
/// shape of every per-channel and per-plane kernel of the Winograd transforms: pass an
/// `#[inline(always)]` closure that calls a kernel of values, as [`wide`] asks.
#[inline(always)]
pub(crate) fn wide_blocks<S>(
    values: &mut [f32],
    block: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) {
    use rayon::prelude::*;
    values
        .par_chunks_mut(block)
        .enumerate()
        .for_each_init(init, |scratch, (i, block)| {
            wide(
                #[inline(always)]
                || f(scratch, i, block),
            )
        });
}

/// Independent f64 accumulators of a sum: a single running sum is one chain of dependent
/// additions (4 cycles each), `LANES` of them vectorize and pipeline.
pub(crate) const LANES: usize = 8;

/// `sum f(v)` over `values` in f64, accumulated in [`LANES`] interleaved partial sums (added in
/// a fixed order, so the result does not depend on threads or chunking). Vectorizes under
/// [`wide`].
#[inline(always)]
pub(crate) fn lane_sum(values: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(f64::from(v));
        }
    }
    rest.iter()
        .fold(acc.iter().sum::<f64>(), |s, &v| s + f(f64::from(v)))
}

/// Floats per task of [`zeros`], and below which it leaves the zeroing to `calloc` on the
/// calling thread.
const PARALLEL_ZEROS: usize = 1 << 15;

/// `len` zeros, for an output every kernel then overwrites: the zeros are written by the rayon
/// pool in chunks, where `vec![0.0; len]` has one thread `memset` an output of up to tens of
/// MiB (a recycled heap block, so `calloc` cannot skip it) while the other core waits. Where
/// the kernel writes its output in chunks, [`filled`] does better.
pub(crate) fn zeros(len: usize) -> Vec<f32> {
    if len < PARALLEL_ZEROS {
        return vec![0.0; len];
    }
    filled(len, PARALLEL_ZEROS, |_, _| {})
}

/// A vector of `len` floats made by `fill(i, chunk)` for its chunks of `chunk` floats (the last
/// may be shorter), in parallel over the rayon pool. Each task zeroes its chunk just before
/// `fill` writes it, so the zeros cost a pass over a chunk in the core's cache rather than one
/// over the whole output in memory; values `fill` leaves alone are 0.
pub(crate) fn filled(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut values = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, part)| fill(i, zeroed(part)));
    // SAFETY: every task above wrote each element of its chunk, and the chunks cover the first
    // `len` elements (its capacity is `len`).
    #[allow(unsafe_code)]
    unsafe {
        values.set_len(len)
    };
    values
}

/// `part` with each value written 0, as floats.
pub(crate) fn zeroed(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for value in part.iter_mut() {
        value.write(0.0);
    }
    // SAFETY: every element was initialized just above, and `MaybeUninit<f32>` has the layout
    // of `f32`.
    #[allow(unsafe_code)]
    unsafe {
        &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32])
    }
}

/// A uniquely borrowed buffer whose disjoint parts tasks on the rayon pool write: its address
/// and length, which a raw pointer alone could not hand to other threads (it is not `Sync`).
/// The one place this crate shares a mutable buffer between tasks (Winograd's parallel element
/// products, BatchNorm's backward by channel).
pub(crate) struct DisjointParts<'a, T> {
    start: *mut T,
    len: usize,
    _buffer: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: a `DisjointParts` only gives out raw addresses and, through the unsafe `part`, slices
// whose callers promise never to overlap: two threads then never touch the same element. The
// buffer is borrowed uniquely for `'a`, so nothing else reads or writes it meanwhile, and `T:
// Send` lets its values be written from another thread.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for DisjointParts<'_, T> {}

impl<'a, T> DisjointParts<'a, T> {
    pub(crate) fn new(buffer: &'a mut [T]) -> Self {
        DisjointParts {
            start: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: std::marker::PhantomData,
        }
    }

    /// The address of element `at` and how many elements the buffer has from there on (for
    /// [`crate::matmul::product_raw`]).
    pub(crate) fn tail(&self, at: usize) -> (*mut T, usize) {
        assert!(at <= self.len, "part inside the buffer");
        // `wrapping_add` keeps this safe; `at <= len` keeps it inside the allocation.
        (self.start.wrapping_add(at), self.len - at)
    }

    /// Elements `at..at + len`.
    ///
    /// # Safety
    /// No other slice of the buffer that overlaps this one (from this call or another) is used
    /// while this one is.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn part(&self, at: usize, len: usize) -> &'a mut [T] {
        assert!(at + len <= self.len, "part inside the buffer");
        // SAFETY: inside the uniquely borrowed buffer (asserted); the caller guarantees that no
        // overlapping slice is in use.
        unsafe { std::slice::from_raw_parts_mut(self.start.add(at), len) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zeros_are_zeros_of_the_length_asked() {
        for len in [
            0,
            1,
            super::PARALLEL_ZEROS - 1,
            super::PARALLEL_ZEROS,
            100_003,
        ] {
            let values = super::zeros(len);
            assert_eq!(values.len(), len);
            assert!(values.iter().all(|v| v.to_bits() == 0));
        }
    }
}
