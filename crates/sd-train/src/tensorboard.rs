//! TensorBoard event files of a run directory, kept in step with its rows.
//!
//! The rows (`metrics.jsonl`, `test.jsonl`, `auto_alpha.jsonl`) are the record; the event files
//! are a view of them that `tensorboard --logdir RUN` reads:
//!
//! ```text
//! tensorboard/step_<k>/events.out.tfevents.<epoch>.sd-train   one per epoch row of step k, x = epoch:
//!     loss/train, loss/validation, accuracy/train, accuracy/validation, alpha, learning_rate,
//!     images_per_second, seconds
//! tensorboard/chain/events.out.tfevents.<step>.sd-train       one per finished step, x = step:
//!     accuracy/test_final, accuracy/test_best, accuracy/validation_best, alpha, seconds, the
//!     step's last epoch's loss/train, loss/validation, accuracy/train, accuracy/validation, and
//!     with alpha = auto alpha/optimal (unclamped)
//! ```
//!
//! One file per row: files are only ever added in the order of their names (what TensorBoard's
//! directory watcher expects of a live run) and never rewritten. After every change of the rows,
//! the file of every row that has none is written (atomically, through a temporary whose name
//! TensorBoard ignores), and every file whose row is gone (a step trained again, a resume from an
//! earlier step) is removed. Steps in TensorBoard are the steps of this project,
//! from 0; wall times are when each file was written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sd_tensorboard::{EventFile, file_name};

use crate::error::{Result, TrainError};
use crate::files::{create_dir, step_dir_name, step_of, write_atomic_anonymous};
use crate::metrics::{AutoAlpha, EpochMetrics, StepResult};

/// The host part of every event file's name.
const HOST: &str = "sd-train";

/// The rows the event files show: a run directory's `metrics.jsonl`, `test.jsonl` and
/// `auto_alpha.jsonl`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub metrics: &'a [EpochMetrics],
    pub tests: &'a [StepResult],
    pub auto: &'a [AutoAlpha],
}

/// The run directory of step `step`'s epochs under `root` (a chain's `tensorboard/`), and of
/// the chain's steps.
pub(crate) fn step_run(root: &Path, step: usize) -> PathBuf {
    root.join(step_dir_name(step))
}

pub(crate) fn chain_run(root: &Path) -> PathBuf {
    root.join("chain")
}

/// The tags and values of one epoch row.
pub fn epoch_scalars(row: &EpochMetrics) -> Vec<(&'static str, f32)> {
    vec![
        ("loss/train", row.train_loss as f32),
        ("loss/validation", row.val_loss as f32),
        ("accuracy/train", row.train_acc as f32),
        ("accuracy/validation", row.val_acc as f32),
        ("alpha", row.alpha as f32),
        ("learning_rate", row.lr as f32),
        ("images_per_second", row.images_per_s as f32),
        ("seconds", row.seconds as f32),
    ]
}

/// The tags and values of one finished step: its test row, its last epoch row, its auto row.
pub fn step_scalars(
    result: &StepResult,
    last_epoch: Option<&EpochMetrics>,
    auto: Option<&AutoAlpha>,
) -> Vec<(&'static str, f32)> {
    let mut values = vec![
        ("accuracy/test_final", result.test_acc_final as f32),
        ("accuracy/test_best", result.test_acc_best as f32),
        ("accuracy/validation_best", result.best_val_acc as f32),
        ("alpha", result.alpha as f32),
        ("seconds", result.seconds as f32),
    ];
    if let Some(row) = last_epoch {
        values.extend([
            ("loss/train", row.train_loss as f32),
            ("loss/validation", row.val_loss as f32),
            ("accuracy/train", row.train_acc as f32),
            ("accuracy/validation", row.val_acc as f32),
        ]);
    }
    if let Some(optimal) = auto.and_then(|row| row.optimal) {
        values.push(("alpha/optimal", optimal as f32));
    }
    values
}

/// Makes the event files under `root` (a chain's `tensorboard/`) match `rows` (see the module's
/// documentation).
pub(crate) fn sync(root: &Path, rows: Rows<'_>) -> Result<()> {
    let Rows {
        metrics,
        tests,
        auto,
    } = rows;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());

    // Epoch files, per step.
    let steps: BTreeSet<usize> = metrics.iter().map(|row| row.step).collect();
    for &step in &steps {
        let run = step_run(root, step);
        let rows: Vec<&EpochMetrics> = metrics.iter().filter(|row| row.step == step).collect();
        let wanted: BTreeSet<String> = rows
            .iter()
            .map(|row| file_name(row.epoch as u64, HOST))
            .collect();
        remove_unwanted(&run, &wanted)?;
        for row in rows {
            let path = run.join(file_name(row.epoch as u64, HOST));
            if !path.is_file() {
                let mut file = EventFile::new(now);
                file.scalars(row.epoch as i64, now, &epoch_scalars(row));
                publish(&path, &file.into_bytes())?;
            }
        }
    }
    // Step directories without rows.
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries {
            let path = entry.map_err(TrainError::io(root))?.path();
            if let Some(step) = step_of(&path)
                && !steps.contains(&step)
            {
                remove_unwanted(&path, &BTreeSet::new())?;
                // Only when empty: a user's own files stay.
                let _ = std::fs::remove_dir(&path);
            }
        }
    }

    // Step files.
    let run = chain_run(root);
    let wanted: BTreeSet<String> = tests
        .iter()
        .map(|row| file_name(row.step as u64, HOST))
        .collect();
    remove_unwanted(&run, &wanted)?;
    for result in tests {
        let path = run.join(file_name(result.step as u64, HOST));
        if !path.is_file() {
            let last_epoch = metrics
                .iter()
                .filter(|row| row.step == result.step)
                .max_by_key(|row| row.epoch);
            let auto_row = auto.iter().find(|row| row.step == result.step);
            let mut file = EventFile::new(now);
            file.scalars(
                result.step as i64,
                now,
                &step_scalars(result, last_epoch, auto_row),
            );
            publish(&path, &file.into_bytes())?;
        }
    }
    Ok(())
}

/// [`sync`] from scratch: every event file under `root` written again from `rows` (for rows
/// that replaced others of the same steps and epochs).
pub(crate) fn rewrite(root: &Path, rows: Rows<'_>) -> Result<()> {
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries {
            let path = entry.map_err(TrainError::io(root))?.path();
            if path.is_dir() {
                remove_unwanted(&path, &BTreeSet::new())?;
            }
        }
    }
    sync(root, rows)
}

/// Removes the event files in `run` not named in `wanted`.
fn remove_unwanted(run: &Path, wanted: &BTreeSet<String>) -> Result<()> {
    let entries = match std::fs::read_dir(run) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TrainError::io(run)(e)),
    };
    for entry in entries {
        let path = entry.map_err(TrainError::io(run))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with("events.out.tfevents.")
            && name.ends_with(HOST)
            && !wanted.contains(name)
        {
            std::fs::remove_file(&path).map_err(TrainError::io(&path))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically, through a temporary whose name TensorBoard ignores (it
/// reads every file whose name contains `tfevents`).
fn publish(path: &Path, bytes: &[u8]) -> Result<()> {
    create_dir(path.parent().expect("event files lie in a run directory"))?;
    write_atomic_anonymous(path, bytes)
}
