//! A data set on disk, recognised by its layout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cifar;
use crate::error::{DataError, Result};
use crate::idx;
use crate::images::{ImageSet, ImageShape};
use crate::transform::Normalization;

/// How the data was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Format {
    /// The extracted CIFAR-10 binary version (`cifar-10-batches-bin/`).
    CifarBinary,
    /// The downloaded `cifar-10-binary.tar.gz`, read without extracting it.
    CifarArchive,
    /// IDX files, compressed or not ((Fashion-)MNIST).
    Idx,
    /// Parquet files from the Hugging Face hub, through candle-datasets (feature
    /// `candle-datasets`).
    Hub,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::CifarBinary => "CIFAR-10 binary",
            Format::CifarArchive => "CIFAR-10 binary, tar.gz archive",
            Format::Idx => "IDX",
            Format::Hub => "Hugging Face hub (candle-datasets)",
        })
    }
}

/// Which data set, for its class names and normalization constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DatasetKind {
    /// CIFAR-10 (or a fixture in its format).
    Cifar10,
    /// Fashion-MNIST: IDX files in a directory whose path names "fashion".
    FashionMnist,
    /// Any other IDX data, taken as MNIST.
    Mnist,
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DatasetKind::Cifar10 => "CIFAR-10",
            DatasetKind::FashionMnist => "Fashion-MNIST",
            DatasetKind::Mnist => "MNIST",
        })
    }
}

/// A training set and a test set of labelled images, read and validated.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Which data set.
    pub kind: DatasetKind,
    /// How it was stored.
    pub format: Format,
    /// The path it was read from (the directory holding the files, or the archive).
    pub source: PathBuf,
    /// The training images.
    pub train: Arc<ImageSet>,
    /// The test images.
    pub test: Arc<ImageSet>,
    /// One name per class.
    pub class_names: Vec<String>,
    /// Whether the data is a fixture written by [`crate::fixture`] (it has a manifest).
    pub is_fixture: bool,
}

impl Dataset {
    /// Reads the data set at `path`, recognising its layout:
    /// - a `.tar.gz`/`.tgz` file: the CIFAR-10 archive;
    /// - a directory with `data_batch_1.bin`: CIFAR-10 extracted; one containing
    ///   `cifar-10-batches-bin/` or `cifar-10-binary.tar.gz`: that;
    /// - a directory with `train-images-idx3-ubyte[.gz]` (or the other IDX files): IDX.
    pub fn open(path: impl AsRef<Path>) -> Result<Dataset> {
        let path = path.as_ref();
        let metadata = std::fs::metadata(path).map_err(|e| {
            DataError::read(
                path,
                e,
                "expected a CIFAR-10 or (Fashion-)MNIST directory, or cifar-10-binary.tar.gz",
            )
        })?;
        if metadata.is_file() {
            let name = path.to_string_lossy();
            if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
                return Self::from_cifar(cifar::read_archive(path)?, Format::CifarArchive, path);
            }
            return Err(DataError::UnknownFormat {
                path: path.to_path_buf(),
            });
        }
        // A directory that cannot be listed (no permission) is said so, not taken for one
        // without a data set.
        std::fs::read_dir(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        for candidate in [path.to_path_buf(), path.join(cifar::DIR_NAME)] {
            let has_cifar = cifar::TRAIN_FILES
                .iter()
                .chain([&cifar::TEST_FILE])
                .any(|f| candidate.join(f).exists());
            if has_cifar {
                return Self::from_cifar(
                    cifar::read_dir(&candidate)?,
                    Format::CifarBinary,
                    &candidate,
                );
            }
        }
        let archive = path.join(cifar::ARCHIVE_NAME);
        if archive.is_file() {
            return Self::from_cifar(
                cifar::read_archive(&archive)?,
                Format::CifarArchive,
                &archive,
            );
        }
        if idx::is_idx_dir(path) {
            let data = idx::read_dir(path)?;
            let fashion = std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .to_string_lossy()
                .to_lowercase()
                .contains("fashion");
            let (kind, class_names) = if fashion {
                (DatasetKind::FashionMnist, names(&idx::FASHION_CLASS_NAMES))
            } else {
                (DatasetKind::Mnist, (0..10).map(|d| d.to_string()).collect())
            };
            return Ok(Dataset {
                kind,
                format: Format::Idx,
                source: path.to_path_buf(),
                train: Arc::new(data.train),
                test: Arc::new(data.test),
                class_names,
                is_fixture: path.join(cifar::MANIFEST_FILE).exists(),
            });
        }
        Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }

    fn from_cifar(data: cifar::Cifar10, format: Format, source: &Path) -> Result<Dataset> {
        Ok(Dataset {
            kind: DatasetKind::Cifar10,
            format,
            source: source.to_path_buf(),
            train: Arc::new(data.train),
            test: Arc::new(data.test),
            class_names: data.class_names,
            is_fixture: data.manifest.is_some(),
        })
    }

    /// The geometry of its images.
    pub fn shape(&self) -> ImageShape {
        self.train.shape()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.train.classes()
    }

    /// The normalization constants customary for this data set: the original code's for
    /// CIFAR-10 (fixtures included), ours for Fashion-MNIST, the usual ones for MNIST.
    pub fn normalization(&self) -> Normalization {
        match self.kind {
            DatasetKind::Cifar10 => Normalization::cifar10(),
            DatasetKind::FashionMnist => Normalization::fashion_mnist(),
            DatasetKind::Mnist => Normalization::mnist(),
        }
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
