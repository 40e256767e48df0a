//! The command line: `sd-cli [-v|-q] [--threads N] <command> ...`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::krr::{AlphaChoice, KernelChoice, KrrConfig, SolverChoice};
use crate::output::Format;

/// Self-distillation with weighted ground-truth targets (Borup & Andersen, NeurIPS 2021).
#[derive(Debug, Parser)]
#[command(name = "sd-cli", version, arg_required_else_help = true)]
pub struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Worker threads for the linear algebra [default: all cores, or RAYON_NUM_THREADS]
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The jobs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Self-distillation of kernel ridge regression (the paper's toy example by default)
    Krr(KrrArgs),
    /// Image data sets: inspect CIFAR-10 or (Fashion-)MNIST files, write a fixture
    #[command(subcommand)]
    Data(DataCommand),
    /// Self-distillation of ResNets on CIFAR-10 or Fashion-MNIST (the paper's deep experiments)
    Resnet(Box<ResnetArgs>),
    /// Measurements: training-step throughput, parity with torchvision (CPU and GPU)
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `sd-cli bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time one training step (forward, backward, Adam) on random 32x32 images; one JSON line
    #[command(
        after_help = "Prints {\"impl\", \"resnet\", \"stem\", \"batch\", \"device\", \"steps\",     \"median_s\", \"images_per_s\", \"peak_rss_mib\", \"threads\"}, as bench/train_step.py does for     PyTorch.\nExample: sd-cli bench train-step --resnet 50 --batch 128 --device cuda"
    )]
    TrainStep(TrainStepArgs),
    /// Compare outputs and gradients with torchvision's (files of bench/torchvision_parity.py),
    /// on the CPU and on --device
    #[command(
        after_help = "DIR holds resnet<L>.safetensors and resnet<L>-io.safetensors, written by     python bench/torchvision_parity.py --depth L --out DIR. Exits with status 2 when ours on     --device differs from ours on the CPU by more than --tolerance (or gives NaN)."
    )]
    Parity(ParityArgs),
}

/// Arguments of `sd-cli bench train-step`.
#[derive(Debug, Args)]
pub struct TrainStepArgs {
    /// Depth
    #[arg(long, value_enum, default_value_t = DepthArg::R18)]
    pub resnet: DepthArg,
    /// Stem
    #[arg(long, value_enum, default_value_t = StemArg::Imagenet)]
    pub stem: StemArg,
    /// Images per batch
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Timed steps after one warm-up step
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: u32,
    /// Stop timing after this many seconds (at least 3 steps are timed)
    #[arg(long, default_value_t = 60.0, value_name = "S")]
    pub max_seconds: f64,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Arguments of `sd-cli bench parity`.
#[derive(Debug, Args)]
pub struct ParityArgs {
    /// Directory with the weights and the reference batch
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Depth
    #[arg(long, value_enum, default_value_t = DepthArg::R18)]
    pub resnet: DepthArg,
    /// cpu, cuda or cuda:N: compared with the CPU
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Largest relative difference accepted between --device and the CPU
    #[arg(long, default_value_t = 1e-4, value_name = "X")]
    pub tolerance: f64,
}

/// Network depth on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DepthArg {
    /// ResNet-18
    #[value(name = "18")]
    R18,
    /// ResNet-34
    #[value(name = "34")]
    R34,
    /// ResNet-50
    #[value(name = "50")]
    R50,
}

impl From<DepthArg> for sd_resnet::Depth {
    fn from(depth: DepthArg) -> Self {
        match depth {
            DepthArg::R18 => sd_resnet::Depth::R18,
            DepthArg::R34 => sd_resnet::Depth::R34,
            DepthArg::R50 => sd_resnet::Depth::R50,
        }
    }
}

impl From<StemArg> for sd_resnet::Stem {
    fn from(stem: StemArg) -> Self {
        match stem {
            StemArg::Imagenet => sd_resnet::Stem::Imagenet,
            StemArg::Cifar => sd_resnet::Stem::Cifar,
        }
    }
}

/// Stem on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StemArg {
    /// 7x7 stride-2 convolution + 3x3 stride-2 max-pool (torchvision's; the original's)
    Imagenet,
    /// 3x3 stride-1 convolution, no max-pool (the common CIFAR variant)
    Cifar,
}

/// Loss on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// Mean squared error between softmax outputs and targets (the original's)
    Mse,
    /// Cross-entropy against soft targets
    Ce,
}

/// Arguments of `sd-cli resnet`.
#[derive(Debug, Args)]
#[command(
    after_help = "Step 0 fits the ground truth; step k >= 1 trains a fresh network on \
    alpha * ground truth + (1 - alpha) * softmax of the step k-1 network. Files go to \
    OUT/<time>_<alpha>_<lr>_<seed>/ (metrics.csv, test.csv, step_k/ checkpoints).\n\
    Example: sd-cli data fixture --out fx && sd-cli resnet --data fx --alpha 0.6 \
    --max-epochs 2 --distillation-steps 2 --val-size 100"
)]
pub struct ResnetArgs {
    /// The data set: a CIFAR-10 directory or archive, or a (Fashion-)MNIST IDX directory
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,

    /// Weight of the ground truth in the targets of steps >= 1, in [0, 1]
    #[arg(long, value_parser = unit_interval)]
    pub alpha: f64,

    /// Distillation steps to train (the first fit included)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub distillation_steps: u32,

    /// Epochs per step
    #[arg(long, alias = "max_epochs", default_value_t = 75, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_epochs: u32,

    /// Images per batch
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: u32,

    /// Network depth
    #[arg(long, value_enum, default_value_t = DepthArg::R18)]
    pub resnet: DepthArg,

    /// First layers
    #[arg(long, value_enum, default_value_t = StemArg::Imagenet)]
    pub stem: StemArg,

    /// Loss between the network's outputs and its targets
    #[arg(long, value_enum, default_value_t = LossArg::Mse)]
    pub loss: LossArg,

    /// Adam's learning rate
    #[arg(long, default_value = "1e-3", value_parser = positive, allow_hyphen_values = true)]
    pub lr: f64,

    /// Weight of the regularizer sum_p |p|_2 (unsquared L2 norm of each parameter tensor)
    #[arg(long, default_value = "1e-4", value_parser = non_negative, allow_hyphen_values = true)]
    pub reg_coef: f64,

    /// Seed of initialization, validation split, shuffling and augmentation
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Accepted for the original's command lines: CPU runs are always deterministic
    #[arg(long)]
    pub deterministic: bool,

    /// Validation images held out of the training set (stratified by class)
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub val_size: usize,

    /// Validate on the test set instead, as the original code did
    #[arg(long)]
    pub val_on_test: bool,

    /// Train on the first N training images only, balanced across classes
    #[arg(long, value_name = "N")]
    pub limit_train: Option<usize>,

    /// Test on the first N test images only, balanced across classes
    #[arg(long, value_name = "N")]
    pub limit_test: Option<usize>,

    /// Threads making batches
    #[arg(long, default_value_t = 2)]
    pub num_workers: usize,

    /// Initial weights of every step: a torchvision state_dict saved as safetensors, or one of
    /// our checkpoints (same architecture)
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,

    /// Resume a chain: the checkpoint of step --teacher-step, teacher of the next step
    #[arg(long, value_name = "FILE", requires = "teacher_step")]
    pub teacher_ckpt: Option<PathBuf>,

    /// The step the --teacher-ckpt model belongs to; training starts at the next one
    #[arg(long, value_name = "K", requires = "teacher_ckpt")]
    pub teacher_step: Option<usize>,

    /// Parent directory of the run directories
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub out: PathBuf,

    /// cpu, cuda or cuda:N (CUDA needs a build with --features cuda)
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

fn unit_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err("must be a number in [0, 1]".into()),
    }
}

impl ResnetArgs {
    /// The run these arguments describe.
    pub fn run(&self, show_progress: bool) -> Result<crate::resnet::ResnetRun> {
        Ok(crate::resnet::ResnetRun {
            data: self.data.clone(),
            depth: self.resnet.into(),
            stem: self.stem.into(),
            loss: match self.loss {
                LossArg::Mse => sd_resnet::loss::LossKind::SoftmaxMse,
                LossArg::Ce => sd_resnet::loss::LossKind::CrossEntropy,
            },
            alpha: self.alpha,
            steps: self.distillation_steps as usize,
            max_epochs: self.max_epochs as usize,
            batch_size: self.batch_size as usize,
            lr: self.lr,
            reg_coef: self.reg_coef,
            seed: self.seed,
            val_size: self.val_size,
            val_on_test: self.val_on_test,
            limit_train: self.limit_train,
            limit_test: self.limit_test,
            num_workers: self.num_workers,
            pretrained: self.pretrained.clone(),
            teacher_ckpt: self.teacher_ckpt.clone(),
            teacher_step: self.teacher_step,
            out: self.out.clone(),
            device: crate::resnet::device(&self.device)?,
            show_progress,
        })
    }
}

/// `sd-cli data ...`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Read a data set, validate it, and print its format, class counts per split and
    /// per-channel mean and std
    #[command(
        after_help = "PATH: a cifar-10-batches-bin directory (or its parent), \
    cifar-10-binary.tar.gz, or a directory of (Fashion-)MNIST IDX files such as \
    /usr/share/datasets/fashion-mnist.\n\
    Example: sd-cli data inspect /usr/share/datasets/fashion-mnist --val-size 5000"
    )]
    Inspect(InspectArgs),
    /// Write a small data set in the real CIFAR-10 binary (or IDX) format, with class structure
    /// a small network learns, for tests and quick runs
    #[command(
        after_help = "Example: sd-cli data fixture --out fixture --train 500 --test 100 \
    && sd-cli data inspect fixture"
    )]
    Fixture(FixtureArgs),
}

/// Arguments of `sd-cli data inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The data set
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Also show the validation split the trainer would hold out of the training set: this many
    /// images, stratified by class
    #[arg(long, value_name = "N", conflicts_with = "val_on_test")]
    pub val_size: Option<usize>,

    /// Show the test set as the validation split (the original code's choice)
    #[arg(long)]
    pub val_on_test: bool,

    /// Seed of the held-out draw
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Keep only the first N training images, balanced across classes
    #[arg(long, value_name = "N")]
    pub limit_train: Option<usize>,

    /// Output format on stdout
    #[arg(long, value_enum, default_value_t = InspectFormat::Table)]
    pub format: InspectFormat,
}

/// Output formats of `sd-cli data inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    /// Tables for people
    Table,
    /// One JSON object
    Json,
}

impl InspectArgs {
    /// The inspection these arguments ask for.
    pub fn config(&self) -> crate::images::InspectConfig {
        let split = if self.val_size.is_some() || self.val_on_test || self.limit_train.is_some() {
            Some(sd_data::SplitConfig {
                validation: if self.val_on_test {
                    sd_data::Validation::TestSet
                } else {
                    sd_data::Validation::Holdout {
                        size: self.val_size.unwrap_or(0),
                    }
                },
                seed: self.seed,
                limit_train: self.limit_train,
                ..sd_data::SplitConfig::default()
            })
        } else {
            None
        };
        crate::images::InspectConfig {
            path: self.path.clone(),
            split,
        }
    }
}

/// Arguments of `sd-cli data fixture`.
#[derive(Debug, Args)]
pub struct FixtureArgs {
    /// Directory to write into (created if needed)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Training images (balanced over the 10 classes)
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub train: u32,

    /// Test images
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub test: u32,

    /// Seed of the images and labels
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// File layout
    #[arg(long, value_enum, default_value_t = crate::images::FixtureLayout::Cifar)]
    pub layout: crate::images::FixtureLayout,
}

/// Kernel choices on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelName {
    /// exp(-gamma |x - x'|^2)
    Rbf,
    /// exp(-gamma |x - x'|_1)
    Laplacian,
    /// <x, x'>
    Linear,
    /// (gamma <x, x'> + coef0)^degree
    Poly,
}

/// Arguments of `sd-cli krr`.
#[derive(Debug, Args)]
#[command(
    after_help = "Without --data, runs the toy example of the paper (from Mobahi et al. \
    2020: 11 noisy samples of sin(2 pi x)) and reports the loss against sin(2 pi x).\n\
    Example: sd-cli krr --alpha 0.25 --plot figures/"
)]
pub struct KrrArgs {
    /// Weight of the ground truth in each step's targets, in [0, 1]; or `auto`: the optimal alpha
    /// of each step against the reference (the true function on the toy data, else --test)
    #[arg(long, default_value = "0.25", value_parser = parse_alpha, allow_hyphen_values = true)]
    pub alpha: AlphaArg,

    /// With --alpha auto: clamp each optimum into [0, 1] (it is reported as it is otherwise)
    #[arg(long)]
    pub clamp_alpha: bool,

    /// Kernel
    #[arg(long, value_enum, default_value_t = KernelName::Rbf)]
    pub kernel: KernelName,

    /// Kernel scale for rbf, laplacian and poly (scikit-learn's gamma) [default: 80, the toy
    /// example's; 1 for poly]
    #[arg(long, value_parser = positive, allow_hyphen_values = true)]
    pub gamma: Option<f64>,

    /// Polynomial kernel degree [default: 3]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub degree: Option<u32>,

    /// Polynomial kernel constant, >= 0 [default: 1]
    #[arg(long, value_parser = non_negative, allow_hyphen_values = true)]
    pub coef0: Option<f64>,

    /// Ridge regularisation lambda, > 0
    #[arg(long, default_value = "0.2", value_parser = positive, allow_hyphen_values = true)]
    pub lambda: f64,

    /// Distillation steps, step 1 being plain kernel ridge regression
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub steps: u64,

    /// Training data: CSV with a header row; --target names the target columns, the rest are
    /// features [default: the toy example]
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,

    /// Target column(s) of --data, comma-separated [default: the last column]
    #[arg(long, value_name = "NAME", value_delimiter = ',', requires = "data")]
    pub target: Vec<String>,

    /// Held-out CSV with the same columns as --data: the loss is measured on it, and it is the
    /// reference of --alpha auto
    #[arg(long, value_name = "FILE", requires = "data")]
    pub test: Option<PathBuf>,

    /// Output format on stdout
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write the figures (fit, B diagonals, ratios R_k) as PNG and SVG into this directory
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,

    /// Factorisation: cholesky is fastest for one run but gives no spectrum (B diagonals,
    /// eigenvalues); auto takes eigen when the output needs the spectrum (json, --plot)
    #[arg(long, value_enum, default_value_t = SolverChoice::Auto)]
    pub solver: SolverChoice,
}

/// `--alpha`: a number in [0, 1] or `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlphaArg {
    /// A constant alpha.
    Fixed(f64),
    /// The optimum per step.
    Auto,
}

fn parse_alpha(text: &str) -> Result<AlphaArg, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(AlphaArg::Auto);
    }
    match text.parse::<f64>() {
        Ok(alpha) if (0.0..=1.0).contains(&alpha) => Ok(AlphaArg::Fixed(alpha)),
        _ => Err("alpha must be a number in [0, 1] or 'auto'".into()),
    }
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err("must be a finite number > 0".into()),
    }
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err("must be a finite number >= 0".into()),
    }
}

impl KrrArgs {
    /// The run these arguments describe; refuses parameters that do not apply to the kernel.
    /// `show_progress`: whether a spinner may be drawn (not with `-q`).
    pub fn config(&self, show_progress: bool) -> Result<KrrConfig> {
        if self.kernel != KernelName::Poly {
            if self.degree.is_some() {
                bail!("--degree applies to --kernel poly only");
            }
            if self.coef0.is_some() {
                bail!("--coef0 applies to --kernel poly only");
            }
        }
        let kernel = match self.kernel {
            KernelName::Rbf => KernelChoice::Rbf {
                gamma: self.gamma.unwrap_or(sd_kernel::toy::GAMMA),
            },
            KernelName::Laplacian => KernelChoice::Laplacian {
                gamma: self.gamma.unwrap_or(sd_kernel::toy::GAMMA),
            },
            KernelName::Linear => {
                if self.gamma.is_some() {
                    bail!("--gamma does not apply to --kernel linear");
                }
                KernelChoice::Linear
            }
            KernelName::Poly => KernelChoice::Polynomial {
                gamma: self.gamma.unwrap_or(1.0),
                coef0: self.coef0.unwrap_or(1.0),
                degree: self.degree.unwrap_or(3),
            },
        };
        let alpha = match self.alpha {
            AlphaArg::Fixed(alpha) => {
                if self.clamp_alpha {
                    bail!("--clamp-alpha applies to --alpha auto only");
                }
                AlphaChoice::Fixed(alpha)
            }
            AlphaArg::Auto => AlphaChoice::Auto {
                clamp: self.clamp_alpha,
            },
        };
        if self.plot.is_some() && self.solver == SolverChoice::Cholesky {
            bail!(
                "--plot draws the B diagonals, which need the eigendecomposition: drop --solver \
                 cholesky"
            );
        }
        Ok(KrrConfig {
            kernel,
            lambda: self.lambda,
            alpha,
            steps: usize::try_from(self.steps)?,
            data: self.data.clone(),
            targets: self.target.clone(),
            test: self.test.clone(),
            solver: self.solver,
            need_spectrum: self.format == Format::Json || self.plot.is_some(),
            need_curves: self.plot.is_some(),
            show_progress,
        })
    }
}
