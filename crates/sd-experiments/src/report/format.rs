//! Pieces of text every section of the report shares: the head of the per-step tables, and
//! paths as the report names them.

use std::path::{Path, PathBuf};

use sd_alpha::Alpha;

/// `α = 0.5`: a column's title.
pub(super) fn alpha_title(alpha: Alpha) -> String {
    format!("α = {alpha}")
}

/// `| step | alpha ... |` and its separator: the head of every per-step table.
pub(super) fn step_table_head(alphas: &[Alpha]) -> String {
    format!(
        "| step | {} |\n|---|{}\n",
        alphas
            .iter()
            .map(|a| alpha_title(*a))
            .collect::<Vec<_>>()
            .join(" | "),
        "---:|".repeat(alphas.len())
    )
}

/// `path` as seen from the directory `base` (`.`, `../shard-2`), so that the report names its
/// directories the same wherever the results lie; `path` as it is where either cannot be
/// resolved.
pub(super) fn relative(base: &Path, path: &Path) -> PathBuf {
    let (Ok(base), Ok(target)) = (std::fs::canonicalize(base), std::fs::canonicalize(path)) else {
        return path.to_path_buf();
    };
    let common = base
        .components()
        .zip(target.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative: PathBuf = base.components().skip(common).map(|_| "..").collect();
    relative.extend(target.components().skip(common));
    if relative.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        relative
    }
}
