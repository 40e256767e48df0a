//! The fused Adam step against the reference (candle tensor operations): same parameters after
//! several steps, on random shapes, and on a whole ResNet-18 training step.

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use candle_nn::Optimizer;
use proptest::prelude::*;
use sd_resnet::optim::{Adam, AdamConfig, AdamKernel};
use sd_resnet::{Depth, Resnet, ResnetConfig, loss};

fn values(v: &Var) -> Vec<f32> {
    v.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn close(a: &[f32], b: &[f32], tolerance: f32) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= tolerance * y.abs().max(1e-3))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn fused_equals_reference(len in 1usize..200_000, steps in 1usize..5, seed in any::<u64>(), lr in 1e-4f64..1e-1) {
        let start: Vec<f32> = (0..len).map(|i| (((i as u64 ^ seed) % 1000) as f32 - 500.0) / 300.0).collect();
        let make = || Var::from_tensor(&Tensor::from_vec(start.clone(), len, &Device::Cpu).unwrap()).unwrap();
        let (fused, reference) = (make(), make());
        let config = AdamConfig { lr, ..AdamConfig::default() };
        let mut a = Adam::new(vec![fused.clone()], config).unwrap();
        let mut b = Adam::new(vec![reference.clone()], config).unwrap().with_kernel(AdamKernel::Reference);
        for _ in 0..steps {
            // Loss sum(p^3 - p): a gradient that differs per element and changes every step.
            for (var, adam) in [(&fused, &mut a), (&reference, &mut b)] {
                let t = var.as_tensor();
                let grads = (t.powf(3.0).unwrap() - t).unwrap().sum_all().unwrap().backward().unwrap();
                adam.step(&grads).unwrap();
            }
        }
        prop_assert!(close(&values(&fused), &values(&reference), 1e-5));
    }
}

#[test]
fn one_resnet_training_step_is_the_same_with_either_kernel() {
    let x = Tensor::randn(0f32, 1.0, (4, 3, 32, 32), &Device::Cpu).unwrap();
    let one_hot = Tensor::from_vec(
        (0..40)
            .map(|i| if i % 11 == 0 { 1f32 } else { 0.0 })
            .collect::<Vec<_>>(),
        (4, 10),
        &Device::Cpu,
    )
    .unwrap();
    let mut after = Vec::new();
    for kernel in [AdamKernel::Fused, AdamKernel::Reference] {
        let model = Resnet::seeded(ResnetConfig::cifar10(Depth::R18), 3, &Device::Cpu).unwrap();
        let params = model.parameters().trainable();
        let mut adam = Adam::new(params.clone(), AdamConfig::default())
            .unwrap()
            .with_kernel(kernel);
        let mut losses = Vec::new();
        for _ in 0..2 {
            let logits = model.forward_t(&x, true).unwrap();
            let total =
                (loss::distillation(loss::LossKind::SoftmaxMse, &logits, &one_hot, None, 1.0)
                    .unwrap()
                    + (loss::l2_norms(&params).unwrap() * 1e-4).unwrap())
                .unwrap();
            losses.push(
                total
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
            );
            adam.step(&total.backward().unwrap()).unwrap();
        }
        after.push((losses, params.iter().map(values).collect::<Vec<_>>()));
    }
    let ((loss_fused, fused), (loss_reference, reference)) = (&after[0], &after[1]);
    for (a, b) in loss_fused.iter().zip(loss_reference) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs(),
            "{loss_fused:?} vs {loss_reference:?}"
        );
    }
    for (a, b) in fused.iter().zip(reference) {
        assert!(close(a, b, 1e-4));
    }
}

#[test]
fn fused_batch_norm_gives_the_reference_training_step() {
    // Fixed inputs (candle's CPU randn cannot be seeded).
    let x: Vec<f32> = (0..3 * 3 * 32 * 32)
        .map(|i| ((i as f32) * 0.37).sin() * 1.3 + 0.2)
        .collect();
    let x = Tensor::from_vec(x, (3, 3, 32, 32), &Device::Cpu).unwrap();
    let one_hot = Tensor::from_vec(
        (0..30)
            .map(|i| if i % 11 == 0 { 1f32 } else { 0.0 })
            .collect::<Vec<_>>(),
        (3, 10),
        &Device::Cpu,
    )
    .unwrap();
    let mut runs = Vec::new();
    // Fused f32, reference f32, and the f64 composition as the truth.
    for (reference, dtype) in [(false, DType::F32), (true, DType::F32), (true, DType::F64)] {
        let model = Resnet::new(
            ResnetConfig::cifar10(Depth::R18),
            sd_resnet::init::seeded(4, dtype, &Device::Cpu),
        )
        .unwrap();
        model.use_reference_kernels(reference);
        let x = x.to_dtype(dtype).unwrap();
        let one_hot = one_hot.to_dtype(dtype).unwrap();
        let params = model.parameters().trainable();
        let logits = model.forward_t(&x, true).unwrap();
        let total =
            loss::distillation(loss::LossKind::SoftmaxMse, &logits, &one_hot, None, 1.0).unwrap();
        let grads = total.backward().unwrap();
        let grads: Vec<Vec<f32>> = params
            .iter()
            .map(|p| values_of(grads.get(p.as_tensor()).unwrap()))
            .collect();
        // One BatchNorm of each kind: followed by a ReLU, ending the block (with the residual
        // added), and on the downsampling shortcut (folded into the block's last op).
        let running: Vec<f32> = [
            "layer2.0.bn1.running_var",
            "layer2.0.bn2.running_var",
            "layer2.0.bn2.running_mean",
            "layer2.0.downsample.1.running_var",
            "layer2.0.downsample.1.running_mean",
        ]
        .iter()
        .flat_map(|name| values_of(model.parameters().get(name).unwrap().var.as_tensor()))
        .collect();
        // Evaluation mode, with the running statistics this step moved.
        let eval_logits = values_of(&model.forward_t(&x, false).unwrap());
        runs.push(Run {
            logits: values_of(&logits),
            grads,
            running,
            eval_logits,
        });
    }
    // max |difference| / max |truth|, per tensor.
    let relative = |a: &[f32], b: &[f32]| {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale.max(1e-30)
    };
    let truth = &runs[2];
    let error = |run: &Run| {
        let gradients = run
            .grads
            .iter()
            .zip(&truth.grads)
            .map(|(a, b)| relative(a, b))
            .fold(0f32, f32::max);
        (
            relative(&run.logits, &truth.logits),
            gradients,
            relative(&run.running, &truth.running),
            relative(&run.eval_logits, &truth.eval_logits),
        )
    };
    let (fused, reference) = (error(&runs[0]), error(&runs[1]));
    eprintln!(
        "against f64 (logits, worst gradient, running statistics, eval logits): fused {fused:?}, \
         reference {reference:?}"
    );
    assert!(
        fused.0 < 1e-4 && fused.2 < 1e-5 && fused.3 < 1e-4,
        "{fused:?}"
    );
    // The fused op is no less accurate than the composition it replaces.
    assert!(fused.1 <= 1.5 * reference.1, "{fused:?} vs {reference:?}");
}

/// What one run of the training-step comparison produced.
struct Run {
    logits: Vec<f32>,
    grads: Vec<Vec<f32>>,
    running: Vec<f32>,
    eval_logits: Vec<f32>,
}

fn values_of(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The workspace builds candle-core with vendor/candle-core-backprop.patch: the first gradient
/// reaching a node is stored as it is, not added to zeros. The only number that tells the two
/// apart is a gradient of `-0.0`, whose sign `0 + (-0.0) = +0.0` would lose; everything else is
/// bit for bit the same, and this test fails if the patch stops being applied.
#[test]
fn the_workspace_builds_the_patched_backward() {
    let x = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap()).unwrap();
    // A product with a tensor (an affine map by 0 would be dropped from the graph).
    let zeros = Tensor::new(&[-0f32, -0.0], &Device::Cpu).unwrap();
    let loss = x.as_tensor().mul(&zeros).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let grad = grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(grad, [0.0, 0.0]);
    assert!(
        grad.iter().all(|g| g.is_sign_negative()),
        "gradient {grad:?}: the first gradient was added to zeros (is [patch.crates-io] gone?)"
    );
}
