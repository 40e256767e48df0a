//! The two factorisations of the kernel matrix that distillation steps reuse.
//!
//! Each step solves `(K + lambda I) c = z` for new targets `z` and needs the fitted values `K c`.
//! - [`Cholesky`]: `K + lambda I = L L^T` once (`n^3 / 3` flops), then two triangular solves and one
//!   product with `K` per step (`O(n^2)` each). A different ridge (the limit) needs a new factor.
//! - [`Eigen`]: `K = V D V^T` once (about `9 n^3` flops, many times a Cholesky), then every ridge
//!   costs `O(n^2)`: `c = V (D + ridge I)^-1 V^T z`, `K c = V D (D + ridge I)^-1 V^T z`. It also gives
//!   the spectrum the paper's analysis needs.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::cholesky::llt;
use faer::linalg::evd::{self, tridiag};
use faer::linalg::{householder, matmul::matmul, temp_mat_scratch};
use faer::{Accum, Conj, Mat, MatRef, Par};

use crate::dense::DenseMatrix;
use crate::error::{Error, Result};
use crate::shifted::{SHIFTED_MAX_RATIO, SHIFTED_MIN_RIDGES, shifted_solve};

/// A fit to one set of targets: dual coefficients and fitted values at the training inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// Dual coefficients `c = (K + ridge I)^-1 z`, `n x m`: the prediction at a new point `x` is
    /// `sum_i k(x, x_i) c_i`.
    pub dual_coef: Mat<f64>,
    /// Fitted values `K c` at the training inputs, `n x m`.
    pub fitted: Mat<f64>,
}

impl Fit {
    /// The all-zero fit (the limit of distillation without ground truth, `alpha = 0`).
    pub(crate) fn zeros(n: usize, m: usize) -> Self {
        Self {
            dual_coef: Mat::zeros(n, m),
            fitted: Mat::zeros(n, m),
        }
    }
}

fn par() -> Par {
    faer::get_global_parallelism()
}

/// `lhs * rhs` into a new matrix, in parallel.
pub(crate) fn product(lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::zeros(lhs.nrows(), rhs.ncols());
    matmul(out.as_mut(), Accum::Replace, lhs, rhs, 1.0, par());
    out
}

/// Factor `matrix + ridge I` in place (lower triangle), `matrix` holding a copy of `K`.
pub(crate) fn cholesky_in_place(matrix: &mut DenseMatrix, ridge: f64) -> Result<()> {
    let n = matrix.nrows();
    let mut view = matrix.as_mut();
    for i in 0..n {
        view[(i, i)] += ridge;
    }
    let par = par();
    let mut memory = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
        n,
        par,
        Default::default(),
    ));
    llt::factor::cholesky_in_place(
        view,
        Default::default(),
        par,
        MemStack::new(&mut memory),
        Default::default(),
    )
    .map_err(|llt::factor::LltError::NonPositivePivot { index }| {
        Error::NotPositiveDefinite {
            ridge,
            pivot: index,
        }
    })?;
    Ok(())
}

fn cholesky_solve(lower: MatRef<'_, f64>, targets: MatRef<'_, f64>) -> Mat<f64> {
    let mut solution = targets.to_owned();
    let mut no_memory = MemBuffer::new(StackReq::EMPTY);
    llt::solve::solve_in_place(
        lower,
        solution.as_mut(),
        par(),
        MemStack::new(&mut no_memory),
    );
    solution
}

/// The fitted values `K c` of the solution `c` of `(K + ridge I) c = z`: `z - ridge c`, without a
/// pass over `K`. That halves a step's cost with the Cholesky solver (two triangular solves instead of
/// those and a product with `K`), and is as accurate: Cholesky's backward error `E` (`|E|` about
/// `n eps |K|`) gives `z - ridge c = K c + E c`, the same order as the rounding of the product.
fn fitted_from_solution(
    targets: MatRef<'_, f64>,
    ridge: f64,
    solution: MatRef<'_, f64>,
) -> Mat<f64> {
    Mat::from_fn(targets.nrows(), targets.ncols(), |i, j| {
        targets[(i, j)] - ridge * solution[(i, j)]
    })
}

/// From this many points on, a fit with another ridge (the limit) is solved by [`refined_solve`].
pub const REFINED_MIN_POINTS: usize = 2000;

/// Refinement steps before [`refined_solve`] gives up (LAPACK's `dsposv` takes 30).
const REFINEMENT_STEPS: usize = 30;

/// `(K + ridge I) c = z` by mixed-precision iterative refinement, as LAPACK's `dsposv`: the
/// Cholesky factorisation of `K + ridge I` in single precision (about twice as fast as in double),
/// then `c += solve32(z - (K + ridge I) c)` with the residual in double precision, until every
/// column's residual meets `dsposv`'s test `|r|_inf <= sqrt(n) |c|_inf |K + ridge I|_inf eps`
/// (double `eps`): a backward error of double-precision order, what the double factorisation
/// gives. Each refinement step contracts the error by about `cond(K + ridge I) * 6e-8`, so it
/// converges while that is below 1 (for Fashion-MNIST at n = 10,000 it is about 4e-4: 3 to 5
/// steps). `None` when the single-precision factorisation fails or the refinement does not
/// converge within [`REFINEMENT_STEPS`]: the caller then factorises in double precision.
pub(crate) fn refined_solve(
    gram: &DenseMatrix,
    ridge: f64,
    targets: MatRef<'_, f64>,
) -> Option<Mat<f64>> {
    use rayon::prelude::*;
    let n = gram.nrows();
    // The lower triangle of K + ridge I in single precision, filled in parallel.
    let mut data = vec![0f32; n * n];
    data.par_chunks_mut(n.max(1))
        .enumerate()
        .for_each(|(j, column)| {
            let source = gram.col(j);
            for i in j..n {
                column[i] = source[i] as f32;
            }
            column[j] = (source[j] + ridge) as f32;
        });
    let par = par();
    let mut memory = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f32>(
        n,
        par,
        Default::default(),
    ));
    llt::factor::cholesky_in_place(
        faer::MatMut::from_column_major_slice_mut(&mut data, n, n),
        Default::default(),
        par,
        MemStack::new(&mut memory),
        Default::default(),
    )
    .ok()?;
    let lower = MatRef::from_column_major_slice(&data, n, n);
    let solve32 = |rhs: MatRef<'_, f64>| -> Mat<f64> {
        let mut single = Mat::<f32>::from_fn(rhs.nrows(), rhs.ncols(), |i, j| rhs[(i, j)] as f32);
        let mut no_memory = MemBuffer::new(StackReq::EMPTY);
        llt::solve::solve_in_place(lower, single.as_mut(), par, MemStack::new(&mut no_memory));
        Mat::from_fn(rhs.nrows(), rhs.ncols(), |i, j| f64::from(single[(i, j)]))
    };
    let norm = gram.infinity_norm() + ridge.abs();
    let tolerance = (n as f64).sqrt() * norm * f64::EPSILON;
    let mut solution = solve32(targets);
    for _ in 0..REFINEMENT_STEPS {
        let mut residual = targets.to_owned();
        matmul(
            residual.as_mut(),
            Accum::Add,
            gram.as_ref(),
            solution.as_ref(),
            -1.0,
            par,
        );
        let residual = Mat::from_fn(n, targets.ncols(), |i, j| {
            residual[(i, j)] - ridge * solution[(i, j)]
        });
        let converged = (0..targets.ncols()).all(|j| {
            let largest = |m: MatRef<'_, f64>| m.col(j).iter().fold(0f64, |a, v| a.max(v.abs()));
            largest(residual.as_ref()) <= tolerance * largest(solution.as_ref())
        });
        if converged {
            return Some(solution);
        }
        let correction = solve32(residual.as_ref());
        if !correction.as_ref().is_all_finite() {
            return None;
        }
        solution += correction;
    }
    None
}

/// `K` and the Cholesky factor of `K + lambda I`.
#[derive(Debug)]
pub(crate) struct Cholesky {
    gram: DenseMatrix,
    lower: DenseMatrix,
    lambda: f64,
}

impl Cholesky {
    pub(crate) fn new(gram: DenseMatrix, lambda: f64) -> Result<Self> {
        let mut lower = gram.par_clone();
        cholesky_in_place(&mut lower, lambda)?;
        Ok(Self {
            gram,
            lower,
            lambda,
        })
    }

    /// The fit to `targets` with ridge `lambda`.
    pub(crate) fn fit(&self, targets: MatRef<'_, f64>) -> Fit {
        let dual_coef = cholesky_solve(self.lower.as_ref(), targets);
        let fitted = fitted_from_solution(targets, self.lambda, dual_coef.as_ref());
        Fit { dual_coef, fitted }
    }

    /// The fits to `targets` with several ridges. When at least [`SHIFTED_MIN_RIDGES`] of them lie
    /// between `lambda` and [`SHIFTED_MAX_RATIO`] times it (the limits of alphas from 1 / 20 to 1),
    /// those come from this factor by [`shifted_solve`], all together; the others, and any that
    /// solve does not bring to double precision's backward error, each from
    /// [`Self::fit_with_ridge`].
    pub(crate) fn fit_with_ridges(
        &self,
        ridges: &[f64],
        targets: MatRef<'_, f64>,
    ) -> Result<Vec<Fit>> {
        let mut shifted: Vec<usize> = (0..ridges.len())
            .filter(|&r| ridges[r] > self.lambda && ridges[r] <= SHIFTED_MAX_RATIO * self.lambda)
            .collect();
        if shifted.len() < SHIFTED_MIN_RIDGES {
            shifted.clear();
        }
        let shifted_ridges: Vec<f64> = shifted.iter().map(|&r| ridges[r]).collect();
        let mut solved = shifted_solve(
            &self.gram,
            self.lower.as_ref(),
            self.lambda,
            &shifted_ridges,
            targets,
            par(),
        )
        .into_iter();
        let mut fits = Vec::with_capacity(ridges.len());
        for (r, &ridge) in ridges.iter().enumerate() {
            let solution = if shifted.contains(&r) {
                solved.next().expect("one answer per shifted ridge")
            } else {
                None
            };
            fits.push(match solution {
                Some(dual_coef) => {
                    let fitted = fitted_from_solution(targets, ridge, dual_coef.as_ref());
                    Fit { dual_coef, fitted }
                }
                None => self.fit_with_ridge(ridge, targets)?,
            });
        }
        Ok(fits)
    }

    /// The fit to `targets` with another ridge: one more factorisation. From
    /// [`REFINED_MIN_POINTS`] points on it is [`refined_solve`]'s, in single precision refined to
    /// double; where that does not converge, a double-precision factorisation as below.
    pub(crate) fn fit_with_ridge(&self, ridge: f64, targets: MatRef<'_, f64>) -> Result<Fit> {
        if ridge == self.lambda {
            return Ok(self.fit(targets));
        }
        if self.gram.nrows() >= REFINED_MIN_POINTS
            && let Some(dual_coef) = refined_solve(&self.gram, ridge, targets)
        {
            let fitted = fitted_from_solution(targets, ridge, dual_coef.as_ref());
            return Ok(Fit { dual_coef, fitted });
        }
        let mut lower = self.gram.par_clone();
        cholesky_in_place(&mut lower, ridge)?;
        let dual_coef = cholesky_solve(lower.as_ref(), targets);
        let fitted = fitted_from_solution(targets, ridge, dual_coef.as_ref());
        Ok(Fit { dual_coef, fitted })
    }
}

/// `K = V D V^T` with the eigenvalues sorted descending and clamped at zero.
#[derive(Debug)]
pub(crate) struct Eigen {
    /// Descending, `>= 0`.
    eigenvalues: Vec<f64>,
    /// Column `k` is the eigenvector of `eigenvalues[k]`.
    vectors: DenseMatrix,
    lambda: f64,
}

/// Negative eigenvalues down to `-EIGENVALUE_TOLERANCE * n * eps * d_max` are rounding and are set
/// to zero; anything more negative means the kernel matrix is indefinite. Building `K` rounds each
/// entry by `eps`, which moves eigenvalues by up to `n * eps * max |K_ij| <= n * eps * d_max`.
pub const EIGENVALUE_TOLERANCE: f64 = 10.0;

impl Eigen {
    pub(crate) fn new(gram: DenseMatrix, lambda: f64) -> Result<Self> {
        let n = gram.nrows();
        let (mut eigenvalues, mut vectors) = symmetric_eigen_in_place(gram)?;
        // faer sorts ascending; the paper (and R_k) reads them descending.
        eigenvalues.reverse();
        for j in 0..n / 2 {
            vectors.swap_cols(j, n - 1 - j);
        }
        let largest = eigenvalues.first().copied().unwrap_or(0.0).max(0.0);
        let smallest = eigenvalues.last().copied().unwrap_or(0.0);
        let tolerance = EIGENVALUE_TOLERANCE * n as f64 * f64::EPSILON * largest;
        if smallest < -tolerance || !smallest.is_finite() || !largest.is_finite() {
            return Err(Error::Indefinite {
                min: smallest,
                max: largest,
                tolerance: -tolerance,
            });
        }
        for d in &mut eigenvalues {
            *d = d.max(0.0);
        }
        Ok(Self {
            eigenvalues,
            vectors,
            lambda,
        })
    }

    pub(crate) fn eigenvalues(&self) -> &[f64] {
        &self.eigenvalues
    }

    /// The eigenvectors, as columns in the order of the eigenvalues.
    pub(crate) fn vectors(&self) -> MatRef<'_, f64> {
        self.vectors.as_ref()
    }

    pub(crate) fn fit(&self, targets: MatRef<'_, f64>) -> Fit {
        self.fit_with_ridges(&[self.lambda], targets)
            .pop()
            .expect("one ridge")
    }

    /// For each ridge, `c = V (D + ridge I)^-1 V^T z` and `K c = V D (D + ridge I)^-1 V^T z`: two
    /// products in all, whatever the number of ridges.
    pub(crate) fn fit_with_ridges(&self, ridges: &[f64], targets: MatRef<'_, f64>) -> Vec<Fit> {
        let (n, m) = (targets.nrows(), targets.ncols());
        let projected = product(self.vectors.as_ref().transpose(), targets);
        // Columns [2 m r, 2 m r + m) hold ridge r's coefficients, the next m its fitted values.
        let scaled = Mat::from_fn(n, 2 * m * ridges.len(), |k, column| {
            let (ridge, j) = (ridges[column / (2 * m)], column % (2 * m));
            let d = self.eigenvalues[k];
            if j < m {
                projected[(k, j)] / (d + ridge)
            } else {
                projected[(k, j - m)] * d / (d + ridge)
            }
        });
        let all = product(self.vectors.as_ref(), scaled.as_ref());
        (0..ridges.len())
            .map(|r| Fit {
                dual_coef: all.subcols(2 * m * r, m).to_owned(),
                fitted: all.subcols(2 * m * r + m, m).to_owned(),
            })
            .collect()
    }
}

/// Symmetric eigendecomposition that consumes `matrix` and tridiagonalises it in place.
///
/// faer's `self_adjoint_eigen` keeps the input and copies it into its workspace: with `K` alive, the
/// peak is `K`, the copy, the eigenvectors and divide and conquer's two `n x n` buffers, `5 n^2`
/// values. Working in `K`'s own storage brings that to `4 n^2`. The steps are faer's
/// `self_adjoint_evd`: Householder tridiagonalisation, divide and conquer on the tridiagonal
/// matrix, then the Householder reflections applied to its eigenvectors. Eigenvalues ascend.
fn symmetric_eigen_in_place(mut matrix: DenseMatrix) -> Result<(Vec<f64>, DenseMatrix)> {
    let n = matrix.nrows();
    if n == 0 {
        return Ok((Vec::new(), DenseMatrix::zeros(0, 0)));
    }
    if n == 1 {
        let mut vectors = DenseMatrix::zeros(1, 1);
        vectors.as_mut()[(0, 0)] = 1.0;
        return Ok((vec![matrix[(0, 0)]], vectors));
    }
    let par = par();
    let block = faer::linalg::qr::no_pivoting::factor::recommended_block_size::<f64>(n, n);
    let mut householder_factor = Mat::<f64>::zeros(block, n - 1);
    {
        let mut memory = MemBuffer::new(tridiag::tridiag_in_place_scratch::<f64>(
            n,
            par,
            Default::default(),
        ));
        tridiag::tridiag_in_place(
            matrix.as_mut(),
            householder_factor.as_mut(),
            par,
            MemStack::new(&mut memory),
            Default::default(),
        );
    }
    let diagonal = faer::Col::from_fn(n, |i| matrix[(i, i)]);
    let subdiagonal = faer::Col::from_fn(n - 1, |i| matrix[(i + 1, i)]);
    let mut eigenvalues = faer::diag::Diag::<f64>::zeros(n);
    let mut vectors = DenseMatrix::zeros(n, n);
    {
        // Divide and conquer needs two n x n buffers and a few vectors (faer's private
        // `divide_and_conquer_scratch`); this over-allocates the small ones.
        let scratch = StackReq::all_of(&[
            temp_mat_scratch::<f64>(n, 1).array(16),
            StackReq::new::<usize>(n).array(8),
            temp_mat_scratch::<f64>(n, n).array(2),
        ]);
        let mut memory = MemBuffer::new(scratch);
        evd::tridiagonal_self_adjoint_evd(
            diagonal.as_ref().as_diagonal(),
            subdiagonal.as_ref().as_diagonal(),
            eigenvalues.as_mut(),
            Some(vectors.as_mut()),
            par,
            MemStack::new(&mut memory),
            Default::default(),
        )
        .map_err(|_| Error::NoConvergence)?;
    }
    {
        let scratch = householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<
            f64,
        >(n - 1, block, n);
        let mut memory = MemBuffer::new(scratch);
        householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
            matrix.as_ref().submatrix(1, 0, n - 1, n - 1),
            householder_factor.as_ref(),
            Conj::No,
            vectors.as_mut().subrows_mut(1, n - 1),
            par,
            MemStack::new(&mut memory),
        );
    }
    drop(matrix);
    let eigenvalues = (0..n).map(|i| eigenvalues[i]).collect();
    Ok((eigenvalues, vectors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Side;

    /// An RBF kernel matrix of `n` deterministic points in `d` dimensions.
    fn rbf_gram(n: usize, d: usize, gamma: f64) -> DenseMatrix {
        let x = Mat::from_fn(n, d, |i, j| {
            (((i * 37 + j * 11) % 101) as f64 / 101.0).powi(2)
        });
        crate::kernel::gram_matrix(&crate::Rbf::new(gamma).unwrap(), x.as_ref())
    }

    /// The refined single-precision solve reaches what the double-precision factorisation gives.
    #[test]
    fn refined_solves_agree_with_double_precision_cholesky() {
        let gram = rbf_gram(400, 6, 2.0);
        let targets = Mat::from_fn(400, 3, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        // (K + ridge I) c - z, relative to |K + ridge I| |c|: the backward error.
        let backward = |c: &Mat<f64>, ridge: f64| {
            let mut r = product(gram.as_ref(), c.as_ref()) - &targets;
            r += c * faer::Scale(ridge);
            r.norm_max() / (c.norm_max() * (400.0 + ridge))
        };
        for (ridge, forward) in [(0.4, 1e-12), (0.01, 1e-9)] {
            let refined = refined_solve(&gram, ridge, targets.as_ref()).expect("converges");
            let mut lower = gram.par_clone();
            cholesky_in_place(&mut lower, ridge).unwrap();
            let exact = cholesky_solve(lower.as_ref(), targets.as_ref());
            // A backward error of double precision's order (dsposv's test: sqrt(n) eps)...
            assert!(
                backward(&refined, ridge) <= 20.0 * f64::EPSILON,
                "ridge {ridge}: {} (double-precision Cholesky: {})",
                backward(&refined, ridge),
                backward(&exact, ridge)
            );
            // ...so the two agree to what the conditioning allows.
            let error = (&refined - &exact).norm_max() / exact.norm_max();
            assert!(error <= forward, "ridge {ridge}: {error}");
        }
    }

    /// Too ill-conditioned for single precision: no answer, so the caller factorises in double.
    #[test]
    fn refinement_gives_up_where_single_precision_cannot_converge() {
        let gram = rbf_gram(400, 6, 2.0);
        let targets = Mat::from_fn(400, 1, |i, _| (i % 5) as f64);
        assert!(refined_solve(&gram, 1e-13, targets.as_ref()).is_none());
    }

    fn symmetric(n: usize) -> Mat<f64> {
        let a = Mat::from_fn(n, n, |i, j| ((i * 31 + j * 17) % 13) as f64 / 13.0 - 0.4);
        product(a.as_ref(), a.transpose())
    }

    #[test]
    fn in_place_eigendecomposition_matches_faer() {
        // Sizes below and above faer's divide-and-conquer threshold (128).
        for n in [2, 3, 40, 129, 300] {
            let k = symmetric(n);
            let (values, vectors) =
                symmetric_eigen_in_place(DenseMatrix::from_ref(k.as_ref())).unwrap();
            let reference = k.self_adjoint_eigen(Side::Lower).unwrap();
            for (i, value) in values.iter().enumerate() {
                let expected = reference.S()[i];
                assert!(
                    (value - expected).abs() <= 1e-10 * (1.0 + expected.abs()),
                    "n={n}"
                );
            }
            // V D V^T reconstructs K and V is orthogonal.
            let scaled = Mat::from_fn(n, n, |i, j| vectors[(i, j)] * values[j]);
            let rebuilt = product(scaled.as_ref(), vectors.as_ref().transpose());
            let gram = product(vectors.as_ref().transpose(), vectors.as_ref());
            let scale = values.iter().fold(1.0f64, |acc, v| acc.max(v.abs()));
            for i in 0..n {
                for j in 0..n {
                    assert!(
                        (rebuilt[(i, j)] - k[(i, j)]).abs() <= 1e-11 * scale,
                        "n={n}"
                    );
                    let identity = if i == j { 1.0 } else { 0.0 };
                    assert!((gram[(i, j)] - identity).abs() <= 1e-12, "n={n}");
                }
            }
        }
    }

    #[test]
    fn eigen_sorts_descending_and_clamps_rounding() {
        // Rank 1: all but one eigenvalue are zero up to rounding.
        let x = Mat::from_fn(50, 1, |i, _| i as f64 / 50.0 + 0.1);
        let k = product(x.as_ref(), x.transpose());
        let eigen = Eigen::new(DenseMatrix::from_ref(k.as_ref()), 0.1).unwrap();
        let values = eigen.eigenvalues();
        assert!(values.windows(2).all(|w| w[0] >= w[1]));
        assert!(values.iter().all(|&d| d >= 0.0));
        let expected: f64 = (0..50).map(|i| (i as f64 / 50.0 + 0.1).powi(2)).sum();
        assert!((values[0] - expected).abs() < 1e-10 * expected);
    }

    #[test]
    fn indefinite_matrices_are_refused() {
        let mut k = Mat::<f64>::identity(3, 3);
        k[(2, 2)] = -0.5;
        assert!(matches!(
            Eigen::new(DenseMatrix::from_ref(k.as_ref()), 0.1),
            Err(Error::Indefinite { .. })
        ));
        assert!(matches!(
            Cholesky::new(DenseMatrix::from_ref(k.as_ref()), 0.1),
            Err(Error::NotPositiveDefinite { pivot: 2, .. })
        ));
    }

    // The shifted solves of `crate::shifted` from the factors made here (its tests live here:
    // the module that factorises uses the one that shifts, not the other way round).

    fn direct(gram: &DenseMatrix, ridge: f64, targets: MatRef<'_, f64>) -> Mat<f64> {
        let mut lower = gram.par_clone();
        cholesky_in_place(&mut lower, ridge).unwrap();
        let mut solution = targets.to_owned();
        let mut no_memory = MemBuffer::new(StackReq::EMPTY);
        llt::solve::solve_in_place(
            lower.as_ref(),
            solution.as_mut(),
            Par::Seq,
            MemStack::new(&mut no_memory),
        );
        solution
    }

    /// Every ridge of a sweep's limits from one factor, as accurate as its own factorisation.
    #[test]
    fn shifted_solves_match_a_factorisation_per_ridge() {
        let (n, lambda) = (300, 0.05);
        let gram = rbf_gram(n, 5, 3.0);
        // Two outputs and a zero column, which has the zero solution.
        let targets = Mat::from_fn(n, 3, |i, j| match j {
            0 => ((i * 7) % 11) as f64 - 5.0,
            1 => (i as f64 / 30.0).sin(),
            _ => 0.0,
        });
        let mut lower = gram.par_clone();
        cholesky_in_place(&mut lower, lambda).unwrap();
        // The limits of alpha 0.05, 0.1, ..., 0.9: condition numbers up to 20.
        let ridges: Vec<f64> = [0.05, 0.1, 0.3, 0.5, 0.9]
            .iter()
            .map(|alpha| lambda / alpha)
            .collect();
        let solved = shifted_solve(
            &gram,
            lower.as_ref(),
            lambda,
            &ridges,
            targets.as_ref(),
            Par::Seq,
        );
        assert_eq!(solved.len(), ridges.len());
        for (solution, &ridge) in solved.iter().zip(&ridges) {
            let solution = solution.as_ref().expect("converges");
            let exact = direct(&gram, ridge, targets.as_ref());
            let error = (solution - &exact).norm_max() / exact.norm_max();
            assert!(error <= 1e-12, "ridge {ridge}: relative error {error}");
            assert!(solution.col(2).iter().all(|&v| v == 0.0));
            // The backward error of double precision.
            let mut residual = product(gram.as_ref(), solution.as_ref()) - &targets;
            residual += solution * faer::Scale(ridge);
            let backward = residual.norm_max() / (solution.norm_max() * (n as f64 + ridge));
            assert!(backward <= 20.0 * f64::EPSILON, "ridge {ridge}: {backward}");
        }
    }

    /// Ridges past the shifted solve's range, and lambda itself, take the other paths; the answers
    /// come back in the order asked.
    #[test]
    fn fits_with_many_ridges_keep_their_order_across_paths() {
        let (n, lambda) = (200, 0.1);
        let gram = rbf_gram(n, 4, 2.0);
        let targets = Mat::from_fn(n, 2, |i, j| ((i * (j + 3)) % 7) as f64 - 3.0);
        let cholesky = Cholesky::new(gram.par_clone(), lambda).unwrap();
        let ridges = [lambda / 0.5, lambda, lambda * 1000.0, lambda / 0.2];
        let fits = cholesky.fit_with_ridges(&ridges, targets.as_ref()).unwrap();
        for (fit, &ridge) in fits.iter().zip(&ridges) {
            let exact = direct(&gram, ridge, targets.as_ref());
            let error = (&fit.dual_coef - &exact).norm_max() / exact.norm_max();
            assert!(error <= 1e-12, "ridge {ridge}: {error}");
        }
    }
}
