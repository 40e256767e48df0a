//! The network part of `paper-experiments`: one distillation chain per (alpha, seed), each in
//! its own directory `<out>/runs/alpha-<a>_seed-<s>/`, trained step by step through sd-resnet so
//! that a rerun skips finished steps and resumes an interrupted chain from its last teacher.
//!
//! A chain directory holds sd-resnet's files (`metrics.jsonl`, `test.jsonl`, `step_<k>/`) and
//! `chain.json` (what it was trained with). An `alpha = auto` chain adds `probe/` (the
//! `alpha = 0` students of Algorithm 1, one per step) and `auto_alpha.jsonl` (each step's alpha).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use sd_cli::files::write_atomic;
use sd_cli::resnet::Progress;
use sd_data::fixture::{self, FixtureSpec};
use sd_data::{Dataset, SplitConfig, Validation};
use sd_resnet::loss::LossKind;
use sd_resnet::train::{
    ChainConfig, ChainData, StepResult, one_hot, optimal_alpha, predict_proba, run_chain,
};
use sd_resnet::{Depth, Resnet, ResnetConfig, Stem};
use serde::{Deserialize, Serialize};

use crate::profile::{AlphaSpec, Profile};

/// The `i`-th (from 1) of `n` parts of the chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// From 1.
    pub index: usize,
    /// At least 1.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parse = || -> Option<Shard> {
            let (i, n) = text.split_once('/')?;
            Some(Shard {
                index: i.trim().parse().ok()?,
                count: n.trim().parse().ok()?,
            })
        };
        match parse() {
            Some(shard) if shard.count >= 1 && (1..=shard.count).contains(&shard.index) => {
                Ok(shard)
            }
            _ => Err(format!(
                "'{text}' is not a shard: expected I/N with 1 <= I <= N, e.g. 2/4"
            )),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of a Slurm job array task: `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1` of
/// `SLURM_ARRAY_TASK_COUNT` (`MIN` defaults to 0). `None` outside an array job.
pub fn slurm_shard(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
    let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT"))
    else {
        return Ok(None);
    };
    let number = |name: &str, text: &str| -> Result<usize> {
        text.trim()
            .parse()
            .with_context(|| format!("{name}={text} is not a number"))
    };
    let id = number("SLURM_ARRAY_TASK_ID", &id)?;
    let count = number("SLURM_ARRAY_TASK_COUNT", &count)?;
    let min = match var("SLURM_ARRAY_TASK_MIN") {
        Some(min) => number("SLURM_ARRAY_TASK_MIN", &min)?,
        None => 0,
    };
    let index = id.checked_sub(min).map(|i| i + 1);
    match index {
        Some(index) if count >= 1 && index <= count => Ok(Some(Shard { index, count })),
        _ => bail!(
            "SLURM_ARRAY_TASK_ID={id} (min {min}) does not fit SLURM_ARRAY_TASK_COUNT={count}: \
             use a contiguous array such as --array=0-{}, or give --shard I/N",
            count.saturating_sub(1)
        ),
    }
}

/// One chain of the experiment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainSpec {
    /// Its ground-truth weight.
    pub alpha: AlphaSpec,
    /// Its seed.
    pub seed: u64,
}

impl ChainSpec {
    /// `alpha-0.25_seed-1`, `alpha-auto_seed-1`.
    pub fn dir_name(&self) -> String {
        format!("alpha-{}_seed-{}", self.alpha, self.seed)
    }
}

/// Every chain of `profile`, seed by seed, in the profile's alpha order.
pub fn chains(profile: &Profile) -> Vec<ChainSpec> {
    profile
        .seeds
        .iter()
        .flat_map(|&seed| {
            profile
                .alphas
                .iter()
                .map(move |&alpha| ChainSpec { alpha, seed })
        })
        .collect()
}

/// The chains of `shard`, in running order (seed by seed). Shards are dealt round-robin over the
/// chains listed alpha by alpha, so that each shard gets a mix of alphas and seeds: with as many
/// shards as alphas (the `paper` profile on 7 GPUs), each gets one chain of each seed, and the
/// costlier auto chains land on different shards.
pub fn select(profile: &Profile, shard: Option<Shard>) -> Vec<ChainSpec> {
    let all = chains(profile);
    let Some(shard) = shard else {
        return all;
    };
    let seeds = profile.seeds.len();
    all.into_iter()
        .enumerate()
        .filter(|(running, _)| {
            let (seed, alpha) = (
                running / profile.alphas.len(),
                running % profile.alphas.len(),
            );
            (alpha * seeds + seed) % shard.count == shard.index - 1
        })
        .map(|(_, c)| c)
        .collect()
}

/// What determines a chain's numbers, besides its alpha and seed. A chain directory trained with
/// other settings is never continued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The data as the profile names it.
    pub data: String,
    /// Fixture sizes (`data = "fixture"` only).
    pub fixture: Option<(usize, usize)>,
    /// Training images kept (0: all).
    pub train_images: usize,
    /// Validation images held out.
    pub val_images: usize,
    /// Validation on the test set.
    pub val_on_test: bool,
    /// Test images kept (0: all).
    pub test_images: usize,
    /// 18, 34, 50.
    pub resnet: u32,
    /// Stem.
    pub stem: String,
    /// Loss.
    pub loss: String,
    /// Epochs per step.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Regularizer weight.
    pub reg_coef: f64,
    /// `cpu` or `cuda` (not the GPU's number: a chain can resume on another GPU).
    pub device: String,
}

impl Settings {
    /// The settings of `profile`.
    pub fn of(profile: &Profile) -> Self {
        Settings {
            data: profile.data.clone(),
            fixture: (profile.data == "fixture")
                .then_some((profile.fixture_train, profile.fixture_test)),
            train_images: profile.train_images,
            val_images: if profile.val_on_test {
                0
            } else {
                profile.val_images
            },
            val_on_test: profile.val_on_test,
            test_images: profile.test_images,
            resnet: profile.resnet,
            stem: profile.stem.clone(),
            loss: profile.loss.clone(),
            epochs: profile.epochs,
            batch_size: profile.batch_size,
            lr: profile.lr,
            reg_coef: profile.reg_coef,
            device: if profile.device.starts_with("cuda") {
                "cuda".into()
            } else {
                profile.device.clone()
            },
        }
    }
}

/// `chain.json`: a chain's identity and settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainRecord {
    /// Its ground-truth weight, a number or `"auto"`.
    pub alpha: AlphaSpec,
    /// Its seed.
    pub seed: u64,
    /// Steps asked for (step 0 included).
    pub steps: usize,
    /// The rest of what determines its numbers.
    pub settings: Settings,
}

/// One row of `auto_alpha.jsonl`: the alpha Algorithm 1 chose for a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoAlpha {
    /// The step (>= 1).
    pub step: usize,
    /// `<r - u0, u1 - u0> / |u1 - u0|^2` on the validation split; `None` when `u1 = u0`.
    pub optimal: Option<f64>,
    /// The alpha used: `optimal` clamped into `[0, 1]` (1 when `optimal` is `None`).
    pub alpha: f64,
    /// Test accuracy of the probe (the `alpha = 0` student), best model by validation.
    pub probe_test_acc_best: f64,
    /// Test accuracy of the probe's final-epoch model.
    pub probe_test_acc_final: f64,
}

/// The data of a run: where it is and how a missing data set is explained.
pub fn data_path(profile: &Profile, out: &Path) -> Result<PathBuf> {
    if profile.data == "fixture" {
        let dir = out.join("data").join(format!(
            "fixture-{}-{}",
            profile.fixture_train, profile.fixture_test
        ));
        if !dir
            .join("cifar-10-batches-bin/sd-data-fixture.json")
            .is_file()
        {
            fixture::write_cifar10(
                &dir,
                FixtureSpec {
                    train: profile.fixture_train,
                    test: profile.fixture_test,
                    seed: 0,
                },
            )
            .with_context(|| format!("cannot write the fixture into {}", dir.display()))?;
        }
        return Ok(dir);
    }
    let path = PathBuf::from(&profile.data);
    if !path.exists() {
        bail!(
            "profile '{}': the data set {} does not exist: {}",
            profile.name,
            path.display(),
            how_to_get(profile)
        );
    }
    Ok(path)
}

/// Where the data of `profile` comes from, for the messages of a missing or unreadable data set.
pub fn how_to_get(profile: &Profile) -> String {
    if profile.data.to_lowercase().contains("fashion") {
        "install it with `apt-get install -y dataset-fashion-mnist` (it lands in \
         /usr/share/datasets/fashion-mnist), or point `--set data=DIR` at a directory with the \
         four IDX files of Fashion-MNIST"
            .to_string()
    } else {
        format!(
            "download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and \
             put it (or its extracted cifar-10-batches-bin/) into {}, or point `--set data=PATH` \
             at it",
            profile.data
        )
    }
}

/// The data splits of one seed (the validation draw depends on the seed, as in `sd-cli resnet`).
pub fn chain_data(
    profile: &Profile,
    dataset: &Dataset,
    seed: u64,
) -> Result<(ChainData, ResnetConfig)> {
    let split = SplitConfig {
        validation: if profile.val_on_test {
            Validation::TestSet
        } else {
            Validation::Holdout {
                size: profile.val_images,
            }
        },
        seed,
        limit_train: (profile.train_images > 0).then_some(profile.train_images),
        limit_val: None,
        limit_test: (profile.test_images > 0).then_some(profile.test_images),
    };
    let depth = Depth::from_layers(profile.resnet).context("resnet must be 18, 34 or 50")?;
    let stem = if profile.stem == "cifar" {
        Stem::Cifar
    } else {
        Stem::Imagenet
    };
    sd_cli::resnet::prepare(dataset, &split, depth, stem)
        .with_context(|| format!("data {}", profile.data))
}

fn loss_kind(profile: &Profile) -> LossKind {
    if profile.loss == "ce" {
        LossKind::CrossEntropy
    } else {
        LossKind::SoftmaxMse
    }
}

/// Reads a JSON-lines file; a missing file is empty; a malformed line is an error naming it.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}, line {}", path.display(), i + 1))
        })
        .collect()
}

fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let text: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).expect("rows serialise") + "\n")
        .collect();
    write_atomic(path, text.as_bytes())
}

fn finished_steps(dir: &Path) -> Result<BTreeSet<usize>> {
    Ok(read_jsonl::<StepResult>(&dir.join("test.jsonl"))?
        .into_iter()
        .map(|r| r.step)
        .collect())
}

/// Checks `chain.json` in `dir` against `record` (writing it when new): a chain trained with
/// other settings, alpha or seed is never continued.
fn claim(dir: &Path, record: &ChainRecord) -> Result<()> {
    let path = dir.join("chain.json");
    if path.is_file() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        let existing: ChainRecord =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        if (existing.alpha, existing.seed, &existing.settings)
            != (record.alpha, record.seed, &record.settings)
        {
            bail!(
                "{} was trained with other settings ({}); give another --out, or delete that \
                 directory to retrain it",
                dir.display(),
                difference(&existing, record)
            );
        }
        if existing.steps >= record.steps {
            return Ok(());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(record).expect("a record serialises") + "\n";
    write_atomic(&path, text.as_bytes())
}

fn difference(a: &ChainRecord, b: &ChainRecord) -> String {
    let (a, b) = (
        serde_json::to_value(a).expect("serialises"),
        serde_json::to_value(b).expect("serialises"),
    );
    let mut diffs = Vec::new();
    let flatten = |v: &serde_json::Value| -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(map) = v.as_object() {
            for (k, v) in map {
                match v.as_object() {
                    Some(inner) => {
                        out.extend(inner.iter().map(|(k2, v2)| (k2.clone(), v2.to_string())))
                    }
                    None => out.push((k.clone(), v.to_string())),
                }
            }
        }
        out
    };
    let (fa, fb) = (flatten(&a), flatten(&b));
    for ((key, va), (_, vb)) in fa.iter().zip(&fb) {
        if va != vb && key != "steps" {
            diffs.push(format!("{key} {va} there, {vb} now"));
        }
    }
    diffs.join(", ")
}

/// A chain beside `dir` (in the same `runs/`) with the same seed and settings whose step 0 is
/// finished. Step 0 fits the ground truth alone, so it is the same network, bit for bit, in
/// every chain of a seed.
fn finished_first_fit(record: &ChainRecord, dir: &Path) -> Result<Option<PathBuf>> {
    let Some(runs) = dir.parent() else {
        return Ok(None);
    };
    let mut siblings: Vec<PathBuf> = match std::fs::read_dir(runs) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return Ok(None),
    };
    siblings.sort();
    for sibling in siblings {
        if sibling == dir || !sibling.join("step_0/last.safetensors").is_file() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(sibling.join("chain.json")) else {
            continue;
        };
        let Ok(other) = serde_json::from_str::<ChainRecord>(&text) else {
            continue;
        };
        if other.seed == record.seed
            && other.settings == record.settings
            && finished_steps(&sibling)?.contains(&0)
        {
            return Ok(Some(sibling));
        }
    }
    Ok(None)
}

/// Copies the finished step 0 of the chain in `source` into `dir`: its checkpoints (their JSON
/// sidecars say where they came from), its rows of `metrics.*` and, last, of `test.*`, with a
/// wall time of 0 (it was not trained here). A copy interrupted halfway is made again.
fn copy_first_fit(source: &Path, dir: &Path) -> Result<()> {
    let (from, to) = (source.join("step_0"), dir.join("step_0"));
    std::fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(&from).with_context(|| format!("{}", from.display()))? {
        let path = entry?.path();
        let name = path.file_name().expect("a file name");
        // Temporary files of an interrupted write start with a dot.
        if name.to_string_lossy().starts_with('.') || !path.is_file() {
            continue;
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let bytes = if path.extension().is_some_and(|e| e == "json") {
            let mut sidecar: serde_json::Value =
                serde_json::from_slice(&bytes).with_context(|| format!("{}", path.display()))?;
            sidecar["config"]["out"] = serde_json::json!(dir);
            sidecar["copied_from"] = serde_json::json!(path);
            (serde_json::to_string_pretty(&sidecar).expect("serialises") + "\n").into_bytes()
        } else {
            bytes
        };
        write_atomic(&to.join(name), &bytes)?;
    }
    let first_rows = |file: &str| -> Result<String> {
        let text = std::fs::read_to_string(source.join(file))
            .with_context(|| format!("cannot read {}", source.join(file).display()))?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        Ok(std::iter::once(header)
            .chain(lines.filter(|l| l.starts_with("0,")))
            .map(|l| format!("{l}\n"))
            .collect())
    };
    let metrics: Vec<sd_resnet::train::EpochMetrics> =
        read_jsonl::<sd_resnet::train::EpochMetrics>(&source.join("metrics.jsonl"))?
            .into_iter()
            .filter(|m| m.step == 0)
            .collect();
    write_jsonl(&dir.join("metrics.jsonl"), &metrics)?;
    write_atomic(
        &dir.join("metrics.csv"),
        first_rows("metrics.csv")?.as_bytes(),
    )?;
    let tests: Vec<StepResult> = read_jsonl::<StepResult>(&source.join("test.jsonl"))?
        .into_iter()
        .filter(|r| r.step == 0)
        .map(|r| StepResult {
            last_checkpoint: to.join("last.safetensors"),
            seconds: 0.0,
            ..r
        })
        .collect();
    write_atomic(&dir.join("test.csv"), first_rows("test.csv")?.as_bytes())?;
    write_jsonl(&dir.join("test.jsonl"), &tests)
}

/// How chains are trained: everything but the alpha and seed.
pub struct Runner<'a> {
    /// The profile.
    pub profile: &'a Profile,
    /// The data set.
    pub dataset: &'a Dataset,
    /// Where tensors live.
    pub device: Device,
    /// Show progress bars.
    pub show_progress: bool,
}

impl Runner<'_> {
    fn config(
        &self,
        model: ResnetConfig,
        seed: u64,
        alpha: f64,
        step: usize,
        out: &Path,
    ) -> ChainConfig {
        ChainConfig {
            model,
            max_epochs: self.profile.epochs,
            batch_size: self.profile.batch_size,
            lr: self.profile.lr,
            reg_coef: self.profile.reg_coef,
            loss: loss_kind(self.profile),
            alpha,
            steps: 1,
            first_step: step,
            seed,
            num_workers: self.profile.num_workers,
            device: self.device.clone(),
            out: out.to_path_buf(),
            pretrained: None,
        }
    }

    fn load(&self, model: ResnetConfig, path: &Path) -> Result<Resnet> {
        let network = Resnet::new(model, 0, &self.device)?;
        network
            .load(path)
            .with_context(|| format!("cannot load the teacher {}", path.display()))?;
        Ok(network)
    }

    /// Trains what is missing of `chain` in `dir`: finished steps are skipped, an interrupted
    /// step is trained again from its teacher's checkpoint. Returns the steps trained now.
    ///
    /// A chain is trained by one process at a time: it holds an advisory lock on
    /// `<dir>/.lock` (released when the process ends, however it ends); a chain locked by another
    /// process is skipped, and `Ok(None)` returned.
    pub fn run(&self, chain: ChainSpec, dir: &Path) -> Result<Option<usize>> {
        let record = ChainRecord {
            alpha: chain.alpha,
            seed: chain.seed,
            steps: self.profile.steps,
            settings: Settings::of(self.profile),
        };
        claim(dir, &record)?;
        let lock_path = dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        let (data, model) = chain_data(self.profile, self.dataset, chain.seed)?;
        let mut progress = Progress::new(self.show_progress);
        let mut first_fit: Option<Vec<f32>> = None;
        let mut trained = 0;
        for step in 0..self.profile.steps {
            if finished_steps(dir)?.contains(&step) {
                continue;
            }
            if step == 0
                && let Some(source) = finished_first_fit(&record, dir)?
            {
                copy_first_fit(&source, dir)?;
                if self.show_progress {
                    eprintln!(
                        "{}: step 0 is the first fit of {}, the same for every alpha: copied",
                        chain.dir_name(),
                        source.display()
                    );
                }
                continue;
            }
            let started = Instant::now();
            let teacher_path = |d: &Path| d.join(format!("step_{}/last.safetensors", step - 1));
            let alpha = match chain.alpha {
                _ if step == 0 => 1.0,
                AlphaSpec::Fixed(alpha) => alpha,
                AlphaSpec::Auto => {
                    let u1 = match &first_fit {
                        Some(u1) => u1,
                        None => first_fit.insert(self.outputs(
                            model,
                            &data,
                            &dir.join("step_0/last.safetensors"),
                        )?),
                    };
                    self.auto_alpha(chain, dir, step, model, &data, u1)?
                }
            };
            let teacher = match step {
                0 => None,
                _ => Some(self.load(model, &teacher_path(dir))?),
            };
            if self.show_progress {
                eprintln!(
                    "{}: step {step} of {}, alpha {alpha}",
                    chain.dir_name(),
                    self.profile.steps - 1
                );
            }
            run_chain(
                &self.config(model, chain.seed, alpha, step, dir),
                &data,
                teacher,
                &mut progress,
            )
            .with_context(|| format!("{}, step {step}", dir.display()))?;
            trained += 1;
            tracing::info!(
                chain = chain.dir_name(),
                step,
                seconds = started.elapsed().as_secs_f64(),
                "step finished"
            );
        }
        drop(lock);
        Ok(Some(trained))
    }

    /// The first fit's (or any checkpoint's) softmax outputs on the validation split.
    fn outputs(&self, model: ResnetConfig, data: &ChainData, path: &Path) -> Result<Vec<f32>> {
        let network = self.load(model, path)?;
        Ok(predict_proba(
            &network,
            &data.val,
            &data.eval_transform,
            self.profile.batch_size,
            self.profile.num_workers,
            &self.device,
        )?)
    }

    /// Algorithm 1 at `step`: trains (or finds) the `alpha = 0` student of the step's teacher in
    /// `<dir>/probe/`, and returns the alpha for the step, recorded in `auto_alpha.jsonl`.
    fn auto_alpha(
        &self,
        chain: ChainSpec,
        dir: &Path,
        step: usize,
        model: ResnetConfig,
        data: &ChainData,
        first_fit: &[f32],
    ) -> Result<f64> {
        let probe_dir = dir.join("probe");
        let probe_result = |dir: &Path| -> Result<Option<StepResult>> {
            Ok(read_jsonl::<StepResult>(&dir.join("test.jsonl"))?
                .into_iter()
                .find(|r| r.step == step))
        };
        if probe_result(&probe_dir)?.is_none() {
            let teacher = self.load(
                model,
                &dir.join(format!("step_{}/last.safetensors", step - 1)),
            )?;
            if self.show_progress {
                eprintln!(
                    "{}: step {step}, the alpha = 0 probe of Algorithm 1",
                    chain.dir_name()
                );
            }
            run_chain(
                &self.config(model, chain.seed, 0.0, step, &probe_dir),
                data,
                Some(teacher),
                &mut Progress::new(self.show_progress),
            )
            .with_context(|| format!("{}, step {step}", probe_dir.display()))?;
        }
        let probe = probe_result(&probe_dir)?.context("the probe wrote no test result")?;
        let zero_alpha = self.outputs(
            model,
            data,
            &probe_dir.join(format!("step_{step}/last.safetensors")),
        )?;
        let targets = one_hot(&data.val, model.classes);
        if first_fit.len() != targets.len() || zero_alpha.len() != targets.len() {
            bail!(
                "{}: the validation outputs have {} and {} values, the labels {}",
                dir.display(),
                first_fit.len(),
                zero_alpha.len(),
                targets.len()
            );
        }
        let optimal = optimal_alpha(&targets, first_fit, &zero_alpha);
        let alpha = optimal.map_or(1.0, |a| a.clamp(0.0, 1.0));
        let path = dir.join("auto_alpha.jsonl");
        let mut rows: Vec<AutoAlpha> = read_jsonl::<AutoAlpha>(&path)?
            .into_iter()
            .filter(|r| r.step < step)
            .collect();
        rows.push(AutoAlpha {
            step,
            optimal,
            alpha,
            probe_test_acc_best: probe.test_acc_best,
            probe_test_acc_final: probe.test_acc_final,
        });
        write_jsonl(&path, &rows)?;
        Ok(alpha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_chains_without_overlap() {
        let profile =
            crate::profile::load(&crate::profile::locate("fmnist").unwrap(), &[]).unwrap();
        let all = chains(&profile);
        assert_eq!(all.len(), 12);
        assert_eq!(all[5].dir_name(), "alpha-auto_seed-0");
        assert_eq!(all[6].dir_name(), "alpha-0_seed-1");
        let mut seen = Vec::new();
        for index in 1..=5 {
            let part = select(&profile, Some(Shard { index, count: 5 }));
            assert!(part.len() == 2 || part.len() == 3, "{part:?}");
            seen.extend(part);
        }
        assert_eq!(seen.len(), all.len());
        for chain in &all {
            assert_eq!(seen.iter().filter(|c| *c == chain).count(), 1);
        }
        // The paper on 7 GPUs: each shard trains 3 different alphas, one chain per seed.
        let paper = crate::profile::load(&crate::profile::locate("paper").unwrap(), &[]).unwrap();
        let mut autos = 0;
        for index in 1..=7 {
            let part = select(&paper, Some(Shard { index, count: 7 }));
            assert_eq!(part.len(), 3);
            let seeds: BTreeSet<u64> = part.iter().map(|c| c.seed).collect();
            assert_eq!(seeds.len(), 3, "{part:?}");
            let autos_here = part.iter().filter(|c| c.alpha == AlphaSpec::Auto).count();
            assert!(autos_here <= 1, "{part:?}");
            autos += autos_here;
            // Running order: seed by seed.
            assert!(part.windows(2).all(|w| w[0].seed <= w[1].seed), "{part:?}");
        }
        assert_eq!(autos, 3);
    }

    #[test]
    fn shards_parse_and_come_from_slurm() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "2", "a/b"] {
            assert!(bad.parse::<Shard>().unwrap_err().contains("I/N"), "{bad}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(slurm_shard(env(&[])).unwrap(), None);
        assert_eq!(
            slurm_shard(env(&[
                ("SLURM_ARRAY_TASK_ID", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]))
            .unwrap(),
            Some(Shard { index: 1, count: 4 })
        );
        assert_eq!(
            slurm_shard(env(&[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]))
            .unwrap(),
            Some(Shard { index: 4, count: 4 })
        );
        let error = slurm_shard(env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]))
        .unwrap_err();
        assert!(error.to_string().contains("--array=0-3"), "{error}");
    }

    #[test]
    fn a_missing_data_set_says_where_to_get_it() {
        let path = crate::profile::locate("fmnist").unwrap();
        let profile =
            crate::profile::load(&path, &["data=/nonexistent/fashion-mnist".into()]).unwrap();
        let error = data_path(&profile, Path::new("/tmp"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/nonexistent/fashion-mnist") && error.contains("apt-get install"),
            "{error}"
        );
        let path = crate::profile::locate("paper").unwrap();
        let profile = crate::profile::load(&path, &["data=/nonexistent/cifar".into()]).unwrap();
        let error = data_path(&profile, Path::new("/tmp"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("cifar-10-binary.tar.gz"), "{error}");
    }

    #[test]
    fn a_chain_with_other_settings_is_not_continued() {
        let dir = tempfile::tempdir().unwrap();
        let profile = crate::profile::load(&crate::profile::locate("smoke").unwrap(), &[]).unwrap();
        let record = ChainRecord {
            alpha: AlphaSpec::Fixed(0.5),
            seed: 0,
            steps: 2,
            settings: Settings::of(&profile),
        };
        claim(dir.path(), &record).unwrap();
        // More steps continue the chain; fewer are fine too.
        claim(
            dir.path(),
            &ChainRecord {
                steps: 3,
                ..record.clone()
            },
        )
        .unwrap();
        claim(dir.path(), &record).unwrap();
        let mut other = record.clone();
        other.settings.epochs = 5;
        let error = claim(dir.path(), &other).unwrap_err().to_string();
        assert!(error.contains("epochs 1 there, 5 now"), "{error}");
    }
}
