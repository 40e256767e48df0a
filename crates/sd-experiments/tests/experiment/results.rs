//! The committed results (docs/results/) are what the report makes of their run files: a change
//! of the report's text shows up here, and is committed with the regenerated reports.

use std::path::{Path, PathBuf};

use sd_experiments::report;

fn results(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/results")
        .join(name)
}

/// The report of a copy of `docs/results/<name>`, and the committed one.
fn regenerate(name: &str) -> (String, String) {
    let copy = tempfile::tempdir().unwrap();
    let dir = copy.path().join(name);
    super::common::copy_tree(&results(name), &dir);
    let written = report::write(std::slice::from_ref(&dir), &dir).unwrap();
    (
        std::fs::read_to_string(written).unwrap(),
        std::fs::read_to_string(results(name).join("REPORT.md")).unwrap(),
    )
}

fn section<'a>(report: &'a str, title: &str) -> &'a str {
    let start = report.find(title).unwrap_or_else(|| panic!("no {title}"));
    let end = report[start + title.len()..]
        .find("\n## ")
        .map_or(report.len(), |e| start + title.len() + e);
    &report[start..end]
}

#[test]
fn the_kernel_study_regenerates_its_committed_report() {
    let (regenerated, committed) = regenerate("fmnist-kernel");
    assert_eq!(regenerated, committed);
}

/// The fmnist study's network runs are kept as CSV views only (see its README): its kernel
/// sections regenerate, its network tables cannot.
#[test]
fn the_fmnist_study_regenerates_its_kernel_sections() {
    let (regenerated, committed) = regenerate("fmnist");
    for title in [
        "## Kernel ridge regression: the toy example",
        "## Kernel ridge regression on images",
    ] {
        assert_eq!(section(&regenerated, title), section(&committed, title));
    }
}
