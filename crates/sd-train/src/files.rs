//! Files that are never half written, and run files read strictly.
//!
//! Every file of a run directory (and every report, table and figure of `sd-experiments`) goes to
//! a temporary file in the target's directory, is synced, and is renamed over the target: a
//! reader, or the next run after a kill or a full disk, sees the old file or the new one, never
//! part of one.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, TrainError};

/// Lets `fill` write a temporary file in `path`'s directory (its name ends in `path`'s
/// extension, for writers that choose a format by extension; `file.path()` for writers that
/// take a path), syncs it and renames it to `path`. On error the temporary file is removed and
/// `path` is untouched.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut tempfile::NamedTempFile) -> std::io::Result<()>,
) -> Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut file = tempfile::Builder::new()
        .prefix(".sd-tmp-")
        .suffix(&suffix)
        .tempfile_in(directory)
        .map_err(TrainError::io(directory))?;
    let io = TrainError::io(path);
    // Temporary files are created private (0600); what we publish is an ordinary file.
    #[cfg(unix)]
    let published = {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
    };
    #[cfg(not(unix))]
    let published = Ok(());
    published
        .and_then(|()| fill(&mut file))
        .and_then(|()| file.as_file_mut().sync_all())
        .and_then(|()| file.persist(path).map(drop).map_err(|e| e.error))
        .map_err(io)
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Writes a CSV file atomically through the `csv` crate: `header`, then one record per row.
/// Cells are given as text, so numbers keep the form their writer chose.
pub fn write_csv<R, I>(path: &Path, header: &[&str], rows: R) -> Result<()>
where
    R: IntoIterator<Item = I>,
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| TrainError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    writer.write_record(header).map_err(csv_error)?;
    for row in rows {
        writer.write_record(row).map_err(csv_error)?;
    }
    let bytes = writer.into_inner().map_err(|e| TrainError::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    write_atomic(path, &bytes)
}

/// Reads a JSON-lines file: one value per line, blank lines skipped. A missing file holds no
/// rows; a line that does not parse is an error naming the file and the line, never skipped.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(path)(e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|source| TrainError::Json {
                path: path.to_path_buf(),
                line: index + 1,
                source,
            })
        })
        .collect()
}

/// Writes `rows` as JSON lines, atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut text = String::new();
    for row in rows {
        text += &serde_json::to_string(row).map_err(unwritable(path))?;
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

fn unwritable(path: &Path) -> impl FnOnce(serde_json::Error) -> TrainError + '_ {
    move |source| TrainError::Unwritable {
        path: path.to_path_buf(),
        source,
    }
}

/// `value` as a JSON value, for a file at `path` (named in the error of a value JSON cannot hold,
/// such as a path that is not UTF-8).
pub fn to_json<T: Serialize>(path: &Path, value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(unwritable(path))
}

/// Reads one JSON file; `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::io(path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            line: source.line(),
            source,
        })
}

/// Writes `value` as pretty JSON with a final newline, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(unwritable(path))? + "\n";
    write_atomic(path, text.as_bytes())
}

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.csv");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let failed = write_atomic_with(&path, |_| Err(std::io::Error::other("disk on fire")));
        let message = failed.unwrap_err().to_string();
        assert!(
            message.contains("table.csv") && message.contains("disk on fire"),
            "{message}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }

    #[test]
    fn csv_cells_keep_their_text_and_are_quoted_where_needed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        let rows = [vec![
            "1".to_string(),
            "0.12250436842441559".into(),
            "a,b".into(),
        ]];
        write_csv(&path, &["step", "loss", "note"], rows).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "step,loss,note\n1,0.12250436842441559,\"a,b\"\n"
        );
    }

    #[test]
    fn a_damaged_line_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.jsonl");
        assert!(read_jsonl::<serde_json::Value>(&path).unwrap().is_empty());
        std::fs::write(&path, "{\"step\": 0}\n\n{\"step\": 1}\n{\"st").unwrap();
        let err = read_jsonl::<serde_json::Value>(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.jsonl, line 4"), "{err}");
        std::fs::write(&path, "{\"step\": 0}\n\n{\"step\": 1}\n").unwrap();
        assert_eq!(read_jsonl::<serde_json::Value>(&path).unwrap().len(), 2);
    }
}
