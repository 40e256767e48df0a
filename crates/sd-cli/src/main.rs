//! `sd-cli`: self-distillation with weighted ground-truth targets, from the command line.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use sd_cli::cli::{Cli, Command, DataCommand, InspectFormat, KrrArgs};
use sd_cli::{bench, images, krr, output, plot, resnet};

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
                    eprintln!("{}", sd_cli::one_line_clap_error(&err.render().to_string()));
                    ExitCode::from(FAILURE)
                }
            };
        }
    };
    sd_cli::logging::init(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
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

fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.into())
            .build_global()?;
    }
    match cli.command {
        Command::Krr(args) => run_krr(&args, !cli.quiet),
        Command::Data(DataCommand::Inspect(args)) => {
            let inspection = images::inspect(&args.config())?;
            let text = match args.format {
                InspectFormat::Table => images::table(&inspection),
                InspectFormat::Json => serde_json::to_string_pretty(&inspection)? + "\n",
            };
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
        Command::Resnet(args) => {
            let run = args.run(!cli.quiet)?;
            let (dir, results) = resnet::run(&run)?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(resnet::table(&dir, &results).as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
        Command::Bench(command) => bench::run(command),
        Command::Data(DataCommand::Fixture(args)) => {
            let spec = sd_data::fixture::FixtureSpec {
                train: args.train as usize,
                test: args.test as usize,
                seed: args.seed,
            };
            let path = images::write_fixture(&args.out, args.layout, spec)?;
            println!(
                "wrote a fixture of {} training and {} test images: {}",
                spec.train,
                spec.test,
                path.display()
            );
            Ok(())
        }
    }
}

fn run_krr(args: &KrrArgs, show_progress: bool) -> Result<()> {
    let config = args.config(show_progress)?;
    let report = krr::run(&config)?;
    if let Some(dir) = &args.plot {
        for path in plot::write_figures(&report, dir)? {
            tracing::info!(path = %path.display(), "wrote figure");
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(output::render(&report, args.format).as_bytes())?;
    stdout.flush()?;
    Ok(())
}
