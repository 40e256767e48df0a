//! `sd-cli`: self-distillation with weighted ground-truth targets, from the command line.
//!
//! A thin layer: `cli` parses the flags and turns them into the settings of `sd_experiments`'
//! jobs, `print` formats what they return; every error is one line on stderr and exit status 2.

mod cli;
mod print;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use cli::{BenchCommand, Cli, Command, DataCommand, ExperimentsCommand, KrrArgs};
use sd_experiments::krr::output::{self, Format};
use sd_experiments::{data, experiment, plan, plot, profile, report, resnet, terminal};

/// Exit status for every error: bad input, bad data, failed writes.
const FAILURE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = err.print();
                    ExitCode::SUCCESS
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = err.print();
                    ExitCode::from(FAILURE)
                }
                _ => {
                    eprintln!("{}", terminal::one_line_error(&err.render().to_string()));
                    ExitCode::from(FAILURE)
                }
            };
        }
    };
    terminal::init_logging(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", terminal::error_line(err.as_ref()));
            ExitCode::from(FAILURE)
        }
    }
}

/// Output piped into `head` closes early; that is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `text` to stdout.
fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.into())
            .build_global()?;
    }
    let show_progress = !cli.quiet;
    match cli.command {
        Command::Krr(args) => run_krr(&args, show_progress),
        Command::Data(DataCommand::Inspect(args)) => {
            let inspection = data::inspect(&args.config())?;
            match args.format {
                Format::Json => out(&(serde_json::to_string_pretty(&inspection)? + "\n")),
                _ => out(&data::table(&inspection)),
            }
        }
        Command::Data(DataCommand::Fixture(args)) => {
            let spec = sd_data::fixture::FixtureSpec {
                train: args.train as usize,
                test: args.test as usize,
                seed: args.seed,
            };
            let path = data::write_fixture(&args.out, args.layout, spec)?;
            out(&format!(
                "wrote a fixture of {} training and {} test images: {}\n",
                spec.train,
                spec.test,
                path.display()
            ))
        }
        Command::Resnet(args) => {
            let (dir, results) = resnet::run(&args.job(show_progress)?)?;
            out(&print::resnet_table(&dir, &results))
        }
        Command::Experiments(ExperimentsCommand::Run(args)) => {
            let profile = profile::load(&profile::locate(&args.profile)?, &args.overrides)?;
            let shard = match args.shard {
                Some(shard) => Some(shard),
                None => plan::slurm_shard(|name| std::env::var(name).ok())?,
            };
            let options = experiment::RunConfig {
                out: args
                    .out
                    .unwrap_or_else(|| PathBuf::from("paper").join(&profile.name)),
                shard,
                show_progress,
                source: format!("sd-cli {}", env!("CARGO_PKG_VERSION")),
            };
            let report = experiment::run(&profile, &options)?;
            out(&format!("{}\n", report.display()))
        }
        Command::Experiments(ExperimentsCommand::Report(args)) => {
            let target = args.out.unwrap_or_else(|| args.dirs[0].clone());
            let path = report::write(&args.dirs, &target)?;
            out(&format!("{}\n", path.display()))
        }
        Command::Bench(BenchCommand::TrainStep(args)) => {
            let timing = sd_train::bench::time_train_step(&sd_train::bench::TrainStepBench {
                model: sd_resnet::ResnetConfig {
                    stem: args.stem,
                    ..sd_resnet::ResnetConfig::cifar10(args.resnet)
                },
                batch: args.batch as usize,
                steps: args.steps as usize,
                max_seconds: args.max_seconds,
                device: args.device.open()?,
                reference_kernels: (false, false),
                adam: sd_resnet::optim::AdamKernel::Fused,
                profile: false,
            })
            .context("the training step failed")?;
            out(&format!("{}\n", serde_json::to_string(&timing)?))
        }
        Command::Bench(BenchCommand::Parity(args)) => {
            let device = args.device.open()?;
            let config = sd_resnet::ResnetConfig::cifar10(args.resnet);
            let rows = sd_train::bench::parity(&args.dir, config, &device).with_context(|| {
                format!(
                    "parity files in {} (write them with python bench/torchvision_parity.py \
                     --depth {} --out {})",
                    args.dir.display(),
                    args.resnet,
                    args.dir.display()
                )
            })?;
            let device_name = args.device.to_string();
            out(&print::parity_table(args.resnet, &device_name, &rows))?;
            out(&format!("{}\n", serde_json::to_string(&rows)?))?;
            // NaN counts as the worst: f64::max would drop it.
            let worst = rows
                .iter()
                .filter_map(|r| r.device_vs_cpu)
                .fold(0.0f64, |w, d| {
                    if d.is_nan() || w.is_nan() {
                        f64::NAN
                    } else {
                        w.max(d)
                    }
                });
            if worst.is_nan() || worst > args.tolerance {
                bail!(
                    "{device_name} differs from the CPU by {worst:.2e}, more than --tolerance \
                     {:.0e}",
                    args.tolerance
                );
            }
            Ok(())
        }
    }
}

fn run_krr(args: &KrrArgs, show_progress: bool) -> Result<()> {
    let config = args.config(show_progress)?;
    let report = sd_experiments::krr::run(&config)?;
    if let Some(dir) = &args.plot {
        for path in plot::write_figures(&report, dir)? {
            tracing::info!(path = %path.display(), "wrote figure");
        }
    }
    out(&output::render(&report, args.format))
}

/// Repository hygiene, kept as tests the way rust-analyzer keeps it: the documentation names every
/// flag, and the README's table is what the code prints.
#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use sd_alpha::Alpha;
    use sd_experiments::krr::output::number;
    use sd_experiments::krr::{KrrConfig, run};

    fn read(path: &str) -> String {
        let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    #[test]
    fn docs_cli_md_mentions_every_flag_and_alias() {
        let docs = read("docs/cli.md");
        let cli = super::Cli::command();
        // Every command, nested ones (`data inspect`) included.
        let mut commands = vec![&cli];
        let mut next = 0;
        while next < commands.len() {
            let children: Vec<_> = commands[next].get_subcommands().collect();
            commands.extend(children);
            next += 1;
        }
        let mut missing = Vec::new();
        for command in commands {
            for argument in command.get_arguments() {
                let names = argument
                    .get_long()
                    .into_iter()
                    .chain(argument.get_all_aliases().into_iter().flatten());
                for long in names {
                    if !docs.contains(&format!("`--{long}")) {
                        missing.push(format!("{} --{long}", command.get_name()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/cli.md does not document: {missing:?}"
        );
    }

    #[test]
    fn readme_has_the_two_commands_and_the_table_the_code_prints() {
        let readme = read("README.md");
        assert!(readme.contains("cargo run --release -p sd-cli -- krr --alpha 0.25"));
        assert!(readme.contains("cargo test --workspace"));
        let ci = read(".ci/run");
        assert!(
            ci.contains("cargo test --workspace"),
            ".ci/run runs the README's test command"
        );

        let runs: Vec<_> = [
            Alpha::Fixed(0.0),
            Alpha::Fixed(0.25),
            Alpha::Fixed(0.35),
            Alpha::Auto,
        ]
        .into_iter()
        .map(|alpha| run(&KrrConfig::toy(alpha)).unwrap())
        .collect();
        for step in 0..6 {
            let row = readme
                .lines()
                .find(|line| line.starts_with(&format!("| {step} |")))
                .unwrap_or_else(|| panic!("README has no row for step {step}"));
            for report in &runs {
                let loss = number(report.steps[step].loss.unwrap());
                assert!(row.contains(&loss), "step {step}: {loss} not in {row}");
            }
        }
        let limits = readme.lines().find(|l| l.starts_with("| limit |")).unwrap();
        for report in &runs {
            let loss = number(report.limit.as_ref().unwrap().loss.unwrap());
            assert!(limits.contains(&loss), "limit {loss} not in {limits}");
        }
    }
}
