//! The distillation chain end to end on fixture data: it learns, it is reproducible, a resumed
//! chain equals the uninterrupted one, the teacher stays frozen, a bad loss stops it, Algorithm 1
//! chooses its alphas, and run directories are never mixed.

use std::sync::Arc;

use candle_core::Device;
use sd_alpha::Alpha;
use sd_data::fixture::{self, FixtureSpec};
use sd_data::{Normalization, Subset, Transform};
use sd_resnet::loss::LossKind;
use sd_resnet::{Depth, Resnet, ResnetConfig, Stem};
use sd_train::{
    Chain, ChainData, ChainDir, ChainRecord, EpochMetrics, Settings, Silent, Start, TrainError,
};

fn data(train: usize, test: usize) -> ChainData {
    let (train_set, test_set) = fixture::cifar_images(FixtureSpec {
        train,
        test,
        seed: 3,
    });
    let train_set = Arc::new(train_set);
    let test_set = Arc::new(test_set);
    ChainData {
        train: Subset::all(train_set),
        val: Subset::all(test_set.clone()),
        test: Subset::all(test_set),
        train_transform: Transform::train(Normalization::cifar10()),
        eval_transform: Transform::test(Normalization::cifar10()),
        channels: 3,
        classes: 10,
        labels_changed: 0,
    }
}

fn record(steps: usize, epochs: usize) -> ChainRecord {
    ChainRecord {
        alpha: Alpha::Fixed(0.5),
        seed: 11,
        steps,
        settings: Settings {
            data: "fixture".into(),
            fixture: None,
            train_size: 0,
            val_size: 0,
            val_on_test: true,
            test_size: 0,
            resnet: Depth::R18,
            stem: Stem::Imagenet,
            // A quarter of torchvision's channels: the same code paths at 1/16 of the work.
            width: 16,
            loss: LossKind::SoftmaxMse,
            epochs,
            batch_size: 32,
            lr: 1e-3,
            reg_coef: 1e-4,
            device: sd_train::DeviceKind::Cpu,
            pretrained: None,
            shuffle: true,
            teacher_mode: sd_train::TeacherMode::Eval,
            lr_schedule: sd_train::LrSchedule::Constant,
            label_noise: 0.0,
            noise_seed: 0,
        },
    }
}

fn chain(data: &ChainData, record: ChainRecord) -> Chain<'_> {
    Chain {
        record,
        data,
        device: Device::Cpu,
        num_workers: 1,
    }
}

fn same_numbers(a: &EpochMetrics, b: &EpochMetrics) -> bool {
    (a.step, a.epoch) == (b.step, b.epoch)
        && a.train_loss == b.train_loss
        && a.train_acc == b.train_acc
        && a.val_loss.to_bits() == b.val_loss.to_bits()
        && a.val_acc == b.val_acc
}

#[test]
fn a_tiny_chain_learns_and_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = ChainDir::new(dir.path());
    let data = data(256, 100);
    let results = chain(&data, record(2, 3))
        .run(&run, Start::Resume, &mut Silent)
        .unwrap();
    assert_eq!(results.len(), 2);
    assert!(
        results[0].test_acc_final > 0.5,
        "the first fit: {}",
        results[0].test_acc_final
    );
    for r in &results {
        eprintln!(
            "step {}: test accuracy final {:.3}, best {:.3}",
            r.step, r.test_acc_final, r.test_acc_best
        );
        // Chance is 0.1. The exact figures depend on the GEMM kernels the build selects (a
        // workspace build turns on AVX-512 kernels for candle through faer's features), so the
        // bar is set well below what either build reaches.
        assert!(
            r.test_acc_final > 0.3,
            "step {}: test accuracy {} (chance 0.1)",
            r.step,
            r.test_acc_final
        );
    }
    assert_eq!(
        results[0].alpha, 1.0,
        "the first fit sees only the ground truth"
    );
    assert_eq!(results[1].alpha, 0.5);
    assert_eq!(run.read_metrics().unwrap().len(), 6);
    for step in 0..2 {
        let files: Vec<String> = std::fs::read_dir(run.step_dir(step))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            files.contains(&"last.safetensors".to_string())
                && files.contains(&"last.json".to_string()),
            "{files:?}"
        );
        let best = files
            .iter()
            .filter(|f| f.starts_with("epoch=") && f.ends_with(".safetensors"))
            .count();
        assert_eq!(best, 2, "{files:?}");
        assert!(!files.iter().any(|f| f.starts_with('.')), "{files:?}");
    }
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7);
    let test = std::fs::read_to_string(dir.path().join("test.csv")).unwrap();
    assert!(test.starts_with("step,alpha,test_acc_final,test_acc_best"));
    let sidecar = std::fs::read_to_string(run.step_dir(1).join("last.json")).unwrap();
    assert!(
        sidecar.contains("\"resnet\": 18") && sidecar.contains("\"stem\": \"imagenet\""),
        "{sidecar}"
    );
    assert_eq!(run.read_record().unwrap(), Some(record(2, 3)));
    // The images of each split, for another program to train on the same ones.
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.split_file()).unwrap()).unwrap();
    for (name, subset, file) in [
        ("train", &data.train, "train"),
        ("val", &data.val, "test"),
        ("test", &data.test, "test"),
    ] {
        let part = &split[name];
        assert_eq!(part["file"], file, "{name}");
        let indices: Vec<u32> = serde_json::from_value(part["indices"].clone()).unwrap();
        let labels: Vec<u8> = serde_json::from_value(part["labels"].clone()).unwrap();
        assert_eq!(indices, subset.indices(), "{name}");
        assert_eq!(labels, subset.labels(), "{name}");
    }
}

#[test]
fn the_same_seed_gives_identical_metrics_and_a_resumed_chain_equals_the_whole() {
    let data = data(64, 32);
    let whole = tempfile::tempdir().unwrap();
    let whole = ChainDir::new(whole.path());
    chain(&data, record(3, 1))
        .run(&whole, Start::Resume, &mut Silent)
        .unwrap();
    let again = tempfile::tempdir().unwrap();
    let again = ChainDir::new(again.path());
    chain(&data, record(3, 1))
        .run(&again, Start::Resume, &mut Silent)
        .unwrap();
    let (a, b) = (whole.read_metrics().unwrap(), again.read_metrics().unwrap());
    assert!(
        a.iter().zip(&b).all(|(x, y)| same_numbers(x, y)),
        "{a:?}\n{b:?}"
    );

    // Killed during step 1: its checkpoint is there, its test row is not; the same command
    // trains step 1 again from step 0's checkpoint, then step 2.
    let resumed = tempfile::tempdir().unwrap();
    let resumed = ChainDir::new(resumed.path());
    chain(&data, record(2, 1))
        .run(&resumed, Start::Resume, &mut Silent)
        .unwrap();
    let tests = resumed.read_tests().unwrap();
    let kept: String = std::fs::read_to_string(resumed.test_file())
        .unwrap()
        .lines()
        .take(1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(resumed.test_file(), kept).unwrap();
    assert_eq!(resumed.finished_steps().unwrap(), 1);
    let trained = chain(&data, record(3, 1))
        .run(&resumed, Start::Resume, &mut Silent)
        .unwrap();
    assert_eq!(trained.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(trained[0].test_acc_final, tests[1].test_acc_final);
    let c = resumed.read_metrics().unwrap();
    assert_eq!(c.len(), 3);
    assert!(
        a.iter().zip(&c).all(|(x, y)| same_numbers(x, y)),
        "{a:?}\n{c:?}"
    );

    // From an outside teacher: step 0's checkpoint teaches step 1 in a new directory.
    let outside = tempfile::tempdir().unwrap();
    let outside = ChainDir::new(outside.path());
    let outside_chain = chain(&data, record(2, 1));
    let teacher = outside_chain
        .load_network(&whole.last_checkpoint(0))
        .unwrap();
    let trained = outside_chain
        .run(
            &outside,
            Start::Teacher {
                step: 0,
                teacher: &teacher,
            },
            &mut Silent,
        )
        .unwrap();
    assert_eq!(trained.len(), 1);
    assert!(same_numbers(&a[1], &outside.read_metrics().unwrap()[0]));
}

#[test]
fn the_teacher_is_frozen() {
    let data = data(64, 32);
    let dir = tempfile::tempdir().unwrap();
    let teacher = Resnet::seeded(ResnetConfig::cifar10(Depth::R18), 5, &Device::Cpu).unwrap();
    // `Var`s share their storage: these handles see whatever the chain does to the teacher.
    let handles = teacher.parameters().clone();
    let snapshot = |params: &sd_resnet::Parameters| -> Vec<Vec<f64>> {
        params
            .iter()
            .map(|p| {
                p.var
                    .flatten_all()
                    .unwrap()
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            })
            .collect()
    };
    let before = snapshot(&handles);
    chain(&data, record(2, 1))
        .run(
            &ChainDir::new(dir.path()),
            Start::Teacher {
                step: 0,
                teacher: &teacher,
            },
            &mut Silent,
        )
        .unwrap();
    assert_eq!(
        before,
        snapshot(&handles),
        "weights, running statistics and batch counts unchanged"
    );
}

#[test]
fn a_non_finite_loss_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = record(1, 1);
    // Finite in f64, infinite once the regularizer is scaled in f32.
    bad.settings.reg_coef = 1e300;
    let data = data(64, 32);
    let err = chain(&data, bad)
        .run(&ChainDir::new(dir.path()), Start::Resume, &mut Silent)
        .unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::NonFinite {
                step: 0,
                epoch: 0,
                batch: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("step 0, epoch 0, batch 0"),
        "{err}"
    );
}

#[test]
fn bad_settings_and_other_settings_are_refused_before_training() {
    let data = data(64, 32);
    let dir = tempfile::tempdir().unwrap();
    let run = ChainDir::new(dir.path().join("run"));
    for (change, message) in [
        (
            (|r: &mut ChainRecord| r.steps = 0) as fn(&mut ChainRecord),
            "steps must be at least 1",
        ),
        (|r| r.settings.epochs = 0, "epochs must be at least 1"),
        (
            |r| r.settings.lr = f64::NAN,
            "lr must be a finite number > 0",
        ),
        (
            |r| r.settings.reg_coef = -1.0,
            "reg_coef must be a finite number >= 0",
        ),
        (|r| r.alpha = Alpha::Fixed(1.5), "alpha must lie in [0, 1]"),
        (
            |r| r.settings.label_noise = 1.0,
            "label_noise must be a finite number in [0, 1)",
        ),
    ] {
        let mut bad = record(1, 1);
        change(&mut bad);
        let err = chain(&data, bad)
            .run(&run, Start::Resume, &mut Silent)
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{err}");
        assert!(!run.path().exists(), "nothing written for a refused chain");
    }
    let mut empty = data.clone();
    empty.val = Subset::new(empty.val.images().clone(), Vec::new()).unwrap();
    let err = chain(&empty, record(1, 1))
        .run(&run, Start::Resume, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("validation split is empty"), "{err}");

    chain(&data, record(1, 1))
        .run(&run, Start::Resume, &mut Silent)
        .unwrap();
    let mut other = record(2, 1);
    other.settings.lr = 0.01;
    other.alpha = Alpha::Fixed(0.1);
    let err = chain(&data, other)
        .run(&run, Start::Resume, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("alpha 0.5 there, 0.1 now") && err.contains("lr 0.001 there, 0.01 now"),
        "{err}"
    );
    assert_eq!(run.read_tests().unwrap().len(), 1, "nothing mixed in");

    // A teacher of another network is refused, naming the network.
    let mut r34 = record(2, 1);
    r34.settings.resnet = Depth::R34;
    let err = chain(&data, r34)
        .load_network(&run.last_checkpoint(0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not fit") && err.contains("ResNet-34"),
        "{err}"
    );
}

#[test]
fn a_locked_directory_is_left_alone_and_damaged_files_are_named() {
    let data = data(64, 32);
    let dir = tempfile::tempdir().unwrap();
    let run = ChainDir::new(dir.path());
    let held = run.lock().unwrap();
    let err = chain(&data, record(1, 1))
        .run(&run, Start::Resume, &mut Silent)
        .unwrap_err();
    assert!(matches!(err, TrainError::Locked { .. }), "{err}");
    assert!(!run.step_dir(0).exists());
    drop(held);
    chain(&data, record(1, 1))
        .run(&run, Start::Resume, &mut Silent)
        .unwrap();
    let text = std::fs::read_to_string(run.test_file()).unwrap();
    std::fs::write(run.test_file(), &text[..text.len() / 2]).unwrap();
    let err = chain(&data, record(2, 1))
        .run(&run, Start::Resume, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("test.jsonl, line 1"), "{err}");
}

#[test]
fn algorithm_1_chooses_each_alpha_from_a_probe_and_resumes_the_same() {
    let data = data(64, 32);
    let mut auto = record(3, 1);
    auto.alpha = Alpha::Auto;
    let whole = tempfile::tempdir().unwrap();
    let whole = ChainDir::new(whole.path());
    let trained = chain(&data, auto.clone())
        .run(&whole, Start::Resume, &mut Silent)
        .unwrap();
    let chosen = whole.read_auto_alpha().unwrap();
    assert_eq!(chosen.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2]);
    for (row, result) in chosen.iter().zip(&trained[1..]) {
        assert!((0.0..=1.0).contains(&row.alpha), "{row:?}");
        assert_eq!(row.alpha, result.alpha);
        if let Some(optimal) = row.optimal {
            assert_eq!(row.alpha, optimal.clamp(0.0, 1.0));
        }
    }
    let probes = whole.probe().read_tests().unwrap();
    assert_eq!(
        probes.iter().map(|r| (r.step, r.alpha)).collect::<Vec<_>>(),
        [(1, 0.0), (2, 0.0)]
    );

    // Killed after step 2's probe, before step 2 finished: the probe is not trained again, and
    // the chain ends where the uninterrupted one did.
    let resumed = tempfile::tempdir().unwrap();
    let resumed = ChainDir::new(resumed.path());
    chain(&data, auto.clone())
        .run(&resumed, Start::Resume, &mut Silent)
        .unwrap();
    let keep = |path: std::path::PathBuf, below: u64| {
        let kept: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64() < Some(below)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(path, kept).unwrap();
    };
    keep(resumed.test_file(), 2);
    keep(resumed.auto_alpha_file(), 2);
    let probe_trained = std::fs::metadata(resumed.probe().last_checkpoint(2))
        .unwrap()
        .modified()
        .unwrap();
    let again = chain(&data, auto)
        .run(&resumed, Start::Resume, &mut Silent)
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].test_acc_final, trained[2].test_acc_final);
    assert_eq!(resumed.read_auto_alpha().unwrap(), chosen);
    let untouched = std::fs::metadata(resumed.probe().last_checkpoint(2))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(probe_trained, untouched, "the probe was trained again");
}

#[test]
fn a_first_fit_is_copied_not_trained_again() {
    let data = data(64, 32);
    let dir = tempfile::tempdir().unwrap();
    let source = ChainDir::new(dir.path().join("a"));
    chain(&data, record(1, 1))
        .run(&source, Start::Resume, &mut Silent)
        .unwrap();
    let copy = ChainDir::new(dir.path().join("b"));
    let mut other_alpha = record(2, 1);
    other_alpha.alpha = Alpha::Fixed(0.0);
    let trained = chain(&data, other_alpha)
        .run(
            &copy,
            Start::ResumeCopying {
                first_fit: Some(&source),
                probe: None,
            },
            &mut Silent,
        )
        .unwrap();
    assert_eq!(trained.iter().map(|r| r.step).collect::<Vec<_>>(), [1]);
    let (a, b) = (source.read_tests().unwrap(), copy.read_tests().unwrap());
    assert_eq!(a[0].test_acc_best, b[0].test_acc_best);
    assert_eq!(b[0].seconds, 0.0);
    assert_eq!(b[0].last_checkpoint, copy.last_checkpoint(0));
    assert_eq!(
        std::fs::read(source.last_checkpoint(0)).unwrap(),
        std::fs::read(copy.last_checkpoint(0)).unwrap()
    );
    let sidecar = std::fs::read_to_string(copy.step_dir(0).join("last.json")).unwrap();
    assert!(sidecar.contains("copied_from"), "{sidecar}");
    assert_eq!(
        std::fs::read_to_string(source.path().join("metrics.csv")).unwrap(),
        std::fs::read_to_string(copy.path().join("metrics.csv"))
            .unwrap()
            .lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
}

/// Records what the run directory holds when the first network starts training.
struct SnapshotAtStart {
    dir: ChainDir,
    tests: Option<Vec<usize>>,
    probes: Option<Vec<usize>>,
}

impl sd_train::Observer for SnapshotAtStart {
    fn step_started(&mut self, _start: &sd_train::StepStart) {
        if self.tests.is_none() {
            let steps = |rows: Vec<sd_train::StepResult>| rows.iter().map(|r| r.step).collect();
            self.tests = Some(steps(self.dir.read_tests().unwrap()));
            self.probes = Some(steps(self.dir.probe().read_tests().unwrap()));
        }
    }
}

#[test]
fn a_new_teacher_drops_what_the_directory_holds_after_it_before_training() {
    let data = data(64, 32);
    let mut auto = record(3, 1);
    auto.alpha = Alpha::Auto;
    let dir = tempfile::tempdir().unwrap();
    let run = ChainDir::new(dir.path());
    let trainer = chain(&data, auto);
    trainer.run(&run, Start::Resume, &mut Silent).unwrap();
    assert_eq!(run.probe().read_tests().unwrap().len(), 2);
    // A leftover best checkpoint of an interrupted attempt at step 1.
    let stale = run.step_dir(1).join("epoch=07-val_acc=0.9999.safetensors");
    std::fs::write(&stale, b"stale").unwrap();

    // Step 0's checkpoint as the teacher of a new step 1: step 1's and 2's rows and both
    // probes were trained from another teacher, and must be gone before anything is trained.
    let teacher = trainer.load_network(&run.last_checkpoint(0)).unwrap();
    let probe_before = std::fs::read(run.probe().last_checkpoint(1)).unwrap();
    let mut snapshot = SnapshotAtStart {
        dir: run.clone(),
        tests: None,
        probes: None,
    };
    trainer
        .run(
            &run,
            Start::Teacher {
                step: 0,
                teacher: &teacher,
            },
            &mut snapshot,
        )
        .unwrap();
    assert_eq!(snapshot.tests.unwrap(), [0]);
    assert_eq!(snapshot.probes.unwrap(), Vec::<usize>::new());
    assert!(
        !stale.exists(),
        "a retrained step keeps no stale best checkpoint"
    );
    assert_eq!(
        run.read_tests()
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    // The probe was trained again (here from the same weights: the same bits).
    assert_eq!(
        probe_before,
        std::fs::read(run.probe().last_checkpoint(1)).unwrap()
    );
    assert_eq!(run.read_auto_alpha().unwrap().len(), 2);
}

#[test]
fn alpha_auto_without_a_first_fit_stops_before_training_and_a_first_fit_is_copied_only_when_finished()
 {
    let data = data(64, 32);
    let dir = tempfile::tempdir().unwrap();
    let source = ChainDir::new(dir.path().join("source"));
    chain(&data, record(1, 1))
        .run(&source, Start::Resume, &mut Silent)
        .unwrap();
    // An outside teacher has no first fit for Algorithm 1: refused before the probe is trained.
    let mut auto = record(2, 1);
    auto.alpha = Alpha::Auto;
    let trainer = chain(&data, auto);
    let teacher = trainer.load_network(&source.last_checkpoint(0)).unwrap();
    let outside = ChainDir::new(dir.path().join("outside"));
    let err = trainer
        .run(
            &outside,
            Start::Teacher {
                step: 0,
                teacher: &teacher,
            },
            &mut Silent,
        )
        .unwrap_err();
    assert!(matches!(err, TrainError::MissingFirstFit { .. }), "{err}");
    assert!(!outside.probe().path().exists(), "no probe was trained");

    // An unfinished first fit (no test row) is not copied.
    std::fs::write(source.test_file(), "").unwrap();
    let copy = ChainDir::new(dir.path().join("copy"));
    let err = chain(&data, record(2, 1))
        .run(
            &copy,
            Start::ResumeCopying {
                first_fit: Some(&source),
                probe: None,
            },
            &mut Silent,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step 0 of") && err.contains("its step is not finished"),
        "{err}"
    );
}

#[test]
fn rows_with_numbers_json_cannot_hold_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let run = ChainDir::new(dir.path());
    std::fs::write(
        run.test_file(),
        "{\"step\":0,\"alpha\":1.0,\"test_acc_final\":null,\"test_acc_best\":null,\
         \"best_epoch\":0,\"best_val_acc\":null,\"last_checkpoint\":\"x\",\"seconds\":null}\n",
    )
    .unwrap();
    let rows = run.read_tests().unwrap();
    assert!(rows[0].test_acc_final.is_nan() && rows[0].seconds.is_nan());
}

/// The scalars of every event file under `run`, by run directory relative to `root`.
fn event_scalars(run: &std::path::Path) -> Vec<(String, sd_tensorboard::Scalar)> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("events.out.tfevents."), "{name}");
            let bytes = std::fs::read(&file).unwrap();
            for scalar in sd_tensorboard::read_scalars(&bytes).unwrap() {
                let run = dir.file_name().unwrap().to_string_lossy().into_owned();
                out.push((run, scalar));
            }
        }
    }
    out
}

fn scalar(scalars: &[(String, sd_tensorboard::Scalar)], run: &str, tag: &str) -> Vec<(i64, f32)> {
    scalars
        .iter()
        .filter(|(r, s)| r == run && s.tag == tag)
        .map(|(_, s)| (s.step, s.value))
        .collect()
}

#[test]
fn event_files_follow_the_rows_through_a_resume() {
    let data = data(64, 32);
    let tmp = tempfile::tempdir().unwrap();
    let run = ChainDir::new(tmp.path());
    chain(&data, record(2, 2))
        .run(&run, Start::Resume, &mut Silent)
        .unwrap();
    let check = |run: &ChainDir| {
        let scalars = event_scalars(&run.tensorboard_dir());
        let metrics = run.read_metrics().unwrap();
        let tests = run.read_tests().unwrap();
        for step in 0..2usize {
            let rows: Vec<&EpochMetrics> = metrics.iter().filter(|m| m.step == step).collect();
            let name = format!("step_{step}");
            let expect = |f: fn(&EpochMetrics) -> f64| -> Vec<(i64, f32)> {
                rows.iter().map(|m| (m.epoch as i64, f(m) as f32)).collect()
            };
            assert_eq!(
                scalar(&scalars, &name, "loss/train"),
                expect(|m| m.train_loss)
            );
            assert_eq!(
                scalar(&scalars, &name, "accuracy/validation"),
                expect(|m| m.val_acc)
            );
            assert_eq!(scalar(&scalars, &name, "alpha"), expect(|m| m.alpha));
        }
        let by_step = |f: fn(&sd_train::StepResult) -> f64| -> Vec<(i64, f32)> {
            tests.iter().map(|r| (r.step as i64, f(r) as f32)).collect()
        };
        assert_eq!(
            scalar(&scalars, "chain", "accuracy/test_final"),
            by_step(|r| r.test_acc_final)
        );
        assert_eq!(scalar(&scalars, "chain", "alpha"), [(0, 1.0), (1, 0.5)]);
        scalars.len()
    };
    // 8 tags per epoch row (4 rows), 9 per step row (2 rows).
    assert_eq!(check(&run), 4 * 8 + 2 * 9);

    // Killed in step 1 after its first epoch: the rows of that attempt stay, its test row is
    // missing, and a stale event file of an epoch that never was lies beside them.
    let kept: String = std::fs::read_to_string(run.test_file())
        .unwrap()
        .lines()
        .take(1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(run.test_file(), kept).unwrap();
    let stale = run.tensorboard_dir().join("step_1");
    std::fs::copy(
        stale.join(sd_tensorboard::file_name(0, "sd-train")),
        stale.join(sd_tensorboard::file_name(7, "sd-train")),
    )
    .unwrap();
    let before = std::fs::read(
        run.tensorboard_dir()
            .join("step_0")
            .join(sd_tensorboard::file_name(0, "sd-train")),
    )
    .unwrap();
    chain(&data, record(2, 2))
        .run(&run, Start::Resume, &mut Silent)
        .unwrap();
    assert_eq!(check(&run), 4 * 8 + 2 * 9);
    // Step 0's files were not touched.
    let after = std::fs::read(
        run.tensorboard_dir()
            .join("step_0")
            .join(sd_tensorboard::file_name(0, "sd-train")),
    )
    .unwrap();
    assert_eq!(before, after);
}

#[test]
fn the_teacher_mode_and_the_order_change_what_they_should() {
    let data = data(64, 32);
    let run = |change: fn(&mut Settings)| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ChainDir::new(tmp.path());
        let mut record = record(2, 1);
        change(&mut record.settings);
        chain(&data, record)
            .run(&dir, Start::Resume, &mut Silent)
            .unwrap();
        let text = std::fs::read_to_string(dir.record_file()).unwrap();
        (dir.read_metrics().unwrap(), text)
    };
    let (base, base_record) = run(|_| {});
    // Defaults are not written: chain.json files of earlier versions stay the same chains.
    assert!(
        !base_record.contains("shuffle") && !base_record.contains("teacher_mode"),
        "{base_record}"
    );
    // The teacher in training mode: step 0 (no teacher) the same, step 1 not.
    let (train_mode, record_text) = run(|s| s.teacher_mode = sd_train::TeacherMode::Train);
    assert!(
        record_text.contains("\"teacher_mode\": \"train\""),
        "{record_text}"
    );
    assert!(same_numbers(&base[0], &train_mode[0]));
    assert!(!same_numbers(&base[1], &train_mode[1]));
    // The split's own order: another first fit.
    let (fixed, record_text) = run(|s| s.shuffle = false);
    assert!(record_text.contains("\"shuffle\": false"), "{record_text}");
    assert!(!same_numbers(&base[0], &fixed[0]));
}

#[test]
fn a_cosine_schedule_anneals_every_step_and_is_recorded() {
    let data = data(64, 32);
    let run = |schedule: sd_train::LrSchedule| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ChainDir::new(tmp.path());
        let mut record = record(2, 3);
        record.settings.lr_schedule = schedule;
        chain(&data, record)
            .run(&dir, Start::Resume, &mut Silent)
            .unwrap();
        let text = std::fs::read_to_string(dir.record_file()).unwrap();
        (dir.read_metrics().unwrap(), text)
    };
    let (constant, constant_record) = run(sd_train::LrSchedule::Constant);
    assert!(
        !constant_record.contains("lr_schedule"),
        "{constant_record}"
    );
    let (cosine, cosine_record) = run(sd_train::LrSchedule::Cosine);
    assert!(
        cosine_record.contains("\"lr_schedule\": \"cosine\""),
        "{cosine_record}"
    );
    let lr = record(2, 3).settings.lr;
    // Epoch e of 3 at lr (1 + cos(pi e / 3)) / 2: lr, 3/4 lr, 1/4 lr, in step 0 and again in
    // step 1.
    let expected = [lr, 0.75 * lr, 0.25 * lr];
    assert_eq!(cosine.len(), 6);
    for row in &cosine {
        let want = expected[row.epoch];
        assert!((row.lr - want).abs() <= 1e-15 * lr, "{row:?}: lr {want}");
    }
    assert!(constant.iter().all(|row| row.lr == lr));
    // The first epoch trains at the same rate, the second not.
    assert!(same_numbers(&constant[0], &cosine[0]));
    assert!(!same_numbers(&constant[1], &cosine[1]));
    // A resume with the other schedule is refused, the difference named.
    let tmp = tempfile::tempdir().unwrap();
    let dir = ChainDir::new(tmp.path());
    chain(&data, record(1, 1))
        .run(&dir, Start::Resume, &mut Silent)
        .unwrap();
    let mut other = record(1, 1);
    other.settings.lr_schedule = sd_train::LrSchedule::Cosine;
    let error = chain(&data, other)
        .run(&dir, Start::Resume, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(error.contains("lr_schedule"), "{error}");
}

#[test]
fn an_auto_chain_copies_its_first_probe_from_the_alpha_zero_chain() {
    let data = data(64, 32);
    let dir = tempfile::tempdir().unwrap();
    let mut auto = record(3, 1);
    auto.alpha = Alpha::Auto;
    // Trained alone, the reference.
    let alone = ChainDir::new(dir.path().join("alone"));
    let trained_alone = chain(&data, auto.clone())
        .run(&alone, Start::Resume, &mut Silent)
        .unwrap();
    // The alpha = 0 chain, then the auto chain copying what it may.
    let zero = ChainDir::new(dir.path().join("zero"));
    let mut alpha_zero = record(2, 1);
    alpha_zero.alpha = Alpha::Fixed(0.0);
    chain(&data, alpha_zero)
        .run(&zero, Start::Resume, &mut Silent)
        .unwrap();
    let copy = ChainDir::new(dir.path().join("copy"));
    let start = Start::ResumeCopying {
        first_fit: Some(&zero),
        probe: Some(&zero),
    };
    let trained = chain(&data, auto.clone())
        .run(&copy, start, &mut Silent)
        .unwrap();
    // The same numbers as alone, step for step, and the same alphas chosen.
    assert_eq!(trained.len(), 2);
    for (a, b) in trained.iter().zip(&trained_alone[1..]) {
        assert_eq!((a.step, a.alpha), (b.step, b.alpha));
        assert_eq!(a.test_acc_final.to_bits(), b.test_acc_final.to_bits());
    }
    assert_eq!(
        copy.read_auto_alpha().unwrap(),
        alone.read_auto_alpha().unwrap()
    );
    // The probe of step 1 was copied (0 seconds, a sidecar naming its source, the alpha = 0
    // step's bytes); that of step 2 (another teacher) trained.
    let probes = copy.probe().read_tests().unwrap();
    assert_eq!(probes.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(probes[0].seconds, 0.0);
    assert!(probes[1].seconds > 0.0);
    assert_eq!(
        std::fs::read(zero.last_checkpoint(1)).unwrap(),
        std::fs::read(copy.probe().last_checkpoint(1)).unwrap()
    );
    let sidecar = std::fs::read_to_string(copy.probe().step_dir(1).join("last.json")).unwrap();
    assert!(sidecar.contains("copied_from"), "{sidecar}");
    // Another first fit (another seed's) is not this chain's teacher: the probe is trained.
    let other = ChainDir::new(dir.path().join("other"));
    let mut other_seed = record(2, 1);
    other_seed.alpha = Alpha::Fixed(0.0);
    other_seed.seed += 1;
    chain(&data, other_seed)
        .run(&other, Start::Resume, &mut Silent)
        .unwrap();
    let fresh = ChainDir::new(dir.path().join("fresh"));
    let start = Start::ResumeCopying {
        first_fit: None,
        probe: Some(&other),
    };
    chain(&data, auto).run(&fresh, start, &mut Silent).unwrap();
    assert!(
        fresh
            .probe()
            .read_tests()
            .unwrap()
            .iter()
            .all(|r| r.seconds > 0.0)
    );
    assert_eq!(
        fresh.read_auto_alpha().unwrap(),
        alone.read_auto_alpha().unwrap()
    );
}
