//! The self-distillation chain: step 0 fits the ground truth, step `k >= 1` trains a fresh
//! network on `alpha` ground truth + `(1 - alpha)` its frozen predecessor's softmax.
//!
//! As the original code: each step trains `max_epochs` epochs with Adam; its teacher is the
//! previous step's final-epoch model, in evaluation mode, seeing the same augmented batch. Every
//! step writes into `<out>/step_<k>/`: the two best checkpoints by validation accuracy
//! (`epoch=NN-val_acc=0.xxxx.safetensors`) and `last.safetensors`, each with a JSON beside it,
//! and the run directory gets `metrics.csv`/`metrics.jsonl` (one row per epoch and step) and
//! `test.csv`/`test.jsonl` (the test accuracy of each step's final and best models). All files
//! are written atomically.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use sd_data::{BatchLoader, LoaderConfig, Shuffle, Subset, Transform};
use serde::Serialize;

use crate::error::{ResnetError, Result};
use crate::files::write_atomic;
use crate::loss::{self, LossKind};
use crate::model::{Resnet, ResnetConfig};
use crate::optim::{Adam, AdamConfig};

/// How to train a chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainConfig {
    /// The network of every step.
    #[serde(skip)]
    pub model: ResnetConfig,
    /// Epochs per step.
    pub max_epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Weight of `sum_p |p|_2` in the loss.
    pub reg_coef: f64,
    /// The loss.
    #[serde(serialize_with = "serialize_loss")]
    pub loss: LossKind,
    /// Weight of the ground truth for steps >= 1.
    pub alpha: f64,
    /// Steps to train.
    pub steps: usize,
    /// The first step's number: 0, or `k + 1` when resuming from a step-`k` teacher.
    pub first_step: usize,
    /// Seed of initialization, shuffling and augmentation (each step derives its own).
    pub seed: u64,
    /// Batch worker threads.
    pub num_workers: usize,
    /// Where tensors live.
    #[serde(skip)]
    pub device: Device,
    /// The run directory.
    pub out: PathBuf,
    /// Start every step from these weights (a torchvision `state_dict` as safetensors, or one of
    /// our checkpoints) instead of a random initialization.
    pub pretrained: Option<PathBuf>,
}

/// JSON has no NaN: serde_json writes it as `null`, read back here as NaN.
fn null_is_nan<'de, De: serde::Deserializer<'de>>(d: De) -> Result<f64, De::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn serialize_loss<S: serde::Serializer>(loss: &LossKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match loss {
        LossKind::SoftmaxMse => "mse",
        LossKind::CrossEntropy => "ce",
    })
}

/// The data of a chain.
#[derive(Debug, Clone)]
pub struct ChainData {
    /// Training images.
    pub train: Subset,
    /// Validation images (model selection).
    pub val: Subset,
    /// Test images (reported).
    pub test: Subset,
    /// Augmentation for training.
    pub train_transform: Transform,
    /// Transform for evaluation.
    pub eval_transform: Transform,
}

/// One epoch's numbers.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    /// Distillation step.
    pub step: usize,
    /// Epoch within the step, from 0.
    pub epoch: usize,
    /// The ground-truth weight of this step (1 for step 0).
    pub alpha: f64,
    /// Mean training loss (distillation loss + regularizer) over the epoch's batches.
    pub train_loss: f64,
    /// Training accuracy (against the labels) over the epoch.
    pub train_acc: f64,
    /// Validation loss `MSE(softmax, onehot)` (or CE), evaluation mode.
    #[serde(deserialize_with = "null_is_nan")]
    pub val_loss: f64,
    /// Validation accuracy.
    #[serde(deserialize_with = "null_is_nan")]
    pub val_acc: f64,
    /// Learning rate.
    pub lr: f64,
    /// Training images per second (forward, backward, optimizer).
    pub images_per_s: f64,
    /// Seconds for the epoch, evaluation included.
    pub seconds: f64,
}

/// The test results of one step.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StepResult {
    /// Distillation step.
    pub step: usize,
    /// Its ground-truth weight.
    pub alpha: f64,
    /// Test accuracy of the final-epoch model (the next step's teacher).
    pub test_acc_final: f64,
    /// Test accuracy of the best model by validation accuracy.
    pub test_acc_best: f64,
    /// The epoch of the best model.
    pub best_epoch: usize,
    /// Its validation accuracy.
    #[serde(deserialize_with = "null_is_nan")]
    pub best_val_acc: f64,
    /// The final-epoch checkpoint.
    pub last_checkpoint: PathBuf,
    /// Wall seconds of the step: training, validation, checkpoints and the test evaluation
    /// (0 in files written before it was recorded).
    #[serde(default)]
    pub seconds: f64,
}

/// Where training is within an epoch, after a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchProgress {
    /// Distillation step.
    pub step: usize,
    /// Epoch within the step.
    pub epoch: usize,
    /// Batches done in this epoch.
    pub done: usize,
    /// Batches in the epoch.
    pub total: usize,
    /// Mean training loss so far this epoch.
    pub loss: f64,
    /// Training accuracy so far this epoch.
    pub acc: f64,
    /// Training images per second so far this epoch.
    pub images_per_s: f64,
}

/// Progress callbacks (a progress bar, logs).
pub trait Observer {
    /// After each training batch.
    fn batch(&mut self, _progress: &BatchProgress) {}
    /// After each epoch.
    fn epoch(&mut self, _metrics: &EpochMetrics) {}
    /// After each step's test evaluation.
    fn step(&mut self, _result: &StepResult) {}
}

/// An observer that does nothing.
pub struct Silent;
impl Observer for Silent {}

/// Derives a step's seed from the chain's seed (SplitMix64 of both), so steps differ and a
/// resumed chain's step `k` equals the uninterrupted chain's.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Batches of `subset` in order, without shuffling, for evaluation.
fn evaluation_loader(
    subset: &Subset,
    transform: &Transform,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<BatchLoader> {
    BatchLoader::new(
        subset.clone(),
        transform,
        LoaderConfig {
            batch_size,
            shuffle: Shuffle::Off,
            num_workers: workers,
            device: device.clone(),
            ..LoaderConfig::default()
        },
    )
    .map_err(data_error)
}

/// Loss and accuracy of `model` (evaluation mode) on `subset`, against the labels.
pub fn evaluate(
    model: &Resnet,
    subset: &Subset,
    transform: &Transform,
    batch_size: usize,
    workers: usize,
    device: &Device,
    kind: LossKind,
) -> Result<(f64, f64)> {
    if subset.is_empty() {
        return Ok((f64::NAN, f64::NAN));
    }
    let loader = evaluation_loader(subset, transform, batch_size, workers, device)?;
    let (mut loss_sum, mut correct, mut count) = (0.0, 0usize, 0usize);
    for batch in loader.epoch(0) {
        let batch = batch.map_err(data_error)?;
        let logits = model.forward(&batch.images, false)?;
        let n = batch.indices.len();
        loss_sum += loss::against(kind, &logits, &batch.one_hot)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?
            * n as f64;
        correct += correct_predictions(&logits, &batch.labels)?;
        count += n;
    }
    Ok((loss_sum / count as f64, correct as f64 / count as f64))
}

/// `softmax(model(x))` of every image of `subset` in order (evaluation mode), as a row-major
/// `images x classes` vector: the `u` of the paper's Algorithm 1.
pub fn predict_proba(
    model: &Resnet,
    subset: &Subset,
    transform: &Transform,
    batch_size: usize,
    workers: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let loader = evaluation_loader(subset, transform, batch_size, workers, device)?;
    let mut out = Vec::with_capacity(subset.len() * model.config().classes);
    for batch in loader.epoch(0) {
        let batch = batch.map_err(data_error)?;
        let probabilities = loss::softmax(&model.forward(&batch.images, false)?)?;
        out.extend(
            probabilities
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
    }
    Ok(out)
}

/// The ground-truth weight of the paper's Algorithm 1 for networks at one step:
/// `alpha = <r - u0, u1 - u0> / |u1 - u0|^2`, summed over images and classes, where `r` are the
/// one-hot targets, `u1` the first fit's outputs and `u0` the outputs of the student trained on
/// its teacher alone (`alpha = 0`). It minimises `|r - (alpha u1 + (1 - alpha) u0)|^2`: the
/// student trained with weight `alpha` is approximated by that mixture of the two fits, as it is
/// exactly for kernel ridge regression. `None` when `u1 = u0` (any alpha gives the same mixture)
/// or the lengths differ. Not clamped: the caller decides what to do outside `[0, 1]`.
pub fn optimal_alpha(targets: &[f32], first_fit: &[f32], zero_alpha: &[f32]) -> Option<f64> {
    if targets.len() != first_fit.len() || targets.len() != zero_alpha.len() {
        return None;
    }
    let (mut numerator, mut denominator) = (0.0f64, 0.0f64);
    for ((&r, &u1), &u0) in targets.iter().zip(first_fit).zip(zero_alpha) {
        let (r, u1, u0) = (f64::from(r), f64::from(u1), f64::from(u0));
        numerator += (r - u0) * (u1 - u0);
        denominator += (u1 - u0) * (u1 - u0);
    }
    let alpha = numerator / denominator;
    (denominator > 1e-12 * targets.len().max(1) as f64 && alpha.is_finite()).then_some(alpha)
}

/// The one-hot rows of `subset`'s labels, row-major `images x classes`.
pub fn one_hot(subset: &Subset, classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; subset.len() * classes];
    for (row, label) in subset.labels().into_iter().enumerate() {
        out[row * classes + usize::from(label)] = 1.0;
    }
    out
}

fn correct_predictions(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let predicted = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    Ok(predicted
        .eq(labels)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()? as usize)
}

fn data_error(e: sd_data::DataError) -> ResnetError {
    ResnetError::InvalidConfig(format!("data: {e}"))
}

/// Trains `config.steps` steps starting at `config.first_step`. `teacher`: the step
/// `first_step - 1` model when resuming (required then; ignored for `first_step = 0`).
pub fn run_chain(
    config: &ChainConfig,
    data: &ChainData,
    teacher: Option<Resnet>,
    observer: &mut dyn Observer,
) -> Result<Vec<StepResult>> {
    if config.first_step > 0 && teacher.is_none() {
        return Err(ResnetError::InvalidConfig(format!(
            "step {} needs the step {} model as its teacher",
            config.first_step,
            config.first_step - 1
        )));
    }
    if !(0.0..=1.0).contains(&config.alpha) {
        return Err(ResnetError::InvalidConfig(format!(
            "alpha must lie in [0, 1], got {}",
            config.alpha
        )));
    }
    if config.max_epochs == 0 || config.steps == 0 {
        return Err(ResnetError::InvalidConfig(
            "max_epochs and steps must be > 0".into(),
        ));
    }
    create_dir(&config.out)?;
    let mut teacher = if config.first_step == 0 {
        None
    } else {
        teacher
    };
    let mut results = Vec::new();
    let mut metrics: Vec<EpochMetrics> = read_jsonl(&config.out.join("metrics.jsonl"))
        .into_iter()
        .filter(|m: &EpochMetrics| m.step < config.first_step)
        .collect();
    let mut previous_results: Vec<StepResult> = read_jsonl(&config.out.join("test.jsonl"))
        .into_iter()
        .filter(|r: &StepResult| r.step < config.first_step)
        .collect();
    for step in config.first_step..config.first_step + config.steps {
        let (student, result) =
            train_step(config, data, step, teacher.as_ref(), &mut metrics, observer)?;
        observer.step(&result);
        previous_results.push(result.clone());
        write_atomic(
            &config.out.join("test.jsonl"),
            jsonl(&previous_results).as_bytes(),
        )?;
        write_atomic(
            &config.out.join("test.csv"),
            test_csv(&previous_results).as_bytes(),
        )?;
        results.push(result);
        teacher = Some(student);
    }
    Ok(results)
}

fn train_step(
    config: &ChainConfig,
    data: &ChainData,
    step: usize,
    teacher: Option<&Resnet>,
    metrics: &mut Vec<EpochMetrics>,
    observer: &mut dyn Observer,
) -> Result<(Resnet, StepResult)> {
    let step_started = Instant::now();
    let seed = step_seed(config.seed, step);
    let alpha = if teacher.is_some() { config.alpha } else { 1.0 };
    let dir = config.out.join(format!("step_{step}"));
    create_dir(&dir)?;
    let model = Resnet::new(config.model, seed, &config.device)?;
    if let Some(path) = &config.pretrained {
        model.load(path)?;
    }
    let params = model.parameters().trainable();
    let mut adam = Adam::new(
        params.clone(),
        AdamConfig {
            lr: config.lr,
            ..AdamConfig::default()
        },
    )?;
    let loader = BatchLoader::new(
        data.train.clone(),
        &data.train_transform,
        LoaderConfig {
            batch_size: config.batch_size,
            shuffle: Shuffle::EachEpoch,
            drop_last: false,
            num_workers: config.num_workers,
            prefetch: 2,
            seed,
            device: config.device.clone(),
        },
    )
    .map_err(data_error)?;
    let mut best: Vec<(f64, usize, PathBuf)> = Vec::new(); // (val_acc, epoch, path), best first
    let mut last = dir.join("last.safetensors");
    for epoch in 0..config.max_epochs {
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut train_seconds) = (0.0, 0usize, 0usize, 0.0);
        let total = loader.len();
        for (done, batch) in loader.epoch(epoch as u64).enumerate() {
            let batch = batch.map_err(data_error)?;
            let batch_started = Instant::now();
            let logits = model.forward(&batch.images, true)?;
            let teacher_logits = match teacher {
                Some(t) => Some(t.forward(&batch.images, false)?.detach()),
                None => None,
            };
            let fit = loss::distillation(
                config.loss,
                &logits,
                &batch.one_hot,
                teacher_logits.as_ref(),
                alpha,
            )?;
            let total_loss = if config.reg_coef > 0.0 {
                (fit + (loss::l2_norms(&params)? * config.reg_coef)?)?
            } else {
                fit
            };
            let value = total_loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(ResnetError::NonFinite {
                    step,
                    epoch,
                    batch: done,
                    value,
                });
            }
            let grads = total_loss.backward()?;
            adam.step(&grads)?;
            train_seconds += batch_started.elapsed().as_secs_f64();
            let n = batch.indices.len();
            loss_sum += value * n as f64;
            correct += correct_predictions(&logits, &batch.labels)?;
            seen += n;
            observer.batch(&BatchProgress {
                step,
                epoch,
                done: done + 1,
                total,
                loss: loss_sum / seen as f64,
                acc: correct as f64 / seen as f64,
                images_per_s: seen as f64 / train_seconds,
            });
        }
        let (val_loss, val_acc) = evaluate(
            &model,
            &data.val,
            &data.eval_transform,
            config.batch_size,
            config.num_workers,
            &config.device,
            config.loss,
        )?;
        let row = EpochMetrics {
            step,
            epoch,
            alpha,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            val_loss,
            val_acc,
            lr: config.lr,
            images_per_s: seen as f64 / train_seconds,
            seconds: started.elapsed().as_secs_f64(),
        };
        // Checkpoints: last, and the two best by validation accuracy (earlier epochs win ties).
        let sidecar = serde_json::json!({
            "step": step, "epoch": epoch, "seed": config.seed, "step_seed": seed, "alpha": alpha,
            "resnet": format!("{:?}", config.model.depth), "stem": format!("{:?}", config.model.stem),
            "in_channels": config.model.in_channels, "classes": config.model.classes,
            "config": config, "metrics": &row,
        });
        last = dir.join("last.safetensors");
        save_with_sidecar(&model, &last, &sidecar)?;
        let qualifies = best.len() < 2 || best.iter().any(|(acc, _, _)| val_acc > *acc);
        if qualifies && val_acc.is_finite() {
            let path = dir.join(format!("epoch={epoch:02}-val_acc={val_acc:.4}.safetensors"));
            save_with_sidecar(&model, &path, &sidecar)?;
            best.push((val_acc, epoch, path));
            best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (_, _, dropped) in best.drain(2.min(best.len())..) {
                let _ = std::fs::remove_file(&dropped);
                let _ = std::fs::remove_file(dropped.with_extension("json"));
            }
        }
        observer.epoch(&row);
        metrics.push(row);
        write_atomic(&config.out.join("metrics.jsonl"), jsonl(metrics).as_bytes())?;
        write_atomic(
            &config.out.join("metrics.csv"),
            metrics_csv(metrics).as_bytes(),
        )?;
    }
    let test_accuracy = |m: &Resnet| {
        evaluate(
            m,
            &data.test,
            &data.eval_transform,
            config.batch_size,
            config.num_workers,
            &config.device,
            config.loss,
        )
        .map(|(_, acc)| acc)
    };
    let test_acc_final = test_accuracy(&model)?;
    let (test_acc_best, best_epoch, best_val_acc) = match best.first() {
        // The best model is the final one: nothing to evaluate again.
        Some((acc, epoch, _)) if *epoch + 1 == config.max_epochs => (test_acc_final, *epoch, *acc),
        Some((acc, epoch, path)) => {
            let best_model = Resnet::new(config.model, seed, &config.device)?;
            best_model.load(path)?;
            (test_accuracy(&best_model)?, *epoch, *acc)
        }
        None => (test_acc_final, config.max_epochs - 1, f64::NAN),
    };
    Ok((
        model,
        StepResult {
            step,
            alpha,
            test_acc_final,
            test_acc_best,
            best_epoch,
            best_val_acc,
            last_checkpoint: last,
            seconds: step_started.elapsed().as_secs_f64(),
        },
    ))
}

fn save_with_sidecar(model: &Resnet, path: &Path, sidecar: &serde_json::Value) -> Result<()> {
    model.save(path)?;
    let text = serde_json::to_string_pretty(sidecar).expect("metadata serialises") + "\n";
    write_atomic(&path.with_extension("json"), text.as_bytes())
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ResnetError::Io {
        path: dir.to_path_buf(),
        source: e,
    })
}

fn jsonl<T: Serialize>(rows: &[T]) -> String {
    rows.iter()
        .map(|r| serde_json::to_string(r).expect("rows serialise") + "\n")
        .collect()
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn metrics_csv(rows: &[EpochMetrics]) -> String {
    let mut out = String::from(
        "step,epoch,alpha,train_loss,train_acc,val_loss,val_acc,lr,images_per_s,seconds\n",
    );
    for r in rows {
        out += &format!(
            "{},{},{},{},{},{},{},{},{:.1},{:.3}\n",
            r.step,
            r.epoch,
            r.alpha,
            r.train_loss,
            r.train_acc,
            r.val_loss,
            r.val_acc,
            r.lr,
            r.images_per_s,
            r.seconds
        );
    }
    out
}

fn test_csv(rows: &[StepResult]) -> String {
    let mut out = String::from("step,alpha,test_acc_final,test_acc_best,best_epoch,best_val_acc\n");
    for r in rows {
        out += &format!(
            "{},{},{},{},{},{}\n",
            r.step, r.alpha, r.test_acc_final, r.test_acc_best, r.best_epoch, r.best_val_acc
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimal_alpha_by_hand() {
        // Image 1 (class 0): r - u0 = (0.7, -0.7), u1 - u0 = (0.6, -0.6): 0.84 over 0.72.
        // Image 2 (class 1): r - u0 = (-0.4, 0.4), u1 - u0 = (0.3, -0.3): -0.24 over 0.18.
        // alpha = (0.84 - 0.24) / (0.72 + 0.18) = 2/3.
        let r = [1.0, 0.0, 0.0, 1.0];
        let u1 = [0.9, 0.1, 0.7, 0.3];
        let u0 = [0.3, 0.7, 0.4, 0.6];
        let alpha = optimal_alpha(&r, &u1, &u0).unwrap();
        assert!((alpha - 2.0 / 3.0).abs() < 1e-6, "{alpha}");
        // It minimises |r - (a u1 + (1 - a) u0)|^2.
        let misfit = |a: f64| -> f64 {
            (0..4)
                .map(|i| {
                    let m = a * f64::from(u1[i]) + (1.0 - a) * f64::from(u0[i]);
                    (f64::from(r[i]) - m).powi(2)
                })
                .sum()
        };
        assert!(misfit(alpha) < misfit(alpha - 0.01) && misfit(alpha) < misfit(alpha + 0.01));
        // Not clamped: a first fit that is right where the zero-alpha student is wrong, by less
        // than the truth, asks for more than the ground truth.
        let far = optimal_alpha(&[1.0, 0.0], &[0.6, 0.4], &[0.2, 0.8]).unwrap();
        assert!((far - 2.0).abs() < 1e-6, "{far}");
        // Identical fits: every alpha gives the same mixture.
        assert_eq!(optimal_alpha(&r, &u1, &u1), None);
        assert_eq!(optimal_alpha(&r, &u1, &u0[..2]), None);
    }
}
