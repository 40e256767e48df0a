//! Files that are never half written, and run files read strictly.
//!
//! Every file of a run directory (and every report, table and figure of `sd-experiments`) goes to
//! a temporary file in the target's directory, is synced, and is renamed over the target: a
//! reader, or the next run after a kill or a full disk, sees the old file or the new one, never
//! part of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, TrainError};

/// The ending of every temporary file: never a data file's extension, so that
/// `find -name '*.safetensors'` (or `*.png`, `*.csv`) never picks up half a file.
pub const TEMPORARY_SUFFIX: &str = ".sd-tmp";

/// Lets `fill` write a temporary file in `path`'s directory (`.<name>.<random>.sd-tmp`: hidden,
/// and not ending in a data file's extension; `file.path()` for writers that take a path), syncs
/// it and renames it to `path`. On error the temporary file is removed and `path` is untouched;
/// a temporary file left by a killed process is removed by [`remove_temporaries`].
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut tempfile::NamedTempFile) -> std::io::Result<()>,
) -> Result<()> {
    publish_through(temporary_for(path, true)?, path, fill)
}

/// [`write_atomic`] through a temporary whose name does not contain `path`'s
/// (`.sd-tmp.<random>.sd-tmp`): for files whose readers take every name with a pattern in it
/// (TensorBoard reads any file named `*tfevents*`, a half-written temporary included).
pub fn write_atomic_anonymous(path: &Path, bytes: &[u8]) -> Result<()> {
    publish_through(temporary_for(path, false)?, path, |file| {
        file.write_all(bytes)
    })
}

fn publish_through(
    mut file: tempfile::NamedTempFile,
    path: &Path,
    fill: impl FnOnce(&mut tempfile::NamedTempFile) -> std::io::Result<()>,
) -> Result<()> {
    let io = TrainError::io(path);
    fill(&mut file)
        .and_then(|()| file.as_file_mut().sync_all())
        .and_then(|()| file.persist(path).map(drop).map_err(|e| e.error))
        .map_err(io)
}

/// A new temporary file beside `path`, readable like an ordinary file once published; its name
/// holds `path`'s when `named`.
fn temporary_for(path: &Path, named: bool) -> Result<tempfile::NamedTempFile> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // The name, cut to 64 characters: the temporary's must stay within the system's limit.
    let name: String = match path.file_name() {
        Some(n) if named => n.to_string_lossy().chars().take(64).collect(),
        _ => TEMPORARY_SUFFIX.trim_start_matches('.').to_string(),
    };
    let file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(TEMPORARY_SUFFIX)
        .tempfile_in(directory)
        .map_err(TrainError::io(directory))?;
    // Temporary files are created private (0600); what we publish is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(TrainError::io(path))?;
    }
    Ok(file)
}

/// Writes a set of files (name in `dir`, bytes) as a whole: every file goes to a synced temporary
/// first, and only when all are written are they renamed into place (renames need no space). A
/// failure while writing (a full disk) leaves the files already in `dir` untouched, and no
/// temporary behind.
pub fn write_set(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    // Temporaries of a set a killed process was writing (an hour old: not a live writer's).
    remove_temporaries_older_than(dir, std::time::Duration::from_secs(3600))?;
    // What a rename cannot replace (a directory in the way) fails now, before anything moves.
    for (name, _) in files {
        let path = dir.join(name);
        if path.symlink_metadata().is_ok_and(|m| !m.is_file()) {
            return Err(TrainError::io(&path)(std::io::Error::other(
                "is in the way: not a regular file",
            )));
        }
    }
    let mut staged = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let path = dir.join(name);
        let mut file = temporary_for(&path, true)?;
        file.write_all(bytes)
            .and_then(|()| file.as_file_mut().sync_all())
            .map_err(TrainError::io(&path))?;
        staged.push((file, path));
    }
    staged
        .into_iter()
        .map(|(file, path)| {
            file.persist(&path)
                .map_err(|e| TrainError::io(&path)(e.error))?;
            Ok(path)
        })
        .collect()
}

/// Removes the temporary files ([`TEMPORARY_SUFFIX`]) that writers killed mid-write left in
/// `dir` (not below it); returns how many. Only for a directory whose writer holds a lock, or
/// whose writers are all finished: a live writer's temporary would go too.
pub fn remove_temporaries(dir: &Path) -> Result<usize> {
    remove_temporaries_older_than(dir, std::time::Duration::ZERO)
}

/// [`remove_temporaries`] for a directory that several processes may write at once (an
/// experiment's reports): only temporaries not touched for `age` go, since no writer takes that
/// long to write one file.
pub fn remove_temporaries_older_than(dir: &Path, age: std::time::Duration) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(TrainError::io(dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(TrainError::io(dir))?.path();
        let stale = path.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            // `.sd-tmp-*` and `.*.partial`: the names of earlier versions.
            n.ends_with(TEMPORARY_SUFFIX)
                || (n.starts_with(".sd-tmp-") || (n.starts_with('.') && n.ends_with(".partial")))
        });
        let old_enough = age.is_zero()
            || std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed >= age);
        if stale && old_enough && path.is_file() {
            std::fs::remove_file(&path).map_err(TrainError::io(&path))?;
            removed += 1;
        }
    }
    Ok(removed)
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

/// The CSV beside a JSON-lines file of rows ([`update_rows`]): its path, header, and a row's cells.
pub struct CsvView<T> {
    /// The CSV file.
    pub path: PathBuf,
    /// Its header.
    pub header: &'static [&'static str],
    /// A row's cells.
    pub cells: fn(&T) -> Vec<String>,
}

/// Updates a JSON-lines file of rows (and the CSV that mirrors it): keeps the rows for which
/// `keep` holds and appends `new`. Rows kept stay byte for byte in both files (a CSV line is kept
/// when it holds the same numbers and text as its row; one that does not, from a write cut short,
/// is written again from the row). Writes nothing when nothing changes; returns the rows now in
/// the file. A damaged line is an error naming the file and line, as in [`read_jsonl`].
pub fn update_rows<T: Serialize + DeserializeOwned + Clone>(
    jsonl: &Path,
    csv: Option<CsvView<T>>,
    keep: impl Fn(&T) -> bool,
    new: &[T],
) -> Result<Vec<T>> {
    let text = read_optional(jsonl)?.unwrap_or_default();
    // (position among the rows, the line, the row)
    let mut lines: Vec<(usize, &str, T)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(line).map_err(|source| TrainError::Json {
            path: jsonl.to_path_buf(),
            line: index + 1,
            source,
        })?;
        lines.push((lines.len(), line, row));
    }
    let before = lines.len();
    lines.retain(|(_, _, row)| keep(row));
    let complete = text.is_empty() || text.ends_with('\n');
    let old_csv = match &csv {
        Some(view) => read_optional(&view.path)?,
        None => None,
    };
    // A CSV with as many rows as the JSON lines mirrors them (missing with no rows is fine too).
    let mirrored = csv.is_none()
        || old_csv.as_ref().map_or(before == 0, |old| {
            old.lines().count() == before + 1 && old.ends_with('\n')
        });
    if lines.len() == before && new.is_empty() && complete && mirrored {
        return Ok(lines.into_iter().map(|(_, _, row)| row).collect());
    }
    if let Some(view) = &csv {
        let old = old_csv.unwrap_or_default();
        let old_lines: Vec<&str> = old.lines().skip(1).collect();
        let mut out = csv_line(&view.path, view.header.iter().map(|h| h.to_string()))?;
        // Line `i` of the old CSV mirrors the row on line `i` of the old JSON lines.
        for (position, _, row) in &lines {
            let cells = (view.cells)(row);
            match old_lines.get(*position) {
                Some(old_line) if same_cells(old_line, &cells) => {
                    out += old_line;
                    out.push('\n');
                }
                _ => out += &csv_line(&view.path, cells)?,
            }
        }
        for row in new {
            out += &csv_line(&view.path, (view.cells)(row))?;
        }
        write_atomic(&view.path, out.as_bytes())?;
    }
    let mut out = String::with_capacity(text.len());
    for (_, line, _) in &lines {
        out += line;
        out.push('\n');
    }
    for row in new {
        out += &serde_json::to_string(row).map_err(unwritable(jsonl))?;
        out.push('\n');
    }
    write_atomic(jsonl, out.as_bytes())?;
    let mut rows: Vec<T> = lines.into_iter().map(|(_, _, row)| row).collect();
    rows.extend_from_slice(new);
    Ok(rows)
}

/// A file's text; `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrainError::io(path)(e)),
    }
}

/// One CSV record with its newline, quoted where needed.
fn csv_line(path: &Path, cells: impl IntoIterator<Item = String>) -> Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let error = |e: std::io::Error| TrainError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    writer
        .write_record(cells)
        .map_err(|e| error(std::io::Error::other(e)))?;
    let bytes = writer.into_inner().map_err(|e| error(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether a CSV line holds `cells`: the same text, or the same number in other digits.
fn same_cells(line: &str, cells: &[String]) -> bool {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    let Some(Ok(record)) = reader.records().next() else {
        return false;
    };
    record.len() == cells.len()
        && record.iter().zip(cells).all(|(old, new)| {
            old == new
                || match (old.parse::<f64>(), new.parse::<f64>()) {
                    (Ok(a), Ok(b)) => a == b || (a.is_nan() && b.is_nan()),
                    _ => false,
                }
        })
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

/// `step_<k>`: the directory of step `k`'s checkpoints in a run directory, and of its epochs'
/// TensorBoard files.
pub(crate) fn step_dir_name(step: usize) -> String {
    format!("step_{step}")
}

/// `k` of a path named `step_<k>` ([`step_dir_name`]).
pub(crate) fn step_of(path: &Path) -> Option<usize> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("step_"))
        .and_then(|k| k.parse::<usize>().ok())
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

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Row {
        step: usize,
        loss: f64,
    }

    fn cells(row: &Row) -> Vec<String> {
        vec![row.step.to_string(), row.loss.to_string()]
    }

    #[test]
    fn rows_already_written_stay_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (jsonl, csv) = (dir.path().join("m.jsonl"), dir.path().join("m.csv"));
        let view = || CsvView {
            path: csv.clone(),
            header: &["step", "loss"],
            cells,
        };
        // Written by an older writer: other digits for the same numbers, other spacing.
        std::fs::write(
            &jsonl,
            "{\"step\": 0, \"loss\": 0.12250436842441559}\n{\"step\":1,\"loss\":2.5}\n",
        )
        .unwrap();
        std::fs::write(&csv, "step,loss\n0,0.12250436842441559\n1,2.50\n").unwrap();
        let row = Row { step: 2, loss: 0.5 };
        let rows = update_rows(
            &jsonl,
            Some(view()),
            |_: &Row| true,
            std::slice::from_ref(&row),
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            std::fs::read_to_string(&jsonl).unwrap(),
            "{\"step\": 0, \"loss\": 0.12250436842441559}\n{\"step\":1,\"loss\":2.5}\n{\"step\":2,\"loss\":0.5}\n"
        );
        assert_eq!(
            std::fs::read_to_string(&csv).unwrap(),
            "step,loss\n0,0.12250436842441559\n1,2.50\n2,0.5\n"
        );
        // Dropping rows keeps the others as they were.
        update_rows(&jsonl, Some(view()), |r: &Row| r.step < 2, &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&csv).unwrap(),
            "step,loss\n0,0.12250436842441559\n1,2.50\n"
        );
        // A CSV line that does not mirror its row (a write cut short) is written again from it;
        // a CSV with rows its JSON lines lack is repaired even when nothing else changes.
        std::fs::write(&csv, "step,loss\n0,0.12250436842441559\n1,9\n7,7\n").unwrap();
        update_rows(&jsonl, Some(view()), |_: &Row| true, &[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&csv).unwrap(),
            "step,loss\n0,0.12250436842441559\n1,2.5\n"
        );
        // Nothing to change: nothing is written.
        let modified = std::fs::metadata(&jsonl).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        update_rows(&jsonl, Some(view()), |_: &Row| true, &[]).unwrap();
        assert_eq!(
            std::fs::metadata(&jsonl).unwrap().modified().unwrap(),
            modified
        );
    }

    #[test]
    fn temporaries_never_look_like_data_and_stale_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        write_atomic_with(&path, |file| {
            let name = file
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(
                name.starts_with(".last.safetensors.") && name.ends_with(".sd-tmp"),
                "{name}"
            );
            file.write_all(b"weights")
        })
        .unwrap();
        for stale in [
            ".last.safetensors.x1.sd-tmp",
            ".sd-tmp-abc.safetensors",
            ".m.jsonl.7.partial",
        ] {
            std::fs::write(dir.path().join(stale), b"half").unwrap();
        }
        std::fs::write(dir.path().join("keep.partial"), b"a user's file").unwrap();
        assert_eq!(remove_temporaries(dir.path()).unwrap(), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["keep.partial", "last.safetensors"]);
    }

    #[test]
    fn a_set_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let set = |tag: &str| -> Vec<(String, Vec<u8>)> {
            ["a.png", "b.png", "c.svg"]
                .iter()
                .map(|n| (n.to_string(), format!("{tag} {n}").into_bytes()))
                .collect()
        };
        write_set(dir.path(), &set("old")).unwrap();
        std::fs::remove_file(dir.path().join("c.svg")).unwrap();
        std::fs::create_dir(dir.path().join("c.svg")).unwrap();
        let err = write_set(dir.path(), &set("new")).unwrap_err().to_string();
        assert!(err.contains("c.svg") && err.contains("in the way"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("a.png")).unwrap(),
            b"old a.png"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
