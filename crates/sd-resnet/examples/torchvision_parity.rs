//! Compares our ResNet with torchvision's on the same weights and input (written by
//! `bench/torchvision_parity.py`): eval and train logits, the loss, and gradients.
//!
//! `cargo run --release -p sd-resnet --example torchvision_parity -- target/parity 18`
//! Exits with status 1 if a maximum relative difference exceeds 1e-4.

use candle_core::{DType, Device, Tensor, Var};
use sd_resnet::{Depth, Resnet, ResnetConfig, loss};

fn relative(ours: &Tensor, theirs: &Tensor) -> f64 {
    let ours = ours.to_dtype(DType::F64).unwrap();
    let theirs = theirs.to_dtype(DType::F64).unwrap();
    let diff = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap();
    let scale = theirs.abs().unwrap().max_all().unwrap();
    diff.to_scalar::<f64>().unwrap() / scale.to_scalar::<f64>().unwrap().max(1e-30)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("target/parity", String::as_str));
    let layers: u32 = args
        .get(2)
        .map_or(18, |d| d.parse().expect("depth 18, 34 or 50"));
    let depth = Depth::from_layers(layers).expect("depth 18, 34 or 50");
    let io = candle_core::safetensors::load(
        dir.join(format!("resnet{layers}-io.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    let mut worst: f64 = 0.0;
    for dtype in [DType::F64, DType::F32] {
        worst = worst.max(compare(&dir, layers, depth, dtype, &io));
    }
    if worst > 1e-4 {
        eprintln!("parity failed: {worst:.2e} > 1e-4");
        std::process::exit(1);
    }
}

fn compare(
    dir: &std::path::Path,
    layers: u32,
    depth: Depth,
    dtype: DType,
    io: &std::collections::HashMap<String, Tensor>,
) -> f64 {
    let model = Resnet::with_dtype(ResnetConfig::cifar10(depth), 0, &Device::Cpu, dtype).unwrap();
    model
        .load(&dir.join(format!("resnet{layers}.safetensors")))
        .unwrap();
    let x = Var::from_tensor(&io["input"].to_dtype(dtype).unwrap()).unwrap();
    let one_hot = io["one_hot"].to_dtype(dtype).unwrap();

    let eval = model.forward(x.as_tensor(), false).unwrap();
    let train = model.forward(x.as_tensor(), true).unwrap();
    let loss = loss::distillation(loss::LossKind::SoftmaxMse, &train, &one_hot, None, 1.0).unwrap();
    let grads = loss.backward().unwrap();
    let conv1 = model
        .parameters()
        .get("conv1.weight")
        .unwrap()
        .var
        .as_tensor()
        .clone();
    let rows = [
        ("eval logits", relative(&eval, &io["eval_logits"])),
        ("train logits", relative(&train, &io["train_logits"])),
        ("loss", relative(&loss.reshape(1).unwrap(), &io["loss"])),
        (
            "input gradient",
            relative(grads.get(x.as_tensor()).unwrap(), &io["input_grad"]),
        ),
        (
            "conv1.weight gradient",
            relative(grads.get(&conv1).unwrap(), &io["conv1_grad"]),
        ),
    ];
    // f32 accumulates rounding through the backward pass; the gate is on f64, where a wrong
    // formula would show, and f32 is reported.
    let mut worst: f64 = 0.0;
    println!(
        "ResNet-{layers}, ours in {dtype:?} against torchvision in f64 (max |difference| / max |reference|):"
    );
    for (what, value) in rows {
        println!("  {what:<22} {value:.2e}");
        worst = worst.max(value);
    }
    if dtype == DType::F64 { worst } else { 0.0 }
}
