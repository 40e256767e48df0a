//! Experiment profiles: TOML files (the shipped ones in `crates/sd-experiments/profiles/`),
//! any field overridable with `FIELD=VALUE`.
//!
//! Field names are the command-line flags' of the same meaning (`epochs` and `--epochs`,
//! `val_size` and `--val-size`); the names of earlier versions (`val_images`, `train_images`,
//! `test_images`, `max_epochs`, `distillation_steps`) are still read.

use std::path::{Path, PathBuf};

use sd_alpha::Alpha;
use sd_resnet::loss::LossKind;
use sd_resnet::{Depth, Stem};
use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::error::{Error, Result};

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
    /// With `data = "fixture"`: its training images.
    #[serde(default = "default_fixture_train")]
    pub fixture_train: usize,
    /// With `data = "fixture"`: its test images.
    #[serde(default = "default_fixture_test")]
    pub fixture_test: usize,
    /// Keep this many training images, balanced across classes (0: all that are left after the
    /// validation split).
    #[serde(default, alias = "train_images")]
    pub train_size: usize,
    /// Validation images held out of the training set, stratified by class.
    #[serde(alias = "val_images")]
    pub val_size: usize,
    /// Validate on the test set instead, as the original code did.
    #[serde(default)]
    pub val_on_test: bool,
    /// Keep this many test images, balanced (0: all).
    #[serde(default, alias = "test_images")]
    pub test_size: usize,
    /// 18, 34 or 50.
    pub resnet: Depth,
    /// `"imagenet"` or `"cifar"`.
    pub stem: Stem,
    /// Channels of the first stage (default 64, torchvision's network; 16 or 32: a CPU-scale
    /// variant with about 1/16 or 1/4 of the work).
    #[serde(default = "default_width")]
    pub width: usize,
    /// `"mse"` (the paper's) or `"ce"`.
    #[serde(default)]
    pub loss: LossKind,
    /// Epochs per step.
    #[serde(alias = "max_epochs")]
    pub epochs: usize,
    /// Steps per chain, the first fit (step 0) included.
    #[serde(alias = "distillation_steps")]
    pub steps: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// How the learning rate changes over a step's epochs: `"constant"` (the default, the
    /// original's) or `"cosine"` (annealed to 0 by the step's end; see `sd_train::LrSchedule`).
    #[serde(default)]
    pub lr_schedule: sd_train::LrSchedule,
    /// Weight of `sum_p |p|_2`.
    pub reg_coef: f64,
    /// The ground-truth weights: numbers in `[0, 1]` and/or `"auto"`.
    pub alphas: Vec<Alpha>,
    /// One chain per alpha and seed.
    pub seeds: Vec<u64>,
    /// `"cpu"`, `"cuda"` or `"cuda:N"`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Threads making batches.
    #[serde(default = "default_workers")]
    pub num_workers: usize,
    /// Weights every step starts from (a torchvision `state_dict` as safetensors, or one of our
    /// checkpoints) instead of a random initialization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PathBuf>,
    /// A new order of the training images every epoch (the default); `false`: the training
    /// split's own order in every epoch and step, as the original's `DataLoader`.
    #[serde(default = "default_true")]
    pub shuffle: bool,
    /// The teacher's BatchNorm mode while a student trains: `"eval"` (the default, a frozen
    /// teacher) or `"train"` (batch statistics, what the original did; see `sd_train::TeacherMode`).
    #[serde(default)]
    pub teacher_mode: sd_train::TeacherMode,
    /// Symmetric label noise on the networks' training labels, each level in `[0, 1)`: a number
    /// or a list (default 0). Each level runs every alpha and seed (`[0.0, 0.3]`: clean and 30%
    /// noise, one report section each); at a level p, each training image's label (held-out
    /// validation images included) is replaced with probability p by a class drawn uniformly;
    /// test labels never.
    #[serde(default = "default_label_noise", deserialize_with = "one_or_many")]
    pub label_noise: Vec<f64>,
    /// Seed of that label noise (default 0): the same noisy labels for every chain.
    #[serde(default)]
    pub noise_seed: u64,
    /// Also run the kernel ridge regression part (the toy example).
    #[serde(default = "default_true")]
    pub krr: bool,
    /// Train the networks' chains (`false`: only the kernel parts run).
    #[serde(default = "default_true")]
    pub networks: bool,
    /// Also run kernel ridge self-distillation on the profile's images (REPORT.md's "Kernel ridge
    /// regression on images"; [`crate::krr::image_study`]).
    #[serde(default)]
    pub kernel_images: bool,
    /// The kernel study's exact route: this many training images, the first in file order (0:
    /// none).
    #[serde(default = "default_kernel_train_size")]
    pub kernel_train_size: usize,
    /// The kernel study's Nyström route on all training images: this many landmarks (0: none).
    #[serde(default)]
    pub kernel_nystrom: usize,
    /// The kernel study's label-noise levels, each in `[0, 1)`.
    #[serde(default = "default_kernel_label_noise")]
    pub kernel_label_noise: Vec<f64>,
    /// The kernel study's alphas.
    #[serde(default = "default_kernel_alphas")]
    pub kernel_alphas: Vec<Alpha>,
    /// The kernel study's steps, step 0 included.
    #[serde(default = "default_kernel_steps")]
    pub kernel_steps: usize,
    /// The kernel study's RBF `gamma`.
    #[serde(default = "default_kernel_gamma")]
    pub kernel_gamma: f64,
    /// The kernel study's ridge `lambda`.
    #[serde(default = "default_kernel_lambda")]
    pub kernel_lambda: f64,
    /// The kernel study's seeds (label noise and landmarks).
    #[serde(default = "default_kernel_seeds")]
    pub kernel_seeds: Vec<u64>,
}

/// Earlier names of fields, read as the current ones (`--set` too).
const ALIASES: [(&str, &str); 5] = [
    ("train_images", "train_size"),
    ("val_images", "val_size"),
    ("test_images", "test_size"),
    ("max_epochs", "epochs"),
    ("distillation_steps", "steps"),
];

fn default_fixture_train() -> usize {
    500
}
fn default_fixture_test() -> usize {
    100
}
fn default_workers() -> usize {
    2
}
fn default_label_noise() -> Vec<f64> {
    vec![0.0]
}
/// A number or a list of numbers.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(f64),
        Many(Vec<f64>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(value) => vec![value],
        OneOrMany::Many(values) => values,
    })
}
fn default_width() -> usize {
    sd_resnet::TORCHVISION_WIDTH
}
fn default_true() -> bool {
    true
}
fn default_kernel_train_size() -> usize {
    10_000
}
fn default_kernel_label_noise() -> Vec<f64> {
    vec![0.0, 0.3]
}
fn default_kernel_alphas() -> Vec<Alpha> {
    [0.0, 0.25, 0.5, 1.0]
        .into_iter()
        .map(Alpha::Fixed)
        .chain([Alpha::Auto])
        .collect()
}
fn default_kernel_steps() -> usize {
    10
}
fn default_kernel_gamma() -> f64 {
    0.02
}
fn default_kernel_lambda() -> f64 {
    0.1
}
fn default_kernel_seeds() -> Vec<u64> {
    vec![0, 1, 2]
}

/// The shipped profiles, built into the binaries so that a copied `sd-cli` or `xtask` (a GPU
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
    /// For messages: the file, or `crates/sd-experiments/profiles/NAME.toml`.
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
        let text = std::fs::read_to_string(as_path).map_err(|e| Error::Profile {
            origin: name_or_path.to_string(),
            problem: format!("cannot read it: {e}"),
        })?;
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
            origin: format!("crates/sd-experiments/profiles/{name}.toml"),
            text: text.to_string(),
        }),
        None => Err(Error::UnknownProfile {
            name: name_or_path.to_string(),
            known: shipped(),
        }),
    }
}

/// Parses `source` and applies `overrides` (`FIELD=VALUE`, the value in TOML syntax, or plain
/// text for a string), then checks it.
pub fn load(source: &ProfileSource, overrides: &[String]) -> Result<Profile> {
    let origin = if overrides.is_empty() {
        source.origin.clone()
    } else {
        format!("{} with {}", source.origin, overrides.join(", "))
    };
    let problem = |problem: String| Error::Profile {
        origin: origin.clone(),
        problem,
    };
    let mut table: toml::Table = toml::from_str(&source.text).map_err(|e| Error::Profile {
        origin: source.origin.clone(),
        problem: e.to_string().trim_end().to_string(),
    })?;
    // One spelling per field: an earlier name in the file or an override counts as the current.
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        if let Some((_, current)) = ALIASES.iter().find(|(old, _)| *old == key) {
            let value = table.remove(&key).expect("listed");
            table.insert(current.to_string(), value);
        }
    }
    for item in overrides {
        let (key, value) = parse_override(item)?;
        table.insert(key, value);
    }
    let mut profile: Profile = table
        .try_into()
        .map_err(|e: toml::de::Error| problem(one_line(&e.to_string())))?;
    profile.name = source.name.clone();
    profile.check().map_err(|e| match e {
        Error::Setting { field, problem: p } => problem(format!("{field} {p}")),
        other => other,
    })?;
    Ok(profile)
}

/// The TOML crate's message for a value of the wrong kind on one line: it ends in
/// ``\nin `field` `` with the backslash and `n` written out (or a real line break).
fn one_line(message: &str) -> String {
    message.trim_end().replace("\\n", "; ").replace('\n', "; ")
}

/// `FIELD=VALUE`: the value as TOML (`3`, `1e-4`, `true`, `[0, 0.5, "auto"]`, `"text"`), or as a
/// plain string when it is not TOML (`data=/srv/cifar`).
pub fn parse_override(item: &str) -> Result<(String, toml::Value)> {
    let problem = |problem: String| Error::Override {
        item: item.to_string(),
        problem,
    };
    let Some((key, value)) = item.split_once('=') else {
        return Err(problem("expected FIELD=VALUE, e.g. epochs=2".into()));
    };
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(problem(format!("'{key}' is not a field name")));
    }
    let key = ALIASES
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, current)| current);
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
                return Err(Error::setting(field, "must be > 0"));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::setting(
                "lr",
                format!("must be a finite number > 0, got {}", self.lr),
            ));
        }
        if !(self.reg_coef.is_finite() && self.reg_coef >= 0.0) {
            return Err(Error::setting(
                "reg_coef",
                format!("must be a finite number >= 0, got {}", self.reg_coef),
            ));
        }
        if self.alphas.is_empty() {
            return Err(Error::setting("alphas", "must not be empty"));
        }
        if self.seeds.is_empty() {
            return Err(Error::setting("seeds", "must not be empty"));
        }
        for (i, a) in self.alphas.iter().enumerate() {
            if self.alphas[..i].contains(a) {
                return Err(Error::setting("alphas", format!("has {a} listed twice")));
            }
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(s) {
                return Err(Error::setting("seeds", format!("has {s} listed twice")));
            }
        }
        if self.label_noise.is_empty() {
            return Err(Error::setting("label_noise", "must not be an empty list"));
        }
        for (i, p) in self.label_noise.iter().enumerate() {
            if !(0.0..1.0).contains(p) {
                return Err(Error::setting(
                    "label_noise",
                    format!("must be in [0, 1), got {p}"),
                ));
            }
            if self.label_noise[..i].contains(p) {
                return Err(Error::setting(
                    "label_noise",
                    format!("has {p} listed twice"),
                ));
            }
        }
        if self.width == 0 {
            return Err(Error::setting("width", "must be > 0"));
        }
        if self.val_size == 0 && !self.val_on_test {
            return Err(Error::setting(
                "val_size",
                "must be > 0 (or set val_on_test = true)",
            ));
        }
        if self.data == "fixture" && (self.fixture_train == 0 || self.fixture_test == 0) {
            return Err(Error::setting(
                "fixture_train",
                "and fixture_test must be > 0",
            ));
        }
        Ok(())
    }

    /// The fixture of a `data = "fixture"` profile; `None` for a real data set.
    pub fn fixture(&self) -> Option<sd_data::fixture::FixtureSpec> {
        (self.data == "fixture").then_some(sd_data::fixture::FixtureSpec {
            train: self.fixture_train,
            test: self.fixture_test,
            seed: 0,
        })
    }

    /// Where the data set of an experiment in `out` lies: for a fixture,
    /// `<out>/data/fixture-<train>-<test>/` (written there by [`crate::experiment::data_path`]),
    /// otherwise the profile's `data`. With an empty `out`, the path as the report names it
    /// (relative to the experiment's directory for a fixture).
    pub fn data_in(&self, out: &Path) -> PathBuf {
        match self.fixture() {
            Some(spec) => out
                .join("data")
                .join(format!("fixture-{}-{}", spec.train, spec.test)),
            None => PathBuf::from(&self.data),
        }
    }

    /// The kernel study on images of this profile, on the images at `data` (the profile's data
    /// set as [`crate::experiment::data_path`] resolves it); `None` when `kernel_images` is off.
    pub fn image_study(&self, data: &Path) -> Option<crate::krr::image_study::ImageStudy> {
        self.kernel_images
            .then(|| crate::krr::image_study::ImageStudy {
                data: data.to_path_buf(),
                train_size: self.kernel_train_size,
                nystrom: self.kernel_nystrom,
                label_noise: self.kernel_label_noise.clone(),
                alphas: self.kernel_alphas.clone(),
                steps: self.kernel_steps,
                gamma: self.kernel_gamma,
                lambda: self.kernel_lambda,
                seeds: self.kernel_seeds.clone(),
            })
    }

    /// What determines the numbers of this profile's chains at `label_noise` (one of the
    /// profile's levels) besides alpha and seed, as a run directory records it.
    pub fn settings(&self, label_noise: f64) -> sd_train::Settings {
        sd_train::Settings {
            data: self.data.clone(),
            fixture: (self.data == "fixture").then_some((self.fixture_train, self.fixture_test)),
            train_size: self.train_size,
            val_size: if self.val_on_test { 0 } else { self.val_size },
            val_on_test: self.val_on_test,
            test_size: self.test_size,
            resnet: self.resnet,
            stem: self.stem,
            width: self.width,
            loss: self.loss,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            reg_coef: self.reg_coef,
            device: self.device.kind(),
            pretrained: self.pretrained.clone(),
            shuffle: self.shuffle,
            teacher_mode: self.teacher_mode,
            lr_schedule: self.lr_schedule,
            label_noise,
            noise_seed: self.noise_seed,
        }
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
            assert!(profile.alphas.contains(&Alpha::Auto), "{name}");
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
            (Depth::R50, 16, 1e-4, 75, 5)
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
        assert_eq!(profile.alphas, [Alpha::Fixed(0.25), Alpha::Auto]);
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
        let depth = error(&["resnet=20"]);
        assert!(
            depth.contains("resnet") && depth.contains("18, 34 or 50"),
            "{depth}"
        );
        let stem = error(&["stem=\"wide\""]);
        assert!(stem.contains("wide") && stem.contains("imagenet"), "{stem}");
        assert!(error(&["device=\"tpu\""]).contains("cpu, cuda or cuda:N"));
        assert!(error(&["epochs"]).contains("expected FIELD=VALUE"));
        assert!(error(&["epochs=two"]).contains("epochs"));
        assert!(format!("{:#}", locate("nope").unwrap_err()).contains("smoke"));
        assert!(error(&["label_noise=1.0"]).contains("in [0, 1), got 1"));
        assert!(error(&["label_noise=[0.3, 0.3]"]).contains("listed twice"));
        assert!(error(&["label_noise=[]"]).contains("empty"));
        assert!(error(&["width=0"]).contains("width must be > 0"));
        let schedule = error(&["lr_schedule=\"linear\""]);
        assert!(
            schedule.contains("`linear`, expected `constant` or `cosine`; in `lr_schedule`")
                && !schedule.contains('\\')
                && !schedule.contains('\n'),
            "{schedule}"
        );
    }

    #[test]
    fn label_noise_is_a_level_or_a_list_of_levels() {
        let path = locate("smoke").unwrap();
        let one = load(&path, &["label_noise=0.2".into()]).unwrap();
        assert_eq!(one.label_noise, [0.2]);
        let two = load(&path, &["label_noise=[0, 0.3]".into()]).unwrap();
        assert_eq!(two.label_noise, [0.0, 0.3]);
        assert_eq!(two.settings(0.3).label_noise, 0.3);
        let fmnist = load(&locate("fmnist").unwrap(), &[]).unwrap();
        assert_eq!(fmnist.label_noise, [0.0, 0.3]);
        assert_eq!(fmnist.width, 16);
    }

    #[test]
    fn earlier_field_names_are_read_as_the_current_ones() {
        let source = ProfileSource {
            name: "old".into(),
            origin: "old.toml".into(),
            text: locate("smoke")
                .unwrap()
                .text
                .replace("\nval_size", "\nval_images")
                .replace("\ntrain_size", "\ntrain_images")
                .replace("\nepochs", "\nmax_epochs"),
        };
        let profile = load(
            &source,
            &["val_images=50".into(), "distillation_steps=3".into()],
        )
        .unwrap();
        assert_eq!(
            (profile.val_size, profile.epochs, profile.steps),
            (50, 2, 3)
        );
        assert!(
            profile.to_toml().contains("val_size = 50"),
            "{}",
            profile.to_toml()
        );
    }
}
