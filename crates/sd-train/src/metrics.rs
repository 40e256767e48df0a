//! The rows of a run directory's files: one per epoch, one per finished step, one per chosen
//! alpha.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// JSON has no NaN or infinity: serde_json writes them as `null`, read back here as NaN, so that
/// a run directory stays readable whatever a number became.
fn null_is_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One epoch's numbers: a row of `metrics.jsonl` and `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Distillation step.
    pub step: usize,
    /// Epoch within the step, from 0.
    pub epoch: usize,
    /// The ground-truth weight of this step (1 for step 0).
    #[serde(deserialize_with = "null_is_nan")]
    pub alpha: f64,
    /// Mean training loss (distillation loss + regularizer) over the epoch's batches.
    #[serde(deserialize_with = "null_is_nan")]
    pub train_loss: f64,
    /// Training accuracy (against the labels) over the epoch.
    #[serde(deserialize_with = "null_is_nan")]
    pub train_acc: f64,
    /// Validation loss `MSE(softmax, onehot)` (or CE), evaluation mode.
    #[serde(deserialize_with = "null_is_nan")]
    pub val_loss: f64,
    /// Validation accuracy.
    #[serde(deserialize_with = "null_is_nan")]
    pub val_acc: f64,
    /// Learning rate.
    #[serde(deserialize_with = "null_is_nan")]
    pub lr: f64,
    /// Training images per second (forward, backward, optimizer).
    #[serde(deserialize_with = "null_is_nan")]
    pub images_per_s: f64,
    /// Seconds for the epoch, evaluation included.
    #[serde(deserialize_with = "null_is_nan")]
    pub seconds: f64,
    /// What looked wrong, e.g. a training loss that exploded without becoming NaN (only in
    /// `metrics.jsonl`, and only when there is something to say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl EpochMetrics {
    /// The header of `metrics.csv`.
    pub const CSV_HEADER: [&'static str; 10] = [
        "step",
        "epoch",
        "alpha",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "images_per_s",
        "seconds",
    ];

    /// The row's cells in `metrics.csv`: numbers as Rust prints them (shortest round trip),
    /// images/s to one decimal, seconds to three.
    pub fn csv_cells(&self) -> Vec<String> {
        vec![
            self.step.to_string(),
            self.epoch.to_string(),
            self.alpha.to_string(),
            self.train_loss.to_string(),
            self.train_acc.to_string(),
            self.val_loss.to_string(),
            self.val_acc.to_string(),
            self.lr.to_string(),
            format!("{:.1}", self.images_per_s),
            format!("{:.3}", self.seconds),
        ]
    }
}

/// The test results of one finished step: a row of `test.jsonl` and `test.csv`. A step is
/// finished when its row is there (written after its checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Distillation step.
    pub step: usize,
    /// Its ground-truth weight (1 for step 0).
    #[serde(deserialize_with = "null_is_nan")]
    pub alpha: f64,
    /// Test accuracy of the final-epoch model (the next step's teacher).
    #[serde(deserialize_with = "null_is_nan")]
    pub test_acc_final: f64,
    /// Test accuracy of the best model by validation accuracy.
    #[serde(deserialize_with = "null_is_nan")]
    pub test_acc_best: f64,
    /// The epoch of the best model.
    pub best_epoch: usize,
    /// Its validation accuracy.
    #[serde(deserialize_with = "null_is_nan")]
    pub best_val_acc: f64,
    /// The final-epoch checkpoint.
    pub last_checkpoint: PathBuf,
    /// Wall seconds of the step: training, validation, checkpoints and the test evaluation
    /// (0 in files written before it was recorded, and for a first fit copied from another
    /// chain).
    #[serde(default, deserialize_with = "null_is_nan")]
    pub seconds: f64,
}

impl StepResult {
    /// The header of `test.csv`.
    pub const CSV_HEADER: [&'static str; 6] = [
        "step",
        "alpha",
        "test_acc_final",
        "test_acc_best",
        "best_epoch",
        "best_val_acc",
    ];

    /// The row's cells in `test.csv`.
    pub fn csv_cells(&self) -> Vec<String> {
        vec![
            self.step.to_string(),
            self.alpha.to_string(),
            self.test_acc_final.to_string(),
            self.test_acc_best.to_string(),
            self.best_epoch.to_string(),
            self.best_val_acc.to_string(),
        ]
    }
}

/// The alpha Algorithm 1 chose for a step: a row of `auto_alpha.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoAlpha {
    /// The step (>= 1).
    pub step: usize,
    /// `<r - u0, u1 - u0> / |u1 - u0|^2` on the validation split ([`sd_alpha::optimal_alpha`]);
    /// `None` when `u1 = u0`.
    pub optimal: Option<f64>,
    /// The alpha used: `optimal` clamped into `[0, 1]` (1 when `optimal` is `None`).
    #[serde(deserialize_with = "null_is_nan")]
    pub alpha: f64,
    /// Test accuracy of the probe (the `alpha = 0` student), best model by validation.
    #[serde(deserialize_with = "null_is_nan")]
    pub probe_test_acc_best: f64,
    /// Test accuracy of the probe's final-epoch model.
    #[serde(deserialize_with = "null_is_nan")]
    pub probe_test_acc_final: f64,
}
