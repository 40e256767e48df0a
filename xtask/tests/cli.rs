//! `cargo xtask` as a user meets it: the help, and one clear line with exit status 2 for every
//! kind of bad input, before any work starts.
//!
//! Having an integration test also makes `cargo test --workspace` build `target/debug/xtask` with
//! the workspace's unified features, so `.ci/run` runs the smoke profile with that binary instead
//! of rebuilding candle for `cargo xtask`'s narrower feature set.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("the xtask binary runs")
}

/// Exit status 2 and exactly one line on stderr that contains every one of `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let out = xtask(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
    assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
}

#[test]
fn bare_xtask_prints_its_tasks_and_succeeds() {
    let out = xtask(&[]);
    assert!(out.status.success());
    let help =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for task in ["paper-experiments", "paper-report", "cuda-build"] {
        assert!(help.contains(task), "{task} not in the help:\n{help}");
    }
}

#[test]
fn bad_profiles_and_overrides_are_refused_in_one_line() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_str().unwrap();
    refused(
        &[
            "paper-experiments",
            "--profile",
            "no-such-profile",
            "--out",
            out_dir,
        ],
        &["no-such-profile", "smoke"],
    );
    refused(
        &[
            "paper-experiments",
            "--profile",
            "smoke",
            "--set",
            "epochs",
            "--out",
            out_dir,
        ],
        &["epochs"],
    );
    refused(
        &[
            "paper-experiments",
            "--profile",
            "smoke",
            "--set",
            "epoch=2",
            "--out",
            out_dir,
        ],
        &["epoch"],
    );
    // Nothing was started in the output directory.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn a_report_without_runs_is_refused_in_one_line() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    refused(&["paper-report", dir], &[dir]);
    refused(
        &["paper-experiments", "--profile", "smoke", "--shard", "3/2"],
        &["3/2"],
    );
}
