//! Project automation, run as `cargo xtask <task>` (matklad's convention).
//!
//! - `cargo xtask paper-experiments --profile NAME`: the paper's experiments end to end (the
//!   kernel part and the distillation chains of a profile in `xtask/profiles/`), resumable and
//!   shardable, with a report.
//! - `cargo xtask paper-report DIR...`: the report again, from the files of the runs alone,
//!   merging the directories of several shards.
//! - `cargo xtask cuda-build`: a release `sd-cli` with CUDA, on a machine without a GPU or a CUDA
//!   installation (the toolkit comes from PyPI).
//!
//! See docs/experiments.md.

mod cuda;
mod experiments;
mod krr;
mod profile;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sd_cli::files::write_atomic;

use crate::experiments::{Runner, Shard};
use crate::report::{ExperimentInfo, Hardware};

/// Project automation for self-distillation.
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
struct Xtask {
    /// Only errors on stderr (no progress bars, step lines or logs)
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the paper's experiments (a profile) end to end and write REPORT.md; rerunning resumes
    PaperExperiments {
        /// A profile in xtask/profiles/ (smoke, fmnist, paper) or the path of a TOML file
        #[arg(long, value_name = "NAME|FILE")]
        profile: String,
        /// Change a field of the profile, FIELD=VALUE in TOML syntax (repeatable), e.g.
        /// --set epochs=2 --set 'alphas=[0, 0.5, "auto"]'
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        overrides: Vec<String>,
        /// Output directory [default: target/paper/<profile> in the workspace]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run only the I-th of N parts of the chains [default: from SLURM_ARRAY_TASK_ID and
        /// SLURM_ARRAY_TASK_COUNT when set, else all]
        #[arg(long, value_name = "I/N")]
        shard: Option<Shard>,
    },
    /// Build a release sd-cli with CUDA on a machine without CUDA (toolkit from PyPI, ~650 MB)
    CudaBuild {
        /// Python that creates the toolkit's virtual environment
        #[arg(long, default_value = "python3", value_name = "PYTHON")]
        python: String,
        /// CUDA_COMPUTE_CAP of the target GPU (90: H100, H200)
        #[arg(long, default_value_t = 90, value_name = "N")]
        compute_cap: u32,
        /// The package to build: sd-cli, or xtask for experiments on a GPU
        #[arg(long, default_value = "sd-cli", value_parser = ["sd-cli", "xtask"], value_name = "NAME")]
        package: String,
    },
    /// Write REPORT.md again from the runs of one or more output directories (merging shards)
    PaperReport {
        /// Output directories of paper-experiments
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Where to write the report [default: the first DIR]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// The workspace this xtask was built in, or the current directory when the binary runs
/// elsewhere (a GPU build copied to a cluster).
fn workspace_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root");
    if built_in.join("Cargo.toml").is_file() {
        built_in.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    }
}

fn main() -> ExitCode {
    let xtask = match Xtask::try_parse() {
        Ok(xtask) => xtask,
        Err(err) => {
            // `cargo xtask` alone prints the help: that is what it is for, not an error.
            let bare =
                err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
            if err.use_stderr() && !bare {
                eprintln!("{}", sd_cli::one_line_clap_error(&err.render().to_string()));
                return ExitCode::from(2);
            }
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
    };
    sd_cli::logging::init(u8::from(!xtask.quiet), xtask.quiet);
    let result = match xtask.task {
        Task::PaperExperiments {
            profile,
            overrides,
            out,
            shard,
        } => paper_experiments(&profile, &overrides, out, shard, !xtask.quiet),
        Task::CudaBuild {
            python,
            compute_cap,
            package,
        } => cuda::build(&cuda::BuildRequest {
            workspace: workspace_root(),
            python,
            compute_cap,
            package,
        })
        .map(|binary| println!("{}", binary.display())),
        Task::PaperReport { dirs, out } => {
            let out = out.unwrap_or_else(|| dirs[0].clone());
            report::write(&dirs, &out).map(|path| println!("{}", path.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// `git describe --always --dirty` of the workspace, or "unknown" without git.
fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn paper_experiments(
    name: &str,
    overrides: &[String],
    out: Option<PathBuf>,
    shard: Option<Shard>,
    show_progress: bool,
) -> Result<()> {
    let profile = profile::load(&profile::locate(name)?, overrides)?;
    let shard = match shard {
        Some(shard) => Some(shard),
        None => experiments::slurm_shard(|name| std::env::var(name).ok())?,
    };
    let out = out.unwrap_or_else(|| workspace_root().join("target/paper").join(&profile.name));
    let report = run_experiment(&profile, &out, shard, show_progress)?;
    println!("{}", report.display());
    Ok(())
}

/// Runs `profile` (the chains of `shard`, or all) into `out`, then writes the report; returns
/// its path. Finished steps are skipped; an interrupted chain resumes from its last teacher.
fn run_experiment(
    profile: &profile::Profile,
    out: &Path,
    shard: Option<Shard>,
    show_progress: bool,
) -> Result<PathBuf> {
    // Everything that can fail before training fails now: the device, the data.
    if profile.device.starts_with("cuda") && !candle_core::utils::cuda_is_available() {
        anyhow::bail!(
            "profile '{}' trains on {}, but this xtask was built without CUDA: build it with \
             `cargo xtask cuda-build --package xtask` and run target/cuda/release/xtask (see \
             docs/gpu.md), or give --set device=cpu",
            profile.name,
            profile.device
        );
    }
    let device = sd_cli::resnet::device(&profile.device)?;
    let data_path = experiments::data_path(profile, out)?;
    let dataset = sd_data::Dataset::open(&data_path).with_context(|| {
        format!(
            "profile '{}': cannot read the data set at {} ({})",
            profile.name,
            data_path.display(),
            experiments::how_to_get(profile)
        )
    })?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let info = ExperimentInfo {
        profile: profile.name.clone(),
        description: profile.description.clone(),
        profile_toml: profile.to_toml(),
        shard,
        git_commit: git_commit(),
        hardware: Hardware::here(&profile.device),
    };
    let text = serde_json::to_string_pretty(&info).expect("serialises") + "\n";
    write_atomic(&out.join(report::info_file_name(shard)), text.as_bytes())?;

    if profile.krr {
        let tables = krr::krr_part(&out.join("krr"))?;
        if show_progress {
            eprintln!("kernel ridge regression: {}", tables.display());
        }
    }
    let chains = experiments::select(profile, shard);
    let runner = Runner {
        profile,
        dataset: &dataset,
        device,
        show_progress,
    };
    let started = Instant::now();
    for (index, chain) in chains.iter().enumerate() {
        let dir = out.join("runs").join(chain.dir_name());
        if show_progress {
            eprintln!(
                "chain {} of {}{}: {}",
                index + 1,
                chains.len(),
                shard.map_or(String::new(), |s| format!(" (shard {s})")),
                dir.display()
            );
        }
        match runner.run(*chain, &dir)? {
            Some(0) if show_progress => eprintln!("  nothing left to train"),
            None => eprintln!(
                "warning: {} is being trained by another process; skipped",
                dir.display()
            ),
            _ => {}
        }
        // The report after each chain: an interrupted experiment still has one. Failing to
        // write it (another shard's files in flux) must not stop the training.
        if let Err(err) = report::write(&[out.to_path_buf()], out) {
            tracing::warn!("the report could not be written yet: {err:#}");
        }
    }
    let report = report::write(&[out.to_path_buf()], out)?;
    if show_progress {
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
    use crate::report::RUN_SECTION;

    /// The smoke profile, smaller still: 120 training images, 40 validation, 40 test.
    fn tiny(overrides: &[&str]) -> profile::Profile {
        let mut all: Vec<String> = [
            "fixture_train=160",
            "fixture_test=40",
            "val_images=40",
            "batch_size=40",
            "num_workers=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(overrides.iter().map(|s| s.to_string()));
        profile::load(&profile::locate("smoke").unwrap(), &all).unwrap()
    }

    /// What must not differ between two runs of one experiment: the report above its run
    /// section, and the CSV files of results.
    fn results(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
        let (results, _) = report.split_once(RUN_SECTION).unwrap();
        out.push(("REPORT.md".to_string(), results.to_string()));
        for file in [
            "accuracy.csv",
            "steps.csv",
            "auto_alpha.csv",
            "krr/losses.csv",
        ] {
            if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                out.push((file.to_string(), text));
            }
        }
        out
    }

    fn assert_same(a: &Path, b: &Path) {
        let (a, b) = (results(a), results(b));
        assert_eq!(a.len(), b.len());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert_eq!(x, y, "{name} differs");
        }
    }

    /// Leaves `dir` as a run killed during step `k` would: step `k`'s results and last checkpoint
    /// gone, later steps never started; an auto chain killed during its probe.
    fn interrupt(dir: &Path, k: usize) {
        for chain in std::fs::read_dir(dir.join("runs")).unwrap() {
            let chain = chain.unwrap().path();
            let keep_before = |file: &Path| {
                let Ok(text) = std::fs::read_to_string(file) else {
                    return;
                };
                let kept: String = text
                    .lines()
                    .filter(|l| {
                        let row: serde_json::Value = serde_json::from_str(l).unwrap();
                        (row["step"].as_u64().unwrap() as usize) < k
                    })
                    .map(|l| format!("{l}\n"))
                    .collect();
                std::fs::write(file, kept).unwrap();
            };
            keep_before(&chain.join("test.jsonl"));
            keep_before(&chain.join("auto_alpha.jsonl"));
            keep_before(&chain.join("probe/test.jsonl"));
            std::fs::remove_file(chain.join(format!("step_{k}/last.safetensors"))).unwrap();
            let mut later = k + 1;
            while chain.join(format!("step_{later}")).exists() {
                std::fs::remove_dir_all(chain.join(format!("step_{later}"))).unwrap();
                later += 1;
            }
        }
    }

    #[test]
    fn every_flag_and_profile_field_is_documented() {
        // paper-experiments and paper-report in experiments.md, cuda-build in gpu.md.
        let docs = ["docs/experiments.md", "docs/gpu.md"]
            .map(|f| std::fs::read_to_string(workspace_root().join(f)).unwrap())
            .join("\n");
        let command = <Xtask as clap::CommandFactory>::command();
        let mut flags: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        for sub in command.get_subcommands() {
            assert!(docs.contains(&format!("cargo xtask {}", sub.get_name())));
            flags.extend(
                sub.get_arguments()
                    .filter_map(|a| a.get_long().map(str::to_string)),
            );
        }
        assert!(flags.len() >= 6, "{flags:?}");
        for flag in flags {
            assert!(
                docs.contains(&format!("`--{flag}")),
                "--{flag} is not in docs/experiments.md"
            );
        }
        let fields: toml::Table = toml::from_str(&tiny(&[]).to_toml()).unwrap();
        for field in fields.keys() {
            assert!(
                docs.contains(&format!("`{field}`")),
                "profile field {field} is not in docs/experiments.md"
            );
        }
    }

    #[test]
    fn a_resumed_experiment_reports_what_an_uninterrupted_one_does() {
        let profile = tiny(&["steps=3", "alphas=[0.5, \"auto\"]", "krr=false"]);
        let whole = tempfile::tempdir().unwrap();
        let report = run_experiment(&profile, whole.path(), None, false).unwrap();
        let text = std::fs::read_to_string(report).unwrap();
        assert!(
            text.contains("| 2 |") && text.contains("## Automatic alpha"),
            "{text}"
        );
        assert!(!text.contains("Unfinished"), "{text}");
        let auto = std::fs::read_to_string(whole.path().join("auto_alpha.csv")).unwrap();
        assert_eq!(auto.lines().count(), 1 + 2, "{auto}");

        let resumed = tempfile::tempdir().unwrap();
        run_experiment(&profile, resumed.path(), None, false).unwrap();
        interrupt(resumed.path(), 1);
        let first_fit = resumed
            .path()
            .join("runs/alpha-0.5_seed-0/step_0/last.safetensors");
        let trained_at = std::fs::metadata(&first_fit).unwrap().modified().unwrap();
        report::write(&[resumed.path().to_path_buf()], resumed.path()).unwrap();
        let partial = std::fs::read_to_string(resumed.path().join("REPORT.md")).unwrap();
        assert!(partial.contains("1 of 3 steps finished"), "{partial}");

        run_experiment(&profile, resumed.path(), None, false).unwrap();
        assert_same(whole.path(), resumed.path());
        let untouched = std::fs::metadata(&first_fit).unwrap().modified().unwrap();
        assert_eq!(trained_at, untouched, "a finished step was trained again");
        // The auto chain's first fit was copied from the alpha = 0.5 chain's, not trained again.
        let copied = resumed
            .path()
            .join("runs/alpha-auto_seed-0/step_0/last.json");
        let sidecar = std::fs::read_to_string(copied).unwrap();
        assert!(sidecar.contains("copied_from"), "{sidecar}");
        // Another setting is refused, not mixed in.
        let other = tiny(&["steps=3", "alphas=[0.5, \"auto\"]", "krr=false", "lr=0.01"]);
        let error = run_experiment(&other, resumed.path(), None, false).unwrap_err();
        assert!(
            format!("{error:#}").contains("lr 0.001 there, 0.01 now"),
            "{error:#}"
        );
    }

    #[test]
    fn a_chain_another_process_trains_is_skipped() {
        let profile = tiny(&["steps=1", "alphas=[0.5]", "krr=false"]);
        let out = tempfile::tempdir().unwrap();
        let dataset =
            sd_data::Dataset::open(experiments::data_path(&profile, out.path()).unwrap()).unwrap();
        let runner = Runner {
            profile: &profile,
            dataset: &dataset,
            device: candle_core::Device::Cpu,
            show_progress: false,
        };
        let chain = experiments::chains(&profile)[0];
        let dir = out.path().join("runs").join(chain.dir_name());
        std::fs::create_dir_all(&dir).unwrap();
        let held = std::fs::File::create(dir.join(".lock")).unwrap();
        held.lock().unwrap();
        assert_eq!(runner.run(chain, &dir).unwrap(), None);
        assert!(!dir.join("step_0").exists());
        drop(held);
        assert_eq!(runner.run(chain, &dir).unwrap(), Some(1));
        assert_eq!(
            runner.run(chain, &dir).unwrap(),
            Some(0),
            "finished: nothing to train"
        );
    }

    #[test]
    fn merged_shards_report_what_the_whole_run_does() {
        let profile = tiny(&["steps=2", "alphas=[0.5, \"auto\"]", "seeds=[0, 1]"]);
        let whole = tempfile::tempdir().unwrap();
        run_experiment(&profile, whole.path(), None, false).unwrap();
        let (one, two, merged) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        // Shards 1 and 2 of 3 share a directory; shard 3 (the seed-0 auto chain) trains its own
        // first fit, which the whole run copied from the alpha = 0.5 chain.
        run_experiment(&profile, one.path(), Some("1/3".parse().unwrap()), false).unwrap();
        run_experiment(&profile, one.path(), Some("2/3".parse().unwrap()), false).unwrap();
        run_experiment(&profile, two.path(), Some("3/3".parse().unwrap()), false).unwrap();
        let shard_report = std::fs::read_to_string(two.path().join("REPORT.md")).unwrap();
        assert!(shard_report.contains("1 chain:"), "{shard_report}");
        assert!(
            shard_report.contains("`alpha-0.5_seed-1`: not started"),
            "the other shards' chains are listed: {shard_report}"
        );
        let sidecar = two.path().join("runs/alpha-auto_seed-0/step_0/last.json");
        assert!(
            !std::fs::read_to_string(sidecar)
                .unwrap()
                .contains("copied_from")
        );
        report::write(
            &[one.path().to_path_buf(), two.path().to_path_buf()],
            merged.path(),
        )
        .unwrap();
        assert_same(whole.path(), merged.path());
        let text = std::fs::read_to_string(merged.path().join("REPORT.md")).unwrap();
        for shard in ["(shard 1/3)", "(shard 2/3)", "(shard 3/3)"] {
            assert!(text.contains("4 chains") && text.contains(shard), "{text}");
        }
        assert!(text.contains("± "), "two seeds give a deviation: {text}");
        for file in ["accuracy.png", "accuracy.svg", "krr/alpha-0/fit.png"] {
            assert!(merged.path().join(file).is_file(), "{file}");
        }
    }
}
