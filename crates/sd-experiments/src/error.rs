//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can stop a job, an experiment or a report. Messages name the file, line,
/// field or setting at fault; they name no command-line flag (the command line says which flag
/// set what).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Kernel ridge regression: a kernel parameter, alpha, shapes, memory.
    #[error(transparent)]
    Kernel(#[from] sd_kernel::Error),
    /// An image data set.
    #[error(transparent)]
    Data(#[from] sd_data::DataError),
    /// A chain of networks, its run directory or its files.
    #[error(transparent)]
    Train(#[from] sd_train::TrainError),
    /// A CSV file of points for kernel ridge regression.
    #[error(transparent)]
    Table(#[from] crate::krr::input::TableError),
    /// A file or directory that cannot be read, written or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A setting out of range, named as in profiles.
    #[error("{field} {problem}")]
    Setting {
        /// The setting, e.g. `steps`.
        field: &'static str,
        /// What is wrong, e.g. `must be at least 1, got 0`.
        problem: String,
    },
    /// Algorithm 1 for kernels without reference data: against the training targets the optimal
    /// alpha is always at least 1.
    #[error(
        "alpha auto needs reference data (held-out points): against the training targets the \
         optimal alpha is always >= 1"
    )]
    AutoWithoutReference,
    /// A device that this build cannot open.
    #[error("device {spec}: {problem}")]
    Device {
        /// `cpu`, `cuda`, `cuda:N`.
        spec: String,
        /// What is wrong.
        problem: String,
    },
    /// No profile of that name.
    #[error(
        "no profile named '{name}'; the profiles are: {} (or give the path of a .toml file)",
        known.join(", ")
    )]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The shipped profiles.
        known: Vec<String>,
    },
    /// A profile that does not parse or does not check: the file (and overrides), then what.
    #[error("profile {origin}: {problem}")]
    Profile {
        /// `crates/sd-experiments/profiles/NAME.toml`, or the file, with the overrides.
        origin: String,
        /// What is wrong (the TOML parser's message names the line and column).
        problem: String,
    },
    /// A `FIELD=VALUE` override that is not one.
    #[error("override '{item}': {problem}")]
    Override {
        /// As given.
        item: String,
        /// What is wrong.
        problem: String,
    },
    /// A data set that is not where the profile says, with how to get it.
    #[error("profile '{profile}': the data set {} {problem}: {how}", path.display())]
    DataMissing {
        /// The profile.
        profile: String,
        /// Where it should be.
        path: PathBuf,
        /// `does not exist`, or the reader's message.
        problem: String,
        /// How to get it.
        how: String,
    },
    /// A Slurm array task whose variables do not describe a shard.
    #[error("{0}")]
    Slurm(String),
    /// A result file of a run that the report cannot read.
    #[error("{}: {problem}", path.display())]
    ResultFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where there is one.
        problem: String,
    },

    /// A directory without an experiment's `experiment.json`.
    #[error("{} is not an experiment directory (it has no experiment.json)", .0.display())]
    NotAnExperiment(PathBuf),
    /// Two chains of different settings given as one experiment.
    #[error(
        "{} and {} were trained with different settings: they are not one experiment",
        first.display(),
        second.display()
    )]
    NotOneExperiment {
        /// One chain.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A figure that could not be drawn.
    #[error("cannot draw {}: {message}", path.display())]
    Plot {
        /// The figure's file.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
    /// A place where a fixture would overwrite or shadow real data.
    #[error(
        "{} holds {what}: refusing to write a fixture there (choose another output directory)",
        place.display()
    )]
    NotAFixture {
        /// The directory or file.
        place: PathBuf,
        /// What it holds, e.g. `CIFAR-10 data (binary batches) that is not a fixture`.
        what: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn setting(field: &'static str, problem: impl Into<String>) -> Error {
        Error::Setting {
            field,
            problem: problem.into(),
        }
    }
}

/// `text` as the variant of `T` it names (the enums flags and files spell as words, their names
/// from strum's derives), or [`Error::Setting`] of `field` listing every name.
pub(crate) fn parse_name<T>(field: &'static str, text: &str) -> Result<T>
where
    T: strum::VariantArray + strum::VariantNames + Copy + Into<&'static str>,
{
    <T as strum::VariantArray>::VARIANTS
        .iter()
        .copied()
        .find(|variant| Into::<&'static str>::into(*variant) == text)
        .ok_or_else(|| {
            let names = <T as strum::VariantNames>::VARIANTS;
            let expected = match names.split_last() {
                Some((last, init)) if !init.is_empty() => format!("{} or {last}", init.join(", ")),
                _ => names.join(""),
            };
            Error::setting(field, format!("must be {expected}, got '{text}'"))
        })
}
