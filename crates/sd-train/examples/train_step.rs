//! Times one training step (forward, backward, Adam) of a ResNet on random 32x32 images: the
//! median of the timed steps after one warm-up step, and the peak resident memory
//! ([`sd_train::bench::time_train_step`]).
//!
//! `cargo run --release -p sd-train --example train_step -- DEPTH STEM BATCH [STEPS] [MAX_SECONDS]`
//! e.g. `... -- 18 imagenet 16 10 60`. Prints one JSON object. bench/train_compare.sh runs it
//! next to bench/train_step.py (PyTorch). `sd-cli bench train-step` does the same.

use candle_core::Device;
use sd_resnet::optim::AdamKernel;
use sd_resnet::{Depth, ResnetConfig, Stem};
use sd_train::bench::{TrainStepBench, time_train_step};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let layers: u32 = args.first().map_or(Ok(18), |a| a.parse())?;
    let stem = match args.get(1).map_or("imagenet", String::as_str) {
        "cifar" => Stem::Cifar,
        _ => Stem::Imagenet,
    };
    let batch: usize = args.get(2).map_or(Ok(16), |a| a.parse())?;
    let steps: usize = args.get(3).map_or(Ok(10), |a| a.parse())?;
    let max_seconds: f64 = args.get(4).map_or(Ok(60.0), |a| a.parse())?;
    let depth = Depth::from_layers(layers).ok_or("depth 18, 34 or 50")?;
    let reference = |var: &str| std::env::var(var).as_deref() == Ok("reference");
    // SD_BN=reference selects the composed BatchNorm, SD_CONV=reference candle's conv2d,
    // SD_ADAM=reference the unfused Adam, for comparison. SD_PROFILE=1: after the timed steps,
    // the mean wall time per step of the forward pass, the backward pass, Adam, and each phase
    // of this crate's kernels (sd_resnet::profile).
    let profile = std::env::var_os("SD_PROFILE").is_some();
    let timing = time_train_step(&TrainStepBench {
        model: ResnetConfig {
            depth,
            stem,
            in_channels: 3,
            classes: 10,
            width: sd_resnet::TORCHVISION_WIDTH,
        },
        batch,
        steps,
        max_seconds,
        device: Device::Cpu,
        reference_kernels: (reference("SD_BN"), reference("SD_CONV")),
        adam: if reference("SD_ADAM") {
            AdamKernel::Reference
        } else {
            AdamKernel::Fused
        },
        profile,
    })?;
    if profile {
        let n = timing.steps as f64;
        for (name, time) in ["forward pass", "backward pass", "Adam"]
            .iter()
            .zip(timing.phases)
        {
            eprintln!("{name:<28} {:8.1} ms/step", 1e3 * time);
        }
        for (name, time, calls) in sd_resnet::profile::take() {
            eprintln!(
                "  {name:<26} {:8.1} ms/step {:6.1} calls/step",
                1e3 * time.as_secs_f64() / n,
                calls as f64 / n
            );
        }
    }
    println!("{}", serde_json::to_string(&timing)?);
    Ok(())
}
