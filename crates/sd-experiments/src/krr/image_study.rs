//! The kernel on real images: self-distillation of kernel ridge regression on an image data set
//! (Fashion-MNIST in the `fmnist` profile), for several alphas, on clean labels and with label
//! noise, on an exact subset of the training images and on all of them by Nyström: the results
//! that REPORT.md's "Kernel ridge regression on images" shows (the report renders the section,
//! its table and figures from the runs' `run.json`).
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

use std::path::{Path, PathBuf};

use sd_alpha::Alpha;
use sd_train::files::{create_dir, write_atomic, write_json};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::krr::images::ImageSource;
use crate::krr::{KernelChoice, KrrConfig, KrrReport, NystromChoice, SolverChoice, output};

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

/// The study's two routes: the exact kernel matrix of a subset (Cholesky solver), or Nyström on
/// every training image. Text form and serde: `exact`, `nystrom`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Route {
    /// Cholesky on the first `train_size` training images.
    Exact,
    /// Nyström on all training images.
    Nystrom,
}

impl Route {
    /// `exact` or `nystrom`, as directory names and `accuracy.csv` write it.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// What determines a run's numbers, as `run.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// The route.
    pub route: Route,
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

    /// The routes the study takes (exact first: it is quicker).
    fn routes(&self) -> Vec<Route> {
        [
            (Route::Exact, self.train_size > 0),
            (Route::Nystrom, self.nystrom > 0),
        ]
        .into_iter()
        .filter_map(|(route, taken)| taken.then_some(route))
        .collect()
    }

    /// The seeds of a run of `route` at `label_noise`: all of them, or the first alone for a
    /// run with no randomness (the exact route on clean labels).
    fn seeds_of(&self, route: Route, label_noise: f64) -> &[u64] {
        if route == Route::Nystrom || label_noise > 0.0 {
            &self.seeds
        } else {
            &self.seeds[..1]
        }
    }

    /// Route, label noise and seed of every run, in the order they run.
    fn keys(&self) -> Vec<(Route, f64, u64)> {
        let mut keys = Vec::new();
        for route in self.routes() {
            for &label_noise in &self.label_noise {
                for &seed in self.seeds_of(route, label_noise) {
                    keys.push((route, label_noise, seed));
                }
            }
        }
        keys
    }

    /// Whether `settings` are those of one of this study's runs, the data set aside (its path,
    /// and the size of the Nyström route's, which is all of it).
    fn made(&self, settings: &RunSettings) -> bool {
        let landmarks = (settings.route == Route::Nystrom).then_some(self.nystrom);
        self.keys()
            .contains(&(settings.route, settings.label_noise, settings.seed))
            && (settings.route == Route::Nystrom || settings.chosen == self.train_size)
            && settings.landmarks == landmarks
            && (settings.gamma, settings.lambda, settings.steps)
                == (self.gamma, self.lambda, self.steps)
            && settings.alphas == self.alphas
    }

    /// The settings of every run, in the order they run, checked against a data set of
    /// `available` training images.
    fn runs(&self, available: usize) -> Result<Vec<RunSettings>> {
        let mut runs = Vec::new();
        for route in self.routes() {
            let chosen = match route {
                Route::Exact => self.train_size,
                Route::Nystrom => available,
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
            if route == Route::Nystrom && self.nystrom > chosen - val_size {
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
                for &seed in self.seeds_of(route, label_noise) {
                    runs.push(RunSettings {
                        route,
                        data: self.data.display().to_string(),
                        chosen,
                        val_size,
                        landmarks: (route == Route::Nystrom).then_some(self.nystrom),
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

/// `<route>-noise-<p>-seed-<s>`: a run's directory.
fn dir_name(route: Route, label_noise: f64, seed: u64) -> String {
    format!("{}-noise-{label_noise}-seed-{seed}", route.name())
}

impl RunSettings {
    fn dir_name(&self) -> String {
        dir_name(self.route, self.label_noise, self.seed)
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

/// Runs the study into `dir` (created if needed), one directory per run, reusing complete runs;
/// returns every run's result. What it stores are results (`run.json` and each alpha's JSON
/// report); REPORT.md's section, `accuracy.csv` and the figures are rendered from them by the
/// report.
pub fn image_study(study: &ImageStudy, dir: &Path, show_progress: bool) -> Result<Vec<RunResult>> {
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
    Ok(results)
}

/// The complete runs of `study` in `dir`, in the order the study runs them: what REPORT.md's
/// section is made of. A run directory whose `run.json` was computed with other settings than
/// the study's (an earlier profile's) is left out with a warning; one without `run.json` is
/// not finished.
pub fn completed_runs(study: &ImageStudy, dir: &Path) -> Result<Vec<RunResult>> {
    let mut results = Vec::new();
    for (route, label_noise, seed) in study.keys() {
        let file = dir.join(dir_name(route, label_noise, seed)).join(RUN_FILE);
        let Some(result) = read_run(&file)? else {
            continue;
        };
        if study.made(&result.settings) {
            results.push(result);
        } else {
            tracing::warn!(
                "{} was computed with other settings than the profile's kernel study; left out \
                 of the report",
                file.display()
            );
        }
    }
    Ok(results)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn study(data: PathBuf) -> ImageStudy {
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

    /// A fixture of 150 training and 40 test images in `dir`.
    pub(crate) fn fixture(dir: &Path) -> PathBuf {
        let data = dir.join("fx");
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
        data
    }

    #[test]
    fn the_study_stores_its_runs_reuses_finished_ones_and_refuses_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let data = fixture(dir.path());
        let out = dir.path().join("images");
        let results = image_study(&study(data.clone()), &out, false).unwrap();
        // Exact: 1 clean run (deterministic) and 2 noisy; Nyström: 2 and 2.
        let runs: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("-seed-"))
            .collect();
        assert_eq!(runs.len(), 7, "{runs:?}");
        assert_eq!(results.len(), 7);
        // Results only: no markdown, no table, no figure (the report renders those).
        let written: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.contains("-seed-"))
            .collect();
        assert!(written.is_empty(), "{written:?}");
        let exact = &results[1];
        assert_eq!(
            (
                exact.settings.route,
                exact.settings.label_noise,
                exact.n_train
            ),
            (Route::Exact, 0.3, 72)
        );
        // Step 0 is the same fit for every alpha of a run.
        let first: Vec<f64> = exact.runs.iter().map(|a| a.accuracy[0]).collect();
        assert!(first.iter().all(|a| *a == first[0]), "{first:?}");
        assert_eq!(completed_runs(&study(data.clone()), &out).unwrap(), results);

        // A finished run is read back, not computed again; a run cut short is computed again.
        let kept = out.join("nystrom-noise-0.3-seed-1").join(RUN_FILE);
        let before = std::fs::read(&kept).unwrap();
        let cut = out.join("exact-noise-0.3-seed-0");
        std::fs::remove_file(cut.join(RUN_FILE)).unwrap();
        assert_eq!(completed_runs(&study(data.clone()), &out).unwrap().len(), 6);
        let again = image_study(&study(data.clone()), &out, false).unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), before);
        assert!(cut.join(RUN_FILE).is_file());
        let numbers =
            |r: &[RunResult]| -> Vec<Vec<AlphaRun>> { r.iter().map(|r| r.runs.clone()).collect() };
        assert_eq!(numbers(&again), numbers(&results));

        // Other settings are refused with the difference named, and nothing is changed; the
        // runs of other settings are not this study's.
        let mut other = study(data);
        other.steps = 4;
        let err = image_study(&other, &out, false).unwrap_err().to_string();
        assert!(err.contains("steps 3 there, 4 now"), "{err}");
        assert_eq!(std::fs::read(&kept).unwrap(), before);
        assert!(completed_runs(&other, &out).unwrap().is_empty());
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
