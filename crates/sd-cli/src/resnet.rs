//! `sd-cli resnet`: a self-distillation chain of ResNets on an image data set.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use sd_data::{Dataset, SplitConfig, Splits, Transform, Validation};
use sd_resnet::loss::LossKind;
use sd_resnet::train::{
    BatchProgress, ChainConfig, ChainData, EpochMetrics, Observer, StepResult, run_chain,
};
use sd_resnet::{Depth, Resnet, ResnetConfig, Stem};

/// Everything `sd-cli resnet` needs, checked.
#[derive(Debug, Clone)]
pub struct ResnetRun {
    /// The data set path.
    pub data: PathBuf,
    /// Network.
    pub depth: Depth,
    /// Stem.
    pub stem: Stem,
    /// Loss.
    pub loss: LossKind,
    /// Ground-truth weight of steps >= 1.
    pub alpha: f64,
    /// Steps to train.
    pub steps: usize,
    /// Epochs per step.
    pub max_epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Regularizer weight.
    pub reg_coef: f64,
    /// Seed.
    pub seed: u64,
    /// Validation images held out of the training set (ignored with `val_on_test`).
    pub val_size: usize,
    /// Validate on the test set, as the original.
    pub val_on_test: bool,
    /// Keep the first N training images (balanced).
    pub limit_train: Option<usize>,
    /// Keep the first N test images (balanced).
    pub limit_test: Option<usize>,
    /// Batch worker threads.
    pub num_workers: usize,
    /// Initial weights of every step.
    pub pretrained: Option<PathBuf>,
    /// Resume from this teacher checkpoint...
    pub teacher_ckpt: Option<PathBuf>,
    /// ...which is step k.
    pub teacher_step: Option<usize>,
    /// Parent of run directories.
    pub out: PathBuf,
    /// Device.
    pub device: Device,
    /// Draw progress bars.
    pub show_progress: bool,
}

/// The run directory name, as the original's `logs/<time>_<alpha>_<lr>_<seed>`.
pub fn run_name(unix_seconds: u64, alpha: f64, lr: f64, seed: u64) -> String {
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

/// The run directory: the teacher's when resuming from `<run>/step_<k>/...`, else a new one.
fn run_directory(run: &ResnetRun) -> PathBuf {
    if let (Some(ckpt), Some(k)) = (&run.teacher_ckpt, run.teacher_step) {
        let step_dir = ckpt.parent();
        if let Some(dir) = step_dir
            && dir
                .file_name()
                .is_some_and(|n| n == format!("step_{k}").as_str())
            && let Some(run_dir) = dir.parent()
        {
            return run_dir.to_path_buf();
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    run.out.join(run_name(now, run.alpha, run.lr, run.seed))
}

/// The chain's progress on stderr: a bar per epoch (loss, accuracy, images/s, ETA) when `show`
/// and stderr is a terminal, and a log line per epoch and per step.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    show: bool,
}

impl Progress {
    /// Bars only when `show` and stderr is a terminal; the log lines always.
    pub fn new(show: bool) -> Self {
        Progress {
            bar: None,
            show: show && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

impl Observer for Progress {
    fn batch(&mut self, p: &BatchProgress) {
        if !self.show {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(p.total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        });
        bar.set_prefix(format!("step {} epoch {}", p.step, p.epoch));
        bar.set_position(p.done as u64);
        bar.set_message(format!(
            "loss {:.4} acc {:.3} {:.0} img/s",
            p.loss, p.acc, p.images_per_s
        ));
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        tracing::info!(
            step = m.step,
            epoch = m.epoch,
            train_loss = m.train_loss,
            train_acc = m.train_acc,
            val_acc = m.val_acc,
            images_per_s = m.images_per_s,
            "epoch done"
        );
    }

    fn step(&mut self, r: &StepResult) {
        tracing::info!(
            step = r.step,
            test_acc_final = r.test_acc_final,
            test_acc_best = r.test_acc_best,
            "step done"
        );
    }
}

/// The splits and transforms of a chain on `data`, and its network: `depth` and `stem` with the
/// data's channels and classes. Grey 28 x 28 images are zero-padded to 32 x 32 (centred), as the
/// networks expect CIFAR-sized input. Fails when the validation split is empty.
pub fn prepare(
    data: &Dataset,
    split: &SplitConfig,
    depth: Depth,
    stem: Stem,
) -> Result<(ChainData, ResnetConfig)> {
    let splits = Splits::new(data, split)?;
    if splits.val.is_empty() {
        bail!("the validation split is empty: give --val-size > 0 or --val-on-test");
    }
    let shape = data.shape();
    let pad = (shape.height < 32 || shape.width < 32).then_some((32, 32));
    let normalization = data.normalization();
    let chain_data = ChainData {
        train: splits.train,
        val: splits.val,
        test: splits.test,
        train_transform: Transform::train(normalization.clone()).with_geometry(pad, None),
        eval_transform: Transform::test(normalization).with_geometry(pad, None),
    };
    let model = ResnetConfig {
        depth,
        stem,
        in_channels: shape.channels,
        classes: data.classes(),
    };
    Ok((chain_data, model))
}

/// Runs the chain; returns the run directory and the test results.
pub fn run(run: &ResnetRun) -> Result<(PathBuf, Vec<StepResult>)> {
    if run.teacher_ckpt.is_some() != run.teacher_step.is_some() {
        bail!("--teacher-ckpt and --teacher-step go together");
    }
    let data = Dataset::open(&run.data)?;
    let validation = if run.val_on_test {
        Validation::TestSet
    } else {
        Validation::Holdout { size: run.val_size }
    };
    let split = SplitConfig {
        validation,
        seed: run.seed,
        limit_train: run.limit_train,
        limit_val: None,
        limit_test: run.limit_test,
    };
    let (chain_data, model) = prepare(&data, &split, run.depth, run.stem)?;
    let shape = data.shape();
    let (first_step, teacher) = match (&run.teacher_ckpt, run.teacher_step) {
        (Some(path), Some(k)) => {
            if !path.is_file() {
                bail!("--teacher-ckpt {}: no such file", path.display());
            }
            let teacher = Resnet::new(model, 0, &run.device)?;
            teacher.load(path).with_context(|| {
                format!(
                    "--teacher-ckpt does not fit the network of this run ({}, {} stem, {} input \
                     channels)",
                    depth_name(run.depth),
                    stem_name(run.stem),
                    shape.channels
                )
            })?;
            (k + 1, Some(teacher))
        }
        _ => (0, None),
    };
    let out = run_directory(run);
    let config = ChainConfig {
        model,
        max_epochs: run.max_epochs,
        batch_size: run.batch_size,
        lr: run.lr,
        reg_coef: run.reg_coef,
        loss: run.loss,
        alpha: run.alpha,
        steps: run.steps,
        first_step,
        seed: run.seed,
        num_workers: run.num_workers,
        device: run.device.clone(),
        out: out.clone(),
        pretrained: run.pretrained.clone(),
    };
    tracing::info!(run = %out.display(), "training");
    let mut progress = Progress::new(run.show_progress);
    let results = run_chain(&config, &chain_data, teacher, &mut progress)?;
    Ok((out, results))
}

/// "ResNet-18", "ResNet-34" or "ResNet-50".
pub fn depth_name(depth: Depth) -> &'static str {
    match depth {
        Depth::R18 => "ResNet-18",
        Depth::R34 => "ResNet-34",
        Depth::R50 => "ResNet-50",
    }
}

/// "imagenet" or "cifar".
pub fn stem_name(stem: Stem) -> &'static str {
    match stem {
        Stem::Imagenet => "imagenet",
        Stem::Cifar => "cifar",
    }
}

/// The results as a table for stdout.
pub fn table(dir: &Path, results: &[StepResult]) -> String {
    let mut out = format!(
        "run {}\n\nstep  alpha  test acc (final)  test acc (best)  best epoch\n",
        dir.display()
    );
    for r in results {
        out += &format!(
            "{:>4}  {:>5}  {:>16.4}  {:>15.4}  {:>10}\n",
            r.step, r.alpha, r.test_acc_final, r.test_acc_best, r.best_epoch
        );
    }
    out
}

/// `cpu`, `cuda` or `cuda:N`.
pub fn device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        _ if spec == "cuda" || spec.starts_with("cuda:") => {
            let ordinal: usize = match spec.strip_prefix("cuda:") {
                Some(n) => n.parse().with_context(|| format!("bad device '{spec}'"))?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                bail!(
                    "--device {spec}: this binary was built without CUDA (build one with `cargo \
                     xtask cuda-build`, see docs/gpu.md)"
                );
            }
            // candle's error carries a backtrace; the first line says what went wrong.
            Device::new_cuda(ordinal).map_err(|e| {
                let text = e.to_string();
                anyhow::anyhow!(
                    "--device {spec}: cannot open the GPU: {} (is an NVIDIA driver installed, \
                     and LD_LIBRARY_PATH set as docs/gpu.md says?)",
                    text.lines().next().unwrap_or_default()
                )
            })
        }
        _ => bail!("--device must be cpu, cuda or cuda:N, got '{spec}'"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_names_use_utc_dates() {
        // 2026-11-28 10:04:57 UTC.
        assert_eq!(
            super::run_name(1_795_860_297, 0.6, 1e-4, 1),
            "20261128-100457_0.6_0.0001_1"
        );
        assert!(super::run_name(0, 0.5, 0.001, 0).starts_with("19700101-000000_"));
        assert!(super::device("tpu").is_err());
    }
}
