//! Times one training step (forward, backward, Adam) of a ResNet on random 32x32 images: the
//! median of the timed steps after one warm-up step, and the peak resident memory.
//!
//! `cargo run --release -p sd-resnet --example train_step -- DEPTH STEM BATCH [STEPS] [MAX_SECONDS]`
//! e.g. `... -- 18 imagenet 16 10 60`. Prints one JSON object. bench/train_compare.sh runs it
//! next to bench/train_step.py (PyTorch).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use sd_resnet::loss::{self, LossKind};
use sd_resnet::optim::{Adam, AdamConfig, AdamKernel};
use sd_resnet::{Depth, Resnet, ResnetConfig, Stem};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

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
    let device = Device::Cpu;
    let model = Resnet::new(
        ResnetConfig {
            depth,
            stem,
            in_channels: 3,
            classes: 10,
        },
        0,
        &device,
    )?;
    // SD_BN=reference selects the composed BatchNorm, SD_CONV=reference candle's conv2d, for
    // comparison.
    model.use_reference_batch_norm(std::env::var("SD_BN").as_deref() == Ok("reference"));
    model.use_reference_convolutions(std::env::var("SD_CONV").as_deref() == Ok("reference"));
    let params = model.parameters().trainable();
    // SD_ADAM=reference selects the unfused Adam, for comparison.
    let kernel = match std::env::var("SD_ADAM").as_deref() {
        Ok("reference") => AdamKernel::Reference,
        _ => AdamKernel::Fused,
    };
    let mut adam = Adam::new(params.clone(), AdamConfig::default())?.with_kernel(kernel);
    let x = Tensor::randn(0f32, 1.0, (batch, 3, 32, 32), &device)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let mut one_hot = vec![0f32; batch * 10];
    for (i, &l) in labels.iter().enumerate() {
        one_hot[i * 10 + l as usize] = 1.0;
    }
    let one_hot = Tensor::from_vec(one_hot, (batch, 10), &device)?;
    // SD_PROFILE=1: after the timed steps, the mean wall time per step of the forward pass, the
    // backward pass, Adam, and each phase of this crate's kernels (sd_resnet::profile).
    let profile = std::env::var_os("SD_PROFILE").is_some();
    let mut phases = [0f64; 3];
    let mut step = |phases: &mut [f64; 3]| -> Result<f64, Box<dyn std::error::Error>> {
        let started = Instant::now();
        let logits = model.forward(&x, true)?;
        let total = (loss::distillation(LossKind::SoftmaxMse, &logits, &one_hot, None, 1.0)?
            + (loss::l2_norms(&params)? * 1e-4)?)?;
        let _ = total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let forward = started.elapsed().as_secs_f64();
        let grads = total.backward()?;
        let backward = started.elapsed().as_secs_f64() - forward;
        adam.step(&grads)?;
        let all = started.elapsed().as_secs_f64();
        for (total, part) in phases
            .iter_mut()
            .zip([forward, backward, all - forward - backward])
        {
            *total += part;
        }
        Ok(all)
    };
    step(&mut phases)?; // warm-up
    phases = [0.0; 3];
    sd_resnet::profile::enable(profile);
    let mut times = Vec::new();
    let budget = Instant::now();
    while times.len() < steps && (times.len() < 3 || budget.elapsed().as_secs_f64() < max_seconds) {
        times.push(step(&mut phases)?);
    }
    if profile {
        let n = times.len() as f64;
        for (name, total) in ["forward pass", "backward pass", "Adam"].iter().zip(phases) {
            eprintln!("{name:<28} {:8.1} ms/step", 1e3 * total / n);
        }
        for (name, time, calls) in sd_resnet::profile::take() {
            eprintln!(
                "  {name:<26} {:8.1} ms/step {:6.1} calls/step",
                1e3 * time.as_secs_f64() / n,
                calls as f64 / n
            );
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"impl\": \"sd-resnet (candle 0.11.1)\", \"resnet\": {layers}, \"stem\": \"{}\", \"batch\": {batch}, \"steps\": {}, \"median_s\": {median:.4}, \"images_per_s\": {:.2}, \"peak_rss_mib\": {:.0}, \"threads\": {}}}",
        if stem == Stem::Cifar {
            "cifar"
        } else {
            "imagenet"
        },
        times.len(),
        batch as f64 / median,
        peak_rss_mib(),
        rayon::current_num_threads()
    );
    Ok(())
}
