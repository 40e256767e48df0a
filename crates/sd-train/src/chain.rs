//! The self-distillation chain: step 0 fits the ground truth, step `k >= 1` trains a fresh
//! network on `alpha` ground truth + `(1 - alpha)` its frozen predecessor's softmax.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, ModuleT};
use candle_nn::Optimizer;
use sd_alpha::Alpha;
use sd_data::{
    BatchLoader, Dataset, LoaderConfig, Shuffle, SplitConfig, Splits, Subset, Transform,
};
use sd_resnet::optim::{Adam, AdamConfig};
use sd_resnet::{Resnet, ResnetConfig, loss};
use serde::Serialize;

use crate::dir::ChainDir;
use crate::error::{Result, TrainError};
use crate::evaluate::{Feed, correct_predictions, evaluate, one_hot, predict_proba};
use crate::files::{create_dir, write_atomic_with, write_json};
use crate::metrics::{AutoAlpha, EpochMetrics, StepResult};
use crate::record::{ChainRecord, TeacherMode};
use crate::sidecar::CheckpointSidecar;

/// `split.json`: the images of each split, for other programs to train on exactly the same ones
/// (`bench/chain_reference.py` does). Fields in alphabetical order, as the file has always had
/// them.
#[derive(Debug, Serialize)]
struct SplitRecord {
    test: SplitPart,
    train: SplitPart,
    val: SplitPart,
}

/// One split: which file of the data set its images come from (`train` or `test`), their
/// indices in it, and their labels (after any label noise).
#[derive(Debug, Serialize)]
struct SplitPart {
    file: &'static str,
    indices: Vec<u32>,
    labels: Vec<u8>,
}

/// The data of a chain: its three splits, their transforms, and the shape the network takes.
#[derive(Debug, Clone)]
pub struct ChainData {
    /// Training images.
    pub train: Subset,
    /// Validation images: the best checkpoints are chosen on them, and Algorithm 1's alpha.
    pub val: Subset,
    /// Test images (reported).
    pub test: Subset,
    /// Augmentation for training.
    pub train_transform: Transform,
    /// Transform for evaluation.
    pub eval_transform: Transform,
    /// Channels of the images the network sees.
    pub channels: usize,
    /// Classes.
    pub classes: usize,
    /// Training-set labels the split's label noise changed (0 without noise).
    pub labels_changed: usize,
}

impl ChainData {
    /// The splits of `dataset` as `split` says, with the original's augmentation for training
    /// and the data set's normalization. Grey 28 x 28 images are zero-padded to 32 x 32 (centred),
    /// the size the networks were designed for.
    pub fn new(dataset: &Dataset, split: &SplitConfig) -> Result<Self> {
        let splits = Splits::new(dataset, split)?;
        let shape = dataset.shape();
        let pad = (shape.height < 32 || shape.width < 32).then_some((32, 32));
        let normalization = dataset.normalization();
        Ok(ChainData {
            labels_changed: splits.labels_changed,
            train: splits.train,
            val: splits.val,
            test: splits.test,
            train_transform: Transform::train(normalization.clone()).with_geometry(pad, None),
            eval_transform: Transform::test(normalization).with_geometry(pad, None),
            channels: shape.channels,
            classes: dataset.classes(),
        })
    }
}

/// Where training is within an epoch, after a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchProgress {
    /// Distillation step.
    pub step: usize,
    /// Epoch within the step.
    pub epoch: usize,
    /// Batches done in this epoch.
    pub done: usize,
    /// Batches in the epoch.
    pub total: usize,
    /// Mean training loss so far this epoch.
    pub loss: f64,
    /// Training accuracy so far this epoch.
    pub acc: f64,
    /// Training images per second so far this epoch.
    pub images_per_s: f64,
}

/// A network about to be trained.
#[derive(Debug, Clone, Copy)]
pub struct StepStart {
    /// Its step.
    pub step: usize,
    /// The chain's steps, step 0 included.
    pub steps: usize,
    /// Its ground-truth weight.
    pub alpha: f64,
    /// Whether it is Algorithm 1's `alpha = 0` probe rather than the chain's student.
    pub probe: bool,
}

/// What a chain reports as it goes (a progress bar, logs). Every method does nothing by default.
pub trait Observer {
    /// Before a network is trained.
    fn step_started(&mut self, _start: &StepStart) {}
    /// After each training batch.
    fn batch(&mut self, _progress: &BatchProgress) {}
    /// After each epoch.
    fn epoch(&mut self, _metrics: &EpochMetrics) {}
    /// After each step's test evaluation.
    fn step(&mut self, _result: &StepResult) {}
    /// When step 0 was copied from another chain instead of trained.
    fn first_fit_copied(&mut self, _from: &Path) {}
    /// When Algorithm 1's probe of `step` was copied from the `alpha = 0` chain's `step`.
    fn probe_copied(&mut self, _step: usize, _from: &Path) {}
    /// When Algorithm 1 has chosen a step's alpha.
    fn alpha_chosen(&mut self, _row: &AutoAlpha) {}
}

/// An observer that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;
impl Observer for Silent {}

/// Derives a step's seed from the chain's seed (SplitMix64 of both), so steps differ and a
/// resumed chain's step `k` equals the uninterrupted chain's.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where a chain starts ([`Chain::run`]).
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// From what the run directory holds: finished steps (those with a row in `test.jsonl`,
    /// from step 0 on without a gap) are kept, and training starts at the first unfinished one,
    /// from its teacher's checkpoint. A new directory starts at step 0.
    Resume,
    /// As [`Start::Resume`], but what sibling chains of the same seed and settings finished is
    /// copied instead of trained again ([`ChainDir::adopt_step`]).
    ResumeCopying {
        /// A chain whose step 0 is finished: an unfinished step 0 is copied from it (step 0 fits
        /// the ground truth alone, so it is the same network in every chain of a seed).
        first_fit: Option<&'a ChainDir>,
        /// For an `auto` chain, the `alpha = 0` chain of the same seed and settings: Algorithm
        /// 1's probe of step 1 is its step 1 (the same teacher, alpha and step seed), copied
        /// once that step is finished and its step-0 checkpoint is this chain's byte for byte;
        /// otherwise the probe is trained.
        probe: Option<&'a ChainDir>,
    },
    /// Train from step `step + 1` on with `teacher` as the step `step` model (loaded with
    /// [`Chain::load_network`], or any network of the chain's shape; it is only read); whatever
    /// the directory holds from step `step + 1` on is replaced.
    Teacher {
        /// The teacher's step.
        step: usize,
        /// The teacher.
        teacher: &'a Resnet,
    },
}

/// A chain to train: what it is ([`ChainRecord`]), its data, and where it runs.
///
/// Each step is written to its [`ChainDir`] as it finishes (checkpoints, then the metrics, then
/// the test row), so a chain killed at any moment continues with [`Start::Resume`]; each
/// teacher is loaded from its checkpoint even when it was just trained, so a resumed chain and an
/// uninterrupted one are the same code and give the same numbers.
#[derive(Debug, Clone)]
pub struct Chain<'a> {
    /// Alpha, seed, steps and settings.
    pub record: ChainRecord,
    /// The data.
    pub data: &'a ChainData,
    /// Where tensors live.
    pub device: Device,
    /// Threads making batches.
    pub num_workers: usize,
}

impl Chain<'_> {
    /// The network of every step: the settings' depth and stem, the data's channels and classes.
    pub fn network(&self) -> ResnetConfig {
        ResnetConfig {
            depth: self.record.settings.resnet,
            stem: self.record.settings.stem,
            in_channels: self.data.channels,
            classes: self.data.classes,
            width: self.record.settings.width,
        }
    }

    /// What `split.json` holds ([`ChainDir::split_file`]).
    fn split_record(&self) -> SplitRecord {
        let part = |subset: &Subset, file: &'static str| SplitPart {
            file,
            indices: subset.indices().to_vec(),
            labels: subset.labels(),
        };
        let val_file = if self.record.settings.val_on_test {
            "test"
        } else {
            "train"
        };
        SplitRecord {
            test: part(&self.data.test, "test"),
            train: part(&self.data.train, "train"),
            val: part(&self.data.val, val_file),
        }
    }

    /// Refuses settings that cannot train: no steps, epochs or batch size, a learning rate or
    /// regularizer weight out of range, a fixed alpha outside `[0, 1]`, an empty training or
    /// validation split.
    pub fn check(&self) -> Result<()> {
        let settings = &self.record.settings;
        for (what, value) in [
            ("steps", self.record.steps),
            ("epochs", settings.epochs),
            ("batch_size", settings.batch_size),
            ("width", settings.width),
        ] {
            if value == 0 {
                return Err(TrainError::Zero { what });
            }
        }
        if !(settings.lr.is_finite() && settings.lr > 0.0) {
            return Err(TrainError::Rate {
                what: "lr",
                requirement: "> 0",
                value: settings.lr,
            });
        }
        if !(settings.reg_coef.is_finite() && settings.reg_coef >= 0.0) {
            return Err(TrainError::Rate {
                what: "reg_coef",
                requirement: ">= 0",
                value: settings.reg_coef,
            });
        }
        if !(0.0..1.0).contains(&settings.label_noise) {
            return Err(TrainError::Rate {
                what: "label_noise",
                requirement: "in [0, 1)",
                value: settings.label_noise,
            });
        }
        if let Alpha::Fixed(alpha) = self.record.alpha
            && !(0.0..=1.0).contains(&alpha)
        {
            return Err(TrainError::Alpha { alpha });
        }
        if self.data.train.is_empty() {
            return Err(TrainError::EmptySplit {
                split: "training",
                why: "there is nothing to train on",
            });
        }
        if self.data.val.is_empty() {
            return Err(TrainError::EmptySplit {
                split: "validation",
                why: "each step's best model is chosen on it (hold out some training images, or \
                      validate on the test set)",
            });
        }
        Ok(())
    }

    /// Trains the chain in `dir` from `start` to its last step; returns the results of the
    /// steps trained now (a copied first fit is not among them).
    ///
    /// Before anything is trained: the settings are checked, the directory's lock taken
    /// ([`TrainError::Locked`] when another process holds it), `chain.json` compared with the
    /// record (a directory trained with other settings is refused), and what the directory holds
    /// from the first step to train on (rows, and probes whose teacher may change) dropped, so
    /// that a run killed at any moment after this leaves nothing stale behind.
    pub fn run(
        &self,
        dir: &ChainDir,
        start: Start<'_>,
        observer: &mut dyn Observer,
    ) -> Result<Vec<StepResult>> {
        self.check()?;
        let mut first = match start {
            Start::Teacher { step, .. } => step
                .checked_add(1)
                .ok_or(TrainError::TeacherStep { step })?,
            _ => 0,
        };
        let _lock = dir.lock()?;
        dir.claim(&self.record)?;
        // The same settings and seed give the same split: rewriting it changes nothing.
        write_json(&dir.split_file(), &self.split_record())?;
        if !matches!(start, Start::Teacher { .. }) {
            first = dir.finished_steps()?;
        }
        if let Start::ResumeCopying {
            first_fit: Some(source),
            ..
        } = start
            && first == 0
        {
            match source.read_record()? {
                Some(other)
                    if other.seed == self.record.seed && other.settings == self.record.settings => {
                }
                _ => {
                    return Err(TrainError::CopySource {
                        dir: source.path().to_path_buf(),
                        step: 0,
                        why: "its seed or settings are not this chain's",
                    });
                }
            }
            dir.adopt_step(source, 0)?;
            observer.first_fit_copied(source.path());
            first = 1;
        }
        let auto = self.record.alpha.is_auto();
        if auto && first >= 1 && first < self.record.steps && !dir.last_checkpoint(0).is_file() {
            return Err(TrainError::MissingFirstFit {
                path: dir.last_checkpoint(0),
            });
        }
        // A probe of step `first` is kept on a resume (its teacher, step `first - 1`, is
        // finished); from a new teacher it may be another network's student.
        let probes_kept = match start {
            Start::Teacher { .. } => first,
            _ => first + 1,
        };
        dir.truncate(first)?;
        dir.probe().truncate(probes_kept)?;
        // Checkpoints go with their rows: nothing of a step without its row may pass for it.
        dir.clear_steps_from(first)?;
        dir.probe().clear_steps_from(probes_kept)?;
        dir.mark_finished_steps()?;
        dir.update_auto_alpha(first, None)?;
        let mut first_fit = None;
        let probe_source = match start {
            Start::ResumeCopying { probe, .. } => probe,
            _ => None,
        };
        let mut trained = Vec::new();
        for step in first..self.record.steps {
            let loaded;
            let teacher = match start {
                _ if step == 0 => None,
                Start::Teacher { step: k, teacher } if step == k + 1 => Some(teacher),
                _ => {
                    loaded = self.teacher_in(dir, step)?;
                    Some(&loaded)
                }
            };
            let alpha = match (step, self.record.alpha) {
                (0, _) => 1.0,
                (_, Alpha::Fixed(alpha)) => alpha,
                (_, Alpha::Auto) => {
                    let teacher = teacher.expect("steps >= 1 have a teacher");
                    let row = self.auto_alpha(
                        dir,
                        step,
                        teacher,
                        &mut first_fit,
                        probe_source,
                        observer,
                    )?;
                    dir.update_auto_alpha(step, Some(&row))?;
                    observer.alpha_chosen(&row);
                    row.alpha
                }
            };
            observer.step_started(&StepStart {
                step,
                steps: self.record.steps,
                alpha,
                probe: false,
            });
            let result = self.train_step(dir, step, alpha, teacher, observer)?;
            dir.append_test(&result)?;
            dir.mark_finished(step)?;
            observer.step(&result);
            trained.push(result);
        }
        Ok(trained)
    }

    fn feed(&self) -> Feed<'_> {
        Feed {
            transform: &self.data.eval_transform,
            batch_size: self.record.settings.batch_size,
            workers: self.num_workers,
            device: &self.device,
        }
    }

    /// A checkpoint of this chain's network (a teacher for [`Start::Teacher`]), refused with
    /// [`TrainError::TeacherMismatch`] when it is another network's.
    pub fn load_network(&self, path: &Path) -> Result<Resnet> {
        use sd_resnet::ResnetError;
        let network = self.network();
        let model = Resnet::seeded(network, 0, &self.device)?;
        model.load(path).map_err(|source| match source {
            ResnetError::CheckpointMissing { .. }
            | ResnetError::CheckpointShape { .. }
            | ResnetError::CheckpointExtra { .. } => TrainError::TeacherMismatch {
                path: path.to_path_buf(),
                network: format!(
                    "{}, {} stem, width {}, {} input channels, {} classes",
                    network.depth.name(),
                    network.stem,
                    network.width,
                    network.in_channels,
                    network.classes
                ),
                source: Box::new(source),
            },
            other => other.into(),
        })?;
        for param in model.parameters().iter() {
            let finite = param
                .var
                .as_tensor()
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(TrainError::NonFiniteWeights {
                    path: path.to_path_buf(),
                    tensor: param.name.clone(),
                });
            }
        }
        Ok(model)
    }

    /// The teacher of `step`: the final checkpoint of step `step - 1` in `dir`.
    fn teacher_in(&self, dir: &ChainDir, step: usize) -> Result<Resnet> {
        let path = dir.last_checkpoint(step - 1);
        if !path.is_file() {
            return Err(TrainError::MissingTeacher { step, path });
        }
        self.load_network(&path)
    }

    /// The teacher for [`Start::Teacher`] at `step`: the checkpoint at `path`, refused
    /// ([`TrainError::NotATeacher`]) unless its JSON sidecar (written beside every checkpoint)
    /// says it is the final model of a finished step `step`; then as [`Chain::load_network`].
    pub fn load_teacher(&self, path: &Path, step: usize) -> Result<Resnet> {
        let refuse = |why: String| TrainError::NotATeacher {
            path: path.to_path_buf(),
            step,
            why,
        };
        let sidecar_path = path.with_extension("json");
        let sidecar = match CheckpointSidecar::read(&sidecar_path) {
            Ok(Some(sidecar)) => sidecar,
            Ok(None) => {
                return Err(refuse(format!(
                    "{} is missing, so nothing says which step it is or whether that step \
                     finished (sd-cli writes one beside every checkpoint)",
                    sidecar_path.display()
                )));
            }
            Err(TrainError::Json { source, .. }) if source.is_data() => {
                return Err(refuse(format!(
                    "{} does not say its step and epoch ({source})",
                    sidecar_path.display()
                )));
            }
            Err(other) => return Err(other),
        };
        let (its_step, epoch) = (sidecar.step, sidecar.epoch);
        if its_step != step {
            return Err(refuse(format!(
                "it is the checkpoint of step {its_step}, not of step {step} (give \
                 --teacher-step {its_step})"
            )));
        }
        // In a run directory its test rows say which steps finished (a kill between a step's
        // test row and its sidecar's flag, or a checkpoint of an earlier run whose rows were
        // dropped, must not decide).
        if let Some(run) = ChainDir::of_checkpoint(path, step)
            && ChainDir::is_chain(run.path())
        {
            if !run.read_tests()?.iter().any(|r| r.step == step) {
                return Err(refuse(format!(
                    "step {step} did not finish in {} (its test.jsonl has no row for it); \
                     continue that run with --resume to finish it",
                    run.path().display()
                )));
            }
            return self.load_network(path);
        }
        let epochs = sidecar.step_epochs();
        // Files from before `finished` was recorded: a final epoch's checkpoint is finished.
        let finished = match sidecar.finished {
            Some(finished) => finished,
            None => epochs.is_some_and(|epochs| epoch + 1 == epochs),
        };
        if !finished {
            return Err(refuse(format!(
                "step {step} did not finish (this checkpoint is from epoch {epoch}{}); continue \
                 its run with --resume to finish it",
                epochs.map_or(String::new(), |n| format!(" of {n}"))
            )));
        }
        self.load_network(path)
    }
    /// Algorithm 1 at `step`: trains (or finds, after a restart) the `alpha = 0` student of the
    /// step's teacher in `probe/`, and returns the alpha for the step: with `u1` the first fit's
    /// softmax outputs on the validation split, `u0` the probe's and `r` the one-hot labels,
    /// [`sd_alpha::optimal_alpha`] clamped into `[0, 1]` ([`sd_alpha::DEGENERATE_ALPHA`] when
    /// `u1 = u0`). The probe of step 1
    /// is copied from `probe_source` when that is the same network ([`Start::ResumeCopying`]).
    fn auto_alpha(
        &self,
        dir: &ChainDir,
        step: usize,
        teacher: &Resnet,
        first_fit: &mut Option<Vec<f32>>,
        probe_source: Option<&ChainDir>,
        observer: &mut dyn Observer,
    ) -> Result<AutoAlpha> {
        let probe = dir.probe();
        let finished = |probe: &ChainDir| -> Result<Option<StepResult>> {
            Ok(probe.read_tests()?.into_iter().find(|r| r.step == step))
        };
        let copyable = match probe_source {
            Some(source) if step == 1 => self.same_probe(dir, source)?,
            _ => false,
        };
        let probe_result = match finished(&probe)? {
            Some(result) => result,
            None if copyable => {
                let source = probe_source.expect("checked above");
                create_dir(probe.path())?;
                probe.adopt_step(source, step)?;
                observer.probe_copied(step, source.path());
                finished(&probe)?.ok_or_else(|| TrainError::CopySource {
                    dir: source.path().to_path_buf(),
                    step,
                    why: "its copied step has no test row",
                })?
            }
            None => {
                observer.step_started(&StepStart {
                    step,
                    steps: self.record.steps,
                    alpha: 0.0,
                    probe: true,
                });
                create_dir(probe.path())?;
                let result = self.train_step(&probe, step, 0.0, Some(teacher), observer)?;
                probe.append_test(&result)?;
                probe.mark_finished(step)?;
                result
            }
        };
        let feed = self.feed();
        let u1 = match first_fit {
            Some(u1) => u1,
            None => {
                let path = dir.last_checkpoint(0);
                if !path.is_file() {
                    return Err(TrainError::MissingFirstFit { path });
                }
                first_fit.insert(predict_proba(
                    &self.load_network(&path)?,
                    &self.data.val,
                    &feed,
                )?)
            }
        };
        let u0 = predict_proba(
            &self.load_network(&probe.last_checkpoint(step))?,
            &self.data.val,
            &feed,
        )?;
        let targets = one_hot(&self.data.val, self.data.classes);
        let optimal = sd_alpha::optimal_alpha(
            targets
                .iter()
                .zip(u1.iter())
                .zip(&u0)
                .map(|((&r, &a), &b)| (f64::from(r), f64::from(a), f64::from(b))),
        );
        Ok(AutoAlpha {
            step,
            optimal,
            alpha: sd_alpha::optimal_or_degenerate(optimal).clamp(0.0, 1.0),
            probe_test_acc_best: probe_result.test_acc_best,
            probe_test_acc_final: probe_result.test_acc_final,
        })
    }

    /// Whether `source`'s step 1 is this chain's Algorithm 1 probe of step 1: the `alpha = 0`
    /// chain of the same seed and settings, its step 1 finished, its step 0 (the teacher) this
    /// chain's byte for byte (chains of one seed trained on different machines may differ).
    fn same_probe(&self, dir: &ChainDir, source: &ChainDir) -> Result<bool> {
        let Some(other) = source.read_record()? else {
            return Ok(false);
        };
        if other.seed != self.record.seed
            || other.settings != self.record.settings
            || other.alpha != Alpha::Fixed(0.0)
            || !source.read_tests()?.iter().any(|r| r.step == 1)
        {
            return Ok(false);
        }
        let read = |path: std::path::PathBuf| -> Result<Vec<u8>> {
            std::fs::read(&path).map_err(TrainError::io(&path))
        };
        let (ours, theirs) = (dir.last_checkpoint(0), source.last_checkpoint(0));
        Ok(theirs.is_file() && read(ours)? == read(theirs)?)
    }

    /// Trains one step into `dir`: a fresh network (seeded by [`step_seed`]) for `epochs` epochs
    /// with Adam on `alpha` ground truth + `(1 - alpha)` the teacher's softmax (the ground truth
    /// alone without a teacher), validating every epoch, keeping the last and the two best
    /// checkpoints, then testing the last and the best.
    fn train_step(
        &self,
        dir: &ChainDir,
        step: usize,
        alpha: f64,
        teacher: Option<&Resnet>,
        observer: &mut dyn Observer,
    ) -> Result<StepResult> {
        let started = Instant::now();
        // The step starts afresh: rows and best checkpoints of an interrupted attempt must not
        // compete.
        dir.truncate(step)?;
        dir.clear_step(step)?;
        let mut student = Student::new(self, step, alpha, teacher)?;
        let mut best = BestCheckpoints::default();
        for epoch in 0..self.record.settings.epochs {
            let row = student.train_epoch(epoch, observer)?;
            student.save(dir, &row, &mut best)?;
            if let Some(warning) = &row.warning {
                tracing::warn!("step {step}, epoch {epoch}: {warning}");
            }
            observer.epoch(&row);
            dir.append_metrics(&row)?;
        }
        student.test(dir, &best, started)
    }
}

/// One step's network as it trains: the fresh model, its optimizer and batches, and what the
/// step's epochs share.
struct Student<'c> {
    chain: &'c Chain<'c>,
    step: usize,
    /// The weight of the ground truth (1 without a teacher).
    alpha: f64,
    /// `None` at step 0, and at alpha = 1, where the teacher's softmax has weight 0.
    teacher: Option<&'c Resnet>,
    seed: u64,
    model: Resnet,
    params: Vec<candle_core::Var>,
    adam: Adam,
    loader: BatchLoader,
    /// The step's first batch's loss, against which divergence is judged.
    first_loss: Option<f64>,
}

impl<'c> Student<'c> {
    fn new(
        chain: &'c Chain<'c>,
        step: usize,
        alpha: f64,
        teacher: Option<&'c Resnet>,
    ) -> Result<Self> {
        let settings = &chain.record.settings;
        let seed = step_seed(chain.record.seed, step);
        let alpha = if teacher.is_some() { alpha } else { 1.0 };
        // At alpha = 1 the teacher's softmax has weight 0: the targets are the ground truth, bit
        // for bit, without the teacher's forward pass (a quarter of a student's time).
        let teacher = teacher.filter(|_| alpha < 1.0);
        let model = Resnet::seeded(chain.network(), seed, &chain.device)?;
        if let Some(path) = &settings.pretrained {
            model.load(path)?;
        }
        let params = model.parameters().trainable();
        let adam = Adam::new(
            params.clone(),
            AdamConfig {
                lr: settings.lr,
                ..AdamConfig::default()
            },
        )
        .map_err(sd_resnet::ResnetError::from)?;
        let loader = BatchLoader::new(
            chain.data.train.clone(),
            &chain.data.train_transform,
            LoaderConfig {
                batch_size: settings.batch_size,
                shuffle: if settings.shuffle {
                    Shuffle::EachEpoch
                } else {
                    Shuffle::Off
                },
                drop_last: false,
                num_workers: chain.num_workers,
                prefetch: 2,
                seed,
                device: chain.device.clone(),
            },
        )?;
        Ok(Student {
            chain,
            step,
            alpha,
            teacher,
            seed,
            model,
            params,
            adam,
            loader,
            first_loss: None,
        })
    }

    /// One epoch over the training batches, then the validation: the epoch's row.
    fn train_epoch(&mut self, epoch: usize, observer: &mut dyn Observer) -> Result<EpochMetrics> {
        let settings = &self.chain.record.settings;
        let step = self.step;
        let started = Instant::now();
        let lr = settings
            .lr_schedule
            .rate(settings.lr, epoch, settings.epochs);
        self.adam.set_learning_rate(lr);
        let (mut loss_sum, mut correct, mut seen, mut train_seconds) = (0.0, 0usize, 0usize, 0.0);
        let total = self.loader.len();
        for (done, batch) in self.loader.epoch(epoch as u64).enumerate() {
            let batch = batch?;
            let batch_started = Instant::now();
            let logits = self.model.forward_t(&batch.images, true)?;
            let teacher_logits = match self.teacher {
                // Train mode: batch statistics, running statistics updated (the original).
                Some(t) => Some(
                    t.forward_t(&batch.images, settings.teacher_mode == TeacherMode::Train)?
                        .detach(),
                ),
                None => None,
            };
            let fit = loss::distillation(
                settings.loss,
                &logits,
                &batch.one_hot,
                teacher_logits.as_ref(),
                self.alpha,
            )?;
            let total_loss = if settings.reg_coef > 0.0 {
                (fit + (loss::l2_norms(&self.params)? * settings.reg_coef)?)?
            } else {
                fit
            };
            let value = total_loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    step,
                    epoch,
                    batch: done,
                    value,
                });
            }
            self.first_loss.get_or_insert(value);
            self.adam
                .backward_step(&total_loss)
                .map_err(sd_resnet::ResnetError::from)?;
            train_seconds += batch_started.elapsed().as_secs_f64();
            let n = batch.indices.len();
            loss_sum += value * n as f64;
            correct += correct_predictions(&logits, &batch.labels)?;
            seen += n;
            observer.batch(&BatchProgress {
                step,
                epoch,
                done: done + 1,
                total,
                loss: loss_sum / seen as f64,
                acc: correct as f64 / seen as f64,
                images_per_s: seen as f64 / train_seconds,
            });
        }
        let (val_loss, val_acc) = evaluate(
            &self.model,
            &self.chain.data.val,
            &self.chain.feed(),
            settings.loss,
        )?;
        let train_loss = loss_sum / seen as f64;
        Ok(EpochMetrics {
            step,
            epoch,
            alpha: self.alpha,
            train_loss,
            train_acc: correct as f64 / seen as f64,
            val_loss,
            val_acc,
            lr,
            images_per_s: seen as f64 / train_seconds,
            seconds: started.elapsed().as_secs_f64(),
            warning: diverged(train_loss, self.first_loss.unwrap_or(f64::NAN)),
        })
    }

    /// The checkpoints of the epoch of `row`: the last, and among the best two by validation
    /// accuracy when it is one of them.
    fn save(&self, dir: &ChainDir, row: &EpochMetrics, best: &mut BestCheckpoints) -> Result<()> {
        let network = self.chain.network();
        let settings = &self.chain.record.settings;
        let sidecar = CheckpointSidecar {
            alpha: self.alpha,
            chain: Some(self.chain.record.clone()),
            classes: network.classes,
            copied_from: None,
            epoch: row.epoch,
            epochs: Some(settings.epochs),
            // Set when the step's test row is written ([`ChainDir::mark_finished`]): only a
            // finished step's last checkpoint is a teacher.
            finished: Some(false),
            in_channels: network.in_channels,
            metrics: Some(row.clone()),
            resnet: Some(network.depth.layers()),
            seed: self.chain.record.seed,
            stem: network.stem.name().to_string(),
            step: self.step,
            step_seed: self.seed,
            width: Some(network.width),
            other: Default::default(),
        };
        save_checkpoint(&self.model, &dir.last_checkpoint(self.step), &sidecar)?;
        if best.qualifies(row.val_acc) {
            let path = dir.best_checkpoint(self.step, row.epoch, row.val_acc);
            save_checkpoint(&self.model, &path, &sidecar)?;
            best.insert(row.val_acc, row.epoch, path);
        }
        Ok(())
    }

    /// The step's test row: the final model's test accuracy and the best checkpoint's.
    fn test(&self, dir: &ChainDir, best: &BestCheckpoints, started: Instant) -> Result<StepResult> {
        let settings = &self.chain.record.settings;
        let feed = self.chain.feed();
        let test_accuracy = |m: &Resnet| -> Result<f64> {
            Ok(evaluate(m, &self.chain.data.test, &feed, settings.loss)?.1)
        };
        let test_acc_final = test_accuracy(&self.model)?;
        let (test_acc_best, best_epoch, best_val_acc) = match best.first() {
            // The best model is the final one: nothing to evaluate again.
            Some((acc, epoch, _)) if epoch + 1 == settings.epochs => (test_acc_final, epoch, acc),
            Some((acc, epoch, path)) => {
                let best_model =
                    Resnet::seeded(self.chain.network(), self.seed, &self.chain.device)?;
                best_model.load(path)?;
                (test_accuracy(&best_model)?, epoch, acc)
            }
            None => (test_acc_final, settings.epochs - 1, f64::NAN),
        };
        Ok(StepResult {
            step: self.step,
            alpha: self.alpha,
            test_acc_final,
            test_acc_best,
            best_epoch,
            best_val_acc,
            last_checkpoint: dir.last_checkpoint(self.step),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The two best checkpoints of a step by validation accuracy, best first (earlier epochs win
/// ties); a checkpoint pushed out of the two is deleted.
#[derive(Debug, Default)]
struct BestCheckpoints {
    /// (validation accuracy, epoch, checkpoint)
    kept: Vec<(f64, usize, PathBuf)>,
}

impl BestCheckpoints {
    /// How many are kept.
    const KEPT: usize = 2;

    /// Whether an epoch of validation accuracy `val_acc` is one of the best.
    fn qualifies(&self, val_acc: f64) -> bool {
        val_acc.is_finite()
            && (self.kept.len() < Self::KEPT || self.kept.iter().any(|(acc, _, _)| val_acc > *acc))
    }

    /// Adds the checkpoint at `path`, deleting (with its sidecar) one that is no longer among
    /// the best.
    fn insert(&mut self, val_acc: f64, epoch: usize, path: PathBuf) {
        self.kept.push((val_acc, epoch, path));
        self.kept
            .sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, dropped) in self.kept.drain(Self::KEPT.min(self.kept.len())..) {
            let _ = std::fs::remove_file(&dropped);
            let _ = std::fs::remove_file(dropped.with_extension("json"));
        }
    }

    /// The best: validation accuracy, epoch, checkpoint.
    fn first(&self) -> Option<(f64, usize, &Path)> {
        self.kept
            .first()
            .map(|(acc, epoch, path)| (*acc, *epoch, path.as_path()))
    }
}

/// How many times its first batch's loss an epoch's mean training loss may grow to before the
/// epoch is flagged as diverged.
pub const DIVERGENCE_FACTOR: f64 = 10.0;

/// The warning of an epoch whose mean training loss grew past [`DIVERGENCE_FACTOR`] times the
/// step's first batch's loss (a loss that explodes without becoming NaN, as with a far too large
/// learning rate).
fn diverged(train_loss: f64, first_loss: f64) -> Option<String> {
    (train_loss > DIVERGENCE_FACTOR * first_loss).then(|| {
        format!(
            "training diverged: the mean training loss {train_loss:.4e} is {:.0}x the first \
             batch's ({first_loss:.4}); lower the learning rate",
            train_loss / first_loss
        )
    })
}

/// Saves `model` to `path` atomically, with its JSON sidecar beside it (`.json`).
fn save_checkpoint(model: &Resnet, path: &Path, sidecar: &CheckpointSidecar) -> Result<()> {
    write_atomic_with(path, |file| {
        model.save(file.path()).map_err(std::io::Error::other)
    })?;
    sidecar.write(&path.with_extension("json"))
}
