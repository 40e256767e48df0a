//! The kernel part of the paper's experiments: the toy example's tables and figures for the
//! original's alphas and Algorithm 1.

use std::path::{Path, PathBuf};

use sd_alpha::Alpha;
use sd_train::files::{create_dir, write_atomic, write_csv};

use crate::error::Result;
use crate::krr::{KrrConfig, KrrReport, SolverChoice, output, run};
use crate::plot;

/// The constant alphas of the kernel part: the original's two runs (0 and 0.25), the alpha its
/// README's second column really holds (0.35), and 0.5.
pub const ALPHAS: [f64; 4] = [0.0, 0.25, 0.35, 0.5];

/// The kernel part: the toy example for each of [`ALPHAS`] and for the optimal alpha, each
/// with a JSON report and the three figures in `<dir>/alpha-<a>/`, and their losses side by side
/// in `losses.csv` (REPORT.md's table is rendered from it). Returns the path of `losses.csv`.
pub fn toy_study(dir: &Path) -> Result<PathBuf> {
    create_dir(dir)?;
    let choices = ALPHAS.iter().map(|&a| Alpha::Fixed(a)).chain([Alpha::Auto]);
    let mut reports = Vec::new();
    for alpha in choices {
        let config = KrrConfig {
            solver: SolverChoice::Eigen,
            ..KrrConfig::toy(alpha)
        };
        let report = run(&config)?;
        let run_dir = dir.join(format!("alpha-{alpha}"));
        plot::write_figures(&report, &run_dir)?;
        write_atomic(
            &run_dir.join("report.json"),
            output::json(&report).as_bytes(),
        )?;
        tracing::info!(%alpha, dir = %run_dir.display(), "kernel ridge regression");
        reports.push(report);
    }
    let losses = dir.join("losses.csv");
    write_losses_csv(&losses, &reports)?;
    Ok(losses)
}

/// `losses.csv`: the rows of each report's CSV ([`output::csv_rows`]) after a column naming
/// its alpha, the columns `alpha,step,alpha_used,loss,train_loss`.
fn write_losses_csv(path: &Path, reports: &[KrrReport]) -> Result<()> {
    let rows = reports.iter().flat_map(|report| {
        let name = report.alpha.to_string();
        output::csv_rows(report)
            .into_iter()
            .map(move |row| std::iter::once(name.clone()).chain(row))
    });
    Ok(write_csv(
        path,
        &["alpha", "step", "alpha_used", "loss", "train_loss"],
        rows,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_krr_part_writes_losses_figures_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let losses = toy_study(dir.path()).unwrap();
        assert_eq!(losses, dir.path().join("losses.csv"));
        let csv = std::fs::read_to_string(dir.path().join("losses.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 5 * 7);
        assert!(csv.contains("\n0.25,limit,0.25,0.1525015469487"));
        for run in [
            "alpha-0",
            "alpha-0.25",
            "alpha-0.35",
            "alpha-0.5",
            "alpha-auto",
        ] {
            for file in ["fit", "b_diag", "ratios"] {
                let png = std::fs::read(dir.path().join(run).join(format!("{file}.png"))).unwrap();
                assert_eq!(&png[1..4], b"PNG", "{run}/{file}.png");
                let svg = std::fs::read_to_string(dir.path().join(run).join(format!("{file}.svg")))
                    .unwrap();
                assert!(svg.contains("<svg"), "{run}/{file}.svg");
            }
            let json = std::fs::read_to_string(dir.path().join(run).join("report.json")).unwrap();
            assert!(json.contains("\"b_diag\""), "{run}");
        }
    }
}
