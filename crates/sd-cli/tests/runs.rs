//! Run directories as a hostile user treats them: concurrent runs, kills mid-write, damaged
//! files, resumes with other settings, bad teachers. Each test is a case of
//! `docs/robustness.md`; nothing may be lost, mixed, or left for someone to clean by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sd_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sd-cli"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("sd-cli runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and expects failure: exit code 2, no panic, exactly one line on stderr starting `error: `.
fn error_line(args: &[&str]) -> String {
    let output = sd_cli(args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(
        !err.chars().any(|c| c.is_control() && c != '\n'),
        "{args:?}: {err:?}"
    );
    err.trim_end().to_string()
}

/// A CIFAR-shaped fixture of 60 training and 20 test images in `dir/fx`.
fn fixture(dir: &Path) -> String {
    let data = dir.join("fx");
    let data_s = data.to_str().unwrap().to_string();
    let output = sd_cli(&[
        "data", "fixture", "--out", &data_s, "--train", "60", "--test", "20",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    data_s
}

/// `sd-cli resnet` on the fixture: one epoch per step, batches of 20, 20 validation images.
fn resnet_args<'a>(data: &'a str, out: &'a str, alpha: &'a str) -> Vec<&'a str> {
    vec![
        "resnet",
        "--data",
        data,
        "--alpha",
        alpha,
        "--epochs",
        "1",
        "--batch-size",
        "20",
        "--val-size",
        "20",
        "--out",
        out,
        "-q",
    ]
}

/// Trains `steps` steps into a new run directory under `out`; returns it.
fn trained(data: &str, out: &Path, alpha: &str, steps: &str) -> PathBuf {
    let before = run_dirs(out);
    let mut args = resnet_args(data, out.to_str().unwrap(), alpha);
    args.extend(["--steps", steps]);
    let output = sd_cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut new: Vec<PathBuf> = run_dirs(out)
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new.pop().unwrap()
}

fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files under `dir`, recursively, relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

/// Case 1: two runs started in the same second get a directory each, whole.
#[test]
fn two_runs_at_once_never_share_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path());
    let out = dir.path().join("runs");
    let out_s = out.to_str().unwrap();
    // The names this run could take in the next seconds are taken already (another run's).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut taken = Vec::new();
    for t in now - 1..now + 30 {
        let date = Command::new("date")
            .args(["-u", "-d", &format!("@{t}"), "+%Y%m%d-%H%M%S"])
            .output()
            .unwrap();
        let name = format!(
            "{}_0.6_0.001_0",
            String::from_utf8(date.stdout).unwrap().trim()
        );
        let other = out.join(name);
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("another-run.txt"), "mine").unwrap();
        taken.push(other);
    }
    let mut args = resnet_args(&data, out_s, "0.6");
    args.extend(["--steps", "2"]);
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_sd-cli"))
                .args(&args)
                .env_remove("RUST_LOG")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    for other in &taken {
        assert_eq!(files(other), ["another-run.txt"], "{}", other.display());
    }
    let dirs: Vec<PathBuf> = run_dirs(&out)
        .into_iter()
        .filter(|d| !taken.contains(d))
        .collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    for run in &dirs {
        // Each holds one run: 2 epoch rows, 2 test rows, one set of checkpoints per step.
        assert_eq!(read(&run.join("metrics.jsonl")).lines().count(), 2);
        assert_eq!(read(&run.join("test.csv")).lines().count(), 3);
        for step in ["step_0", "step_1"] {
            let best = files(&run.join(step))
                .into_iter()
                .filter(|f| f.starts_with("epoch=") && f.ends_with(".safetensors"))
                .count();
            assert_eq!(best, 1, "{}", run.display());
        }
    }
    // Both took the next free name: `<time>_0.6_0.001_0-2`, `-3`, ...
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n.contains("_0.6_0.001_0-")),
        "{names:?}"
    );
}

/// Cases 2, 3 and 11: a resume with other settings, a teacher of another step, an unfinished
/// step's checkpoint, and a teacher with NaN weights are refused before anything is written.
#[test]
fn teachers_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path());
    let out = dir.path().join("runs");
    let out_s = out.to_str().unwrap();
    let run = trained(&data, &out, "0.6", "2");
    let snapshot = |run: &Path| -> Vec<(String, Vec<u8>)> {
        files(run)
            .into_iter()
            .filter(|f| f != ".lock")
            .map(|f| (f.clone(), std::fs::read(run.join(&f)).unwrap()))
            .collect()
    };
    let before = snapshot(&run);
    let step_0 = run.join("step_0/last.safetensors");
    let step_0_s = step_0.to_str().unwrap();

    // Other settings into this run directory: refused with the differences named.
    let mut args = resnet_args(&data, out_s, "0.1");
    args.extend([
        "--lr",
        "1e-2",
        "--teacher-step",
        "0",
        "--teacher-ckpt",
        step_0_s,
    ]);
    let err = error_line(&args);
    assert!(
        err.contains("alpha 0.6 there, 0.1 now") && err.contains("lr 0.001 there, 0.01 now"),
        "{err}"
    );

    // A step-0 checkpoint given as step 5's.
    let mut args = resnet_args(&data, out_s, "0.6");
    args.extend(["--teacher-step", "5", "--teacher-ckpt", step_0_s]);
    let err = error_line(&args);
    assert!(
        err.contains("checkpoint of step 0, not of step 5") && err.contains("--teacher-step 0"),
        "{err}"
    );

    // The checkpoint of a step that did not finish (as a kill after its first epoch leaves it).
    let unfinished = dir.path().join("unfinished.safetensors");
    std::fs::copy(run.join("step_1/last.safetensors"), &unfinished).unwrap();
    let mut sidecar: serde_json::Value =
        serde_json::from_str(&read(&run.join("step_1/last.json"))).unwrap();
    assert_eq!(sidecar["finished"], true);
    sidecar["finished"] = false.into();
    sidecar["epochs"] = 2.into();
    std::fs::write(unfinished.with_extension("json"), sidecar.to_string()).unwrap();
    let mut args = resnet_args(&data, out_s, "0.6");
    args.extend([
        "--teacher-step",
        "1",
        "--teacher-ckpt",
        unfinished.to_str().unwrap(),
    ]);
    let err = error_line(&args);
    assert!(
        err.contains("step 1 did not finish (this checkpoint is from epoch 0 of 2)"),
        "{err}"
    );

    // A checkpoint with nothing saying which step it is.
    std::fs::remove_file(unfinished.with_extension("json")).unwrap();
    let err = error_line(&args);
    assert!(err.contains("unfinished.json is missing"), "{err}");

    // A teacher with NaN weights is blamed on the teacher, not on the student's learning rate.
    let nan = dir.path().join("nan.safetensors");
    let mut bytes = std::fs::read(&step_0).unwrap();
    let end = bytes.len();
    bytes[end - 4096..].fill(0xff);
    std::fs::write(&nan, bytes).unwrap();
    std::fs::copy(run.join("step_0/last.json"), nan.with_extension("json")).unwrap();
    let mut args = resnet_args(&data, out_s, "0.6");
    args.extend([
        "--teacher-step",
        "0",
        "--teacher-ckpt",
        nan.to_str().unwrap(),
    ]);
    let err = error_line(&args);
    assert!(
        err.contains("nan.safetensors holds non-finite values") && !err.contains("--lr"),
        "{err}"
    );

    // Nothing was written anywhere: no new run directory, the run's files byte for byte.
    assert_eq!(run_dirs(&out), vec![run.clone()]);
    assert_eq!(snapshot(&run), before);
}

/// Cases 4, 5 and 9: a resume keeps earlier rows byte for byte and appends; a damaged row is
/// an error naming the file and line; a killed write's temporaries are removed by the next run.
#[test]
fn resumes_append_rows_and_read_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path());
    let out = dir.path().join("runs");
    let out_s = out.to_str().unwrap();
    let run = trained(&data, &out, "0.6", "2");

    // Earlier rows in other digits (an older writer's): the same numbers, other text.
    let metrics_csv = run.join("metrics.csv");
    let mut lines: Vec<String> = read(&metrics_csv).lines().map(String::from).collect();
    let mut cells: Vec<String> = lines[1].split(',').map(String::from).collect();
    let loss: f64 = cells[3].parse().unwrap();
    cells[3] = format!("{loss:e}");
    assert_ne!(cells[3], loss.to_string());
    lines[1] = cells.join(",");
    std::fs::write(&metrics_csv, lines.join("\n") + "\n").unwrap();
    let metrics_before = read(&metrics_csv);
    let jsonl_before = read(&run.join("metrics.jsonl"));
    let test_before = read(&run.join("test.csv"));

    // Temporaries of a write killed midway, old and new names.
    let stale = [
        run.join("step_1/.last.safetensors.Ab3dEf.sd-tmp"),
        run.join(".sd-tmp-xYz123.safetensors"),
        run.join(".metrics.jsonl.12345.partial"),
    ];
    for path in &stale {
        std::fs::write(path, b"half a file").unwrap();
    }

    // A kill between step 1's test row and the flag in its sidecar: the row decides.
    let sidecar_path = run.join("step_1/last.json");
    let mut sidecar: serde_json::Value = serde_json::from_str(&read(&sidecar_path)).unwrap();
    sidecar["finished"] = false.into();
    std::fs::write(&sidecar_path, sidecar.to_string()).unwrap();

    let teacher = run.join("step_1/last.safetensors");
    let mut args = resnet_args(&data, out_s, "0.6");
    args.extend([
        "--steps",
        "1",
        "--teacher-step",
        "1",
        "--teacher-ckpt",
        teacher.to_str().unwrap(),
    ]);
    let output = sd_cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let sidecar: serde_json::Value = serde_json::from_str(&read(&sidecar_path)).unwrap();
    assert_eq!(sidecar["finished"], true);
    let metrics_after = read(&metrics_csv);
    assert!(
        metrics_after.starts_with(&metrics_before),
        "{metrics_before}\n---\n{metrics_after}"
    );
    assert_eq!(metrics_after.lines().count(), 4);
    assert!(read(&run.join("metrics.jsonl")).starts_with(&jsonl_before));
    let test_after = read(&run.join("test.csv"));
    assert!(test_after.starts_with(&test_before) && test_after.lines().count() == 4);
    for path in &stale {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
    assert!(
        !files(&run).iter().any(|f| f.contains("sd-tmp")),
        "{:?}",
        files(&run)
    );

    // From the step-0 teacher again: step 1 is trained anew, and step 2, whose row goes, goes
    // with its checkpoints (they can no longer pass for a finished step).
    let mut again = resnet_args(&data, out_s, "0.6");
    let step_0 = run.join("step_0/last.safetensors");
    again.extend([
        "--steps",
        "1",
        "--teacher-step",
        "0",
        "--teacher-ckpt",
        step_0.to_str().unwrap(),
    ]);
    let output = sd_cli(&again);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(read(&run.join("test.csv")).lines().count(), 3);
    assert!(!run.join("step_2").exists());

    // A row cut short (a disk that filled up) is an error naming the file and the line.
    let test_jsonl = run.join("test.jsonl");
    let text = read(&test_jsonl);
    std::fs::write(&test_jsonl, &text[..text.len() - 20]).unwrap();
    let err = error_line(&args);
    assert!(err.contains("test.jsonl, line 2"), "{err}");
}

/// A killed `sd-cli resnet` run continues with the same command and `--resume`; with other
/// settings it is refused.
#[test]
fn a_killed_run_continues_with_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path());
    let out = dir.path().join("runs");
    let out_s = out.to_str().unwrap();
    let run = trained(&data, &out, "0.6", "3");
    let first_rows = read(&run.join("metrics.csv"));
    // What a kill during step 2 leaves: rows of steps 0 and 1, a half-trained step 2.
    let tests = read(&run.join("test.jsonl"));
    let kept: Vec<&str> = tests.lines().take(2).collect();
    std::fs::write(run.join("test.jsonl"), kept.join("\n") + "\n").unwrap();
    let run_s = run.to_str().unwrap();
    let mut args = resnet_args(&data, out_s, "0.6");
    args.extend(["--steps", "3", "--resume", run_s]);
    let output = sd_cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(run_dirs(&out), vec![run.clone()]);
    assert_eq!(read(&run.join("test.csv")).lines().count(), 4);
    // Steps 0 and 1 were kept byte for byte; step 2 was trained again, to the same numbers
    // (all but its timings).
    let (before, after) = (first_rows, read(&run.join("metrics.csv")));
    let (before, after): (Vec<&str>, Vec<&str>) =
        (before.lines().collect(), after.lines().collect());
    assert_eq!(before.len(), 4);
    assert_eq!(before[..3], after[..3]);
    let numbers = |line: &str| line.split(',').take(8).collect::<Vec<_>>().join(",");
    assert_eq!(numbers(before[3]), numbers(after[3]));

    let mut args = resnet_args(&data, out_s, "0.3");
    args.extend(["--resume", run_s]);
    let err = error_line(&args);
    assert!(err.contains("alpha 0.6 there, 0.3 now"), "{err}");
    let mut args = resnet_args(&data, out_s, "0.6");
    args.extend(["--resume", dir.path().to_str().unwrap()]);
    let err = error_line(&args);
    assert!(err.contains("is not a run directory"), "{err}");
}

/// Cases 6 and 11: nothing to train on is refused before a directory is made; a loss that
/// explodes without becoming NaN is flagged in the log and in the metrics.
#[test]
fn empty_and_diverging_runs_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path());
    let out = dir.path().join("runs");
    let out_s = out.to_str().unwrap();
    for flag in ["--train-size", "--limit-train", "--test-size"] {
        let mut args = resnet_args(&data, out_s, "0.5");
        args.extend([flag, "0"]);
        let err = error_line(&args);
        assert!(err.contains("must be at least 1"), "{err}");
    }
    assert!(!out.exists());

    let mut args = resnet_args(&data, out_s, "0.5");
    args.retain(|a| *a != "-q");
    args.extend(["--steps", "1", "--lr", "1e6"]);
    let output = sd_cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("training diverged"),
        "{}",
        stderr(&output)
    );
    let run = run_dirs(&out).pop().unwrap();
    let row: serde_json::Value =
        serde_json::from_str(read(&run.join("metrics.jsonl")).lines().next().unwrap()).unwrap();
    assert!(
        row["warning"]
            .as_str()
            .is_some_and(|w| w.contains("lower the learning rate")),
        "{row}"
    );
}

/// Case 8: a refused setting writes nothing; a chain with no finished step takes new settings.
#[test]
fn refused_experiments_write_nothing_and_unfinished_chains_take_new_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");
    let out_s = out.to_str().unwrap();
    let base = [
        "experiments",
        "run",
        "--profile",
        "smoke",
        "--set",
        "fixture_train=100",
        "--set",
        "kernel_images=false",
        "--set",
        "batch_size=40",
        "--set",
        "alphas=[0.5]",
        "--set",
        "steps=1",
        // One epoch, clean labels: one chain with one metrics row.
        "--set",
        "epochs=1",
        "--set",
        "label_noise=0",
        "--out",
        out_s,
        "-q",
    ];
    let mut args = base.to_vec();
    args.extend(["--set", "val_size=100000"]);
    let err = error_line(&args);
    assert!(err.contains("100000"), "{err}");
    // Only the fixture (data, valid whatever the settings) may be there: no record, no report,
    // no kernel part, no chain.json.
    let written = if out.exists() { files(&out) } else { vec![] };
    assert!(
        written.iter().all(|f| f.starts_with("data/fixture-100-")),
        "{written:?}"
    );

    // A first attempt that stops before its first step finishes (here: a record of other
    // settings with nothing trained) does not block the corrected rerun.
    let chain = out.join("runs/alpha-0.5_seed-0");
    std::fs::create_dir_all(&chain).unwrap();
    let mut args = base.to_vec();
    args.extend(["--set", "val_size=20", "--set", "krr=false"]);
    let output = sd_cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let record: serde_json::Value = serde_json::from_str(&read(&chain.join("chain.json"))).unwrap();
    let mut other = record.clone();
    other["settings"]["val_size"] = 30.into();
    std::fs::write(chain.join("chain.json"), other.to_string()).unwrap();
    std::fs::remove_file(chain.join("test.jsonl")).unwrap();
    let output = sd_cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(read(&chain.join("test.csv")).lines().count(), 2);
    // The first attempt's epoch row went; only the new one is there.
    assert_eq!(read(&chain.join("metrics.jsonl")).lines().count(), 1);
    // Once a step is finished, other settings are refused, naming the difference.
    args.extend(["--set", "val_size=25"]);
    let err = error_line(&args);
    assert!(err.contains("val_size 20 there, 25 now"), "{err}");
}

/// Case 7: a fixture that a kill or a full disk left half written is written again, not
/// trusted, and does not block the next run.
#[test]
fn a_half_written_fixture_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp");
    let parent = out.join("data/fixture-100-100");
    let fixture = parent.join("cifar-10-batches-bin");
    // What an interrupted write leaves: the manifest and some batch files, not all.
    let output = sd_cli(&[
        "data",
        "fixture",
        "--out",
        parent.to_str().unwrap(),
        "--train",
        "100",
        "--test",
        "100",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::remove_file(fixture.join("data_batch_2.bin")).unwrap();
    std::fs::write(fixture.join(".data_batch_2.bin.4242.sd-tmp"), b"half").unwrap();
    let output = sd_cli(&[
        "experiments",
        "run",
        "--profile",
        "smoke",
        "--set",
        "fixture_train=100",
        "--set",
        "kernel_images=false",
        "--set",
        "val_size=20",
        "--set",
        "batch_size=40",
        "--set",
        "alphas=[0.5]",
        "--set",
        "steps=1",
        "--set",
        "krr=false",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(fixture.join("data_batch_5.bin").is_file());
    assert!(fixture.join("sd-data-fixture.json").is_file());
    let data = out.join("data");
    assert!(
        files(&data).iter().all(|f| !f.contains("sd-tmp")),
        "{:?}",
        files(&data)
    );
}

/// Case 10: figures are written as a set; one that cannot be written leaves the old set as it
/// was, and a new set drops the old figures it lacks.
#[test]
fn figures_are_replaced_as_a_set() {
    let dir = tempfile::tempdir().unwrap();
    let figures = dir.path().join("figures");
    let figures_s = figures.to_str().unwrap();
    let output = sd_cli(&["krr", "--alpha", "0.25", "--plot", figures_s]);
    assert!(output.status.success(), "{}", stderr(&output));
    let figure_files = |dir: &Path| -> Vec<String> {
        files(dir)
            .into_iter()
            .filter(|f| f != ".sd-figures")
            .collect()
    };
    let old: Vec<(String, Vec<u8>)> = figure_files(&figures)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(figures.join(&f)).unwrap()))
        .collect();
    let names: Vec<&str> = old.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "b_diag.png",
            "b_diag.svg",
            "fit.png",
            "fit.svg",
            "ratios.png",
            "ratios.svg"
        ]
    );

    // One target cannot be written (a directory is in the way): nothing changes.
    std::fs::remove_file(figures.join("ratios.svg")).unwrap();
    std::fs::create_dir(figures.join("ratios.svg")).unwrap();
    let err = error_line(&["krr", "--alpha", "0.5", "--plot", figures_s]);
    assert!(err.contains("ratios.svg"), "{err}");
    for (name, bytes) in &old {
        if name != "ratios.svg" {
            assert_eq!(&std::fs::read(figures.join(name)).unwrap(), bytes, "{name}");
        }
    }
    assert!(!files(&figures).iter().any(|f| f.contains("sd-tmp")));
    // A file of the user's that looks like a figure is not ours to remove.
    std::fs::write(figures.join("fit_mine.png"), b"the user's").unwrap();

    // Two features: no fit figure. The old one goes; the set stays consistent.
    std::fs::remove_dir(figures.join("ratios.svg")).unwrap();
    let mut points = String::from("x1,x2,y\n");
    for i in 0..20 {
        let (a, b) = (i as f64 / 20.0, ((i * 7) % 20) as f64 / 20.0);
        points.push_str(&format!("{a},{b},{}\n", (3.0 * a + b).sin()));
    }
    let data = dir.path().join("points.csv");
    std::fs::write(&data, points).unwrap();
    let output = sd_cli(&["krr", "--data", data.to_str().unwrap(), "--plot", figures_s]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        figure_files(&figures),
        [
            "b_diag.png",
            "b_diag.svg",
            "fit_mine.png",
            "ratios.png",
            "ratios.svg"
        ]
    );
}

/// Case 12 and the messages: bounded reads, one cause said once, in words.
#[test]
fn bad_input_costs_little_and_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let err = error_line(&["krr", "--data", "/dev/zero"]);
    assert!(
        err.contains("/dev/zero: line 1 is longer than 64 MiB"),
        "{err}"
    );

    let err = error_line(&["krr", "--data", "/nonexistent/points.csv"]);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("os error"), "{err}");

    // A gzip that holds text, not a tar archive: no raw bytes in the message.
    let archive = dir.path().join("cifar-10-binary.tar.gz");
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, "0123456789\n".repeat(200).as_bytes()).unwrap();
    std::fs::write(&archive, gzip.finish().unwrap()).unwrap();
    let err = error_line(&["data", "inspect", archive.to_str().unwrap()]);
    assert!(
        err.contains("holds something other than a tar archive") && !err.contains("0123456789"),
        "{err}"
    );

    // Something that is no directory of data: said what it is.
    let err = error_line(&["data", "inspect", "/dev/null"]);
    assert!(
        err.contains("/dev/null") && err.contains("Not a directory"),
        "{err}"
    );

    let err = error_line(&["krr", "--kernel", "poly", "--degree", "4000000000"]);
    assert!(err.contains("poly kernel overflowed"), "{err}");
}
