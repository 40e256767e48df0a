//! Compares our ResNet with torchvision's on the same weights and input (written by
//! `bench/torchvision_parity.py`): eval and train logits, the loss, and gradients.
//!
//! `cargo run --release -p sd-train --example torchvision_parity -- target/parity 18`
//! Exits with status 1 if a maximum relative difference in f64 exceeds 1e-4 (f32 is reported:
//! it accumulates rounding through the backward pass; a wrong formula would show in f64).
//! `sd-cli bench parity` compares f32 on the CPU and on a GPU ([`sd_train::bench::parity`]).

use candle_core::{DType, Device};
use sd_resnet::{Depth, ResnetConfig};
use sd_train::bench::{reference_pass, relative_difference};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("target/parity", String::as_str));
    let layers: u32 = args.get(2).map_or(Ok(18), |d| d.parse())?;
    let depth = Depth::from_layers(layers).ok_or("depth 18, 34 or 50")?;
    let io = candle_core::safetensors::load(
        dir.join(format!("resnet{layers}-io.safetensors")),
        &Device::Cpu,
    )?;
    let weights = dir.join(format!("resnet{layers}.safetensors"));
    let mut worst: f64 = 0.0;
    for dtype in [DType::F64, DType::F32] {
        let ours = reference_pass(
            ResnetConfig::cifar10(depth),
            &weights,
            &io,
            &Device::Cpu,
            dtype,
        )?;
        let conv1 = &ours
            .param_grads
            .iter()
            .find(|(name, _)| name == "conv1.weight")
            .ok_or("no conv1.weight gradient")?
            .1;
        let rows = [
            (
                "eval logits",
                relative_difference(&ours.eval_logits, &io["eval_logits"])?,
            ),
            (
                "train logits",
                relative_difference(&ours.train_logits, &io["train_logits"])?,
            ),
            ("loss", relative_difference(&ours.loss, &io["loss"])?),
            (
                "input gradient",
                relative_difference(&ours.input_grad, &io["input_grad"])?,
            ),
            (
                "conv1.weight gradient",
                relative_difference(conv1, &io["conv1_grad"])?,
            ),
        ];
        println!(
            "ResNet-{layers}, ours in {dtype:?} against torchvision in f64 (max |difference| / max |reference|):"
        );
        for (what, value) in rows {
            println!("  {what:<22} {value:.2e}");
            if dtype == DType::F64 {
                worst = worst.max(value);
            }
        }
    }
    if worst > 1e-4 {
        eprintln!("parity failed: {worst:.2e} > 1e-4");
        std::process::exit(1);
    }
    Ok(())
}
