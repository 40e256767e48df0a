//! The error type of this crate.

/// Everything that can go wrong when setting up or solving a self-distillation problem.
///
/// Each variant carries what a user needs to find the problem: the offending value, the matrix and
/// the position of a bad entry, or the sizes involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ridge parameter lambda must be finite and strictly positive.
    #[error("lambda must be finite and > 0, got {0}")]
    InvalidLambda(f64),
    /// A ground-truth weight alpha outside [0, 1] (or not finite).
    #[error("alpha must lie in [0, 1], got {alpha}{}", step_suffix(*.step))]
    InvalidAlpha {
        /// The offending value.
        alpha: f64,
        /// The step it was meant for (from 0, the first fit); `None` for a limit.
        step: Option<usize>,
    },
    /// A kernel parameter that is out of range.
    #[error("{kernel} kernel: {parameter} must be {requirement}, got {value}")]
    InvalidKernelParameter {
        /// Kernel name, for example `rbf`.
        kernel: &'static str,
        /// Parameter name, for example `gamma`.
        parameter: &'static str,
        /// What the parameter must satisfy.
        requirement: &'static str,
        /// The value given.
        value: f64,
    },
    /// The reference data of an optimal-alpha schedule has no points.
    #[error("the reference data for the optimal alpha has no points")]
    EmptyReference,
    /// There are no training points.
    #[error("no training points")]
    NoTrainingPoints,
    /// There are no target columns, or no feature columns.
    #[error("{what} has no columns")]
    NoColumns {
        /// Which matrix.
        what: &'static str,
    },
    /// Two matrices that must agree in one dimension do not.
    #[error("{what} has {found} {dimension}, expected {expected}")]
    ShapeMismatch {
        /// Which matrix.
        what: &'static str,
        /// `rows` or `columns`.
        dimension: &'static str,
        /// The size implied by the other inputs.
        expected: usize,
        /// The size found.
        found: usize,
    },
    /// A NaN or infinite entry in an input matrix.
    #[error("{what}[{row}, {column}] is not finite ({value})")]
    NonFinite {
        /// Which matrix.
        what: &'static str,
        /// 0-based row.
        row: usize,
        /// 0-based column.
        column: usize,
        /// The entry.
        value: f64,
    },
    /// A kernel value too large for f64 (a high-degree polynomial kernel, say).
    #[error(
        "the {kernel} kernel overflowed: k(x_{row}, x_{column}) = {value} does not fit a 64-bit \
         float; lower the degree or gamma, or scale the features down"
    )]
    KernelOverflow {
        /// The kernel's name, e.g. `poly`.
        kernel: String,
        /// 0-based row of the first such entry.
        row: usize,
        /// 0-based column.
        column: usize,
        /// The entry.
        value: f64,
    },
    /// A Nyström landmark count out of range, or a landmark index past the data.
    #[error(
        "the Nyström landmarks must be between 1 and the {n} training points, distinct rows of them; got {landmarks}"
    )]
    Landmarks {
        /// Landmarks given.
        landmarks: usize,
        /// Training points.
        n: usize,
    },
    /// A Nyström problem whose matrices do not fit in the memory available.
    #[error(
        "{n} points with {landmarks} Nyström landmarks need about {needed_mib} MiB, more than the \
         {available_mib} MiB available: take fewer landmarks or points"
    )]
    NystromTooLarge {
        /// Training points.
        n: usize,
        /// Landmarks.
        landmarks: usize,
        /// Estimated need.
        needed_mib: u64,
        /// What the system reports available.
        available_mib: u64,
    },
    /// A distillation run of zero steps.
    #[error("the number of steps must be at least 1")]
    ZeroSteps,
    /// A per-step alpha schedule shorter than the number of steps.
    #[error("the alpha schedule has {found} entries but {steps} steps were asked for")]
    ScheduleTooShort {
        /// Entries in the schedule.
        found: usize,
        /// Steps asked for.
        steps: usize,
    },
    /// Cholesky factorisation of `K + ridge * I` failed.
    #[error(
        "K + {ridge} I is not positive definite (pivot {pivot}): the kernel matrix is not positive \
         semi-definite, or the ridge is too small for the rounding in K"
    )]
    NotPositiveDefinite {
        /// The ridge added to the diagonal.
        ridge: f64,
        /// 0-based index of the failing pivot.
        pivot: usize,
    },
    /// The kernel matrix has an eigenvalue that is negative beyond rounding.
    #[error(
        "the kernel matrix is not positive semi-definite: smallest eigenvalue {min} against largest \
         {max} (tolerance {tolerance})"
    )]
    Indefinite {
        /// The smallest eigenvalue found.
        min: f64,
        /// The largest eigenvalue found.
        max: f64,
        /// The negative tolerance it was tested against.
        tolerance: f64,
    },
    /// The symmetric eigensolver did not converge.
    #[error("the eigendecomposition of the kernel matrix did not converge")]
    NoConvergence,
    /// The optimal alpha was asked for against the training targets themselves.
    #[error(
        "the optimal alpha needs reference targets other than the training targets: against them \
         the optimum is always >= 1 (less regularisation always fits the training data better); \
         use held-out data or a known true function"
    )]
    ReferenceIsTrainingData,
    /// The problem would not fit in the memory available.
    #[error(
        "problem too large: {n} training points need about {needed_mib} MiB ({matrices} matrices \
         of {n} x {n} f64 at 8 n^2 bytes each, plus workspace) but only {available_mib} MiB are \
         available"
    )]
    TooLarge {
        /// Training points.
        n: usize,
        /// Dense n x n matrices alive at the peak.
        matrices: usize,
        /// Estimated peak, in MiB.
        needed_mib: u64,
        /// Memory available, in MiB.
        available_mib: u64,
    },
}

fn step_suffix(step: Option<usize>) -> String {
    step.map(|step| format!(" (step {step})"))
        .unwrap_or_default()
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
