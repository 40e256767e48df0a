//! The `sd-cli` command line, as a library so that `xtask` and tests drive the same code.
//!
//! `sd-cli` only parses, wires and prints: the numerics live in [`sd_kernel`]. The modules here
//! are the pieces of the `krr` command: reading CSV data ([`data`]), running a distillation
//! ([`krr`]), printing ([`output`]), figures ([`plot`]) and atomic file writes ([`files`]); and of
//! the `data` commands on image data sets ([`images`], over [`sd_data`]).
//!
//! ```
//! use sd_cli::krr::{AlphaChoice, KrrConfig, run};
//!
//! let report = run(&KrrConfig::toy(AlphaChoice::Fixed(0.0)))?;
//! // Mobahi et al.'s setting: without ground truth, the sixth step is worse than the third.
//! assert!(report.steps[5].loss > report.steps[2].loss);
//! print!("{}", sd_cli::output::table(&report));
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod bench;
pub mod cli;
pub mod data;
pub mod files;
pub mod images;
pub mod krr;
pub mod logging;
pub mod output;
pub mod plot;
pub mod resnet;

// The README's examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Turns clap's multi-line message into one line: `error: <problem>; tip: <tip>; see --help`.
pub fn one_line_clap_error(rendered: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut in_usage = false;
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() {
            in_usage = false;
            continue;
        }
        if line.starts_with("Usage:") {
            in_usage = true;
            continue;
        }
        if in_usage || line.starts_with("For more information") {
            continue;
        }
        parts.push(line.trim_start_matches("error:").trim().to_string());
    }
    parts.push("see --help".into());
    format!("error: {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_errors_fit_on_one_line() {
        let rendered = "error: unexpected argument '--alpa' found\n\n  tip: a similar argument \
                        exists: '--alpha'\n\nUsage: sd-cli krr --alpha <ALPHA>\n\nFor more \
                        information, try '--help'.\n";
        assert_eq!(
            super::one_line_clap_error(rendered),
            "error: unexpected argument '--alpa' found; tip: a similar argument exists: \
             '--alpha'; see --help"
        );
    }
}
