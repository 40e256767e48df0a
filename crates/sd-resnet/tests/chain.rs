//! The distillation chain end to end on fixture data: it learns, it is reproducible, a resumed
//! chain equals the uninterrupted one, the teacher stays frozen, and a bad loss stops it.

use std::sync::Arc;

use candle_core::Device;
use sd_data::fixture::{self, FixtureSpec};
use sd_data::{Normalization, Subset, Transform};
use sd_resnet::train::{ChainConfig, ChainData, EpochMetrics, Silent, run_chain};
use sd_resnet::{Depth, Resnet, ResnetConfig, ResnetError};

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
    }
}

fn config(out: &std::path::Path, steps: usize, epochs: usize) -> ChainConfig {
    ChainConfig {
        model: ResnetConfig::cifar10(Depth::R18),
        max_epochs: epochs,
        batch_size: 32,
        lr: 1e-3,
        reg_coef: 1e-4,
        loss: sd_resnet::loss::LossKind::SoftmaxMse,
        alpha: 0.5,
        steps,
        first_step: 0,
        seed: 11,
        num_workers: 1,
        device: Device::Cpu,
        out: out.to_path_buf(),
        pretrained: None,
    }
}

fn metrics(dir: &std::path::Path) -> Vec<EpochMetrics> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
    let results = run_chain(
        &config(dir.path(), 2, 3),
        &data(256, 100),
        None,
        &mut Silent,
    )
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
    let rows = metrics(dir.path());
    assert_eq!(rows.len(), 6);
    for step in ["step_0", "step_1"] {
        let files: Vec<String> = std::fs::read_dir(dir.path().join(step))
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
        assert!(!files.iter().any(|f| f.ends_with(".partial")), "{files:?}");
    }
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7);
    let test = std::fs::read_to_string(dir.path().join("test.csv")).unwrap();
    assert!(test.starts_with("step,alpha,test_acc_final,test_acc_best"));
}

#[test]
fn the_same_seed_gives_identical_metrics_and_a_resumed_chain_equals_the_whole() {
    let data = data(64, 32);
    let whole = tempfile::tempdir().unwrap();
    run_chain(&config(whole.path(), 2, 1), &data, None, &mut Silent).unwrap();
    let again = tempfile::tempdir().unwrap();
    run_chain(&config(again.path(), 2, 1), &data, None, &mut Silent).unwrap();
    let (a, b) = (metrics(whole.path()), metrics(again.path()));
    assert!(
        a.iter().zip(&b).all(|(x, y)| same_numbers(x, y)),
        "{a:?}\n{b:?}"
    );

    // Resume: step 0 alone, then step 1 from step 0's checkpoint.
    let resumed = tempfile::tempdir().unwrap();
    run_chain(&config(resumed.path(), 1, 1), &data, None, &mut Silent).unwrap();
    let teacher = Resnet::new(ResnetConfig::cifar10(Depth::R18), 0, &Device::Cpu).unwrap();
    teacher
        .load(&resumed.path().join("step_0/last.safetensors"))
        .unwrap();
    let mut second = config(resumed.path(), 1, 1);
    second.first_step = 1;
    run_chain(&second, &data, Some(teacher), &mut Silent).unwrap();
    let c = metrics(resumed.path());
    assert_eq!(c.len(), 2);
    assert!(same_numbers(&a[1], &c[1]), "{:?}\n{:?}", a[1], c[1]);
}

#[test]
fn the_teacher_is_frozen() {
    let data = data(64, 32);
    let dir = tempfile::tempdir().unwrap();
    let teacher = Resnet::new(ResnetConfig::cifar10(Depth::R18), 5, &Device::Cpu).unwrap();
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
    let mut cfg = config(dir.path(), 1, 1);
    cfg.first_step = 1;
    run_chain(&cfg, &data, Some(teacher), &mut Silent).unwrap();
    assert_eq!(
        before,
        snapshot(&handles),
        "weights, running statistics and batch counts unchanged"
    );
}

#[test]
fn a_non_finite_loss_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1, 1);
    cfg.reg_coef = f64::INFINITY;
    let err = run_chain(&cfg, &data(64, 32), None, &mut Silent).unwrap_err();
    assert!(
        matches!(
            err,
            ResnetError::NonFinite {
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
