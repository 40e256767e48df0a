//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong when building, running, loading or optimizing a network.
///
/// Functions that implement candle's traits (`ModuleT::forward_t`, `Optimizer::step`) return
/// candle's error; `?` turns a `ResnetError` into one ([`From`] below), so the two mix in a
/// candle program.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResnetError {
    /// A tensor operation failed (shapes, devices, dtypes).
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// A network without input channels, classes or width.
    #[error(
        "a ResNet needs at least one input channel, one class and a width of at least 1, got \
         {in_channels} channels, {classes} classes and width {width}"
    )]
    EmptyNetwork {
        /// Input channels asked for.
        in_channels: usize,
        /// Classes asked for.
        classes: usize,
        /// Width asked for.
        width: usize,
    },
    /// An op got a tensor of a rank it does not take.
    #[error("{op} takes {expected} tensors, got {got:?}")]
    Rank {
        /// The op: `convolution`, `max-pool`.
        op: &'static str,
        /// What it takes, e.g. `[N, C, H, W]`.
        expected: &'static str,
        /// The dimensions it got.
        got: Vec<usize>,
    },
    /// A convolution whose weight does not match its input's channels.
    #[error(
        "convolution weight {weight:?} expects {expected} input channels, the input {input:?} has \
         {found}"
    )]
    Channels {
        /// The weight's dimensions `[O, C, kh, kw]`.
        weight: Vec<usize>,
        /// The input's dimensions `[N, C, H, W]`.
        input: Vec<usize>,
        /// The weight's `C`.
        expected: usize,
        /// The input's `C`.
        found: usize,
    },
    /// A window (convolution kernel or pool) that does not fit the padded input, or a pool
    /// whose kernel, stride or padding cannot work.
    #[error(
        "{op} kernel {kernel} x {kernel_w} with stride {stride} and padding {padding} does not fit \
         a {height} x {width} input (kernel and stride must be > 0, a pool's padding at most half \
         its kernel)"
    )]
    Window {
        /// The op.
        op: &'static str,
        /// Kernel height.
        kernel: usize,
        /// Kernel width.
        kernel_w: usize,
        /// Stride.
        stride: usize,
        /// Zero (or `-inf`) border on each side.
        padding: usize,
        /// Input height.
        height: usize,
        /// Input width.
        width: usize,
    },
    /// A loss whose logits and targets differ in shape.
    #[error("logits {logits:?} and targets {targets:?} differ in shape")]
    LossShapes {
        /// The logits' dimensions.
        logits: Vec<usize>,
        /// The targets' dimensions.
        targets: Vec<usize>,
    },
    /// A ground-truth weight outside `[0, 1]`.
    #[error("alpha must lie in [0, 1], got {alpha}")]
    Alpha {
        /// The weight given.
        alpha: f64,
    },
    /// The regularizer of an empty list of tensors.
    #[error("no parameters to regularize")]
    NoParameters,
    /// A learning rate that is not a finite number above 0.
    #[error("the learning rate must be finite and > 0, got {lr}")]
    LearningRate {
        /// The rate given.
        lr: f64,
    },
    /// Text that names no depth, stem or loss.
    #[error("'{text}' is not a {what}: expected {expected}")]
    Parse {
        /// `depth`, `stem`, `loss`.
        what: &'static str,
        /// The text given.
        text: String,
        /// The accepted spellings.
        expected: String,
    },
    /// A checkpoint file that is missing or not a readable safetensors file.
    #[error("checkpoint {}: {detail}", path.display())]
    CheckpointUnreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong (`no such file`, the reader's message).
        detail: String,
    },
    /// A checkpoint without a tensor the model needs.
    #[error("checkpoint {}: missing tensor {name}", path.display())]
    CheckpointMissing {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A checkpoint tensor of another shape than the model's.
    #[error(
        "checkpoint {}: tensor {name} has shape {found:?}, the model needs {expected:?}",
        path.display()
    )]
    CheckpointShape {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The model's.
        expected: Vec<usize>,
    },
    /// A checkpoint with tensors the model does not have (another architecture).
    #[error("checkpoint {}: tensors the model does not have: {}", path.display(), names.join(", "))]
    CheckpointExtra {
        /// The file.
        path: PathBuf,
        /// Their names, sorted.
        names: Vec<String>,
    },
}

/// The result type of this crate.
pub type Result<T, E = ResnetError> = std::result::Result<T, E>;

impl From<ResnetError> for candle_core::Error {
    /// candle's own errors come back as they were; ours are wrapped (recover them with
    /// `downcast_ref` on the wrapped error).
    fn from(error: ResnetError) -> Self {
        match error {
            ResnetError::Tensor(inner) => inner,
            other => candle_core::Error::wrap(other),
        }
    }
}

/// `text` as the variant of `T` that it names (the enums flags and files spell as words, their
/// names from strum's derives), or [`ResnetError::Parse`] listing every name.
pub(crate) fn parse_name<T>(what: &'static str, text: &str) -> Result<T>
where
    T: strum::VariantArray + strum::VariantNames + Copy + Into<&'static str>,
{
    <T as strum::VariantArray>::VARIANTS
        .iter()
        .copied()
        .find(|variant| Into::<&'static str>::into(*variant) == text)
        .ok_or_else(|| ResnetError::Parse {
            what,
            text: text.to_string(),
            expected: one_of(<T as strum::VariantNames>::VARIANTS),
        })
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
