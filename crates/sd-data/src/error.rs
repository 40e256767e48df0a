//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong when reading a data set or making batches.
///
/// Every variant about a file names the file, and where it can, the record: a user who sees
/// the message knows which download to redo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or directory that should be there is not.
    #[error("{}: missing{}", path.display(), hint_suffix(hint))]
    Missing {
        /// What was looked for.
        path: PathBuf,
        /// What it should have been and how to get it.
        hint: String,
    },
    /// Reading a file failed for another reason than its absence.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A CIFAR-10 batch file whose size is not a whole number of 3073-byte records.
    #[error(
        "{}: {bytes} bytes is not a whole number of {record_bytes}-byte records: record {record} \
         (from byte {offset}) is cut off after {tail} bytes; the file is truncated or not a \
         CIFAR-10 binary batch",
        path.display()
    )]
    TruncatedRecord {
        /// The batch file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The size of one record (3073 for CIFAR-10).
        record_bytes: usize,
        /// The 0-based index of the incomplete record.
        record: usize,
        /// Its byte offset.
        offset: u64,
        /// How many of its bytes are present.
        tail: usize,
    },
    /// A stream that ended inside a record although its size promised more (an archive member
    /// cut short, or a file that shrank while being read).
    #[error(
        "{}: the data ends inside record {record} of {records}; the file is truncated",
        path.display()
    )]
    EndedEarly {
        /// The file or archive member.
        path: PathBuf,
        /// The 0-based record that could not be read whole.
        record: usize,
        /// The records the size promised.
        records: usize,
    },
    /// A CIFAR-10 batch file with whole records, but not as many as it should hold.
    #[error(
        "{}: holds {found} records, expected {expected} ({expected} x {record_bytes} = {} bytes)",
        path.display(), *expected as u128 * *record_bytes as u128
    )]
    RecordCount {
        /// The batch file.
        path: PathBuf,
        /// Records found.
        found: usize,
        /// Records expected: 10000 for the official files, or what a fixture's manifest says.
        expected: usize,
        /// The size of one record.
        record_bytes: usize,
    },
    /// A label byte outside `0..classes`.
    #[error(
        "{}: record {record} (byte {offset}) has label {label}, outside 0..{classes}",
        path.display()
    )]
    LabelOutOfRange {
        /// The file holding the label.
        path: PathBuf,
        /// The 0-based record index.
        record: usize,
        /// The byte offset of the label.
        offset: u64,
        /// The value found.
        label: u8,
        /// The number of classes.
        classes: usize,
    },
    /// An IDX file whose magic number is not the one expected.
    #[error(
        "{}: bad IDX magic number {found:#010x}, expected {expected:#010x} ({what}); not an \
         IDX file of that kind",
        path.display()
    )]
    IdxMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes, big-endian.
        found: u32,
        /// The magic number of the expected kind.
        expected: u32,
        /// The expected kind, for example `u8 images, 3 dimensions`.
        what: &'static str,
    },
    /// An IDX header whose dimensions are impossible or disagree with the file's size.
    #[error("{}: bad IDX dimensions: {detail}", path.display())]
    IdxDimensions {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Image and label files that describe different numbers of samples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(), labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Its image count.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Its label count.
        labels: usize,
    },
    /// A gzip stream that cannot be decompressed.
    #[error("{}: corrupt gzip data: {source}", path.display())]
    Gzip {
        /// The compressed file.
        path: PathBuf,
        /// The decompressor's error.
        #[source]
        source: std::io::Error,
    },
    /// A tar archive that cannot be read.
    #[error("{}: corrupt tar archive{}: {source}", path.display(), member_suffix(member))]
    Tar {
        /// The archive.
        path: PathBuf,
        /// The member being read when it failed, if any.
        member: Option<String>,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A fixture manifest that cannot be used.
    #[error("{}: bad fixture manifest: {detail}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A path that holds neither CIFAR-10 nor IDX data.
    #[error(
        "{}: no data set found: expected the CIFAR-10 binary version (a directory with \
         data_batch_1.bin .. data_batch_5.bin and test_batch.bin, its parent, or \
         cifar-10-binary.tar.gz) or (Fashion-)MNIST IDX files (train-images-idx3-ubyte[.gz] and \
         the three others)",
        path.display()
    )]
    UnknownFormat {
        /// The path given.
        path: PathBuf,
    },
    /// A configuration value that cannot work: an empty batch, a split larger than the data.
    #[error("{0}")]
    InvalidConfig(String),
    /// Creating a tensor failed.
    #[error("cannot build the batch tensors: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A batch worker thread stopped before delivering its batches.
    #[error("batch worker {worker} stopped: {reason}")]
    Worker {
        /// The worker index.
        worker: usize,
        /// Its panic message, or why the channel closed.
        reason: String,
    },
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

fn member_suffix(member: &Option<String>) -> String {
    member
        .as_ref()
        .map(|m| format!(" at member {m}"))
        .unwrap_or_default()
}

impl DataError {
    /// An I/O error on reading `path`; a missing file becomes [`DataError::Missing`].
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error, hint: &str) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing {
                path,
                hint: hint.to_string(),
            }
        } else {
            DataError::Io { path, source }
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
