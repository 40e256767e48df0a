//! `sd-cli` as a user runs it: the output formats, the figures, and one readable error line with
//! exit code 2 for every kind of bad input.

use std::path::Path;
use std::process::{Command, Output};

fn sd_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sd-cli"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("sd-cli runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Runs and expects failure: exit code 2, no panic, exactly one line on stderr starting `error: `.
fn error_line(args: &[&str]) -> String {
    let output = sd_cli(args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(stdout(&output).is_empty(), "{args:?}");
    err.trim_end().to_string()
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

#[test]
fn the_readme_command_prints_the_original_table() {
    let output = sd_cli(&["krr", "--alpha", "0.25"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    // The original notebook's alpha = 0.25 losses, step by step, then the limit.
    let losses: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.trim_start().starts_with(|c: char| c.is_ascii_digit()) || l.starts_with("limit")
        })
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        losses,
        [
            "0.16477", "0.15309", "0.14958", "0.14903", "0.14946", "0.15011", "0.15250"
        ]
    );
    assert!(
        stderr(&output).is_empty(),
        "quiet by default: {}",
        stderr(&output)
    );
}

#[test]
fn json_holds_every_documented_field() {
    let output = sd_cli(&["krr", "--alpha", "0", "--format", "json"]);
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["alpha"], 0.0);
    assert_eq!(json["gamma"], 80.0);
    assert_eq!(json["lambda"], 0.2);
    assert_eq!(json["kernel"], "rbf");
    assert_eq!(json["n_train"], 11);
    assert_eq!(json["solver"], "eigen");
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    assert_eq!(steps[0]["step"], 0);
    assert!(steps[0]["alpha"].is_null());
    assert_eq!(steps[1]["alpha"], 0.0);
    assert_eq!(
        format!("{:.5}", steps[5]["loss"].as_f64().unwrap()),
        "0.18251"
    );
    assert_eq!(steps[3]["b_diag"].as_array().unwrap().len(), 11);
    assert_eq!(
        format!("{:.5}", json["limit"]["loss"].as_f64().unwrap()),
        "0.49505"
    );
    assert!(
        json["limit"]["b_diag"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b == 0.0)
    );
    let eigenvalues: Vec<f64> = json["eigenvalues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(eigenvalues.windows(2).all(|w| w[0] >= w[1]));

    let auto = sd_cli(&[
        "krr",
        "--alpha",
        "auto",
        "--clamp-alpha",
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&auto)).unwrap();
    assert_eq!(json["alpha"], "auto");
    assert_eq!(json["clamp_alpha"], true);
    let step1 = &json["steps"][1];
    // The unclamped optimum at step 1 is negative on the toy data; clamping takes it to 0.
    assert!(step1["optimal_alpha"].as_f64().unwrap() < 0.0);
    assert_eq!(step1["alpha"], 0.0);
}

#[test]
fn csv_and_the_cholesky_route() {
    let output = sd_cli(&["krr", "--alpha", "0.35", "--format", "csv"]);
    let csv = stdout(&output);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "step,alpha,loss,train_loss");
    assert!(lines[1].starts_with("0,,0.16477"));
    assert!(lines[7].starts_with("limit,0.35,0.14958"));
    let json = sd_cli(&["krr", "--format", "json", "--solver", "cholesky"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(json["solver"], "cholesky");
    assert!(json["eigenvalues"].is_null() && json["steps"][0]["b_diag"].is_null());
}

#[test]
fn plot_writes_png_and_svg_figures() {
    let dir = tempfile::tempdir().unwrap();
    let figures = dir.path().join("figures");
    let output = sd_cli(&["krr", "--plot", figures.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    for name in ["fit", "b_diag", "ratios"] {
        let png = std::fs::read(figures.join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(figures.join(format!("{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
    }
    let fit = std::fs::read_to_string(figures.join("fit.svg")).unwrap();
    for label in ["f₀", "f₅", "f∞", "training data"] {
        assert!(fit.contains(label), "legend entry {label}");
    }
    // Six figures and the list of the set; no temporary files left.
    assert_eq!(std::fs::read_dir(&figures).unwrap().count(), 7);
    assert_eq!(
        std::fs::read_to_string(figures.join(".sd-figures")).unwrap(),
        "fit.png\nfit.svg\nb_diag.png\nb_diag.svg\nratios.png\nratios.svg\n"
    );
}

#[test]
fn user_data_with_a_held_out_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut train = String::from("x1,x2,target\n");
    let mut test = String::from("target,x2,x1\n");
    for i in 0..60 {
        let (a, b) = (i as f64 / 60.0, ((i * 7) % 60) as f64 / 60.0);
        let noise = if i % 2 == 0 { 0.05 } else { -0.05 };
        train.push_str(&format!("{a},{b},{}\n", (3.0 * a + b).sin() + noise));
        let (c, d) = (a + 0.5 / 60.0, b);
        test.push_str(&format!("{},{d},{c}\n", (3.0 * c + d).sin()));
    }
    let train = write(dir.path(), "train.csv", &train);
    let test = write(dir.path(), "test.csv", &test);
    let figures = dir.path().join("figures");
    let output = sd_cli(&[
        "krr",
        "--data",
        &train,
        "--test",
        &test,
        "--alpha",
        "auto",
        "--gamma",
        "2",
        "--lambda",
        "0.01",
        "--steps",
        "4",
        "--format",
        "json",
        "--plot",
        figures.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["n_train"], 60);
    assert_eq!(json["n_features"], 2);
    assert_eq!(json["targets"][0], "target");
    let losses: Vec<f64> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["loss"].as_f64().unwrap())
        .collect();
    // The optimum of each step is never worse than keeping the first fit (alpha = 1).
    assert!(losses.iter().all(|&l| l <= losses[0] + 1e-12), "{losses:?}");
    // Two features: no fit figure (with a warning), but the spectrum figures.
    assert!(stderr(&output).contains("fit figure needs exactly one feature"));
    assert!(figures.join("b_diag.png").exists() && !figures.join("fit.png").exists());

    // Without a reference there is no loss, and auto is refused.
    let output = sd_cli(&[
        "krr", "--data", &train, "--alpha", "0.5", "--format", "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(json["steps"][1]["loss"].is_null());
    assert!(json["steps"][1]["train_loss"].as_f64().unwrap() > 0.0);
    let err = error_line(&["krr", "--data", &train, "--alpha", "auto"]);
    assert!(
        err.contains("--alpha auto needs reference data: pass --test FILE"),
        "{err}"
    );
}

#[test]
fn bad_flags_give_one_line_and_exit_2() {
    let cases: [(&[&str], &str); 12] = [
        (
            &["krr", "--alpha", "1.5"],
            "alpha must be a number in [0, 1] or 'auto'",
        ),
        (
            &["krr", "--alpha", "-0.1"],
            "alpha must be a number in [0, 1] or 'auto'",
        ),
        (
            &["krr", "--gamma", "0"],
            "'--gamma <GAMMA>': must be a finite number > 0",
        ),
        (
            &["krr", "--lambda", "-1"],
            "'--lambda <LAMBDA>': must be a finite number > 0",
        ),
        (&["krr", "--lambda", "nan"], "must be a finite number > 0"),
        (&["krr", "--steps", "0"], "'--steps <STEPS>'"),
        (
            &["krr", "--alpa", "0.2"],
            "tip: a similar argument exists: '--alpha'",
        ),
        (
            &["krr", "--kernel", "cubic"],
            "invalid value 'cubic' for '--kernel <KERNEL>'",
        ),
        (
            &["krr", "--kernel", "linear", "--gamma", "2"],
            "--gamma does not apply to --kernel linear",
        ),
        (
            &["krr", "--degree", "2"],
            "--degree applies to --kernel poly only",
        ),
        (
            &["krr", "--clamp-alpha"],
            "--clamp-alpha applies to --alpha auto only",
        ),
        (&["krr", "--test", "t.csv"], "--data"),
    ];
    for (args, expected) in cases {
        let err = error_line(args);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn bad_files_name_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.csv", "x,y\n0,1\n0.5,2\n1,3\n");
    let cases = [
        (
            "text.csv",
            "x,y\n0,1\n0.5,two\n",
            "text.csv:3:2: 'two' is not a number (column 'y')",
        ),
        (
            "ragged.csv",
            "x,y\n0,1\n0.5\n",
            "ragged.csv:3: 1 fields, but the header has 2",
        ),
        (
            "nan.csv",
            "x,y\n0,NaN\n",
            "nan.csv:2:2: 'NaN' is not finite (column 'y')",
        ),
        (
            "inf.csv",
            "x,y\n-inf,1\n",
            "inf.csv:2:1: '-inf' is not finite (column 'x')",
        ),
        (
            "empty.csv",
            "",
            "empty.csv: empty file, expected a header row naming the columns",
        ),
        (
            "header.csv",
            "x,y\n",
            "header.csv: no data rows after the header",
        ),
    ];
    for (name, contents, expected) in cases {
        let path = write(dir.path(), name, contents);
        let err = error_line(&["krr", "--data", &path]);
        assert!(err.ends_with(expected), "{err}");
        assert!(err.contains(&path), "names the file: {err}");
    }
    let err = error_line(&["krr", "--data", &good, "--target", "z"]);
    assert!(
        err.ends_with("no column named 'z' (columns: x, y)"),
        "{err}"
    );
    let missing = dir.path().join("missing.csv");
    let err = error_line(&["krr", "--data", missing.to_str().unwrap()]);
    assert!(err.contains("missing.csv: No such file"), "{err}");
    let wide = write(dir.path(), "wide.csv", "x,w,y\n0,0,1\n");
    let err = error_line(&["krr", "--data", &good, "--test", &wide]);
    assert!(
        err.ends_with("has 2 feature columns (x, w), but the training data has 1 (x)"),
        "{err}"
    );
}

#[test]
fn problems_too_large_for_memory_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::with_capacity(2_000_000);
    csv.push_str("x,y\n");
    for i in 0..150_000 {
        csv.push_str(&format!("{},{}\n", i % 1000, i % 7));
    }
    let path = write(dir.path(), "big.csv", &csv);
    let err = error_line(&["krr", "--data", &path, "--solver", "cholesky"]);
    // 3 matrices of 150000^2 f64: 503 GiB.
    assert!(
        err.starts_with("error: problem too large: 150000 training points need about 514985 MiB"),
        "{err}"
    );
}

#[test]
fn help_and_version() {
    let help = sd_cli(&["krr", "--help"]);
    assert!(help.status.success());
    assert!(stdout(&help).contains("--alpha <ALPHA>"));
    let bare = sd_cli(&[]);
    assert_eq!(bare.status.code(), Some(2));
    assert!(stderr(&bare).contains("Usage:"));
    let version = sd_cli(&["--version"]);
    assert!(stdout(&version).starts_with("sd-cli "));
}

#[test]
fn data_fixture_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fx");
    let out = out.to_str().unwrap();
    let written = sd_cli(&[
        "data", "fixture", "--out", out, "--train", "120", "--test", "30",
    ]);
    assert!(written.status.success(), "{}", stderr(&written));
    assert!(stdout(&written).contains("cifar-10-batches-bin"));

    let table = sd_cli(&["data", "inspect", out, "--val-size", "20", "--seed", "3"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(text.contains("CIFAR-10 binary (fixture)"), "{text}");
    let total = text.lines().find(|l| l.starts_with("total")).unwrap();
    assert_eq!(
        total.split_whitespace().collect::<Vec<_>>(),
        ["total", "100", "20", "30"]
    );
    assert!(
        text.contains("normalize with") && text.contains("0.4914 / 0.2023"),
        "{text}"
    );

    let json = sd_cli(&["data", "inspect", out, "--format", "json", "--val-on-test"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["image_shape"], "3x32x32");
    let splits = value["splits"].as_array().unwrap();
    let names: Vec<&str> = splits.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["train", "val", "test"]);
    assert_eq!(splits[1]["images"], 30);
    assert_eq!(splits[0]["per_class"].as_array().unwrap().len(), 10);
    let mean = splits[0]["channels"][0]["mean"].as_f64().unwrap();
    assert!(mean > 0.0 && mean < 1.0);

    for layout in ["cifar-archive", "idx", "idx-gz"] {
        let target = dir.path().join(layout);
        let target = target.to_str().unwrap();
        let written = sd_cli(&["data", "fixture", "--out", target, "--layout", layout]);
        assert!(written.status.success(), "{layout}: {}", stderr(&written));
        let inspected = sd_cli(&["data", "inspect", target]);
        assert!(
            inspected.status.success(),
            "{layout}: {}",
            stderr(&inspected)
        );
        let total = stdout(&inspected);
        assert!(
            total.contains("total") && total.contains("500"),
            "{layout}: {total}"
        );
    }
}

#[test]
fn data_errors_are_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = error_line(&["data", "inspect", dir.path().to_str().unwrap()]);
    assert!(err.contains("no data set found"), "{err}");
    let err = error_line(&["data", "inspect", "/nonexistent/cifar"]);
    assert!(err.contains("/nonexistent/cifar: missing"), "{err}");

    let out = dir.path().join("fx");
    let out_str = out.to_str().unwrap();
    assert!(
        sd_cli(&["data", "fixture", "--out", out_str])
            .status
            .success()
    );
    let batch = out.join("cifar-10-batches-bin/data_batch_3.bin");
    let bytes = std::fs::read(&batch).unwrap();
    std::fs::write(&batch, &bytes[..3073 * 7 + 5]).unwrap();
    let err = error_line(&["data", "inspect", out_str]);
    assert!(
        err.contains("data_batch_3.bin") && err.contains("record 7"),
        "{err}"
    );

    // Real data (no manifest) is never overwritten by a fixture.
    std::fs::remove_file(out.join("cifar-10-batches-bin/sd-data-fixture.json")).unwrap();
    let err = error_line(&["data", "fixture", "--out", out_str]);
    assert!(err.contains("refusing to write a fixture"), "{err}");
    assert_eq!(std::fs::read(&batch).unwrap().len(), 3073 * 7 + 5);

    // Nor is real IDX data shadowed by plain files beside its .gz ones.
    let real_idx = dir.path().join("mnist");
    let real_idx_str = real_idx.to_str().unwrap();
    assert!(
        sd_cli(&[
            "data",
            "fixture",
            "--out",
            real_idx_str,
            "--layout",
            "idx-gz"
        ])
        .status
        .success()
    );
    std::fs::remove_file(real_idx.join("sd-data-fixture.json")).unwrap();
    let err = error_line(&["data", "fixture", "--out", real_idx_str, "--layout", "idx"]);
    assert!(
        err.contains("MNIST data (IDX) that is not a fixture"),
        "{err}"
    );
    assert!(!real_idx.join("train-images-idx3-ubyte").exists());

    let err = error_line(&["data", "fixture", "--out", out_str, "--train", "0"]);
    assert!(err.contains("--train"), "{err}");
    let err = error_line(&[
        "data",
        "inspect",
        out_str,
        "--val-size",
        "5",
        "--val-on-test",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn resnet_chain_on_a_fixture_then_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fx");
    let runs = dir.path().join("runs");
    let (data_s, runs_s) = (data.to_str().unwrap(), runs.to_str().unwrap());
    assert!(
        sd_cli(&[
            "data", "fixture", "--out", data_s, "--train", "60", "--test", "20"
        ])
        .status
        .success()
    );
    let common = [
        "resnet",
        "--data",
        data_s,
        "--alpha",
        "0.6",
        "--max-epochs",
        "1",
        "--batch-size",
        "20",
        "--val-size",
        "20",
        "--out",
        runs_s,
        "-q",
    ];
    let mut args = common.to_vec();
    args.extend(["--distillation-steps", "2"]);
    let output = sd_cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("test acc (final)"), "{text}");
    let run_dir = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("_0.6_0.001_0"), "{name}");
    for file in [
        "metrics.csv",
        "metrics.jsonl",
        "test.csv",
        "step_0/last.safetensors",
        "step_1/last.json",
    ] {
        assert!(run_dir.join(file).exists(), "{file}");
    }

    // Resuming from step 1's checkpoint continues in the same run directory.
    let teacher = run_dir.join("step_1/last.safetensors");
    let mut args = common.to_vec();
    args.extend([
        "--distillation-steps",
        "1",
        "--teacher-step",
        "1",
        "--teacher-ckpt",
        teacher.to_str().unwrap(),
    ]);
    let output = sd_cli(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let test_csv = std::fs::read_to_string(run_dir.join("test.csv")).unwrap();
    assert_eq!(test_csv.lines().count(), 4, "{test_csv}");
    assert!(run_dir.join("step_2/last.safetensors").exists());

    // A checkpoint of another network is refused in one line.
    let mut args = common.to_vec();
    args.extend([
        "--resnet",
        "34",
        "--teacher-step",
        "1",
        "--teacher-ckpt",
        teacher.to_str().unwrap(),
    ]);
    let err = error_line(&args);
    assert!(
        err.contains("does not fit") && err.contains("ResNet-34"),
        "{err}"
    );
}

#[test]
fn resnet_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fx");
    let data_s = data.to_str().unwrap();
    assert!(
        sd_cli(&[
            "data", "fixture", "--out", data_s, "--train", "30", "--test", "10"
        ])
        .status
        .success()
    );
    let err = error_line(&["resnet", "--data", data_s, "--alpha", "2"]);
    assert!(err.contains("--alpha"), "{err}");
    let err = error_line(&["resnet", "--data", data_s, "--alpha", "0.5"]);
    assert!(err.contains("validation split of 5000"), "{err}");
    let err = error_line(&[
        "resnet", "--data", data_s, "--alpha", "0.5", "--device", "tpu",
    ]);
    assert!(
        err.contains("'--device <DEVICE>'") && err.contains("must be cpu, cuda or cuda:N"),
        "{err}"
    );
    let err = error_line(&[
        "resnet", "--data", data_s, "--alpha", "0.5", "--resnet", "101",
    ]);
    assert!(err.contains("--resnet"), "{err}");
    let err = error_line(&["resnet", "--data", "/nonexistent", "--alpha", "0.5"]);
    assert!(err.contains("/nonexistent"), "{err}");
    let err = error_line(&[
        "resnet",
        "--data",
        data_s,
        "--alpha",
        "0.5",
        "--teacher-step",
        "0",
    ]);
    assert!(err.contains("--teacher-ckpt"), "{err}");
    let err = error_line(&[
        "resnet",
        "--data",
        data_s,
        "--alpha",
        "0.5",
        "--val-size",
        "5",
        "--lr",
        "-1",
    ]);
    assert!(err.contains("--lr"), "{err}");
    let err = error_line(&[
        "resnet",
        "--data",
        data_s,
        "--alpha",
        "0.5",
        "--train-size",
        "0",
    ]);
    assert!(err.contains("--train-size"), "{err}");
    let err = error_line(&["resnet", "--data", data_s, "--alpha", "sometimes"]);
    assert!(err.contains("[0, 1] or 'auto'"), "{err}");
}

#[test]
fn resnet_with_alpha_auto_and_the_flags_of_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fx");
    let runs = dir.path().join("runs");
    let (data_s, runs_s) = (data.to_str().unwrap(), runs.to_str().unwrap());
    assert!(
        sd_cli(&[
            "data", "fixture", "--out", data_s, "--train", "60", "--test", "20"
        ])
        .status
        .success()
    );
    let output = sd_cli(&[
        "resnet",
        "--data",
        data_s,
        "--alpha",
        "auto",
        "--epochs",
        "1",
        "--steps",
        "2",
        "--batch-size",
        "20",
        "--val-size",
        "20",
        "--train-size",
        "30",
        "--test-size",
        "10",
        "--out",
        runs_s,
        "-q",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let run_dir = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        run_dir.to_string_lossy().contains("_auto_0.001_0"),
        "{}",
        run_dir.display()
    );
    // Algorithm 1: a probe for step 1, and its alpha recorded and used.
    let chosen = std::fs::read_to_string(run_dir.join("auto_alpha.jsonl")).unwrap();
    let row: serde_json::Value = serde_json::from_str(chosen.lines().next().unwrap()).unwrap();
    assert_eq!(row["step"], 1);
    let alpha = row["alpha"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&alpha), "{chosen}");
    assert!(run_dir.join("probe/step_1/last.safetensors").is_file());
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("chain.json")).unwrap())
            .unwrap();
    assert_eq!(record["alpha"], "auto");
    assert_eq!(record["settings"]["train_size"], 30);
    assert_eq!(record["settings"]["epochs"], 1);
    let text = stdout(&output);
    assert!(text.lines().count() == 5, "{text}");
}

#[test]
fn experiments_run_and_report_as_xtask_does() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoke");
    let out_s = out.to_str().unwrap();
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
        "krr=false",
        "--out",
        out_s,
        "-q",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("REPORT.md"));
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    assert!(report.contains("| 1 |"), "{report}");
    let merged = dir.path().join("merged");
    let output = sd_cli(&[
        "experiments",
        "report",
        out_s,
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(merged.join("accuracy.csv").is_file());
    let err = error_line(&["experiments", "run", "--profile", "nope"]);
    assert!(err.contains("no profile named 'nope'"), "{err}");
    let err = error_line(&[
        "experiments",
        "run",
        "--profile",
        "smoke",
        "--set",
        "epochs=0",
    ]);
    assert!(err.contains("epochs must be > 0"), "{err}");
    let err = error_line(&["experiments", "report", dir.path().to_str().unwrap()]);
    assert!(err.contains("not an experiment directory"), "{err}");
}

#[test]
fn krr_on_images_reports_accuracy_and_refuses_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("idx");
    let data_s = data.to_str().unwrap();
    assert!(
        sd_cli(&[
            "data", "fixture", "--out", data_s, "--layout", "idx", "--train", "300", "--test",
            "100",
        ])
        .status
        .success()
    );
    let output = sd_cli(&[
        "krr",
        "--images",
        data_s,
        "--train-size",
        "200",
        "--alpha",
        "auto",
        "--label-noise",
        "0.3",
        "--noise-seed",
        "1",
        "--steps",
        "3",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    // 200 chosen, a tenth held out for alpha: 180 train; 784 pixels; 10 one-hot outputs.
    assert_eq!(json["n_train"], 180);
    assert_eq!(json["n_features"], 784);
    assert_eq!(json["targets"].as_array().unwrap().len(), 10);
    assert_eq!(json["images"]["label_noise"], 0.3);
    assert_eq!(json["images"]["noise_seed"], 1);
    assert!(json["images"]["labels_changed"].as_u64().unwrap() > 20);
    assert!(
        json["data"]
            .as_str()
            .unwrap()
            .contains("20 validation images")
    );
    for step in json["steps"].as_array().unwrap() {
        let accuracy = step["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{step}");
        assert!(step["loss"].as_f64().is_some());
    }
    // The fixture's classes are easy: far above chance even with 30% noise.
    assert!(
        json["steps"][0]["accuracy"].as_f64().unwrap() > 0.5,
        "{json}"
    );
    assert!(json["steps"][1]["optimal_alpha"].as_f64().is_some());

    // The table has the accuracy column; CSV too, with the noise on every row.
    let output = sd_cli(&[
        "krr", "--images", data_s, "--alpha", "0.5", "--steps", "2", "--format", "csv",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let csv = stdout(&output);
    assert!(
        csv.starts_with("step,alpha,loss,train_loss,accuracy,label_noise\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let output = sd_cli(&["krr", "--images", data_s, "--test-size", "40"]);
    let table = stdout(&output);
    assert!(
        table.contains("accuracy") && table.contains("40 test images"),
        "{table}"
    );

    for (args, expected) in [
        (vec!["--train-size", "0"], "must be at least 1"),
        (vec!["--train-size", "301"], "more than the 300"),
        (vec!["--label-noise", "1"], "[0, 1)"),
        (vec!["--val-size", "300"], "leaves no training images"),
        (vec!["--data", "x.csv"], "cannot be used with"),
    ] {
        let mut full = vec!["krr", "--images", data_s];
        full.extend(args);
        let err = error_line(&full);
        assert!(err.contains(expected), "{full:?}: {err}");
    }
    let err = error_line(&["krr", "--images", dir.path().to_str().unwrap()]);
    assert!(err.contains("no data set found"), "{err}");

    // The Nyström route with every training image a landmark is the exact route.
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "krr",
            "--images",
            data_s,
            "--train-size",
            "120",
            "--test-size",
            "50",
            "--alpha",
            "0.4",
            "--steps",
            "4",
            "--format",
            "json",
        ];
        args.extend(extra);
        let output = sd_cli(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_str(&stdout(&output)).unwrap()
    };
    let (nystrom, exact) = (run(&["--nystrom", "120"]), run(&[]));
    assert_eq!(nystrom["solver"], "nystrom");
    assert_eq!(nystrom["nystrom"]["landmarks"], 120);
    for (a, b) in nystrom["steps"]
        .as_array()
        .unwrap()
        .iter()
        .zip(exact["steps"].as_array().unwrap())
    {
        let (a_loss, b_loss) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
        assert!((a_loss - b_loss).abs() < 1e-9, "{a_loss} {b_loss}");
        assert_eq!(a["accuracy"], b["accuracy"]);
    }
    // Fewer landmarks: a model of its own, reported with its spectrum.
    let small = run(&["--nystrom", "30", "--landmark-seed", "2"]);
    assert_eq!(small["eigenvalues"].as_array().unwrap().len(), 30);
    assert_eq!(small["nystrom"]["seed"], 2);
    for (args, expected) in [
        (vec!["--nystrom", "0"], "must be at least 1"),
        (
            vec!["--nystrom", "301"],
            "between 1 and the 300 training points",
        ),
        (
            vec!["--nystrom", "10", "--solver", "eigen"],
            "drop --solver",
        ),
    ] {
        let mut full = vec!["krr", "--images", data_s];
        full.extend(args);
        let err = error_line(&full);
        assert!(err.contains(expected), "{full:?}: {err}");
    }
    let err = error_line(&["krr", "--train-size", "10"]);
    assert!(err.contains("--images"), "{err}");
}
