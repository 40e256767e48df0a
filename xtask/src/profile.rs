//! Experiment profiles: TOML files in `xtask/profiles/`, any field overridable with
//! `--set FIELD=VALUE`.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The weight of the ground truth of a chain's steps >= 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlphaSpec {
    /// The same alpha at every step.
    Fixed(f64),
    /// The paper's Algorithm 1: each step's alpha from an `alpha = 0` probe student.
    Auto,
}

impl fmt::Display for AlphaSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlphaSpec::Fixed(alpha) => write!(f, "{alpha}"),
            AlphaSpec::Auto => f.write_str("auto"),
        }
    }
}

impl Serialize for AlphaSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AlphaSpec::Fixed(alpha) => s.serialize_f64(*alpha),
            AlphaSpec::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for AlphaSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(alpha) if (0.0..=1.0).contains(&alpha) => Ok(AlphaSpec::Fixed(alpha)),
            Raw::Number(alpha) => Err(serde::de::Error::custom(format!(
                "alpha {alpha} is outside [0, 1]"
            ))),
            Raw::Text(text) if text == "auto" => Ok(AlphaSpec::Auto),
            Raw::Text(text) => match text.parse::<f64>() {
                Ok(alpha) if (0.0..=1.0).contains(&alpha) => Ok(AlphaSpec::Fixed(alpha)),
                _ => Err(serde::de::Error::custom(format!(
                    "alpha must be a number in [0, 1] or \"auto\", got \"{text}\""
                ))),
            },
        }
    }
}

/// Everything an experiment needs. Field names are the TOML keys (see docs/experiments.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The profile's name (the file's stem; not a TOML key).
    #[serde(skip)]
    pub name: String,
    /// One line on what the profile is for.
    pub description: String,
    /// `"fixture"` (a CIFAR-10-format fixture written into the output directory), or the path of
    /// a CIFAR-10 directory or archive, or a (Fashion-)MNIST IDX directory.
    pub data: String,
    /// With `data = "fixture"`: its training and test images.
    #[serde(default = "default_fixture_train")]
    pub fixture_train: usize,
    /// With `data = "fixture"`: its test images.
    #[serde(default = "default_fixture_test")]
    pub fixture_test: usize,
    /// Keep this many training images, balanced across classes (0: all that are left after the
    /// validation split).
    #[serde(default)]
    pub train_images: usize,
    /// Validation images held out of the training set, stratified by class.
    pub val_images: usize,
    /// Validate on the test set instead, as the original code did.
    #[serde(default)]
    pub val_on_test: bool,
    /// Keep this many test images, balanced (0: all).
    #[serde(default)]
    pub test_images: usize,
    /// 18, 34 or 50.
    pub resnet: u32,
    /// `"imagenet"` or `"cifar"`.
    pub stem: String,
    /// `"mse"` (the paper's) or `"ce"`.
    #[serde(default = "default_loss")]
    pub loss: String,
    /// Epochs per step.
    pub epochs: usize,
    /// Steps per chain, the first fit (step 0) included.
    pub steps: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Weight of `sum_p |p|_2`.
    pub reg_coef: f64,
    /// The ground-truth weights: numbers in `[0, 1]` and/or `"auto"`.
    pub alphas: Vec<AlphaSpec>,
    /// One chain per alpha and seed.
    pub seeds: Vec<u64>,
    /// `"cpu"`, `"cuda"` or `"cuda:N"`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Threads making batches.
    #[serde(default = "default_workers")]
    pub num_workers: usize,
    /// Also run the kernel ridge regression part.
    #[serde(default = "default_true")]
    pub krr: bool,
}

fn default_fixture_train() -> usize {
    500
}
fn default_fixture_test() -> usize {
    100
}
fn default_loss() -> String {
    "mse".into()
}
fn default_device() -> String {
    "cpu".into()
}
fn default_workers() -> usize {
    2
}
fn default_true() -> bool {
    true
}

/// The profiles of `xtask/profiles/`, built into the binary so that a copied `xtask` (a GPU
/// build on a cluster) finds them wherever the checkout lies.
const SHIPPED: [(&str, &str); 3] = [
    ("fmnist", include_str!("../profiles/fmnist.toml")),
    ("paper", include_str!("../profiles/paper.toml")),
    ("smoke", include_str!("../profiles/smoke.toml")),
];

/// A profile's TOML and where it came from.
#[derive(Debug, Clone)]
pub struct ProfileSource {
    /// The profile's name: a shipped profile's, or the file's stem.
    pub name: String,
    /// For messages: the file, or `xtask/profiles/NAME.toml`.
    pub origin: String,
    /// The TOML text.
    pub text: String,
}

/// The names of the shipped profiles, sorted.
pub fn shipped() -> Vec<String> {
    SHIPPED.iter().map(|(name, _)| name.to_string()).collect()
}

/// `NAME` (a shipped profile) or the path of a TOML file.
pub fn locate(name_or_path: &str) -> Result<ProfileSource> {
    let as_path = Path::new(name_or_path);
    if name_or_path.ends_with(".toml") || as_path.components().count() > 1 {
        let text = std::fs::read_to_string(as_path)
            .with_context(|| format!("cannot read profile file {name_or_path}"))?;
        return Ok(ProfileSource {
            name: as_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            origin: name_or_path.to_string(),
            text,
        });
    }
    match SHIPPED.iter().find(|(name, _)| *name == name_or_path) {
        Some((name, text)) => Ok(ProfileSource {
            name: name.to_string(),
            origin: format!("xtask/profiles/{name}.toml"),
            text: text.to_string(),
        }),
        None => bail!(
            "no profile named '{name_or_path}'; the profiles are: {} (or give the path of a \
             .toml file)",
            shipped().join(", ")
        ),
    }
}

/// Parses `source` and applies `overrides` (`FIELD=VALUE`, the value in TOML syntax, or plain
/// text for a string), then checks it.
pub fn load(source: &ProfileSource, overrides: &[String]) -> Result<Profile> {
    let mut table: toml::Table =
        toml::from_str(&source.text).with_context(|| format!("profile {}", source.origin))?;
    for item in overrides {
        let (key, value) = parse_override(item)?;
        table.insert(key, value);
    }
    let mut profile: Profile = table.try_into().with_context(|| {
        format!(
            "profile {}{}",
            source.origin,
            if overrides.is_empty() {
                String::new()
            } else {
                format!(" with --set {}", overrides.join(" --set "))
            }
        )
    })?;
    profile.name = source.name.clone();
    profile.check()?;
    Ok(profile)
}

/// `FIELD=VALUE`: the value as TOML (`3`, `1e-4`, `true`, `[0, 0.5, "auto"]`, `"text"`), or as a
/// plain string when it is not TOML (`data=/srv/cifar`).
pub fn parse_override(item: &str) -> Result<(String, toml::Value)> {
    let Some((key, value)) = item.split_once('=') else {
        bail!("--set {item}: expected FIELD=VALUE, e.g. --set epochs=2");
    };
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("--set {item}: '{key}' is not a field name");
    }
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("value = {value}"))
        .ok()
        .and_then(|mut t| t.remove("value"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key.to_string(), parsed))
}

impl Profile {
    fn check(&self) -> Result<()> {
        let positive = [
            ("epochs", self.epochs),
            ("steps", self.steps),
            ("batch_size", self.batch_size),
        ];
        for (field, value) in positive {
            if value == 0 {
                bail!("{field} must be > 0");
            }
        }
        if !matches!(self.resnet, 18 | 34 | 50) {
            bail!("resnet must be 18, 34 or 50, got {}", self.resnet);
        }
        if !matches!(self.stem.as_str(), "imagenet" | "cifar") {
            bail!(
                "stem must be \"imagenet\" or \"cifar\", got \"{}\"",
                self.stem
            );
        }
        if !matches!(self.loss.as_str(), "mse" | "ce") {
            bail!("loss must be \"mse\" or \"ce\", got \"{}\"", self.loss);
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("lr must be a finite number > 0, got {}", self.lr);
        }
        if !(self.reg_coef.is_finite() && self.reg_coef >= 0.0) {
            bail!(
                "reg_coef must be a finite number >= 0, got {}",
                self.reg_coef
            );
        }
        if self.alphas.is_empty() || self.seeds.is_empty() {
            bail!("alphas and seeds must not be empty");
        }
        for (i, a) in self.alphas.iter().enumerate() {
            if self.alphas[..i].contains(a) {
                bail!("alpha {a} is listed twice");
            }
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(s) {
                bail!("seed {s} is listed twice");
            }
        }
        if self.val_images == 0 && !self.val_on_test {
            bail!("val_images must be > 0 (or set val_on_test = true)");
        }
        if self.data == "fixture" && (self.fixture_train == 0 || self.fixture_test == 0) {
            bail!("fixture_train and fixture_test must be > 0");
        }
        Ok(())
    }

    /// The profile as TOML, as it was run (overrides applied).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a profile serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_file_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, shipped(), "add new profiles to SHIPPED");
        // A file given by path loads too.
        let profile = load(
            &locate(dir.join("smoke.toml").to_str().unwrap()).unwrap(),
            &[],
        )
        .unwrap();
        assert_eq!(profile.name, "smoke");
    }

    #[test]
    fn the_shipped_profiles_load() {
        let names = shipped();
        for name in ["smoke", "fmnist", "paper"] {
            assert!(names.contains(&name.to_string()), "{names:?}");
            let profile = load(&locate(name).unwrap(), &[]).unwrap();
            assert_eq!(profile.name, name);
            assert!(profile.alphas.contains(&AlphaSpec::Auto), "{name}");
        }
        let paper = load(&locate("paper").unwrap(), &[]).unwrap();
        assert_eq!(
            (
                paper.resnet,
                paper.batch_size,
                paper.lr,
                paper.epochs,
                paper.steps
            ),
            (50, 16, 1e-4, 75, 5)
        );
        assert_eq!(paper.seeds.len(), 3);
        assert_eq!(paper.alphas.len(), 7);
    }

    #[test]
    fn any_field_can_be_overridden() {
        let path = locate("smoke").unwrap();
        let profile = load(
            &path,
            &[
                "epochs=3".into(),
                "alphas=[0.25, \"auto\"]".into(),
                "data=/srv/data/cifar-10".into(),
                "lr = 1e-4".into(),
            ],
        )
        .unwrap();
        assert_eq!(profile.epochs, 3);
        assert_eq!(profile.alphas, [AlphaSpec::Fixed(0.25), AlphaSpec::Auto]);
        assert_eq!(profile.data, "/srv/data/cifar-10");
        assert_eq!(profile.lr, 1e-4);
        // What was run can be read back.
        let again: Profile = toml::from_str(&profile.to_toml()).unwrap();
        assert_eq!(
            Profile {
                name: profile.name.clone(),
                ..again
            },
            profile
        );
    }

    #[test]
    fn bad_profiles_are_refused_with_the_field_named() {
        let path = locate("smoke").unwrap();
        let error = |overrides: &[&str]| {
            let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
            format!("{:#}", load(&path, &overrides).unwrap_err())
        };
        assert!(error(&["epoch=2"]).contains("unknown field `epoch`"));
        assert!(error(&["epochs=0"]).contains("epochs must be > 0"));
        assert!(error(&["alphas=[1.5]"]).contains("outside [0, 1]"));
        assert!(error(&["alphas=[\"often\"]"]).contains("\"often\""));
        assert!(error(&["alphas=[0.5, 0.5]"]).contains("listed twice"));
        assert!(error(&["resnet=20"]).contains("resnet must be 18, 34 or 50"));
        assert!(error(&["epochs"]).contains("expected FIELD=VALUE"));
        assert!(error(&["epochs=two"]).contains("epochs"));
        assert!(format!("{:#}", locate("nope").unwrap_err()).contains("smoke"));
    }
}
