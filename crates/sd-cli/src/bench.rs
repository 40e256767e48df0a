//! `sd-cli bench`: the measurements of bench/gpu/run.sh and bench/train_compare.sh, in the one
//! binary that travels to a GPU machine.

use std::io::Write;

use anyhow::{Context, Result, bail};
use sd_resnet::bench::{ParityRow, TrainStepBench, parity, time_train_step};
use sd_resnet::optim::AdamKernel;
use sd_resnet::{Depth, ResnetConfig};

use crate::cli::{BenchCommand, ParityArgs, TrainStepArgs};

/// Runs a `bench` command.
pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::TrainStep(args) => train_step(&args),
        BenchCommand::Parity(args) => parity_command(&args),
    }
}

fn train_step(args: &TrainStepArgs) -> Result<()> {
    if !(args.max_seconds.is_finite() && args.max_seconds >= 0.0) {
        bail!(
            "--max-seconds must be a number >= 0, got {}",
            args.max_seconds
        );
    }
    let timing = time_train_step(&TrainStepBench {
        model: ResnetConfig {
            stem: args.stem.into(),
            ..ResnetConfig::cifar10(args.resnet.into())
        },
        batch: args.batch as usize,
        steps: args.steps as usize,
        max_seconds: args.max_seconds,
        device: crate::resnet::device(&args.device)?,
        reference_kernels: (false, false),
        adam: AdamKernel::Fused,
        profile: false,
    })
    .context("the training step failed")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&timing)?)?;
    Ok(())
}

/// The table of `sd-cli bench parity`.
pub fn parity_table(depth: Depth, device: &str, rows: &[ParityRow]) -> String {
    let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2e}"));
    let on_device = rows.iter().any(|r| r.device_vs_cpu.is_some());
    let mut out = format!(
        "ResNet-{}, f32, max |difference| / max |reference| (tv: torchvision in f64)\n\n{:<48} {:>12}",
        depth.layers(),
        "",
        "cpu vs tv"
    );
    if on_device {
        out += &format!(
            " {:>14} {:>14}",
            format!("{device} vs tv"),
            format!("{device} vs cpu")
        );
    }
    out.push('\n');
    for row in rows {
        out += &format!(
            "{:<48} {:>12}",
            row.what,
            value(Some(row.cpu_vs_torchvision).filter(|v| v.is_finite()))
        );
        if on_device {
            out += &format!(
                " {:>14} {:>14}",
                value(row.device_vs_torchvision),
                value(row.device_vs_cpu)
            );
        }
        out.push('\n');
    }
    out
}

fn parity_command(args: &ParityArgs) -> Result<()> {
    let device = crate::resnet::device(&args.device)?;
    let depth: Depth = args.resnet.into();
    let rows = parity(&args.dir, ResnetConfig::cifar10(depth), &device).with_context(|| {
        format!(
            "parity files in {} (write them with python bench/torchvision_parity.py --depth {} \
             --out {})",
            args.dir.display(),
            depth.layers(),
            args.dir.display()
        )
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(parity_table(depth, &args.device, &rows).as_bytes())?;
    writeln!(stdout, "{}", serde_json::to_string(&rows)?)?;
    stdout.flush()?;
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
            "{} differs from the CPU by {worst:.2e}, more than --tolerance {:.0e}",
            args.device,
            args.tolerance
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parity_table_shows_the_device_columns_only_for_a_device() {
        let row = |device: Option<f64>| ParityRow {
            what: "loss".into(),
            cpu_vs_torchvision: 1e-6,
            device_vs_torchvision: device,
            device_vs_cpu: device,
        };
        let cpu = parity_table(Depth::R18, "cpu", &[row(None)]);
        assert!(
            cpu.contains("1.00e-6") && !cpu.contains("cpu vs cpu"),
            "{cpu}"
        );
        let cuda = parity_table(Depth::R50, "cuda", &[row(Some(2e-7))]);
        assert!(
            cuda.contains("ResNet-50") && cuda.contains("cuda vs cpu"),
            "{cuda}"
        );
        assert!(cuda.contains("2.00e-7"), "{cuda}");
    }
}
