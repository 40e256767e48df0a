//! The command line, `sd-cli [-v|-q] [--threads N] <command> ...`, and its conversion into the
//! libraries' settings. Flags share their names with profile fields (`--epochs` and `epochs`);
//! the names of earlier versions and of the original code stay as aliases.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Result, bail};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use sd_alpha::Alpha;
use sd_experiments::DeviceSpec;
use sd_experiments::data::{FixtureLayout, InspectConfig};
use sd_experiments::krr::images::ImageSource;
use sd_experiments::krr::output::Format;
use sd_experiments::krr::{KernelKind, KrrConfig, NystromChoice, SolverChoice};
use sd_experiments::plan::Shard;
use sd_experiments::resnet::ResnetJob;
use sd_resnet::loss::LossKind;
use sd_resnet::{Depth, Stem};
use sd_train::{LrSchedule, TeacherMode};

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

    /// Worker threads for the linear algebra and the network kernels [default: all cores, or
    /// RAYON_NUM_THREADS]
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
    Krr(Box<KrrArgs>),
    /// Image data sets: inspect CIFAR-10 or (Fashion-)MNIST files, write a fixture
    #[command(subcommand)]
    Data(DataCommand),
    /// Self-distillation of ResNets on CIFAR-10 or Fashion-MNIST (the paper's deep experiments)
    Resnet(Box<ResnetArgs>),
    /// The paper's experiments from a profile (what `cargo xtask paper-experiments` runs)
    #[command(subcommand)]
    Experiments(ExperimentsCommand),
    /// Measurements: training-step throughput, parity with torchvision (CPU and GPU)
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// A value parser over a library type's text form, listing its values with their help.
fn one_of<T>(values: &[(&'static str, &'static str)]) -> impl TypedValueParser<Value = T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Debug,
{
    PossibleValuesParser::new(
        values
            .iter()
            .map(|&(name, help)| PossibleValue::new(name).help(help)),
    )
    .map(|text: String| text.parse::<T>().expect("every listed value parses"))
}

/// A value parser over an enum the libraries name with strum: its names, each with its message
/// as the help, in the enum's order.
fn described<T>() -> impl TypedValueParser<Value = T>
where
    T: strum::VariantArray + strum::EnumMessage + Copy + Into<&'static str> + Send + Sync,
{
    PossibleValuesParser::new(T::VARIANTS.iter().map(|&variant| {
        let name: &'static str = variant.into();
        PossibleValue::new(name).help(variant.get_message().unwrap_or_default())
    }))
    .map(|text: String| {
        *T::VARIANTS
            .iter()
            .find(|&&variant| Into::<&'static str>::into(variant) == text)
            .expect("clap accepts only the names listed")
    })
}

fn depth() -> impl TypedValueParser<Value = Depth> {
    one_of(&[
        ("18", "ResNet-18"),
        ("34", "ResNet-34"),
        ("50", "ResNet-50"),
    ])
}

fn device(text: &str) -> Result<DeviceSpec, String> {
    text.parse().map_err(|e: sd_experiments::Error| {
        let message = e.to_string();
        message
            .split_once(": ")
            .map_or(message.clone(), |(_, rest)| rest.to_string())
    })
}

fn alpha(text: &str) -> Result<Alpha, String> {
    text.parse()
        .map_err(|_| "alpha must be a number in [0, 1] or 'auto'".to_string())
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err("must be a finite number > 0".into()),
    }
}

fn noise_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..1.0).contains(&value) => Ok(value),
        _ => Err("must be a number in [0, 1)".into()),
    }
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err("must be a finite number >= 0".into()),
    }
}

/// `sd-cli bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time one training step (forward, backward, Adam) on random 32x32 images; one JSON line
    #[command(
        after_help = "Prints {\"impl\", \"resnet\", \"stem\", \"batch\", \"device\", \"steps\", \
        \"median_s\", \"images_per_s\", \"peak_rss_mib\", \"threads\"}, as bench/train_step.py \
        does for PyTorch.\nExample: sd-cli bench train-step --resnet 50 --batch 128 --device cuda"
    )]
    TrainStep(TrainStepArgs),
    /// Compare outputs and gradients with torchvision's (files of bench/torchvision_parity.py),
    /// on the CPU and on --device
    #[command(
        after_help = "DIR holds resnet<L>.safetensors and resnet<L>-io.safetensors, written by \
        python bench/torchvision_parity.py --depth L --out DIR. Exits with status 2 when ours on \
        --device differs from ours on the CPU by more than --tolerance (or gives NaN)."
    )]
    Parity(ParityArgs),
}

/// Arguments of `sd-cli bench train-step`.
#[derive(Debug, Args)]
pub struct TrainStepArgs {
    /// Depth
    #[arg(long, default_value = "18", value_parser = depth())]
    pub resnet: Depth,
    /// Stem
    #[arg(long, default_value = "imagenet", value_parser = described::<Stem>())]
    pub stem: Stem,
    /// Images per batch
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Timed steps after one warm-up step
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: u32,
    /// Stop timing after this many seconds (at least 3 steps are timed)
    #[arg(long, default_value = "60", value_name = "S", value_parser = non_negative)]
    pub max_seconds: f64,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu", value_parser = device)]
    pub device: DeviceSpec,
}

/// Arguments of `sd-cli bench parity`.
#[derive(Debug, Args)]
pub struct ParityArgs {
    /// Directory with the weights and the reference batch
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Depth
    #[arg(long, default_value = "18", value_parser = depth())]
    pub resnet: Depth,
    /// cpu, cuda or cuda:N: compared with the CPU
    #[arg(long, default_value = "cpu", value_parser = device)]
    pub device: DeviceSpec,
    /// Largest relative difference accepted between --device and the CPU
    #[arg(long, default_value_t = 1e-4, value_name = "X")]
    pub tolerance: f64,
}

/// Arguments of `sd-cli resnet`.
#[derive(Debug, Args)]
#[command(
    after_help = "Step 0 fits the ground truth; step k >= 1 trains a fresh network on \
    alpha * ground truth + (1 - alpha) * softmax of the step k-1 network; --alpha auto chooses \
    each step's alpha by the paper's Algorithm 1. Files go to OUT/<time>_<alpha>_<lr>_<seed>/ \
    (metrics.csv, test.csv, step_k/ checkpoints, chain.json).\n\
    Example: sd-cli data fixture --out fx && sd-cli resnet --data fx --alpha 0.6 \
    --epochs 2 --steps 2 --val-size 100"
)]
pub struct ResnetArgs {
    /// The data set: a CIFAR-10 directory or archive, or a (Fashion-)MNIST IDX directory
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,

    /// Weight of the ground truth in the targets of steps >= 1, in [0, 1]; or `auto`: each
    /// step's alpha by Algorithm 1 (an alpha = 0 probe per step, on the validation split)
    #[arg(long, value_parser = alpha)]
    pub alpha: Alpha,

    /// Steps to train, the first fit (step 0) included; after --teacher-step K, steps K+1 to K+N
    #[arg(long, alias = "distillation-steps", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub steps: u32,

    /// Epochs per step
    #[arg(long, aliases = ["max-epochs", "max_epochs"], default_value_t = 75, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub epochs: u32,

    /// Images per batch
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: u32,

    /// Network depth
    #[arg(long, default_value = "18", value_parser = depth())]
    pub resnet: Depth,

    /// First layers
    #[arg(long, default_value = "imagenet", value_parser = described::<Stem>())]
    pub stem: Stem,

    /// Channels of the first stage: 64 is torchvision's network (its checkpoints load both
    /// ways); 32 or 16 is a CPU-scale variant (about 1/4 or 1/16 of the work)
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub width: u32,

    /// Loss between the network's outputs and its targets
    #[arg(long, default_value = "mse", value_parser = described::<LossKind>())]
    pub loss: LossKind,

    /// Adam's learning rate
    #[arg(long, default_value = "1e-3", value_parser = positive, allow_hyphen_values = true)]
    pub lr: f64,

    /// How Adam's learning rate changes over each step's epochs
    #[arg(long, default_value = "constant", value_parser = described::<LrSchedule>())]
    pub lr_schedule: LrSchedule,

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
    #[arg(long, alias = "limit-train", value_name = "N", value_parser = image_count)]
    pub train_size: Option<u64>,

    /// Test on the first N test images only, balanced across classes
    #[arg(long, alias = "limit-test", value_name = "N", value_parser = image_count)]
    pub test_size: Option<u64>,

    /// Threads making batches
    #[arg(long, default_value_t = 2)]
    pub num_workers: usize,

    /// Initial weights of every step: a torchvision state_dict saved as safetensors, or one of
    /// our checkpoints (same architecture)
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,

    /// Keep the training split's own order in every epoch and step, as the original's
    /// DataLoader did, instead of a new order every epoch
    #[arg(long)]
    pub no_shuffle: bool,

    /// How the teacher's BatchNorm layers run while a student trains
    #[arg(long, default_value = "eval", value_parser = described::<TeacherMode>())]
    pub teacher_mode: TeacherMode,

    /// Symmetric label noise: each training label (held-out validation labels too) replaced
    /// with probability P by a class drawn uniformly; test labels never. P in [0, 1)
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.0,
        value_parser = noise_rate,
        allow_hyphen_values = true
    )]
    pub label_noise: f64,

    /// Seed of the label noise
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub noise_seed: u64,

    /// Resume a chain: the checkpoint of step --teacher-step, teacher of the next step
    #[arg(long, value_name = "FILE", requires = "teacher_step")]
    pub teacher_ckpt: Option<PathBuf>,

    /// The step the --teacher-ckpt model belongs to; training starts at the next one
    #[arg(long, value_name = "K", requires = "teacher_ckpt")]
    pub teacher_step: Option<usize>,

    /// Continue this run directory (one a killed or finished run left): the same flags as the
    /// run that made it, and its steps not yet finished are trained; other settings are refused
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["teacher_ckpt", "teacher_step"])]
    pub resume: Option<PathBuf>,

    /// Parent directory of the run directories
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub out: PathBuf,

    /// cpu, cuda or cuda:N (CUDA needs a build with `cargo xtask cuda-build`)
    #[arg(long, default_value = "cpu", value_parser = device)]
    pub device: DeviceSpec,
}

impl ResnetArgs {
    /// The job these arguments describe.
    pub fn job(&self, show_progress: bool) -> Result<ResnetJob> {
        let teacher = match (&self.teacher_ckpt, self.teacher_step) {
            (Some(path), Some(step)) => {
                if !path.is_file() {
                    bail!("--teacher-ckpt {}: no such file", path.display());
                }
                Some((path.clone(), step))
            }
            _ => None,
        };
        Ok(ResnetJob {
            data: self.data.clone(),
            alpha: self.alpha,
            steps: self.steps as usize,
            epochs: self.epochs as usize,
            batch_size: self.batch_size as usize,
            resnet: self.resnet,
            stem: self.stem,
            width: self.width as usize,
            loss: self.loss,
            lr: self.lr,
            reg_coef: self.reg_coef,
            seed: self.seed,
            val_size: self.val_size,
            val_on_test: self.val_on_test,
            train_size: self.train_size.map(|n| n as usize),
            test_size: self.test_size.map(|n| n as usize),
            num_workers: self.num_workers,
            pretrained: self.pretrained.clone(),
            shuffle: !self.no_shuffle,
            teacher_mode: self.teacher_mode,
            lr_schedule: self.lr_schedule,
            label_noise: self.label_noise,
            noise_seed: self.noise_seed,
            teacher,
            resume: self.resume.clone(),
            out: self.out.clone(),
            device: self.device,
            show_progress,
        })
    }
}

/// `sd-cli experiments ...`.
#[derive(Debug, Subcommand)]
pub enum ExperimentsCommand {
    /// Run a profile end to end (the kernel part, one chain per alpha and seed) and write
    /// REPORT.md; rerunning resumes
    #[command(
        after_help = "The same as `cargo xtask paper-experiments` (docs/experiments.md), for \
        users of the binary alone.\nExample: sd-cli experiments run --profile smoke --out smoke"
    )]
    Run(ExperimentsRunArgs),
    /// Write REPORT.md again from the runs of one or more output directories (merging shards)
    Report(ExperimentsReportArgs),
}

/// Arguments of `sd-cli experiments run` (and `cargo xtask paper-experiments`).
#[derive(Debug, Args)]
pub struct ExperimentsRunArgs {
    /// A shipped profile (smoke, fmnist, paper) or the path of a TOML file
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: String,
    /// Change a field of the profile, FIELD=VALUE in TOML syntax (repeatable), e.g.
    /// --set epochs=2 --set 'alphas=[0, 0.5, "auto"]'
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub overrides: Vec<String>,
    /// Output directory [default: paper/PROFILE]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run only the I-th of N parts of the chains [default: from SLURM_ARRAY_TASK_ID and
    /// SLURM_ARRAY_TASK_COUNT when set, else all]
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}

/// Arguments of `sd-cli experiments report`.
#[derive(Debug, Args)]
pub struct ExperimentsReportArgs {
    /// Output directories of `experiments run`
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write the report [default: the first DIR]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
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
    #[arg(long, alias = "limit-train", value_name = "N", value_parser = image_count)]
    pub train_size: Option<u64>,

    /// Output format on stdout
    #[arg(long, default_value = "table", value_parser = one_of::<Format>(&[
        ("table", "Tables for people"),
        ("json", "One JSON object"),
    ]))]
    pub format: Format,
}

impl InspectArgs {
    /// The inspection these arguments ask for.
    pub fn config(&self) -> InspectConfig {
        let split = if self.val_size.is_some() || self.val_on_test || self.train_size.is_some() {
            Some(sd_data::SplitConfig {
                validation: if self.val_on_test {
                    sd_data::Validation::TestSet
                } else {
                    sd_data::Validation::Holdout {
                        size: self.val_size.unwrap_or(0),
                    }
                },
                seed: self.seed,
                limit_train: self.train_size.map(|n| n as usize),
                ..sd_data::SplitConfig::default()
            })
        } else {
            None
        };
        InspectConfig {
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
    #[arg(long, default_value = "cifar", value_parser = described::<FixtureLayout>())]
    pub layout: FixtureLayout,
}

/// Arguments of `sd-cli krr`.
#[derive(Debug, Args)]
#[command(
    after_help = "Without --data, runs the toy example of the paper (from Mobahi et al. \
    2020: 11 noisy samples of sin(2 pi x)) and reports the loss against sin(2 pi x). Step 0 is \
    plain kernel ridge regression, the first fit.\n\
    Example: sd-cli krr --alpha 0.25 --plot figures/"
)]
pub struct KrrArgs {
    /// Weight of the ground truth in each step's targets, in [0, 1]; or `auto`: the optimal alpha
    /// of each step against the reference (the true function on the toy data, else --test)
    #[arg(long, default_value = "0.25", value_parser = alpha, allow_hyphen_values = true)]
    pub alpha: Alpha,

    /// With --alpha auto: clamp each optimum into [0, 1] (it is reported as it is otherwise)
    #[arg(long)]
    pub clamp_alpha: bool,

    /// Kernel
    #[arg(long, default_value = "rbf", value_parser = described::<KernelKind>())]
    pub kernel: KernelKind,

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

    /// Steps, the first fit (step 0, plain kernel ridge regression) included
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

    /// An image data set instead of --data: a (Fashion-)MNIST IDX directory or CIFAR-10; pixels
    /// / 255, one-hot targets, test accuracy by argmax (--gamma defaults to 0.02 here)
    #[arg(long, value_name = "DIR", conflicts_with_all = ["data", "test", "target"])]
    pub images: Option<PathBuf>,

    /// With --images: train on N of the training images (the first N in file order, or a random
    /// N with --subset-seed) [default: all]
    #[arg(long, value_name = "N", value_parser = image_count, requires = "images")]
    pub train_size: Option<u64>,

    /// With --images: test on M of the test images, chosen as --train-size chooses [default: all]
    #[arg(long, value_name = "M", value_parser = image_count, requires = "images")]
    pub test_size: Option<u64>,

    /// With --images: hold the last V of the chosen training images out for choosing alpha
    /// [default: none for a fixed alpha, a tenth for --alpha auto]
    #[arg(long, value_name = "V", requires = "images")]
    pub val_size: Option<u64>,

    /// With --images: take a seeded random subset instead of the first images in file order
    #[arg(long, value_name = "S", requires = "images")]
    pub subset_seed: Option<u64>,

    /// With --images: replace each training label with probability P by a class drawn uniformly
    /// from all classes (test labels are never touched)
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.0,
        requires = "images",
        allow_hyphen_values = true
    )]
    pub label_noise: f64,

    /// With --images: the seed of --label-noise
    #[arg(long, value_name = "S", default_value_t = 0, requires = "images")]
    pub noise_seed: u64,

    /// With --images: centre and scale each pixel by the training images' mean and standard
    /// deviation
    #[arg(long, requires = "images")]
    pub standardize: bool,

    /// The Nyström route with M landmarks (drawn uniformly without replacement from the training
    /// points): for training sets whose n x n kernel matrix does not fit in memory
    #[arg(long, value_name = "M", value_parser = image_count)]
    pub nystrom: Option<u64>,

    /// The seed of the Nyström landmarks' draw
    #[arg(long, value_name = "S", default_value_t = 0, requires = "nystrom")]
    pub landmark_seed: u64,

    /// Output format on stdout
    #[arg(long, default_value = "table", value_parser = one_of::<Format>(&[
        ("table", "A table for people, like the original notebook's"),
        ("json", "One JSON object (documented in docs/cli.md)"),
        ("csv", "CSV: step,alpha,loss,train_loss, the limit as step `limit`"),
    ]))]
    pub format: Format,

    /// Write the figures (fit, B diagonals, ratios R_k) as PNG and SVG into this directory
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,

    /// Factorisation: cholesky is fastest for one run but gives no spectrum (B diagonals,
    /// eigenvalues); auto takes eigen when the output needs the spectrum (json, --plot)
    #[arg(long, default_value = "auto", value_parser = described::<SolverChoice>())]
    pub solver: SolverChoice,
}

impl KrrArgs {
    /// The run these arguments describe; refuses flags that do not go together, naming them.
    /// `show_progress`: whether a spinner may be drawn (not with `-q`).
    pub fn config(&self, show_progress: bool) -> Result<KrrConfig> {
        if self.kernel != KernelKind::Poly {
            if self.degree.is_some() {
                bail!("--degree applies to --kernel poly only");
            }
            if self.coef0.is_some() {
                bail!("--coef0 applies to --kernel poly only");
            }
        }
        if self.kernel == KernelKind::Linear && self.gamma.is_some() {
            bail!("--gamma does not apply to --kernel linear");
        }
        if self.clamp_alpha && !self.alpha.is_auto() {
            bail!("--clamp-alpha applies to --alpha auto only");
        }
        if self.alpha.is_auto() && self.data.is_some() && self.test.is_none() {
            bail!(
                "--alpha auto needs reference data: pass --test FILE (held-out points); the \
                 training targets cannot serve, since against them the optimal alpha is always \
                 >= 1"
            );
        }
        if self.nystrom.is_some() && self.solver != SolverChoice::Auto {
            bail!("--nystrom is a route of its own: drop --solver");
        }
        if self.plot.is_some() && self.solver == SolverChoice::Cholesky {
            bail!(
                "--plot draws the B diagonals, which need the eigendecomposition: drop --solver \
                 cholesky"
            );
        }
        // Pixels in [0, 1] put 784-dimensional images about 10 apart: the toy's gamma of 80
        // would make every kernel value 0.
        let gamma = match (&self.images, self.kernel) {
            (Some(_), KernelKind::Rbf | KernelKind::Laplacian) => self.gamma.or(Some(IMAGES_GAMMA)),
            _ => self.gamma,
        };
        let images = self.images.as_ref().map(|path| ImageSource {
            path: path.clone(),
            train_size: self.train_size.map(|n| n as usize),
            test_size: self.test_size.map(|n| n as usize),
            val_size: self.val_size.map(|n| n as usize),
            subset_seed: self.subset_seed,
            label_noise: self.label_noise,
            noise_seed: self.noise_seed,
            standardize: self.standardize,
        });
        Ok(KrrConfig {
            kernel: self.kernel.with(gamma, self.coef0, self.degree)?,
            images,
            nystrom: self.nystrom.map(|m| NystromChoice {
                landmarks: m as usize,
                seed: self.landmark_seed,
            }),
            lambda: self.lambda,
            alpha: self.alpha,
            clamp: self.clamp_alpha,
            steps: usize::try_from(self.steps)?,
            data: self.data.clone(),
            targets: self.target.clone(),
            test: self.test.clone(),
            solver: self.solver,
            // With images the spectrum (n B-diagonal entries per step, an eigendecomposition
            // about 4 times a Cholesky factorisation's cost) is only there when asked for.
            need_spectrum: (self.format == Format::Json && self.images.is_none())
                || self.plot.is_some(),
            need_curves: self.plot.is_some(),
            show_progress,
        })
    }
}

/// The default `gamma` of `krr --images` (rbf and laplacian).
const IMAGES_GAMMA: f64 = 0.02;

/// A number of images to keep: at least 1 (leaving the flag out keeps them all).
fn image_count(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 (leave the flag out to use all images)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number of images")),
    }
}
