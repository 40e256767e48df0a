//! Iterative self-distillation of kernel ridge regression with weighted ground-truth targets.

use faer::{Mat, MatRef};

use crate::dense::DenseMatrix;
use crate::error::{Error, Result};
use crate::factor::{Cholesky, Eigen, Fit, product};
use crate::kernel::{Kernel, cross_gram_matrix, gram_matrix};
use crate::memory;
use crate::spectral;

/// How the kernel matrix is factorised once for all steps.
///
/// An eigendecomposition costs about as much as 15 Cholesky factorisations
/// ([`EIGEN_BREAK_EVEN_RIDGES`]; docs/benchmarks.md, "Kernel ridge self-distillation"). One run
/// (one alpha, its steps and its limit) is
/// cheapest with [`Solver::Cholesky`], and so is a sweep: its limits (ridges up to
/// [`crate::SHIFTED_MAX_RATIO`] `lambda`, alpha from 0.05) come from the same factor. The
/// eigendecomposition pays off when the spectrum is wanted (`B` diagonals, eigenvalues) or for
/// many ridges that need factorisations of their own (about 15 or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Solver {
    /// `K + lambda I = L L^T`: two triangular solves per step; the limits of a sweep together by
    /// multi-shift conjugate gradients on the same factor, a single limit (or a ridge past
    /// [`crate::SHIFTED_MAX_RATIO`] `lambda`) by one more factorisation.
    Cholesky,
    /// `K = V D V^T`: `O(n^2)` per step and per limit, and the spectrum.
    Eigen,
}

impl Solver {
    /// The cheaper solver for a workload: [`Solver::Eigen`] when the spectrum is needed or when the
    /// work needs more ridges with factorisations of their own (limits with alpha below
    /// `1 / SHIFTED_MAX_RATIO`, 0.05) than [`EIGEN_BREAK_EVEN_RIDGES`]; [`Solver::Cholesky`]
    /// otherwise.
    pub fn recommended(need_spectrum: bool, distinct_ridges: usize) -> Self {
        if need_spectrum || distinct_ridges > EIGEN_BREAK_EVEN_RIDGES {
            Solver::Eigen
        } else {
            Solver::Cholesky
        }
    }

    /// Dense `n x n` matrices alive at the solver's peak: `K`, the factor and one more factor for a
    /// limit (Cholesky); `K` (tridiagonalised in place), the eigenvectors and divide and conquer's
    /// two buffers (Eigen).
    pub fn peak_matrices(self) -> usize {
        match self {
            Solver::Cholesky => 3,
            Solver::Eigen => 4,
        }
    }
}

/// Roughly how many Cholesky factorisations one eigendecomposition costs (measured with the Gram
/// build, n = 1000 to 4000: docs/benchmarks.md, "Kernel ridge self-distillation"); past this
/// many ridges [`Solver::recommended`] picks the eigen solver.
pub const EIGEN_BREAK_EVEN_RIDGES: usize = 15;

/// Which ground-truth weight each distillation step uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// The same `alpha` in `[0, 1]` at every step.
    Constant(f64),
    /// `alphas[t]` at step `t`; at least as many entries as steps. `alphas[0]` belongs to step
    /// 0, the first fit, which has no teacher and so no use for it (it is still checked to lie in
    /// `[0, 1]`).
    PerStep(Vec<f64>),
    /// The optimal alpha of each step against reference targets (Algorithm 1 of the paper's NeurIPS
    /// version), chosen greedily, step after step.
    Optimal(OptimalAlpha),
}

/// Reference data for [`Schedule::Optimal`]: inputs where the truth is known (held-out data, or a
/// grid on which the true function is known) and the targets there.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimalAlpha {
    /// Reference inputs, `r x d`.
    pub x: Mat<f64>,
    /// Reference targets, `r x m`.
    pub targets: Mat<f64>,
    /// Clamp each optimum into `[0, 1]`. Off, the optimum is used as it is, even outside.
    pub clamp: bool,
}

/// One distillation step's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The step, from 0 (the workspace's numbering, see `sd_alpha`): step 0 is plain kernel ridge
    /// regression, the first fit; step `t >= 1` the `t`-th distillation step.
    pub step: usize,
    /// The ground-truth weight of this step's targets `alpha * y + (1 - alpha) * yhat(t-1)`;
    /// `None` at step 0, which fits `y` alone.
    pub alpha: Option<f64>,
    /// The unclamped optimum when the schedule is [`Schedule::Optimal`] (equal to `alpha` unless
    /// clamping changed it).
    pub optimal_alpha: Option<f64>,
    /// Dual coefficients and fitted values.
    pub fit: Fit,
    /// The step's coordinates in the problem's [`ChainBasis`]: `fit` is
    /// `basis.fit(&weights)`, and its predictions anywhere are the same combination of the basis'
    /// predictions ([`ChainBasis::combine`]). `t + 1` weights at step `t`.
    pub weights: Vec<f64>,
    /// The diagonal of `B(t)`, in the order of the eigenvalues (descending); eigen solver only.
    pub b_diag: Option<Vec<f64>>,
}

/// The basis every distillation chain of a problem lives in.
///
/// Let `M = (K + lambda I)^-1 K`, the map from a fit's dual coefficients to those of the fit to
/// its own predictions (the `alpha = 0` student). Step `t` is
/// `c(t) = alpha_t c(0) + (1 - alpha_t) M c(t-1)`, so `c(t) = sum_k w_k(t) u_k` with the basis
/// `u_k = M^k c(0)` and the weights of [`chain_weights`]. For alphas in `[0, 1]` the weights are
/// non-negative and sum to 1, and `M` is symmetric with eigenvalues in `[0, 1)`: every step is a
/// convex combination of basis fits, so nothing cancels.
///
/// One solve per basis fit serves any number of chains (constant, per step, or Algorithm 1's),
/// where solving chain by chain costs one per chain and step; predicting the basis at new inputs
/// once gives every step of every chain there.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainBasis {
    /// `u_k` and `K u_k`.
    fits: Vec<Fit>,
}

impl ChainBasis {
    /// Basis fits, one per step of the chains it serves.
    pub fn len(&self) -> usize {
        self.fits.len()
    }

    /// Whether there is no basis fit (never, for a basis built by
    /// [`SelfDistillation::chain_basis`]).
    pub fn is_empty(&self) -> bool {
        self.fits.is_empty()
    }

    /// The basis fits `u_k` (dual coefficients) and `K u_k` (fitted values), `k = 0, 1, ...`.
    pub fn fits(&self) -> &[Fit] {
        &self.fits
    }

    fn outputs(&self) -> usize {
        self.fits.first().map_or(0, |fit| fit.dual_coef.ncols())
    }

    /// The basis' dual coefficients side by side, `n x (len m)`: predict them at new inputs once,
    /// then [`Self::combine`] gives any step's predictions there.
    pub fn dual_coefs(&self) -> Mat<f64> {
        let m = self.outputs();
        let n = self.fits.first().map_or(0, |fit| fit.dual_coef.nrows());
        Mat::from_fn(n, m * self.len(), |i, column| {
            self.fits[column / m].dual_coef[(i, column % m)]
        })
    }

    /// `sum_k weights[k] V_k`, where `V_k` is columns `[k m, (k + 1) m)` of `values`: anything
    /// linear in the dual coefficients (predictions at new inputs) of the step with these weights.
    ///
    /// # Panics
    /// If `values` has fewer than `weights.len() m` columns.
    pub fn combine(&self, values: MatRef<'_, f64>, weights: &[f64]) -> Mat<f64> {
        let m = self.outputs();
        assert!(
            values.ncols() >= weights.len() * m,
            "values of {} basis fits, weights of {}",
            values.ncols() / m.max(1),
            weights.len()
        );
        let mut out = Mat::zeros(values.nrows(), m);
        for (k, &weight) in weights.iter().enumerate() {
            if weight == 0.0 {
                continue;
            }
            for j in 0..m {
                let (to, from) = (out.col_mut(j), values.col(k * m + j));
                for (to, from) in to.iter_mut().zip(from.iter()) {
                    *to += weight * from;
                }
            }
        }
        out
    }

    /// The fit with these weights: dual coefficients and fitted values.
    ///
    /// # Panics
    /// If there are more weights than basis fits.
    pub fn fit(&self, weights: &[f64]) -> Fit {
        assert!(weights.len() <= self.len(), "more weights than basis fits");
        let combine = |part: fn(&Fit) -> &Mat<f64>| {
            let first = part(&self.fits[0]);
            let mut out = Mat::<f64>::zeros(first.nrows(), first.ncols());
            for (fit, &weight) in self.fits.iter().zip(weights) {
                if weight != 0.0 {
                    out += part(fit) * faer::Scale(weight);
                }
            }
            out
        };
        Fit {
            dual_coef: combine(|fit| &fit.dual_coef),
            fitted: combine(|fit| &fit.fitted),
        }
    }
}

/// The weights of step `t` in the [`ChainBasis`] from those of step `t - 1` and `alpha_t`:
/// `w_0(t) = alpha_t`, `w_{k+1}(t) = (1 - alpha_t) w_k(t - 1)`. Step 0's weights are `[1]`.
pub fn chain_weights(previous: &[f64], alpha: f64) -> Vec<f64> {
    std::iter::once(alpha)
        .chain(previous.iter().map(|w| (1.0 - alpha) * w))
        .collect()
}

/// The limit of a constant-`alpha` run: kernel ridge regression with ridge `lambda / alpha`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// The ground-truth weight.
    pub alpha: f64,
    /// `lambda / alpha`; infinite at `alpha = 0`, where the limit is the zero function.
    pub ridge: f64,
    /// Dual coefficients and fitted values.
    pub fit: Fit,
    /// The diagonal of `B(inf) = D (D + (lambda / alpha) I)^-1`; eigen solver only.
    pub b_diag: Option<Vec<f64>>,
}

#[derive(Debug)]
enum Factored {
    Cholesky(Cholesky),
    Eigen(Eigen),
}

impl Factored {
    fn fit(&self, targets: MatRef<'_, f64>) -> Fit {
        match self {
            Factored::Cholesky(cholesky) => cholesky.fit(targets),
            Factored::Eigen(eigen) => eigen.fit(targets),
        }
    }
}

/// A kernel ridge regression problem with its kernel matrix factorised once, ready for any number
/// of distillation runs, limits and predictions.
///
/// The model: training inputs `X` (`n x d`), targets `Y` (`n x m`), a [`Kernel`], ridge
/// `lambda > 0`. Step 0 fits `c(0) = (K + lambda I)^-1 Y`; step `t >= 1` fits the same kernel ridge
/// regression to `alpha_t * Y + (1 - alpha_t) * Yhat(t-1)`, where `Yhat(t-1) = K c(t-1)` are the
/// previous step's predictions at the training inputs.
#[derive(Debug)]
pub struct SelfDistillation<K> {
    kernel: K,
    x: Mat<f64>,
    y: Mat<f64>,
    lambda: f64,
    factored: Factored,
}

/// Refuses a matrix with an infinite or NaN entry, naming the first (in column order). Columns
/// are checked in parallel, each in code compiled for the best instruction set ([`pulp`]): the
/// kernel matrices checked here have `10^8` entries, and a scalar pass in the baseline's SSE
/// encoding, right after faer's AVX-512 kernels, paid a transition penalty on every entry.
fn check_finite(what: &'static str, m: MatRef<'_, f64>) -> Result<()> {
    use rayon::prelude::*;
    struct AllFinite<'a>(&'a [f64]);
    impl pulp::WithSimd for AllFinite<'_> {
        type Output = bool;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> bool {
            // Infinite or NaN: all exponent bits set. A branch-free OR over the column
            // vectorises.
            const EXPONENT: u64 = 0x7ff0_0000_0000_0000;
            let mut bad = false;
            for &x in self.0 {
                bad |= x.to_bits() & EXPONENT == EXPONENT;
            }
            !bad
        }
    }
    let column_is_finite = |column: usize| match m.col(column).try_as_col_major() {
        Some(contiguous) => pulp::Arch::new().dispatch(AllFinite(contiguous.as_slice())),
        None => m.col(column).iter().all(|v| v.is_finite()),
    };
    let Some(column) = (0..m.ncols())
        .into_par_iter()
        .find_first(|&column| !column_is_finite(column))
    else {
        return Ok(());
    };
    let (row, &value) = m
        .col(column)
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
        .expect("the column has a non-finite entry");
    Err(Error::NonFinite {
        what,
        row,
        column,
        value,
    })
}

/// Refuses a kernel matrix with an infinite or NaN entry, which finite inputs only give when the
/// kernel overflowed: said so, rather than blamed on the factorisation that fails later.
fn check_kernel_values<K: Kernel + ?Sized>(kernel: &K, m: MatRef<'_, f64>) -> Result<()> {
    check_finite("the kernel matrix", m).map_err(|e| match e {
        Error::NonFinite {
            row, column, value, ..
        } => Error::KernelOverflow {
            kernel: kernel.name().to_string(),
            row,
            column,
            value,
        },
        other => other,
    })
}

fn check_alpha(alpha: f64, step: Option<usize>) -> Result<f64> {
    if alpha.is_finite() && (0.0..=1.0).contains(&alpha) {
        Ok(alpha)
    } else {
        Err(Error::InvalidAlpha { alpha, step })
    }
}

/// [`sd_alpha::optimal_alpha`] over every entry of `r`, `u1` and `u0` (points x outputs): the
/// `alpha` minimising `|r - (alpha u1 + (1 - alpha) u0)|^2`, `<r - u0, u1 - u0> / |u1 - u0|^2`;
/// `None` when `u1` and `u0` coincide.
pub fn optimal_alpha(r: MatRef<'_, f64>, u1: MatRef<'_, f64>, u0: MatRef<'_, f64>) -> Option<f64> {
    sd_alpha::optimal_alpha(
        (0..r.ncols())
            .flat_map(|j| (0..r.nrows()).map(move |i| (i, j)))
            .map(|(i, j)| (r[(i, j)], u1[(i, j)], u0[(i, j)])),
    )
}

impl<K: Kernel> SelfDistillation<K> {
    /// Builds the kernel matrix of `x` and factorises it with `solver`.
    ///
    /// Checks shapes (`x` is `n x d`, `y` is `n x m`, `n, d, m >= 1`), that every entry is finite,
    /// that `lambda` is finite and positive, and, before allocating, that the solver's peak
    /// ([`Solver::peak_matrices`] matrices of `8 n^2` bytes) fits in the memory the system reports
    /// available.
    pub fn new(
        kernel: K,
        x: MatRef<'_, f64>,
        y: MatRef<'_, f64>,
        lambda: f64,
        solver: Solver,
    ) -> Result<Self> {
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(Error::InvalidLambda(lambda));
        }
        let n = x.nrows();
        if n == 0 {
            return Err(Error::NoTrainingPoints);
        }
        if x.ncols() == 0 {
            return Err(Error::NoColumns { what: "x" });
        }
        if y.ncols() == 0 {
            return Err(Error::NoColumns { what: "y" });
        }
        if y.nrows() != n {
            return Err(Error::ShapeMismatch {
                what: "y",
                dimension: "rows",
                expected: n,
                found: y.nrows(),
            });
        }
        check_finite("x", x)?;
        check_finite("y", y)?;
        memory::check_fits(n, solver.peak_matrices(), memory::available_bytes())?;
        let gram = gram_matrix(&kernel, x);
        check_kernel_values(&kernel, gram.as_ref())?;
        let factored = match solver {
            Solver::Cholesky => Factored::Cholesky(Cholesky::new(gram, lambda)?),
            Solver::Eigen => Factored::Eigen(Eigen::new(gram, lambda)?),
        };
        Ok(Self {
            kernel,
            x: x.to_owned(),
            y: y.to_owned(),
            lambda,
            factored,
        })
    }

    /// The solver this problem was factorised with.
    pub fn solver(&self) -> Solver {
        match self.factored {
            Factored::Cholesky(_) => Solver::Cholesky,
            Factored::Eigen(_) => Solver::Eigen,
        }
    }

    /// The kernel.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The ridge `lambda`.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Training points `n`.
    pub fn n_train(&self) -> usize {
        self.x.nrows()
    }

    /// Input dimension `d`.
    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }

    /// Number of target columns `m`.
    pub fn n_outputs(&self) -> usize {
        self.y.ncols()
    }

    /// Training inputs, `n x d`.
    pub fn x(&self) -> MatRef<'_, f64> {
        self.x.as_ref()
    }

    /// Training targets, `n x m`.
    pub fn y(&self) -> MatRef<'_, f64> {
        self.y.as_ref()
    }

    /// The eigenvalues of `K`, descending and clamped at zero (eigen solver only).
    pub fn eigenvalues(&self) -> Option<&[f64]> {
        match &self.factored {
            Factored::Eigen(eigen) => Some(eigen.eigenvalues()),
            Factored::Cholesky(_) => None,
        }
    }

    /// Plain kernel ridge regression on `y`: step 0 of every run.
    pub fn first_fit(&self) -> Fit {
        self.factored.fit(self.y.as_ref())
    }

    /// Runs steps `0..steps` with the given schedule (`steps` counts the first fit): builds the
    /// [`ChainBasis`] of `steps` fits and runs [`Self::distill_in`] on it.
    pub fn distill(&self, schedule: &Schedule, steps: usize) -> Result<Vec<Step>> {
        self.check_schedule(schedule, steps)?;
        self.distill_in(&self.chain_basis(steps)?, schedule)
    }

    /// The [`ChainBasis`] of chains of `steps` steps (counting the first fit): `u_0 = c(0)`, the
    /// first fit, and `u_k = M u_(k-1)`, the fit to `u_(k-1)`'s fitted values; one solve each.
    pub fn chain_basis(&self, steps: usize) -> Result<ChainBasis> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        let mut fits = vec![self.first_fit()];
        for _ in 1..steps {
            let previous = fits.last().expect("the first fit is there");
            fits.push(self.factored.fit(previous.fitted.as_ref()));
        }
        Ok(ChainBasis { fits })
    }

    /// Runs one chain of `basis.len()` steps in `basis` (this problem's, from
    /// [`Self::chain_basis`]): no solve; each step is its weighted sum of basis fits.
    ///
    /// With [`Schedule::Optimal`] (Algorithm 1), step `t >= 1` is `alpha f(0) + (1 - alpha)
    /// f0(t)`, where `f0(t)` is the `alpha = 0` student of the step `t - 1` teacher (its weights
    /// moved one basis fit on), and the best `alpha` against the reference is [`optimal_alpha`]
    /// of the two evaluated at the reference inputs ([`sd_alpha::DEGENERATE_ALPHA`] when they
    /// coincide).
    /// The basis is predicted at the reference inputs once.
    pub fn distill_in(&self, basis: &ChainBasis, schedule: &Schedule) -> Result<Vec<Step>> {
        let steps = basis.len();
        let alphas = self.check_schedule(schedule, steps)?;
        let rows = basis.fits.first().map_or(0, |fit| fit.dual_coef.nrows());
        for (dimension, expected, found) in [
            ("rows", self.n_train(), rows),
            ("columns", self.n_outputs(), basis.outputs()),
        ] {
            if found != expected {
                return Err(Error::ShapeMismatch {
                    what: "chain basis",
                    dimension,
                    expected,
                    found,
                });
            }
        }
        let shrinkage = self
            .eigenvalues()
            .map(|d| spectral::shrinkage(d, self.lambda));
        let mut result = vec![Step {
            step: 0,
            alpha: None,
            optimal_alpha: None,
            fit: basis.fits[0].clone(),
            weights: vec![1.0],
            b_diag: shrinkage.clone(),
        }];
        let optimal = match schedule {
            Schedule::Optimal(optimal) => {
                let (evaluator, targets) = self.reference(optimal)?;
                let at_reference = evaluator.predict(basis.dual_coefs().as_ref());
                Some((optimal.clamp, at_reference, targets))
            }
            _ => None,
        };
        for (step, &scheduled) in alphas.iter().enumerate().skip(1) {
            let previous = result.last().expect("step 0 is always there");
            let (alpha, best) = match &optimal {
                None => (scheduled, None),
                Some((clamp, at_reference, targets)) => {
                    // The first fit (u1) and the alpha = 0 student M c(t-1) (u0) at the
                    // reference; the student's weights are the teacher's, one basis fit on.
                    let m = self.n_outputs();
                    let u1 = at_reference.subcols(0, m);
                    let student = chain_weights(&previous.weights, 0.0);
                    let u0 = basis.combine(at_reference.as_ref(), &student);
                    let best = sd_alpha::optimal_or_degenerate(optimal_alpha(
                        targets.as_ref(),
                        u1,
                        u0.as_ref(),
                    ));
                    let alpha = if *clamp { best.clamp(0.0, 1.0) } else { best };
                    (alpha, Some(best))
                }
            };
            let weights = chain_weights(&previous.weights, alpha);
            let b_diag = next_b_diag(shrinkage.as_deref(), previous, alpha);
            result.push(Step {
                step,
                alpha: Some(alpha),
                optimal_alpha: best,
                fit: basis.fit(&weights),
                weights,
                b_diag,
            });
        }
        Ok(result)
    }

    /// Runs a constant-`alpha` chain of `steps` steps for each of `alphas`, all in one
    /// [`ChainBasis`]: `steps - 1` solves in all, whatever the number of alphas. Returns the
    /// chains in the order of `alphas`; each equals `distill(&Schedule::Constant(alpha), steps)`.
    pub fn distill_many(&self, alphas: &[f64], steps: usize) -> Result<Vec<Vec<Step>>> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        for &alpha in alphas {
            check_alpha(alpha, Some(1))?;
        }
        let basis = self.chain_basis(steps)?;
        alphas
            .iter()
            .map(|&alpha| self.distill_in(&basis, &Schedule::Constant(alpha)))
            .collect()
    }

    /// Checks a schedule for `steps` steps; the alpha of each step (unused at step 0, and for
    /// [`Schedule::Optimal`], which chooses its own).
    fn check_schedule(&self, schedule: &Schedule, steps: usize) -> Result<Vec<f64>> {
        if steps == 0 {
            return Err(Error::ZeroSteps);
        }
        match schedule {
            Schedule::Constant(alpha) => {
                check_alpha(*alpha, Some(1))?;
                Ok(vec![*alpha; steps])
            }
            Schedule::PerStep(alphas) => {
                if alphas.len() < steps {
                    return Err(Error::ScheduleTooShort {
                        found: alphas.len(),
                        steps,
                    });
                }
                for (index, &alpha) in alphas.iter().take(steps).enumerate() {
                    check_alpha(alpha, Some(index))?;
                }
                Ok(alphas[..steps].to_vec())
            }
            Schedule::Optimal(_) => Ok(vec![f64::NAN; steps]),
        }
    }

    /// The limit of distillation with a constant `alpha` in `[0, 1]`: kernel ridge regression with
    /// ridge `lambda / alpha`, the zero function at `alpha = 0`. With the Cholesky solver this is one
    /// more factorisation (none at `alpha` 0 or 1); ask for several with [`Self::limits`].
    pub fn limit(&self, alpha: f64) -> Result<Limit> {
        let mut limits = self.limits(&[alpha])?;
        Ok(limits.pop().expect("one limit asked for"))
    }

    /// The limits of several constant alphas. With the eigen solver they share one pass over the
    /// eigenvectors. With the Cholesky solver, when two or more alphas lie in `[0.05, 1)`, those
    /// limits come from the factor of `K + lambda I` by multi-shift conjugate gradients, each
    /// checked to reach a double-precision backward error (a fraction of the factorisations'
    /// time: docs/benchmarks.md, "Figures behind the code's choices"); any other `alpha` in `(0, 1)` costs a factorisation.
    pub fn limits(&self, alphas: &[f64]) -> Result<Vec<Limit>> {
        for &alpha in alphas {
            check_alpha(alpha, None)?;
        }
        let (n, m) = (self.n_train(), self.n_outputs());
        let ridges: Vec<f64> = alphas
            .iter()
            .filter(|&&alpha| alpha > 0.0)
            .map(|&alpha| self.lambda / alpha)
            .collect();
        let mut fits = match &self.factored {
            Factored::Eigen(eigen) => eigen.fit_with_ridges(&ridges, self.y.as_ref()),
            Factored::Cholesky(cholesky) => cholesky.fit_with_ridges(&ridges, self.y.as_ref())?,
        }
        .into_iter();
        Ok(alphas
            .iter()
            .map(|&alpha| {
                let (ridge, fit) = if alpha == 0.0 {
                    (f64::INFINITY, Fit::zeros(n, m))
                } else {
                    (
                        self.lambda / alpha,
                        fits.next().expect("one fit per positive alpha"),
                    )
                };
                Limit {
                    alpha,
                    ridge,
                    fit,
                    b_diag: self
                        .eigenvalues()
                        .map(|d| spectral::limit_b_diag(d, self.lambda, alpha)),
                }
            })
            .collect())
    }

    /// `f(x_new) = K(x_new, X) c` for dual coefficients `c` (`n x m`, e.g. several runs' side by
    /// side): `r x m`. The cross kernel matrix is built and used [`PREDICTION_BLOCK`] rows at a
    /// time and never held whole (10,000 test points against 10,000 training points: 80 MB at a
    /// time instead of 800 MB); [`Self::at`] keeps it for repeated predictions.
    pub fn predict_at(
        &self,
        x_new: MatRef<'_, f64>,
        dual_coef: MatRef<'_, f64>,
    ) -> Result<Mat<f64>> {
        self.check_new_inputs(x_new)?;
        if dual_coef.nrows() != self.n_train() {
            return Err(Error::ShapeMismatch {
                what: "dual coefficients",
                dimension: "rows",
                expected: self.n_train(),
                found: dual_coef.nrows(),
            });
        }
        let r = x_new.nrows();
        let mut out = Mat::zeros(r, dual_coef.ncols());
        for start in (0..r).step_by(PREDICTION_BLOCK) {
            let rows = PREDICTION_BLOCK.min(r - start);
            let cross =
                cross_gram_matrix(&self.kernel, x_new.subrows(start, rows), self.x.as_ref());
            check_kernel_values(&self.kernel, cross.as_ref())?;
            faer::linalg::matmul::matmul(
                out.as_mut().subrows_mut(start, rows),
                faer::Accum::Replace,
                cross.as_ref(),
                dual_coef,
                1.0,
                faer::get_global_parallelism(),
            );
        }
        Ok(out)
    }

    /// New inputs must have the training inputs' columns and finite values.
    fn check_new_inputs(&self, x_new: MatRef<'_, f64>) -> Result<()> {
        if x_new.ncols() != self.n_features() {
            return Err(Error::ShapeMismatch {
                what: "new inputs",
                dimension: "columns",
                expected: self.n_features(),
                found: x_new.ncols(),
            });
        }
        check_finite("new inputs", x_new)
    }

    /// An [`Evaluator`] for predictions at new inputs `x_new` (`r x d`): builds the `r x n` cross
    /// kernel matrix once, for any number of fits.
    pub fn at(&self, x_new: MatRef<'_, f64>) -> Result<Evaluator> {
        self.check_new_inputs(x_new)?;
        let cross = cross_gram_matrix(&self.kernel, x_new, self.x.as_ref());
        check_kernel_values(&self.kernel, cross.as_ref())?;
        Ok(Evaluator { cross })
    }

    /// Validates the reference of an optimal-alpha schedule and refuses the training data itself.
    fn reference(&self, optimal: &OptimalAlpha) -> Result<(Evaluator, Mat<f64>)> {
        if optimal.targets.nrows() != optimal.x.nrows() {
            return Err(Error::ShapeMismatch {
                what: "reference targets",
                dimension: "rows",
                expected: optimal.x.nrows(),
                found: optimal.targets.nrows(),
            });
        }
        if optimal.targets.ncols() != self.n_outputs() {
            return Err(Error::ShapeMismatch {
                what: "reference targets",
                dimension: "columns",
                expected: self.n_outputs(),
                found: optimal.targets.ncols(),
            });
        }
        if optimal.x.nrows() == 0 {
            return Err(Error::EmptyReference);
        }
        check_finite("reference targets", optimal.targets.as_ref())?;
        if optimal.x == self.x && optimal.targets == self.y {
            return Err(Error::ReferenceIsTrainingData);
        }
        Ok((self.at(optimal.x.as_ref())?, optimal.targets.clone()))
    }
}

/// `B(t)` from `B(t-1)` where the spectrum is known (eigen solver).
fn next_b_diag(shrinkage: Option<&[f64]>, previous: &Step, alpha: f64) -> Option<Vec<f64>> {
    match (shrinkage, &previous.b_diag) {
        (Some(a), Some(b)) => Some(spectral::next_b_diag(a, b, alpha)),
        _ => None,
    }
}

/// Rows of the cross kernel matrix built at a time by [`SelfDistillation::predict_at`].
pub const PREDICTION_BLOCK: usize = 1024;

/// Predictions at fixed new inputs: holds their cross kernel matrix `k(x_new_i, x_j)`, `r x n`.
#[derive(Debug)]
pub struct Evaluator {
    cross: DenseMatrix,
}

impl Evaluator {
    /// `f(x_new) = K(x_new, X) c` for dual coefficients `c` (`n x m`): `r x m`.
    ///
    /// # Panics
    /// If `dual_coef` does not have `n` rows.
    pub fn predict(&self, dual_coef: MatRef<'_, f64>) -> Mat<f64> {
        assert_eq!(
            dual_coef.nrows(),
            self.cross.ncols(),
            "dual coefficients of another problem"
        );
        product(self.cross.as_ref(), dual_coef)
    }

    /// The cross kernel matrix, `r x n`.
    pub fn cross_gram(&self) -> MatRef<'_, f64> {
        self.cross.as_ref()
    }
}

/// Mean squared error over all entries of two matrices of the same shape.
///
/// # Panics
/// If the shapes differ.
pub fn mean_squared_error(prediction: MatRef<'_, f64>, target: MatRef<'_, f64>) -> f64 {
    assert_eq!(
        (prediction.nrows(), prediction.ncols()),
        (target.nrows(), target.ncols()),
        "shapes differ"
    );
    let count = prediction.nrows() * prediction.ncols();
    let mut sum = 0.0;
    for j in 0..prediction.ncols() {
        for i in 0..prediction.nrows() {
            let diff = prediction[(i, j)] - target[(i, j)];
            sum += diff * diff;
        }
    }
    sum / count as f64
}
