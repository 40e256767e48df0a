//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can stop a chain: bad settings, bad or missing files, the network, the data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The network: building it, a tensor operation, a checkpoint.
    #[error(transparent)]
    Resnet(#[from] sd_resnet::ResnetError),
    /// The data: reading, splitting, batching.
    #[error(transparent)]
    Data(#[from] sd_data::DataError),
    /// A file that cannot be read or written, or a directory that cannot be made.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A run file with a line that does not parse: it is never skipped silently.
    #[error("{}, line {line}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
    /// The training loss became NaN or infinite: the step stops; earlier checkpoints stay.
    #[error(
        "the training loss became {value} at step {step}, epoch {epoch}, batch {batch}: stopped \
         (a lower learning rate or regularizer weight may help; the last good checkpoints are \
         kept)"
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
    /// A setting that must be positive is 0.
    #[error("{what} must be at least 1")]
    Zero {
        /// `epochs`, `steps`, `batch_size`, `width`.
        what: &'static str,
    },
    /// A fixed alpha outside `[0, 1]`.
    #[error("alpha must lie in [0, 1], got {alpha}")]
    Alpha {
        /// The weight given.
        alpha: f64,
    },
    /// A learning rate or regularizer weight that cannot work.
    #[error("{what} must be a finite number {requirement}, got {value}")]
    Rate {
        /// `lr`, `reg_coef` or `label_noise`.
        what: &'static str,
        /// `> 0`, `>= 0` or `in [0, 1)`.
        requirement: &'static str,
        /// The value given.
        value: f64,
    },
    /// A split with no images where the chain needs some.
    #[error("the {split} split is empty: {why}")]
    EmptySplit {
        /// `training`, `validation`, `test`.
        split: &'static str,
        /// What needs it.
        why: &'static str,
    },
    /// A run directory trained with other settings: continuing it would mix two experiments.
    #[error(
        "{} was trained with other settings ({differences}); choose another directory (a teacher \
         checkpoint copied out of its run directory starts a new one), or delete that one to \
         train it again",
        dir.display()
    )]
    OtherSettings {
        /// The run directory.
        dir: PathBuf,
        /// `field A there, B now`, comma-separated.
        differences: String,
    },
    /// Another process holds the run directory's lock.
    #[error("{} is being trained by another process", dir.display())]
    Locked {
        /// The run directory.
        dir: PathBuf,
    },
    /// A step whose teacher (the previous step's final checkpoint) is not there.
    #[error("step {step} needs its teacher, the step {} checkpoint {}, which is missing", step - 1, path.display())]
    MissingTeacher {
        /// The step to train.
        step: usize,
        /// Where the teacher should be.
        path: PathBuf,
    },
    /// A checkpoint (a teacher, a probe) of another network than the chain's.
    #[error("the checkpoint {} does not fit this chain's network ({network}): {source}", path.display())]
    TeacherMismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The chain's network, e.g. `ResNet-34, imagenet stem, 3 input channels, 10 classes`.
        network: String,
        /// What did not fit.
        #[source]
        source: Box<sd_resnet::ResnetError>,
    },
    /// A checkpoint that cannot serve as the teacher of the step after `step`: it is another
    /// step's, its step did not finish, or nothing says which step it is.
    #[error("{} cannot be the teacher of step {}: {why}", path.display(), step + 1)]
    NotATeacher {
        /// The checkpoint.
        path: PathBuf,
        /// The teacher step given.
        step: usize,
        /// Why not.
        why: String,
    },
    /// A checkpoint holding NaN or infinite weights (a run that diverged).
    #[error(
        "{} holds non-finite values in '{tensor}': the run that wrote it diverged; train that \
         step again (with a lower learning rate)",
        path.display()
    )]
    NonFiniteWeights {
        /// The checkpoint.
        path: PathBuf,
        /// The first tensor with a NaN or an infinity.
        tensor: String,
    },
    /// A teacher step with no step after it.
    #[error("teacher step {step} leaves no step to train")]
    TeacherStep {
        /// The step given.
        step: usize,
    },
    /// A step of another chain that cannot be copied: unfinished, or another chain's.
    #[error("step {step} of {} cannot be copied: {why}", dir.display())]
    CopySource {
        /// The chain it would come from.
        dir: PathBuf,
        /// The step.
        step: usize,
        /// Why not.
        why: &'static str,
    },
    /// A value that does not go into JSON (a path that is not UTF-8).
    #[error("{}: cannot be written as JSON: {source}", path.display())]
    Unwritable {
        /// The file.
        path: PathBuf,
        /// serde_json's message.
        #[source]
        source: serde_json::Error,
    },
    /// Algorithm 1 needs the chain's first fit, which a chain started from an outside teacher
    /// does not have.
    #[error(
        "alpha auto needs the chain's first fit, {}, which is missing (a chain started from an \
         outside teacher has none)",
        path.display()
    )]
    MissingFirstFit {
        /// Where step 0's checkpoint should be.
        path: PathBuf,
    },
    /// Two tensors compared that differ in shape.
    #[error("cannot compare shapes {ours:?} and {theirs:?}")]
    Shapes {
        /// Ours.
        ours: Vec<usize>,
        /// The reference's.
        theirs: Vec<usize>,
    },
    /// A reference file (bench/torchvision_parity.py's) without a tensor that is compared.
    #[error("{} has no tensor '{name}'", path.display())]
    MissingReference {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
}

impl From<candle_core::Error> for TrainError {
    fn from(error: candle_core::Error) -> Self {
        TrainError::Resnet(error.into())
    }
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}

/// The result type of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
