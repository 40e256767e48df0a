//! Small data sets in the real file formats, with structure a small network can learn.
//!
//! Tests and quick runs need CIFAR-10-shaped data on machines that cannot download CIFAR-10.
//! A fixture image of class `k` has a class colour ([`cifar_images`]) or brightness
//! ([`mnist_images`]) and stripes whose orientation and period depend on `k`, with random
//! phase, contrast and noise per image; classes are balanced and shuffled. The files are the
//! official formats byte for byte; a CIFAR fixture adds `sd-data-fixture.json` giving its record
//! counts, which the reader then checks instead of the official 10,000 per file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::seq::SliceRandom;

use crate::cifar::{self, FixtureManifest};
use crate::error::{DataError, Result};
use crate::idx;
use crate::images::{ImageSet, ImageShape};
use crate::rng::{Purpose, stream};

/// How big a fixture is, and its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixtureSpec {
    /// Training images (spread over the five training batch files for CIFAR).
    pub train: usize,
    /// Test images.
    pub test: usize,
    /// Seed of the images and labels.
    pub seed: u64,
}

impl Default for FixtureSpec {
    /// 500 training images, 100 test images, seed 0.
    fn default() -> Self {
        FixtureSpec {
            train: 500,
            test: 100,
            seed: 0,
        }
    }
}

const CLASSES: usize = 10;
/// Distinct class colours (RGB).
const PALETTE: [[u8; 3]; CLASSES] = [
    [230, 60, 50],
    [60, 180, 75],
    [50, 90, 220],
    [240, 200, 40],
    [150, 60, 200],
    [60, 210, 220],
    [240, 120, 200],
    [130, 90, 40],
    [120, 120, 120],
    [250, 250, 250],
];

fn labels(count: usize, seed: u64, split: u64) -> Vec<u8> {
    let mut labels: Vec<u8> = (0..count).map(|i| (i % CLASSES) as u8).collect();
    labels.shuffle(&mut stream(seed, Purpose::Fixture, split, u64::MAX));
    labels
}

/// Stripe intensity in [0, 1] at `(y, x)` for class `k` with phase `phase`.
fn stripe(k: usize, y: usize, x: usize, phase: usize) -> f32 {
    let period = 4 + 2 * (k / 2);
    let coordinate = if k.is_multiple_of(2) { y } else { x };
    if (coordinate + phase) % period < period / 2 {
        1.0
    } else {
        0.0
    }
}

fn generate(count: usize, seed: u64, split: u64, shape: ImageShape) -> ImageSet {
    let labels = labels(count, seed, split);
    let mut pixels = vec![0u8; count * shape.pixels()];
    for (i, (image, &label)) in pixels
        .chunks_exact_mut(shape.pixels())
        .zip(&labels)
        .enumerate()
    {
        let k = usize::from(label);
        let mut rng = stream(seed, Purpose::Fixture, split, i as u64);
        let phase = rng.random_range(0..16);
        let contrast: f32 = rng.random_range(0.35..0.6);
        for c in 0..shape.channels {
            let base = if shape.channels == 3 {
                f32::from(PALETTE[k][c])
            } else {
                60.0 + 18.0 * k as f32
            };
            for y in 0..shape.height {
                for x in 0..shape.width {
                    let s = stripe(k, y, x, phase);
                    let noise: f32 = rng.random_range(-20.0..20.0);
                    let value = base * (1.0 - contrast + contrast * s) + noise;
                    image[c * shape.plane() + y * shape.width + x] = value.clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    ImageSet::from_validated(pixels, labels, shape, CLASSES)
}

/// CIFAR-10-shaped fixture images (3 x 32 x 32): `(train, test)`.
pub fn cifar_images(spec: FixtureSpec) -> (ImageSet, ImageSet) {
    (
        generate(spec.train, spec.seed, 0, ImageShape::CIFAR10),
        generate(spec.test, spec.seed, 1, ImageShape::CIFAR10),
    )
}

/// MNIST-shaped fixture images (1 x 28 x 28): `(train, test)`.
pub fn mnist_images(spec: FixtureSpec) -> (ImageSet, ImageSet) {
    (
        generate(spec.train, spec.seed, 0, ImageShape::MNIST),
        generate(spec.test, spec.seed, 1, ImageShape::MNIST),
    )
}

/// Writes the images as CIFAR-10 batch files in `dir/cifar-10-batches-bin/` (created), with
/// `batches.meta.txt` and the manifest. The training images are spread over the five training
/// files in order. Returns the `cifar-10-batches-bin` path.
pub fn write_cifar(
    dir: impl AsRef<Path>,
    train: &ImageSet,
    test: &ImageSet,
    seed: u64,
) -> Result<PathBuf> {
    let out = dir.as_ref().join(cifar::DIR_NAME);
    std::fs::create_dir_all(&out).map_err(|source| DataError::Write {
        path: out.clone(),
        source,
    })?;
    for (name, bytes) in cifar_files(train, test, seed) {
        write_atomic(&out.join(name), &bytes)?;
    }
    Ok(out)
}

/// Writes a CIFAR-10 fixture ([`cifar_images`]) into `dir/cifar-10-batches-bin/`.
pub fn write_cifar10(dir: impl AsRef<Path>, spec: FixtureSpec) -> Result<PathBuf> {
    let (train, test) = cifar_images(spec);
    write_cifar(dir, &train, &test, spec.seed)
}

/// Writes a CIFAR-10 fixture as a `.tar.gz` archive laid out like `cifar-10-binary.tar.gz`.
pub fn write_cifar10_archive(path: impl AsRef<Path>, spec: FixtureSpec) -> Result<()> {
    let (train, test) = cifar_images(spec);
    write_cifar_archive(path, &train, &test, spec.seed)
}

/// Writes the images as a `.tar.gz` archive laid out like `cifar-10-binary.tar.gz`.
pub fn write_cifar_archive(
    path: impl AsRef<Path>,
    train: &ImageSet,
    test: &ImageSet,
    seed: u64,
) -> Result<()> {
    let path = path.as_ref();
    let error = |source: std::io::Error| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut archive = tar::Builder::new(gzip);
    for (name, bytes) in cifar_files(train, test, seed) {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(
                &mut header,
                format!("{}/{name}", cifar::DIR_NAME),
                &bytes[..],
            )
            .map_err(error)?;
    }
    let bytes = archive
        .into_inner()
        .and_then(|gzip| gzip.finish())
        .map_err(error)?;
    write_atomic(path, &bytes)
}

/// The files of a CIFAR fixture: manifest and class names first, then the batches.
fn cifar_files(train: &ImageSet, test: &ImageSet, seed: u64) -> Vec<(String, Vec<u8>)> {
    let files = cifar::TRAIN_FILES.len();
    let mut start = 0;
    let mut batches = Vec::new();
    let mut records = BTreeMap::new();
    for (i, name) in cifar::TRAIN_FILES.iter().enumerate() {
        let count = train.len() / files + usize::from(i < train.len() % files);
        batches.push((
            name.to_string(),
            cifar::encode_batch(train, start..start + count),
        ));
        records.insert(name.to_string(), count);
        start += count;
    }
    batches.push((
        cifar::TEST_FILE.to_string(),
        cifar::encode_batch(test, 0..test.len()),
    ));
    records.insert(cifar::TEST_FILE.to_string(), test.len());
    let manifest = FixtureManifest {
        generator: format!("sd-data {} fixture", env!("CARGO_PKG_VERSION")),
        seed,
        records,
    };
    let mut out = vec![
        (
            cifar::MANIFEST_FILE.to_string(),
            serde_json::to_vec_pretty(&manifest).expect("a manifest serialises"),
        ),
        (
            cifar::META_FILE.to_string(),
            (0..CLASSES)
                .map(|k| format!("class_{k}\n"))
                .collect::<String>()
                .into_bytes(),
        ),
    ];
    out.extend(batches);
    out
}

/// Writes an MNIST-shaped fixture ([`mnist_images`]) as the four IDX files in `dir` (created),
/// gzip-compressed (`.gz`, as distributed) or not, plus the manifest marking it as a fixture.
pub fn write_idx(dir: impl AsRef<Path>, spec: FixtureSpec, gzip: bool) -> Result<()> {
    let (train, test) = mnist_images(spec);
    write_idx_images(dir, &train, &test, gzip)
}

/// Writes single-channel images as the four IDX files in `dir` (created).
pub fn write_idx_images(
    dir: impl AsRef<Path>,
    train: &ImageSet,
    test: &ImageSet,
    gzip: bool,
) -> Result<()> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|source| DataError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let [train_images, train_labels, test_images, test_labels] = idx::FILE_STEMS;
    for (stem, bytes) in [
        (train_images, idx::encode_images(train)),
        (train_labels, idx::encode_labels(train.labels())),
        (test_images, idx::encode_images(test)),
        (test_labels, idx::encode_labels(test.labels())),
    ] {
        let (name, bytes) = if gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&bytes).expect("writing to memory");
            (
                format!("{stem}.gz"),
                encoder.finish().expect("writing to memory"),
            )
        } else {
            (stem.to_string(), bytes)
        };
        write_atomic(&dir.join(name), &bytes)?;
    }
    let manifest = serde_json::json!({
        "generator": format!("sd-data {} fixture", env!("CARGO_PKG_VERSION")),
        "train": train.len(),
        "test": test.len(),
    });
    write_atomic(
        &dir.join(cifar::MANIFEST_FILE),
        &serde_json::to_vec_pretty(&manifest).expect("a manifest serialises"),
    )
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it into place: a
/// reader never sees half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let error = |source: std::io::Error| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Hidden, and not ending in a data file's extension (as every temporary of this workspace).
    let temporary = path.with_file_name(format!(".{name}.{}.sd-tmp", std::process::id()));
    // What a killed writer of this file left (this version's names and the earlier `.partial`).
    if let Some(Ok(entries)) = path.parent().map(std::fs::read_dir) {
        for entry in entries.flatten() {
            let other = entry.file_name().to_string_lossy().into_owned();
            if other.starts_with(&format!(".{name}."))
                && (other.ends_with(".sd-tmp") || other.ends_with(".partial"))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(error)
}
