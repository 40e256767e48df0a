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
