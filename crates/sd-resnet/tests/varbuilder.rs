//! What a candle-nn user writes: a ResNet-18 from a `VarBuilder` over a safetensors file with
//! torchvision's `state_dict`, `forward_t`, torchvision's logits, and an optimizer step through
//! `candle_nn::Optimizer`; and a `VarMap` whose variables the model trains in place.
//!
//! A torchvision ResNet-18 file is 45 MB, too large to keep in the repository: the test builds
//! it from values both sides regenerate exactly (integer hashes), and
//! bench/torchvision_varbuilder.py records what torchvision holds after loading them (every
//! entry's dtype, shape and bits, checked first) and its logits. The `torchvision_weights`
//! example runs the same on a file saved by torchvision itself.

use std::collections::HashMap;

use candle_core::{DType, Device, ModuleT, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use sd_resnet::loss::{self, LossKind};
use sd_resnet::optim::{Adam, AdamConfig};
use sd_resnet::{Depth, Resnet, ResnetConfig};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// The input's stream, as in bench/torchvision_varbuilder.py.
const INPUT_INDEX: u64 = 1000;

/// `count` values in `[-1, 1)` from SplitMix64 at seed `(index + 1) * GOLDEN`, as
/// bench/torchvision_varbuilder.py computes them with numpy.
fn uniform(index: u64, count: usize) -> Vec<f64> {
    let seed = (index + 1).wrapping_mul(GOLDEN);
    (0..count as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(GOLDEN));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 * 2f64.powi(-53) * 2.0 - 1.0
        })
        .collect()
}

/// torchvision's `state_dict` of ResNet-18 (10 classes) with the script's values, as
/// `safetensors.torch.save_file` would write it.
fn torchvision_state_dict() -> HashMap<String, Tensor> {
    // Names, shapes and order from a model of ours (checked against torchvision's state_dict
    // entry by entry in tests/model.rs); the values are the script's.
    let layout = Resnet::seeded(ResnetConfig::cifar10(Depth::R18), 0, &Device::Cpu).unwrap();
    let mut tensors = HashMap::new();
    for (index, p) in layout.parameters().iter().enumerate() {
        let shape = p.var.dims().to_vec();
        let tensor = if p.name.ends_with("num_batches_tracked") {
            Tensor::new(7i64, &Device::Cpu).unwrap()
        } else {
            let v = uniform(index as u64, shape.iter().product());
            let leaf = p.name.rsplit('.').next().unwrap();
            let scale = |v: f64| -> f64 {
                if p.name.starts_with("fc.") {
                    v / 512f64.sqrt()
                } else if shape.len() == 4 {
                    v * (6.0 / (shape[0] * shape[2] * shape[3]) as f64).sqrt()
                } else {
                    match leaf {
                        "weight" => 1.0 + 0.2 * v,
                        "bias" | "running_mean" => 0.1 * v,
                        "running_var" => 1.0 + 0.25 * (v + 1.0),
                        other => panic!("{other}"),
                    }
                }
            };
            let values: Vec<f32> = v.into_iter().map(|v| scale(v) as f32).collect();
            Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).unwrap()
        };
        tensors.insert(p.name.clone(), tensor);
    }
    tensors
}

fn images() -> Tensor {
    let values: Vec<f32> = uniform(INPUT_INDEX, 2 * 3 * 32 * 32)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    Tensor::from_vec(values, (2, 3, 32, 32), &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// The reference of bench/torchvision_varbuilder.py: torchvision's logits, and its state_dict's
/// entries (dtype, shape, a checksum of the bits).
fn reference() -> serde_json::Value {
    serde_json::from_str(include_str!("data/torchvision_resnet18_logits.json")).unwrap()
}

/// `sum of word_i * (2 i + 1) mod 2^64` over the u32 bits of each f32 (the u64 of each i64), as
/// the script computes it.
fn checksum(tensor: &Tensor) -> u64 {
    let words: Vec<u64> = match tensor.dtype() {
        DType::F32 => flat(tensor)
            .iter()
            .map(|v| u64::from(v.to_bits()))
            .collect(),
        DType::I64 => tensor
            .flatten_all()
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u64)
            .collect(),
        other => panic!("{other:?}"),
    };
    words.iter().enumerate().fold(0u64, |sum, (i, &w)| {
        sum.wrapping_add(w.wrapping_mul(2 * i as u64 + 1))
    })
}

#[test]
fn the_file_holds_what_torchvision_saves() {
    // The same names, dtypes, shapes and bits as the state_dict the script loads into
    // torchvision.models.resnet18(num_classes=10): the file below is the one
    // safetensors.torch.save_file would write of it, up to the order of the entries.
    let reference = reference();
    let entries = reference["state_dict"].as_object().unwrap();
    let ours = torchvision_state_dict();
    assert_eq!(entries.len(), ours.len());
    for (name, entry) in entries {
        let tensor = &ours[name];
        let dtype = match tensor.dtype() {
            DType::F32 => "float32",
            DType::I64 => "int64",
            other => panic!("{other:?}"),
        };
        assert_eq!(entry["dtype"], dtype, "{name}");
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, tensor.dims(), "{name}");
        assert_eq!(
            entry["checksum"].as_u64().unwrap(),
            checksum(tensor),
            "{name}"
        );
    }
}

#[test]
fn a_torchvision_safetensors_file_through_a_var_builder_gives_torchvisions_logits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    candle_core::safetensors::save(&torchvision_state_dict(), &path).unwrap();

    let vb = VarBuilder::from_buffered_safetensors(
        std::fs::read(&path).unwrap(),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let model = Resnet::new(ResnetConfig::cifar10(Depth::R18), vb).unwrap();
    let x = images();
    let logits = flat(&model.forward_t(&x, false).unwrap());

    // bench/torchvision_varbuilder.py: torchvision in float64 on the same float32 values.
    let reference = reference();
    let theirs: Vec<f64> = reference["eval_logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(logits.len(), theirs.len());
    let scale = theirs.iter().fold(0f64, |m, v| m.max(v.abs()));
    let worst = logits
        .iter()
        .zip(&theirs)
        .fold(0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()));
    assert!(
        worst / scale < 1e-4,
        "max |ours - torchvision| / max |torchvision| = {}",
        worst / scale
    );
    let tracked = model.parameters().get("bn1.num_batches_tracked").unwrap();
    assert_eq!(tracked.var.to_scalar::<i64>().unwrap(), 7);

    // One optimizer step through candle-nn's trait: Adam's first step moves every tensor with a
    // gradient by about lr (m / sqrt(v) = sign(g)), and no buffer.
    let lr = 1e-3;
    let trainable = model.parameters().trainable();
    let before: Vec<Vec<f32>> = trainable.iter().map(|v| flat(v.as_tensor())).collect();
    let mut adam = Adam::new(
        trainable.clone(),
        AdamConfig {
            lr,
            ..AdamConfig::default()
        },
    )
    .unwrap();
    let one_hot = Tensor::new(
        &[[0f32, 0., 1., 0., 0., 0., 0., 0., 0., 0.]; 2],
        &Device::Cpu,
    )
    .unwrap();
    let loss = loss::against(
        LossKind::SoftmaxMse,
        &model.forward_t(&x, true).unwrap(),
        &one_hot,
    )
    .unwrap();
    adam.backward_step(&loss).unwrap();
    assert_eq!(adam.steps(), 1);
    let fc = model.parameters().get("fc.weight").unwrap();
    let index = trainable
        .iter()
        .position(|v| v.as_tensor().id() == fc.var.as_tensor().id())
        .unwrap();
    let moved: Vec<f32> = flat(fc.var.as_tensor())
        .iter()
        .zip(&before[index])
        .map(|(a, b)| (a - b).abs())
        .collect();
    assert!(
        moved.iter().all(|&d| d <= 1.001 * lr as f32),
        "{:?}",
        moved.iter().fold(0f32, |m, &d| m.max(d))
    );
    assert!(moved.iter().filter(|&&d| d > 0.99 * lr as f32).count() > moved.len() / 2);
    for (var, before) in trainable.iter().zip(&before) {
        assert_ne!(
            &flat(var.as_tensor()),
            before,
            "every trainable tensor moved"
        );
    }
    // The training-mode pass moved the running statistics (torchvision's buffers) by one batch.
    assert_eq!(tracked.var.to_scalar::<i64>().unwrap(), 8);
}

#[test]
fn a_var_map_holds_what_the_model_trains() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let config = ResnetConfig {
        classes: 3,
        ..ResnetConfig::cifar10(Depth::R18)
    };
    let model = Resnet::new(config, vb).unwrap();
    // Every tensor of torchvision's state_dict is in the map, the buffers included.
    assert_eq!(varmap.all_vars().len(), model.parameters().len());
    let mut adam = Adam::new(model.parameters().trainable(), AdamConfig::default()).unwrap();
    let one_hot = Tensor::new(&[[1f32, 0., 0.], [0., 1., 0.]], &Device::Cpu).unwrap();
    let logits = model.forward_t(&images(), true).unwrap();
    adam.backward_step(&loss::against(LossKind::SoftmaxMse, &logits, &one_hot).unwrap())
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("map.safetensors");
    varmap.save(&saved).unwrap();
    let again = Resnet::seeded(config, 1, &Device::Cpu).unwrap();
    again.load(&saved).unwrap();
    for (ours, theirs) in model.parameters().iter().zip(again.parameters().iter()) {
        assert_eq!(ours.name, theirs.name);
        let (a, b) = (
            ours.var.flatten_all().unwrap(),
            theirs.var.flatten_all().unwrap(),
        );
        match a.dtype() {
            DType::I64 => assert_eq!(a.to_vec1::<i64>().unwrap(), [1], "{}", ours.name),
            _ => assert_eq!(flat(&a), flat(&b), "{}", ours.name),
        }
    }
    assert_eq!(
        flat(&model.forward_t(&images(), false).unwrap()),
        flat(&again.forward_t(&images(), false).unwrap())
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let mut tensors = torchvision_state_dict();
    tensors.remove("layer3.1.bn2.running_var");
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let err = Resnet::new(ResnetConfig::cifar10(Depth::R18), vb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer3.1.bn2.running_var"), "{err}");
    // Old checkpoints without num_batches_tracked load, with the count at 0, as in PyTorch.
    let mut tensors = torchvision_state_dict();
    tensors.retain(|name, _| !name.ends_with("num_batches_tracked"));
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = Resnet::new(ResnetConfig::cifar10(Depth::R18), vb).unwrap();
    let tracked = model
        .parameters()
        .get("layer1.0.bn1.num_batches_tracked")
        .unwrap();
    assert_eq!(tracked.var.to_scalar::<i64>().unwrap(), 0);
}
