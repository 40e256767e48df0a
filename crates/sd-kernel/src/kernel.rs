//! Kernels and their Gram matrices.
//!
//! A [`Kernel`] evaluates `k(a, b)` for two points of the same dimension. [`gram_matrix`] builds the
//! symmetric `n x n` matrix `K[i, j] = k(x_i, x_j)` in parallel, and [`cross_gram_matrix`] the
//! `m x n` matrix between new points and training points.

use std::fmt;

use faer::MatRef;
use rayon::prelude::*;

use crate::dense::DenseMatrix;
use crate::error::{Error, Result};

/// Points `x_1, ..., x_n` in `d` dimensions, stored twice: row-major (each point one slice, for
/// [`Kernel::eval`]) and feature-major (each coordinate one contiguous slice over the points, for
/// loops that vectorise across points).
#[derive(Debug, Clone)]
pub struct Points {
    n: usize,
    d: usize,
    rows: Vec<f64>,
    features: Vec<f64>,
}

impl Points {
    /// The rows of `x` (`n x d`).
    pub fn new(x: MatRef<'_, f64>) -> Self {
        let (n, d) = (x.nrows(), x.ncols());
        let mut rows = vec![0.0; n * d];
        let mut features = vec![0.0; n * d];
        for l in 0..d {
            for (i, &value) in x.col(l).iter().enumerate() {
                rows[i * d + l] = value;
                features[l * n + i] = value;
            }
        }
        Self {
            n,
            d,
            rows,
            features,
        }
    }

    /// Number of points `n`.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Point `i`, `d` values.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.rows[i * self.d..(i + 1) * self.d]
    }

    /// Coordinate `l` of every point, `n` values.
    pub fn feature(&self, l: usize) -> &[f64] {
        &self.features[l * self.n..(l + 1) * self.n]
    }
}

/// A positive semi-definite kernel `k(a, b)`.
///
/// Implementations must be symmetric, bitwise: `eval(a, b) == eval(b, a)` exactly, as any formula
/// that treats the two points alike is (`(a - b)^2 == (b - a)^2`, `a * b == b * a` in floating
/// point). [`gram_matrix`] computes both triangles and relies on it for an exactly symmetric matrix.
pub trait Kernel: Send + Sync {
    /// `k(a, b)` for two points given as slices of the same length `d`.
    fn eval(&self, a: &[f64], b: &[f64]) -> f64;

    /// Short lower-case name, as the command line spells it: `rbf`, `laplacian`, `linear`, `poly`.
    fn name(&self) -> &'static str;

    /// `out[i] = k(points.row(start + i), y)` for every `i < out.len()`: a stretch of one column of
    /// a Gram matrix, which is how [`gram_matrix`] and [`cross_gram_matrix`] call the kernel.
    ///
    /// The default calls [`Kernel::eval`] per point. [`Rbf`] and [`Laplacian`] override it with
    /// loops that vectorise across points (AVX-512 or AVX2, chosen at run time) and give bitwise
    /// the values of their `eval`; an override must keep that property.
    fn eval_rows(&self, points: &Points, start: usize, y: &[f64], out: &mut [f64]) {
        for (i, value) in out.iter_mut().enumerate() {
            *value = self.eval(points.row(start + i), y);
        }
    }

    /// The kernel as a function of inner products, where it is one ([`Rbf`], [`Linear`],
    /// [`Polynomial`]): [`gram_matrix`] and [`cross_gram_matrix`] then take all inner products in
    /// one matrix product (GEMM) on inputs of [`GEMM_MIN_FEATURES`] dimensions or more. `None`
    /// (the default) always evaluates point by point.
    fn inner_product_form(&self) -> Option<InnerProductForm> {
        None
    }
}

/// From this many input dimensions on, [`gram_matrix`] and [`cross_gram_matrix`] compute kernels
/// with an [`InnerProductForm`] from one matrix product of the inputs. With `d` dimensions a
/// point-by-point Gram matrix costs `n^2 d` scalar operations in loops that vectorise over points
/// only; the product runs at the machine's GEMM rate (several times faster on images:
/// docs/benchmarks.md, "Figures behind the code's choices"). The values then differ from [`Kernel::eval`]'s in the last bits (the squared
/// distance `|a|^2 + |b|^2 - 2 <a, b>` is rounded differently); the Gram matrix stays exactly
/// symmetric, and an RBF Gram matrix's diagonal exactly 1.
pub const GEMM_MIN_FEATURES: usize = 64;

/// How a kernel follows from inner products ([`Kernel::inner_product_form`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InnerProductForm {
    /// `exp(-gamma d)` of the squared distance `d = |a|^2 + |b|^2 - 2 <a, b>` (clamped at 0).
    SquaredDistance {
        /// As [`Rbf`]'s.
        gamma: f64,
    },
    /// `(gamma <a, b> + coef0)^degree`.
    Dot {
        /// Scale of the inner product.
        gamma: f64,
        /// Additive constant.
        coef0: f64,
        /// Degree.
        degree: u32,
    },
}

impl InnerProductForm {
    /// Turns a column of inner products `<a_i, b>` into kernel values, given `|a_i|^2` and
    /// `|b|^2`. Compiled for the best instruction set through [`pulp`]: besides vectorising, this
    /// matters after faer's AVX-512 products, which leave the upper halves of the vector registers
    /// dirty; code in legacy SSE encoding (the C library's `exp`, or this loop compiled for the
    /// baseline) then pays a transition penalty on every instruction (docs/benchmarks.md, "Real
    /// images: Fashion-MNIST").
    pub(crate) fn apply(self, column: &mut [f64], row_norms: &[f64], column_norm: f64) {
        struct Apply<'a> {
            form: InnerProductForm,
            column: &'a mut [f64],
            row_norms: &'a [f64],
            column_norm: f64,
        }
        impl pulp::WithSimd for Apply<'_> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _simd: S) {
                for (value, &row_norm) in self.column.iter_mut().zip(self.row_norms) {
                    *value = self.form.value(*value, row_norm, self.column_norm);
                }
            }
        }
        pulp::Arch::new().dispatch(Apply {
            form: self,
            column,
            row_norms,
            column_norm,
        });
    }

    /// The kernel's value from `<a, b>`, `|a|^2` and `|b|^2`.
    #[inline(always)]
    fn value(self, dot: f64, a_norm: f64, b_norm: f64) -> f64 {
        match self {
            InnerProductForm::SquaredDistance { gamma } => {
                crate::exp::exp(-gamma * (a_norm + b_norm - 2.0 * dot).max(0.0))
            }
            InnerProductForm::Dot {
                gamma,
                coef0,
                degree,
            } => (gamma * dot + coef0).powi(degree.min(i32::MAX as u32) as i32),
        }
    }
}

impl<K: Kernel + ?Sized> Kernel for &K {
    fn eval(&self, a: &[f64], b: &[f64]) -> f64 {
        (**self).eval(a, b)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn eval_rows(&self, points: &Points, start: usize, y: &[f64], out: &mut [f64]) {
        (**self).eval_rows(points, start, y, out)
    }
    fn inner_product_form(&self) -> Option<InnerProductForm> {
        (**self).inner_product_form()
    }
}

impl<K: Kernel + ?Sized> Kernel for Box<K> {
    fn eval(&self, a: &[f64], b: &[f64]) -> f64 {
        (**self).eval(a, b)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn eval_rows(&self, points: &Points, start: usize, y: &[f64], out: &mut [f64]) {
        (**self).eval_rows(points, start, y, out)
    }
    fn inner_product_form(&self) -> Option<InnerProductForm> {
        (**self).inner_product_form()
    }
}

/// `exp(-gamma * distance(x_i, y))` for a stretch of points, where the distance is the squared
/// Euclidean one (`L1 = false`) or the L1 one: the body of [`Rbf`]'s and [`Laplacian`]'s
/// `eval_rows`, compiled once per instruction set by pulp and chosen at run time.
struct StationaryRows<'a, const L1: bool> {
    points: &'a Points,
    start: usize,
    y: &'a [f64],
    out: &'a mut [f64],
    gamma: f64,
}

/// Rows handled together in [`StationaryRows`]: their distances are summed in a fixed-size array
/// the compiler keeps in registers, and their exponentials overlap (each is a chain of 13 dependent
/// fused multiply-adds). Measured on AVX-512, d = 8, one thread: 16 rows 2.1 ns per entry, 32 rows
/// 4.0, 64 rows 1.6.
const BLOCK: usize = 64;

impl<const L1: bool> StationaryRows<'_, L1> {
    /// `exp(-gamma * distance)` for `out.len() <= BLOCK` rows from `first`, coordinates summed in
    /// the order `eval` sums them, so that every value is bitwise the one `eval` gives.
    #[inline(always)]
    fn block(points: &Points, first: usize, y: &[f64], gamma: f64, out: &mut [f64]) {
        let mut distance = [0.0f64; BLOCK];
        let distance = &mut distance[..out.len()];
        for (l, &yl) in y.iter().enumerate() {
            let coordinates = &points.feature(l)[first..first + out.len()];
            for (acc, &x) in distance.iter_mut().zip(coordinates) {
                let diff = x - yl;
                *acc += if L1 { diff.abs() } else { diff * diff };
            }
        }
        for (value, &distance) in out.iter_mut().zip(distance.iter()) {
            *value = crate::exp::exp(-gamma * distance);
        }
    }
}

impl<const L1: bool> pulp::WithSimd for StationaryRows<'_, L1> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Self {
            points,
            start,
            y,
            out,
            gamma,
        } = self;
        let mut blocks = out.chunks_exact_mut(BLOCK);
        let mut first = start;
        for block in &mut blocks {
            // A fixed length lets the compiler keep the block in registers.
            let block: &mut [f64; BLOCK] = block.try_into().expect("chunks_exact");
            Self::block(points, first, y, gamma, block);
            first += BLOCK;
        }
        Self::block(points, first, y, gamma, blocks.into_remainder());
    }
}

/// `exp(x)` compiled for the best instruction set: a fused multiply-add is then one instruction.
struct Exp(f64);

impl pulp::WithSimd for Exp {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> f64 {
        crate::exp::exp(self.0)
    }
}

fn positive(kernel: &'static str, parameter: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::InvalidKernelParameter {
            kernel,
            parameter,
            requirement: "finite and > 0",
            value,
        })
    }
}

/// Gaussian (RBF) kernel `k(a, b) = exp(-gamma * |a - b|^2)`, with scikit-learn's `gamma`.
///
/// The squared distance is summed coordinate by coordinate (not as `|a|^2 + |b|^2 - 2 <a, b>`), so
/// nearby points do not lose digits to cancellation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rbf {
    gamma: f64,
}

impl Rbf {
    /// An RBF kernel; `gamma` must be finite and > 0.
    pub fn new(gamma: f64) -> Result<Self> {
        Ok(Self {
            gamma: positive("rbf", "gamma", gamma)?,
        })
    }

    /// The inverse squared length scale `gamma`.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }
}

impl Kernel for Rbf {
    #[inline]
    fn eval(&self, a: &[f64], b: &[f64]) -> f64 {
        let mut squared_distance = 0.0;
        for (x, y) in a.iter().zip(b) {
            let diff = x - y;
            squared_distance += diff * diff;
        }
        pulp::Arch::new().dispatch(Exp(-self.gamma * squared_distance))
    }
    fn name(&self) -> &'static str {
        "rbf"
    }
    fn inner_product_form(&self) -> Option<InnerProductForm> {
        Some(InnerProductForm::SquaredDistance { gamma: self.gamma })
    }
    fn eval_rows(&self, points: &Points, start: usize, y: &[f64], out: &mut [f64]) {
        pulp::Arch::new().dispatch(StationaryRows::<false> {
            points,
            start,
            y,
            out,
            gamma: self.gamma,
        });
    }
}

impl fmt::Display for Rbf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rbf(gamma={})", self.gamma)
    }
}

/// Laplacian kernel `k(a, b) = exp(-gamma * |a - b|_1)` (L1 distance), as scikit-learn's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Laplacian {
    gamma: f64,
}

impl Laplacian {
    /// A Laplacian kernel; `gamma` must be finite and > 0.
    pub fn new(gamma: f64) -> Result<Self> {
        Ok(Self {
            gamma: positive("laplacian", "gamma", gamma)?,
        })
    }

    /// The inverse length scale `gamma`.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }
}

impl Kernel for Laplacian {
    #[inline]
    fn eval(&self, a: &[f64], b: &[f64]) -> f64 {
        let mut l1 = 0.0;
        for (x, y) in a.iter().zip(b) {
            l1 += (x - y).abs();
        }
        pulp::Arch::new().dispatch(Exp(-self.gamma * l1))
    }
    fn name(&self) -> &'static str {
        "laplacian"
    }
    fn eval_rows(&self, points: &Points, start: usize, y: &[f64], out: &mut [f64]) {
        pulp::Arch::new().dispatch(StationaryRows::<true> {
            points,
            start,
            y,
            out,
            gamma: self.gamma,
        });
    }
}

impl fmt::Display for Laplacian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "laplacian(gamma={})", self.gamma)
    }
}

/// Linear kernel `k(a, b) = <a, b>`. Its Gram matrix has rank at most `d`, so most eigenvalues are
/// zero and so are the matching entries of `B`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Linear;

impl Kernel for Linear {
    #[inline]
    fn eval(&self, a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
    fn name(&self) -> &'static str {
        "linear"
    }
    fn inner_product_form(&self) -> Option<InnerProductForm> {
        Some(InnerProductForm::Dot {
            gamma: 1.0,
            coef0: 0.0,
            degree: 1,
        })
    }
}

impl fmt::Display for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("linear")
    }
}

/// Polynomial kernel `k(a, b) = (gamma * <a, b> + coef0)^degree`, as scikit-learn's.
///
/// `coef0` must be >= 0 and `degree` >= 1: with those the kernel is positive semi-definite (a
/// negative `coef0` can make it indefinite, and kernel ridge regression then has no meaning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Polynomial {
    gamma: f64,
    coef0: f64,
    degree: u32,
}

impl Polynomial {
    /// A polynomial kernel; `gamma > 0`, `coef0 >= 0`, `degree >= 1`.
    pub fn new(gamma: f64, coef0: f64, degree: u32) -> Result<Self> {
        let gamma = positive("poly", "gamma", gamma)?;
        if !(coef0.is_finite() && coef0 >= 0.0) {
            return Err(Error::InvalidKernelParameter {
                kernel: "poly",
                parameter: "coef0",
                requirement: "finite and >= 0",
                value: coef0,
            });
        }
        if degree == 0 {
            return Err(Error::InvalidKernelParameter {
                kernel: "poly",
                parameter: "degree",
                requirement: ">= 1",
                value: 0.0,
            });
        }
        Ok(Self {
            gamma,
            coef0,
            degree,
        })
    }

    /// Scale of the inner product.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// Additive constant.
    pub fn coef0(&self) -> f64 {
        self.coef0
    }

    /// Degree of the polynomial.
    pub fn degree(&self) -> u32 {
        self.degree
    }
}

impl Kernel for Polynomial {
    #[inline]
    fn eval(&self, a: &[f64], b: &[f64]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let base = self.gamma * dot + self.coef0;
        // `powi` takes an i32; degrees beyond that overflow f64 long before.
        base.powi(self.degree.min(i32::MAX as u32) as i32)
    }
    fn name(&self) -> &'static str {
        "poly"
    }
    fn inner_product_form(&self) -> Option<InnerProductForm> {
        Some(InnerProductForm::Dot {
            gamma: self.gamma,
            coef0: self.coef0,
            degree: self.degree,
        })
    }
}

impl fmt::Display for Polynomial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "poly(gamma={}, coef0={}, degree={})",
            self.gamma, self.coef0, self.degree
        )
    }
}

/// The Gram matrix `K[i, j] = k(x_i, x_j)` of the rows of `x` (`n x d`), `n x n`.
///
/// Columns are computed in parallel (rayon), each with [`Kernel::eval_rows`]. Every entry is
/// computed, both triangles: for a kernel whose `eval` is bitwise symmetric, as every kernel of
/// this crate is, the matrix is exactly symmetric, and this is faster than computing one triangle
/// and copying it across (a strided pass over `8 n^2` bytes).
///
/// Kernels with an [`InnerProductForm`] on inputs of [`GEMM_MIN_FEATURES`] dimensions or more go
/// through one matrix product instead (the lower triangle from it, mirrored onto the upper).
pub fn gram_matrix<K: Kernel + ?Sized>(kernel: &K, x: MatRef<'_, f64>) -> DenseMatrix {
    if x.ncols() >= GEMM_MIN_FEATURES
        && let Some(form) = kernel.inner_product_form()
    {
        let n = x.nrows();
        let mut gram = DenseMatrix::zeros(n, n);
        lower_gram_into(&mut gram, x);
        // The squared norms from the product's own diagonal: the distance of a point to itself
        // is then exactly 0.
        let norms: Vec<f64> = (0..n).map(|i| gram.col(i)[i]).collect();
        gram.par_cols_mut().enumerate().for_each(|(j, column)| {
            form.apply(&mut column[j..], &norms[j..], norms[j]);
        });
        gram.mirror_lower();
        return gram;
    }
    let points = Points::new(x);
    let mut gram = DenseMatrix::zeros(points.len(), points.len());
    gram.par_cols_mut().enumerate().for_each(|(j, column)| {
        kernel.eval_rows(&points, 0, points.row(j), column);
    });
    gram
}

/// The cross Gram matrix `K[i, j] = k(x_new_i, x_j)` between new points (`m x d`) and training
/// points (`n x d`): `m x n`, columns computed in parallel.
///
/// # Panics
/// If the two matrices have different numbers of columns; [`crate::SelfDistillation`] checks this
/// and returns an error instead.
pub fn cross_gram_matrix<K: Kernel + ?Sized>(
    kernel: &K,
    x_new: MatRef<'_, f64>,
    x: MatRef<'_, f64>,
) -> DenseMatrix {
    assert_eq!(x_new.ncols(), x.ncols(), "points of different dimensions");
    if x.ncols() >= GEMM_MIN_FEATURES
        && let Some(form) = kernel.inner_product_form()
    {
        let squared_norms = |m: MatRef<'_, f64>| -> Vec<f64> {
            (0..m.nrows())
                .into_par_iter()
                .map(|i| m.row(i).iter().map(|v| v * v).sum())
                .collect()
        };
        let (new_norms, norms) = (squared_norms(x_new), squared_norms(x));
        let mut cross = DenseMatrix::zeros(x_new.nrows(), x.nrows());
        product_into(&mut cross, x_new, x);
        cross.par_cols_mut().enumerate().for_each(|(j, column)| {
            form.apply(column, &new_norms, norms[j]);
        });
        return cross;
    }
    let new_points = Points::new(x_new);
    let points = Points::new(x);
    let mut cross = DenseMatrix::zeros(new_points.len(), points.len());
    cross.par_cols_mut().enumerate().for_each(|(j, column)| {
        kernel.eval_rows(&new_points, 0, points.row(j), column);
    });
    cross
}

/// The lower triangle (diagonal included) of `a a^T` into `out`, in parallel: half the work of
/// the full product. The upper triangle is left as it was.
pub(crate) fn lower_gram_into(out: &mut DenseMatrix, a: MatRef<'_, f64>) {
    use faer::linalg::matmul::triangular::{BlockStructure, matmul};
    matmul(
        out.as_mut(),
        BlockStructure::TriangularLower,
        faer::Accum::Replace,
        a,
        BlockStructure::Rectangular,
        a.transpose(),
        BlockStructure::Rectangular,
        1.0,
        faer::get_global_parallelism(),
    );
}

/// `out = a b^T` (all inner products of `a`'s rows with `b`'s), in parallel.
fn product_into(out: &mut DenseMatrix, a: MatRef<'_, f64>, b: MatRef<'_, f64>) {
    faer::linalg::matmul::matmul(
        out.as_mut(),
        faer::Accum::Replace,
        a,
        b.transpose(),
        1.0,
        faer::get_global_parallelism(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    #[test]
    fn the_gemm_route_agrees_with_eval_and_stays_exactly_symmetric() {
        let (n, d) = (150, GEMM_MIN_FEATURES + 36);
        let x = Mat::from_fn(n, d, |i, j| ((i * 31 + j * 17) % 97) as f64 / 97.0);
        let x_new = Mat::from_fn(40, d, |i, j| ((i * 13 + j * 7) % 89) as f64 / 89.0);
        let kernels: Vec<Box<dyn Kernel>> = vec![
            Box::new(Rbf::new(0.02).unwrap()),
            Box::new(Linear),
            Box::new(Polynomial::new(0.01, 1.0, 3).unwrap()),
        ];
        for kernel in &kernels {
            assert!(kernel.inner_product_form().is_some());
            let gram = gram_matrix(kernel, x.as_ref());
            let cross = cross_gram_matrix(kernel, x_new.as_ref(), x.as_ref());
            let scale = (0..n).map(|i| gram[(i, i)].abs()).fold(0.0, f64::max);
            for j in 0..n {
                for i in 0..n {
                    assert_eq!(gram[(i, j)], gram[(j, i)], "{} ({i}, {j})", kernel.name());
                }
            }
            let rows = |m: &Mat<f64>, i: usize| -> Vec<f64> { m.row(i).iter().copied().collect() };
            for i in 0..n {
                for j in 0..n {
                    let exact = kernel.eval(&rows(&x, i), &rows(&x, j));
                    assert!(
                        (gram[(i, j)] - exact).abs() <= 1e-12 * scale,
                        "{}",
                        kernel.name()
                    );
                }
            }
            for i in 0..40 {
                for j in 0..n {
                    let exact = kernel.eval(&rows(&x_new, i), &rows(&x, j));
                    assert!(
                        (cross[(i, j)] - exact).abs() <= 1e-12 * scale,
                        "{}",
                        kernel.name()
                    );
                }
            }
        }
        let rbf = gram_matrix(&Rbf::new(0.02).unwrap(), x.as_ref());
        assert!((0..n).all(|i| rbf[(i, i)] == 1.0));
        // Below the threshold nothing changes: every value is eval's, bitwise.
        let narrow = Mat::from_fn(20, GEMM_MIN_FEATURES - 1, |i, j| (i + j) as f64 / 50.0);
        let gram = gram_matrix(&Rbf::new(0.02).unwrap(), narrow.as_ref());
        let row = |i: usize| -> Vec<f64> { narrow.row(i).iter().copied().collect() };
        assert_eq!(gram[(3, 7)], Rbf::new(0.02).unwrap().eval(&row(3), &row(7)));
    }

    fn points(n: usize, d: usize) -> Mat<f64> {
        Mat::from_fn(n, d, |i, j| {
            ((i * 7 + j * 3) % 11) as f64 / 10.0 - 0.3 * j as f64
        })
    }

    #[test]
    fn gram_is_exactly_symmetric_and_matches_eval() {
        let x = points(150, 3);
        let kernels: [Box<dyn Kernel>; 4] = [
            Box::new(Rbf::new(0.7).unwrap()),
            Box::new(Laplacian::new(0.7).unwrap()),
            Box::new(Linear),
            Box::new(Polynomial::new(0.3, 1.0, 3).unwrap()),
        ];
        for kernel in &kernels {
            let gram = gram_matrix(kernel, x.as_ref());
            for i in 0..150 {
                for j in 0..150 {
                    assert_eq!(gram[(i, j)].to_bits(), gram[(j, i)].to_bits());
                    let a: Vec<f64> = x.row(i).iter().copied().collect();
                    let b: Vec<f64> = x.row(j).iter().copied().collect();
                    // eval_rows gives bitwise what eval gives.
                    let expected = kernel.eval(&a, &b);
                    assert_eq!(gram[(i, j)].to_bits(), expected.to_bits(), "({i}, {j})");
                }
            }
        }
        let rbf = gram_matrix(&Rbf::new(0.7).unwrap(), x.as_ref());
        assert!((0..150).all(|i| rbf[(i, i)] == 1.0));
    }

    #[test]
    fn cross_gram_matches_gram_on_training_points() {
        let x = points(37, 2);
        for kernel in [
            Box::new(Rbf::new(2.0).unwrap()) as Box<dyn Kernel>,
            Box::new(Laplacian::new(0.5).unwrap()),
            Box::new(Linear),
            Box::new(Polynomial::new(0.3, 1.0, 3).unwrap()),
        ] {
            let gram = gram_matrix(&kernel, x.as_ref());
            let cross = cross_gram_matrix(&kernel, x.as_ref(), x.as_ref());
            for i in 0..37 {
                for j in 0..37 {
                    assert_eq!(gram[(i, j)].to_bits(), cross[(i, j)].to_bits());
                }
            }
        }
    }

    #[test]
    fn vectorised_rows_equal_eval_bitwise_at_any_offset() {
        let x = points(77, 5);
        let data = Points::new(x.as_ref());
        let y = [0.3, -0.2, 0.9, 0.0, 1.5];
        let kernels: [Box<dyn Kernel>; 3] = [
            Box::new(Rbf::new(1.3).unwrap()),
            Box::new(Laplacian::new(0.4).unwrap()),
            Box::new(Polynomial::new(0.5, 2.0, 2).unwrap()),
        ];
        for kernel in &kernels {
            for (start, len) in [(0, 77), (3, 1), (5, 17), (60, 17), (76, 1), (10, 0)] {
                let mut out = vec![f64::NAN; len];
                kernel.eval_rows(&data, start, &y, &mut out);
                for (i, value) in out.iter().enumerate() {
                    let expected = kernel.eval(data.row(start + i), &y);
                    assert_eq!(
                        value.to_bits(),
                        expected.to_bits(),
                        "{} {start} {i}",
                        kernel.name()
                    );
                }
            }
        }
    }

    #[test]
    fn kernels_match_their_formulas() {
        let (a, b) = ([1.0, 2.0], [0.5, -1.0]);
        let rbf = Rbf::new(0.1).unwrap().eval(&a, &b);
        assert!((rbf - (-0.1f64 * (0.25 + 9.0)).exp()).abs() < 2e-16);
        let lap = Laplacian::new(0.1).unwrap().eval(&a, &b);
        assert!((lap - (-0.1f64 * 3.5).exp()).abs() < 2e-16);
        assert_eq!(Linear.eval(&a, &b), 0.5 - 2.0);
        let poly = Polynomial::new(2.0, 1.0, 3).unwrap().eval(&a, &b);
        assert_eq!(poly, (2.0f64 * -1.5 + 1.0).powi(3));
    }

    #[test]
    fn bad_parameters_are_rejected_with_their_name() {
        let err = Rbf::new(0.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rbf kernel: gamma must be finite and > 0, got 0"
        );
        assert!(Rbf::new(f64::NAN).is_err());
        assert!(Laplacian::new(-1.0).is_err());
        let err = Polynomial::new(1.0, -1.0, 2).unwrap_err();
        assert!(err.to_string().contains("coef0 must be finite and >= 0"));
        assert!(Polynomial::new(1.0, 0.0, 0).is_err());
    }
}
