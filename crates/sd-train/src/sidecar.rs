//! The JSON sidecar beside every checkpoint (`step_<k>/last.json`,
//! `step_<k>/epoch=NN-val_acc=0.xxxx.json`): which step and epoch the network is, whether its
//! step finished, and what made it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Result;
use crate::files::{read_json, to_json, write_json};
use crate::metrics::EpochMetrics;
use crate::record::ChainRecord;

/// A checkpoint's sidecar, `<checkpoint>.json`.
///
/// Every sidecar written so far loads: fields that earlier versions did not write are optional
/// (`epochs`, `finished` and `width` came later; the first sidecars named the network's depth
/// `"R18"` and had a `config` instead of `chain`), a field whose form has changed since reads as
/// absent, and keys this version does not know are kept as they are when a sidecar is rewritten.
/// Only `step` and `epoch` are required. Written with its keys in alphabetical order, as every
/// version has written it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSidecar {
    /// The step's ground-truth weight (1 at step 0).
    #[serde(default)]
    pub alpha: f64,
    /// The chain's record (`chain.json`) at the time.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub chain: Option<ChainRecord>,
    /// Output classes.
    #[serde(default)]
    pub classes: usize,
    /// The checkpoint this one was copied from ([`crate::ChainDir::adopt_step`]), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<String>,
    /// The epoch, from 0.
    pub epoch: usize,
    /// Epochs of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Whether the step had finished (its test row written) when this was last written; only a
    /// finished step's last checkpoint is a teacher. `false` when written, set by
    /// [`crate::ChainDir::mark_finished`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<bool>,
    /// Input channels.
    #[serde(default)]
    pub in_channels: usize,
    /// The epoch's row of `metrics.jsonl`.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub metrics: Option<EpochMetrics>,
    /// ResNet depth: 18, 34 or 50.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub resnet: Option<u32>,
    /// The chain's seed.
    #[serde(default)]
    pub seed: u64,
    /// `imagenet` or `cifar`.
    #[serde(default)]
    pub stem: String,
    /// The step.
    pub step: usize,
    /// The step's seed ([`crate::step_seed`]).
    #[serde(default)]
    pub step_seed: u64,
    /// Channels of the first stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    /// Keys of other versions, kept as they are.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A value of the type asked for, or `None` when the file holds it in another form (one an
/// earlier version wrote).
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> std::result::Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

impl CheckpointSidecar {
    /// The epochs of its step, from `epochs` or, in files from before it was written, the chain
    /// record's settings.
    pub fn step_epochs(&self) -> Option<usize> {
        self.epochs
            .or_else(|| self.chain.as_ref().map(|c| c.settings.epochs))
    }

    /// Reads the sidecar at `path`; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<CheckpointSidecar>> {
        read_json(path)
    }

    /// Writes it to `path` atomically, its keys sorted at every level (what the files written
    /// through `serde_json::Value` always had).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json(path, &to_json(path, self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/sidecars")
            .join(name)
    }

    /// Sidecars written by the code before this type existed (2026-12-08, the smoke profile)
    /// load, and are written back byte for byte.
    #[test]
    fn sidecars_written_so_far_load_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for (name, step, finished, copied) in [
            ("finished.json", 1, true, false),
            ("best-unfinished.json", 1, false, false),
            ("copied-first-fit.json", 0, true, true),
        ] {
            let path = fixture(name);
            let sidecar = CheckpointSidecar::read(&path).unwrap().unwrap();
            assert_eq!(sidecar.step, step, "{name}");
            assert_eq!(sidecar.finished, Some(finished), "{name}");
            assert_eq!(sidecar.copied_from.is_some(), copied, "{name}");
            assert_eq!(
                (sidecar.resnet, sidecar.stem.as_str(), sidecar.width),
                (Some(18), "imagenet", Some(16)),
                "{name}"
            );
            assert_eq!(sidecar.step_epochs(), Some(2), "{name}");
            let chain = sidecar.chain.as_ref().expect("the chain record");
            assert_eq!(chain.settings.epochs, 2, "{name}");
            assert_eq!(
                sidecar.metrics.as_ref().unwrap().epoch,
                sidecar.epoch,
                "{name}"
            );
            assert!(sidecar.other.is_empty(), "{name}: {:?}", sidecar.other);
            let again = dir.path().join(name);
            sidecar.write(&again).unwrap();
            assert_eq!(
                std::fs::read_to_string(&again).unwrap(),
                std::fs::read_to_string(&path).unwrap(),
                "{name}"
            );
        }
    }

    /// The forms of earlier versions: before `epochs` and `finished` (sd-train's first), and
    /// the first chain of sd-resnet (depth `"R18"`, `config` instead of `chain`).
    #[test]
    fn earlier_forms_load_and_keep_what_they_had() {
        let today: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("finished.json")).unwrap())
                .unwrap();
        let mut first = today.clone();
        let map = first.as_object_mut().unwrap();
        for key in ["epochs", "finished", "width"] {
            map.remove(key);
        }
        let sidecar: CheckpointSidecar = serde_json::from_value(first).unwrap();
        assert_eq!((sidecar.epochs, sidecar.finished), (None, None));
        // The epochs then come from the chain record.
        assert_eq!(sidecar.step_epochs(), Some(2));

        let mut oldest = today;
        let map = oldest.as_object_mut().unwrap();
        map.remove("chain");
        map.remove("epochs");
        map.remove("finished");
        map.insert("resnet".into(), "R18".into());
        map.insert("stem".into(), "Imagenet".into());
        map.insert(
            "config".into(),
            serde_json::json!({"seed": 0, "max_epochs": 2}),
        );
        let sidecar: CheckpointSidecar = serde_json::from_value(oldest).unwrap();
        assert_eq!((sidecar.step, sidecar.epoch), (1, 1));
        assert_eq!((sidecar.resnet, sidecar.chain.as_ref()), (None, None));
        assert_eq!(sidecar.step_epochs(), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.json");
        sidecar.write(&path).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("\"max_epochs\": 2"), "{written}");

        // Without step and epoch it is no sidecar.
        let error = serde_json::from_str::<CheckpointSidecar>(r#"{"epoch": 1}"#).unwrap_err();
        assert!(error.to_string().contains("step"), "{error}");
    }
}
