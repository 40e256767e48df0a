//! Evaluation: loss and accuracy, and the softmax outputs Algorithm 1 compares.

use candle_core::{D, DType, Device, ModuleT, Tensor};
use sd_data::{BatchLoader, LoaderConfig, Shuffle, Subset, Transform};
use sd_resnet::Resnet;
use sd_resnet::loss::{self, LossKind};

use crate::error::Result;

/// How a subset is fed to a network for evaluation: its transform, the batch size, the worker
/// threads and the device.
#[derive(Debug, Clone)]
pub struct Feed<'a> {
    /// The evaluation transform (normalization, padding; no augmentation).
    pub transform: &'a Transform,
    /// Images per batch.
    pub batch_size: usize,
    /// Threads making batches.
    pub workers: usize,
    /// Where the network lives.
    pub device: &'a Device,
}

impl Feed<'_> {
    /// Batches of `subset` in order, without shuffling.
    fn loader(&self, subset: &Subset) -> Result<BatchLoader> {
        Ok(BatchLoader::new(
            subset.clone(),
            self.transform,
            LoaderConfig {
                batch_size: self.batch_size,
                shuffle: Shuffle::Off,
                num_workers: self.workers,
                device: self.device.clone(),
                ..LoaderConfig::default()
            },
        )?)
    }
}

/// Mean loss and accuracy of `model` (evaluation mode) on `subset`, against the labels; NaN for
/// an empty subset.
pub fn evaluate(
    model: &Resnet,
    subset: &Subset,
    feed: &Feed<'_>,
    kind: LossKind,
) -> Result<(f64, f64)> {
    if subset.is_empty() {
        return Ok((f64::NAN, f64::NAN));
    }
    let (mut loss_sum, mut correct, mut count) = (0.0, 0usize, 0usize);
    for batch in feed.loader(subset)?.epoch(0) {
        let batch = batch?;
        let logits = model.forward_t(&batch.images, false)?;
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
pub fn predict_proba(model: &Resnet, subset: &Subset, feed: &Feed<'_>) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(subset.len() * model.config().classes);
    for batch in feed.loader(subset)?.epoch(0) {
        let batch = batch?;
        let probabilities = loss::softmax(&model.forward_t(&batch.images, false)?)?;
        out.extend(
            probabilities
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
    }
    Ok(out)
}

/// The one-hot rows of `subset`'s labels, row-major `images x classes`.
pub fn one_hot(subset: &Subset, classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; subset.len() * classes];
    for (row, label) in subset.labels().into_iter().enumerate() {
        out[row * classes + usize::from(label)] = 1.0;
    }
    out
}

/// How many rows of `logits` have their largest entry at the label.
pub(crate) fn correct_predictions(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let predicted = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    Ok(predicted
        .eq(labels)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()? as usize)
}
