//! The kernel on real images: self-distillation of kernel ridge regression on an image data set
//! (Fashion-MNIST in the `fmnist` profile), for several alphas, on clean labels and with label
//! noise, on an exact subset of the training images and on all of them by Nyström. REPORT.md's
//! "Kernel ridge regression on images" section.
//!
//! The problem is `krr --images`' ([`super::images`]): pixels / 255, one-hot targets, RBF kernel,
//! accuracy by argmax on all test images. Every alpha of a run trains on the same images: a tenth
//! of the chosen training images is held out (the validation split `alpha = auto` chooses its
//! alphas on) for all of them, so the columns of a table differ only in alpha.
//!
//! A *run* is one route, one noise level and one seed. The seed draws the label noise and the
//! Nyström landmarks; a run with neither (the exact route on clean labels) is deterministic and
//! runs once. Each run is written to `<dir>/<route>-noise-<p>-seed-<s>/` when it is complete
//! (`run.json` last), and an existing complete run with the same settings is read back instead of
//! computed again, so a killed study continues where it stopped; one with other settings is
//! refused with the difference named.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sd_alpha::Alpha;
use sd_train::files::{create_dir, write_atomic, write_csv, write_json};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::krr::images::ImageSource;
use crate::krr::{KernelChoice, KrrConfig, KrrReport, NystromChoice, SolverChoice, output};
use crate::plot::{self, AccuracySeries};
use crate::report::{Stats, paired_interval};

/// What the study runs (the profile's `kernel_*` fields).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageStudy {
    /// The image data set (an IDX directory or CIFAR-10 files).
    pub data: PathBuf,
    /// Training images of the exact route, the first in file order (0: no exact runs).
    pub train_size: usize,
    /// Landmarks of the Nyström route on all training images (0: no Nyström runs).
    pub nystrom: usize,
    /// Label-noise levels, each in `[0, 1)`.
    pub label_noise: Vec<f64>,
    /// Ground-truth weights.
    pub alphas: Vec<Alpha>,
    /// Steps, step 0 included.
    pub steps: usize,
    /// RBF `gamma`.
    pub gamma: f64,
    /// Ridge `lambda`.
    pub lambda: f64,
    /// Seeds of the label noise and the landmarks.
    pub seeds: Vec<u64>,
}

/// The two routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudyRoute {
    /// Cholesky on the first `train_size` training images.
    Exact,
    /// Nyström on all training images.
    Nystrom,
}

impl StudyRoute {
    fn name(self) -> &'static str {
        match self {
            StudyRoute::Exact => "exact",
            StudyRoute::Nystrom => "nystrom",
        }
    }
}

/// What determines a run's numbers, as `run.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// The route.
    pub route: StudyRoute,
    /// The data set's path.
    pub data: String,
    /// Training images chosen (validation included).
    pub chosen: usize,
    /// Of those, held out for choosing alpha.
    pub val_size: usize,
    /// Nyström landmarks.
    pub landmarks: Option<usize>,
    /// Label noise.
    pub label_noise: f64,
    /// Seed of the noise and of the landmarks.
    pub seed: u64,
    /// RBF `gamma`.
    pub gamma: f64,
    /// Ridge.
    pub lambda: f64,
    /// Steps.
    pub steps: usize,
    /// Alphas, in the order of `runs`.
    pub alphas: Vec<Alpha>,
}

/// One alpha of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlphaRun {
    /// The alpha asked for.
    pub alpha: Alpha,
    /// Test accuracy per step (a fraction).
    pub accuracy: Vec<f64>,
    /// Test mean squared error per step.
    pub loss: Vec<f64>,
    /// The alpha each step used (`None` at step 0).
    pub alpha_used: Vec<Option<f64>>,
    /// The limit's alpha and test accuracy, where the limit is defined.
    pub limit: Option<(f64, f64)>,
}

/// A finished run (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Its settings.
    pub settings: RunSettings,
    /// Training images the model was fitted on.
    pub n_train: usize,
    /// Test images.
    pub n_test: usize,
    /// Training and validation labels the noise changed.
    pub labels_changed: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// One per alpha.
    pub runs: Vec<AlphaRun>,
}

/// `run.json`: written last, so its presence means the run is complete.
const RUN_FILE: &str = "run.json";

impl ImageStudy {
    /// Checks the settings against a data set of `training_images` training images, before
    /// anything is written.
    pub fn check_against(&self, training_images: usize) -> Result<()> {
        self.check()?;
        self.runs(training_images).map(drop)
    }

    fn check(&self) -> Result<()> {
        if self.alphas.is_empty() {
            return Err(Error::setting("kernel_alphas", "must not be empty"));
        }
        if self.seeds.is_empty() {
            return Err(Error::setting("kernel_seeds", "must not be empty"));
        }
        if self.label_noise.is_empty() {
            return Err(Error::setting("kernel_label_noise", "must not be empty"));
        }
        if let Some(p) = self.label_noise.iter().find(|p| !(0.0..1.0).contains(*p)) {
            return Err(Error::setting(
                "kernel_label_noise",
                format!("must lie in [0, 1), got {p}"),
            ));
        }
        if self.steps == 0 {
            return Err(Error::setting("kernel_steps", "must be at least 1"));
        }
        if self.train_size == 1 {
            return Err(Error::setting(
                "kernel_train_size",
                "must be 0 (no exact runs) or at least 2 (a tenth is held out)",
            ));
        }
        if self.train_size == 0 && self.nystrom == 0 {
            return Err(Error::setting(
                "kernel_train_size",
                "and kernel_nystrom are both 0: nothing to run",
            ));
        }
        Ok(())
    }

    /// The settings of every run, in the order they run (exact first: it is quicker).
    fn runs(&self, available: usize) -> Result<Vec<RunSettings>> {
        let mut runs = Vec::new();
        for route in [StudyRoute::Exact, StudyRoute::Nystrom] {
            let chosen = match route {
                StudyRoute::Exact if self.train_size > 0 => self.train_size,
                StudyRoute::Nystrom if self.nystrom > 0 => available,
                _ => continue,
            };
            if chosen > available {
                return Err(Error::setting(
                    "kernel_train_size",
                    format!(
                        "{chosen} is more than the {available} training images of {}",
                        self.data.display()
                    ),
                ));
            }
            let val_size = (chosen / 10).max(1);
            if route == StudyRoute::Nystrom && self.nystrom > chosen - val_size {
                return Err(Error::setting(
                    "kernel_nystrom",
                    format!(
                        "{} is more than the {} training images left after the validation split",
                        self.nystrom,
                        chosen - val_size
                    ),
                ));
            }
            for &label_noise in &self.label_noise {
                let random = route == StudyRoute::Nystrom || label_noise > 0.0;
                let seeds = if random {
                    &self.seeds[..]
                } else {
                    &self.seeds[..1]
                };
                for &seed in seeds {
                    runs.push(RunSettings {
                        route,
                        data: self.data.display().to_string(),
                        chosen,
                        val_size,
                        landmarks: (route == StudyRoute::Nystrom).then_some(self.nystrom),
                        label_noise,
                        seed,
                        gamma: self.gamma,
                        lambda: self.lambda,
                        steps: self.steps,
                        alphas: self.alphas.clone(),
                    });
                }
            }
        }
        Ok(runs)
    }
}

impl RunSettings {
    fn dir_name(&self) -> String {
        format!(
            "{}-noise-{}-seed-{}",
            self.route.name(),
            self.label_noise,
            self.seed
        )
    }

    fn config(&self) -> KrrConfig {
        KrrConfig {
            kernel: KernelChoice::Rbf { gamma: self.gamma },
            lambda: self.lambda,
            alpha: self.alphas[0],
            clamp: false,
            steps: self.steps,
            data: None,
            images: Some(ImageSource {
                path: PathBuf::from(&self.data),
                train_size: Some(self.chosen),
                test_size: None,
                val_size: Some(self.val_size),
                subset_seed: None,
                label_noise: self.label_noise,
                noise_seed: self.seed,
                standardize: false,
            }),
            targets: Vec::new(),
            test: None,
            solver: SolverChoice::Cholesky,
            nystrom: self.landmarks.map(|landmarks| NystromChoice {
                landmarks,
                seed: self.seed,
            }),
            need_spectrum: false,
            need_curves: false,
            show_progress: false,
        }
    }

    /// The fields in which `self` (recorded) and `now` differ, in words.
    fn differences(&self, now: &RunSettings) -> Vec<String> {
        let (a, b) = (
            serde_json::to_value(self).expect("settings serialise"),
            serde_json::to_value(now).expect("settings serialise"),
        );
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec!["everything".into()];
        };
        a.iter()
            .filter(|(key, value)| b.get(*key) != Some(value))
            .map(|(key, value)| {
                let now = b.get(key).map_or("nothing".into(), |v| v.to_string());
                format!("{key} {value} there, {now} now")
            })
            .collect()
    }
}

fn run_one(settings: &RunSettings, n_test: usize) -> Result<(RunResult, Vec<KrrReport>)> {
    let started = std::time::Instant::now();
    let reports = crate::krr::run_alphas(&settings.config(), &settings.alphas)?;
    let first = &reports[0];
    let runs = reports
        .iter()
        .map(|report| AlphaRun {
            alpha: report.alpha,
            accuracy: report
                .steps
                .iter()
                .map(|s| s.accuracy.unwrap_or(f64::NAN))
                .collect(),
            loss: report
                .steps
                .iter()
                .map(|s| s.loss.unwrap_or(f64::NAN))
                .collect(),
            alpha_used: report.steps.iter().map(|s| s.alpha).collect(),
            limit: report
                .limit
                .as_ref()
                .map(|l| (l.alpha, l.accuracy.unwrap_or(f64::NAN))),
        })
        .collect();
    let result = RunResult {
        settings: settings.clone(),
        n_train: first.n_train,
        n_test,
        labels_changed: first.images.as_ref().map_or(0, |(_, changed)| *changed),
        seconds: started.elapsed().as_secs_f64(),
        runs,
    };
    Ok((result, reports))
}

/// Runs the study into `dir` (created if needed), reusing complete runs, and writes its
/// `section.md`, `accuracy.csv` and figures. Returns the section's path.
pub fn image_study(study: &ImageStudy, dir: &Path, show_progress: bool) -> Result<PathBuf> {
    study.check()?;
    let dataset = sd_data::Dataset::open(&study.data)?;
    let runs = study.runs(dataset.train.len())?;
    let n_test = dataset.test.len();
    drop(dataset);
    create_dir(dir)?;
    let mut results = Vec::with_capacity(runs.len());
    for (index, settings) in runs.iter().enumerate() {
        let run_dir = dir.join(settings.dir_name());
        let file = run_dir.join(RUN_FILE);
        if let Some(done) = read_run(&file)? {
            let differences = done.settings.differences(settings);
            if !differences.is_empty() {
                return Err(Error::setting(
                    "kernel study",
                    format!(
                        "{} was computed with other settings ({}); use another output \
                         directory, or remove {} to compute it again",
                        file.display(),
                        differences.join(", "),
                        run_dir.display()
                    ),
                ));
            }
            results.push(done);
            continue;
        }
        if show_progress {
            eprintln!(
                "kernel on images, run {} of {}: {}",
                index + 1,
                runs.len(),
                run_dir.display()
            );
        }
        let (result, reports) = run_one(settings, n_test)?;
        create_dir(&run_dir)?;
        for report in &reports {
            write_atomic(
                &run_dir.join(format!("alpha-{}.json", report.alpha)),
                output::json(report).as_bytes(),
            )?;
        }
        write_json(&file, &result)?;
        tracing::info!(
            run = %run_dir.display(),
            seconds = result.seconds,
            "kernel on images"
        );
        results.push(result);
    }
    write_accuracy_csv(&dir.join("accuracy.csv"), &results)?;
    let mut figures = Vec::new();
    for route in [StudyRoute::Exact, StudyRoute::Nystrom] {
        let panels = panels(study, &results, route);
        if panels.is_empty() {
            continue;
        }
        let name = format!("accuracy-{}", route.name());
        plot::write_panels_figure(dir, &name, &panels, "test accuracy (%)")?;
        figures.push(name);
    }
    let section = dir.join("section.md");
    write_atomic(
        &section,
        section_markdown(study, &results, &figures).as_bytes(),
    )?;
    Ok(section)
}

fn read_run(file: &Path) -> Result<Option<RunResult>> {
    match std::fs::read_to_string(file) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::setting(
                "kernel study",
                format!(
                    "{} cannot be read ({e}); remove its directory to compute the run again",
                    file.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(file)(e)),
    }
}

/// The runs of one route and noise level (one per seed).
fn of(results: &[RunResult], route: StudyRoute, noise: f64) -> Vec<&RunResult> {
    results
        .iter()
        .filter(|r| r.settings.route == route && r.settings.label_noise == noise)
        .collect()
}

/// Per step: the accuracies of `alpha` over the runs (seeds).
fn accuracies(runs: &[&RunResult], alpha: Alpha, step: usize) -> Vec<f64> {
    runs.iter()
        .filter_map(|r| r.runs.iter().find(|a| a.alpha == alpha))
        .filter_map(|a| a.accuracy.get(step).copied())
        .collect()
}

/// Per seed: the accuracy of `alpha` at its last step minus step 0's (the first fit, the same
/// for every alpha of a run).
fn last_minus_first(runs: &[&RunResult], alpha: Alpha) -> Vec<f64> {
    runs.iter()
        .filter_map(|r| r.runs.iter().find(|a| a.alpha == alpha))
        .filter_map(|a| Some(a.accuracy.last()? - a.accuracy.first()?))
        .collect()
}

fn panels(
    study: &ImageStudy,
    results: &[RunResult],
    route: StudyRoute,
) -> Vec<(String, Vec<AccuracySeries>)> {
    let mut panels = Vec::new();
    for &noise in &study.label_noise {
        let runs = of(results, route, noise);
        if runs.is_empty() {
            continue;
        }
        let series = study
            .alphas
            .iter()
            .map(|&alpha| AccuracySeries {
                label: format!("α = {alpha}"),
                points: (0..study.steps)
                    .filter_map(|step| {
                        let stats = Stats::of(&accuracies(&runs, alpha, step))?;
                        Some((step, 100.0 * stats.mean, 100.0 * stats.std))
                    })
                    .collect(),
                shade: match alpha {
                    Alpha::Fixed(a) => Some(a),
                    Alpha::Auto => None,
                },
            })
            .collect();
        panels.push((
            format!(
                "{}, label noise {:.0}%",
                route_title(route, runs[0]),
                100.0 * noise
            ),
            series,
        ));
    }
    panels
}

fn route_title(route: StudyRoute, run: &RunResult) -> String {
    match route {
        StudyRoute::Exact => format!("exact, N = {}", run.n_train),
        StudyRoute::Nystrom => format!(
            "Nyström M = {}, N = {}",
            run.settings.landmarks.unwrap_or(0),
            run.n_train
        ),
    }
}

fn percent(stats: Option<Stats>) -> String {
    match stats {
        Some(s) if s.n > 1 => format!("{:.2} ± {:.2}", 100.0 * s.mean, 100.0 * s.std),
        Some(s) => format!("{:.2}", 100.0 * s.mean),
        None => "-".into(),
    }
}

/// `+0.41 [0.12, 0.70]` in accuracy points, or `+0.41` for one seed.
fn difference(differences: &[f64]) -> String {
    match paired_interval(differences) {
        Some((mean, Some(half))) => format!(
            "{:+.2} [{:+.2}, {:+.2}]",
            100.0 * mean,
            100.0 * (mean - half),
            100.0 * (mean + half)
        ),
        Some((mean, None)) => format!("{:+.2}", 100.0 * mean),
        None => "-".into(),
    }
}

fn section_markdown(study: &ImageStudy, results: &[RunResult], figures: &[String]) -> String {
    let mut md = String::from("## Kernel ridge regression on images\n\n");
    let any = &results[0];
    let seeds = study
        .seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        md,
        "Self-distillation of kernel ridge regression on `{}`: pixels / 255, one-hot targets, \
         RBF kernel with gamma = {}, ridge lambda = {} (`K + lambda I`, unscaled), {} steps \
         (step 0 is the first fit). Test accuracy in percent on all {} test images, by argmax. \
         Every alpha of a run trains on the same images: a tenth of the chosen training images \
         is held out, and `auto` (Algorithm 1) chooses each step's alpha on them, never on the \
         test images. Label noise replaces each training and validation label with probability \
         p by a class drawn uniformly; test labels are untouched. Seeds {{{seeds}}} draw the \
         noise and the Nyström landmarks; a run with neither (exact route, clean labels) is \
         deterministic and runs once. Cells: the mean ± sample standard deviation over seeds; \
         `auto` cells give the mean chosen alpha in brackets.\n",
        any.settings.data, study.gamma, study.lambda, study.steps, any.n_test,
    );
    for route in [StudyRoute::Exact, StudyRoute::Nystrom] {
        let route_runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.settings.route == route)
            .collect();
        let Some(first) = route_runs.first() else {
            continue;
        };
        let _ = writeln!(
            md,
            "### {}\n\n{} training images ({} chosen, {} held out for choosing alpha){}.\n",
            match route {
                StudyRoute::Exact => "Exact (Cholesky), a subset",
                StudyRoute::Nystrom => "Nyström, all training images",
            },
            first.n_train,
            first.settings.chosen,
            first.settings.val_size,
            match first.settings.landmarks {
                Some(m) => format!(", {m} landmarks drawn uniformly without replacement (seeded)"),
                None => ", the first in file order".into(),
            }
        );
        for &noise in &study.label_noise {
            let runs = of(results, route, noise);
            if runs.is_empty() {
                continue;
            }
            let _ = writeln!(
                md,
                "Label noise {:.0}% ({} seed{}{}):\n",
                100.0 * noise,
                runs.len(),
                if runs.len() == 1 { "" } else { "s" },
                if noise > 0.0 {
                    format!(
                        ", {:.0} training and validation labels changed on average",
                        runs.iter().map(|r| r.labels_changed as f64).sum::<f64>()
                            / runs.len() as f64
                    )
                } else {
                    String::new()
                }
            );
            let titles: Vec<String> = study.alphas.iter().map(|a| format!("α = {a}")).collect();
            let _ = writeln!(md, "| step | {} |", titles.join(" | "));
            let _ = writeln!(md, "|---|{}", "---:|".repeat(titles.len()));
            for step in 0..study.steps {
                let cells: Vec<String> = study
                    .alphas
                    .iter()
                    .map(|&alpha| {
                        let cell = percent(Stats::of(&accuracies(&runs, alpha, step)));
                        match (alpha, mean_alpha_used(&runs, alpha, step)) {
                            (Alpha::Auto, Some(used)) => format!("{cell} ({used:.3})"),
                            _ => cell,
                        }
                    })
                    .collect();
                let _ = writeln!(md, "| {step} | {} |", cells.join(" | "));
            }
            let limits: Vec<String> = study
                .alphas
                .iter()
                .map(|&alpha| {
                    let values: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| r.runs.iter().find(|a| a.alpha == alpha))
                        .filter_map(|a| a.limit.map(|(_, acc)| acc))
                        .collect();
                    if values.len() == runs.len() {
                        percent(Stats::of(&values))
                    } else {
                        "-".into()
                    }
                })
                .collect();
            let _ = writeln!(md, "| limit | {} |", limits.join(" | "));
            let diffs: Vec<String> = study
                .alphas
                .iter()
                .map(|&alpha| difference(&last_minus_first(&runs, alpha)))
                .collect();
            let _ = writeln!(
                md,
                "| step {} − step 0 | {} |\n",
                study.steps - 1,
                diffs.join(" | ")
            );
        }
    }
    let _ = writeln!(
        md,
        "The last row is the paired difference, per seed, of the last step's accuracy and the \
         first fit's, in points, with its 95% confidence interval (Student's t over seeds) where \
         there are two seeds or more. Not shown: other gammas and lambdas (not tuned here), and \
         the variation from the choice of the exact subset (always the first images in file \
         order).\n"
    );
    if !figures.is_empty() {
        let links: Vec<String> = figures
            .iter()
            .map(|f| format!("[{f}](krr/images/{f}.png)"))
            .collect();
        let _ = writeln!(
            md,
            "Figures (PNG and SVG): test accuracy against step, one line per alpha, one panel \
             per noise level: {}. All numbers in `krr/images/accuracy.csv`; each run's full \
             reports in `krr/images/<route>-noise-<p>-seed-<s>/`.\n",
            links.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "**What the numbers show.** {}\n",
        findings(study, results)
    );
    md
}

fn mean_alpha_used(runs: &[&RunResult], alpha: Alpha, step: usize) -> Option<f64> {
    let values: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.runs.iter().find(|a| a.alpha == alpha))
        .filter_map(|a| *a.alpha_used.get(step)?)
        .collect();
    Stats::of(&values).map(|s| s.mean)
}

/// Two sentences from the numbers: on the route with the most training images, the noisiest
/// level's best alpha against the first fit and alpha 0, then the clean level's.
fn findings(study: &ImageStudy, results: &[RunResult]) -> String {
    let route = if results
        .iter()
        .any(|r| r.settings.route == StudyRoute::Nystrom)
    {
        StudyRoute::Nystrom
    } else {
        StudyRoute::Exact
    };
    let mut levels: Vec<f64> = study.label_noise.clone();
    levels.sort_by(|a, b| b.total_cmp(a));
    levels.dedup();
    let last = study.steps - 1;
    let sentence = |noise: f64| -> Option<String> {
        let runs = of(results, route, noise);
        let first = Stats::of(&accuracies(&runs, study.alphas[0], 0))?.mean;
        // The alpha with the best mean accuracy at the last step.
        let (best_alpha, best) = study
            .alphas
            .iter()
            .filter_map(|&a| Some((a, Stats::of(&accuracies(&runs, a, last))?.mean)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let diffs = last_minus_first(&runs, best_alpha);
        let verdict = match paired_interval(&diffs) {
            Some((mean, Some(half))) if mean - half > 0.0 || mean + half < 0.0 => format!(
                ", a difference of {:+.2} points whose 95% interval [{:+.2}, {:+.2}] excludes \
                 zero",
                100.0 * mean,
                100.0 * (mean - half),
                100.0 * (mean + half)
            ),
            Some((mean, Some(half))) => format!(
                ", a difference of {:+.2} points whose 95% interval [{:+.2}, {:+.2}] includes \
                 zero",
                100.0 * mean,
                100.0 * (mean - half),
                100.0 * (mean + half)
            ),
            Some((mean, None)) => format!(
                ", a difference of {:+.2} points from one seed (no interval)",
                100.0 * mean
            ),
            None => String::new(),
        };
        let zero = Stats::of(&accuracies(&runs, Alpha::Fixed(0.0), last))
            .map(|s| {
                format!(
                    "; alpha = 0 (no ground truth) ended at {:.2}% ({:+.2} points)",
                    100.0 * s.mean,
                    100.0 * (s.mean - first)
                )
            })
            .filter(|_| best_alpha != Alpha::Fixed(0.0))
            .unwrap_or_default();
        Some(format!(
            "With {:.0}% label noise ({}, {} seed{}), the best step-{last} accuracy was \
             alpha = {best_alpha}'s {:.2}% against the first fit's {:.2}%{verdict}{zero}.",
            100.0 * noise,
            route_title(route, runs[0]),
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            100.0 * best,
            100.0 * first,
        ))
    };
    let mut text = Vec::new();
    if let Some(&noisiest) = levels.first() {
        text.extend(sentence(noisiest));
    }
    if levels.len() > 1 {
        text.extend(sentence(*levels.last().expect("two levels")));
    }
    text.join(" ")
}

fn write_accuracy_csv(path: &Path, results: &[RunResult]) -> Result<()> {
    let mut rows = Vec::new();
    for result in results {
        let s = &result.settings;
        for run in &result.runs {
            let steps = run.accuracy.iter().enumerate().map(|(step, acc)| {
                (
                    step.to_string(),
                    run.alpha_used[step],
                    *acc,
                    run.loss.get(step).copied(),
                )
            });
            let limit = run
                .limit
                .map(|(alpha, acc)| ("limit".to_string(), Some(alpha), acc, None));
            for (step, used, accuracy, loss) in steps.chain(limit) {
                rows.push(vec![
                    s.route.name().to_string(),
                    s.label_noise.to_string(),
                    s.seed.to_string(),
                    result.n_train.to_string(),
                    s.landmarks.map_or(String::new(), |m| m.to_string()),
                    run.alpha.to_string(),
                    step,
                    used.map_or(String::new(), |a| a.to_string()),
                    accuracy.to_string(),
                    loss.map_or(String::new(), |l| l.to_string()),
                ]);
            }
        }
    }
    Ok(write_csv(
        path,
        &[
            "route",
            "label_noise",
            "seed",
            "n_train",
            "landmarks",
            "alpha",
            "step",
            "alpha_used",
            "accuracy",
            "loss",
        ],
        rows,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(data: PathBuf) -> ImageStudy {
        ImageStudy {
            data,
            train_size: 80,
            nystrom: 30,
            label_noise: vec![0.0, 0.3],
            alphas: vec![Alpha::Fixed(0.0), Alpha::Fixed(0.5), Alpha::Auto],
            steps: 3,
            gamma: 0.02,
            lambda: 0.1,
            seeds: vec![0, 1],
        }
    }

    #[test]
    fn the_study_writes_its_section_reuses_finished_runs_and_refuses_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("fx");
        sd_data::fixture::write_idx(
            &data,
            sd_data::fixture::FixtureSpec {
                train: 150,
                test: 40,
                seed: 0,
            },
            false,
        )
        .unwrap();
        let out = dir.path().join("images");
        let section = image_study(&study(data.clone()), &out, false).unwrap();
        let md = std::fs::read_to_string(&section).unwrap();
        // Exact: 1 clean run (deterministic) and 2 noisy; Nyström: 2 and 2.
        let runs: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("-seed-"))
            .collect();
        assert_eq!(runs.len(), 7, "{runs:?}");
        assert!(md.contains("### Exact (Cholesky), a subset"), "{md}");
        assert!(
            md.contains("72 training images (80 chosen, 8 held out"),
            "{md}"
        );
        assert!(md.contains("Label noise 30% (2 seeds"), "{md}");
        assert!(md.contains("| step 2 − step 0 |"), "{md}");
        assert!(md.contains("**What the numbers show.** With 30% label noise"));
        // Step 0 is the same fit for every alpha of a run.
        let csv = std::fs::read_to_string(out.join("accuracy.csv")).unwrap();
        let first: Vec<&str> = csv
            .lines()
            .filter(|l| l.starts_with("exact,0.3,1,") && l.contains(",0,,"))
            .map(|l| l.rsplit(',').nth(1).unwrap())
            .collect();
        assert_eq!(first.len(), 3, "{csv}");
        assert!(first.iter().all(|a| *a == first[0]), "{first:?}");
        for figure in ["accuracy-exact.png", "accuracy-nystrom.svg"] {
            assert!(out.join(figure).is_file(), "{figure}");
        }

        // A finished run is read back, not computed again; a run cut short is computed again.
        let kept = out.join("nystrom-noise-0.3-seed-1").join(RUN_FILE);
        let before = std::fs::read(&kept).unwrap();
        let cut = out.join("exact-noise-0.3-seed-0");
        std::fs::remove_file(cut.join(RUN_FILE)).unwrap();
        let again = image_study(&study(data.clone()), &out, false).unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), before);
        assert!(cut.join(RUN_FILE).is_file());
        assert_eq!(std::fs::read_to_string(again).unwrap(), md);

        // Other settings are refused with the difference named, and nothing is changed.
        let mut other = study(data);
        other.steps = 4;
        let err = image_study(&other, &out, false).unwrap_err().to_string();
        assert!(err.contains("steps 3 there, 4 now"), "{err}");
        assert_eq!(std::fs::read(&kept).unwrap(), before);
    }

    #[test]
    fn settings_that_cannot_run_are_refused_before_anything_runs() {
        type Change = fn(&mut ImageStudy);
        let base = study(PathBuf::from("unused"));
        let cases: [(Change, &str); 4] = [
            (|s| s.label_noise = vec![1.0], "must lie in [0, 1)"),
            (|s| s.train_size = 500, "more than the 150 training images"),
            (
                |s| s.nystrom = 140,
                "more than the 135 training images left",
            ),
            (
                |s| {
                    s.train_size = 0;
                    s.nystrom = 0;
                },
                "nothing to run",
            ),
        ];
        for (change, expected) in cases {
            let mut study = base.clone();
            change(&mut study);
            let err = study.check_against(150).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
