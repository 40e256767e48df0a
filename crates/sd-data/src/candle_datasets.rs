//! Interoperability with `candle-datasets` (feature `candle-datasets`, off by default).
//!
//! candle-datasets brings Hugging Face hub loaders (they download, so they need the network)
//! and its own readers of the same files. It is optional because it adds about 8 minutes to a
//! cold build (hf-hub with an HTTP/TLS stack, parquet, image, tokenizers) and because its
//! readers validate less (see `docs/design.md`). [`from_candle`] turns its data sets into ours,
//! so everything downstream (splits, augmentation, batches) is the same whichever loaded them.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::DType;

pub use candle_datasets as upstream;

use crate::dataset::{Dataset, DatasetKind, Format};
use crate::error::{DataError, Result};
use crate::images::{ImageSet, ImageShape};

/// Converts a candle-datasets vision data set (images `f32` in `[0, 1]`, `[N, 3, 32, 32]` or
/// `[N, 784]`; labels integers) into ours: pixels back to bytes (`round(255 x)`), labels
/// checked against `0..classes`.
pub fn from_candle(
    data: &candle_datasets::vision::Dataset,
    kind: DatasetKind,
    format: Format,
    source: PathBuf,
) -> Result<Dataset> {
    let shape = match kind {
        DatasetKind::Cifar10 => ImageShape::CIFAR10,
        DatasetKind::FashionMnist | DatasetKind::Mnist => ImageShape::MNIST,
    };
    let convert =
        |images: &candle_core::Tensor, labels: &candle_core::Tensor| -> Result<ImageSet> {
            let pixels: Vec<u8> = (images.to_dtype(DType::F32)? * 255.0)?
                .round()?
                .clamp(0f32, 255f32)?
                .to_dtype(DType::U8)?
                .flatten_all()?
                .to_vec1()?;
            let labels: Vec<u8> = labels
                .to_dtype(DType::U32)?
                .to_vec1::<u32>()?
                .into_iter()
                .map(|l| u8::try_from(l).unwrap_or(u8::MAX))
                .collect();
            ImageSet::new(pixels, labels, shape, data.labels)
        };
    let train = convert(&data.train_images, &data.train_labels)?;
    let test = convert(&data.test_images, &data.test_labels)?;
    let class_names = match kind {
        DatasetKind::Cifar10 => crate::cifar::CLASS_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        DatasetKind::FashionMnist => crate::idx::FASHION_CLASS_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        DatasetKind::Mnist => (0..10).map(|d| d.to_string()).collect(),
    };
    Ok(Dataset {
        kind,
        format,
        source,
        train: Arc::new(train),
        test: Arc::new(test),
        class_names,
        is_fixture: false,
    })
}

/// CIFAR-10 from the Hugging Face hub through candle-datasets (downloads on first use).
pub fn cifar10_from_hub() -> Result<Dataset> {
    let data = candle_datasets::vision::cifar::load().map_err(hub_error)?;
    from_candle(
        &data,
        DatasetKind::Cifar10,
        Format::Hub,
        "hf-hub:cifar10".into(),
    )
}

/// Fashion-MNIST from the Hugging Face hub through candle-datasets (downloads on first use).
pub fn fashion_mnist_from_hub() -> Result<Dataset> {
    let data = candle_datasets::vision::fashion_mnist::load().map_err(hub_error)?;
    from_candle(
        &data,
        DatasetKind::FashionMnist,
        Format::Hub,
        "hf-hub:zalando-datasets/fashion_mnist".into(),
    )
}

fn hub_error(e: candle_core::Error) -> DataError {
    DataError::InvalidConfig(format!("candle-datasets hub loader failed: {e}"))
}
