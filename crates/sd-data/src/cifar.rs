//! CIFAR-10, binary version: <https://www.cs.toronto.edu/~kriz/cifar.html>.
//!
//! A batch file is a sequence of 3073-byte records: one label byte (0-9), then 3072 pixel bytes,
//! the 1024 red values, the 1024 green, the 1024 blue, each plane 32 x 32 row-major. The official
//! files hold 10,000 records each; [`fixture`](crate::fixture) directories carry a manifest with
//! their own counts. Both the extracted directory and the downloaded `cifar-10-binary.tar.gz` are
//! read, the archive without extracting it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::images::{ImageSet, ImageShape};

/// Bytes per record: 1 label + 3 x 32 x 32 pixels.
pub const RECORD_BYTES: usize = 1 + 3 * 32 * 32;
/// Records in each official batch file.
pub const RECORDS_PER_FILE: usize = 10_000;
/// The five training batches, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch.
pub const TEST_FILE: &str = "test_batch.bin";
/// Class names, one per line.
pub const META_FILE: &str = "batches.meta.txt";
/// The directory the archive extracts to.
pub const DIR_NAME: &str = "cifar-10-batches-bin";
/// The name of the downloaded archive.
pub const ARCHIVE_NAME: &str = "cifar-10-binary.tar.gz";
/// Where a fixture records its record counts (absent from the official data).
pub const MANIFEST_FILE: &str = "sd-data-fixture.json";
/// CIFAR-10's classes, as in `batches.meta.txt`.
pub const CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
const CLASSES: usize = 10;
/// The most records a fixture manifest may declare per file.
const MAX_FIXTURE_RECORDS: usize = 1_000_000;
const IMAGE_BYTES: usize = RECORD_BYTES - 1;

/// How to get the data, for messages about missing files.
pub const DOWNLOAD_HINT: &str = "the CIFAR-10 binary version: download cifar-10-binary.tar.gz \
    from https://www.cs.toronto.edu/~kriz/cifar.html and pass the archive or the directory it \
    extracts to";

/// The record counts a fixture declares for its files (`sd-data-fixture.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FixtureManifest {
    /// What wrote the files.
    pub generator: String,
    /// The seed the images were drawn from.
    pub seed: u64,
    /// Records in each batch file, by file name.
    pub records: BTreeMap<String, usize>,
}

impl FixtureManifest {
    fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let manifest: FixtureManifest =
            serde_json::from_slice(bytes).map_err(|e| DataError::Manifest {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        for name in TRAIN_FILES.iter().chain([&TEST_FILE]) {
            match manifest.records.get(*name) {
                None => {
                    return Err(DataError::Manifest {
                        path: path.to_path_buf(),
                        detail: format!("no record count for {name}"),
                    });
                }
                Some(&count) if count > MAX_FIXTURE_RECORDS => {
                    return Err(DataError::Manifest {
                        path: path.to_path_buf(),
                        detail: format!(
                            "{count} records for {name}: more than {MAX_FIXTURE_RECORDS}"
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        if manifest.records[TEST_FILE] == 0 {
            return Err(DataError::Manifest {
                path: path.to_path_buf(),
                detail: format!("0 records for {TEST_FILE}"),
            });
        }
        Ok(manifest)
    }
}

/// How strictly to check the number of records in each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordCount {
    /// 10,000 per file, or what the fixture manifest says when there is one (the default).
    #[default]
    Expected,
    /// Any whole number of records (for home-made subsets without a manifest).
    Any,
}

/// The two splits of CIFAR-10 as read from disk.
#[derive(Debug, Clone)]
pub struct Cifar10 {
    /// The 50,000 training images (`data_batch_1.bin` .. `data_batch_5.bin`, in order).
    pub train: ImageSet,
    /// The 10,000 test images.
    pub test: ImageSet,
    /// From `batches.meta.txt`, or [`CLASS_NAMES`] when that file is absent or malformed.
    pub class_names: Vec<String>,
    /// The fixture manifest, when the data is a fixture.
    pub manifest: Option<FixtureManifest>,
}

/// Reads the extracted directory: `cifar-10-batches-bin/` itself, or a directory containing it.
pub fn read_dir(path: impl AsRef<Path>) -> Result<Cifar10> {
    read_dir_with(path, RecordCount::Expected)
}

/// [`read_dir`] with a choice of record-count check.
pub fn read_dir_with(path: impl AsRef<Path>, counts: RecordCount) -> Result<Cifar10> {
    let mut dir = path.as_ref().to_path_buf();
    if !dir.join(TRAIN_FILES[0]).exists() && dir.join(DIR_NAME).is_dir() {
        dir = dir.join(DIR_NAME);
    }
    let manifest = match std::fs::read(dir.join(MANIFEST_FILE)) {
        Ok(bytes) => Some(FixtureManifest::parse(&dir.join(MANIFEST_FILE), &bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(DataError::Io {
                path: dir.join(MANIFEST_FILE),
                source,
            });
        }
    };
    let expected = |name: &str| match counts {
        RecordCount::Any => None,
        RecordCount::Expected => Some(
            manifest
                .as_ref()
                .map_or(RECORDS_PER_FILE, |m| m.records[name]),
        ),
    };

    // Check every size before reading a byte, so a bad download fails at once.
    let mut train_records = Vec::with_capacity(TRAIN_FILES.len());
    for name in TRAIN_FILES {
        let file = dir.join(name);
        train_records.push(records_in(&file, file_size(&file)?, expected(name))?);
    }
    let test_path = dir.join(TEST_FILE);
    let test_records = records_in(&test_path, file_size(&test_path)?, expected(TEST_FILE))?;

    let total: usize = train_records.iter().sum();
    let mut train_pixels = vec![0u8; total * IMAGE_BYTES];
    let mut train_labels = vec![0u8; total];
    let mut test_pixels = vec![0u8; test_records * IMAGE_BYTES];
    let mut test_labels = vec![0u8; test_records];

    // One thread per file: decoding is memory-bound, and the files are independent.
    let mut jobs: Vec<(PathBuf, usize, &mut [u8], &mut [u8])> = Vec::new();
    let (mut pixels_rest, mut labels_rest) = (&mut train_pixels[..], &mut train_labels[..]);
    for (name, &records) in TRAIN_FILES.iter().zip(&train_records) {
        let (pixels, p_rest) = pixels_rest.split_at_mut(records * IMAGE_BYTES);
        let (labels, l_rest) = labels_rest.split_at_mut(records);
        jobs.push((dir.join(name), records, pixels, labels));
        (pixels_rest, labels_rest) = (p_rest, l_rest);
    }
    jobs.push((test_path, test_records, &mut test_pixels, &mut test_labels));
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(path, records, pixels, labels)| {
                scope.spawn(move || {
                    let file = File::open(&path).map_err(|e| DataError::read(&path, e, ""))?;
                    let reader = BufReader::with_capacity(1 << 20, file);
                    decode_records(&path, reader, 0, records, pixels, labels)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a CIFAR decoding thread panicked"))
            .collect::<Result<Vec<()>>>()
    })?;

    let class_names = match std::fs::read(dir.join(META_FILE)) {
        Ok(bytes) => parse_class_names(&bytes),
        Err(_) => default_class_names(),
    };
    Ok(Cifar10 {
        train: ImageSet::from_validated(train_pixels, train_labels, ImageShape::CIFAR10, CLASSES),
        test: ImageSet::from_validated(test_pixels, test_labels, ImageShape::CIFAR10, CLASSES),
        class_names,
        manifest,
    })
}

/// The tar reader's error in words: its messages can quote the bytes of a damaged header (a gzip
/// of something that is not a tar archive), which are no use to a reader and can break a line.
fn plain_tar_error(source: std::io::Error) -> std::io::Error {
    let message = source.to_string();
    let plain = if message.starts_with("numeric field was not a number")
        || message.contains("when getting cksum")
    {
        "a tar header does not hold the numbers it should: the gzip stream holds something other \
         than a tar archive, or a damaged one"
            .to_string()
    } else {
        let escaped: String = message.escape_debug().collect();
        match escaped.char_indices().nth(160) {
            Some((cut, _)) => format!("{}...", &escaped[..cut]),
            None => escaped,
        }
    };
    std::io::Error::new(source.kind(), plain)
}

/// Reads `cifar-10-binary.tar.gz` as downloaded, without extracting it. Members are matched by
/// file name in any directory (the official archive has them under `cifar-10-batches-bin/`).
pub fn read_archive(path: impl AsRef<Path>) -> Result<Cifar10> {
    read_archive_with(path, RecordCount::Expected)
}

/// [`read_archive`] with a choice of record-count check.
pub fn read_archive_with(path: impl AsRef<Path>, counts: RecordCount) -> Result<Cifar10> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| DataError::read(path, e, DOWNLOAD_HINT))?;
    // Which layer failed decides the error: the disk, gzip, or tar.
    let disk_failed = std::rc::Rc::new(std::cell::Cell::new(false));
    let gzip_failed = std::rc::Rc::new(std::cell::Cell::new(false));
    let disk = FailureFlag {
        inner: BufReader::with_capacity(1 << 20, file),
        failed: disk_failed.clone(),
    };
    let mut archive = tar::Archive::new(FailureFlag {
        inner: flate2::read::GzDecoder::new(disk),
        failed: gzip_failed.clone(),
    });
    let archive_error = |member: Option<String>, source: std::io::Error| {
        if disk_failed.get() {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        } else if gzip_failed.get() {
            DataError::Gzip {
                path: path.to_path_buf(),
                source,
            }
        } else {
            DataError::Tar {
                path: path.to_path_buf(),
                member,
                source: plain_tar_error(source),
            }
        }
    };

    // (member path for messages, pixels, labels) per batch file, validated as far as a file
    // alone allows.
    let mut batches: BTreeMap<&'static str, (PathBuf, Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut manifest = None;
    let mut class_names = None;
    let entries = archive.entries().map_err(|e| archive_error(None, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_error(None, e))?;
        if !entry.header().entry_type().is_file() {
            continue; // directories, and links that could shadow a real member
        }
        let member = entry
            .path()
            .map_err(|e| archive_error(None, e))?
            .into_owned();
        let member_name = member.to_string_lossy().into_owned();
        let Some(file_name) = member.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let member_path = PathBuf::from(format!(
            "{}/{}",
            path.display(),
            member_name.trim_start_matches('/')
        ));
        if let Some(name) = TRAIN_FILES
            .iter()
            .chain([&TEST_FILE])
            .find(|n| **n == file_name)
        {
            if batches.contains_key(name) {
                return Err(archive_error(
                    Some(member_name),
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a second member named {name}"),
                    ),
                ));
            }
            let records = records_in(&member_path, entry.size(), None)?;
            // Grow with the data actually read: a header may claim any size.
            let (mut pixels, mut labels) = (Vec::new(), Vec::new());
            let mut done = 0;
            while done < records {
                let count = (records - done).min(4096);
                pixels.resize((done + count) * IMAGE_BYTES, 0);
                labels.resize(done + count, 0);
                decode_records(
                    &member_path,
                    &mut entry,
                    done,
                    count,
                    &mut pixels[done * IMAGE_BYTES..],
                    &mut labels[done..],
                )
                .map_err(|e| match e {
                    DataError::Io { source, .. } => {
                        archive_error(Some(member_name.clone()), source)
                    }
                    DataError::EndedEarly { .. } if gzip_failed.get() || disk_failed.get() => {
                        archive_error(
                            Some(member_name.clone()),
                            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, e.to_string()),
                        )
                    }
                    other => other,
                })?;
                done += count;
            }
            batches.insert(name, (member_path, pixels, labels));
        } else if file_name == MANIFEST_FILE || file_name == META_FILE {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(1 << 20)
                .read_to_end(&mut bytes)
                .map_err(|e| archive_error(Some(member_name.clone()), e))?;
            if file_name == MANIFEST_FILE {
                manifest = Some(FixtureManifest::parse(&member_path, &bytes)?);
            } else {
                class_names = Some(parse_class_names(&bytes));
            }
        }
    }
    // tar stops at its end-of-archive marker; reading gzip to its end checks its CRC and length,
    // so a corrupted or cut-off download never passes.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
        .map_err(|e| archive_error(None, e))?;

    let mut take = |name: &'static str| -> Result<(Vec<u8>, Vec<u8>)> {
        let (member_path, pixels, labels) =
            batches.remove(name).ok_or_else(|| DataError::Missing {
                path: path.join(DIR_NAME).join(name),
                hint: format!("the archive has no member named {name}; {DOWNLOAD_HINT}"),
            })?;
        let expected = match counts {
            RecordCount::Any => None,
            RecordCount::Expected => Some(
                manifest
                    .as_ref()
                    .map_or(RECORDS_PER_FILE, |m: &FixtureManifest| m.records[name]),
            ),
        };
        if let Some(expected) = expected
            && labels.len() != expected
        {
            return Err(DataError::RecordCount {
                path: member_path,
                found: labels.len(),
                expected,
                record_bytes: RECORD_BYTES,
            });
        }
        Ok((pixels, labels))
    };
    let mut train_pixels = Vec::new();
    let mut train_labels = Vec::new();
    for name in TRAIN_FILES {
        let (pixels, labels) = take(name)?;
        if train_pixels.is_empty() {
            train_pixels.reserve_exact(pixels.len() * TRAIN_FILES.len());
            train_labels.reserve_exact(labels.len() * TRAIN_FILES.len());
        }
        train_pixels.extend_from_slice(&pixels);
        train_labels.extend_from_slice(&labels);
    }
    let (test_pixels, test_labels) = take(TEST_FILE)?;
    Ok(Cifar10 {
        train: ImageSet::from_validated(train_pixels, train_labels, ImageShape::CIFAR10, CLASSES),
        test: ImageSet::from_validated(test_pixels, test_labels, ImageShape::CIFAR10, CLASSES),
        class_names: class_names.unwrap_or_else(default_class_names),
        manifest,
    })
}

/// Decodes one batch file held in memory: its size must be a whole number of records (and
/// `expected` records when given), every label in 0..10. `path` only names the file in errors.
/// Returns the pixels (`N x 3 x 32 x 32`) and the labels.
pub fn decode_batch(
    path: &Path,
    bytes: &[u8],
    expected: Option<usize>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let records = records_in(path, bytes.len() as u64, expected)?;
    let mut pixels = vec![0u8; records * IMAGE_BYTES];
    let mut labels = vec![0u8; records];
    decode_records(path, bytes, 0, records, &mut pixels, &mut labels)?;
    Ok((pixels, labels))
}

/// Encodes images as one batch file's bytes (the inverse of [`decode_batch`]).
///
/// # Panics
/// If the images are not 3 x 32 x 32.
pub fn encode_batch(images: &ImageSet, range: std::ops::Range<usize>) -> Vec<u8> {
    assert_eq!(
        images.shape(),
        ImageShape::CIFAR10,
        "CIFAR-10 images are 3x32x32"
    );
    let mut bytes = Vec::with_capacity(range.len() * RECORD_BYTES);
    for index in range {
        bytes.push(images.label(index));
        bytes.extend_from_slice(images.image(index));
    }
    bytes
}

fn file_size(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| DataError::read(path, e, DOWNLOAD_HINT))
}

/// The number of records in a file of `bytes` bytes, or why it cannot be a batch file.
fn records_in(path: &Path, bytes: u64, expected: Option<usize>) -> Result<usize> {
    let record = RECORD_BYTES as u64;
    if !bytes.is_multiple_of(record) {
        return Err(DataError::TruncatedRecord {
            path: path.to_path_buf(),
            bytes,
            record_bytes: RECORD_BYTES,
            record: (bytes / record) as usize,
            offset: bytes / record * record,
            tail: (bytes % record) as usize,
        });
    }
    let found = usize::try_from(bytes / record).expect("file fits in memory");
    match expected {
        Some(expected) if found != expected => Err(DataError::RecordCount {
            path: path.to_path_buf(),
            found,
            expected,
            record_bytes: RECORD_BYTES,
        }),
        _ => Ok(found),
    }
}

/// Reads `records` records from `reader` into `pixels` and `labels`, checking each label.
/// `first` numbers the first of them (the file's record index) in errors.
fn decode_records(
    path: &Path,
    mut reader: impl Read,
    first: usize,
    records: usize,
    pixels: &mut [u8],
    labels: &mut [u8],
) -> Result<()> {
    // Whole records at a time: 256 x 3073 bytes, then split into label and planes.
    const CHUNK: usize = 256;
    let mut buffer = vec![0u8; CHUNK * RECORD_BYTES];
    let mut record = 0;
    while record < records {
        let count = CHUNK.min(records - record);
        let chunk = &mut buffer[..count * RECORD_BYTES];
        if let Err(source) = reader.read_exact(chunk) {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                // The file shrank after its size was checked, or an archive member is short.
                return Err(DataError::EndedEarly {
                    path: path.to_path_buf(),
                    record: first + record,
                    records: first + records,
                });
            }
            return Err(DataError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        for (i, bytes) in chunk.chunks_exact(RECORD_BYTES).enumerate() {
            let index = record + i;
            let label = bytes[0];
            if usize::from(label) >= CLASSES {
                return Err(DataError::LabelOutOfRange {
                    path: path.to_path_buf(),
                    record: first + index,
                    offset: ((first + index) * RECORD_BYTES) as u64,
                    label,
                    classes: CLASSES,
                });
            }
            labels[index] = label;
            pixels[index * IMAGE_BYTES..(index + 1) * IMAGE_BYTES].copy_from_slice(&bytes[1..]);
        }
        record += count;
    }
    Ok(())
}

fn parse_class_names(bytes: &[u8]) -> Vec<String> {
    let names: Vec<String> = String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() == CLASSES {
        names
    } else {
        default_class_names()
    }
}

fn default_class_names() -> Vec<String> {
    CLASS_NAMES.iter().map(|s| s.to_string()).collect()
}

/// Remembers whether the wrapped reader (the gzip decoder) failed, so that an error surfacing
/// from `tar` can be blamed on the right layer.
struct FailureFlag<R> {
    inner: R,
    failed: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for FailureFlag<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let result = self.inner.read(buf);
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: impl Fn(usize) -> u8) -> Vec<u8> {
        let mut bytes = vec![label];
        bytes.extend((0..IMAGE_BYTES).map(fill));
        bytes
    }

    #[test]
    fn the_byte_layout_is_label_then_red_green_blue_planes_row_major() {
        // Pixel (channel c, row y, column x) holds a value naming its position.
        let value = |c: usize, y: usize, x: usize| ((c * 97 + y * 31 + x * 7) % 251) as u8;
        let mut bytes = vec![7u8];
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    bytes.push(value(c, y, x));
                }
            }
        }
        let (pixels, labels) = decode_batch(Path::new("hand.bin"), &bytes, None).unwrap();
        assert_eq!(labels, [7]);
        let set = ImageSet::new(pixels, labels, ImageShape::CIFAR10, 10).unwrap();
        let image = set.image(0);
        for (c, y, x) in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 5, 9), (2, 31, 31)] {
            assert_eq!(
                image[c * 1024 + y * 32 + x],
                value(c, y, x),
                "({c}, {y}, {x})"
            );
        }
        // Green starts right after the 1024 red bytes, blue after green.
        assert_eq!(image[1024], value(1, 0, 0));
        assert_eq!(image[2048], value(2, 0, 0));
        assert_eq!(encode_batch(&set, 0..1), bytes);
    }

    #[test]
    fn names_the_truncated_record() {
        let mut bytes = record(1, |_| 0);
        bytes.extend(record(2, |_| 0));
        bytes.truncate(RECORD_BYTES + 100);
        let err = decode_batch(Path::new("data_batch_3.bin"), &bytes, None).unwrap_err();
        assert!(matches!(
            err,
            DataError::TruncatedRecord {
                record: 1,
                tail: 100,
                ..
            }
        ));
        let message = err.to_string();
        assert!(
            message.contains("data_batch_3.bin") && message.contains("record 1"),
            "{message}"
        );
    }

    #[test]
    fn counts_records_against_the_expectation() {
        let bytes = record(0, |_| 0);
        let err =
            decode_batch(Path::new("test_batch.bin"), &bytes, Some(RECORDS_PER_FILE)).unwrap_err();
        assert!(matches!(
            err,
            DataError::RecordCount {
                found: 1,
                expected: 10_000,
                ..
            }
        ));
        assert!(err.to_string().contains("30730000 bytes"), "{err}");
    }

    #[test]
    fn names_the_record_with_a_bad_label() {
        let mut bytes = record(9, |_| 1);
        bytes.extend(record(10, |_| 1));
        let err = decode_batch(Path::new("b.bin"), &bytes, None).unwrap_err();
        assert!(matches!(
            err,
            DataError::LabelOutOfRange {
                record: 1,
                label: 10,
                offset: 3073,
                ..
            }
        ));
    }
}
