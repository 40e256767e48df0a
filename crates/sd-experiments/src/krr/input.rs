//! Points for kernel ridge regression from CSV files, validated cell by cell.
//!
//! A file has one header row naming its columns, then one row per point. The target columns are
//! chosen by name (the last column by default); every other column is a feature. Each problem is
//! reported with the file, line and column it was found at.

use std::path::{Path, PathBuf};

use sd_kernel::faer::Mat;

/// A problem with an input file: always names the file, and the line and column where there is
/// one (1-based, as editors count).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is empty: not even a header row.
    #[error("{path}: empty file, expected a header row naming the columns")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Malformed CSV (for example a quote that is never closed).
    #[error("{path}:{line}: malformed CSV: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Line of the problem.
        line: u64,
        /// The parser's description.
        message: String,
    },
    /// Two columns share a name.
    #[error("{path}: two columns are named '{name}'")]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The repeated name.
        name: String,
    },
    /// A requested target column does not exist.
    #[error("{path}: no column named '{name}' (columns: {columns})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The columns the file has, comma-separated.
        columns: String,
    },
    /// Every column is a target: nothing is left to learn from.
    #[error("{path}: no feature columns: all columns ({columns}) are targets")]
    NoFeatures {
        /// The file.
        path: PathBuf,
        /// The columns.
        columns: String,
    },
    /// A row with a different number of fields from the header.
    #[error("{path}:{line}: {found} fields, but the header has {expected}")]
    Ragged {
        /// The file.
        path: PathBuf,
        /// Line of the row.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// A cell that is not a number.
    #[error("{path}:{line}:{column}: '{value}' is not a number (column '{name}')")]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// Line of the row.
        line: u64,
        /// 1-based column.
        column: usize,
        /// Column name.
        name: String,
        /// The cell as written.
        value: String,
    },
    /// A NaN or infinite cell.
    #[error("{path}:{line}:{column}: '{value}' is not finite (column '{name}')")]
    NotFinite {
        /// The file.
        path: PathBuf,
        /// Line of the row.
        line: u64,
        /// 1-based column.
        column: usize,
        /// Column name.
        name: String,
        /// The cell as written.
        value: String,
    },
    /// A header and no rows.
    #[error("{path}: no data rows after the header")]
    NoRows {
        /// The file.
        path: PathBuf,
    },
    /// A test file whose columns are not the training file's.
    #[error(
        "{path} has {found} feature columns ({found_names}), but the training data has {expected} \
         ({expected_names})"
    )]
    ColumnsDiffer {
        /// The test file.
        path: PathBuf,
        /// Feature columns of the training data.
        expected: usize,
        /// Their names.
        expected_names: String,
        /// Feature columns of the test file.
        found: usize,
        /// Their names.
        found_names: String,
    },
}

/// Points read from a CSV file: features `n x d`, targets `n x m`, and the column names.
#[derive(Debug, Clone)]
pub struct Table {
    /// Feature matrix, `n x d`.
    pub x: Mat<f64>,
    /// Target matrix, `n x m`.
    pub y: Mat<f64>,
    /// Names of the `d` feature columns, in file order.
    pub feature_names: Vec<String>,
    /// Names of the `m` target columns, in the order asked for.
    pub target_names: Vec<String>,
    /// Where the points came from.
    pub source: PathBuf,
}

/// The raw cells of a CSV file, parsed as numbers, with its header.
struct Cells {
    header: Vec<String>,
    /// Row-major values, `rows x header.len()`.
    values: Vec<f64>,
    rows: usize,
}

/// A cell as it can be quoted on one line: escaped, and cut after 40 characters.
fn quoted(cell: &str) -> String {
    let escaped: String = cell.escape_debug().collect();
    match escaped.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

/// The longest line read: far more than a row of a wide data set (784 pixels at 20 characters
/// each is 16 KB), far less than memory.
pub const MAX_LINE_BYTES: u64 = 64 << 20;
/// The most read from something that is not a regular file (a pipe, a device): its size is not
/// known beforehand. Save larger inputs to a file.
pub const MAX_STREAM_BYTES: u64 = 1 << 30;

/// Reads at most `left` bytes (a regular file's size when opened, or [`MAX_STREAM_BYTES`]), and
/// no line longer than [`MAX_LINE_BYTES`]: `/dev/zero` or a binary file is refused after a bounded
/// read instead of filling memory, and a file that grows while it is read is refused rather than
/// cut at an arbitrary byte.
struct Bounded<R> {
    inner: R,
    left: u64,
    stream: bool,
    line: u64,
    line_bytes: u64,
}

impl<R: std::io::Read> std::io::Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return if self.inner.read(&mut [0u8])? == 0 {
                Ok(0)
            } else if self.stream {
                Err(std::io::Error::other(format!(
                    "more than {} GiB from something that is not a regular file; save it to a \
                     file first",
                    MAX_STREAM_BYTES >> 30
                )))
            } else {
                // Its last row may have been cut mid-number, and would still parse.
                Err(std::io::Error::other(
                    "grew while it was read (another program is writing it); read it again \
                     once it is complete",
                ))
            };
        }
        let cap = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        self.left -= n as u64;
        for &byte in &buf[..n] {
            if byte == b'\n' {
                self.line += 1;
                self.line_bytes = 0;
            } else {
                self.line_bytes += 1;
            }
        }
        if self.line_bytes > MAX_LINE_BYTES {
            return Err(std::io::Error::other(format!(
                "line {} is longer than {} MiB: not a CSV table",
                self.line + 1,
                MAX_LINE_BYTES >> 20
            )));
        }
        Ok(n)
    }
}

fn read_cells(path: &Path) -> Result<Cells, TableError> {
    let io = |source| TableError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if metadata.is_dir() {
        return Err(io(std::io::Error::other(
            "is a directory, expected a CSV file",
        )));
    }
    let stream = !metadata.is_file();
    let bounded = Bounded {
        inner: file,
        left: if stream {
            MAX_STREAM_BYTES
        } else {
            metadata.len()
        },
        stream,
        line: 0,
        line_bytes: 0,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(bounded));
    let malformed = |err: csv::Error| match err.kind() {
        csv::ErrorKind::Io(_) => {
            let csv::ErrorKind::Io(source) = err.into_kind() else {
                unreachable!("matched above")
            };
            io(source)
        }
        _ => TableError::Malformed {
            path: path.to_path_buf(),
            line: err.position().map_or(0, |p| p.line()),
            message: err.to_string(),
        },
    };
    let header: Vec<String> = reader
        .headers()
        .map_err(malformed)?
        .iter()
        .map(str::to_owned)
        .collect();
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(TableError::Empty {
            path: path.to_path_buf(),
        });
    }
    for (index, name) in header.iter().enumerate() {
        if header[..index].contains(name) {
            return Err(TableError::DuplicateColumn {
                path: path.to_path_buf(),
                name: name.clone(),
            });
        }
    }
    let mut values = Vec::new();
    let mut rows = 0;
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(malformed)? {
        let line = record.position().map_or(0, |p| p.line());
        // A blank line reads as one empty field; skip it rather than call it ragged.
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if record.len() != header.len() {
            return Err(TableError::Ragged {
                path: path.to_path_buf(),
                line,
                expected: header.len(),
                found: record.len(),
            });
        }
        for (column, cell) in record.iter().enumerate() {
            let value: f64 = cell.parse().map_err(|_| TableError::NotANumber {
                path: path.to_path_buf(),
                line,
                column: column + 1,
                name: header[column].clone(),
                value: quoted(cell),
            })?;
            if !value.is_finite() {
                return Err(TableError::NotFinite {
                    path: path.to_path_buf(),
                    line,
                    column: column + 1,
                    name: header[column].clone(),
                    value: quoted(cell),
                });
            }
            values.push(value);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(TableError::NoRows {
            path: path.to_path_buf(),
        });
    }
    Ok(Cells {
        header,
        values,
        rows,
    })
}

impl Table {
    /// Reads a training file. `targets` names the target columns; empty means the last column.
    pub fn read(path: &Path, targets: &[String]) -> Result<Self, TableError> {
        let cells = read_cells(path)?;
        let targets: Vec<String> = if targets.is_empty() {
            vec![
                cells
                    .header
                    .last()
                    .expect("a header is never empty")
                    .clone(),
            ]
        } else {
            targets.to_vec()
        };
        let mut target_columns = Vec::with_capacity(targets.len());
        for name in &targets {
            match cells.header.iter().position(|h| h == name) {
                Some(index) => target_columns.push(index),
                None => {
                    return Err(TableError::MissingColumn {
                        path: path.to_path_buf(),
                        name: name.clone(),
                        columns: cells.header.join(", "),
                    });
                }
            }
        }
        let feature_columns: Vec<usize> = (0..cells.header.len())
            .filter(|c| !target_columns.contains(c))
            .collect();
        if feature_columns.is_empty() {
            return Err(TableError::NoFeatures {
                path: path.to_path_buf(),
                columns: cells.header.join(", "),
            });
        }
        Ok(Self::select(
            path,
            &cells,
            &feature_columns,
            &target_columns,
        ))
    }

    /// Reads a test file with the same columns as `training` (in any order).
    pub fn read_like(path: &Path, training: &Table) -> Result<Self, TableError> {
        let cells = read_cells(path)?;
        let find = |name: &String| cells.header.iter().position(|h| h == name);
        let targets: Option<Vec<usize>> = training.target_names.iter().map(find).collect();
        let Some(target_columns) = targets else {
            let missing = training
                .target_names
                .iter()
                .find(|name| find(name).is_none())
                .expect("one is missing");
            return Err(TableError::MissingColumn {
                path: path.to_path_buf(),
                name: missing.clone(),
                columns: cells.header.join(", "),
            });
        };
        let found_features: Vec<&String> = cells
            .header
            .iter()
            .filter(|h| !training.target_names.contains(h))
            .collect();
        let features: Option<Vec<usize>> = training.feature_names.iter().map(find).collect();
        match features {
            Some(feature_columns) if found_features.len() == feature_columns.len() => Ok(
                Self::select(path, &cells, &feature_columns, &target_columns),
            ),
            _ => Err(TableError::ColumnsDiffer {
                path: path.to_path_buf(),
                expected: training.feature_names.len(),
                expected_names: training.feature_names.join(", "),
                found: found_features.len(),
                found_names: found_features
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn select(path: &Path, cells: &Cells, features: &[usize], targets: &[usize]) -> Self {
        let width = cells.header.len();
        let pick = |columns: &[usize]| {
            Mat::from_fn(cells.rows, columns.len(), |i, j| {
                cells.values[i * width + columns[j]]
            })
        };
        Self {
            x: pick(features),
            y: pick(targets),
            feature_names: features.iter().map(|&c| cells.header[c].clone()).collect(),
            target_names: targets.iter().map(|&c| cells.header[c].clone()).collect(),
            source: path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut file = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        file
    }

    fn error(contents: &str, targets: &[&str]) -> String {
        let f = file(contents);
        let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        let message = Table::read(f.path(), &targets).unwrap_err().to_string();
        message.replace(&f.path().display().to_string(), "FILE")
    }

    #[test]
    fn reads_features_and_targets_by_name() {
        let f = file("a, b ,y,z\n1,2,3,4\n5,6,7,8\n\n9,10,11,12\n");
        let table = Table::read(f.path(), &["z".into(), "a".into()]).unwrap();
        assert_eq!(table.feature_names, ["b", "y"]);
        assert_eq!(table.target_names, ["z", "a"]);
        assert_eq!((table.x.nrows(), table.x.ncols()), (3, 2));
        assert_eq!(table.x[(2, 1)], 11.0);
        assert_eq!(table.y[(1, 0)], 8.0);
        assert_eq!(table.y[(1, 1)], 5.0);
        let last = Table::read(f.path(), &[]).unwrap();
        assert_eq!(last.target_names, ["z"]);
    }

    #[test]
    fn bad_files_name_the_file_line_and_column() {
        assert_eq!(
            error("x,y\n1,2\n3,abc\n", &[]),
            "FILE:3:2: 'abc' is not a number (column 'y')"
        );
        assert_eq!(
            error("x,y\n1,2\n3,NaN\n", &[]),
            "FILE:3:2: 'NaN' is not finite (column 'y')"
        );
        assert_eq!(
            error("x,y\n1,inf\n", &[]),
            "FILE:2:2: 'inf' is not finite (column 'y')"
        );
        assert_eq!(
            error("x,y\n1,2\n3\n", &[]),
            "FILE:3: 1 fields, but the header has 2"
        );
        assert_eq!(error("x,y\n", &[]), "FILE: no data rows after the header");
        assert_eq!(
            error("", &[]),
            "FILE: empty file, expected a header row naming the columns"
        );
        assert_eq!(
            error("x,y\n1,2\n", &["z"]),
            "FILE: no column named 'z' (columns: x, y)"
        );
        assert_eq!(
            error("x,y\n1,2\n", &["x", "y"]),
            "FILE: no feature columns: all columns (x, y) are targets"
        );
        assert_eq!(error("x,x\n1,2\n", &[]), "FILE: two columns are named 'x'");
        // A quote left open swallows the rest of the file into one cell; it is shown on one line.
        assert_eq!(
            error("x,y\n1,2\n3,\"4,5\n6,7\n", &[]),
            "FILE:3:2: '4,5\\n6,7' is not a number (column 'y')"
        );
        let long = format!("x,y\n1,{}\n", "a".repeat(100));
        assert!(error(&long, &[]).contains(&format!("'{}...'", "a".repeat(40))));
    }

    #[test]
    fn missing_files_are_named() {
        let err = Table::read(Path::new("no/such/file.csv"), &[]).unwrap_err();
        assert!(err.to_string().starts_with("no/such/file.csv: "));
    }

    #[test]
    fn test_files_must_have_the_training_columns() {
        let train = file("x1,x2,y\n1,2,3\n");
        let training = Table::read(train.path(), &[]).unwrap();
        let same = file("y,x2,x1\n30,20,10\n");
        let test = Table::read_like(same.path(), &training).unwrap();
        assert_eq!(test.x[(0, 0)], 10.0);
        assert_eq!(test.y[(0, 0)], 30.0);
        let wider = file("x1,x2,x3,y\n1,2,3,4\n");
        let err = Table::read_like(wider.path(), &training)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "has 3 feature columns (x1, x2, x3), but the training data has 2 (x1, x2)"
            ),
            "{err}"
        );
        let no_target = file("x1,x2\n1,2\n");
        let err = Table::read_like(no_target.path(), &training)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("no column named 'y' (columns: x1, x2)"),
            "{err}"
        );
    }
}
