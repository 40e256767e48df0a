//! `chain.json`: what a chain is and what it was trained with.

use std::path::PathBuf;

use sd_alpha::Alpha;
use sd_resnet::loss::LossKind;
use sd_resnet::{Depth, Stem};
use serde::{Deserialize, Serialize};

/// Where a chain trains, as a run records it: the kind of device, not which one (a chain may
/// resume on another GPU). Text form and serde: `cpu`, `cuda`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum DeviceKind {
    /// The CPU.
    #[default]
    Cpu,
    /// An NVIDIA GPU.
    Cuda,
}

impl DeviceKind {
    /// The kind of `device`.
    pub fn of(device: &candle_core::Device) -> Self {
        if device.is_cuda() {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        }
    }
}

/// How the teacher's BatchNorm layers run while a student trains. Text form and serde: `eval`,
/// `train`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
    strum::EnumMessage,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum TeacherMode {
    /// Running statistics, left as they are: a frozen teacher. The default.
    #[default]
    #[strum(message = "Running statistics, not updated: a frozen teacher (the default)")]
    Eval,
    /// Batch statistics, with the running statistics updated by every batch (the weights stay
    /// frozen): what the original did. Its teacher is a child module of the student, and PyTorch
    /// Lightning's `model.train()` at the start of training puts every child's BatchNorm back in
    /// training mode, `teacher.freeze()` notwithstanding.
    #[strum(
        message = "Batch statistics, running statistics updated, weights frozen: what the original did (Lightning's model.train() reaches the teacher, a child module of the student)"
    )]
    Train,
}

impl std::str::FromStr for TeacherMode {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        parse_name("teacher mode", text)
    }
}

/// Adam's learning rate over a step's epochs. Text form and serde: `constant`, `cosine`. Every step
/// (every distillation step too) runs the whole schedule from its start.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
    strum::EnumMessage,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum LrSchedule {
    /// `lr` in every epoch: the original's (Adam, no scheduler). The default.
    #[default]
    #[strum(message = "lr in every epoch: the original's (the default)")]
    Constant,
    /// Cosine annealing to 0 over the step's epochs, set once per epoch: epoch `e` of `E`
    /// (counted from 0) trains at `lr * (1 + cos(pi * e / E)) / 2`, PyTorch's
    /// `CosineAnnealingLR(optimizer, T_max=E)` stepped after every epoch. The last epochs train
    /// at small rates, so a step ends near a minimum instead of wherever a constant rate
    /// leaves it.
    #[strum(
        message = "Cosine annealing to 0 over the step: epoch e of E at lr * (1 + cos(pi e / E)) / 2, PyTorch's CosineAnnealingLR(T_max=E) stepped per epoch"
    )]
    Cosine,
}

impl LrSchedule {
    /// The learning rate of `epoch` (from 0) of a step of `epochs` epochs, for a base rate `lr`.
    pub fn rate(self, lr: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => {
                let progress = epoch as f64 / epochs.max(1) as f64;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

impl std::str::FromStr for LrSchedule {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        parse_name("learning-rate schedule", text)
    }
}

/// `text` as the variant of `T` it names (strum's names), or the message
/// `WHAT "TEXT": expected a or b`.
fn parse_name<T>(what: &str, text: &str) -> std::result::Result<T, String>
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
            format!("{what} {text:?}: expected {expected}")
        })
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn torchvision_width() -> usize {
    sd_resnet::TORCHVISION_WIDTH
}

fn is_torchvision_width(width: &usize) -> bool {
    *width == sd_resnet::TORCHVISION_WIDTH
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// Everything that determines a chain's numbers besides its alpha and seed. Field names are the
/// profile fields and command-line flags of the same meaning (`epochs`, `--epochs`); the older
/// names of files written before (`train_images`, `val_images`, `test_images`) are read too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The data set as it was named: a path, or `fixture` for a generated fixture.
    pub data: String,
    /// A generated fixture's training and test images.
    pub fixture: Option<(usize, usize)>,
    /// Training images kept, balanced across classes (0: all).
    #[serde(alias = "train_images")]
    pub train_size: usize,
    /// Validation images held out of the training set, stratified by class (0 with
    /// `val_on_test`).
    #[serde(alias = "val_images")]
    pub val_size: usize,
    /// Validation on the test set, as the original code did.
    pub val_on_test: bool,
    /// Test images kept, balanced across classes (0: all).
    #[serde(alias = "test_images")]
    pub test_size: usize,
    /// Network depth.
    pub resnet: Depth,
    /// First layers.
    pub stem: Stem,
    /// Channels of the first stage ([`sd_resnet::ResnetConfig::width`]): 64 is torchvision's
    /// network, narrower ones a CPU-scale variant. Written to `chain.json` only when not 64.
    #[serde(
        default = "torchvision_width",
        skip_serializing_if = "is_torchvision_width"
    )]
    pub width: usize,
    /// Loss.
    pub loss: LossKind,
    /// Epochs per step.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Adam's learning rate (the first epoch's, under a schedule).
    pub lr: f64,
    /// How the learning rate changes over a step's epochs ([`LrSchedule`]). Written only when
    /// not `constant`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub lr_schedule: LrSchedule,
    /// Weight of the regularizer `sum_p |p|_2`.
    pub reg_coef: f64,
    /// `cpu` or `cuda` (not the GPU's number: a chain may resume on another GPU).
    pub device: DeviceKind,
    /// Weights every step starts from instead of a random initialization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PathBuf>,
    /// A new order of the training images every epoch (the default); off, the training split's
    /// own order in every epoch and step, as the original's `DataLoader` (no `shuffle=True`).
    /// Written to `chain.json` only when off.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub shuffle: bool,
    /// The teacher's BatchNorm mode ([`TeacherMode`]). Written only when not `eval`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub teacher_mode: TeacherMode,
    /// Symmetric label noise on the training set's labels, in `[0, 1)`
    /// ([`sd_data::SplitConfig::label_noise`]; validation images held out of the training set
    /// get it too, test images never). Written only when not 0.
    #[serde(default, skip_serializing_if = "is_default")]
    pub label_noise: f64,
    /// Seed of the label noise. Written only when not 0.
    #[serde(default, skip_serializing_if = "is_default")]
    pub noise_seed: u64,
}

/// A chain: its ground-truth weight, seed, length and settings. Written to `chain.json` before
/// anything is trained; a directory whose record differs (other than in `steps`) is never
/// continued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainRecord {
    /// The ground-truth weight of steps >= 1: a number, or `auto` (Algorithm 1).
    pub alpha: Alpha,
    /// The seed of initialization, validation split, shuffles and augmentation.
    pub seed: u64,
    /// Steps, the first fit (step 0) included.
    pub steps: usize,
    /// The rest of what determines its numbers.
    pub settings: Settings,
}

impl ChainRecord {
    /// `field A there, B now` for every field but `steps` in which `self` (on disk) and `other`
    /// (asked for) differ, comma-separated; empty when they are the same chain.
    pub fn differences(&self, other: &ChainRecord) -> String {
        let flatten = |record: &ChainRecord| -> Vec<(String, String)> {
            // A record JSON cannot hold (a path that is not UTF-8) was never written to compare.
            let value = serde_json::to_value(record).unwrap_or_default();
            let mut fields = Vec::new();
            for (key, value) in value.as_object().into_iter().flatten() {
                match value.as_object() {
                    Some(inner) => fields.extend(
                        inner
                            .iter()
                            .map(|(key, value)| (key.clone(), value.to_string())),
                    ),
                    None if key != "steps" => fields.push((key.clone(), value.to_string())),
                    None => {}
                }
            }
            fields
        };
        let (mine, theirs) = (flatten(self), flatten(other));
        let mut differences = Vec::new();
        for (key, value) in &mine {
            let now = theirs
                .iter()
                .find(|(k, _)| k == key)
                .map_or("none", |(_, v)| v.as_str());
            if now != value {
                differences.push(format!("{key} {value} there, {now} now"));
            }
        }
        for (key, value) in &theirs {
            if !mine.iter().any(|(k, _)| k == key) {
                differences.push(format!("{key} none there, {value} now"));
            }
        }
        differences.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn settings() -> Settings {
        Settings {
            data: "fixture".into(),
            fixture: Some((400, 100)),
            train_size: 0,
            val_size: 100,
            val_on_test: false,
            test_size: 0,
            resnet: Depth::R18,
            stem: Stem::Imagenet,
            width: 64,
            loss: LossKind::SoftmaxMse,
            epochs: 1,
            batch_size: 32,
            lr: 1e-3,
            lr_schedule: LrSchedule::Constant,
            reg_coef: 1e-4,
            device: DeviceKind::Cpu,
            pretrained: None,
            shuffle: true,
            teacher_mode: TeacherMode::Eval,
            label_noise: 0.0,
            noise_seed: 0,
        }
    }

    #[test]
    fn records_of_earlier_versions_still_read() {
        // A chain.json written before the names were shared with the flags.
        let old = r#"{"alpha": "auto", "seed": 0, "steps": 2, "settings": {"data": "fixture",
            "fixture": [400, 100], "train_images": 0, "val_images": 100, "val_on_test": false,
            "test_images": 0, "resnet": 18, "stem": "imagenet", "loss": "mse", "epochs": 1,
            "batch_size": 32, "lr": 0.001, "reg_coef": 0.0001, "device": "cpu"}}"#;
        let record: ChainRecord = serde_json::from_str(old).unwrap();
        let now = ChainRecord {
            alpha: Alpha::Auto,
            seed: 0,
            steps: 2,
            settings: settings(),
        };
        assert_eq!(record, now);
        assert_eq!(record.differences(&now), "");
        let text = serde_json::to_string(&now).unwrap();
        assert!(
            text.contains("\"resnet\":18") && text.contains("\"stem\":\"imagenet\""),
            "{text}"
        );
        assert!(!text.contains("pretrained"), "{text}");
    }

    #[test]
    fn differences_name_each_field() {
        let a = ChainRecord {
            alpha: Alpha::Fixed(0.5),
            seed: 0,
            steps: 2,
            settings: settings(),
        };
        let mut b = a.clone();
        b.steps = 5;
        assert_eq!(a.differences(&b), "");
        b.settings.lr = 0.01;
        b.settings.epochs = 5;
        b.alpha = Alpha::Auto;
        b.settings.pretrained = Some("w.safetensors".into());
        assert_eq!(
            a.differences(&b),
            "alpha 0.5 there, \"auto\" now, epochs 1 there, 5 now, lr 0.001 there, 0.01 now, \
             pretrained none there, \"w.safetensors\" now"
        );
    }
}
