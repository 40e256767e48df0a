//! One self-distillation chain of ResNets on an image data set, as the original
//! `self_distiller.py` runs it: into a new run directory `<out>/<time>_<alpha>_<lr>_<seed>/`, or
//! continuing the run directory of a teacher checkpoint.

use std::path::{Path, PathBuf};

use sd_alpha::Alpha;
use sd_data::{Dataset, SplitConfig, Validation};
use sd_resnet::loss::LossKind;
use sd_resnet::{Depth, Stem};
use sd_train::{Chain, ChainData, ChainDir, ChainRecord, Settings, Start, StepResult};

use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::terminal::Progress;

/// Everything one chain needs.
#[derive(Debug, Clone)]
pub struct ResnetJob {
    /// The data set: a CIFAR-10 directory or archive, or a (Fashion-)MNIST IDX directory.
    pub data: PathBuf,
    /// Ground-truth weight of steps >= 1: fixed, or Algorithm 1.
    pub alpha: Alpha,
    /// Steps to train now, the first fit included (after a teacher of step `K`: steps `K + 1`
    /// to `K + steps`).
    pub steps: usize,
    /// Epochs per step.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Network depth.
    pub resnet: Depth,
    /// First layers.
    pub stem: Stem,
    /// Channels of the first stage (64: torchvision's network).
    pub width: usize,
    /// Loss.
    pub loss: LossKind,
    /// Adam's learning rate.
    pub lr: f64,
    /// Weight of the regularizer.
    pub reg_coef: f64,
    /// Seed of initialization, validation split, shuffles and augmentation.
    pub seed: u64,
    /// Validation images held out of the training set (with `val_on_test`, none).
    pub val_size: usize,
    /// Validate on the test set, as the original did.
    pub val_on_test: bool,
    /// Keep this many training images, balanced (`None`: all).
    pub train_size: Option<usize>,
    /// Keep this many test images, balanced (`None`: all).
    pub test_size: Option<usize>,
    /// Threads making batches.
    pub num_workers: usize,
    /// Initial weights of every step.
    pub pretrained: Option<PathBuf>,
    /// A new order of the training images every epoch; off, the split's own order throughout
    /// (the original's).
    pub shuffle: bool,
    /// The teacher's BatchNorm mode while a student trains.
    pub teacher_mode: sd_train::TeacherMode,
    /// Adam's learning rate over a step's epochs.
    pub lr_schedule: sd_train::LrSchedule,
    /// Symmetric label noise on the training set's labels, in `[0, 1)`.
    pub label_noise: f64,
    /// Seed of the label noise.
    pub noise_seed: u64,
    /// Resume a chain: a checkpoint and the step it belongs to, teacher of the next step.
    pub teacher: Option<(PathBuf, usize)>,
    /// Continue this run directory instead of making a new one: its unfinished steps are
    /// trained ([`Start::Resume`]); its `chain.json` must match.
    pub resume: Option<PathBuf>,
    /// Parent of new run directories.
    pub out: PathBuf,
    /// Where to train.
    pub device: DeviceSpec,
    /// Progress bars on a terminal.
    pub show_progress: bool,
}

/// The run directory name, as the original's `logs/<time>_<alpha>_<lr>_<seed>` (UTC).
pub fn run_name(unix_seconds: u64, alpha: Alpha, lr: f64, seed: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}_{alpha}_{lr}_{seed}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The run directory: the teacher's when it lies in `<run>/step_<k>/`, else a new one, created
/// exclusively (`-2`, `-3`, ... after the name when another run took it in the same second).
fn run_directory(job: &ResnetJob) -> Result<ChainDir> {
    if let Some(dir) = &job.resume {
        return Ok(ChainDir::new(dir));
    }
    if let Some((checkpoint, k)) = &job.teacher
        && let Some(dir) = ChainDir::of_checkpoint(checkpoint, *k)
    {
        return Ok(dir);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(ChainDir::create_new(
        &job.out,
        &run_name(now, job.alpha, job.lr, job.seed),
    )?)
}

/// The data path as recorded: absolute, so that a resume from elsewhere compares equal.
fn recorded(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// Trains the chain; returns its run directory and the results of the steps trained now.
pub fn run(job: &ResnetJob) -> Result<(PathBuf, Vec<StepResult>)> {
    if job.steps == 0 {
        return Err(Error::setting("steps", "must be at least 1"));
    }
    for (field, size) in [("train_size", job.train_size), ("test_size", job.test_size)] {
        if size == Some(0) {
            return Err(Error::setting(
                field,
                "must be at least 1 (leave it out for all images)",
            ));
        }
    }
    let dataset = Dataset::open(&job.data)?;
    let split = SplitConfig {
        validation: if job.val_on_test {
            Validation::TestSet
        } else {
            Validation::Holdout { size: job.val_size }
        },
        seed: job.seed,
        limit_train: job.train_size,
        limit_val: None,
        limit_test: job.test_size,
        label_noise: job.label_noise,
        noise_seed: job.noise_seed,
    };
    let data = ChainData::new(&dataset, &split)?;
    if job.label_noise > 0.0 {
        tracing::info!(
            label_noise = job.label_noise,
            noise_seed = job.noise_seed,
            labels_changed = data.labels_changed,
            "label noise on the training set"
        );
    }
    let first = match &job.teacher {
        Some((_, k)) => k
            .checked_add(1)
            .ok_or_else(|| Error::setting("teacher_step", "is too large"))?,
        None => 0,
    };
    let steps = first
        .checked_add(job.steps)
        .ok_or_else(|| Error::setting("steps", "are too many"))?;
    let settings = Settings {
        data: recorded(&job.data),
        fixture: None,
        train_size: job.train_size.unwrap_or(0),
        val_size: if job.val_on_test { 0 } else { job.val_size },
        val_on_test: job.val_on_test,
        test_size: job.test_size.unwrap_or(0),
        resnet: job.resnet,
        stem: job.stem,
        width: job.width,
        loss: job.loss,
        epochs: job.epochs,
        batch_size: job.batch_size,
        lr: job.lr,
        reg_coef: job.reg_coef,
        device: job.device.kind(),
        pretrained: job.pretrained.as_deref().map(|p| recorded(p).into()),
        shuffle: job.shuffle,
        teacher_mode: job.teacher_mode,
        lr_schedule: job.lr_schedule,
        label_noise: job.label_noise,
        noise_seed: job.noise_seed,
    };
    let chain = Chain {
        record: ChainRecord {
            alpha: job.alpha,
            seed: job.seed,
            steps,
            settings,
        },
        data: &data,
        device: job.device.open()?,
        num_workers: job.num_workers,
    };
    chain.check()?;
    if let Some(dir) = &job.resume
        && !ChainDir::is_chain(dir)
    {
        return Err(Error::setting(
            "resume",
            format!(
                "{} is not a run directory (it has no chain.json)",
                dir.display()
            ),
        ));
    }
    if job.resume.is_some() && job.teacher.is_some() {
        return Err(Error::setting("resume", "cannot go with a teacher"));
    }
    // The teacher is checked before a directory is made; one in a run directory under that
    // directory's lock (a process training it again would rewrite it).
    let teacher = match &job.teacher {
        Some((path, step)) => {
            let _lock = match ChainDir::of_checkpoint(path, *step) {
                Some(run) if ChainDir::is_chain(run.path()) => Some(run.lock()?),
                _ => None,
            };
            Some((chain.load_teacher(path, *step)?, *step))
        }
        None => None,
    };
    let dir = run_directory(job)?;
    let mut progress = Progress::new(job.show_progress);
    tracing::info!(run = %dir.path().display(), "training");
    let start = match &teacher {
        Some((teacher, step)) => Start::Teacher {
            step: *step,
            teacher,
        },
        None => Start::Resume,
    };
    let results = chain.run(&dir, start, &mut progress)?;
    Ok((dir.path().to_path_buf(), results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_use_utc_dates() {
        // 2026-11-28 10:04:57 UTC.
        assert_eq!(
            run_name(1_795_860_297, Alpha::Fixed(0.6), 1e-4, 1),
            "20261128-100457_0.6_0.0001_1"
        );
        assert!(run_name(0, Alpha::Fixed(0.5), 0.001, 0).starts_with("19700101-000000_"));
        assert!(run_name(0, Alpha::Auto, 0.001, 0).ends_with("_auto_0.001_0"));
    }
}
