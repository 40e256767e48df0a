//! Self-distillation of kernel ridge regression with weighted ground-truth targets, in closed form.
//!
//! This crate implements the kernel half of Borup & Andersen, "Even your Teacher Needs Guidance:
//! Ground-Truth Targets Dampen Regularization Imposed by Self-Distillation" (NeurIPS 2021).
//! Step 0 (the first fit) is kernel ridge regression on the targets `y`; each later step `t`
//! refits it to `alpha * y + (1 - alpha) * yhat(t-1)`, the previous step's predictions mixed with
//! the ground truth. Everything comes from one factorisation of the kernel matrix `K`:
//!
//! - every step's dual coefficients, fitted values and predictions ([`SelfDistillation::distill`]);
//! - the limit, kernel ridge regression with ridge `lambda / alpha` ([`SelfDistillation::limit`]);
//! - the diagonal matrices `B(t)` with `yhat(t) = V B(t) V^T y` and their ratios, which show the
//!   solution sparsifying ([`spectral`]);
//! - the optimal `alpha` per step against reference targets ([`Schedule::Optimal`]).
//!
//! Two [`Solver`]s: a Cholesky factor of `K + lambda I` (cheapest for one run and for a sweep, whose
//! chains share one [`ChainBasis`] and whose limits share the factor) or the symmetric
//! eigendecomposition `K = V D V^T` (for the spectrum).
//! Linear algebra is [faer](https://docs.rs/faer)'s, in parallel on rayon's thread pool.
//!
//! # Example
//!
//! The toy problem of the paper (from Mobahi et al. 2020): 11 noisy samples of `sin(2 pi x)`, RBF
//! kernel, six steps with `alpha = 0.25`, scored against the true sine.
//!
//! ```
//! use sd_kernel::{Rbf, Solver, Schedule, SelfDistillation, mean_squared_error, toy};
//!
//! let problem = SelfDistillation::new(
//!     Rbf::new(toy::GAMMA)?,
//!     toy::inputs().as_ref(),
//!     toy::targets().as_ref(),
//!     toy::LAMBDA,
//!     Solver::Eigen,
//! )?;
//! let steps = problem.distill(&Schedule::Constant(0.25), toy::STEPS)?;
//! let grid = problem.at(toy::grid().as_ref())?;
//! let loss = |coef: &sd_kernel::faer::Mat<f64>| {
//!     mean_squared_error(grid.predict(coef.as_ref()).as_ref(), toy::grid_truth().as_ref())
//! };
//! let losses: Vec<f64> = steps.iter().map(|step| loss(&step.fit.dual_coef)).collect();
//! // The original notebook prints 0.16477 0.15309 0.14958 0.14903 0.14946 0.15011.
//! assert_eq!(format!("{:.5}", losses[1]), "0.15309");
//! assert!(losses[1..].iter().all(|&l| l < losses[0]), "every step beats the first fit");
//!
//! let limit = problem.limit(0.25)?; // kernel ridge regression with ridge 0.2 / 0.25
//! assert_eq!(format!("{:.5}", loss(&limit.fit.dual_coef)), "0.15250");
//! // B(t) shrinks each eigen-direction; the smallest eigenvalues shrink fastest.
//! let b = steps[5].b_diag.as_ref().unwrap();
//! assert!(b[0] > b[10] && b.iter().all(|&x| (0.0..1.0).contains(&x)));
//! # Ok::<(), sd_kernel::Error>(())
//! ```

mod dense;
mod distill;
mod error;
mod exp;
mod factor;
pub mod kernel;
pub mod memory;
pub mod nystrom;
mod shifted;
pub mod spectral;
pub mod toy;

pub use dense::DenseMatrix;
pub use distill::{
    ChainBasis, EIGEN_BREAK_EVEN_RIDGES, Evaluator, Limit, OptimalAlpha, PREDICTION_BLOCK,
    Schedule, SelfDistillation, Solver, Step, chain_weights, mean_squared_error, optimal_alpha,
};
pub use error::{Error, Result};
pub use factor::{EIGENVALUE_TOLERANCE, Fit};
pub use kernel::{
    GEMM_MIN_FEATURES, InnerProductForm, Kernel, Laplacian, Linear, Points, Polynomial, Rbf,
    cross_gram_matrix, gram_matrix,
};
pub use shifted::SHIFTED_MAX_RATIO;

/// The faer version this crate's matrices come from, re-exported so callers use the same one.
pub use faer;
pub use nystrom::{Nystrom, NystromEvaluator, NystromLimit, NystromStep};

// The README's examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
