//! What the command lines share for a person at a terminal: log output through `tracing`,
//! progress bars for chains, and one-line errors.
//!
//! Log levels: quiet, errors only; by default warnings; `verbose` 1 info, 2 debug, 3 or more
//! trace; `RUST_LOG` (tracing-subscriber's filter syntax) overrides them all.

use std::path::Path;

use sd_train::{AutoAlpha, BatchProgress, EpochMetrics, Observer, StepResult, StepStart};
use tracing_subscriber::EnvFilter;

/// The filter for a verbosity: `quiet` wins, then each level of `verbose` lowers the threshold.
pub fn log_filter(verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    }
}

/// Installs the global subscriber, writing to stderr (once; later calls do nothing).
pub fn init_logging(verbose: u8, quiet: bool) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::new(log_filter(verbose, quiet)),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

/// Turns a multi-line usage error (clap's rendering) into one line:
/// `error: <problem>; tip: <tip>; see --help`.
pub fn one_line_error(rendered: &str) -> String {
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

/// An error and its causes on one line, each cause said once: a cause whose text its error
/// already quotes is not repeated, the system's error codes (`(os error 2)`) are left out, and
/// line breaks and control characters in a message (a decoder quoting the bytes it choked on) are
/// escaped.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(err);
    while let Some(error) = cause {
        let text = error.to_string();
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = error.source();
    }
    while let Some(start) = line.find(" (os error ") {
        match line[start..].find(')') {
            Some(end) => line.replace_range(start..start + end + 1, ""),
            None => break,
        }
    }
    line.chars()
        .flat_map(|c| -> Vec<char> {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A chain's progress on stderr: a bar per epoch (loss, accuracy, images/s, ETA) when `bars` and
/// stderr is a terminal; a line per network trained and per alpha chosen when `lines`; log lines
/// (info) per epoch and per step.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    bars: bool,
    lines: bool,
    /// Put before each line, e.g. the chain's name.
    prefix: String,
}

impl Progress {
    /// Bars only when `show` and stderr is a terminal; lines when `show`; the log always.
    pub fn new(show: bool) -> Self {
        Progress {
            bar: None,
            bars: show && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            lines: show,
            prefix: String::new(),
        }
    }

    /// The same, each line starting with `prefix: `.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = format!("{}: ", prefix.into());
        self
    }
}

impl Observer for Progress {
    fn step_started(&mut self, start: &StepStart) {
        if self.lines {
            let what = if start.probe {
                "the alpha = 0 probe of Algorithm 1".to_string()
            } else {
                format!("alpha {}", start.alpha)
            };
            eprintln!(
                "{}step {} of {}, {what}",
                self.prefix,
                start.step,
                start.steps - 1
            );
        }
    }

    fn batch(&mut self, p: &BatchProgress) {
        if !self.bars {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(p.total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        });
        bar.set_prefix(format!("step {} epoch {}", p.step, p.epoch));
        bar.set_position(p.done as u64);
        bar.set_message(format!(
            "loss {:.4} acc {:.3} {:.0} img/s",
            p.loss, p.acc, p.images_per_s
        ));
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        tracing::info!(
            step = m.step,
            epoch = m.epoch,
            train_loss = m.train_loss,
            train_acc = m.train_acc,
            val_acc = m.val_acc,
            images_per_s = m.images_per_s,
            "epoch done"
        );
    }

    fn step(&mut self, r: &StepResult) {
        tracing::info!(
            step = r.step,
            test_acc_final = r.test_acc_final,
            test_acc_best = r.test_acc_best,
            seconds = r.seconds,
            "step done"
        );
    }

    fn first_fit_copied(&mut self, from: &Path) {
        if self.lines {
            eprintln!(
                "{}step 0 is the first fit of {}, the same for every alpha: copied",
                self.prefix,
                from.display()
            );
        }
    }

    fn probe_copied(&mut self, step: usize, from: &Path) {
        if self.lines {
            eprintln!(
                "{}Algorithm 1's probe of step {step} is step {step} of {}: copied",
                self.prefix,
                from.display()
            );
        }
    }

    fn alpha_chosen(&mut self, row: &AutoAlpha) {
        if self.lines {
            let optimal = row
                .optimal
                .map_or("none (the fits coincide)".to_string(), |o| {
                    format!("{o:.4}")
                });
            eprintln!(
                "{}step {}: Algorithm 1 chose alpha {:.4} (optimum {optimal})",
                self.prefix, row.step, row.alpha
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_levels() {
        assert_eq!(log_filter(0, false), "warn");
        assert_eq!(log_filter(2, false), "debug");
        assert_eq!(log_filter(0, true), "error");
        assert_eq!(log_filter(9, false), "trace");
    }

    #[test]
    fn usage_errors_fit_on_one_line() {
        let rendered = "error: unexpected argument '--alpa' found\n\n  tip: a similar argument \
                        exists: '--alpha'\n\nUsage: sd-cli krr --alpha <ALPHA>\n\nFor more \
                        information, try '--help'.\n";
        assert_eq!(
            one_line_error(rendered),
            "error: unexpected argument '--alpa' found; tip: a similar argument exists: \
             '--alpha'; see --help"
        );
    }

    #[test]
    fn each_cause_is_said_once_on_one_line() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let error = crate::error::Error::io("/data/points.csv")(missing);
        let line = error_line(&error);
        assert_eq!(line.matches("not found").count(), 1, "{line}");
        assert!(line.starts_with("/data/points.csv"), "{line}");
        let os = std::io::Error::from_raw_os_error(2);
        let line = error_line(&crate::error::Error::io("x.csv")(os));
        assert_eq!(line, "x.csv: No such file or directory");
        let garbled = std::io::Error::other("bad byte \u{1}\nnext line");
        assert_eq!(error_line(&garbled), "bad byte \\u{1}\\nnext line");
    }
}
