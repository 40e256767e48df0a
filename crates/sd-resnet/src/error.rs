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
    /// A configuration that cannot work.
    #[error("{0}")]
    InvalidConfig(String),
}

/// The result type of this crate.
pub type Result<T, E = ResnetError> = std::result::Result<T, E>;
