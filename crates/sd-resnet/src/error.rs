//! The error type of this crate.

/// Everything that can go wrong when building or running a network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResnetError {
    /// A tensor operation failed (shapes, devices, dtypes).
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// A checkpoint that cannot be written or does not fit the model.
    #[error("checkpoint {}: {detail}", path.display())]
    Checkpoint {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The training loss became NaN or infinite: the step stops; earlier checkpoints stay.
    #[error(
        "the training loss became {value} at step {step}, epoch {epoch}, batch {batch}: stopped \
         (lower --lr or --reg-coef; the last good checkpoints are kept)"
    )]
    NonFinite {
        /// Distillation step.
        step: usize,
        /// Epoch.
        epoch: usize,
        /// Batch within the epoch.
        batch: usize,
        /// The loss.
        value: f64,
    },
    /// A file could not be written or a directory created.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration that cannot work.
    #[error("{0}")]
    InvalidConfig(String),
}

/// The result type of this crate.
pub type Result<T, E = ResnetError> = std::result::Result<T, E>;
