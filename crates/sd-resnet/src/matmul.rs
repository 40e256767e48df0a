//! The matrix products of the convolutions (im2col's, Winograd's, the dense and pointwise
//! paths): [`View`]s of matrices in slices, one call into the `gemm` crate (candle's own matrix
//! product, with its AVX-512 kernels) behind bounds assertions, and the scratch buffers the
//! products reuse between calls ([`WORKSPACE`]).
//!
//! The call into `gemm` is one of the crate's `unsafe` sites (docs/design.md lists them all):
//! [`product_raw`] asserts that every operand's strided extent lies inside its slice and leaves
//! the caller one obligation, that no one else touches the elements it writes.

use std::sync::Mutex;

/// Scratch buffers kept between calls (they are large: tens of MiB at batch 128).
///
/// A call takes buffers out and puts them back, so concurrent calls each get their own.
pub(crate) struct Workspace {
    free: Mutex<Vec<Vec<f32>>>,
}

pub(crate) static WORKSPACE: Workspace = Workspace {
    free: Mutex::new(Vec::new()),
};

impl Workspace {
    /// A buffer of at least `len` floats, contents unspecified: callers use its first `len`.
    pub(crate) fn take(&self, len: usize) -> Vec<f32> {
        let mut free = self.free.lock().expect("workspace lock");
        // Prefer the smallest buffer that is large enough.
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        let mut buffer = match best {
            Some(i) => free.swap_remove(i),
            None => free.pop().unwrap_or_default(),
        };
        drop(free);
        // A buffer never shrinks, so a smaller call followed by a larger one does not refill
        // it. One too small is replaced, not grown: growing would copy its old contents.
        if buffer.len() < len {
            buffer = vec![0.0; len];
        }
        buffer
    }

    pub(crate) fn give(&self, buffer: Vec<f32>) {
        let mut free = self.free.lock().expect("workspace lock");
        // Three buffers serve a backward pass; a few more cover concurrent calls.
        if free.len() < 6 {
            free.push(buffer);
        }
    }
}

/// A matrix in a slice: element `(r, c)` at `r * row_stride + c * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a> View<'a> {
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    pub(crate) fn col_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// The largest index the view reaches lies inside its slice.
    pub(crate) fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// Row-major or column-major destination of [`ordered_product`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    RowMajor,
    ColMajor,
}

/// `dst (+)= lhs rhs`, with `dst` an `lhs.rows x rhs.cols` matrix stored in `order`;
/// accumulates when `accumulate`. Through the `gemm` crate (candle's own matrix product, with
/// its AVX-512 kernels), parallel over the rayon pool for large products.
///
/// Which operand layouts and destination order a product gets was measured, not guessed: see
/// the conv section of docs/benchmarks.md.
pub(crate) fn ordered_product(
    dst: &mut [f32],
    order: Order,
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
) {
    let (m, n) = (lhs.rows, rhs.cols);
    let (dst_rs, dst_cs) = match order {
        Order::RowMajor => (n, 1),
        Order::ColMajor => (1, m),
    };
    product(dst, (dst_rs, dst_cs), lhs, rhs, accumulate, true);
}

/// `dst (+)= lhs rhs` with `dst`'s element `(r, c)` at `r * dst_rs + c * dst_cs`; over the
/// rayon pool when `parallel` and the product is large enough. `gemm` splits the rows and
/// columns of `dst` between threads, never the inner sum, so the result does not depend on it.
#[allow(unsafe_code)]
pub(crate) fn product(
    dst: &mut [f32],
    strides: (usize, usize),
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
    parallel: bool,
) {
    // SAFETY: `dst` is a unique borrow of `dst.len()` floats.
    unsafe {
        product_raw(
            (dst.as_mut_ptr(), dst.len()),
            strides,
            lhs,
            rhs,
            accumulate,
            parallel,
        )
    }
}

/// [`product`] into the `len` floats from `dst`.
///
/// # Safety
/// `dst..dst + len` is valid for writes and, while this runs, no other reference reads or
/// writes the elements the product writes (`(r, c)` at `r * dst_rs + c * dst_cs`); other
/// threads may write other elements of the range.
#[allow(unsafe_code)]
pub(crate) unsafe fn product_raw(
    (dst, len): (*mut f32, usize),
    (dst_rs, dst_cs): (usize, usize),
    lhs: View<'_>,
    rhs: View<'_>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    assert_eq!(rhs.rows, k, "matmul inner dimensions");
    assert!(
        lhs.in_bounds() && rhs.in_bounds(),
        "matmul operand out of bounds"
    );
    assert!(
        m == 0 || n == 0 || (m - 1) * dst_rs + (n - 1) * dst_cs < len,
        "matmul destination too small"
    );
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 && m * n * k > 1 << 15 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `gemm` reads `lhs` at `r * rs + c * cs` for `r < m`, `c < k` and `rhs` likewise
    // for `k x n`, and writes `dst` for `m x n` with the strides given: all inside their slices
    // and `dst`'s range (asserted above). The caller guarantees that no one else touches the
    // elements written, so they alias neither operand. With `read_dst == false` the destination
    // is only written (`dst := 1 * lhs rhs`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
