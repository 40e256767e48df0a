//! The paper's experiments as one job: the kernel part, then one distillation chain per
//! (alpha, seed) of a [`Profile`], each in its own directory `<out>/runs/alpha-<a>_seed-<s>/`
//! ([`sd_train::ChainDir`]), resumable and shardable, and the report after every chain.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sd_alpha::Alpha;
use sd_data::fixture::{self, FixtureSpec};
use sd_data::{Dataset, SplitConfig, Validation};
use sd_train::files::{create_dir, write_json};
use sd_train::{Chain, ChainData, ChainDir, ChainRecord, Start, TrainError};

use crate::error::{Error, Result};
use crate::plan::{ChainSpec, Shard, select};
use crate::profile::Profile;
use crate::report::{self, ExperimentInfo, Hardware};
use crate::terminal::Progress;

/// Where the data of `profile` is ([`Profile::data_in`]). A `fixture` is written there first
/// when it is not there yet, or not whole ([`fixture_dir`]).
pub fn data_path(profile: &Profile, out: &Path) -> Result<PathBuf> {
    if let Some(spec) = profile.fixture() {
        return fixture_dir(&profile.data_in(out), spec);
    }
    let path = PathBuf::from(&profile.data);
    if !path.exists() {
        return Err(Error::DataMissing {
            profile: profile.name.clone(),
            path,
            problem: "does not exist".into(),
            how: how_to_get(profile),
        });
    }
    Ok(path)
}

/// The fixture `spec` in `dir` ([`Profile::data_in`]), trusted only when it reads back whole
/// with its sizes. Otherwise it is generated into a temporary directory beside it, verified, and
/// renamed into place, so that a kill or a full disk never leaves a fixture that the next run
/// trusts, or one that blocks it (a damaged one of ours is replaced).
pub fn fixture_dir(dir: &Path, spec: FixtureSpec) -> Result<PathBuf> {
    let dir = dir.to_path_buf();
    let data = dir.parent().unwrap_or(Path::new("."));
    let whole = |dir: &Path| {
        Dataset::open(dir)
            .is_ok_and(|d| d.is_fixture && d.train.len() == spec.train && d.test.len() == spec.test)
    };
    if whole(&dir) {
        return Ok(dir);
    }
    create_dir(data)?;
    remove_stale_staging(data);
    let staging = tempfile::Builder::new()
        .prefix(".fixture-")
        .suffix(sd_train::files::TEMPORARY_SUFFIX)
        .tempdir_in(data)
        .map_err(Error::io(data))?;
    fixture::write_cifar10(staging.path(), spec)?;
    if !whole(staging.path()) {
        return Err(Error::io(staging.path())(std::io::Error::other(
            "the fixture just written does not read back",
        )));
    }
    if whole(&dir) {
        // Another process (a shard) put a fixture there meanwhile.
        return Ok(dir);
    }
    if dir.exists() {
        tracing::warn!("{} is not a whole fixture; writing it again", dir.display());
        // Moved aside first (a rename is atomic), then removed: a process that finds it at
        // that moment sees a whole fixture or none.
        let damaged = tempfile::Builder::new()
            .prefix(".fixture-damaged-")
            .suffix(sd_train::files::TEMPORARY_SUFFIX)
            .tempdir_in(data)
            .map_err(Error::io(data))?;
        let aside = damaged.path().join("fixture");
        match std::fs::rename(&dir, &aside) {
            Ok(()) => {}
            Err(_) if !dir.exists() => {}
            Err(e) => return Err(Error::io(&dir)(e)),
        }
    }
    match std::fs::rename(staging.path(), &dir) {
        Ok(()) => Ok(dir),
        // Another process (a shard) put a fixture there first.
        Err(_) if whole(&dir) => Ok(dir),
        Err(e) => Err(Error::io(&dir)(e)),
    }
}

/// Removes fixture staging directories of killed processes (older than ten minutes: a younger
/// one may be another shard's, still writing).
fn remove_stale_staging(data: &Path) {
    let Ok(entries) = std::fs::read_dir(data) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 600);
        if name.starts_with(".fixture-") && name.ends_with(sd_train::files::TEMPORARY_SUFFIX) && old
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Where the data of `profile` comes from, for the messages of a missing or unreadable data set.
pub fn how_to_get(profile: &Profile) -> String {
    if profile.data.to_lowercase().contains("fashion") {
        "install it with `apt-get install -y dataset-fashion-mnist` (it lands in \
         /usr/share/datasets/fashion-mnist), or point the profile's `data` at a directory with \
         the four IDX files of Fashion-MNIST"
            .to_string()
    } else {
        format!(
            "download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and \
             put it (or its extracted cifar-10-batches-bin/) into {}, or point the profile's \
             `data` at it",
            profile.data
        )
    }
}

/// The split of `chain` (the validation draw depends on the seed, as in a single chain's; the
/// labels on the chain's noise level).
pub fn split(profile: &Profile, chain: ChainSpec) -> SplitConfig {
    let seed = chain.seed;
    SplitConfig {
        validation: if profile.val_on_test {
            Validation::TestSet
        } else {
            Validation::Holdout {
                size: profile.val_size,
            }
        },
        seed,
        limit_train: (profile.train_size > 0).then_some(profile.train_size),
        limit_val: None,
        limit_test: (profile.test_size > 0).then_some(profile.test_size),
        label_noise: chain.label_noise,
        noise_seed: profile.noise_seed,
    }
}

/// A chain beside `dir` (in the same `runs/`) with the same seed and settings whose step 0 is
/// finished. Step 0 fits the ground truth alone, so it is the same network, bit for bit, in
/// every chain of a seed.
fn finished_first_fit(record: &ChainRecord, dir: &ChainDir) -> Result<Option<ChainDir>> {
    sibling(record, dir, |_, finished| finished >= 1)
}

/// For an `auto` chain, the `alpha = 0` chain beside `dir` with the same seed and settings whose
/// step 1 is finished: Algorithm 1's probe of step 1 is that network ([`Start::ResumeCopying`]).
fn finished_probe(record: &ChainRecord, dir: &ChainDir) -> Result<Option<ChainDir>> {
    if !record.alpha.is_auto() {
        return Ok(None);
    }
    sibling(record, dir, |other, finished| {
        other.alpha == Alpha::Fixed(0.0) && finished >= 2
    })
}

/// The first chain beside `dir` (sorted by name) with `record`'s seed and settings, a step-0
/// checkpoint, and `wanted(its record, its finished steps)`.
fn sibling(
    record: &ChainRecord,
    dir: &ChainDir,
    wanted: impl Fn(&ChainRecord, usize) -> bool,
) -> Result<Option<ChainDir>> {
    let Some(runs) = dir.path().parent() else {
        return Ok(None);
    };
    let mut siblings: Vec<PathBuf> = match std::fs::read_dir(runs) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return Ok(None),
    };
    siblings.sort();
    for sibling in siblings {
        let sibling = ChainDir::new(sibling);
        if &sibling == dir || !sibling.last_checkpoint(0).is_file() {
            continue;
        }
        // A sibling whose files do not read is no source; its own run reports the problem.
        let Ok(Some(other)) = sibling.read_record() else {
            continue;
        };
        if other.seed == record.seed
            && other.settings == record.settings
            && wanted(&other, sibling.finished_steps().unwrap_or(0))
        {
            return Ok(Some(sibling));
        }
    }
    Ok(None)
}

/// How chains are trained: everything but their alpha and seed.
pub struct Runner<'a> {
    /// The profile.
    pub profile: &'a Profile,
    /// The data set.
    pub dataset: &'a Dataset,
    /// Where tensors live.
    pub device: candle_core::Device,
    /// Show progress bars and a line per network.
    pub show_progress: bool,
}

impl Runner<'_> {
    /// The trainer of `chain`, its settings checked against the data (nothing is written).
    fn trainer<'d>(&self, chain: ChainSpec, data: &'d ChainData) -> Result<Chain<'d>> {
        let trainer = Chain {
            record: ChainRecord {
                alpha: chain.alpha,
                seed: chain.seed,
                steps: self.profile.steps,
                settings: self.profile.settings(chain.label_noise),
            },
            data,
            device: self.device.clone(),
            num_workers: self.profile.num_workers,
        };
        trainer.check()?;
        Ok(trainer)
    }

    /// Checks every setting of `chain` against the data, writing nothing: the splits fit the
    /// data set, and the chain can train ([`Chain::check`]).
    pub fn check(&self, chain: ChainSpec) -> Result<()> {
        let data = ChainData::new(self.dataset, &split(self.profile, chain))?;
        self.trainer(chain, &data).map(drop)
    }

    /// Trains what is missing of `chain` in `dir` ([`Start::Resume`]: finished steps are kept,
    /// an interrupted step is trained again from its teacher's checkpoint; step 0 is copied from
    /// a sibling chain of the same seed when one has it, and an `auto` chain's probe of step 1
    /// from the `alpha = 0` chain's step 1). Returns the steps trained now, or `None` when
    /// another process holds the chain's lock.
    pub fn run(&self, chain: ChainSpec, dir: &ChainDir) -> Result<Option<usize>> {
        let data = ChainData::new(self.dataset, &split(self.profile, chain))?;
        let trainer = self.trainer(chain, &data)?;
        let finished = dir.finished_steps()?;
        let first_fit = if finished == 0 {
            finished_first_fit(&trainer.record, dir)?
        } else {
            None
        };
        let probe = if finished <= 1 {
            finished_probe(&trainer.record, dir)?
        } else {
            None
        };
        let start = Start::ResumeCopying {
            first_fit: first_fit.as_ref(),
            probe: probe.as_ref(),
        };
        let mut progress = Progress::new(self.show_progress).with_prefix(chain.dir_name());
        match trainer.run(dir, start, &mut progress) {
            Ok(trained) => Ok(Some(trained.len())),
            Err(TrainError::Locked { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// How an experiment runs, besides its profile.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Its output directory.
    pub out: PathBuf,
    /// Only these chains.
    pub shard: Option<Shard>,
    /// Progress bars and lines on stderr.
    pub show_progress: bool,
    /// What built the program (a git commit, or the version), recorded in `experiment.json`.
    pub source: String,
}

/// Runs `profile` (the chains of `options.shard`, or all) into `options.out`, then writes the
/// report; returns its path. Finished steps are skipped; an interrupted chain resumes from its
/// last teacher; a chain another process is training is skipped with a warning.
pub fn run(profile: &Profile, options: &RunConfig) -> Result<PathBuf> {
    let out = &options.out;
    // Everything that can fail before training fails now: the device, the data.
    let device = profile.device.open()?;
    let data_path = data_path(profile, out)?;
    let dataset = Dataset::open(&data_path).map_err(|e| Error::DataMissing {
        profile: profile.name.clone(),
        path: data_path.clone(),
        problem: format!("cannot be read ({e})"),
        how: how_to_get(profile),
    })?;
    // Every chain's settings against the data, before anything is written.
    let chains = select(profile, options.shard);
    let runner = Runner {
        profile,
        dataset: &dataset,
        device,
        show_progress: options.show_progress,
    };
    for chain in &chains {
        runner.check(*chain)?;
    }
    // The kernel study on images runs in the first shard only (minutes, not to be repeated).
    let image_study = profile
        .image_study(&data_path)
        .filter(|_| options.shard.is_none_or(|s| s.index == 1));
    if let Some(study) = &image_study {
        study.check_against(dataset.train.len())?;
    }
    create_dir(out)?;
    // Temporaries of killed writers of the reports (an hour old: shards may be writing now).
    for dir in [out.to_path_buf(), out.join("krr")] {
        sd_train::files::remove_temporaries_older_than(&dir, std::time::Duration::from_secs(3600))?;
    }
    let info = ExperimentInfo {
        profile: profile.name.clone(),
        description: profile.description.clone(),
        profile_toml: profile.to_toml(),
        shard: options.shard,
        git_commit: options.source.clone(),
        hardware: Hardware::here(&profile.device.to_string()),
    };
    write_json(&out.join(report::info_file_name(options.shard)), &info)?;

    if profile.krr {
        let losses = crate::krr::toy::toy_study(&out.join("krr"))?;
        if options.show_progress {
            eprintln!("kernel ridge regression: {}", losses.display());
        }
    }
    if let Some(study) = &image_study {
        let dir = out.join("krr").join("images");
        let runs = crate::krr::image_study::image_study(study, &dir, options.show_progress)?;
        if options.show_progress {
            eprintln!(
                "kernel ridge regression on images: {} runs in {}",
                runs.len(),
                dir.display()
            );
        }
    }
    let started = Instant::now();
    for (index, chain) in chains.iter().enumerate() {
        let dir = ChainDir::new(out.join("runs").join(chain.dir_name()));
        if options.show_progress {
            eprintln!(
                "chain {} of {}{}: {}",
                index + 1,
                chains.len(),
                options
                    .shard
                    .map_or(String::new(), |s| format!(" (shard {s})")),
                dir.path().display()
            );
        }
        match runner.run(*chain, &dir)? {
            Some(0) if options.show_progress => eprintln!("  nothing left to train"),
            None => tracing::warn!(
                "{} is being trained by another process; skipped",
                dir.path().display()
            ),
            _ => {}
        }
        // The report after each chain: an interrupted experiment still has one. Failing to
        // write it (another shard's files in flux) must not stop the training.
        if let Err(err) = report::write(&[out.to_path_buf()], out) {
            tracing::warn!("the report could not be written yet: {err}");
        }
    }
    let report = report::write(&[out.to_path_buf()], out)?;
    if options.show_progress {
        eprintln!(
            "{} chains in {:.1} minutes",
            chains.len(),
            started.elapsed().as_secs_f64() / 60.0
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let dir = ChainDir::new(dir.path());
        let profile = crate::profile::load(&crate::profile::locate("smoke").unwrap(), &[]).unwrap();
        let record = ChainRecord {
            alpha: Alpha::Fixed(0.5),
            seed: 0,
            steps: 2,
            settings: profile.settings(0.0),
        };
        dir.claim(&record).unwrap();
        // More steps continue the chain; fewer are fine too.
        dir.claim(&ChainRecord {
            steps: 3,
            ..record.clone()
        })
        .unwrap();
        dir.claim(&record).unwrap();
        // Other settings: taken while no step is finished, refused once one is.
        let mut other = record.clone();
        other.settings.epochs = 5;
        dir.claim(&other).unwrap();
        std::fs::write(
            dir.test_file(),
            "{\"step\":0,\"alpha\":1.0,\"test_acc_final\":0.5,\"test_acc_best\":0.5,\
             \"best_epoch\":0,\"best_val_acc\":0.5,\"last_checkpoint\":\"x\"}\n",
        )
        .unwrap();
        let error = dir.claim(&record).unwrap_err().to_string();
        assert!(error.contains("epochs 5 there, 2 now"), "{error}");
    }
}
