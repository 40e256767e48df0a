//! Project automation, run as `cargo xtask <task>` (matklad's convention).
//!
//! - `cargo xtask paper-experiments --profile NAME`: the paper's experiments end to end (the
//!   kernel part and the distillation chains of a profile), resumable and shardable, with a
//!   report; a thin call into `sd_experiments::experiment`, as `sd-cli experiments run` is.
//! - `cargo xtask paper-report DIR...`: the report again, from the files of the runs alone,
//!   merging the directories of several shards.
//! - `cargo xtask cuda-build`: a release `sd-cli` with CUDA, on a machine without a GPU or a CUDA
//!   installation (the toolkit comes from PyPI).
//!
//! See docs/experiments.md and docs/gpu.md.

mod cuda;
#[cfg(test)]
mod modules;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sd_experiments::experiment;
use sd_experiments::plan::{self, Shard};
use sd_experiments::{DeviceSpec, profile, report, terminal};

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
        /// A shipped profile (smoke, fmnist, paper; crates/sd-experiments/profiles/) or the path
        /// of a TOML file
        #[arg(long, value_name = "NAME|FILE")]
        profile: String,
        /// Change a field of the profile, FIELD=VALUE in TOML syntax (repeatable), e.g.
        /// --set epochs=2 --set 'alphas=[0, 0.5, "auto"]'
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        overrides: Vec<String>,
        /// Output directory [default: target/paper/PROFILE in the workspace]
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
                eprintln!("{}", terminal::one_line_error(&err.render().to_string()));
                return ExitCode::from(2);
            }
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
    };
    terminal::init_logging(u8::from(!xtask.quiet), xtask.quiet);
    let show_progress = !xtask.quiet;
    let result = match xtask.task {
        Task::PaperExperiments {
            profile,
            overrides,
            out,
            shard,
        } => paper_experiments(&profile, &overrides, out, shard, show_progress),
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
            report::write(&dirs, &out)
                .map(|path| println!("{}", path.display()))
                .map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", terminal::error_line(err.as_ref()));
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
    if profile.device != DeviceSpec::Cpu && !DeviceSpec::cuda_built() {
        anyhow::bail!(
            "profile '{}' trains on {}, but this xtask was built without CUDA: build it with \
             `cargo xtask cuda-build --package xtask` and run target/cuda/release/xtask (see \
             docs/gpu.md), or give --set device=cpu",
            profile.name,
            profile.device
        );
    }
    let shard = match shard {
        Some(shard) => Some(shard),
        None => plan::slurm_shard(|name| std::env::var(name).ok())?,
    };
    let options = experiment::RunConfig {
        out: out.unwrap_or_else(|| workspace_root().join("target/paper").join(&profile.name)),
        shard,
        show_progress,
        source: git_commit(),
    };
    let report = experiment::run(&profile, &options)?;
    println!("{}", report.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let smoke = profile::load(&profile::locate("smoke").unwrap(), &[]).unwrap();
        let fields: toml::Table = toml::from_str(&smoke.to_toml()).unwrap();
        for field in fields.keys().map(String::as_str).chain(["pretrained"]) {
            assert!(
                docs.contains(&format!("`{field}`")),
                "profile field {field} is not in docs/experiments.md"
            );
        }
        for old in [
            "train_images",
            "val_images",
            "test_images",
            "max_epochs",
            "distillation_steps",
        ] {
            assert!(docs.contains(&format!("`{old}`")), "alias {old}");
        }
    }

    /// The crate graph the design holds to (docs/design.md): nothing depends on the binary,
    /// and each library stays within its job.
    #[test]
    fn the_crate_graph_keeps_its_layers() {
        let root = workspace_root();
        let mut manifests: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
            .unwrap()
            .map(|e| e.unwrap().path().join("Cargo.toml"))
            .collect();
        manifests.push(root.join("xtask/Cargo.toml"));
        let dependencies = |manifest: &Path| -> Vec<String> {
            let table: toml::Table =
                toml::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
            ["dependencies", "dev-dependencies", "build-dependencies"]
                .iter()
                .filter_map(|section| table.get(*section).and_then(|t| t.as_table()))
                .flat_map(|t| t.keys().cloned())
                .collect()
        };
        let mut crates = 0;
        for manifest in &manifests {
            let name = manifest
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy();
            let deps = dependencies(manifest);
            assert!(
                !deps.contains(&"sd-cli".to_string()),
                "{name} depends on sd-cli"
            );
            let forbidden: &[&str] = match name.as_ref() {
                "sd-alpha" => &["faer", "candle-core", "sd-kernel", "sd-data"],
                "sd-kernel" => &["candle-core", "candle-nn", "sd-data", "sd-resnet", "csv"],
                "sd-data" => &["sd-kernel", "sd-resnet", "sd-train", "sd-experiments"],
                "sd-resnet" => &["sd-data", "sd-train", "sd-experiments", "clap", "anyhow"],
                "sd-train" => &["sd-kernel", "sd-experiments", "clap", "anyhow", "plotters"],
                "sd-experiments" => &["clap", "anyhow"],
                "sd-tensorboard" => &["candle-core", "sd-train", "sd-data", "serde", "faer"],
                _ => &[],
            };
            for dep in forbidden {
                assert!(!deps.iter().any(|d| d == dep), "{name} depends on {dep}");
            }
            crates += 1;
        }
        assert!(crates >= 8, "{manifests:?}");
    }
}
