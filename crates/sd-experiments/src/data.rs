//! Image data sets as jobs: inspect one (formats, classes per split, channel statistics), write
//! a fixture in the real file formats.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sd_data::fixture::{self, FixtureSpec};
use sd_data::{ChannelStats, Dataset, SplitConfig, Splits, Subset, Validation};
use serde::Serialize;

use crate::error::{Error, Result};

/// Which splits `inspect` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectConfig {
    /// The data set path.
    pub path: PathBuf,
    /// `None`: the files' own train and test splits; `Some`: split as the trainer would.
    pub split: Option<SplitConfig>,
}

/// One split's description.
#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    /// `train`, `val` or `test`.
    pub name: &'static str,
    /// Images.
    pub images: usize,
    /// Images per class, in class order.
    pub per_class: Vec<usize>,
    /// Per-channel mean and population std in [0, 1] units (pixel / 255).
    pub channels: Vec<ChannelStats>,
}

/// What `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The path the data was read from.
    pub source: PathBuf,
    /// How it was stored.
    pub format: String,
    /// Which data set it is taken to be.
    pub dataset: String,
    /// Whether it is a fixture written by `sd-cli data fixture`.
    pub fixture: bool,
    /// `CxHxW`.
    pub image_shape: String,
    /// Class names.
    pub classes: Vec<String>,
    /// The normalization the trainer uses for it (mean, std per channel).
    pub normalization: sd_data::Normalization,
    /// How the validation split was made, when one was asked for.
    pub split: Option<SplitConfig>,
    /// Train and test, or train, val and test.
    pub splits: Vec<SplitSummary>,
}

fn summary(name: &'static str, subset: &Subset) -> SplitSummary {
    SplitSummary {
        name,
        images: subset.len(),
        per_class: subset.class_counts(),
        channels: subset.images().channel_stats(Some(subset.indices())),
    }
}

/// Reads and describes a data set.
pub fn inspect(config: &InspectConfig) -> Result<Inspection> {
    let data = Dataset::open(&config.path)?;
    let splits = match &config.split {
        None => vec![
            summary("train", &Subset::all(data.train.clone())),
            summary("test", &Subset::all(data.test.clone())),
        ],
        Some(split) => {
            let splits = Splits::new(&data, split)?;
            let mut out = vec![summary("train", &splits.train)];
            if split.validation != (Validation::Holdout { size: 0 }) {
                out.push(summary("val", &splits.val));
            }
            out.push(summary("test", &splits.test));
            out
        }
    };
    Ok(Inspection {
        source: data.source.clone(),
        format: data.format.to_string(),
        dataset: data.kind.to_string(),
        fixture: data.is_fixture,
        image_shape: data.shape().to_string(),
        classes: data.class_names.clone(),
        normalization: data.normalization(),
        split: config.split.clone(),
        splits,
    })
}

/// The inspection as a table for people.
pub fn table(inspection: &Inspection) -> String {
    let mut out = String::new();
    let fixture = if inspection.fixture { " (fixture)" } else { "" };
    let _ = writeln!(out, "path     {}", inspection.source.display());
    let _ = writeln!(out, "format   {}{fixture}", inspection.format);
    let _ = writeln!(
        out,
        "dataset  {}, {} classes, images {}",
        inspection.dataset,
        inspection.classes.len(),
        inspection.image_shape
    );
    if let Some(split) = &inspection.split {
        let validation = match split.validation {
            Validation::Holdout { size } => {
                format!("{size} held out of train (stratified, seed {})", split.seed)
            }
            Validation::TestSet => "the test set".to_string(),
        };
        let _ = writeln!(out, "val      {validation}");
    }
    out.push('\n');

    let name_width = inspection
        .classes
        .iter()
        .map(|n| n.len() + 3)
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = write!(out, "{:<name_width$}", "class");
    for split in &inspection.splits {
        let _ = write!(out, " {:>8}", split.name);
    }
    out.push('\n');
    for (k, name) in inspection.classes.iter().enumerate() {
        let _ = write!(out, "{:<name_width$}", format!("{k} {name}"));
        for split in &inspection.splits {
            let _ = write!(out, " {:>8}", split.per_class.get(k).copied().unwrap_or(0));
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<name_width$}", "total");
    for split in &inspection.splits {
        let _ = write!(out, " {:>8}", split.images);
    }
    out.push_str("\n\n");

    let _ = write!(out, "channel");
    for split in &inspection.splits {
        let _ = write!(out, " {:>17}", format!("{} mean/std", split.name));
    }
    let _ = writeln!(out, " {:>17}", "normalize with");
    let channels = inspection.splits.first().map_or(0, |s| s.channels.len());
    for c in 0..channels {
        let _ = write!(out, "{c:<7}");
        for split in &inspection.splits {
            let stats = split.channels[c];
            let _ = write!(
                out,
                " {:>17}",
                format!("{:.4} / {:.4}", stats.mean, stats.std)
            );
        }
        let n = &inspection.normalization;
        let pick = |v: &[f32]| v.get(c).or(v.first()).copied().unwrap_or(f32::NAN);
        let _ = writeln!(
            out,
            " {:>17}",
            format!("{:.4} / {:.4}", pick(&n.mean), pick(&n.std))
        );
    }
    out
}

/// The file layouts a fixture can take.
///
/// Text form ([`FromStr`], [`fmt::Display`]): `cifar`, `cifar-archive`, `idx`, `idx-gz`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
    strum::EnumMessage,
)]
#[strum(serialize_all = "kebab-case")]
pub enum FixtureLayout {
    /// CIFAR-10 binary files in OUT/cifar-10-batches-bin/ (3x32x32)
    #[default]
    #[strum(message = "CIFAR-10 binary files in OUT/cifar-10-batches-bin/ (3x32x32)")]
    Cifar,
    /// The same as OUT/cifar-10-binary.tar.gz, laid out like the official download
    #[strum(
        message = "The same as OUT/cifar-10-binary.tar.gz, laid out like the official download"
    )]
    CifarArchive,
    /// The four (Fashion-)MNIST IDX files in OUT/ (1x28x28), uncompressed
    #[strum(message = "The four (Fashion-)MNIST IDX files in OUT/ (1x28x28), uncompressed")]
    Idx,
    /// The four IDX files gzip-compressed (.gz), as distributed
    #[strum(message = "The four IDX files gzip-compressed (.gz), as distributed")]
    IdxGz,
}

impl FixtureLayout {
    /// `cifar`, `cifar-archive`, `idx` or `idx-gz`.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl FromStr for FixtureLayout {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        crate::error::parse_name("layout", text)
    }
}

/// Writes a fixture; returns the path to read it from. Refuses to write where a data set that is
/// not a fixture already is, or where one could be damaged or shadowed.
pub fn write_fixture(out: &Path, layout: FixtureLayout, spec: FixtureSpec) -> Result<PathBuf> {
    if spec.train == 0 || spec.test == 0 {
        return Err(Error::setting(
            "fixture",
            "needs at least one training and one test image",
        ));
    }
    let target = match layout {
        FixtureLayout::Cifar => out.join(sd_data::cifar::DIR_NAME),
        FixtureLayout::CifarArchive => out.join(sd_data::cifar::ARCHIVE_NAME),
        FixtureLayout::Idx | FixtureLayout::IdxGz => out.to_path_buf(),
    };
    // Whatever `out` or the target holds must be a fixture (or nothing recognisable).
    for place in [out, &target] {
        match Dataset::open(place) {
            Ok(data) if data.is_fixture => {}
            Ok(data) => {
                return Err(Error::NotAFixture {
                    place: place.to_path_buf(),
                    what: format!("{} data ({}) that is not a fixture", data.kind, data.format),
                });
            }
            Err(sd_data::DataError::UnknownFormat { .. }) => {}
            Err(sd_data::DataError::Missing { path, .. }) if path == place => {}
            Err(err) => {
                return Err(Error::NotAFixture {
                    place: place.to_path_buf(),
                    what: format!("data that does not read as a data set ({err})"),
                });
            }
        }
    }
    match layout {
        FixtureLayout::Cifar => {
            fixture::write_cifar10(out, spec)?;
        }
        FixtureLayout::CifarArchive => {
            std::fs::create_dir_all(out).map_err(Error::io(out))?;
            fixture::write_cifar10_archive(&target, spec)?;
        }
        FixtureLayout::Idx | FixtureLayout::IdxGz => {
            fixture::write_idx(out, spec, layout == FixtureLayout::IdxGz)?
        }
    }
    Ok(target)
}
