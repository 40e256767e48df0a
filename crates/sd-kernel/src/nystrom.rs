//! Self-distillation of Nyström kernel ridge regression: the exact routes' procedure in the
//! `M`-dimensional feature space of `M` landmark points, for training sets whose `n x n` kernel
//! matrix does not fit in memory.
//!
//! The model is `f(x) = k_M(x)^T beta`, with `k_M(x)` the kernel values between `x` and the
//! landmarks `z_1, ..., z_M` (chosen by the caller, e.g. uniformly without replacement). Fitting
//! targets `t` solves `(K_MN K_NM + lambda K_MM) beta = K_MN t`: ridge regression on the features
//! `Phi = K_NM R^-T`, where `K_MM + eps I = R R^T` (Cholesky). The jitter `eps` is
//! [`JITTER`] times the mean of `K_MM`'s diagonal, multiplied by 100 until the factorisation
//! succeeds (landmarks that coincide make `K_MM` singular); it is reported.
//!
//! One factorisation serves every step, every alpha and the limit:
//! - `Phi^T Phi = V D V^T` (eigenvalues descending);
//! - in the coordinates `g = V^T R^T beta`, step 0 is `g = w / (d + lambda)` with `w = V^T Phi^T y`;
//! - step `t` is `g_t = (alpha w + (1 - alpha) D g_(t-1)) / (d + lambda)`, because the previous
//!   step's fitted values `Phi V g_(t-1)` project back to `D g_(t-1)`.
//!
//! Each step then costs `O(M m)` for the coefficients and `O(N M m)` for the fitted values
//! (`m` outputs), not `O(N M^2)`. The spectral form of [`crate::spectral`] holds with the
//! eigenvalues `d` of `Phi^T Phi`: the fitted values are `U B(t) U^T y` with
//! `U = Phi V D^-1/2`, so the `B` diagonals, the limit (ridge `lambda / alpha`) and `R_k` are
//! reported in this basis. With every training point a landmark (`M = N`), `Phi Phi^T = K` up to
//! the jitter, and the fits are the exact route's.

use faer::{Mat, MatRef};

use crate::dense::DenseMatrix;
use crate::distill::{OptimalAlpha, Schedule, optimal_alpha};
use crate::error::{Error, Result};
use crate::factor::{Eigen, cholesky_in_place, product};
use crate::kernel::{Kernel, cross_gram_matrix};
use crate::spectral;

/// The first jitter tried, relative to the mean diagonal of `K_MM` ([`Nystrom`]).
pub const JITTER: f64 = 1e-10;

/// A Nyström step: `f(x) = k_M(x)^T weights`.
#[derive(Debug, Clone, PartialEq)]
pub struct NystromStep {
    /// The step, from 0 (the first fit).
    pub step: usize,
    /// The ground-truth weight; `None` at step 0.
    pub alpha: Option<f64>,
    /// The unclamped optimum, with [`Schedule::Optimal`].
    pub optimal_alpha: Option<f64>,
    /// Coefficients in the spectral coordinates, `M x m` (what [`NystromEvaluator::predict`]
    /// takes).
    pub coef: Mat<f64>,
    /// Mean squared error of the fitted values against the training targets
    /// ([`Nystrom::train_loss`]); the fitted values themselves are [`Nystrom::fitted`]'s.
    pub train_loss: f64,
    /// The diagonal of `B(t)` in the Nyström spectral basis (eigenvalues descending).
    pub b_diag: Vec<f64>,
}

/// The limit of a constant-alpha run: ridge `lambda / alpha` on the same features.
#[derive(Debug, Clone, PartialEq)]
pub struct NystromLimit {
    /// The ground-truth weight.
    pub alpha: f64,
    /// Spectral coefficients, `M x m`.
    pub coef: Mat<f64>,
    /// Training mean squared error ([`Nystrom::train_loss`]).
    pub train_loss: f64,
    /// The diagonal of `B(inf)`.
    pub b_diag: Vec<f64>,
}

/// A Nyström kernel ridge problem, factorised once ([module docs](self)).
#[derive(Debug)]
pub struct Nystrom<K> {
    kernel: K,
    landmarks: Mat<f64>,
    lower: DenseMatrix,
    jitter: f64,
    lambda: f64,
    eigen: Eigen,
    /// `Phi^T`, `M x N`.
    phi_t: DenseMatrix,
    /// `V^T Phi^T y`, `M x m`.
    projected_y: Mat<f64>,
    /// `|y|^2` (Frobenius).
    y_squared: f64,
    n_train: usize,
    n_outputs: usize,
}

/// Predictions of a [`Nystrom`] model at new points: their features `V^T R^-1 K_M,new`.
#[derive(Debug)]
pub struct NystromEvaluator {
    features_t: Mat<f64>,
}

impl NystromEvaluator {
    /// The predictions of spectral coefficients `coef` (`M x m`) at the points, `r x m`.
    pub fn predict(&self, coef: MatRef<'_, f64>) -> Mat<f64> {
        product(self.features_t.as_ref().transpose(), coef)
    }
}

/// The bytes a Nyström problem holds: `Phi^T` (`M x N`), four `M x M` matrices (the factor,
/// `Phi^T Phi` and the eigenvectors, with one more during the eigendecomposition), and the
/// inputs (`N x d`).
pub fn nystrom_bytes(n: usize, m: usize, d: usize) -> u64 {
    8 * (m as u64 * n as u64 + 4 * (m as u64).pow(2) + n as u64 * d as u64)
}

impl<K: Kernel> Nystrom<K> {
    /// Builds the model on training inputs `x` (`N x d`) and targets `y` (`N x m`) with the rows
    /// `landmarks` of `x` as landmarks (distinct indices, at least one).
    pub fn new(
        kernel: K,
        x: MatRef<'_, f64>,
        y: MatRef<'_, f64>,
        lambda: f64,
        landmarks: &[usize],
    ) -> Result<Self> {
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(Error::InvalidLambda(lambda));
        }
        let (n, m) = (x.nrows(), landmarks.len());
        if n == 0 {
            return Err(Error::NoTrainingPoints);
        }
        if y.nrows() != n {
            return Err(Error::ShapeMismatch {
                what: "y",
                dimension: "rows",
                expected: n,
                found: y.nrows(),
            });
        }
        if m == 0 || m > n || landmarks.iter().any(|&i| i >= n) {
            return Err(Error::Landmarks { landmarks: m, n });
        }
        let needed = nystrom_bytes(n, m, x.ncols());
        if let Some(available) = crate::memory::available_bytes()
            && needed > available
        {
            return Err(Error::NystromTooLarge {
                n,
                landmarks: m,
                needed_mib: needed.div_ceil(1 << 20),
                available_mib: available >> 20,
            });
        }
        let points = Mat::from_fn(m, x.ncols(), |i, j| x[(landmarks[i], j)]);
        let gram = crate::kernel::gram_matrix(&kernel, points.as_ref());
        let mean_diagonal = (0..m).map(|i| gram[(i, i)]).sum::<f64>() / m as f64;
        let mut jitter = JITTER * mean_diagonal.max(f64::MIN_POSITIVE);
        let lower = loop {
            let mut factor = gram.par_clone();
            match cholesky_in_place(&mut factor, jitter) {
                Ok(()) => break factor,
                Err(_) if jitter < 1e-3 * mean_diagonal => jitter *= 100.0,
                Err(e) => return Err(e),
            }
        };
        drop(gram);
        // Phi^T = R^-1 K_MN, in place.
        let mut phi_t = cross_gram_matrix(&kernel, points.as_ref(), x);
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(
            lower.as_ref(),
            phi_t.as_mut(),
            faer::get_global_parallelism(),
        );
        let mut covariance = DenseMatrix::zeros(m, m);
        crate::kernel::lower_gram_into(&mut covariance, phi_t.as_ref());
        covariance.mirror_lower();
        let eigen = Eigen::new(covariance, lambda)?;
        let projected_y = product(
            eigen.vectors().transpose(),
            product(phi_t.as_ref(), y).as_ref(),
        );
        Ok(Self {
            kernel,
            landmarks: points,
            lower,
            jitter,
            lambda,
            eigen,
            phi_t,
            projected_y,
            y_squared: (0..y.ncols())
                .map(|j| y.col(j).iter().map(|v| v * v).sum::<f64>())
                .sum(),
            n_train: y.nrows(),
            n_outputs: y.ncols(),
        })
    }

    /// The jitter added to `K_MM`'s diagonal.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The eigenvalues of `Phi^T Phi`, descending.
    pub fn eigenvalues(&self) -> &[f64] {
        self.eigen.eigenvalues()
    }

    /// Landmarks.
    pub fn n_landmarks(&self) -> usize {
        self.landmarks.nrows()
    }

    /// `f(x) = k_M(x)^T beta`: the weights `beta = R^-T V coef` of spectral coefficients.
    pub fn weights(&self, coef: MatRef<'_, f64>) -> Mat<f64> {
        let mut beta = product(self.eigen.vectors(), coef);
        faer::linalg::triangular_solve::solve_upper_triangular_in_place(
            self.lower.as_ref().transpose(),
            beta.as_mut(),
            faer::get_global_parallelism(),
        );
        beta
    }

    /// The fitted values `Phi V coef` at the training inputs.
    /// Fitted values at the training inputs of spectral coefficients `coef` (`M x m`): `N x m`,
    /// `Phi V coef`, one pass over `Phi` (`2 N M m` flops).
    pub fn fitted(&self, coef: MatRef<'_, f64>) -> Mat<f64> {
        let in_features = product(self.eigen.vectors(), coef);
        product(self.phi_t.as_ref().transpose(), in_features.as_ref())
    }

    /// The training mean squared error of spectral coefficients `coef`, without the fitted values:
    /// the columns of `Phi V` are orthogonal with squared norms the eigenvalues `d`, so
    /// `|Phi V c - y|^2 = sum_k d_k c_k^2 - 2 c . (V^T Phi^T y) + |y|^2`: `O(M m)` instead of a
    /// pass over the `N x M` features (a sweep's cost there: docs/benchmarks.md, "Figures behind the code's choices").
    pub fn train_loss(&self, coef: MatRef<'_, f64>) -> f64 {
        let d = self.eigen.eigenvalues();
        let mut sum = self.y_squared;
        for j in 0..coef.ncols() {
            for (k, &dk) in d.iter().enumerate() {
                let c = coef[(k, j)];
                sum += c * (dk * c - 2.0 * self.projected_y[(k, j)]);
            }
        }
        sum.max(0.0) / (self.n_train * self.n_outputs).max(1) as f64
    }

    /// Coefficients of the fit to `alpha y + (1 - alpha) (fitted of previous)`, ridge `ridge`.
    fn next(&self, alpha: f64, previous: Option<&Mat<f64>>, ridge: f64) -> Mat<f64> {
        let d = self.eigen.eigenvalues();
        Mat::from_fn(self.projected_y.nrows(), self.n_outputs, |k, j| {
            let teacher = previous.map_or(0.0, |g| d[k] * g[(k, j)]);
            let w = match previous {
                Some(_) => alpha * self.projected_y[(k, j)] + (1.0 - alpha) * teacher,
                None => self.projected_y[(k, j)],
            };
            w / (d[k] + ridge)
        })
    }

    /// An evaluator at new inputs `x_new` (`r x d`).
    pub fn at(&self, x_new: MatRef<'_, f64>) -> Result<NystromEvaluator> {
        if x_new.ncols() != self.landmarks.ncols() {
            return Err(Error::ShapeMismatch {
                what: "new inputs",
                dimension: "columns",
                expected: self.landmarks.ncols(),
                found: x_new.ncols(),
            });
        }
        let mut cross = cross_gram_matrix(&self.kernel, self.landmarks.as_ref(), x_new);
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(
            self.lower.as_ref(),
            cross.as_mut(),
            faer::get_global_parallelism(),
        );
        Ok(NystromEvaluator {
            features_t: product(self.eigen.vectors().transpose(), cross.as_ref()),
        })
    }

    /// Runs steps `0..steps` ([`Schedule`] as for the exact routes).
    pub fn distill(&self, schedule: &Schedule, steps: usize) -> Result<Vec<NystromStep>> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        let check = |alpha: f64, step| {
            if alpha.is_finite() && (0.0..=1.0).contains(&alpha) {
                Ok(alpha)
            } else {
                Err(Error::InvalidAlpha {
                    alpha,
                    step: Some(step),
                })
            }
        };
        let reference = match schedule {
            Schedule::Optimal(OptimalAlpha { x, targets, .. }) => {
                Some((self.at(x.as_ref())?, targets))
            }
            _ => None,
        };
        let eigenvalues = self.eigen.eigenvalues();
        let a = spectral::shrinkage(eigenvalues, self.lambda);
        let first = self.next(1.0, None, self.lambda);
        let mut out: Vec<NystromStep> = vec![NystromStep {
            step: 0,
            alpha: None,
            optimal_alpha: None,
            train_loss: self.train_loss(first.as_ref()),
            coef: first.clone(),
            b_diag: a.clone(),
        }];
        for step in 1..steps {
            let previous = out.last().expect("step 0 is there");
            let (alpha, optimal) = match schedule {
                Schedule::Constant(alpha) => (check(*alpha, step)?, None),
                Schedule::PerStep(alphas) => {
                    let alpha = *alphas.get(step).ok_or(Error::ScheduleTooShort {
                        found: alphas.len(),
                        steps,
                    })?;
                    (check(alpha, step)?, None)
                }
                Schedule::Optimal(optimal) => {
                    let (evaluator, targets) = reference.as_ref().expect("built above");
                    let student = self.next(0.0, Some(&previous.coef), self.lambda);
                    let u1 = evaluator.predict(first.as_ref());
                    let u0 = evaluator.predict(student.as_ref());
                    let best = optimal_alpha(targets.as_ref(), u1.as_ref(), u0.as_ref());
                    let used = match best {
                        Some(value) if optimal.clamp => value.clamp(0.0, 1.0),
                        Some(value) => value,
                        None => 1.0,
                    };
                    (used, best)
                }
            };
            let coef = self.next(alpha, Some(&previous.coef), self.lambda);
            let b_diag = spectral::next_b_diag(&a, &previous.b_diag, alpha);
            out.push(NystromStep {
                step,
                alpha: Some(alpha),
                optimal_alpha: optimal,
                train_loss: self.train_loss(coef.as_ref()),
                coef,
                b_diag,
            });
        }
        Ok(out)
    }

    /// The limit of a constant-`alpha` run: ridge `lambda / alpha` (the zero function at 0).
    pub fn limit(&self, alpha: f64) -> Result<NystromLimit> {
        if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) {
            return Err(Error::InvalidAlpha { alpha, step: None });
        }
        let coef = if alpha == 0.0 {
            Mat::zeros(self.projected_y.nrows(), self.n_outputs)
        } else {
            self.next(1.0, None, self.lambda / alpha)
        };
        Ok(NystromLimit {
            alpha,
            train_loss: self.train_loss(coef.as_ref()),
            coef,
            b_diag: spectral::limit_b_diag(self.eigen.eigenvalues(), self.lambda, alpha),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rbf, SelfDistillation, Solver};

    fn problem(n: usize, d: usize) -> (Mat<f64>, Mat<f64>) {
        let x = Mat::from_fn(n, d, |i, j| ((i * 37 + j * 11) % 101) as f64 / 101.0);
        let y = Mat::from_fn(n, 2, |i, j| ((i + 3 * j) as f64 * 0.7).sin());
        (x, y)
    }

    #[test]
    fn every_point_a_landmark_is_the_exact_route() {
        let (x, y) = problem(60, 3);
        let all: Vec<usize> = (0..60).rev().collect();
        let nystrom =
            Nystrom::new(Rbf::new(2.0).unwrap(), x.as_ref(), y.as_ref(), 0.1, &all).unwrap();
        let exact = SelfDistillation::new(
            Rbf::new(2.0).unwrap(),
            x.as_ref(),
            y.as_ref(),
            0.1,
            Solver::Eigen,
        )
        .unwrap();
        let schedule = Schedule::Constant(0.3);
        let ours = nystrom.distill(&schedule, 5).unwrap();
        let theirs = exact.distill(&schedule, 5).unwrap();
        let x_new = Mat::from_fn(7, 3, |i, j| (i * 3 + j) as f64 / 25.0);
        let (ours_at, theirs_at) = (
            nystrom.at(x_new.as_ref()).unwrap(),
            exact.at(x_new.as_ref()).unwrap(),
        );
        let close = |a: MatRef<'_, f64>, b: MatRef<'_, f64>| {
            let scale = b.norm_max().max(1.0);
            (a - b).norm_max() <= 1e-6 * scale
        };
        for (a, b) in ours.iter().zip(&theirs) {
            let fitted = nystrom.fitted(a.coef.as_ref());
            assert!(
                close(fitted.as_ref(), b.fit.fitted.as_ref()),
                "step {}",
                a.step
            );
            let direct = crate::mean_squared_error(fitted.as_ref(), y.as_ref());
            assert!(
                (a.train_loss - direct).abs() <= 1e-10 * direct.max(1e-12),
                "step {}: {} against {direct}",
                a.step,
                a.train_loss
            );
            assert!(close(
                ours_at.predict(a.coef.as_ref()).as_ref(),
                theirs_at.predict(b.fit.dual_coef.as_ref()).as_ref()
            ));
            let (ob, tb) = (&a.b_diag, b.b_diag.as_ref().unwrap());
            assert!(
                ob.iter().zip(tb).all(|(p, q)| (p - q).abs() < 1e-6),
                "step {}",
                a.step
            );
        }
        let (limit, exact_limit) = (nystrom.limit(0.3).unwrap(), exact.limit(0.3).unwrap());
        assert!(close(
            nystrom.fitted(limit.coef.as_ref()).as_ref(),
            exact_limit.fit.fitted.as_ref()
        ));
        // The weights predict as k_M(x)^T beta.
        let beta = nystrom.weights(ours[2].coef.as_ref());
        let kernel = Rbf::new(2.0).unwrap();
        let row = |m: &Mat<f64>, i: usize| -> Vec<f64> { m.row(i).iter().copied().collect() };
        let direct: f64 = (0..60)
            .map(|k| kernel.eval(&row(&x_new, 4), &row(&x, all[k])) * beta[(k, 1)])
            .sum();
        assert!((direct - ours_at.predict(ours[2].coef.as_ref())[(4, 1)]).abs() < 1e-8);
    }

    #[test]
    fn coinciding_landmarks_get_more_jitter_not_an_error() {
        let (mut x, y) = problem(40, 2);
        for j in 0..2 {
            x[(1, j)] = x[(0, j)];
        }
        let nystrom = Nystrom::new(
            Rbf::new(0.5).unwrap(),
            x.as_ref(),
            y.as_ref(),
            0.1,
            &[0, 1, 2, 3],
        )
        .unwrap();
        assert!(nystrom.jitter() > 0.0);
        let steps = nystrom.distill(&Schedule::Constant(0.5), 3).unwrap();
        assert!(steps.iter().all(|s| s.train_loss.is_finite()));
        let bad =
            Nystrom::new(Rbf::new(0.5).unwrap(), x.as_ref(), y.as_ref(), 0.1, &[]).unwrap_err();
        assert!(bad.to_string().contains("landmarks"), "{bad}");
        assert!(Nystrom::new(Rbf::new(0.5).unwrap(), x.as_ref(), y.as_ref(), 0.1, &[40]).is_err());
    }
}
