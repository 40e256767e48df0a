//! Measurements shared by the examples, `sd-cli bench` and the GPU script (bench/gpu/run.sh):
//! the time of one training step, and parity with torchvision's reference outputs.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use candle_nn::Optimizer;
use sd_resnet::loss::{self, LossKind};
use sd_resnet::optim::{Adam, AdamConfig, AdamKernel};
use sd_resnet::{Resnet, ResnetConfig, ResnetError};
use serde::Serialize;

use crate::error::{Result, TrainError};

/// What [`time_train_step`] measures.
#[derive(Debug, Clone)]
pub struct TrainStepBench {
    /// The network.
    pub model: ResnetConfig,
    /// Images per batch (random 32 x 32 images).
    pub batch: usize,
    /// Timed steps after one warm-up step (at least 3 are timed even past `max_seconds`).
    pub steps: usize,
    /// Stop timing after this many seconds.
    pub max_seconds: f64,
    /// Where to train.
    pub device: Device,
    /// Candle's composed BatchNorm and convolution instead of ours (CPU comparison).
    pub reference_kernels: (bool, bool),
    /// Adam's implementation.
    pub adam: AdamKernel,
    /// Switch on [`sd_resnet::profile`] for the timed steps (not the warm-up).
    pub profile: bool,
}

/// The result of [`time_train_step`]: one JSON object per case in the benchmark files.
#[derive(Debug, Clone, Serialize)]
pub struct TrainStepTiming {
    /// Always `sd-resnet (candle 0.11.1)`.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// 18, 34, 50.
    pub resnet: u32,
    /// `imagenet` or `cifar`.
    pub stem: String,
    /// Images per batch.
    pub batch: usize,
    /// `cpu` or `cuda`.
    pub device: String,
    /// Steps timed.
    pub steps: usize,
    /// Median seconds per step (forward, backward, Adam).
    pub median_s: f64,
    /// `batch / median_s`.
    pub images_per_s: f64,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Rayon threads (the CPU kernels' parallelism).
    pub threads: usize,
    /// Mean wall time per step of the forward pass, the backward pass and Adam, seconds.
    #[serde(skip)]
    pub phases: [f64; 3],
}

/// The process's peak resident memory (VmHWM) in MiB; NaN where `/proc` is missing.
pub fn peak_rss_mib() -> f64 {
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

/// Times one training step (forward, `MSE(softmax, onehot) + 1e-4 sum |p|_2`, backward, Adam)
/// on random images: the median of the timed steps after one warm-up step. On CUDA each step
/// ends with a device synchronisation, so the time is the GPU's, not the launch queue's.
pub fn time_train_step(bench: &TrainStepBench) -> Result<TrainStepTiming> {
    let device = &bench.device;
    let model = Resnet::seeded(bench.model, 0, device)?;
    model.use_reference_batch_norm(bench.reference_kernels.0);
    model.use_reference_convolutions(bench.reference_kernels.1);
    let params = model.parameters().trainable();
    let mut adam = Adam::new(params.clone(), AdamConfig::default())
        .map_err(ResnetError::from)?
        .with_kernel(bench.adam);
    let batch = bench.batch;
    let x = Tensor::randn(0f32, 1.0, (batch, bench.model.in_channels, 32, 32), device)?;
    let classes = bench.model.classes;
    let mut one_hot = vec![0f32; batch * classes];
    for i in 0..batch {
        one_hot[i * classes + i % classes] = 1.0;
    }
    let one_hot = Tensor::from_vec(one_hot, (batch, classes), device)?;
    let mut step = |phases: &mut [f64; 3]| -> Result<f64> {
        let started = Instant::now();
        let logits = model.forward_t(&x, true)?;
        let total = (loss::distillation(LossKind::SoftmaxMse, &logits, &one_hot, None, 1.0)?
            + (loss::l2_norms(&params)? * 1e-4)?)?;
        let _ = total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let forward = started.elapsed().as_secs_f64();
        let grads = total.backward()?;
        device.synchronize()?;
        let backward = started.elapsed().as_secs_f64() - forward;
        adam.step(&grads).map_err(ResnetError::from)?;
        device.synchronize()?;
        let all = started.elapsed().as_secs_f64();
        for (total, part) in phases
            .iter_mut()
            .zip([forward, backward, all - forward - backward])
        {
            *total += part;
        }
        Ok(all)
    };
    let mut phases = [0f64; 3];
    step(&mut phases)?; // warm-up
    phases = [0.0; 3];
    sd_resnet::profile::enable(bench.profile);
    let mut times = Vec::new();
    let budget = Instant::now();
    let max = Duration::from_secs_f64(bench.max_seconds.max(0.0));
    while times.len() < bench.steps.max(1) && (times.len() < 3 || budget.elapsed() < max) {
        times.push(step(&mut phases)?);
    }
    let n = times.len() as f64;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(TrainStepTiming {
        implementation: "sd-resnet (candle 0.11.1)".into(),
        resnet: bench.model.depth.layers(),
        stem: bench.model.stem.to_string(),
        batch,
        device: if device.is_cuda() { "cuda" } else { "cpu" }.into(),
        steps: times.len(),
        median_s: median,
        images_per_s: batch as f64 / median,
        peak_rss_mib: peak_rss_mib(),
        threads: rayon::current_num_threads(),
        phases: phases.map(|p| p / n),
    })
}

/// `max |ours - theirs| / max |theirs|`, in f64.
pub fn relative_difference(ours: &Tensor, theirs: &Tensor) -> Result<f64> {
    let ours = ours.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let theirs = theirs.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    if ours.dims() != theirs.dims() {
        return Err(TrainError::Shapes {
            ours: ours.dims().to_vec(),
            theirs: theirs.dims().to_vec(),
        });
    }
    let diff = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f64>()?;
    let scale = theirs.abs()?.max_all()?.to_scalar::<f64>()?;
    Ok(diff / scale.max(1e-30))
}

/// One forward and backward pass on a reference batch: what [`parity`] compares.
pub struct PassOutputs {
    /// Evaluation-mode logits.
    pub eval_logits: Tensor,
    /// Training-mode logits.
    pub train_logits: Tensor,
    /// `MSE(softmax(train logits), onehot)`, shape `[1]`.
    pub loss: Tensor,
    /// The loss's gradient with respect to the input.
    pub input_grad: Tensor,
    /// Its gradient with respect to every trainable tensor, by torchvision name.
    pub param_grads: Vec<(String, Tensor)>,
}

/// Runs [`PassOutputs`] of the network with `weights` (a torchvision `state_dict` as
/// safetensors) on `io["input"]` and `io["one_hot"]`, on `device` in `dtype`.
pub fn reference_pass(
    model: ResnetConfig,
    weights: &Path,
    io: &HashMap<String, Tensor>,
    device: &Device,
    dtype: DType,
) -> Result<PassOutputs> {
    let get = |name: &str| {
        io.get(name).ok_or_else(|| TrainError::MissingReference {
            path: weights.with_extension("io"),
            name: name.to_string(),
        })
    };
    let network = Resnet::new(model, sd_resnet::init::seeded(0, dtype, device))?;
    network.load(weights)?;
    let x = Var::from_tensor(&get("input")?.to_dtype(dtype)?.to_device(device)?)?;
    let one_hot = get("one_hot")?.to_dtype(dtype)?.to_device(device)?;
    let eval_logits = network.forward_t(x.as_tensor(), false)?;
    let train_logits = network.forward_t(x.as_tensor(), true)?;
    let loss =
        loss::distillation(LossKind::SoftmaxMse, &train_logits, &one_hot, None, 1.0)?.reshape(1)?;
    let grads = loss.backward()?;
    let input_grad = grads
        .get(x.as_tensor())
        .ok_or_else(|| TrainError::MissingReference {
            path: weights.to_path_buf(),
            name: "the input gradient".into(),
        })?
        .clone();
    let mut param_grads = Vec::new();
    for p in network.parameters().iter() {
        if let Some(g) = grads.get(p.var.as_tensor()) {
            param_grads.push((p.name.clone(), g.clone()));
        }
    }
    Ok(PassOutputs {
        eval_logits,
        train_logits,
        loss,
        input_grad,
        param_grads,
    })
}

/// One line of [`parity`]'s table.
#[derive(Debug, Clone, Serialize)]
pub struct ParityRow {
    /// What is compared, e.g. `eval logits`.
    pub what: String,
    /// Ours on the CPU in f32 against torchvision (f64 reference).
    pub cpu_vs_torchvision: f64,
    /// Ours on `device` in f32 against torchvision; `None` when `device` is the CPU.
    pub device_vs_torchvision: Option<f64>,
    /// Ours on `device` against ours on the CPU, both f32; `None` when `device` is the CPU.
    pub device_vs_cpu: Option<f64>,
}

/// Compares, for the weights and batch written by bench/torchvision_parity.py into `dir`
/// (`resnet<L>.safetensors`, `resnet<L>-io.safetensors`): our outputs and gradients in f32 on
/// the CPU and on `device` against torchvision's (f64), and `device` against the CPU for every
/// parameter gradient (the worst one is reported).
pub fn parity(dir: &Path, model: ResnetConfig, device: &Device) -> Result<Vec<ParityRow>> {
    let layers = model.depth.layers();
    let weights = dir.join(format!("resnet{layers}.safetensors"));
    let io_path = dir.join(format!("resnet{layers}-io.safetensors"));
    let io = candle_core::safetensors::load(&io_path, &Device::Cpu).map_err(|e| {
        ResnetError::CheckpointUnreadable {
            path: io_path.clone(),
            detail: format!("not a readable safetensors file: {e}"),
        }
    })?;
    let cpu = reference_pass(model, &weights, &io, &Device::Cpu, DType::F32)?;
    let other = if device.is_cpu() {
        None
    } else {
        Some(reference_pass(model, &weights, &io, device, DType::F32)?)
    };
    let reference = |name: &str| -> Result<&Tensor> {
        io.get(name).ok_or_else(|| TrainError::MissingReference {
            path: io_path.clone(),
            name: name.to_string(),
        })
    };
    let conv1 = |p: &PassOutputs| -> Result<Tensor> {
        p.param_grads
            .iter()
            .find(|(n, _)| n == "conv1.weight")
            .map(|(_, g)| g.clone())
            .ok_or_else(|| TrainError::MissingReference {
                path: weights.clone(),
                name: "the conv1.weight gradient".into(),
            })
    };
    let mut rows = Vec::new();
    type Pick = fn(&PassOutputs) -> Tensor;
    let pairs: [(&str, &str, Pick); 4] = [
        ("eval logits", "eval_logits", |p| p.eval_logits.clone()),
        ("train logits", "train_logits", |p| p.train_logits.clone()),
        ("loss", "loss", |p| p.loss.clone()),
        ("input gradient", "input_grad", |p| p.input_grad.clone()),
    ];
    for (what, key, pick) in pairs {
        let theirs = reference(key)?;
        rows.push(ParityRow {
            what: what.into(),
            cpu_vs_torchvision: relative_difference(&pick(&cpu), theirs)?,
            device_vs_torchvision: match &other {
                Some(o) => Some(relative_difference(&pick(o), theirs)?),
                None => None,
            },
            device_vs_cpu: match &other {
                Some(o) => Some(relative_difference(&pick(o), &pick(&cpu))?),
                None => None,
            },
        });
    }
    let theirs = reference("conv1_grad")?;
    rows.push(ParityRow {
        what: "conv1.weight gradient".into(),
        cpu_vs_torchvision: relative_difference(&conv1(&cpu)?, theirs)?,
        device_vs_torchvision: match &other {
            Some(o) => Some(relative_difference(&conv1(o)?, theirs)?),
            None => None,
        },
        device_vs_cpu: match &other {
            Some(o) => Some(relative_difference(&conv1(o)?, &conv1(&cpu)?)?),
            None => None,
        },
    });
    if let Some(o) = &other {
        let mut worst: Option<(String, f64)> = None;
        for ((name, ours), (_, base)) in o.param_grads.iter().zip(&cpu.param_grads) {
            let d = relative_difference(ours, base)?;
            if worst.as_ref().is_none_or(|(_, w)| d > *w) {
                worst = Some((name.clone(), d));
            }
        }
        if let Some((name, d)) = worst {
            rows.push(ParityRow {
                what: format!("worst parameter gradient ({name})"),
                cpu_vs_torchvision: f64::NAN,
                device_vs_torchvision: None,
                device_vs_cpu: Some(d),
            });
        }
    }
    Ok(rows)
}
