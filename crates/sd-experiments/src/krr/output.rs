//! Printing a [`KrrReport`]: a table for people, JSON and CSV for scripts.
//!
//! The JSON object is a stable interface (docs/cli.md documents every field).

use std::fmt::Write as _;
use std::str::FromStr;

use sd_alpha::Alpha;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::krr::{KernelChoice, KrrReport, LimitReport, StepReport};

/// How a report is printed.
///
/// Text form ([`FromStr`], [`fmt::Display`]): `table`, `json`, `csv`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
)]
#[strum(serialize_all = "lowercase")]
pub enum Format {
    /// A table for people, like the original notebook's.
    #[default]
    Table,
    /// One JSON object (documented in docs/cli.md).
    Json,
    /// CSV: `step,alpha,loss,train_loss`, the limit as step `limit`.
    Csv,
}

impl Format {
    /// `table`, `json` or `csv`.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        crate::error::parse_name("format", text)
    }
}

/// `0.25`, `auto`, or `auto (clamped to [0, 1])`.
fn alpha_text(report: &KrrReport) -> String {
    match (report.alpha, report.clamp) {
        (Alpha::Auto, true) => "auto (clamped to [0, 1])".into(),
        (alpha, _) => alpha.to_string(),
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    alpha: Alpha,
    clamp_alpha: bool,
    kernel: &'static str,
    gamma: Option<f64>,
    coef0: Option<f64>,
    degree: Option<u32>,
    lambda: f64,
    solver: &'static str,
    /// On the Nyström route: landmarks, their seed, the jitter.
    #[serde(skip_serializing_if = "Option::is_none")]
    nystrom: Option<JsonNystrom>,
    n_train: usize,
    n_features: usize,
    targets: &'a [String],
    /// What was read, in words.
    data: &'a str,
    /// With images: how they were read and chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<JsonImages<'a>>,
    reference: Option<&'a str>,
    steps: &'a [StepReport],
    limit: Option<&'a LimitReport>,
    eigenvalues: Option<&'a [f64]>,
}

#[derive(Serialize)]
struct JsonNystrom {
    landmarks: usize,
    seed: u64,
    jitter: f64,
}

/// `cholesky`, `eigen` or `nystrom`.
fn solver_name(report: &KrrReport) -> &'static str {
    match (report.nystrom, report.solver) {
        (Some(_), _) => "nystrom",
        (None, sd_kernel::Solver::Cholesky) => "cholesky",
        (None, sd_kernel::Solver::Eigen) => "eigen",
    }
}

#[derive(Serialize)]
struct JsonImages<'a> {
    #[serde(flatten)]
    source: &'a crate::krr::images::ImageSource,
    labels_changed: usize,
}

/// The report as one JSON object (pretty-printed, ending in a newline).
pub fn json(report: &KrrReport) -> String {
    let (coef0, degree) = match report.kernel {
        KernelChoice::Polynomial { coef0, degree, .. } => (Some(coef0), Some(degree)),
        _ => (None, None),
    };
    let json = JsonReport {
        alpha: report.alpha,
        clamp_alpha: report.clamp,
        kernel: report.kernel.kind().name(),
        gamma: report.kernel.gamma(),
        coef0,
        degree,
        lambda: report.lambda,
        solver: solver_name(report),
        nystrom: report.nystrom.map(|(choice, jitter)| JsonNystrom {
            landmarks: choice.landmarks,
            seed: choice.seed,
            jitter,
        }),
        n_train: report.n_train,
        n_features: report.n_features,
        targets: &report.target_names,
        data: &report.data,
        images: report
            .images
            .as_ref()
            .map(|(source, labels_changed)| JsonImages {
                source,
                labels_changed: *labels_changed,
            }),
        reference: report.reference.as_deref(),
        steps: &report.steps,
        limit: report.limit.as_ref(),
        eigenvalues: report.eigenvalues.as_deref(),
    };
    let mut text = serde_json::to_string_pretty(&json).expect("plain data always serialises");
    text.push('\n');
    text
}

/// A number to five significant digits, the way the original notebook printed its losses
/// (`0.16477`); scientific notation below 1e-4 and from 1e5 on.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0.00000".into()
    } else if (1e-4..1e5).contains(&magnitude) {
        let decimals = (4 - magnitude.log10().floor() as i32).max(0) as usize;
        format!("{value:.decimals$}")
    } else {
        format!("{value:.4e}")
    }
}

fn alpha_cell(alpha: Option<f64>) -> String {
    match alpha {
        None => "-".into(),
        // Short values as given (0.25), optima to four decimals.
        Some(alpha) if (alpha * 1e4).round() / 1e4 == alpha => format!("{alpha}"),
        Some(alpha) => format!("{alpha:.4}"),
    }
}

/// The report as a table, with a short header saying what was run.
pub fn table(report: &KrrReport) -> String {
    let mut out = String::new();
    let steps = report.steps.len();
    let _ = writeln!(
        out,
        "kernel ridge self-distillation: {}, lambda = {}, alpha = {}, {steps} step{} ({})",
        report.kernel,
        report.lambda,
        alpha_text(report),
        if steps == 1 { "" } else { "s" },
        match report.nystrom {
            Some((choice, jitter)) => format!(
                "nystrom route: {} landmarks, seed {}, jitter {jitter:.1e}",
                choice.landmarks, choice.seed
            ),
            None => format!("{} route", solver_name(report)),
        }
    );
    let _ = writeln!(out, "data: {}", report.data);
    let _ = writeln!(
        out,
        "loss: {}",
        report
            .reference
            .as_deref()
            .unwrap_or("none (no held-out points to measure it on)")
    );
    out.push('\n');
    let clamped = report.alpha.is_auto() && report.clamp;
    let accuracy = report.images.is_some();
    let mut rows: Vec<[String; 6]> = vec![[
        "step".into(),
        "alpha".into(),
        if clamped { "optimum" } else { "" }.into(),
        "loss".into(),
        if accuracy { "accuracy" } else { "" }.into(),
        "train loss".into(),
    ]];
    let loss_cell = |loss: Option<f64>| loss.map_or("-".into(), number);
    let accuracy_cell = |value: Option<f64>| match value {
        Some(value) if accuracy => format!("{value:.4}"),
        _ => String::new(),
    };
    for step in &report.steps {
        rows.push([
            step.step.to_string(),
            alpha_cell(step.alpha),
            if clamped {
                alpha_cell(step.optimal_alpha)
            } else {
                String::new()
            },
            loss_cell(step.loss),
            accuracy_cell(step.accuracy),
            number(step.train_loss),
        ]);
    }
    if let Some(limit) = &report.limit {
        rows.push([
            "limit".into(),
            alpha_cell(Some(limit.alpha)),
            String::new(),
            loss_cell(limit.loss),
            accuracy_cell(limit.accuracy),
            number(limit.train_loss),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if widths[c] == 0 {
                continue;
            }
            if c > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:>width$}", width = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if report.steps.len() > 1 {
        out.push_str(
            "\nstep 0 is plain kernel ridge regression (the first fit); step t fits alpha * y + \
             (1 - alpha) * (step t-1's predictions)\n",
        );
    }
    out
}

/// The columns of [`csv`](fn@csv).
pub const CSV_HEADER: [&str; 4] = ["step", "alpha", "loss", "train_loss"];

/// The rows of [`csv`](fn@csv): one per step, then the limit as step `limit`; empty cells where
/// there is no value.
pub fn csv_rows(report: &KrrReport) -> Vec<[String; 4]> {
    let cell = |value: Option<f64>| value.map_or(String::new(), |v| v.to_string());
    let mut rows: Vec<[String; 4]> = report
        .steps
        .iter()
        .map(|step| {
            [
                step.step.to_string(),
                cell(step.alpha),
                cell(step.loss),
                step.train_loss.to_string(),
            ]
        })
        .collect();
    if let Some(limit) = &report.limit {
        rows.push([
            "limit".into(),
            limit.alpha.to_string(),
            cell(limit.loss),
            limit.train_loss.to_string(),
        ]);
    }
    rows
}

/// The report as CSV: `step,alpha,loss,train_loss`; empty cells where there is no value. With
/// images, also `accuracy` and `label_noise` (the same on every row).
pub fn csv(report: &KrrReport) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = CSV_HEADER.to_vec();
    if report.images.is_some() {
        header.extend(["accuracy", "label_noise"]);
    }
    writer.write_record(&header).expect("writing to memory");
    let accuracies = report
        .steps
        .iter()
        .map(|s| s.accuracy)
        .chain(report.limit.as_ref().map(|l| l.accuracy));
    for (row, accuracy) in csv_rows(report).into_iter().zip(accuracies) {
        let mut row = row.to_vec();
        if let Some((source, _)) = &report.images {
            row.push(accuracy.map_or(String::new(), |a| a.to_string()));
            row.push(source.label_noise.to_string());
        }
        writer.write_record(row).expect("writing to memory");
    }
    String::from_utf8(writer.into_inner().expect("writing to memory")).expect("ASCII")
}

/// Renders the report in `format`.
pub fn render(report: &KrrReport, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Json => json(report),
        Format::Csv => csv(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_five_significant_digits() {
        assert_eq!(number(0.164773424), "0.16477");
        assert_eq!(number(0.0), "0.00000");
        assert_eq!(number(0.00092804), "0.00092804");
        assert_eq!(number(-2.5), "-2.5000");
        assert_eq!(number(12345.6), "12346");
        assert_eq!(number(1.5e-7), "1.5000e-7");
        assert_eq!(number(123456.0), "1.2346e5");
    }
}
