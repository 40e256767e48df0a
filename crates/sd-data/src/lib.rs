//! # sd-data
//!
//! What torchvision's `CIFAR10`, `transforms` and `DataLoader` gave the original code of
//! *Even your Teacher Needs Guidance* (Borup & Andersen, NeurIPS 2021), for candle:
//!
//! - validated readers for the CIFAR-10 binary version (the extracted directory or the
//!   `cifar-10-binary.tar.gz` archive, read without extracting) and for (Fashion-)MNIST IDX files,
//!   gzip-compressed or not ([`Dataset::open`] recognises which); every malformed input is a
//!   [`DataError`] naming the file and the record;
//! - images kept as bytes ([`ImageSet`], `N x C x H x W`), converted to `f32` per batch;
//! - the original augmentation ([`Transform::train`]: `RandomCrop(32, padding=4)`,
//!   `RandomHorizontalFlip`, `Normalize`) fused into one pass per image, plus padding 28 x 28 to
//!   32 x 32 and repeating one channel to three for MNIST;
//! - seeded splits ([`Splits`]: a stratified held-out validation split, or the test set as the
//!   original did; balanced limits for quick runs);
//! - [`BatchLoader`]: shuffled batches as candle tensors made by worker threads into bounded
//!   channels, identical for a given seed whatever the number of workers;
//! - [`fixture`]: small data sets in the real formats for tests and quick runs.
//!
//! ```
//! use sd_data::{BatchLoader, Dataset, LoaderConfig, SplitConfig, Splits, Transform, Validation};
//! use sd_data::fixture::{self, FixtureSpec};
//!
//! // A small data set in the CIFAR-10 binary format (no download needed).
//! let dir = tempfile::tempdir()?;
//! fixture::write_cifar10(dir.path(), FixtureSpec { train: 300, test: 50, seed: 1 })?;
//!
//! let data = Dataset::open(dir.path())?;
//! let splits = Splits::new(&data, &SplitConfig {
//!     validation: Validation::Holdout { size: 50 },
//!     ..SplitConfig::default()
//! })?;
//! assert_eq!((splits.train.len(), splits.val.len(), splits.test.len()), (250, 50, 50));
//!
//! let loader = BatchLoader::new(
//!     splits.train,
//!     &Transform::train(data.normalization()),
//!     LoaderConfig { batch_size: 64, seed: 7, ..LoaderConfig::default() },
//! )?;
//! let mut images = 0;
//! for batch in loader.epoch(0) {
//!     let batch = batch?;
//!     assert_eq!(batch.images.dims()[1..], [3, 32, 32]);
//!     assert_eq!(batch.one_hot.dims()[1], 10);
//!     images += batch.labels.dims()[0];
//! }
//! assert_eq!((images, loader.len()), (250, 4)); // the last batch holds 58
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cifar;
pub mod dataset;
mod error;
pub mod fixture;
pub mod idx;
mod images;
pub mod loader;
mod rng;
pub mod split;
pub mod transform;

#[cfg(feature = "candle-datasets")]
pub mod candle_datasets;

pub use dataset::{Dataset, DatasetKind, Format};
pub use error::{DataError, Result};
pub use images::{ChannelStats, ImageSet, ImageShape};
pub use loader::{Batch, BatchLoader, Epoch, LoaderConfig, Shuffle};
pub use split::{SplitConfig, Splits, Subset, Validation};
pub use transform::{Normalization, Placement, PreparedTransform, Transform};

// The README's examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
