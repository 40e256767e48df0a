//! Many ridges from one Cholesky factor: multi-shift conjugate gradients.
//!
//! The limits of a sweep are kernel ridge regressions with ridges `mu = lambda / alpha`, one per
//! alpha in `(0, 1)`, and each would need its own factorisation. With `P = K + lambda I = L L^T`
//! already factorised and `delta = mu - lambda > 0`, the system `(K + mu I) c = z` is
//! `(P + delta I) c = z`; multiplied by `A = P^-1` it becomes
//!
//! `(A + s I) x = b` with `b = A z`, `s = 1 / delta`, `c = s x`.
//!
//! Every ridge is then a shift `s` of the same symmetric positive definite `A`, and shifted
//! systems share their Krylov spaces: conjugate gradients on the smallest shift give every other
//! shift's iterates from a few scalars per step (multi-shift CG: Frommer, "BiCGStab(l) for families
//! of shifted linear systems", Computing 70, 2003; Jegerlehner, hep-lat/9612014). One iteration
//! applies `A` once, two triangular solves with `L`, for all ridges together. The eigenvalues of
//! `A` lie in `(0, 1 / lambda]`, so shift `s`'s condition number is at most
//! `1 + 1 / (lambda s) = mu / lambda = 1 / alpha`: for alpha = 0.1, 10. The ten limits of a
//! sweep take a few dozen iterations, a fraction of ten factorisations' time (measured:
//! docs/benchmarks.md, "Figures behind the code's choices").
//!
//! The residual of the original system is `z - (K + mu I) c = P (b - (A + s I) x)`. `P r` and
//! `P p` of the base system follow from recurrences (`P (A + s I) p = p + s P p`), so iterating
//! stops when that residual meets LAPACK `dsposv`'s backward-error test
//! `|z - (K + mu I) c|_inf <= sqrt(n) |c|_inf |K + mu I|_inf eps` with a margin of 10; every answer
//! is then checked against the test with a product with `K` before it is returned, as
//! [`crate::factor::refined_solve`]'s are.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::cholesky::llt;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

use crate::dense::DenseMatrix;

/// Ridges at most this many times `lambda` (alpha at least 1 / this) are solved by
/// [`shifted_solve`]. The condition number `mu / lambda` bounds the iterations (at most about 80
/// here), and it also bounds the accuracy: rounding leaves a residual of about `eps |P| (mu /
/// lambda) |c|`, against `sqrt(n) eps |K + mu I| |c|` allowed. At `mu / lambda = 100` and
/// `n = 300` that failed the test by a third; at 20 it passes with room to spare.
pub const SHIFTED_MAX_RATIO: f64 = 20.0;

/// Fewest ridges [`shifted_solve`] is used for. One ridge is cheaper refined from single
/// precision; from two on the shared iterations win (measured on Fashion-MNIST:
/// docs/benchmarks.md, "Figures behind the code's choices").
pub const SHIFTED_MIN_RIDGES: usize = 2;

/// The recurrence's residual must meet this fraction of the final test's bound: the true residual
/// drifts from it by rounding, and a failed test costs a factorisation.
const RECURRENCE_MARGIN: f64 = 0.1;

/// Iterations before [`shifted_solve`] gives up on the ridges that have not converged.
const MAX_ITERATIONS: usize = 200;

/// Solves `(K + ridges[r] I) c_r = targets` for every ridge, each larger than `lambda` and at most
/// [`SHIFTED_MAX_RATIO`] times it (so `mu / lambda <= 20`), from the Cholesky factor `lower` of `K + lambda I`. Entry `r` is
/// `None` where the answer does not pass `dsposv`'s backward error test
/// `|z - (K + mu I) c|_inf <= sqrt(n) |c|_inf |K + mu I|_inf eps` in every column (or did not
/// converge): the caller then factorises for that ridge.
pub(crate) fn shifted_solve(
    gram: &DenseMatrix,
    lower: MatRef<'_, f64>,
    lambda: f64,
    ridges: &[f64],
    targets: MatRef<'_, f64>,
    par: Par,
) -> Vec<Option<Mat<f64>>> {
    let (n, m) = (targets.nrows(), targets.ncols());
    if ridges.is_empty() {
        return Vec::new();
    }
    debug_assert!(ridges.iter().all(|&mu| mu > lambda));
    let shifts: Vec<f64> = ridges.iter().map(|&mu| 1.0 / (mu - lambda)).collect();
    let base = shifts.iter().copied().fold(f64::INFINITY, f64::min);
    // Each ridge's shift relative to the base system's.
    let sigma: Vec<f64> = shifts.iter().map(|&s| s - base).collect();
    let apply_inverse = |block: &mut Mat<f64>| {
        let mut no_memory = MemBuffer::new(StackReq::EMPTY);
        llt::solve::solve_in_place(lower, block.as_mut(), par, MemStack::new(&mut no_memory));
    };

    let mut b = targets.to_owned();
    apply_inverse(&mut b);
    let mut residual = b.clone();
    let mut direction = b.clone();
    // P r and P p of the base system, by recurrences (P q = P (A + base I) p = p + base P p): the
    // residual of the original system, P r_T, without a pass over K. P b = z.
    let mut original_residual = targets.to_owned();
    let mut original_direction = targets.to_owned();
    let mut x: Vec<Mat<f64>> = ridges.iter().map(|_| Mat::zeros(n, m)).collect();
    let mut directions: Vec<Mat<f64>> = ridges.iter().map(|_| b.clone()).collect();
    // Per ridge and column: zeta(k), zeta(k - 1), and whether it has converged.
    let mut zeta = vec![vec![1.0f64; m]; ridges.len()];
    let mut zeta_previous = zeta.clone();
    let mut rr: Vec<f64> = (0..m)
        .map(|j| dot(residual.col(j), residual.col(j)))
        .collect();
    // A zero column has the zero solution, already in x.
    let mut done: Vec<Vec<bool>> = ridges
        .iter()
        .map(|_| rr.iter().map(|&norm| norm == 0.0).collect())
        .collect();
    let mut alpha_previous = vec![1.0f64; m];
    let mut beta_previous = vec![0.0f64; m];
    // The final test's bound over |c|_inf, with a margin for the drift between the recurrence and
    // the true residual.
    let gram_norm = gram.infinity_norm();
    let bounds: Vec<f64> = ridges
        .iter()
        .map(|&mu| (n as f64).sqrt() * (gram_norm + mu) * f64::EPSILON)
        .collect();

    let mut product = Mat::<f64>::zeros(n, m);
    for _ in 0..MAX_ITERATIONS {
        if done.iter().flatten().all(|&d| d) {
            break;
        }
        // q = (A + base I) p.
        product.copy_from(&direction);
        apply_inverse(&mut product);
        for j in 0..m {
            for (q, p) in product.col_mut(j).iter_mut().zip(direction.col(j).iter()) {
                *q += base * p;
            }
        }
        let alpha: Vec<f64> = (0..m)
            .map(|j| {
                let curvature = dot(direction.col(j), product.col(j));
                if rr[j] == 0.0 || curvature <= 0.0 {
                    0.0
                } else {
                    rr[j] / curvature
                }
            })
            .collect();
        for (j, &step) in alpha.iter().enumerate() {
            let (r_col, q_col) = (residual.col_mut(j), product.col(j));
            for (r, q) in r_col.iter_mut().zip(q_col.iter()) {
                *r -= step * q;
            }
            // P r -= alpha (p + base P p).
            let (pr, p, pp) = (
                original_residual.col_mut(j),
                direction.col(j),
                original_direction.col(j),
            );
            for ((pr, p), pp) in pr.iter_mut().zip(p.iter()).zip(pp.iter()) {
                *pr -= step * (p + base * pp);
            }
        }
        let rr_next: Vec<f64> = (0..m)
            .map(|j| dot(residual.col(j), residual.col(j)))
            .collect();
        let original_largest: Vec<f64> = (0..m)
            .map(|j| {
                original_residual
                    .col(j)
                    .iter()
                    .fold(0f64, |a, v| a.max(v.abs()))
            })
            .collect();
        let beta: Vec<f64> = (0..m)
            .map(|j| {
                if rr[j] == 0.0 {
                    0.0
                } else {
                    rr_next[j] / rr[j]
                }
            })
            .collect();
        for r in 0..ridges.len() {
            for j in 0..m {
                if done[r][j] || alpha[j] == 0.0 {
                    continue;
                }
                let (z, z_prev) = (zeta[r][j], zeta_previous[r][j]);
                let denominator = alpha[j] * beta_previous[j] * (z_prev - z)
                    + z_prev * alpha_previous[j] * (1.0 + sigma[r] * alpha[j]);
                let z_next = z * z_prev * alpha_previous[j] / denominator;
                let alpha_r = alpha[j] * z_next / z;
                let beta_r = beta[j] * (z_next / z) * (z_next / z);
                let x_col = x[r].col_mut(j);
                let p_col = directions[r].col_mut(j);
                let mut largest = 0f64;
                for ((xi, pi), ri) in x_col
                    .iter_mut()
                    .zip(p_col.iter_mut())
                    .zip(residual.col(j).iter())
                {
                    *xi += alpha_r * *pi;
                    *pi = z_next * ri + beta_r * *pi;
                    largest = largest.max(xi.abs());
                }
                zeta_previous[r][j] = z;
                zeta[r][j] = z_next;
                // The original residual of this ridge is zeta P r; c = s x.
                if z_next.abs() * original_largest[j]
                    <= RECURRENCE_MARGIN * bounds[r] * shifts[r] * largest
                    || !z_next.is_finite()
                {
                    done[r][j] = true;
                }
            }
        }
        for (j, &weight) in beta.iter().enumerate() {
            let (p_col, r_col) = (direction.col_mut(j), residual.col(j));
            for (p, r) in p_col.iter_mut().zip(r_col.iter()) {
                *p = r + weight * *p;
            }
            let (pp, pr) = (original_direction.col_mut(j), original_residual.col(j));
            for (pp, pr) in pp.iter_mut().zip(pr.iter()) {
                *pp = pr + weight * *pp;
            }
        }
        alpha_previous = alpha;
        beta_previous = beta;
        rr = rr_next;
    }

    // c = s x, then the backward error test on the original systems, all in one product with K.
    let solutions: Vec<Mat<f64>> = x
        .into_iter()
        .zip(&shifts)
        .map(|(x, &s)| x * faer::Scale(s))
        .collect();
    let mut all = Mat::<f64>::zeros(n, m * ridges.len());
    for (r, solution) in solutions.iter().enumerate() {
        all.subcols_mut(r * m, m).copy_from(solution);
    }
    let mut checked = Mat::<f64>::zeros(n, m * ridges.len());
    matmul(
        checked.as_mut(),
        Accum::Replace,
        gram.as_ref(),
        all.as_ref(),
        1.0,
        par,
    );
    solutions
        .into_iter()
        .enumerate()
        .map(|(r, solution)| {
            let (mu, bound) = (ridges[r], bounds[r]);
            let passes = (0..m).all(|j| {
                let kc = checked.col(r * m + j);
                let c = solution.col(j);
                let largest_c = c.iter().fold(0f64, |a, v| a.max(v.abs()));
                let largest_r = (0..n).fold(0f64, |a, i| {
                    a.max((targets[(i, j)] - kc[i] - mu * c[i]).abs())
                });
                largest_r <= bound * largest_c && largest_c.is_finite()
            });
            passes.then_some(solution)
        })
        .collect()
}

fn dot(a: faer::ColRef<'_, f64>, b: faer::ColRef<'_, f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| x * y).sum()
}
