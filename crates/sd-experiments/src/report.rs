//! `REPORT.md` and its CSV files and figure, from the files of the runs alone: `experiment.json`
//! of each output directory, and `chain.json`, `test.jsonl`, `metrics.jsonl` and
//! `auto_alpha.jsonl` of each chain. Several directories (the shards of one experiment) merge
//! into one report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sd_alpha::Alpha;
use sd_train::files::{create_dir, write_atomic, write_csv};
use sd_train::{AutoAlpha, ChainDir, ChainRecord, EpochMetrics, StepResult};
use serde::{Deserialize, Serialize};

mod format;
mod kernel;

use crate::error::{Error, Result};
use crate::krr::image_study::ImageStudy;
use crate::plan::Shard;
use crate::plot::{AccuracySeries, write_accuracy_figure};
use crate::profile::Profile;
use crate::stats::{Stats, difference_cell, paired_interval, percent_cell};
use format::{alpha_title, relative, step_table_head};

/// The heading after which the report holds what differs between two runs of the same
/// experiment (times, machine, directories); everything above it depends only on the results.
pub const RUN_SECTION: &str = "## Time, hardware and configuration";

/// `experiment.json`: how an output directory's runs were made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentInfo {
    /// The profile's name.
    pub profile: String,
    /// Its description.
    pub description: String,
    /// The profile as run (overrides applied), TOML.
    pub profile_toml: String,
    /// The shard this directory ran, if any.
    pub shard: Option<Shard>,
    /// `git describe --always --dirty` of the workspace, or "unknown".
    pub git_commit: String,
    /// The machine.
    pub hardware: Hardware,
}

/// The name of a directory's `experiment.json`: one per shard, so that shards sharing a
/// directory do not overwrite each other's.
pub fn info_file_name(shard: Option<Shard>) -> String {
    match shard {
        None => "experiment.json".into(),
        Some(s) => format!("experiment.shard-{}-of-{}.json", s.index, s.count),
    }
}

fn info_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("experiment") && n.ends_with(".json"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Where the runs ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hardware {
    /// The CPU's model name.
    pub cpu: String,
    /// Logical CPUs available to the process.
    pub logical_cpus: usize,
    /// `RAYON_NUM_THREADS` when set.
    pub rayon_threads: Option<String>,
    /// The training device.
    pub device: String,
    /// Operating system and architecture.
    pub os: String,
}

impl Hardware {
    /// This machine, training on `device`.
    pub fn here(device: &str) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, name)| name.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Hardware {
            cpu,
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rayon_threads: std::env::var("RAYON_NUM_THREADS").ok(),
            device: device.to_string(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// One chain's files.
#[derive(Debug, Clone)]
struct Chain {
    record: ChainRecord,
    dir: PathBuf,
    tests: Vec<StepResult>,
    metrics: Vec<EpochMetrics>,
    auto: Vec<AutoAlpha>,
    probe: Vec<StepResult>,
}

impl Chain {
    fn read(dir: &Path) -> Result<Chain> {
        let files = ChainDir::new(dir);
        let record = files.read_record()?.ok_or_else(|| Error::Io {
            path: files.record_file(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        Ok(Chain {
            record,
            dir: dir.to_path_buf(),
            tests: files.read_tests()?,
            metrics: files.read_metrics()?,
            auto: files.read_auto_alpha()?,
            probe: files.probe().read_tests()?,
        })
    }

    fn key(&self) -> (String, u64, String) {
        (
            self.record.alpha.to_string(),
            self.record.seed,
            self.record.settings.label_noise.to_string(),
        )
    }

    fn accuracy(&self, step: usize, best: bool) -> Option<f64> {
        self.tests.iter().find(|r| r.step == step).map(|r| {
            if best {
                r.test_acc_best
            } else {
                r.test_acc_final
            }
        })
    }
}

/// The chains of one or more output directories, and their `experiment.json`.
struct Experiment {
    infos: Vec<(PathBuf, ExperimentInfo)>,
    chains: Vec<Chain>,
    steps: usize,
    /// Chains the profiles ask for that no directory has: `alpha-<a>_seed-<s>`.
    not_started: Vec<String>,
}

impl Experiment {
    fn read(dirs: &[PathBuf]) -> Result<Experiment> {
        let mut infos = Vec::new();
        let mut chains: BTreeMap<(String, u64, String), Chain> = BTreeMap::new();
        for dir in dirs {
            let found = info_files(dir);
            if found.is_empty() {
                return Err(Error::NotAnExperiment(dir.clone()));
            }
            for info_path in found {
                let info: ExperimentInfo = sd_train::files::read_json(&info_path)?
                    .ok_or_else(|| Error::NotAnExperiment(dir.clone()))?;
                infos.push((dir.clone(), info));
            }
            let runs = dir.join("runs");
            let mut chain_dirs: Vec<PathBuf> = match std::fs::read_dir(&runs) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| ChainDir::is_chain(p))
                    .collect(),
                Err(_) => Vec::new(),
            };
            chain_dirs.sort();
            for chain_dir in chain_dirs {
                let chain = Chain::read(&chain_dir)?;
                match chains.get(&chain.key()) {
                    // The same chain in two directories: keep the one further along.
                    Some(kept) if kept.tests.len() >= chain.tests.len() => {
                        if kept.tests.len() == chain.tests.len() {
                            tracing::warn!(
                                kept = %kept.dir.display(),
                                ignored = %chain.dir.display(),
                                "the same chain twice; keeping the first"
                            );
                        }
                    }
                    _ => {
                        chains.insert(chain.key(), chain);
                    }
                }
            }
        }
        let chains: Vec<Chain> = chains.into_values().collect();
        // One experiment: the same settings but for the label-noise level (one section each).
        let common = |chain: &Chain| sd_train::Settings {
            label_noise: 0.0,
            ..chain.record.settings.clone()
        };
        if let Some(first) = chains.first() {
            for chain in &chains {
                if common(chain) != common(first) {
                    return Err(Error::NotOneExperiment {
                        first: first.dir.clone(),
                        second: chain.dir.clone(),
                    });
                }
            }
        }
        let steps = chains.iter().map(|c| c.record.steps).max().unwrap_or(0);
        // What the profiles ask for (every shard's profile lists all chains of the experiment).
        let mut not_started = Vec::new();
        for (_, info) in &infos {
            let Ok(profile) = toml::from_str::<Profile>(&info.profile_toml) else {
                continue;
            };
            for spec in crate::plan::select(&profile, None) {
                let present = chains.iter().any(|c| {
                    (c.record.alpha, c.record.seed, c.record.settings.label_noise)
                        == (spec.alpha, spec.seed, spec.label_noise)
                });
                if !present && !not_started.contains(&spec.dir_name()) {
                    not_started.push(spec.dir_name());
                }
            }
        }
        Ok(Experiment {
            infos,
            chains,
            steps,
            not_started,
        })
    }

    /// The kernel study on images of the first profile that has one (every shard's profile is
    /// the experiment's), its data named as the report names it ([`Profile::data_in`]: a
    /// fixture relative to the experiment's directory, so that copies read the same).
    fn image_study(&self) -> Option<ImageStudy> {
        self.infos.iter().find_map(|(_, info)| {
            let profile = toml::from_str::<Profile>(&info.profile_toml).ok()?;
            profile.image_study(&profile.data_in(Path::new("")))
        })
    }

    /// The alphas present: numbers ascending, then auto.
    fn alphas(&self) -> Vec<Alpha> {
        let mut fixed: Vec<f64> = Vec::new();
        let mut auto = false;
        for chain in &self.chains {
            match chain.record.alpha {
                Alpha::Fixed(a) if !fixed.contains(&a) => fixed.push(a),
                Alpha::Fixed(_) => {}
                Alpha::Auto => auto = true,
            }
        }
        fixed.sort_by(f64::total_cmp);
        let mut alphas: Vec<Alpha> = fixed.into_iter().map(Alpha::Fixed).collect();
        if auto {
            alphas.push(Alpha::Auto);
        }
        alphas
    }

    /// The label-noise levels present, ascending.
    fn noise_levels(&self) -> Vec<f64> {
        let mut levels: Vec<f64> = Vec::new();
        for chain in &self.chains {
            if !levels.contains(&chain.record.settings.label_noise) {
                levels.push(chain.record.settings.label_noise);
            }
        }
        levels.sort_by(f64::total_cmp);
        levels
    }

    /// The chains at one label-noise level, as an experiment of their own.
    fn at_noise(&self, label_noise: f64) -> Experiment {
        Experiment {
            infos: self.infos.clone(),
            chains: self
                .chains
                .iter()
                .filter(|c| c.record.settings.label_noise == label_noise)
                .cloned()
                .collect(),
            steps: self.steps,
            not_started: Vec::new(),
        }
    }

    fn seeds(&self) -> Vec<u64> {
        let mut seeds: Vec<u64> = self.chains.iter().map(|c| c.record.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        seeds
    }

    fn of(&self, alpha: Alpha) -> impl Iterator<Item = &Chain> {
        self.chains.iter().filter(move |c| c.record.alpha == alpha)
    }

    /// `accuracy(step) - accuracy(step 0)` of each chain of `alpha` that has both: the paired
    /// differences to the same seed's first fit.
    fn first_fit_differences(&self, alpha: Alpha, step: usize, best: bool) -> Vec<f64> {
        self.of(alpha)
            .filter_map(|c| Some(c.accuracy(step, best)? - c.accuracy(0, best)?))
            .collect()
    }

    /// Mean and sample standard deviation over seeds of the accuracy at `step`, and how many.
    fn stats(&self, alpha: Alpha, step: usize, best: bool) -> Option<Stats> {
        Stats::of(
            &self
                .of(alpha)
                .filter_map(|c| c.accuracy(step, best))
                .collect::<Vec<_>>(),
        )
    }
}

/// Writes the report of the chains in `dirs` into `out` (created if needed): `REPORT.md`,
/// `accuracy.csv`, `steps.csv`, `auto_alpha.csv`, `timing.csv`, `accuracy.png`/`.svg`, and the
/// kernel part's `krr/` (copied from the first directory that has one when `out` is not it).
/// Returns the path of `REPORT.md`.
pub fn write(dirs: &[PathBuf], out: &Path) -> Result<PathBuf> {
    if dirs.is_empty() {
        return Err(Error::setting(
            "directories",
            "must name at least one experiment directory",
        ));
    }
    let experiment = Experiment::read(dirs)?;
    create_dir(out)?;
    let krr = copy_krr(dirs, out)?;
    let mut md = String::new();
    let (_, info) = &experiment.infos[0];
    let settings = experiment.chains.first().map(|c| c.record.settings.clone());
    let levels = experiment.noise_levels();
    let _ = writeln!(
        md,
        "# Self-distillation with weighted ground-truth targets: experiment report\n"
    );
    let _ = writeln!(md, "Profile `{}`: {}.\n", info.profile, info.description);
    if let Some(s) = &settings {
        md += &setup_paragraph(&experiment, s);
    }
    if let Some(krr) = &krr {
        if let Some(toy) = kernel::toy_section(krr)? {
            md += &toy;
        }
        if let Some(study) = experiment.image_study()
            && let Some(images) = kernel::images_section(&study, &krr.join("images"))?
        {
            md += &images;
            md.push('\n');
        }
    }
    for &label_noise in &levels {
        let condition = Condition {
            label_noise,
            several: levels.len() > 1,
        };
        let part = experiment.at_noise(label_noise);
        let alphas = part.alphas();
        md += &accuracy_section(&part, &alphas, out, &condition)?;
        md += &paired_section(&part, &alphas);
        if alphas.contains(&Alpha::Auto) {
            md += &auto_section(&part, &alphas, &condition);
        }
    }
    md += &missing_section(&experiment);
    md += &run_section(&experiment, out);
    write_accuracy_csv(&out.join("accuracy.csv"), &experiment)?;
    write_steps_csv(&out.join("steps.csv"), &experiment)?;
    write_auto_csv(&out.join("auto_alpha.csv"), &experiment)?;
    write_timing_csv(&out.join("timing.csv"), &experiment)?;
    let report = out.join("REPORT.md");
    write_atomic(&report, md.as_bytes())?;
    Ok(report)
}

/// The report's first paragraph: what was trained, on what, and how the tables read.
fn setup_paragraph(experiment: &Experiment, s: &sd_train::Settings) -> String {
    let list = |items: Vec<String>| items.join(", ");
    let chains = match experiment.chains.len() {
        1 => "1 chain".to_string(),
        n => format!("{n} chains"),
    };
    let alphas = list(experiment.alphas().iter().map(Alpha::to_string).collect());
    let seeds = list(experiment.seeds().iter().map(u64::to_string).collect());
    let width = if s.width == sd_resnet::TORCHVISION_WIDTH {
        String::new()
    } else {
        format!(
            ", width {}: {} channels in the first stage, torchvision's 64 scaled down",
            s.width, s.width
        )
    };
    let network = format!("ResNet-{} ({} stem{width})", s.resnet, s.stem);
    let schedule = match s.lr_schedule {
        sd_train::LrSchedule::Constant => "",
        sd_train::LrSchedule::Cosine => {
            " annealed to 0 over each step's epochs by a cosine (set once per epoch)"
        }
    };
    let order = if s.shuffle {
        "a new order of the training images every epoch"
    } else {
        "the training split's own order in every epoch and step (no shuffling)"
    };
    let labels = match experiment.noise_levels().as_slice() {
        [level] if *level == 0.0 => "clean labels".to_string(),
        [level] => format!(
            "label noise {level} on the training labels (validation included, test labels \
             clean; noise seed {})",
            s.noise_seed
        ),
        levels => format!(
            "label noise {} on the training labels, every alpha and seed at each level, one \
             section each (validation included, test labels clean; noise seed {})",
            levels
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            s.noise_seed
        ),
    };
    let training = format!(
        "{} epoch(s) per step, {} steps (step 0 is the first fit, on the ground truth only), \
         batch {}, Adam lr {}{schedule}, reg_coef {}, on {}",
        s.epochs, experiment.steps, s.batch_size, s.lr, s.reg_coef, s.device
    );
    format!(
        "{chains}: alpha in {{{alphas}}} x seeds {{{seeds}}}. {network}, {} loss, data `{}`; \
         {training}; {order}, teacher's BatchNorm in {} mode; {labels}. Test accuracy in \
         percent: the mean ± sample standard deviation over seeds of each step's best model by \
         validation accuracy, unless a table says otherwise. Regenerate with `cargo xtask \
         paper-report DIR...`.\n\n",
        s.loss, s.data, s.teacher_mode
    )
}

/// One label-noise level's part of the report: its sections' titles and figure names.
struct Condition {
    label_noise: f64,
    /// More than one level in the experiment: titles and file names say which.
    several: bool,
}

impl Condition {
    /// `, clean labels`, `, 30% label noise`; empty with one level.
    fn title(&self) -> String {
        if !self.several {
            String::new()
        } else if self.label_noise == 0.0 {
            ", clean labels".into()
        } else {
            format!(
                ", {}% label noise",
                (self.label_noise * 1000.0).round() / 10.0
            )
        }
    }

    /// `accuracy` (one level, or the clean one), `accuracy-noise-0.3`.
    fn figure(&self) -> String {
        if self.several && self.label_noise > 0.0 {
            format!("accuracy-noise-{}", self.label_noise)
        } else {
            "accuracy".into()
        }
    }
}

/// Copies `krr/` next to the report when it is elsewhere (the first of `dirs` whose `krr/` has
/// the image study's runs, which only the first shard computes, or else the first that has a
/// `krr/`), so that the report's links and the figures the kernel runs drew are beside it;
/// returns that `krr/`, where the kernel sections are rendered from.
fn copy_krr(dirs: &[PathBuf], out: &Path) -> Result<Option<PathBuf>> {
    let krr_dirs: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join("krr"))
        .filter(|k| k.is_dir())
        .collect();
    let Some(source) = krr_dirs
        .iter()
        .find(|k| k.join("images").is_dir())
        .or(krr_dirs.first())
        .cloned()
    else {
        return Ok(None);
    };
    let target = out.join("krr");
    let same = std::fs::canonicalize(&source).ok() == std::fs::canonicalize(&target).ok()
        && target.exists();
    if !same {
        copy_dir(&source, &target)?;
    }
    Ok(Some(target))
}

/// Markdown that earlier versions wrote beside the kernel runs and pasted into the report; the
/// report is rendered from the runs' results now, so these are not copied.
const LEGACY_MARKDOWN: [&str; 2] = ["losses.md", "section.md"];

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    create_dir(to)?;
    for entry in std::fs::read_dir(from).map_err(Error::io(from))? {
        let path = entry.map_err(Error::io(from))?.path();
        let name = path.file_name().expect("an entry has a name");
        if LEGACY_MARKDOWN.iter().any(|legacy| *legacy == name) {
            continue;
        }
        let target = to.join(name);
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
            write_atomic(&target, &bytes)?;
        }
    }
    Ok(())
}

fn accuracy_table(experiment: &Experiment, alphas: &[Alpha], best: bool) -> String {
    let mut md = step_table_head(alphas);
    for step in 0..experiment.steps {
        let cells: Vec<String> = alphas
            .iter()
            .map(|&a| percent_cell(experiment.stats(a, step, best)))
            .collect();
        let _ = writeln!(md, "| {step} | {} |", cells.join(" | "));
    }
    md
}

/// The step with the highest mean accuracy (the earliest of ties).
fn best_step(experiment: &Experiment, alpha: Alpha) -> Option<(usize, Stats)> {
    (0..experiment.steps)
        .filter_map(|step| experiment.stats(alpha, step, true).map(|s| (step, s)))
        .fold(None, |best: Option<(usize, Stats)>, (step, s)| match best {
            Some((_, b)) if b.mean >= s.mean => best,
            _ => Some((step, s)),
        })
}

fn accuracy_section(
    experiment: &Experiment,
    alphas: &[Alpha],
    out: &Path,
    condition: &Condition,
) -> Result<String> {
    let mut md = format!(
        "## Networks: test accuracy per distillation step{}\n\n",
        condition.title()
    );
    md += &accuracy_table(experiment, alphas, true);
    let series: Vec<AccuracySeries> = alphas
        .iter()
        .map(|&alpha| AccuracySeries {
            label: alpha_title(alpha),
            points: (0..experiment.steps)
                .filter_map(|step| {
                    experiment
                        .stats(alpha, step, true)
                        .map(|s| (step, 100.0 * s.mean, 100.0 * s.std))
                })
                .collect(),
            shade: match alpha {
                Alpha::Fixed(a) => Some(a),
                Alpha::Auto => None,
            },
        })
        .collect();
    let figure = condition.figure();
    write_accuracy_figure(out, &figure, &series, "test accuracy (%)")?;
    let _ = write!(
        md,
        "\n![Test accuracy against the distillation step, one line per alpha; error bars: one \
         standard deviation over seeds]({figure}.png)\n\n"
    );
    md += "Of the final-epoch models (each step's teacher of the next):\n\n";
    md += &accuracy_table(experiment, alphas, false);
    md += "\n### Best step per alpha\n\n| alpha | best step | test accuracy | step 0 | gain |\n\
           |---|---:|---:|---:|---:|\n";
    for &alpha in alphas {
        if let (Some((step, best)), Some(first)) = (
            best_step(experiment, alpha),
            experiment.stats(alpha, 0, true),
        ) {
            let _ = writeln!(
                md,
                "| {alpha} | {step} | {} | {} | {:+.2} |",
                best.percent(),
                first.percent(),
                100.0 * (best.mean - first.mean)
            );
        }
    }
    md.push('\n');
    md += &first_fit_curve(experiment);
    Ok(md)
}

/// The first fit's training curve: per epoch, the mean over seeds of its training loss and
/// validation accuracy, so a reader sees whether step 0 reached its plateau.
fn first_fit_curve(experiment: &Experiment) -> String {
    // Step 0 is the same network in every chain of a seed: one chain per seed.
    let mut per_seed: BTreeMap<u64, &Chain> = BTreeMap::new();
    for chain in &experiment.chains {
        if chain.metrics.iter().any(|m| m.step == 0) {
            per_seed.entry(chain.record.seed).or_insert(chain);
        }
    }
    let epochs = per_seed
        .values()
        .flat_map(|c| {
            c.metrics
                .iter()
                .filter(|m| m.step == 0)
                .map(|m| m.epoch + 1)
        })
        .max()
        .unwrap_or(0);
    if epochs < 2 {
        return String::new();
    }
    let mut md = format!(
        "### The first fit's training curve\n\nStep 0 per epoch, mean ± standard deviation over \
         {} seed(s): training loss and accuracy (on the training labels{}), validation \
         accuracy. The last column is the change in validation accuracy from the epoch before, \
         in points.\n\n| epoch | training loss | training accuracy | validation accuracy | \
         change |\n|---:|---:|---:|---:|---:|\n",
        per_seed.len(),
        if experiment
            .chains
            .first()
            .is_some_and(|c| c.record.settings.label_noise > 0.0)
        {
            ", noisy ones included"
        } else {
            ""
        }
    );
    let mut previous: Option<f64> = None;
    for epoch in 0..epochs {
        let rows: Vec<&EpochMetrics> = per_seed
            .values()
            .filter_map(|c| c.metrics.iter().find(|m| m.step == 0 && m.epoch == epoch))
            .collect();
        let of =
            |f: fn(&EpochMetrics) -> f64| Stats::of(&rows.iter().map(|m| f(m)).collect::<Vec<_>>());
        let (Some(loss), Some(train), Some(val)) =
            (of(|m| m.train_loss), of(|m| m.train_acc), of(|m| m.val_acc))
        else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {} | {:.4} ± {:.4} | {} | {} | {} |",
            epoch + 1,
            loss.mean,
            loss.std,
            train.percent(),
            val.percent(),
            previous.map_or("-".into(), |p| format!("{:+.2}", 100.0 * (val.mean - p)))
        );
        previous = Some(val.mean);
    }
    md.push('\n');
    md
}

/// Each step against the same seed's first fit: the mean paired difference with a 95% Student-t
/// interval, and in words which intervals exclude zero.
fn paired_section(experiment: &Experiment, alphas: &[Alpha]) -> String {
    if experiment.steps < 2 {
        return String::new();
    }
    let seeds = experiment.seeds().len();
    let mut md = format!(
        "### Against the first fit: paired differences\n\n\
         Each cell: the mean over seeds of step k's test accuracy minus the same seed's first \
         fit (step 0), in points, best model by validation, with a 95% Student-t confidence \
         interval (n seeds, n - 1 degrees of freedom; {seeds} seed(s) here). `*`: the interval \
         excludes 0.\n\n{}",
        step_table_head(alphas)
    );
    let (mut above, mut below, mut compared, mut without) = (Vec::new(), Vec::new(), 0, 0);
    for step in 1..experiment.steps {
        let cells: Vec<String> = alphas
            .iter()
            .map(|&alpha| {
                let differences = experiment.first_fit_differences(alpha, step, true);
                let cell = difference_cell(&differences);
                match paired_interval(&differences) {
                    Some((_, None)) => without += 1,
                    Some((mean, Some(half))) => {
                        compared += 1;
                        let text = cell.trim_end_matches(" *");
                        let name = format!("alpha {alpha} at step {step} ({text})");
                        if mean - half > 0.0 {
                            above.push(name);
                        } else if mean + half < 0.0 {
                            below.push(name);
                        }
                    }
                    None => {}
                }
                cell
            })
            .collect();
        let _ = writeln!(md, "| {step} | {} |", cells.join(" | "));
    }
    md.push('\n');
    md += "**What the numbers show.** ";
    if compared == 0 {
        md += "No cell has two seeds or more, so no interval: each difference is one run and \
               cannot be told apart from seed noise.";
    } else if above.is_empty() && below.is_empty() {
        let _ = write!(
            md,
            "Every one of the {compared} intervals includes 0: with {seeds} seeds, no step of \
             any alpha is distinguishable from its first fit."
        );
    } else {
        if !above.is_empty() {
            let _ = write!(md, "Above the first fit at 95%: {}. ", above.join("; "));
        }
        if !below.is_empty() {
            let _ = write!(md, "Below it at 95%: {}. ", below.join("; "));
        }
        let _ = write!(
            md,
            "The other {} of the {compared} intervals include 0.",
            compared - above.len() - below.len()
        );
    }
    let _ = write!(
        md,
        "\n\nNot shown: intervals for differences between alphas at the same step, and any \
         correction for the {compared} comparisons made here (at 95% each, about one interval \
         in twenty excludes 0 by chance when nothing differs){}.\n\n",
        if without > 0 {
            format!("; {without} cell(s) with one seed have no interval")
        } else {
            String::new()
        }
    );
    md
}

fn auto_section(experiment: &Experiment, alphas: &[Alpha], condition: &Condition) -> String {
    let mut md = format!("## Automatic alpha (Algorithm 1){}\n\n", condition.title());
    md.push_str(
        "\
         At each step k >= 1 an `alpha = 0` student of the step's teacher is trained first (the \
         probe); with u1 the first fit's softmax outputs on the validation split, u0 the \
         probe's and r the one-hot labels, alpha_k = <r - u0, u1 - u0> / |u1 - u0|^2, clamped \
         into [0, 1]; then the step's student is trained with alpha_k. It costs two trainings \
         per step. The grid's best is the fixed alpha with the highest mean accuracy at that \
         step.\n\n\
         | step | alpha_k per seed (unclamped) | auto accuracy | probe (alpha = 0) accuracy | \
         grid's best alpha | its accuracy | auto - grid's best, paired [95%] |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for step in 1..experiment.steps {
        let chosen: Vec<String> = experiment
            .of(Alpha::Auto)
            .filter_map(|c| {
                c.auto
                    .iter()
                    .find(|r| r.step == step)
                    .map(|r| match r.optimal {
                        Some(o) if (o - r.alpha).abs() > 1e-12 => {
                            format!("{:.3} ({o:.3}), seed {}", r.alpha, c.record.seed)
                        }
                        _ => format!("{:.3}, seed {}", r.alpha, c.record.seed),
                    })
            })
            .collect();
        let probe = Stats::of(
            &experiment
                .of(Alpha::Auto)
                .filter_map(|c| {
                    c.auto
                        .iter()
                        .find(|r| r.step == step)
                        .map(|r| r.probe_test_acc_best)
                })
                .collect::<Vec<_>>(),
        );
        let grid_best = alphas
            .iter()
            .filter(|a| matches!(a, Alpha::Fixed(_)))
            .filter_map(|&a| experiment.stats(a, step, true).map(|s| (a, s)))
            .fold(None, |best: Option<(Alpha, Stats)>, (a, s)| match best {
                Some((_, b)) if b.mean >= s.mean => best,
                _ => Some((a, s)),
            });
        let chosen = if chosen.is_empty() {
            "-".into()
        } else {
            chosen.join("; ")
        };
        let auto = percent_cell(experiment.stats(Alpha::Auto, step, true));
        let probe = percent_cell(probe);
        let best_alpha = grid_best.map_or("-".into(), |(a, _)| a.to_string());
        let best = percent_cell(grid_best.map(|(_, s)| s));
        let against_best = grid_best.map_or("-".into(), |(best, _)| {
            let differences: Vec<f64> = experiment
                .of(Alpha::Auto)
                .filter_map(|auto| {
                    let grid = experiment
                        .of(best)
                        .find(|c| c.record.seed == auto.record.seed)?;
                    Some(auto.accuracy(step, true)? - grid.accuracy(step, true)?)
                })
                .collect();
            difference_cell(&differences)
        });
        let _ = writeln!(
            md,
            "| {step} | {chosen} | {auto} | {probe} | {best_alpha} | {best} | {against_best} |"
        );
    }
    md += "\nThe grid's best is chosen by mean test accuracy, which favours the grid. ";
    match auto_cost(experiment) {
        Some(cost) => {
            let _ = write!(
                md,
                "Cost per seed (the first fit counted in each): auto trains {:.0} networks (the \
                 first fit, then a probe and a student per step), the grid of {} fixed alphas \
                 {:.0}; their wall times are under \"Time, hardware and configuration\".",
                cost.auto_runs, cost.fixed, cost.grid_runs
            );
        }
        None => md += "Cost: no seed has both a finished auto chain and the whole grid.",
    }
    md.push_str("\n\n");
    md
}

/// What Algorithm 1 cost against the grid, per seed (the mean over the seeds with a finished
/// auto chain and the whole grid): networks trained and wall time, the first fit counted in both
/// (the same network).
struct AutoCost {
    seeds: usize,
    fixed: usize,
    auto_runs: f64,
    auto_seconds: f64,
    grid_runs: f64,
    grid_seconds: f64,
}

fn auto_cost(experiment: &Experiment) -> Option<AutoCost> {
    let alphas = experiment.alphas();
    let fixed: Vec<Alpha> = alphas
        .iter()
        .copied()
        .filter(|a| matches!(a, Alpha::Fixed(_)))
        .collect();
    let (mut auto_runs, mut auto_seconds, mut grid_runs, mut grid_seconds) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for seed in experiment.seeds() {
        let of_seed: Vec<&Chain> = experiment
            .chains
            .iter()
            .filter(|c| c.record.seed == seed)
            .collect();
        // Step 0 was trained once per seed; the chains that copied it record 0 seconds.
        let first_fit = of_seed
            .iter()
            .filter_map(|c| c.tests.iter().find(|r| r.step == 0).map(|r| r.seconds))
            .fold(0.0, f64::max);
        let later = |c: &Chain| -> (usize, f64) {
            let rows = c.tests.iter().filter(|r| r.step > 0).chain(&c.probe);
            rows.fold((0, 0.0), |(n, s), r| (n + 1, s + r.seconds))
        };
        let Some(auto) = of_seed.iter().find(|c| c.record.alpha == Alpha::Auto) else {
            continue;
        };
        // A probe copied from the alpha = 0 chain (0 seconds in its row) cost what that step
        // cost: auto alone would have trained it.
        let alpha_zero = of_seed.iter().find(|c| c.record.alpha == Alpha::Fixed(0.0));
        let probe_copies: f64 = auto
            .probe
            .iter()
            .filter(|r| r.seconds == 0.0)
            .filter_map(|r| alpha_zero.and_then(|c| c.tests.iter().find(|t| t.step == r.step)))
            .map(|t| t.seconds)
            .sum();
        let grid: Vec<&Chain> = of_seed
            .iter()
            .copied()
            .filter(|c| fixed.contains(&c.record.alpha) && c.tests.len() >= experiment.steps)
            .collect();
        if grid.len() < fixed.len() || auto.tests.len() < experiment.steps {
            continue;
        }
        let (n, s) = later(auto);
        auto_runs.push(1.0 + n as f64);
        auto_seconds.push(first_fit + s + probe_copies);
        let (n, s) = grid
            .iter()
            .map(|c| later(c))
            .fold((0, 0.0), |(n, s), (m, t)| (n + m, s + t));
        grid_runs.push(1.0 + n as f64);
        grid_seconds.push(first_fit + s);
    }
    let mean = |v: &[f64]| Stats::of(v).map_or(0.0, |s| s.mean);
    (!auto_runs.is_empty()).then(|| AutoCost {
        seeds: auto_runs.len(),
        fixed: fixed.len(),
        auto_runs: mean(&auto_runs),
        auto_seconds: mean(&auto_seconds),
        grid_runs: mean(&grid_runs),
        grid_seconds: mean(&grid_seconds),
    })
}

fn missing_section(experiment: &Experiment) -> String {
    let unfinished: Vec<String> = experiment
        .chains
        .iter()
        .filter(|c| c.tests.len() < experiment.steps)
        .map(|c| {
            format!(
                "- `{}`: {} of {} steps finished",
                c.dir
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into()),
                c.tests.len(),
                experiment.steps
            )
        })
        .collect();
    let mut unfinished = unfinished;
    unfinished.extend(
        experiment
            .not_started
            .iter()
            .map(|name| format!("- `{name}`: not started (or in a directory not given)")),
    );
    if unfinished.is_empty() {
        return String::new();
    }
    format!(
        "## Unfinished chains\n\nThe tables above leave out what these have not trained yet \
         (rerun the same command to finish them):\n\n{}\n\n",
        unfinished.join("\n")
    )
}

/// The wall time of each chain, and in all.
fn chain_times(experiment: &Experiment) -> String {
    let mut md = String::new();
    md += "Wall time per step (training, validation, checkpoints and the test evaluation; an \
           auto chain's steps also count their probe; a step 0 copied from another chain of the \
           same seed, where it is the same network, counts 0, and so does an auto chain's probe \
           of step 1 copied from the alpha = 0 chain) and training images per second, \
           per chain, summed over steps:\n\n| chain | steps | seconds | mean images/s |\n\
           |---|---:|---:|---:|\n";
    let mut total = 0.0;
    for chain in &experiment.chains {
        let seconds: f64 = chain
            .tests
            .iter()
            .chain(&chain.probe)
            .map(|r| r.seconds)
            .sum();
        let speeds: Vec<f64> = chain.metrics.iter().map(|m| m.images_per_s).collect();
        total += seconds;
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} |",
            chain
                .dir
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into()),
            chain.tests.len(),
            seconds,
            Stats::of(&speeds).map_or(0.0, |s| s.mean)
        );
    }
    let _ = writeln!(
        md,
        "\nIn all {} of training. Per step in `timing.csv`.\n",
        if total >= 3600.0 {
            format!("{:.1} hours", total / 3600.0)
        } else {
            format!("{:.1} minutes", total / 60.0)
        }
    );
    md
}

fn run_section(experiment: &Experiment, out: &Path) -> String {
    let mut md = format!("{RUN_SECTION}\n\n");
    if !experiment.chains.is_empty() {
        md += &chain_times(experiment);
    }
    for label_noise in experiment.noise_levels() {
        let Some(cost) = auto_cost(&experiment.at_noise(label_noise)) else {
            continue;
        };
        let AutoCost {
            seeds,
            fixed,
            auto_runs,
            grid_runs,
            ..
        } = cost;
        let (auto_minutes, grid_minutes) = (cost.auto_seconds / 60.0, cost.grid_seconds / 60.0);
        let ratio = cost.auto_seconds / cost.grid_seconds.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            md,
            "Algorithm 1 against the grid at label noise {label_noise}, per seed (mean over \
             {seeds} seed(s); the first fit counted in each, and a probe copied from the alpha = \
             0 chain at what it cost there): auto trained {auto_runs:.0} networks in \
             {auto_minutes:.1} minutes, the grid of {fixed} fixed alphas {grid_runs:.0} in \
             {grid_minutes:.1} minutes: auto took {ratio:.2}x the grid's wall time.\n"
        );
    }
    for (dir, info) in &experiment.infos {
        let Hardware {
            cpu,
            logical_cpus,
            rayon_threads,
            device,
            os,
        } = &info.hardware;
        let dir = relative(out, dir);
        let shard = info
            .shard
            .map_or(String::new(), |s| format!(" (shard {s})"));
        let threads = rayon_threads
            .as_ref()
            .map_or(String::new(), |t| format!(", RAYON_NUM_THREADS={t}"));
        let _ = writeln!(
            md,
            "- `{}`{shard}: commit {}, {cpu} ({logical_cpus} logical CPUs{threads}), device \
             {device}, {os}",
            dir.display(),
            info.git_commit
        );
    }
    let _ = writeln!(
        md,
        "\nThe profile as run:\n\n```toml\n{}```",
        experiment.infos[0].1.profile_toml
    );
    md
}

fn write_accuracy_csv(path: &Path, experiment: &Experiment) -> Result<()> {
    let mut rows = Vec::new();
    for label_noise in experiment.noise_levels() {
        let part = experiment.at_noise(label_noise);
        for alpha in part.alphas() {
            for step in 0..part.steps {
                let (Some(best), Some(last)) = (
                    part.stats(alpha, step, true),
                    part.stats(alpha, step, false),
                ) else {
                    continue;
                };
                rows.push([
                    label_noise.to_string(),
                    alpha.to_string(),
                    step.to_string(),
                    best.n.to_string(),
                    best.mean.to_string(),
                    best.std.to_string(),
                    last.mean.to_string(),
                    last.std.to_string(),
                ]);
            }
        }
    }
    let header = [
        "label_noise",
        "alpha",
        "step",
        "seeds",
        "test_acc_best_mean",
        "test_acc_best_std",
        "test_acc_final_mean",
        "test_acc_final_std",
    ];
    Ok(write_csv(path, &header, rows)?)
}

fn write_steps_csv(path: &Path, experiment: &Experiment) -> Result<()> {
    let mut rows = Vec::new();
    for chain in &experiment.chains {
        for r in &chain.tests {
            rows.push([
                chain.record.settings.label_noise.to_string(),
                chain.record.alpha.to_string(),
                chain.record.seed.to_string(),
                r.step.to_string(),
                r.alpha.to_string(),
                r.test_acc_best.to_string(),
                r.test_acc_final.to_string(),
                r.best_epoch.to_string(),
                r.best_val_acc.to_string(),
            ]);
        }
    }
    let header = [
        "label_noise",
        "alpha",
        "seed",
        "step",
        "alpha_used",
        "test_acc_best",
        "test_acc_final",
        "best_epoch",
        "best_val_acc",
    ];
    Ok(write_csv(path, &header, rows)?)
}

fn write_auto_csv(path: &Path, experiment: &Experiment) -> Result<()> {
    let mut rows = Vec::new();
    for chain in experiment.of(Alpha::Auto) {
        for r in &chain.auto {
            rows.push([
                chain.record.settings.label_noise.to_string(),
                chain.record.seed.to_string(),
                r.step.to_string(),
                r.optimal.map_or(String::new(), |o| o.to_string()),
                r.alpha.to_string(),
                r.probe_test_acc_best.to_string(),
                r.probe_test_acc_final.to_string(),
            ]);
        }
    }
    let header = [
        "label_noise",
        "seed",
        "step",
        "optimal_alpha",
        "alpha",
        "probe_test_acc_best",
        "probe_test_acc_final",
    ];
    Ok(write_csv(path, &header, rows)?)
}

fn write_timing_csv(path: &Path, experiment: &Experiment) -> Result<()> {
    let mut rows = Vec::new();
    for chain in &experiment.chains {
        for r in &chain.tests {
            let speeds: Vec<f64> = chain
                .metrics
                .iter()
                .filter(|m| m.step == r.step)
                .map(|m| m.images_per_s)
                .collect();
            rows.push([
                chain.record.settings.label_noise.to_string(),
                chain.record.alpha.to_string(),
                chain.record.seed.to_string(),
                r.step.to_string(),
                format!("{:.3}", r.seconds),
                format!("{:.1}", Stats::of(&speeds).map_or(0.0, |s| s.mean)),
            ]);
        }
    }
    let header = [
        "label_noise",
        "alpha",
        "seed",
        "step",
        "seconds",
        "images_per_s",
    ];
    Ok(write_csv(path, &header, rows)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(alpha: f64, seed: u64, accuracies: &[f64]) -> Chain {
        let settings = crate::profile::load(&crate::profile::locate("smoke").unwrap(), &[])
            .unwrap()
            .settings(0.0);
        Chain {
            record: ChainRecord {
                alpha: Alpha::Fixed(alpha),
                seed,
                steps: accuracies.len(),
                settings,
            },
            dir: format!("alpha-{alpha}_seed-{seed}").into(),
            tests: accuracies
                .iter()
                .enumerate()
                .map(|(step, &acc)| StepResult {
                    step,
                    alpha,
                    test_acc_final: acc,
                    test_acc_best: acc,
                    best_epoch: 0,
                    best_val_acc: acc,
                    last_checkpoint: PathBuf::new(),
                    seconds: 0.0,
                })
                .collect(),
            metrics: Vec::new(),
            auto: Vec::new(),
            probe: Vec::new(),
        }
    }

    #[test]
    fn paired_differences_say_which_intervals_exclude_zero() {
        let experiment = Experiment {
            infos: Vec::new(),
            chains: vec![
                // alpha 0.5: +3, +3, +3.1 points over the same seed's first fit.
                chain(0.5, 0, &[0.80, 0.83]),
                chain(0.5, 1, &[0.81, 0.84]),
                chain(0.5, 2, &[0.79, 0.821]),
                // alpha 0: -1, +1, -2: the interval includes 0.
                chain(0.0, 0, &[0.80, 0.79]),
                chain(0.0, 1, &[0.81, 0.82]),
                chain(0.0, 2, &[0.79, 0.77]),
            ],
            steps: 2,
            not_started: Vec::new(),
        };
        let md = paired_section(&experiment, &experiment.alphas());
        assert!(md.contains("3 seed(s) here"), "{md}");
        assert!(
            md.contains("Above the first fit at 95%: alpha 0.5 at step 1 (+3.03 ["),
            "{md}"
        );
        assert!(
            md.contains("The other 1 of the 2 intervals include 0."),
            "{md}"
        );
        assert!(!md.contains("Below it"), "{md}");
        // One row for step 1: alpha 0's cell without a star, alpha 0.5's with one.
        let row = md.lines().find(|l| l.starts_with("| 1 |")).unwrap();
        assert_eq!(row.matches('*').count(), 1, "{row}");
        assert!(row.trim_end().ends_with("* |"), "{row}");

        // One seed: no interval, and said so.
        let single = Experiment {
            chains: vec![chain(0.5, 0, &[0.80, 0.83])],
            ..experiment
        };
        let md = paired_section(&single, &single.alphas());
        assert!(
            md.contains("(n = 1)") && md.contains("No cell has two seeds"),
            "{md}"
        );
    }
}
