//! [`ChainDir`]: the one place that knows a run directory's layout.

use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use crate::files::{
    CsvView, create_dir, read_json, read_jsonl, remove_temporaries, step_dir_name, step_of,
    update_rows, write_atomic, write_json,
};
use crate::metrics::{AutoAlpha, EpochMetrics, StepResult};
use crate::record::ChainRecord;
use crate::sidecar::CheckpointSidecar;
use crate::tensorboard::{self, Rows};

/// A chain's run directory:
///
/// ```text
/// chain.json                  ChainRecord: alpha, seed, steps, settings
/// metrics.csv  metrics.jsonl  one EpochMetrics row per step and epoch
/// test.csv  test.jsonl        one StepResult row per finished step
/// step_<k>/                   last.safetensors and the two best checkpoints by validation
///                             accuracy (epoch=NN-val_acc=0.xxxx.safetensors), JSON beside each
/// auto_alpha.jsonl            alpha = auto: the AutoAlpha of each step
/// probe/                      alpha = auto: the alpha = 0 students, laid out the same way
/// tensorboard/                TensorBoard event files of the rows: step_<k>/ (x = epoch) and
///                             chain/ (x = step), see the tensorboard module
/// .lock                       held by the process training the chain
/// ```
///
/// Every file is written atomically; the JSON-lines files are read strictly (a damaged line is an
/// error naming the file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDir {
    root: PathBuf,
}

/// The lock on a run directory ([`ChainDir::lock`]), released when dropped or when the process
/// ends, however it ends.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl ChainDir {
    /// The run directory at `root` (nothing is created until something is written).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ChainDir { root: root.into() }
    }

    /// A new run directory `<parent>/<name>`, created exclusively: when that exists (another run
    /// started in the same second, say), `<name>-2`, `<name>-3`, ... Never an existing directory,
    /// even with processes racing for the same name.
    pub fn create_new(parent: &Path, name: &str) -> Result<ChainDir> {
        create_dir(parent)?;
        for attempt in 1..=10_000u32 {
            let path = match attempt {
                1 => parent.join(name),
                n => parent.join(format!("{name}-{n}")),
            };
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ChainDir::new(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(TrainError::io(&path)(e)),
            }
        }
        Err(TrainError::io(parent.join(name))(std::io::Error::other(
            "10,000 run directories of this name exist already",
        )))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `chain.json`.
    pub fn record_file(&self) -> PathBuf {
        self.root.join("chain.json")
    }

    /// `metrics.jsonl`.
    pub fn metrics_file(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// `test.jsonl`.
    pub fn test_file(&self) -> PathBuf {
        self.root.join("test.jsonl")
    }

    /// `split.json`: the images of each split (`train`, `val`, `test`), each as the file it comes
    /// from (`"train"` or `"test"`), the indices of its images in that file, and the labels
    /// trained and measured on (with label noise, the noisy ones), so that another program can
    /// train on exactly the same images (`bench/chain_reference.py` does).
    pub fn split_file(&self) -> PathBuf {
        self.root.join("split.json")
    }

    /// `auto_alpha.jsonl`.
    pub fn auto_alpha_file(&self) -> PathBuf {
        self.root.join("auto_alpha.jsonl")
    }

    /// `step_<k>/`.
    pub fn step_dir(&self, step: usize) -> PathBuf {
        self.root.join(step_dir_name(step))
    }

    /// `step_<k>/last.safetensors`: the step's final-epoch model, the next step's teacher.
    pub fn last_checkpoint(&self, step: usize) -> PathBuf {
        self.step_dir(step).join("last.safetensors")
    }

    /// `step_<k>/epoch=NN-val_acc=0.xxxx.safetensors`.
    pub fn best_checkpoint(&self, step: usize, epoch: usize, val_acc: f64) -> PathBuf {
        self.step_dir(step)
            .join(format!("epoch={epoch:02}-val_acc={val_acc:.4}.safetensors"))
    }

    /// `probe/`: the `alpha = 0` students of Algorithm 1.
    pub fn probe(&self) -> ChainDir {
        ChainDir::new(self.root.join("probe"))
    }

    /// The record in `chain.json`; `None` when there is none yet.
    pub fn read_record(&self) -> Result<Option<ChainRecord>> {
        read_json(&self.record_file())
    }

    /// Checks `chain.json` against `record`, writing it when there is none (or when `record`
    /// asks for more steps): a chain with a finished step trained with another alpha, seed or
    /// settings is refused with the differences named. A chain with no finished step (nothing
    /// trained yet, or a first attempt that failed before its first step finished) takes the new
    /// record, and what the attempt left is dropped. Creates the directory.
    pub fn claim(&self, record: &ChainRecord) -> Result<()> {
        if let Some(existing) = self.read_record()? {
            let differences = existing.differences(record);
            if differences.is_empty() {
                if existing.steps >= record.steps {
                    return Ok(());
                }
            } else if self.read_tests()?.is_empty() {
                tracing::info!(
                    dir = %self.root.display(),
                    "no step was finished with the earlier settings ({}); starting afresh",
                    differences
                );
                self.truncate(0)?;
                self.probe().truncate(0)?;
                self.update_auto_alpha(0, None)?;
            } else {
                return Err(TrainError::OtherSettings {
                    dir: self.root.clone(),
                    differences,
                });
            }
        }
        create_dir(&self.root)?;
        write_json(&self.record_file(), record)
    }

    /// Takes the directory's lock (creating the directory), or fails with
    /// [`TrainError::Locked`] when another process holds it.
    pub fn lock(&self) -> Result<DirLock> {
        create_dir(&self.root)?;
        let path = self.root.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(TrainError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {
                // Holding the lock, every temporary file here is a killed writer's.
                for dir in self.own_directories()? {
                    let removed = remove_temporaries(&dir)?;
                    if removed > 0 {
                        tracing::info!(dir = %dir.display(), removed, "removed temporary files of an interrupted write");
                    }
                }
                Ok(DirLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(TrainError::Locked {
                dir: self.root.clone(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(TrainError::io(&path)(e)),
        }
    }

    /// The directories this run writes: itself, `step_<k>/`, `tensorboard/` and its runs, and the
    /// same in `probe/`.
    fn own_directories(&self) -> Result<Vec<PathBuf>> {
        let mut dirs = vec![self.root.clone()];
        let probe = self.probe();
        for base in [self.tensorboard_dir(), probe.tensorboard_dir()] {
            let entries = match std::fs::read_dir(&base) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(TrainError::io(&base)(e)),
            };
            dirs.push(base.clone());
            for entry in entries {
                let path = entry.map_err(TrainError::io(&base))?.path();
                if path.is_dir() {
                    dirs.push(path);
                }
            }
        }
        for base in [self.root.clone(), self.root.join("probe")] {
            let entries = match std::fs::read_dir(&base) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(TrainError::io(&base)(e)),
            };
            for entry in entries {
                let path = entry.map_err(TrainError::io(&base))?.path();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if path.is_dir() && name.is_some_and(|n| n.starts_with("step_") || n == "probe") {
                    dirs.push(path);
                }
            }
        }
        Ok(dirs)
    }

    /// Every row of `metrics.jsonl`.
    pub fn read_metrics(&self) -> Result<Vec<EpochMetrics>> {
        read_jsonl(&self.metrics_file())
    }

    /// Every row of `test.jsonl`, by step.
    pub fn read_tests(&self) -> Result<Vec<StepResult>> {
        let mut rows: Vec<StepResult> = read_jsonl(&self.test_file())?;
        rows.sort_by_key(|r| r.step);
        Ok(rows)
    }

    /// Every row of `auto_alpha.jsonl`.
    pub fn read_auto_alpha(&self) -> Result<Vec<AutoAlpha>> {
        read_jsonl(&self.auto_alpha_file())
    }

    /// How many steps are finished from step 0 on without a gap: the first step a resumed chain
    /// trains.
    pub fn finished_steps(&self) -> Result<usize> {
        let tests = self.read_tests()?;
        Ok((0..)
            .find(|step| !tests.iter().any(|r| r.step == *step))
            .expect("a gap"))
    }

    /// The TensorBoard event files of the rows (`tensorboard --logdir` this directory, or the
    /// run directory to see the probes' too).
    pub fn tensorboard_dir(&self) -> PathBuf {
        self.root.join("tensorboard")
    }

    /// The run directory of a checkpoint of step `step` in its `step_<step>/`, if it lies in one.
    pub fn of_checkpoint(checkpoint: &Path, step: usize) -> Option<ChainDir> {
        let step_dir = checkpoint.parent()?;
        let in_step = step_dir
            .file_name()
            .is_some_and(|n| *n == *step_dir_name(step).as_str());
        in_step.then(|| ChainDir::new(step_dir.parent().unwrap_or(Path::new("."))))
    }

    /// Whether `dir` is a run directory (it has a `chain.json`).
    pub fn is_chain(dir: &Path) -> bool {
        ChainDir::new(dir).record_file().is_file()
    }

    /// Drops every row of step `first` or later from `metrics.*` and `test.*`; the rows kept
    /// stay byte for byte (files are rewritten only when something is dropped).
    pub(crate) fn truncate(&self, first: usize) -> Result<()> {
        update_rows(
            &self.metrics_file(),
            Some(self.metrics_csv()),
            |m: &EpochMetrics| m.step < first,
            &[],
        )?;
        update_rows(
            &self.test_file(),
            Some(self.test_csv()),
            |r: &StepResult| r.step < first,
            &[],
        )?;
        self.sync_tensorboard()
    }

    fn metrics_csv(&self) -> CsvView<EpochMetrics> {
        CsvView {
            path: self.root.join("metrics.csv"),
            header: &EpochMetrics::CSV_HEADER,
            cells: EpochMetrics::csv_cells,
        }
    }

    fn test_csv(&self) -> CsvView<StepResult> {
        CsvView {
            path: self.root.join("test.csv"),
            header: &StepResult::CSV_HEADER,
            cells: StepResult::csv_cells,
        }
    }

    /// Records in the sidecar of `step`'s last checkpoint that the step finished (its test row
    /// is written): from now on it is a teacher ([`crate::Chain::load_teacher`]).
    pub(crate) fn mark_finished(&self, step: usize) -> Result<()> {
        let path = self.last_checkpoint(step).with_extension("json");
        let Some(mut sidecar) = CheckpointSidecar::read(&path)? else {
            return Ok(());
        };
        sidecar.finished = Some(true);
        sidecar.write(&path)
    }

    /// Sets `finished` in the `last.json` of every step with a test row that lacks it (a kill
    /// between the row and the flag).
    pub(crate) fn mark_finished_steps(&self) -> Result<()> {
        for row in self.read_tests()? {
            let path = self.last_checkpoint(row.step).with_extension("json");
            let flagged = CheckpointSidecar::read(&path)?
                .is_none_or(|sidecar| sidecar.finished == Some(true));
            if !flagged {
                self.mark_finished(row.step)?;
            }
        }
        Ok(())
    }

    /// Removes the checkpoints of every step from `first` on, and their directories when empty.
    pub(crate) fn clear_steps_from(&self, first: usize) -> Result<()> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(TrainError::io(&self.root)(e)),
        };
        for entry in entries {
            let path = entry.map_err(TrainError::io(&self.root))?.path();
            if let Some(step) = step_of(&path)
                && step >= first
                && path.is_dir()
            {
                self.clear_step(step)?;
                // Only when empty: a user's own files stay.
                let _ = std::fs::remove_dir(&path);
            }
        }
        Ok(())
    }

    /// Removes the checkpoints of step `step` (a step about to be trained again) and makes its
    /// directory.
    pub(crate) fn clear_step(&self, step: usize) -> Result<()> {
        let dir = self.step_dir(step);
        create_dir(&dir)?;
        for entry in std::fs::read_dir(&dir).map_err(TrainError::io(&dir))? {
            let path = entry.map_err(TrainError::io(&dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with("epoch=") || n.starts_with("last.")) {
                std::fs::remove_file(&path).map_err(TrainError::io(&path))?;
            }
        }
        Ok(())
    }

    /// Appends a row to `metrics.jsonl` and `metrics.csv` (rows already there stay byte for
    /// byte).
    pub(crate) fn append_metrics(&self, row: &EpochMetrics) -> Result<()> {
        update_rows(
            &self.metrics_file(),
            Some(self.metrics_csv()),
            |_| true,
            std::slice::from_ref(row),
        )?;
        self.sync_tensorboard()
    }

    /// Appends a row to `test.jsonl` and `test.csv`.
    pub(crate) fn append_test(&self, row: &StepResult) -> Result<()> {
        update_rows(
            &self.test_file(),
            Some(self.test_csv()),
            |_| true,
            std::slice::from_ref(row),
        )?;
        self.sync_tensorboard()
    }

    /// Keeps the rows of `auto_alpha.jsonl` before step `first`, and appends `row`.
    pub(crate) fn update_auto_alpha(&self, first: usize, row: Option<&AutoAlpha>) -> Result<()> {
        update_rows(
            &self.auto_alpha_file(),
            None,
            |r: &AutoAlpha| r.step < first,
            row.map_or(&[][..], std::slice::from_ref),
        )
        .map(drop)
    }

    /// Copies the finished `step` of `source` into this directory instead of training it again,
    /// where the caller knows it is the same network bit for bit (step 0 of a chain with the
    /// same seed and settings; the `alpha = 0` chain's step 1 as an `auto` chain's probe): its
    /// checkpoints (their JSON sidecars say where they came from), its rows of `metrics.*` and,
    /// last, of `test.*`, with a wall time of 0; rows of this directory from `step` on are
    /// replaced. A copy interrupted halfway is made again.
    pub fn adopt_step(&self, source: &ChainDir, step: usize) -> Result<()> {
        if !source.read_tests()?.iter().any(|r| r.step == step) {
            return Err(TrainError::CopySource {
                dir: source.path().to_path_buf(),
                step,
                why: "its step is not finished",
            });
        }
        let (from, to) = (source.step_dir(step), self.step_dir(step));
        self.clear_step(step)?;
        let entries = std::fs::read_dir(&from).map_err(TrainError::io(&from))?;
        for entry in entries {
            let path = entry.map_err(TrainError::io(&from))?.path();
            let name = path.file_name().expect("a file name").to_owned();
            // Temporary files of an interrupted write start with a dot.
            if name.to_string_lossy().starts_with('.') || !path.is_file() {
                continue;
            }
            if path.extension().is_some_and(|e| e == "json") {
                let mut sidecar = CheckpointSidecar::read(&path)?
                    .ok_or_else(|| TrainError::io(&path)(std::io::ErrorKind::NotFound.into()))?;
                sidecar.copied_from = Some(path.display().to_string());
                sidecar.write(&to.join(&name))?;
            } else {
                let bytes = std::fs::read(&path).map_err(TrainError::io(&path))?;
                write_atomic(&to.join(&name), &bytes)?;
            }
        }
        let metrics: Vec<EpochMetrics> = source
            .read_metrics()?
            .into_iter()
            .filter(|m| m.step == step)
            .collect();
        update_rows(
            &self.metrics_file(),
            Some(self.metrics_csv()),
            |m: &EpochMetrics| m.step < step,
            &metrics,
        )?;
        let tests: Vec<StepResult> = source
            .read_tests()?
            .into_iter()
            .filter(|r| r.step == step)
            .map(|r| StepResult {
                last_checkpoint: self.last_checkpoint(step),
                seconds: 0.0,
                ..r
            })
            .collect();
        update_rows(
            &self.test_file(),
            Some(self.test_csv()),
            |r: &StepResult| r.step < step,
            &tests,
        )?;
        // The event files of an earlier attempt may share the copied rows' names.
        self.rewrite_tensorboard()?;
        self.mark_finished(step)
    }

    /// Makes the event files under `tensorboard/` match the rows ([`crate::tensorboard`]).
    fn sync_tensorboard(&self) -> Result<()> {
        self.update_tensorboard(tensorboard::sync)
    }

    /// Every event file under `tensorboard/` written again from the rows.
    fn rewrite_tensorboard(&self) -> Result<()> {
        self.update_tensorboard(tensorboard::rewrite)
    }

    /// `update` (sync or rewrite) on `tensorboard/` with this directory's rows.
    fn update_tensorboard(&self, update: fn(&Path, Rows<'_>) -> Result<()>) -> Result<()> {
        let (metrics, tests, auto) = (
            self.read_metrics()?,
            self.read_tests()?,
            self.read_auto_alpha()?,
        );
        update(
            &self.tensorboard_dir(),
            Rows {
                metrics: &metrics,
                tests: &tests,
                auto: &auto,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_run_directories_are_never_shared() {
        let parent = tempfile::tempdir().unwrap();
        let dirs: Vec<ChainDir> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| ChainDir::create_new(parent.path(), "run").unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut names: Vec<String> = dirs
            .iter()
            .map(|d| d.path().file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["run", "run-2", "run-3", "run-4"]);
    }
}
