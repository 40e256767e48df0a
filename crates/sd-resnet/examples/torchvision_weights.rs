//! A candle-nn program with torchvision's weights: a ResNet built from a `VarBuilder` over the
//! `state_dict` that `bench/torchvision_parity.py` saves with `safetensors.torch`, its logits
//! next to torchvision's, then a few Adam steps through `candle_nn::Optimizer`.
//!
//! ```sh
//! python bench/torchvision_parity.py --depth 18 --out target/parity      # torch, torchvision
//! cargo run --release -p sd-resnet --example torchvision_weights -- target/parity 18
//! ```
//!
//! Exits with status 1 when the evaluation logits differ from torchvision's by more than 1e-4
//! (largest difference over the largest logit).

use candle_core::{DType, Device, ModuleT};
use candle_nn::{Optimizer, VarBuilder};
use sd_resnet::loss::{self, LossKind};
use sd_resnet::optim::{Adam, AdamConfig};
use sd_resnet::{Depth, Resnet, ResnetConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("target/parity", String::as_str));
    let depth: Depth = args.get(2).map_or("18", String::as_str).parse()?;
    let device = Device::Cpu;

    let weights = std::fs::read(dir.join(format!("resnet{depth}.safetensors")))?;
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
    let model = Resnet::new(ResnetConfig::cifar10(depth), vb)?;

    let io =
        candle_core::safetensors::load(dir.join(format!("resnet{depth}-io.safetensors")), &device)?;
    let (x, one_hot) = (&io["input"], &io["one_hot"]);
    let ours = model.forward_t(x, false)?.to_dtype(DType::F64)?;
    let theirs = &io["eval_logits"];
    let difference = (&ours - theirs)?.abs()?.max_all()?.to_scalar::<f64>()?
        / theirs.abs()?.max_all()?.to_scalar::<f64>()?;
    println!(
        "{}: evaluation logits against torchvision's: {difference:.2e} (relative)",
        depth.name()
    );

    let mut adam = Adam::new(model.parameters().trainable(), AdamConfig::default())?;
    for step in 1..=3 {
        let logits = model.forward_t(x, true)?;
        let loss = loss::against(LossKind::SoftmaxMse, &logits, one_hot)?;
        println!("step {step}: loss {:.6}", loss.to_scalar::<f32>()?);
        adam.backward_step(&loss)?;
    }
    if difference > 1e-4 {
        eprintln!("parity failed: {difference:.2e} > 1e-4");
        std::process::exit(1);
    }
    Ok(())
}
