//! A profile end to end on fixture data: resumed equals uninterrupted, a chain another process
//! trains is skipped, and the shards of one experiment merge into the report of the whole; the
//! committed results regenerate from their run files (`results`), and the enums spelled as
//! words read back (`names`). One test binary: each links the whole stack.

mod common;
mod names;
mod results;

use std::path::Path;

use sd_experiments::experiment::{self, RunConfig, Runner};
use sd_experiments::plan::{self, Shard};
use sd_experiments::profile::{self, Profile};
use sd_experiments::report::{self, RUN_SECTION};
use sd_train::ChainDir;

/// The smoke profile, smaller still: 120 training images, 40 validation, 40 test.
fn tiny(overrides: &[&str]) -> Profile {
    let mut all: Vec<String> = [
        "fixture_train=160",
        "fixture_test=40",
        "val_size=40",
        "batch_size=40",
        "num_workers=1",
        "kernel_images=false",
        // One seed and clean labels: these tests are about resuming and sharding, not seeds or
        // noise levels (the smoke profile has two of each).
        "seeds=[0]",
        "label_noise=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(overrides.iter().map(|s| s.to_string()));
    profile::load(&profile::locate("smoke").unwrap(), &all).unwrap()
}

fn run(profile: &Profile, out: &Path, shard: Option<Shard>) -> std::path::PathBuf {
    experiment::run(
        profile,
        &RunConfig {
            out: out.to_path_buf(),
            shard,
            show_progress: false,
            source: "test".into(),
        },
    )
    .unwrap()
}

/// What must not differ between two runs of one experiment: the report above its run
/// section, and the CSV files of results.
fn results(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    let (results, _) = report.split_once(RUN_SECTION).unwrap();
    out.push(("REPORT.md".to_string(), results.to_string()));
    for file in [
        "accuracy.csv",
        "steps.csv",
        "auto_alpha.csv",
        "krr/losses.csv",
    ] {
        if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
            out.push((file.to_string(), text));
        }
    }
    out
}

fn assert_same(a: &Path, b: &Path) {
    let (a, b) = (results(a), results(b));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x, y, "{name} differs");
    }
}

/// Leaves `dir` as a run killed during step `k` would: step `k`'s results and last checkpoint
/// gone, later steps never started; an auto chain killed during its probe.
fn interrupt(dir: &Path, k: usize) {
    for chain in std::fs::read_dir(dir.join("runs")).unwrap() {
        let chain = chain.unwrap().path();
        let keep_before = |file: &Path| {
            let Ok(text) = std::fs::read_to_string(file) else {
                return;
            };
            let kept: String = text
                .lines()
                .filter(|l| {
                    let row: serde_json::Value = serde_json::from_str(l).unwrap();
                    (row["step"].as_u64().unwrap() as usize) < k
                })
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(file, kept).unwrap();
        };
        keep_before(&chain.join("test.jsonl"));
        keep_before(&chain.join("auto_alpha.jsonl"));
        keep_before(&chain.join("probe/test.jsonl"));
        std::fs::remove_file(chain.join(format!("step_{k}/last.safetensors"))).unwrap();
        let mut later = k + 1;
        while chain.join(format!("step_{later}")).exists() {
            std::fs::remove_dir_all(chain.join(format!("step_{later}"))).unwrap();
            later += 1;
        }
    }
}

#[test]
fn a_resumed_experiment_reports_what_an_uninterrupted_one_does() {
    let profile = tiny(&["steps=3", "alphas=[0.5, \"auto\"]", "krr=false"]);
    let whole = tempfile::tempdir().unwrap();
    let report = run(&profile, whole.path(), None);
    let text = std::fs::read_to_string(report).unwrap();
    assert!(
        text.contains("| 2 |") && text.contains("## Automatic alpha"),
        "{text}"
    );
    assert!(!text.contains("Unfinished"), "{text}");
    let auto = std::fs::read_to_string(whole.path().join("auto_alpha.csv")).unwrap();
    assert_eq!(auto.lines().count(), 1 + 2, "{auto}");

    let resumed = tempfile::tempdir().unwrap();
    run(&profile, resumed.path(), None);
    interrupt(resumed.path(), 1);
    let first_fit = resumed
        .path()
        .join("runs/alpha-0.5_seed-0/step_0/last.safetensors");
    let trained_at = std::fs::metadata(&first_fit).unwrap().modified().unwrap();
    report::write(&[resumed.path().to_path_buf()], resumed.path()).unwrap();
    let partial = std::fs::read_to_string(resumed.path().join("REPORT.md")).unwrap();
    assert!(partial.contains("1 of 3 steps finished"), "{partial}");

    run(&profile, resumed.path(), None);
    assert_same(whole.path(), resumed.path());
    let untouched = std::fs::metadata(&first_fit).unwrap().modified().unwrap();
    assert_eq!(trained_at, untouched, "a finished step was trained again");
    // The auto chain's first fit was copied from the alpha = 0.5 chain's, not trained again.
    let copied = resumed
        .path()
        .join("runs/alpha-auto_seed-0/step_0/last.json");
    let sidecar = std::fs::read_to_string(copied).unwrap();
    assert!(sidecar.contains("copied_from"), "{sidecar}");
    // Another setting is refused, not mixed in.
    let other = tiny(&["steps=3", "alphas=[0.5, \"auto\"]", "krr=false", "lr=0.01"]);
    let error = experiment::run(
        &other,
        &RunConfig {
            out: resumed.path().to_path_buf(),
            shard: None,
            show_progress: false,
            source: "test".into(),
        },
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("lr 0.001 there, 0.01 now"),
        "{error}"
    );
}

#[test]
fn a_chain_another_process_trains_is_skipped() {
    let profile = tiny(&["steps=1", "alphas=[0.5]", "krr=false"]);
    let out = tempfile::tempdir().unwrap();
    let dataset =
        sd_data::Dataset::open(experiment::data_path(&profile, out.path()).unwrap()).unwrap();
    let runner = Runner {
        profile: &profile,
        dataset: &dataset,
        device: candle_core::Device::Cpu,
        show_progress: false,
    };
    let chain = plan::chains(&profile)[0];
    let dir = ChainDir::new(out.path().join("runs").join(chain.dir_name()));
    let held = dir.lock().unwrap();
    assert_eq!(runner.run(chain, &dir).unwrap(), None);
    assert!(!dir.step_dir(0).exists());
    drop(held);
    assert_eq!(runner.run(chain, &dir).unwrap(), Some(1));
    assert_eq!(
        runner.run(chain, &dir).unwrap(),
        Some(0),
        "finished: nothing to train"
    );
}

#[test]
fn merged_shards_report_what_the_whole_run_does() {
    let profile = tiny(&["steps=2", "alphas=[0.5, \"auto\"]", "seeds=[0, 1]"]);
    let whole = tempfile::tempdir().unwrap();
    run(&profile, whole.path(), None);
    let (one, two, merged) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // Shards 1 and 2 of 3 share a directory; shard 3 (the seed-0 auto chain) trains its own
    // first fit, which the whole run copied from the alpha = 0.5 chain.
    run(&profile, one.path(), Some("1/3".parse().unwrap()));
    run(&profile, one.path(), Some("2/3".parse().unwrap()));
    run(&profile, two.path(), Some("3/3".parse().unwrap()));
    let shard_report = std::fs::read_to_string(two.path().join("REPORT.md")).unwrap();
    assert!(shard_report.contains("1 chain:"), "{shard_report}");
    assert!(
        shard_report.contains("`alpha-0.5_seed-1`: not started"),
        "the other shards' chains are listed: {shard_report}"
    );
    let sidecar = two.path().join("runs/alpha-auto_seed-0/step_0/last.json");
    assert!(
        !std::fs::read_to_string(sidecar)
            .unwrap()
            .contains("copied_from")
    );
    report::write(
        &[one.path().to_path_buf(), two.path().to_path_buf()],
        merged.path(),
    )
    .unwrap();
    assert_same(whole.path(), merged.path());
    let text = std::fs::read_to_string(merged.path().join("REPORT.md")).unwrap();
    for shard in ["(shard 1/3)", "(shard 2/3)", "(shard 3/3)"] {
        assert!(text.contains("4 chains") && text.contains(shard), "{text}");
    }
    assert!(text.contains("± "), "two seeds give a deviation: {text}");
    for file in ["accuracy.png", "accuracy.svg", "krr/alpha-0/fit.png"] {
        assert!(merged.path().join(file).is_file(), "{file}");
    }
}

#[test]
fn a_directory_without_an_experiment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let error = report::write(&[dir.path().to_path_buf()], dir.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("is not an experiment directory"), "{error}");
}

#[test]
fn the_kernel_parts_report_the_same_text_from_any_directory() {
    // The kernel parts alone: no chain, so no wall time in the report.
    let profile = tiny(&[
        "networks=false",
        "kernel_images=true",
        "kernel_train_size=60",
        "kernel_nystrom=20",
        "kernel_steps=2",
        "kernel_seeds=[0, 1]",
        "kernel_alphas=[0.5, \"auto\"]",
    ]);
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let report = std::fs::read_to_string(run(&profile, one.path(), None)).unwrap();
    assert!(
        report.contains("## Kernel ridge regression: the toy example")
            && report.contains("## Kernel ridge regression on images"),
        "{report}"
    );
    // The fixture and the directory are named relative to the report.
    assert!(
        report.contains("regression on `data/fixture-160-40`"),
        "{report}"
    );
    assert!(report.contains("- `.`: commit test"), "{report}");
    // Rendered from the runs: no markdown beside them.
    assert!(!one.path().join("krr/losses.md").exists());
    assert!(!one.path().join("krr/images/section.md").exists());
    // Another directory, and a copy reported where it lies, give the same text.
    assert_eq!(
        std::fs::read_to_string(run(&profile, two.path(), None)).unwrap(),
        report
    );
    let copy = tempfile::tempdir().unwrap();
    common::copy_tree(one.path(), copy.path());
    std::fs::remove_file(copy.path().join("REPORT.md")).unwrap();
    let again = report::write(&[copy.path().to_path_buf()], copy.path()).unwrap();
    assert_eq!(std::fs::read_to_string(again).unwrap(), report);
    // Written elsewhere, the report names the experiment's directory from where it is.
    let elsewhere = copy.path().join("elsewhere");
    let moved = report::write(&[one.path().to_path_buf()], &elsewhere).unwrap();
    let moved = std::fs::read_to_string(moved).unwrap();
    let named = format!(
        "- `{}`: commit test",
        Path::new("..")
            .join("..")
            .join(one.path().file_name().unwrap())
            .display()
    );
    assert!(moved.contains(&named), "{named} in {moved}");
    assert!(elsewhere.join("krr/images/accuracy-exact.png").is_file());
}
