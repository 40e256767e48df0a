//! The networks against torchvision: parameter counts, names, shapes, initialization, and
//! BatchNorm's running statistics.

use candle_core::{DType, Device, ModuleT, Tensor};
use sd_resnet::layers::{BN_EPS, BN_MOMENTUM};
use sd_resnet::{Depth, ParamKind, Resnet, ResnetConfig, Stem};

fn model(depth: Depth, stem: Stem, in_channels: usize) -> Resnet {
    let config = ResnetConfig {
        depth,
        stem,
        in_channels,
        classes: 10,
        width: sd_resnet::TORCHVISION_WIDTH,
    };
    Resnet::seeded(config, 0, &Device::Cpu).unwrap()
}

#[test]
fn trainable_parameter_counts_equal_torchvision() {
    // sum(p.numel() for p in torchvision.models.resnetNN(num_classes=10).parameters())
    for (depth, count) in [
        (Depth::R18, 11_181_642),
        (Depth::R34, 21_289_802),
        (Depth::R50, 23_528_522),
    ] {
        let m = model(depth, Stem::Imagenet, 3);
        assert_eq!(m.parameters().trainable_count(), count, "{depth:?}");
        // The CIFAR stem's 3x3 conv1 has 64 x 3 x (49 - 9) fewer weights; one channel a third.
        let cifar = model(depth, Stem::Cifar, 3);
        assert_eq!(cifar.parameters().trainable_count(), count - 64 * 3 * 40);
        let grey = model(depth, Stem::Imagenet, 1);
        assert_eq!(grey.parameters().trainable_count(), count - 64 * 2 * 49);
    }
}

/// Every entry of torchvision's `state_dict`, in order, with its shape and dtype
/// (`tests/data/torchvision_state_dicts.json`, written by `bench/torchvision_state_dicts.py`).
#[test]
fn state_dicts_equal_torchvisions_entry_by_entry() {
    let text = include_str!("data/torchvision_state_dicts.json");
    let reference: serde_json::Value = serde_json::from_str(text).unwrap();
    for (key, depth) in [("18", Depth::R18), ("34", Depth::R34), ("50", Depth::R50)] {
        let expected = &reference["models"][key];
        let m = model(depth, Stem::Imagenet, 3);
        let ours: Vec<(String, Vec<usize>, &str)> = m
            .parameters()
            .iter()
            .map(|p| {
                let dtype = match p.var.dtype() {
                    DType::F32 => "float32",
                    DType::I64 => "int64",
                    other => panic!("unexpected {other:?}"),
                };
                (p.name.clone(), p.var.dims().to_vec(), dtype)
            })
            .collect();
        let theirs: Vec<(String, Vec<usize>, &str)> = expected["state_dict"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let shape = e[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize);
                (
                    e[0].as_str().unwrap().to_string(),
                    shape.collect(),
                    e[2].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "ResNet-{key}");
        assert_eq!(
            m.parameters().trainable_count() as u64,
            expected["trainable"].as_u64().unwrap()
        );
        // A narrower network: torchvision's names, every channel count (a multiple of 64 there;
        // kernel sizes, the 3 input channels and the 10 classes are not) scaled by width / 64.
        for width in [16, 8] {
            let config = ResnetConfig {
                width,
                ..ResnetConfig::cifar10(depth)
            };
            let narrow = Resnet::seeded(config, 0, &Device::Cpu).unwrap();
            let shapes: Vec<(String, Vec<usize>)> = narrow
                .parameters()
                .iter()
                .map(|p| (p.name.clone(), p.var.dims().to_vec()))
                .collect();
            let scaled: Vec<(String, Vec<usize>)> = theirs
                .iter()
                .map(|(name, shape, _)| {
                    let dims = shape
                        .iter()
                        .map(|&d| if d % 64 == 0 { d * width / 64 } else { d });
                    (name.clone(), dims.collect())
                })
                .collect();
            assert_eq!(shapes, scaled, "ResNet-{key} at width {width}");
            let images = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
            let logits = narrow.forward_t(&images, false).unwrap();
            assert_eq!(logits.dims(), [2, 10]);
        }
    }
    let zero = ResnetConfig {
        width: 0,
        ..ResnetConfig::cifar10(Depth::R18)
    };
    let error = Resnet::seeded(zero, 0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(error.contains("width 0"), "{error}");
}

#[test]
fn names_and_shapes_follow_torchvisions_state_dict() {
    let m = model(Depth::R18, Stem::Imagenet, 3);
    let p = m.parameters();
    let shape = |name: &str| {
        p.get(name)
            .unwrap_or_else(|| panic!("{name}"))
            .var
            .dims()
            .to_vec()
    };
    assert_eq!(shape("conv1.weight"), [64, 3, 7, 7]);
    assert_eq!(shape("bn1.running_var"), [64]);
    assert_eq!(shape("layer1.0.conv2.weight"), [64, 64, 3, 3]);
    assert_eq!(shape("layer2.0.downsample.0.weight"), [128, 64, 1, 1]);
    assert_eq!(shape("layer4.1.bn2.bias"), [512]);
    assert_eq!(shape("fc.weight"), [10, 512]);
    assert!(
        p.get("layer1.0.downsample.0.weight").is_none(),
        "no downsample in layer1 of ResNet-18"
    );
    let tracked = p.get("bn1.num_batches_tracked").unwrap();
    assert_eq!(
        (tracked.kind, tracked.var.dtype()),
        (ParamKind::Buffer, DType::I64)
    );
    assert_eq!(p.get("bn1.running_mean").unwrap().kind, ParamKind::Buffer);
    // torchvision's state_dict has 122 entries for ResNet-18 (62 trainable, 60 buffers).
    assert_eq!(p.iter().count(), 122);
    assert_eq!(p.trainable().len(), 62);
    let names: Vec<&str> = p.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        &names[..7],
        [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.num_batches_tracked",
            "layer1.0.conv1.weight"
        ]
    );
    assert_eq!(names[names.len() - 2..], ["fc.weight", "fc.bias"]);

    let r50 = model(Depth::R50, Stem::Imagenet, 3);
    let p = r50.parameters();
    assert_eq!(
        p.get("layer1.0.downsample.0.weight").unwrap().var.dims(),
        [256, 64, 1, 1]
    );
    assert_eq!(
        p.get("layer3.5.conv3.weight").unwrap().var.dims(),
        [1024, 256, 1, 1]
    );
    // torchvision v1.5: the stride is in the 3x3 convolution; the downsample strides too.
    assert_eq!(p.get("fc.weight").unwrap().var.dims(), [10, 2048]);
    assert_eq!(p.iter().count(), 320);
}

#[test]
fn every_depth_and_stem_maps_images_to_logits() {
    for depth in [Depth::R18, Depth::R34, Depth::R50] {
        for (stem, channels) in [(Stem::Imagenet, 3), (Stem::Cifar, 3), (Stem::Imagenet, 1)] {
            let m = model(depth, stem, channels);
            let x = Tensor::randn(0f32, 1.0, (2, channels, 32, 32), &Device::Cpu).unwrap();
            for train in [true, false] {
                let logits = m.forward_t(&x, train).unwrap();
                assert_eq!(logits.dims(), [2, 10], "{depth:?} {stem:?} {channels}");
                let finite = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(finite.iter().all(|v| v.is_finite()));
            }
        }
    }
}

#[test]
fn initialization_is_seeded_and_matches_torchvisions_scales() {
    let a = Resnet::seeded(ResnetConfig::cifar10(Depth::R18), 7, &Device::Cpu).unwrap();
    let b = Resnet::seeded(ResnetConfig::cifar10(Depth::R18), 7, &Device::Cpu).unwrap();
    let c = Resnet::seeded(ResnetConfig::cifar10(Depth::R18), 8, &Device::Cpu).unwrap();
    let values = |m: &Resnet, name: &str| {
        m.parameters()
            .get(name)
            .unwrap()
            .var
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(
        values(&a, "layer3.1.conv2.weight"),
        values(&b, "layer3.1.conv2.weight")
    );
    assert_ne!(
        values(&a, "layer3.1.conv2.weight"),
        values(&c, "layer3.1.conv2.weight")
    );
    // Kaiming normal, fan_out: std = sqrt(2 / (256 * 3 * 3)) for layer3 convolutions.
    let w = values(&a, "layer3.1.conv2.weight");
    let std = (w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    let expected = (2.0f64 / (256.0 * 9.0)).sqrt();
    assert!(
        (std / expected - 1.0).abs() < 0.02,
        "std {std} vs {expected}"
    );
    // nn.Linear: uniform in +-1/sqrt(512).
    let fc = values(&a, "fc.weight");
    let bound = 1.0 / 512f32.sqrt();
    assert!(fc.iter().all(|v| v.abs() <= bound));
    assert!(fc.iter().any(|v| v.abs() > 0.9 * bound));
    assert!(values(&a, "bn1.weight").iter().all(|&v| v == 1.0));
    assert!(values(&a, "bn1.bias").iter().all(|&v| v == 0.0));
}

#[test]
fn batch_norm_updates_running_statistics_as_pytorch() {
    let m = model(Depth::R18, Stem::Cifar, 1);
    // Feed the stem directly through the model is not exposed; instead check bn1 after a
    // forward pass against a hand computation on conv1's output.
    let x = Tensor::randn(0f32, 1.0, (4, 1, 8, 8), &Device::Cpu).unwrap();
    let conv1 = m
        .parameters()
        .get("conv1.weight")
        .unwrap()
        .var
        .as_tensor()
        .clone();
    let z = x.conv2d(&conv1, 1, 1, 1, 1).unwrap(); // [4, 64, 8, 8]
    m.forward_t(&x, true).unwrap();
    let rm = m
        .parameters()
        .get("bn1.running_mean")
        .unwrap()
        .var
        .to_vec1::<f32>()
        .unwrap();
    let rv = m
        .parameters()
        .get("bn1.running_var")
        .unwrap()
        .var
        .to_vec1::<f32>()
        .unwrap();
    let z = z
        .transpose(0, 1)
        .unwrap()
        .flatten_from(1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (c, values) in z.iter().enumerate() {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let unbiased = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        let expected_mean = BN_MOMENTUM * mean;
        let expected_var = (1.0 - BN_MOMENTUM) + BN_MOMENTUM * unbiased;
        assert!((rm[c] as f64 - expected_mean).abs() < 1e-5, "channel {c}");
        assert!((rv[c] as f64 - expected_var).abs() < 1e-4, "channel {c}");
    }
    let tracked = m
        .parameters()
        .get("bn1.num_batches_tracked")
        .unwrap()
        .var
        .to_scalar::<i64>()
        .unwrap();
    assert_eq!(tracked, 1);
    // Evaluation uses the running statistics and changes nothing.
    m.forward_t(&x, false).unwrap();
    let again = m
        .parameters()
        .get("bn1.running_mean")
        .unwrap()
        .var
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(again, rm);
    let _ = BN_EPS;
}

#[test]
fn a_checkpoint_round_trip_gives_identical_logits() {
    let dir = std::env::temp_dir().join(format!("sd-resnet-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("last.safetensors");
    let trained = model(Depth::R18, Stem::Imagenet, 3);
    let x = Tensor::randn(0f32, 1.0, (3, 3, 32, 32), &Device::Cpu).unwrap();
    trained.forward_t(&x, true).unwrap(); // running statistics move away from their start
    trained.save(&path).unwrap();
    let fresh = Resnet::seeded(ResnetConfig::cifar10(Depth::R18), 99, &Device::Cpu).unwrap();
    fresh.load(&path).unwrap();
    let a = trained
        .forward_t(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = fresh
        .forward_t(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(a, b);
    let tracked = |m: &Resnet| {
        m.parameters()
            .get("layer1.0.bn1.num_batches_tracked")
            .unwrap()
            .var
            .to_scalar::<i64>()
            .unwrap()
    };
    assert_eq!(tracked(&fresh), 1);

    // A checkpoint of another architecture is refused, naming the tensor, and changes nothing.
    let other = model(Depth::R18, Stem::Cifar, 3);
    let before = other
        .forward_t(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let err = other.load(&path).unwrap_err().to_string();
    assert!(
        err.contains("conv1.weight") && err.contains("[64, 3, 7, 7]"),
        "{err}"
    );
    let after = other
        .forward_t(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(before, after);
    let r34 = model(Depth::R34, Stem::Imagenet, 3);
    assert!(
        r34.load(&path)
            .unwrap_err()
            .to_string()
            .contains("missing tensor")
    );
    std::fs::write(dir.join("junk.safetensors"), b"not a checkpoint").unwrap();
    assert!(fresh.load(dir.join("junk.safetensors")).is_err());
    assert!(
        fresh
            .load(dir.join("absent.safetensors"))
            .unwrap_err()
            .to_string()
            .contains("no such file")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
