//! A dense matrix whose pages are first touched by the threads that fill it.

use std::ops::Index;

use faer::{Mat, MatMut, MatRef};
use rayon::prelude::*;

/// A dense column-major `f64` matrix in one `Vec`, for the `n x n` matrices of this crate.
///
/// It is zero-initialised by the allocator (`calloc`), which for large sizes maps pages that the
/// operating system zeroes when they are first written. The parallel loops that fill the matrix
/// then take those page faults on every thread, once. faer's `Mat::zeros` writes zeros column by
/// column on one thread first, which took as long as building the whole RBF kernel matrix this
/// way (docs/benchmarks.md, "How the kernel build got here"). faer's algorithms work on it through
/// [`DenseMatrix::as_ref`] and [`DenseMatrix::as_mut`].
#[derive(Debug, PartialEq)]
pub struct DenseMatrix {
    data: Vec<f64>,
    nrows: usize,
    ncols: usize,
}

impl DenseMatrix {
    /// `|K|_inf`, the largest absolute row sum (column sum, for the symmetric kernel matrices
    /// this holds).
    pub fn infinity_norm(&self) -> f64 {
        (0..self.ncols())
            .into_par_iter()
            .map(|j| self.col(j).iter().map(|v| v.abs()).sum::<f64>())
            .reduce(|| 0.0, f64::max)
    }

    /// An `nrows x ncols` matrix of zeros.
    pub fn zeros(nrows: usize, ncols: usize) -> Self {
        Self {
            data: vec![0.0; nrows * ncols],
            nrows,
            ncols,
        }
    }

    /// A copy of any faer matrix view.
    pub fn from_ref(matrix: MatRef<'_, f64>) -> Self {
        let mut copy = Self::zeros(matrix.nrows(), matrix.ncols());
        copy.par_cols_mut().enumerate().for_each(|(j, column)| {
            for (to, from) in column.iter_mut().zip(matrix.col(j).iter()) {
                *to = *from;
            }
        });
        copy
    }

    /// Rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// A faer view.
    pub fn as_ref(&self) -> MatRef<'_, f64> {
        MatRef::from_column_major_slice(&self.data, self.nrows, self.ncols)
    }

    /// A mutable faer view.
    pub fn as_mut(&mut self) -> MatMut<'_, f64> {
        MatMut::from_column_major_slice_mut(&mut self.data, self.nrows, self.ncols)
    }

    /// Column `j` as a slice.
    pub fn col(&self, j: usize) -> &[f64] {
        &self.data[j * self.nrows..(j + 1) * self.nrows]
    }

    /// The columns as mutable slices, in parallel.
    pub fn par_cols_mut(&mut self) -> impl IndexedParallelIterator<Item = &mut [f64]> {
        self.data.par_chunks_mut(self.nrows.max(1))
    }

    /// Swaps columns `a` and `b`.
    pub(crate) fn swap_cols(&mut self, a: usize, b: usize) {
        let (low, high) = (a.min(b), a.max(b));
        if low == high {
            return;
        }
        let n = self.nrows;
        let (left, right) = self.data.split_at_mut(high * n);
        left[low * n..(low + 1) * n].swap_with_slice(&mut right[..n]);
    }

    /// Copies the strict lower triangle onto the upper one (`self[(i, j)] = self[(j, i)]` for
    /// `i < j`) of a square matrix, which is then exactly symmetric. Blocked: each source column
    /// is read as a contiguous stretch.
    pub(crate) fn mirror_lower(&mut self) {
        /// Compiled for the best instruction set: after faer's AVX-512 kernels, moves in the
        /// baseline's SSE encoding pay a transition penalty (docs/benchmarks.md, "Real images:
        /// Fashion-MNIST").
        struct Mirror<'a>(&'a mut DenseMatrix);
        impl pulp::WithSimd for Mirror<'_> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _simd: S) {
                self.0.mirror_lower_scalar();
            }
        }
        pulp::Arch::new().dispatch(Mirror(self));
    }

    #[inline(always)]
    fn mirror_lower_scalar(&mut self) {
        const B: usize = 64;
        let n = self.nrows;
        debug_assert_eq!(n, self.ncols);
        for j0 in (0..n).step_by(B) {
            let width = B.min(n - j0);
            let (left, right) = self.data.split_at_mut(j0 * n);
            // Rows j0..j0 + width of the columns before the block, onto the block's columns.
            for i in 0..j0 {
                let source = &left[i * n + j0..i * n + j0 + width];
                for (b, &value) in source.iter().enumerate() {
                    right[b * n + i] = value;
                }
            }
            // Inside the diagonal block.
            for b in 1..width {
                for a in 0..b {
                    right[b * n + j0 + a] = right[a * n + j0 + b];
                }
            }
        }
    }

    /// A copy, made in parallel.
    pub fn par_clone(&self) -> Self {
        let mut copy = Self::zeros(self.nrows, self.ncols);
        copy.par_cols_mut()
            .zip(self.data.par_chunks(self.nrows.max(1)))
            .for_each(|(to, from)| to.copy_from_slice(from));
        copy
    }

    /// The matrix as a faer `Mat` (a copy).
    pub fn to_mat(&self) -> Mat<f64> {
        self.as_ref().to_owned()
    }
}

impl Index<(usize, usize)> for DenseMatrix {
    type Output = f64;

    fn index(&self, (i, j): (usize, usize)) -> &f64 {
        assert!(i < self.nrows && j < self.ncols, "index out of bounds");
        &self.data[j * self.nrows + i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_copies_and_swaps() {
        let mut m = DenseMatrix::zeros(3, 4);
        m.par_cols_mut().enumerate().for_each(|(j, column)| {
            for (i, value) in column.iter_mut().enumerate() {
                *value = (10 * i + j) as f64;
            }
        });
        assert_eq!(m[(2, 3)], 23.0);
        assert_eq!(m.as_ref()[(1, 2)], 12.0);
        assert_eq!(m.col(1), &[1.0, 11.0, 21.0]);
        let copy = m.par_clone();
        assert_eq!(copy, m);
        m.swap_cols(3, 0);
        assert_eq!(m.col(0), &[3.0, 13.0, 23.0]);
        assert_eq!(m.col(3), &[0.0, 10.0, 20.0]);
        assert_eq!(m.to_mat()[(2, 0)], 23.0);
        assert_eq!(DenseMatrix::from_ref(m.as_ref()), m);
        assert_eq!(DenseMatrix::zeros(0, 5).par_clone().ncols(), 5);
    }
}
