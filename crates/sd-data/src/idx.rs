//! MNIST and Fashion-MNIST in the IDX format: <http://yann.lecun.com/exdb/mnist/>.
//!
//! An IDX file starts with a magic number (two zero bytes, a type code, the number of
//! dimensions), then each dimension as a big-endian `u32`, then the data. Images are `u8` with 3
//! dimensions (`0x00000803`), labels `u8` with 1 (`0x00000801`). Files may be gzip-compressed
//! (`.gz`, as distributed); the compression is recognised by its magic bytes, not the name.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::images::{ImageSet, ImageShape};

/// Magic number of an IDX file of `u8` images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Training images, labels; test images, labels (each also accepted with `.gz`).
pub const FILE_STEMS: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
/// Fashion-MNIST's classes (Xiao et al. 2017).
pub const FASHION_CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// How to get the data, for messages about missing files.
pub const DOWNLOAD_HINT: &str = "(Fashion-)MNIST IDX files: on Debian `apt-get install -y \
    dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist; or download them from \
    https://github.com/zalandoresearch/fashion-mnist";
const CLASSES: usize = 10;
/// Images larger than this on a side are refused as implausible before allocating.
const MAX_SIDE: u32 = 1 << 14;
/// Files announcing more data than this (16 GiB) are refused before reading.
const MAX_BODY_BYTES: u64 = 1 << 34;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const IMAGES_WHAT: &str = "u8 images, 3 dimensions";
const LABELS_WHAT: &str = "u8 labels, 1 dimension";

/// The training and test splits of an IDX directory.
#[derive(Debug, Clone)]
pub struct IdxData {
    /// `train-images-idx3-ubyte` with `train-labels-idx1-ubyte`.
    pub train: ImageSet,
    /// `t10k-images-idx3-ubyte` with `t10k-labels-idx1-ubyte`.
    pub test: ImageSet,
}

/// Reads the four files of a directory such as `/usr/share/datasets/fashion-mnist`.
pub fn read_dir(dir: impl AsRef<Path>) -> Result<IdxData> {
    let dir = dir.as_ref();
    let [train_images, train_labels, test_images, test_labels] = FILE_STEMS.map(|s| find(dir, s));
    let (train, test) = std::thread::scope(|scope| {
        // The two gzip streams decompress in parallel.
        let train = scope.spawn(|| read_pair(&train_images, &train_labels));
        let test = read_pair(&test_images, &test_labels);
        (train.join().expect("IDX reading thread panicked"), test)
    });
    Ok(IdxData {
        train: train?,
        test: test?,
    })
}

/// Whether `dir` has any of the four IDX files (compressed or not).
pub fn is_idx_dir(dir: &Path) -> bool {
    FILE_STEMS.iter().any(|stem| find(dir, stem).exists())
}

/// The file for `stem` in `dir`: `stem`, `stem.gz`, or MNIST's dotted spelling
/// (`train-images.idx3-ubyte`), whichever exists; `stem` itself when none does.
fn find(dir: &Path, stem: &str) -> PathBuf {
    let dotted = stem.replacen("-idx", ".idx", 1);
    for name in [
        stem.to_string(),
        format!("{stem}.gz"),
        dotted.clone(),
        format!("{dotted}.gz"),
    ] {
        let path = dir.join(&name);
        if path.exists() {
            return path;
        }
    }
    dir.join(stem)
}

/// Reads an image file and its label file into one set, checking that their counts agree.
pub fn read_pair(images_path: &Path, labels_path: &Path) -> Result<ImageSet> {
    let (dims, pixels) = read_idx(images_path, IMAGES_MAGIC, IMAGES_WHAT)?;
    let (count, shape) = image_geometry(images_path, &dims)?;
    check_body(images_path, &dims, pixels.len() as u64, body_bytes(&dims))?;
    let (dims, labels) = read_idx(labels_path, LABELS_MAGIC, LABELS_WHAT)?;
    check_labels(labels_path, &dims, &labels, CLASSES)?;
    if labels.len() != count {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: count,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    Ok(ImageSet::from_validated(pixels, labels, shape, CLASSES))
}

/// Reads an IDX file's header, then at most the body the header announces plus one byte (to
/// detect trailing data), inflating gzip on the fly: a small file cannot make the reader
/// allocate more than its header's plausible size.
fn read_idx(path: &Path, magic: u32, what: &'static str) -> Result<(Vec<u32>, Vec<u8>)> {
    let file = File::open(path).map_err(|e| DataError::read(path, e, DOWNLOAD_HINT))?;
    let mut buffered = BufReader::with_capacity(1 << 20, file);
    let compressed = buffered
        .fill_buf()
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .starts_with(&GZIP_MAGIC);
    let mut reader: Box<dyn Read> = if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let failure = |source: std::io::Error| {
        if compressed && source.kind() != std::io::ErrorKind::PermissionDenied {
            DataError::Gzip {
                path: path.to_path_buf(),
                source,
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut head = Vec::with_capacity(16);
    (&mut reader)
        .take(4 + 4 * u64::from(magic & 0xff))
        .read_to_end(&mut head)
        .map_err(failure)?;
    let dims = header(path, &head, magic, what)?;
    let expected = body_bytes(&dims);
    if expected > MAX_BODY_BYTES {
        return Err(DataError::IdxDimensions {
            path: path.to_path_buf(),
            detail: format!(
                "the header announces {expected} bytes of data, more than the {MAX_BODY_BYTES} \
                 accepted"
            ),
        });
    }
    let mut body = Vec::with_capacity(expected.min(1 << 26) as usize);
    reader
        .take(expected + 1)
        .read_to_end(&mut body)
        .map_err(failure)?;
    Ok((dims, body))
}

/// A file's bytes, gunzipped when they start with gzip's magic bytes.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::read(path, e, DOWNLOAD_HINT))?;
    gunzip_if_compressed(path, bytes)
}

/// Decompresses `bytes` if they are gzip data (magic `1f 8b`); returns them unchanged otherwise.
/// Inflates everything: for files of unknown origin prefer [`read_pair`], which stops at the
/// size the header announces.
pub fn gunzip_if_compressed(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

fn header(path: &Path, bytes: &[u8], magic: u32, what: &'static str) -> Result<Vec<u32>> {
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if bytes.len() < 4 {
        return Err(DataError::IdxDimensions {
            path: path.to_path_buf(),
            detail: format!("{} bytes is too short for an IDX header", bytes.len()),
        });
    }
    if word(0) != magic {
        return Err(DataError::IdxMagic {
            path: path.to_path_buf(),
            found: word(0),
            expected: magic,
            what,
        });
    }
    let dims = (magic & 0xff) as usize;
    if bytes.len() < 4 + 4 * dims {
        return Err(DataError::IdxDimensions {
            path: path.to_path_buf(),
            detail: format!(
                "{} bytes is too short for a header of {dims} dimensions",
                bytes.len()
            ),
        });
    }
    Ok((1..=dims).map(word).collect())
}

/// The data bytes a header announces: the product of its dimensions.
fn body_bytes(dims: &[u32]) -> u64 {
    dims.iter().map(|&d| u64::from(d)).product()
}

/// `(count, shape)` of an image header, or why it is implausible.
fn image_geometry(path: &Path, dims: &[u32]) -> Result<(usize, ImageShape)> {
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if count == 0 || rows == 0 || cols == 0 || rows > MAX_SIDE || cols > MAX_SIDE {
        return Err(DataError::IdxDimensions {
            path: path.to_path_buf(),
            detail: format!("{count} images of {rows} x {cols} pixels"),
        });
    }
    let shape = ImageShape {
        channels: 1,
        height: rows as usize,
        width: cols as usize,
    };
    Ok((count as usize, shape))
}

/// The data must be exactly what the header announces.
fn check_body(path: &Path, dims: &[u32], found: u64, expected: u64) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    let announced = match dims {
        [count, rows, cols] => format!("{count} images of {rows} x {cols} = {expected} bytes"),
        _ => format!("{expected} labels"),
    };
    let (what, problem) = if found < expected {
        (found.to_string(), "truncated")
    } else {
        // Reading stops one byte past the announced size.
        ("more".to_string(), "trailing bytes")
    };
    Err(DataError::IdxDimensions {
        path: path.to_path_buf(),
        detail: format!("the header says {announced}, the file has {what} ({problem})"),
    })
}

fn check_labels(path: &Path, dims: &[u32], body: &[u8], classes: usize) -> Result<()> {
    if dims[0] == 0 {
        return Err(DataError::IdxDimensions {
            path: path.to_path_buf(),
            detail: "0 labels".into(),
        });
    }
    check_body(path, dims, body.len() as u64, u64::from(dims[0]))?;
    if let Some((record, &label)) = body
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes)
    {
        return Err(DataError::LabelOutOfRange {
            path: path.to_path_buf(),
            record,
            offset: 8 + record as u64,
            label,
            classes,
        });
    }
    Ok(())
}

/// Decodes an IDX image file held in memory: `(count, shape, pixels)` with `shape` 1 x rows x
/// columns. The header must be `0x00000803` and the data exactly `count * rows * columns` bytes.
/// `path` only names the file in errors.
pub fn decode_images(path: &Path, bytes: &[u8]) -> Result<(usize, ImageShape, Vec<u8>)> {
    let dims = header(path, bytes, IMAGES_MAGIC, IMAGES_WHAT)?;
    let (count, shape) = image_geometry(path, &dims)?;
    let body = &bytes[16..];
    check_body(path, &dims, body.len() as u64, body_bytes(&dims))?;
    Ok((count, shape, body.to_vec()))
}

/// Decodes an IDX label file held in memory, checking every label against `classes`.
pub fn decode_labels(path: &Path, bytes: &[u8], classes: usize) -> Result<Vec<u8>> {
    let dims = header(path, bytes, LABELS_MAGIC, LABELS_WHAT)?;
    let body = &bytes[8..];
    check_labels(path, &dims, body, classes)?;
    Ok(body.to_vec())
}

/// Encodes single-channel images as an IDX image file (the inverse of [`decode_images`]).
///
/// # Panics
/// If the images have more than one channel.
pub fn encode_images(images: &ImageSet) -> Vec<u8> {
    let shape = images.shape();
    assert_eq!(shape.channels, 1, "IDX images have one channel");
    let mut bytes = Vec::with_capacity(16 + images.pixels().len());
    for word in [
        IMAGES_MAGIC,
        images.len() as u32,
        shape.height as u32,
        shape.width as u32,
    ] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend_from_slice(images.pixels());
    bytes
}

/// Encodes labels as an IDX label file (the inverse of [`decode_labels`]).
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + labels.len());
    bytes.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    bytes.extend_from_slice(labels);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(count: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for w in [IMAGES_MAGIC, count, rows, cols] {
            bytes.extend_from_slice(&w.to_be_bytes());
        }
        bytes.extend(std::iter::repeat_n(9u8, body));
        bytes
    }

    #[test]
    fn reads_what_it_writes() {
        let set = ImageSet::new(
            (0..24).collect(),
            vec![3, 4],
            ImageShape {
                channels: 1,
                height: 3,
                width: 4,
            },
            10,
        )
        .unwrap();
        let (count, shape, pixels) = decode_images(Path::new("i"), &encode_images(&set)).unwrap();
        assert_eq!((count, shape, &pixels[..]), (2, set.shape(), set.pixels()));
        let labels = decode_labels(Path::new("l"), &encode_labels(set.labels()), 10).unwrap();
        assert_eq!(labels, [3, 4]);
    }

    #[test]
    fn refuses_bad_magic_numbers_and_sizes() {
        let path = Path::new("train-images-idx3-ubyte");
        let labels = encode_labels(&[1, 2]);
        let err = decode_images(path, &labels).unwrap_err();
        assert!(
            matches!(err, DataError::IdxMagic { found: 0x801, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("train-images-idx3-ubyte"));
        let err = decode_images(path, &images(2, 28, 28, 2 * 784 - 1)).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = decode_images(path, &images(2, 28, 28, 2 * 784 + 1)).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
        let err = decode_images(path, &images(0, 0, 28, 0)).unwrap_err();
        assert!(matches!(err, DataError::IdxDimensions { .. }));
        let err = decode_images(path, &images(0, 28, 28, 0)).unwrap_err();
        assert!(err.to_string().contains("0 images"), "{err}");
        assert!(decode_images(path, &images(1, 2, 2, 4)).is_ok());
        let err = decode_labels(Path::new("l"), &encode_labels(&[1, 12]), 10).unwrap_err();
        assert!(matches!(
            err,
            DataError::LabelOutOfRange {
                record: 1,
                label: 12,
                offset: 9,
                ..
            }
        ));
    }

    #[test]
    fn corrupt_gzip_is_named() {
        let err =
            gunzip_if_compressed(Path::new("x.gz"), vec![0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }));
        assert!(err.to_string().contains("x.gz: corrupt gzip"), "{err}");
    }
}
