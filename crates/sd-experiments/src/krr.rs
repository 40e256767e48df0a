//! The kernel ridge regression job: one self-distillation run, from settings to a report that
//! prints as a table, JSON or CSV ([`output`]) and draws as figures ([`crate::plot`]).

pub mod image_study;
pub mod images;
pub mod input;
pub mod output;
pub mod toy;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sd_alpha::Alpha;
use sd_kernel::faer::{Mat, MatRef};
use sd_kernel::{
    ChainBasis, Kernel, Laplacian, Linear, Nystrom, OptimalAlpha, Polynomial, Rbf, Schedule,
    SelfDistillation, Solver, mean_squared_error, spectral,
};
use serde::Serialize;

use crate::error::{Error, Result};
use input::Table;

/// The kernels by name, without their parameters.
///
/// Text form ([`FromStr`], [`fmt::Display`]): `rbf`, `laplacian`, `linear`, `poly`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
    strum::EnumMessage,
)]
#[strum(serialize_all = "lowercase")]
pub enum KernelKind {
    /// `exp(-gamma |x - x'|^2)`.
    #[strum(message = "exp(-gamma |x - x'|^2)")]
    Rbf,
    /// `exp(-gamma |x - x'|_1)`.
    #[strum(message = "exp(-gamma |x - x'|_1)")]
    Laplacian,
    /// `<x, x'>`.
    #[strum(message = "<x, x'>")]
    Linear,
    /// `(gamma <x, x'> + coef0)^degree`.
    #[strum(message = "(gamma <x, x'> + coef0)^degree")]
    Poly,
}

impl KernelKind {
    /// `rbf`, `laplacian`, `linear` or `poly`.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The kernel with its parameters: `gamma` (default 80, the toy example's, for rbf and
    /// laplacian; 1 for poly), `coef0` (default 1) and `degree` (default 3) for poly. A parameter
    /// the kernel does not have is refused.
    pub fn with(
        self,
        gamma: Option<f64>,
        coef0: Option<f64>,
        degree: Option<u32>,
    ) -> Result<KernelChoice> {
        if self != KernelKind::Poly {
            for (given, field) in [(coef0.is_some(), "coef0"), (degree.is_some(), "degree")] {
                if given {
                    return Err(Error::setting(field, "applies to the poly kernel only"));
                }
            }
        }
        Ok(match self {
            KernelKind::Rbf => KernelChoice::Rbf {
                gamma: gamma.unwrap_or(sd_kernel::toy::GAMMA),
            },
            KernelKind::Laplacian => KernelChoice::Laplacian {
                gamma: gamma.unwrap_or(sd_kernel::toy::GAMMA),
            },
            KernelKind::Linear => {
                if gamma.is_some() {
                    return Err(Error::setting(
                        "gamma",
                        "does not apply to the linear kernel",
                    ));
                }
                KernelChoice::Linear
            }
            KernelKind::Poly => KernelChoice::Polynomial {
                gamma: gamma.unwrap_or(1.0),
                coef0: coef0.unwrap_or(1.0),
                degree: degree.unwrap_or(3),
            },
        })
    }
}

impl FromStr for KernelKind {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        crate::error::parse_name("kernel", text)
    }
}

/// Which kernel, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelChoice {
    /// `exp(-gamma |x - x'|^2)`.
    Rbf {
        /// Inverse squared length scale.
        gamma: f64,
    },
    /// `exp(-gamma |x - x'|_1)`.
    Laplacian {
        /// Inverse length scale.
        gamma: f64,
    },
    /// `<x, x'>`.
    Linear,
    /// `(gamma <x, x'> + coef0)^degree`.
    Polynomial {
        /// Scale of the inner product.
        gamma: f64,
        /// Additive constant.
        coef0: f64,
        /// Degree.
        degree: u32,
    },
}

impl KernelChoice {
    /// The kernel as a trait object.
    pub fn build(&self) -> sd_kernel::Result<Box<dyn Kernel>> {
        Ok(match *self {
            KernelChoice::Rbf { gamma } => Box::new(Rbf::new(gamma)?),
            KernelChoice::Laplacian { gamma } => Box::new(Laplacian::new(gamma)?),
            KernelChoice::Linear => Box::new(Linear),
            KernelChoice::Polynomial {
                gamma,
                coef0,
                degree,
            } => Box::new(Polynomial::new(gamma, coef0, degree)?),
        })
    }

    /// Which kernel it is.
    pub fn kind(&self) -> KernelKind {
        match self {
            KernelChoice::Rbf { .. } => KernelKind::Rbf,
            KernelChoice::Laplacian { .. } => KernelKind::Laplacian,
            KernelChoice::Linear => KernelKind::Linear,
            KernelChoice::Polynomial { .. } => KernelKind::Poly,
        }
    }

    /// `gamma`, where the kernel has one.
    pub fn gamma(&self) -> Option<f64> {
        match *self {
            KernelChoice::Rbf { gamma }
            | KernelChoice::Laplacian { gamma }
            | KernelChoice::Polynomial { gamma, .. } => Some(gamma),
            KernelChoice::Linear => None,
        }
    }
}

impl fmt::Display for KernelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KernelChoice::Rbf { gamma } => write!(f, "rbf(gamma={gamma})"),
            KernelChoice::Laplacian { gamma } => write!(f, "laplacian(gamma={gamma})"),
            KernelChoice::Linear => f.write_str("linear"),
            KernelChoice::Polynomial {
                gamma,
                coef0,
                degree,
            } => write!(f, "poly(gamma={gamma}, coef0={coef0}, degree={degree})"),
        }
    }
}

/// Which factorisation to use.
///
/// Text form ([`FromStr`], [`fmt::Display`], serde): `auto`, `cholesky`, `eigen`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
    strum::EnumMessage,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum SolverChoice {
    /// Eigendecomposition when the output needs the spectrum (JSON, plots), Cholesky otherwise.
    #[default]
    #[strum(
        message = "Eigendecomposition when the output needs the spectrum (JSON, plots), Cholesky otherwise"
    )]
    Auto,
    /// Cholesky factor of `K + lambda I`: fastest for one run; no `B` diagonals or eigenvalues.
    #[strum(
        message = "Cholesky factor of K + lambda I: fastest for one run; no B diagonals or eigenvalues"
    )]
    Cholesky,
    /// Eigendecomposition `K = V D V^T`: gives the spectrum.
    #[strum(message = "Eigendecomposition K = V D V^T: gives the spectrum")]
    Eigen,
}

impl SolverChoice {
    /// `auto`, `cholesky` or `eigen`.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl FromStr for SolverChoice {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        crate::error::parse_name("solver", text)
    }
}

/// Everything one `krr` run needs.
#[derive(Debug, Clone)]
pub struct KrrConfig {
    /// Kernel and its parameters.
    pub kernel: KernelChoice,
    /// Ridge `lambda > 0`.
    pub lambda: f64,
    /// Ground-truth weight: fixed, or the optimum of every step against the reference
    /// (Algorithm 1: the true function on the toy data, else the test file).
    pub alpha: Alpha,
    /// With `alpha = auto`: clamp each optimum into `[0, 1]` (it is used as it is otherwise).
    pub clamp: bool,
    /// Steps, the first fit (step 0) included, `>= 1`.
    pub steps: usize,
    /// Training CSV; `None` for the toy example (or images).
    pub data: Option<PathBuf>,
    /// An image data set instead of a CSV ([`images`]): one-hot targets, test accuracy, alpha
    /// `auto` chosen on a validation split.
    pub images: Option<images::ImageSource>,
    /// Target columns of the training CSV (empty: the last column).
    pub targets: Vec<String>,
    /// Held-out CSV: the loss reference (and the reference of `alpha = auto`).
    pub test: Option<PathBuf>,
    /// Factorisation.
    pub solver: SolverChoice,
    /// The Nyström route instead of the exact ones ([`sd_kernel::nystrom`]): this many landmarks,
    /// drawn uniformly without replacement from the training points with this seed.
    pub nystrom: Option<NystromChoice>,
    /// Whether the output needs the spectrum (B diagonals, eigenvalues).
    pub need_spectrum: bool,
    /// Whether to evaluate every step on a grid, for the fit figure (one feature only).
    pub need_curves: bool,
    /// Show a spinner on stderr while large problems (2000 points or more) are solved; it only
    /// draws when stderr is a terminal.
    pub show_progress: bool,
}

impl KrrConfig {
    /// The toy example with the original notebook's settings and the given alpha (unclamped).
    pub fn toy(alpha: Alpha) -> Self {
        Self {
            kernel: KernelChoice::Rbf {
                gamma: sd_kernel::toy::GAMMA,
            },
            lambda: sd_kernel::toy::LAMBDA,
            alpha,
            clamp: false,
            steps: sd_kernel::toy::STEPS,
            data: None,
            images: None,
            targets: Vec::new(),
            test: None,
            solver: SolverChoice::Auto,
            nystrom: None,
            need_spectrum: true,
            need_curves: true,
            show_progress: false,
        }
    }
}

/// The Nyström route's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NystromChoice {
    /// Landmarks, between 1 and the training points.
    pub landmarks: usize,
    /// Seed of the uniform draw without replacement (ChaCha8).
    pub seed: u64,
}

/// The landmark rows: `landmarks` of `0..n` drawn uniformly without replacement (a seeded
/// shuffle, the first `landmarks` kept).
pub fn draw_landmarks(n: usize, choice: NystromChoice) -> Vec<usize> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut rows: Vec<usize> = (0..n).collect();
    rows.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(choice.seed));
    rows.truncate(choice.landmarks);
    rows
}

/// One step's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The step, from 0: step 0 is plain kernel ridge regression, the first fit.
    pub step: usize,
    /// The ground-truth weight used; `null` at step 0 (no teacher).
    pub alpha: Option<f64>,
    /// With `alpha = auto`: the optimum before any clamping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimal_alpha: Option<f64>,
    /// Mean squared error against the reference; `null` without one.
    pub loss: Option<f64>,
    /// Share of the test images classified right (argmax); images only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Mean squared error against the training targets.
    pub train_loss: f64,
    /// Diagonal of `B(t)` (eigenvalue order, descending); `null` with the Cholesky solver.
    pub b_diag: Option<Vec<f64>>,
}

/// The limit's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct LimitReport {
    /// The constant alpha whose limit this is.
    pub alpha: f64,
    /// Mean squared error against the reference; `null` without one.
    pub loss: Option<f64>,
    /// Share of the test images classified right (argmax); images only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Mean squared error against the training targets.
    pub train_loss: f64,
    /// Diagonal of `B(inf)`; `null` with the Cholesky solver.
    pub b_diag: Option<Vec<f64>>,
}

/// Predictions of every step and of the limit on a grid, for the fit figure.
#[derive(Debug, Clone)]
pub struct Curves {
    /// Grid inputs (one feature).
    pub grid: Vec<f64>,
    /// `steps[t][output][i]`: prediction of step `t` at `grid[i]`.
    pub steps: Vec<Vec<Vec<f64>>>,
    /// The limit's predictions, `[output][i]`.
    pub limit: Option<Vec<Vec<f64>>>,
    /// Training inputs.
    pub train_x: Vec<f64>,
    /// Training targets, `[output][i]`.
    pub train_y: Vec<Vec<f64>>,
    /// The true function on the grid, when known (the toy example).
    pub truth: Option<Vec<f64>>,
}

/// The result of a run, with everything needed to print or plot it.
#[derive(Debug, Clone)]
pub struct KrrReport {
    /// Kernel and parameters.
    pub kernel: KernelChoice,
    /// Ridge.
    pub lambda: f64,
    /// Ground-truth weight as asked.
    pub alpha: Alpha,
    /// Whether the optima of `alpha = auto` were clamped into `[0, 1]`.
    pub clamp: bool,
    /// The solver of the exact route (with `nystrom`, the Nyström route's own).
    pub solver: Solver,
    /// Where the training data came from, in words.
    pub data: String,
    /// What the loss is measured against, in words; `None` without a reference.
    pub reference: Option<String>,
    /// Training points.
    pub n_train: usize,
    /// Input dimension.
    pub n_features: usize,
    /// Target names.
    pub target_names: Vec<String>,
    /// One line per step.
    pub steps: Vec<StepReport>,
    /// The limit, where it is defined.
    pub limit: Option<LimitReport>,
    /// Eigenvalues of `K`, descending (eigen solver).
    pub eigenvalues: Option<Vec<f64>>,
    /// Grid predictions for the fit figure.
    pub curves: Option<Curves>,
    /// With images: how they were read and chosen, and how many labels the noise changed.
    pub images: Option<(images::ImageSource, usize)>,
    /// On the Nyström route: its settings and the jitter added to `K_MM`.
    pub nystrom: Option<(NystromChoice, f64)>,
}

impl KrrReport {
    /// `R_k = b_k / b_(k+1)` of every step (eigen solver).
    pub fn ratios(&self) -> Option<Vec<Vec<f64>>> {
        self.steps
            .iter()
            .map(|step| step.b_diag.as_deref().map(spectral::ratios))
            .collect()
    }
}

/// The training data, the reference of the loss, and descriptions of both.
struct Problem {
    x: Mat<f64>,
    y: Mat<f64>,
    target_names: Vec<String>,
    data: String,
    reference: Option<(Mat<f64>, Mat<f64>, String)>,
    /// The reference of `alpha = auto`: the loss's reference, or with images the validation
    /// split (never the test images).
    alpha_reference: Option<(Mat<f64>, Mat<f64>)>,
    /// Labels of the reference, for accuracy (images).
    test_labels: Option<Vec<u8>>,
    labels_changed: usize,
    truth: Option<fn(f64) -> f64>,
}

impl Problem {
    fn with_alpha_reference(mut self) -> Self {
        self.alpha_reference = self
            .reference
            .as_ref()
            .map(|(x, y, _)| (x.clone(), y.clone()));
        self
    }
}

fn load(config: &KrrConfig, any_auto: bool) -> Result<Problem> {
    if let Some(source) = &config.images {
        if config.data.is_some() || config.test.is_some() || !config.targets.is_empty() {
            return Err(Error::setting(
                "images",
                "cannot go with data, test or target (the images bring their own)",
            ));
        }
        let problem = images::load(source, any_auto)?;
        let test_rows = problem.test.x.nrows();
        let alpha_reference = (problem.val.x.nrows() > 0).then_some((problem.val.x, problem.val.y));
        return Ok(Problem {
            x: problem.train.x,
            y: problem.train.y,
            target_names: problem.class_names,
            data: problem.description,
            reference: Some((
                problem.test.x,
                problem.test.y,
                format!(
                    "mean squared error against the one-hot labels of the {test_rows} test \
                     images; accuracy: argmax"
                ),
            )),
            alpha_reference,
            test_labels: Some(problem.test.labels),
            labels_changed: problem.labels_changed,
            truth: None,
        });
    }
    match &config.data {
        None => Ok(Problem {
            x: sd_kernel::toy::inputs(),
            y: sd_kernel::toy::targets(),
            target_names: vec!["y".into()],
            data: "toy example of Mobahi et al. (2020): 11 noisy samples of sin(2 pi x)".into(),
            reference: Some((
                sd_kernel::toy::grid(),
                sd_kernel::toy::grid_truth(),
                format!(
                    "mean squared error against sin(2 pi x) on {} grid points in [0, 1]",
                    sd_kernel::toy::GRID_POINTS
                ),
            )),
            alpha_reference: None,
            test_labels: None,
            labels_changed: 0,
            truth: Some(sd_kernel::toy::true_function),
        }
        .with_alpha_reference()),
        Some(path) => {
            let train = Table::read(path, &config.targets)?;
            let reference = match &config.test {
                Some(test_path) => {
                    let test = Table::read_like(test_path, &train)?;
                    let rows = test.x.nrows();
                    Some((
                        test.x,
                        test.y,
                        format!(
                            "mean squared error on {} ({rows} held-out points)",
                            test_path.display()
                        ),
                    ))
                }
                None => None,
            };
            Ok(Problem {
                data: format!(
                    "{} ({} point{}, features: {}; targets: {})",
                    path.display(),
                    train.x.nrows(),
                    if train.x.nrows() == 1 { "" } else { "s" },
                    train.feature_names.join(", "),
                    train.target_names.join(", ")
                ),
                x: train.x,
                y: train.y,
                target_names: train.target_names,
                reference,
                alpha_reference: None,
                test_labels: None,
                labels_changed: 0,
                truth: None,
            }
            .with_alpha_reference())
        }
    }
}

/// Problems from this many training points on show a spinner (with `show_progress`).
const PROGRESS_POINTS: usize = 2000;

/// Points on the fit figure's grid.
const CURVE_POINTS: usize = 501;

/// Runs one self-distillation of kernel ridge regression as `config` says.
pub fn run(config: &KrrConfig) -> Result<KrrReport> {
    let mut reports = run_alphas(config, &[config.alpha])?;
    Ok(reports.pop().expect("one report per alpha"))
}

/// Runs `config` once for each of `alphas` (`config.alpha` is not used) on one problem: the data
/// are read once, the kernel matrix (or the Nyström features) built and factorised once, and the
/// test points' kernel matrix (or features) built once, with every alpha's predictions from one
/// product over it. Each report equals [`run`]'s with that alpha, except that the validation
/// split of images is the same for all: when `val_size` is not given, a tenth of the chosen
/// training images is held out for every alpha if any of them is `auto`, none otherwise.
pub fn run_alphas(config: &KrrConfig, alphas: &[Alpha]) -> Result<Vec<KrrReport>> {
    if config.steps == 0 {
        return Err(Error::setting("steps", "must be at least 1"));
    }
    let any_auto = alphas.iter().any(|a| a.is_auto());
    if config.clamp && !any_auto {
        return Err(Error::setting(
            "clamp",
            "applies to alpha auto only (a fixed alpha lies in [0, 1])",
        ));
    }
    let problem = load(config, any_auto)?;
    if any_auto && problem.alpha_reference.is_none() {
        return Err(Error::AutoWithoutReference);
    }
    let kernel = config.kernel.build()?;
    match config.nystrom {
        Some(choice) => run_nystrom(config, alphas, &problem, kernel, choice),
        None => run_exact(config, alphas, &problem, kernel),
    }
}

/// One step or limit of any route, as the report needs it.
struct Solved {
    step: usize,
    alpha: Option<f64>,
    optimal_alpha: Option<f64>,
    /// What the route's evaluator predicts from.
    coef: Coef,
    /// Mean squared error against the training targets.
    train_loss: f64,
    b_diag: Option<Vec<f64>>,
}

/// The coefficients of a step or limit.
enum Coef {
    /// Its own: dual coefficients, or Nyström's spectral ones.
    Own(Mat<f64>),
    /// Weights in the exact route's [`ChainBasis`], whose predictions serve every step.
    Basis(Vec<f64>),
}

/// The runs of one model, and the exact route's chain basis whose weighted sums their steps are.
struct Solutions<'a> {
    runs: Vec<Solution>,
    basis: Option<&'a ChainBasis>,
}

/// One alpha's run on any route.
struct Solution {
    alpha: Alpha,
    steps: Vec<Solved>,
    limit: Option<Solved>,
    curves: Option<Curves>,
}

/// [`run_alphas`] on the exact routes.
fn run_exact(
    config: &KrrConfig,
    alphas: &[Alpha],
    problem: &Problem,
    kernel: Box<dyn Kernel>,
) -> Result<Vec<KrrReport>> {
    let solver = match config.solver {
        SolverChoice::Cholesky => Solver::Cholesky,
        SolverChoice::Eigen => Solver::Eigen,
        SolverChoice::Auto => Solver::recommended(config.need_spectrum, 1),
    };
    let n = problem.x.nrows();
    tracing::info!(
        n,
        d = problem.x.ncols(),
        ?solver,
        "factorising the {n} x {n} kernel matrix"
    );
    let started = std::time::Instant::now();
    let spinner = (config.show_progress && n >= PROGRESS_POINTS).then(|| {
        let spinner = indicatif::ProgressBar::new_spinner().with_message(format!(
            "{} of the {n} x {n} kernel matrix",
            match solver {
                Solver::Cholesky => "Cholesky factorisation",
                Solver::Eigen => "eigendecomposition",
            }
        ));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        spinner
    });
    let model = SelfDistillation::new(
        kernel,
        problem.x.as_ref(),
        problem.y.as_ref(),
        config.lambda,
        solver,
    )
    .map_err(|e| match e {
        sd_kernel::Error::TooLarge { .. } if config.images.is_some() => Error::setting(
            "train_size",
            format!(
                "is too large for the exact routes here: {e}; take fewer training images, or \
                 the Nyström route (--nystrom M, e.g. 4000 landmarks)"
            ),
        ),
        e => e.into(),
    })?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "factorised");
    if let Some(spinner) = &spinner {
        spinner.set_message(format!("{} distillation steps", config.steps));
    }
    // Every chain, fixed alphas and auto, lives in one basis: one solve per step for all.
    let phase = std::time::Instant::now();
    let basis = model.chain_basis(config.steps)?;
    tracing::debug!(seconds = phase.elapsed().as_secs_f64(), "chain basis");
    let mut chains = Vec::with_capacity(alphas.len());
    for &alpha in alphas {
        let phase = std::time::Instant::now();
        let steps = model.distill_in(&basis, &schedule(alpha, config.clamp, problem))?;
        tracing::debug!(%alpha, seconds = phase.elapsed().as_secs_f64(), "steps");
        let limit_alpha = limit_alpha(alpha, steps.last().and_then(|s| s.alpha));
        chains.push((alpha, steps, limit_alpha));
    }
    // All limits together: with the Cholesky solver they share one factor (multi-shift CG).
    let phase = std::time::Instant::now();
    let limit_alphas: Vec<f64> = chains.iter().filter_map(|(_, _, a)| *a).collect();
    let mut limits = model.limits(&limit_alphas)?.into_iter();
    tracing::debug!(seconds = phase.elapsed().as_secs_f64(), "limits");
    let mut solutions = Vec::with_capacity(alphas.len());
    for (alpha, steps, limit_alpha) in chains {
        let limit = limit_alpha.map(|_| limits.next().expect("one limit per limit alpha"));
        let curves = if config.need_curves && problem.x.ncols() == 1 {
            Some(curves(&model, problem, &steps, limit.as_ref())?)
        } else {
            None
        };
        solutions.push(Solution {
            alpha,
            steps: steps
                .into_iter()
                .map(|step| Solved {
                    step: step.step,
                    alpha: step.alpha,
                    optimal_alpha: step.optimal_alpha,
                    coef: Coef::Basis(step.weights),
                    train_loss: mean_squared_error(step.fit.fitted.as_ref(), problem.y.as_ref()),
                    b_diag: step.b_diag,
                })
                .collect(),
            limit: limit.map(|limit| Solved {
                step: config.steps,
                alpha: Some(limit.alpha),
                optimal_alpha: None,
                coef: Coef::Own(limit.fit.dual_coef),
                train_loss: mean_squared_error(limit.fit.fitted.as_ref(), problem.y.as_ref()),
                b_diag: limit.b_diag,
            }),
            curves,
        });
    }
    let phase = std::time::Instant::now();
    let reports = reports(
        config,
        problem,
        solver,
        Solutions {
            runs: solutions,
            basis: Some(&basis),
        },
        problem
            .reference
            .as_ref()
            .map(|(x, _, _)| |coef: MatRef<'_, f64>| model.predict_at(x.as_ref(), coef)),
        model.eigenvalues().map(<[f64]>::to_vec),
        None,
    )?;
    tracing::debug!(
        seconds = phase.elapsed().as_secs_f64(),
        "reference predictions"
    );
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    Ok(reports)
}

/// The reports of `solutions`, their test scores from one product over the reference.
fn reports(
    config: &KrrConfig,
    problem: &Problem,
    solver: Solver,
    solutions: Solutions<'_>,
    predict: Option<impl Fn(MatRef<'_, f64>) -> sd_kernel::Result<Mat<f64>>>,
    eigenvalues: Option<Vec<f64>>,
    nystrom: Option<(NystromChoice, f64)>,
) -> Result<Vec<KrrReport>> {
    let Solutions {
        runs: solutions,
        basis,
    } = solutions;
    let mut scores = reference_scores(
        predict,
        problem,
        basis,
        solutions
            .iter()
            .flat_map(|s| s.steps.iter().chain(s.limit.as_ref()))
            .map(|solved| &solved.coef),
    )?
    .into_iter();
    Ok(solutions
        .into_iter()
        .map(|solution| KrrReport {
            kernel: config.kernel,
            lambda: config.lambda,
            alpha: solution.alpha,
            clamp: config.clamp && solution.alpha.is_auto(),
            solver,
            data: problem.data.clone(),
            reference: problem.reference.as_ref().map(|(_, _, d)| d.clone()),
            n_train: problem.x.nrows(),
            n_features: problem.x.ncols(),
            target_names: problem.target_names.clone(),
            steps: solution
                .steps
                .into_iter()
                .map(|step| {
                    let (loss, accuracy) = scores.next().expect("one score per step");
                    StepReport {
                        step: step.step,
                        alpha: step.alpha,
                        optimal_alpha: step.optimal_alpha,
                        loss,
                        accuracy,
                        train_loss: step.train_loss,
                        b_diag: step.b_diag,
                    }
                })
                .collect(),
            limit: solution.limit.map(|limit| {
                let (loss, accuracy) = scores.next().expect("one score per limit");
                LimitReport {
                    alpha: limit.alpha.expect("a limit has its alpha"),
                    loss,
                    accuracy,
                    train_loss: limit.train_loss,
                    b_diag: limit.b_diag,
                }
            }),
            eigenvalues: eigenvalues.clone(),
            curves: solution.curves,
            images: config
                .images
                .clone()
                .map(|source| (source, problem.labels_changed)),
            nystrom,
        })
        .collect())
}

/// Test loss and test accuracy (`None` without reference data, or without labels for accuracy)
/// of each set of coefficients, in order. All are predicted by one product with the reference
/// kernel matrix or features (one pass over its entries, at GEMM speed, instead of two
/// matrix-vector-like passes per set): the sets of their own, and the chain basis once, whose
/// predictions combine into those of every step in it.
fn reference_scores<'a>(
    predict: Option<impl Fn(MatRef<'_, f64>) -> sd_kernel::Result<Mat<f64>>>,
    problem: &Problem,
    basis: Option<&ChainBasis>,
    coefs: impl Iterator<Item = &'a Coef>,
) -> Result<Vec<(Option<f64>, Option<f64>)>> {
    let coefs: Vec<&Coef> = coefs.collect();
    let (Some(predict), Some((_, targets, _))) = (predict, problem.reference.as_ref()) else {
        return Ok(vec![(None, None); coefs.len()]);
    };
    let m = targets.ncols();
    let own: Vec<&Mat<f64>> = coefs
        .iter()
        .filter_map(|coef| match coef {
            Coef::Own(own) => Some(own),
            Coef::Basis(_) => None,
        })
        .collect();
    let basis_coefs = coefs
        .iter()
        .any(|coef| matches!(coef, Coef::Basis(_)))
        .then(|| basis.expect("steps in a basis come with it").dual_coefs());
    let rows = own
        .first()
        .map(|c| c.nrows())
        .or(basis_coefs.as_ref().map(|b| b.nrows()));
    let Some(rows) = rows else {
        return Ok(vec![(None, None); coefs.len()]);
    };
    // Own coefficients first, then the basis.
    let basis_columns = basis_coefs.as_ref().map_or(0, |b| b.ncols());
    let all = Mat::from_fn(rows, m * own.len() + basis_columns, |i, column| {
        if column < m * own.len() {
            own[column / m][(i, column % m)]
        } else {
            basis_coefs.as_ref().expect("basis columns")[(i, column - m * own.len())]
        }
    });
    let predictions = predict(all.as_ref())?;
    let basis_predictions = predictions.subcols(m * own.len(), basis_columns);
    let mut next_own = 0;
    Ok(coefs
        .iter()
        .map(|coef| {
            let combined;
            let prediction = match coef {
                Coef::Own(_) => {
                    next_own += 1;
                    predictions.subcols((next_own - 1) * m, m)
                }
                Coef::Basis(weights) => {
                    combined = basis
                        .expect("steps in a basis come with it")
                        .combine(basis_predictions, weights);
                    combined.as_ref()
                }
            };
            (
                Some(mean_squared_error(prediction, targets.as_ref())),
                problem
                    .test_labels
                    .as_ref()
                    .map(|labels| images::accuracy(prediction, labels)),
            )
        })
        .collect())
}

/// The schedule of `alpha`; `auto` against the problem's alpha reference (checked to be there by
/// [`run_alphas`]).
fn schedule(alpha: Alpha, clamp: bool, problem: &Problem) -> Schedule {
    match alpha {
        Alpha::Fixed(alpha) => Schedule::Constant(alpha),
        Alpha::Auto => {
            let (x, targets) = problem.alpha_reference.as_ref().expect("checked by run");
            Schedule::Optimal(OptimalAlpha {
                x: x.clone(),
                targets: targets.clone(),
                clamp,
            })
        }
    }
}

/// The alpha whose limit is reported: the fixed one, or with `auto` the last step's when it lies
/// in `[0, 1]` (a warning otherwise).
fn limit_alpha(alpha: Alpha, last: Option<f64>) -> Option<f64> {
    match (alpha, last) {
        (Alpha::Fixed(alpha), _) => Some(alpha),
        (Alpha::Auto, Some(alpha)) if (0.0..=1.0).contains(&alpha) => Some(alpha),
        (Alpha::Auto, Some(alpha)) => {
            tracing::warn!(
                alpha,
                "the last optimal alpha lies outside [0, 1]: no limit is reported"
            );
            None
        }
        (Alpha::Auto, None) => None,
    }
}

/// [`run_alphas`] on the Nyström route.
fn run_nystrom(
    config: &KrrConfig,
    alphas: &[Alpha],
    problem: &Problem,
    kernel: Box<dyn Kernel>,
    choice: NystromChoice,
) -> Result<Vec<KrrReport>> {
    let n = problem.x.nrows();
    if choice.landmarks == 0 || choice.landmarks > n {
        return Err(Error::setting(
            "nystrom",
            format!(
                "must be between 1 and the {n} training points, got {}",
                choice.landmarks
            ),
        ));
    }
    let landmarks = draw_landmarks(n, choice);
    tracing::info!(
        n,
        landmarks = choice.landmarks,
        "Nyström features and their spectrum"
    );
    let started = std::time::Instant::now();
    let model = Nystrom::new(
        kernel,
        problem.x.as_ref(),
        problem.y.as_ref(),
        config.lambda,
        &landmarks,
    )?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        jitter = model.jitter(),
        "factorised"
    );
    if config.need_curves {
        tracing::warn!("the fit figure is drawn on the exact routes only; skipped");
    }
    let mut solutions = Vec::with_capacity(alphas.len());
    for &alpha in alphas {
        let steps = model.distill(&schedule(alpha, config.clamp, problem), config.steps)?;
        let limit_alpha = limit_alpha(alpha, steps.last().and_then(|s| s.alpha));
        let limit = limit_alpha.map(|a| model.limit(a)).transpose()?;
        solutions.push(Solution {
            alpha,
            steps: steps
                .into_iter()
                .map(|step| Solved {
                    step: step.step,
                    alpha: step.alpha,
                    optimal_alpha: step.optimal_alpha,
                    coef: Coef::Own(step.coef),
                    train_loss: step.train_loss,
                    b_diag: Some(step.b_diag),
                })
                .collect(),
            limit: limit.map(|limit| Solved {
                step: config.steps,
                alpha: Some(limit.alpha),
                optimal_alpha: None,
                coef: Coef::Own(limit.coef),
                train_loss: limit.train_loss,
                b_diag: Some(limit.b_diag),
            }),
            curves: None,
        });
    }
    let evaluator = problem
        .reference
        .as_ref()
        .map(|(x, _, _)| model.at(x.as_ref()))
        .transpose()?;
    reports(
        config,
        problem,
        Solver::Eigen,
        Solutions {
            runs: solutions,
            basis: None,
        },
        evaluator
            .as_ref()
            .map(|e| move |coef: MatRef<'_, f64>| Ok(e.predict(coef))),
        Some(model.eigenvalues().to_vec()),
        Some((choice, model.jitter())),
    )
}

fn curves(
    model: &SelfDistillation<Box<dyn Kernel>>,
    problem: &Problem,
    steps: &[sd_kernel::Step],
    limit: Option<&sd_kernel::Limit>,
) -> Result<Curves> {
    let train_x: Vec<f64> = problem.x.col(0).iter().copied().collect();
    let (low, high) = train_x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let span = if high > low { high - low } else { 1.0 };
    let grid: Vec<f64> = (0..CURVE_POINTS)
        .map(|i| low + span * i as f64 / (CURVE_POINTS - 1) as f64)
        .collect();
    let evaluator = model.at(Mat::from_fn(CURVE_POINTS, 1, |i, _| grid[i]).as_ref())?;
    let columns = |m: Mat<f64>| -> Vec<Vec<f64>> {
        (0..m.ncols())
            .map(|j| m.col(j).iter().copied().collect())
            .collect()
    };
    Ok(Curves {
        steps: steps
            .iter()
            .map(|s| columns(evaluator.predict(s.fit.dual_coef.as_ref())))
            .collect(),
        limit: limit.map(|l| columns(evaluator.predict(l.fit.dual_coef.as_ref()))),
        train_y: columns(problem.y.clone()),
        truth: problem.truth.map(|f| grid.iter().map(|&x| f(x)).collect()),
        train_x,
        grid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images_config(data: PathBuf, nystrom: Option<usize>) -> KrrConfig {
        KrrConfig {
            kernel: KernelChoice::Rbf { gamma: 0.02 },
            lambda: 0.1,
            steps: 4,
            images: Some(images::ImageSource {
                path: data,
                train_size: Some(150),
                test_size: None,
                val_size: Some(20),
                subset_seed: None,
                label_noise: 0.2,
                noise_seed: 1,
                standardize: false,
            }),
            solver: SolverChoice::Cholesky,
            nystrom: nystrom.map(|landmarks| NystromChoice { landmarks, seed: 3 }),
            need_spectrum: false,
            need_curves: false,
            ..KrrConfig::toy(Alpha::Fixed(0.0))
        }
    }

    /// One problem for several alphas gives each alpha's report of a run of its own.
    #[test]
    fn a_sweep_equals_one_run_per_alpha() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("fx");
        sd_data::fixture::write_idx(
            &data,
            sd_data::fixture::FixtureSpec {
                train: 200,
                test: 60,
                seed: 0,
            },
            false,
        )
        .unwrap();
        let alphas = [Alpha::Fixed(0.0), Alpha::Fixed(0.5), Alpha::Auto];
        for nystrom in [None, Some(40)] {
            let config = images_config(data.clone(), nystrom);
            let sweep = run_alphas(&config, &alphas).unwrap();
            assert_eq!(sweep.len(), alphas.len());
            for (report, &alpha) in sweep.iter().zip(&alphas) {
                let alone = run(&KrrConfig {
                    alpha,
                    ..config.clone()
                })
                .unwrap();
                assert_eq!(report.alpha, alpha);
                assert_eq!(report.steps.len(), 4);
                let close = |a: Option<f64>, b: Option<f64>| {
                    let (a, b) = (a.unwrap(), b.unwrap());
                    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} {b}");
                };
                for (a, b) in report.steps.iter().zip(&alone.steps) {
                    assert_eq!(a.alpha, b.alpha, "{alpha} {nystrom:?}");
                    close(a.loss, b.loss);
                    close(a.accuracy, b.accuracy);
                    close(Some(a.train_loss), Some(b.train_loss));
                }
                match (&report.limit, &alone.limit) {
                    (Some(a), Some(b)) => {
                        assert_eq!(a.alpha, b.alpha);
                        close(a.loss, b.loss);
                    }
                    (None, None) => {}
                    _ => panic!("a limit in one of them only"),
                }
            }
        }
    }
}
