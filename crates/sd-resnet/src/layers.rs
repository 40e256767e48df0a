//! Convolution, batch normalization and the linear head, built from a [`VarBuilder`] under
//! torchvision's names, each a candle [`Module`] or [`ModuleT`].

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use candle_core::{D, DType, Module, ModuleT, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use crate::conv::{Conv2dConfig, conv2d, conv2d_reference};
use crate::error::Result;
use crate::params::{ParamKind, Parameters};

/// A tensor of `vb` as a [`Var`] this layer can update in place: the builder's own variable
/// when it made one (a `VarMap`, [`crate::init::seeded`]), so training updates what the builder
/// holds; a copy of a constant (weights read from a file), so those are trainable too.
fn variable(
    vb: &VarBuilder<'_>,
    shape: impl Into<candle_core::Shape>,
    name: &str,
    init: Init,
) -> Result<Var> {
    Ok(Var::from_tensor(&vb.get_with_hints(shape, name, init)?)?)
}

/// A bias-free 2-D convolution (all of ResNet's are): `nn.Conv2d(input, out, kernel, stride,
/// padding, bias=False)`, its weight `[out, input, kernel, kernel]` named `weight`.
#[derive(Debug)]
pub struct Conv2d {
    weight: Var,
    params: Conv2dConfig,
    reference: AtomicBool,
}

impl Conv2d {
    /// Takes `weight` from `vb`; where `vb` creates it, as torchvision's ResNet initializes it
    /// ([`crate::init::CONV`]: Kaiming normal, fan_out).
    pub fn new(
        vb: VarBuilder<'_>,
        input: usize,
        out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let weight = variable(
            &vb,
            (out, input, kernel, kernel),
            "weight",
            crate::init::CONV,
        )?;
        Ok(Conv2d {
            weight,
            params: Conv2dConfig { stride, padding },
            reference: AtomicBool::new(false),
        })
    }

    /// The weight, `[out, input, kernel, kernel]`.
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// `[N, C_in, H, W] -> [N, C_out, H', W']`, through [`crate::conv::conv2d`] (im2col + GEMM
    /// with its own backward) or, when [`Conv2d::set_reference`] asked for it, candle's `conv2d`.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if self.reference.load(Ordering::Relaxed) {
            conv2d_reference(x, self.weight.as_tensor(), self.params)
        } else {
            conv2d(x, self.weight.as_tensor(), self.params)
        }
    }

    /// Chooses candle's `conv2d` (`true`) or this crate's op (`false`, the default).
    pub fn set_reference(&self, reference: bool) {
        self.reference.store(reference, Ordering::Relaxed);
    }

    pub(crate) fn register(&self, prefix: &str, params: &mut Parameters) {
        params.push(
            format!("{prefix}.weight"),
            &self.weight,
            ParamKind::Trainable,
        );
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.apply(x)?)
    }
}

/// `nn.BatchNorm2d(C)` with torchvision's defaults: momentum 0.1, eps 1e-5, affine.
///
/// Training: normalizes with the batch mean and biased variance over `(N, H, W)`, and updates
/// `running_mean <- 0.9 running_mean + 0.1 mean` and `running_var <- 0.9 running_var + 0.1
/// var_unbiased` (variance with `n - 1`, `n = N H W`), `num_batches_tracked += 1`, all outside
/// the gradient. Evaluation: normalizes with the running statistics.
///
/// Its tensors are `weight` and `bias` (trainable; 1 and 0 where the builder creates them), and
/// the buffers `running_mean`, `running_var` (0 and 1) and `num_batches_tracked` (an `i64`
/// scalar, 0; taken as 0 when a file lacks it, as PyTorch does for old checkpoints).
#[derive(Debug)]
pub struct BatchNorm2d {
    weight: Var,
    bias: Var,
    running_mean: Var,
    running_var: Var,
    num_batches_tracked: Var,
    batches: AtomicI64,
    reference: AtomicBool,
}

/// PyTorch's default BatchNorm momentum.
pub const BN_MOMENTUM: f64 = 0.1;
/// PyTorch's default BatchNorm epsilon.
pub const BN_EPS: f64 = 1e-5;

impl BatchNorm2d {
    /// Takes its tensors from `vb` (see the type's documentation).
    pub fn new(vb: VarBuilder<'_>, channels: usize) -> Result<Self> {
        let weight = variable(&vb, channels, "weight", Init::Const(1.0))?;
        let bias = variable(&vb, channels, "bias", Init::Const(0.0))?;
        let running_mean = variable(&vb, channels, "running_mean", Init::Const(0.0))?;
        let running_var = variable(&vb, channels, "running_var", Init::Const(1.0))?;
        let tracked = match vb.get_with_hints_dtype(
            (),
            "num_batches_tracked",
            Init::Const(0.0),
            DType::I64,
        ) {
            Ok(tensor) => tensor,
            Err(_)
                if !vb.contains_tensor("num_batches_tracked")
                    && vb.contains_tensor("running_mean") =>
            {
                Tensor::zeros((), DType::I64, vb.device())?
            }
            Err(e) => return Err(e.into()),
        };
        let num_batches_tracked = Var::from_tensor(&tracked)?;
        let batches = AtomicI64::new(num_batches_tracked.as_tensor().to_scalar::<i64>()?);
        Ok(BatchNorm2d {
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
            batches,
            reference: AtomicBool::new(false),
        })
    }

    /// The scale `gamma`, `[C]`.
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// The shift `beta`, `[C]`.
    pub fn bias(&self) -> &Var {
        &self.bias
    }

    /// The running mean, `[C]` (a buffer).
    pub fn running_mean(&self) -> &Var {
        &self.running_mean
    }

    /// The running (unbiased) variance, `[C]` (a buffer).
    pub fn running_var(&self) -> &Var {
        &self.running_var
    }

    pub(crate) fn register(&self, prefix: &str, params: &mut Parameters) {
        let buffers = [
            ("weight", &self.weight, ParamKind::Trainable),
            ("bias", &self.bias, ParamKind::Trainable),
            ("running_mean", &self.running_mean, ParamKind::Buffer),
            ("running_var", &self.running_var, ParamKind::Buffer),
            (
                "num_batches_tracked",
                &self.num_batches_tracked,
                ParamKind::Buffer,
            ),
        ];
        for (leaf, var, kind) in buffers {
            params.push(format!("{prefix}.{leaf}"), var, kind);
        }
    }

    /// Normalizes `[N, C, H, W]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if self.fused(x, train) {
            return self.forward_fused(x, false);
        }
        if self.fused_kernels(x) {
            return self.forward_fused_eval(x, false);
        }
        self.forward_composed(x, train)
    }

    /// `relu(self.forward(x, train) + shortcut)`, the end of a ResNet block. In training on the
    /// CPU it is one op (the private `batchnorm::FusedBatchNormAddRelu`), the shortcut's own
    /// BatchNorm included, so that neither normalized tensor is made nor kept for the backward
    /// pass.
    pub fn forward_add_relu(
        &self,
        x: &Tensor,
        shortcut: Shortcut<'_>,
        train: bool,
    ) -> Result<Tensor> {
        let (residual, residual_bn) = match shortcut {
            Shortcut::Identity(t) => (t, None),
            Shortcut::Downsample(t, bn) => (t, Some(bn)),
        };
        let fused = self.fused(x, train)
            && residual_bn.is_none_or(|bn| bn.fused(residual, train))
            && residual.device().is_cpu()
            && residual.dtype() == DType::F32
            && residual.dims() == x.dims();
        if !fused {
            let residual = match residual_bn {
                Some(bn) => bn.forward(residual, train)?,
                None => residual.clone(),
            };
            return add_relu(&self.forward(x, train)?, &residual);
        }
        let mut params = vec![self.weight.as_tensor(), self.bias.as_tensor()];
        if let Some(bn) = residual_bn {
            params.extend([bn.weight.as_tensor(), bn.bias.as_tensor()]);
        }
        let params = Tensor::cat(&params, 0)?;
        let statistics = crate::batchnorm::Statistics::default();
        let residual_statistics = residual_bn.map(|_| crate::batchnorm::Statistics::default());
        let op = crate::batchnorm::FusedBatchNormAddRelu {
            eps: BN_EPS,
            statistics: statistics.clone(),
            residual_statistics: residual_statistics.clone(),
        };
        let y = x
            .contiguous()?
            .apply_op3(&residual.contiguous()?, &params, op)?;
        self.update_running_statistics(x, &statistics)?;
        if let (Some(bn), Some(statistics)) = (residual_bn, residual_statistics) {
            bn.update_running_statistics(residual, &statistics)?;
        }
        Ok(y)
    }

    /// `relu(self.forward(x, train))`; in training on the CPU as one op with the normalization.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if self.fused(x, train) {
            return self.forward_fused(x, true);
        }
        if self.fused_kernels(x) {
            return self.forward_fused_eval(x, true);
        }
        Ok(self.forward_composed(x, train)?.relu()?)
    }

    /// Whether `x` takes this crate's fused kernels: f32 on the CPU, unless the reference
    /// composition was chosen.
    fn fused_kernels(&self, x: &Tensor) -> bool {
        !self.reference.load(Ordering::Relaxed) && x.device().is_cpu() && x.dtype() == DType::F32
    }

    /// Whether `x` takes the fused training-mode op.
    fn fused(&self, x: &Tensor, train: bool) -> bool {
        train && self.fused_kernels(x)
    }

    /// Evaluation mode through the fused op ([`crate::batchnorm`]), the running statistics as
    /// constants.
    fn forward_fused_eval(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let op = crate::batchnorm::FusedBatchNormEval {
            eps: BN_EPS,
            mean: self.running_mean.to_dtype(DType::F64)?.to_vec1()?,
            var: self.running_var.to_dtype(DType::F64)?.to_vec1()?,
            relu,
        };
        Ok(x.contiguous()?
            .apply_op3(self.weight.as_tensor(), self.bias.as_tensor(), op)?)
    }

    /// The composition of candle ops (evaluation mode, other devices, the reference).
    fn forward_composed(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let channels = self.weight.dim(0)?;
        let per_channel = |t: &Tensor| t.reshape((1, channels, 1, 1));
        let (mean, var) = if train {
            let (n, _, h, w) = x.dims4()?;
            let count = n * h * w;
            // Mean and biased variance over (N, H, W), per channel.
            let flat = x.transpose(0, 1)?.reshape((channels, count))?;
            let mean = flat.mean_keepdim(D::Minus1)?;
            let centred = flat.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
            let (mean, var) = (mean.flatten_all()?, var.flatten_all()?);
            let m = BN_MOMENTUM;
            let unbiased = if count > 1 {
                (var.detach() * (count as f64 / (count - 1) as f64))?
            } else {
                var.detach()
            };
            let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach() * m)?)?;
            let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
            self.running_mean
                .set(&rm.to_dtype(self.running_mean.dtype())?)?;
            self.running_var
                .set(&rv.to_dtype(self.running_var.dtype())?)?;
            let tracked = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
            self.num_batches_tracked.set(
                &Tensor::new(tracked, &candle_core::Device::Cpu)?
                    .to_device(self.num_batches_tracked.device())?,
            )?;
            (mean, var)
        } else {
            (
                self.running_mean.as_tensor().clone(),
                self.running_var.as_tensor().clone(),
            )
        };
        let scale = (self.weight.as_tensor() / (var + BN_EPS)?.sqrt()?)?;
        let shift = (self.bias.as_tensor() - (&mean * &scale)?)?;
        Ok(x.broadcast_mul(&per_channel(&scale)?)?
            .broadcast_add(&per_channel(&shift)?)?)
    }

    /// Training mode through the fused op ([`crate::batchnorm`]); same running-statistics update.
    fn forward_fused(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let statistics = crate::batchnorm::Statistics::default();
        let op = crate::batchnorm::FusedBatchNorm {
            eps: BN_EPS,
            statistics: statistics.clone(),
            relu,
        };
        let y = x
            .contiguous()?
            .apply_op3(self.weight.as_tensor(), self.bias.as_tensor(), op)?;
        self.update_running_statistics(x, &statistics)?;
        Ok(y)
    }

    /// Moves the running statistics towards the batch statistics a fused op recorded, as
    /// `torch.nn.BatchNorm2d` does (the variance with Bessel's correction), and counts the batch.
    fn update_running_statistics(
        &self,
        x: &Tensor,
        statistics: &crate::batchnorm::Statistics,
    ) -> Result<()> {
        let (mean, var) = statistics
            .lock()
            .expect("statistics lock")
            .clone()
            .expect("the forward pass records its statistics");
        let (n, _, h, w) = x.dims4()?;
        let count = (n * h * w) as f64;
        let correction = if count > 1.0 {
            count / (count - 1.0)
        } else {
            1.0
        };
        let m = BN_MOMENTUM;
        let rm: Vec<f64> = self.running_mean.to_dtype(DType::F64)?.to_vec1()?;
        let rv: Vec<f64> = self.running_var.to_dtype(DType::F64)?.to_vec1()?;
        let rm: Vec<f64> = rm
            .iter()
            .zip(&mean)
            .map(|(r, v)| (1.0 - m) * r + m * v)
            .collect();
        let rv: Vec<f64> = rv
            .iter()
            .zip(&var)
            .map(|(r, v)| (1.0 - m) * r + m * v * correction)
            .collect();
        let channels = rm.len();
        let device = self.running_mean.device();
        self.running_mean
            .set(&Tensor::from_vec(rm, channels, device)?.to_dtype(self.running_mean.dtype())?)?;
        self.running_var
            .set(&Tensor::from_vec(rv, channels, device)?.to_dtype(self.running_var.dtype())?)?;
        let tracked = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        self.num_batches_tracked
            .set(&Tensor::new(tracked, &candle_core::Device::Cpu)?.to_device(device)?)?;
        Ok(())
    }

    /// Chooses the reference composition of candle ops (`true`) or the fused op (`false`, the
    /// default) for training mode.
    pub fn set_reference(&self, reference: bool) {
        self.reference.store(reference, Ordering::Relaxed);
    }

    /// Takes the batch count from a loaded `num_batches_tracked`.
    pub(crate) fn sync_batches_tracked(&self) -> Result<()> {
        let value = self
            .num_batches_tracked
            .as_tensor()
            .to_dtype(DType::I64)?
            .to_scalar::<i64>()?;
        self.batches.store(value, Ordering::Relaxed);
        Ok(())
    }
}

/// What a ResNet block adds to its main path before the last ReLU
/// ([`BatchNorm2d::forward_add_relu`]).
#[derive(Debug, Clone, Copy)]
pub enum Shortcut<'a> {
    /// The block's input as it is.
    Identity(&'a Tensor),
    /// The downsampling convolution's output, to go through its BatchNorm first.
    Downsample(&'a Tensor, &'a BatchNorm2d),
}

/// `nn.Linear(in, out)`: `x W^T + b`, with `weight` `[out, in]` and `bias` `[out]`.
#[derive(Debug)]
pub struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    /// Takes `weight` and `bias` from `vb`; where `vb` creates them, uniform in
    /// `±1 / sqrt(in)` as `nn.Linear` initializes ([`crate::init::linear`]).
    pub fn new(vb: VarBuilder<'_>, input: usize, out: usize) -> Result<Self> {
        let init = crate::init::linear(input);
        Ok(Linear {
            weight: variable(&vb, (out, input), "weight", init)?,
            bias: variable(&vb, out, "bias", init)?,
        })
    }

    pub(crate) fn register(&self, prefix: &str, params: &mut Parameters) {
        params.push(
            format!("{prefix}.weight"),
            &self.weight,
            ParamKind::Trainable,
        );
        params.push(format!("{prefix}.bias"), &self.bias, ParamKind::Trainable);
    }
}

impl Module for Linear {
    /// `[N, in] -> [N, out]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())
    }
}

impl ModuleT for BatchNorm2d {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(self.forward(x, train)?)
    }
}

/// `relu(a + b)`, the end of every residual block: on the CPU (f32, same shapes, contiguous) one
/// op forward and one backward (the output gradient masked by `output > 0`, the same for both
/// inputs); elsewhere the composition of candle ops.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let fast = a.device().is_cpu()
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && a.dims() == b.dims();
    if fast {
        Ok(a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)?)
    } else {
        Ok((a + b)?.relu()?)
    }
}

struct AddRelu;

fn contiguous_f32<'a>(
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
) -> candle_core::Result<&'a [f32]> {
    crate::cpu::f32_slice(storage, layout, "add_relu")
}

impl candle_core::CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "sd-add-relu"
    }

    fn cpu_fwd(
        &self,
        a: &candle_core::CpuStorage,
        al: &candle_core::Layout,
        b: &candle_core::CpuStorage,
        bl: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (a, b) = (contiguous_f32(a, al)?, contiguous_f32(b, bl)?);
        const CHUNK: usize = 1 << 16;
        let out = crate::cpu::filled(a.len(), CHUNK, |i, out| {
            let (a, b) = (&a[i * CHUNK..], &b[i * CHUNK..]);
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = (a + b).max(0.0);
            }
        });
        Ok((candle_core::CpuStorage::F32(out), al.shape().clone()))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let masked = {
            let (os, ol) = out.storage_and_layout();
            let (gs, gl) = grad.storage_and_layout();
            let (candle_core::Storage::Cpu(os), candle_core::Storage::Cpu(gs)) = (&*os, &*gs)
            else {
                candle_core::bail!("add_relu runs on the CPU only")
            };
            let (o, g) = (contiguous_f32(os, ol)?, contiguous_f32(gs, gl)?);
            const CHUNK: usize = 1 << 16;
            crate::cpu::filled(o.len(), CHUNK, |i, m| {
                let (o, g) = (&o[i * CHUNK..], &g[i * CHUNK..]);
                for ((m, &o), &g) in m.iter_mut().zip(o).zip(g) {
                    *m = if o > 0.0 { g } else { 0.0 };
                }
            })
        };
        let masked = Tensor::from_vec(masked, out.shape(), out.device())?;
        Ok((Some(masked.clone()), Some(masked)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn add_relu_equals_the_composition_with_gradients() {
        let device = Device::Cpu;
        let values = |seed: f32| -> Vec<f32> {
            (0..2 * 3 * 5 * 4)
                .map(|i| (i as f32 * 0.61 + seed).sin() * 2.0)
                .collect()
        };
        let a = Var::from_tensor(&Tensor::from_vec(values(0.3), (2, 3, 5, 4), &device).unwrap())
            .unwrap();
        let b = Var::from_tensor(&Tensor::from_vec(values(1.1), (2, 3, 5, 4), &device).unwrap())
            .unwrap();
        let probe = Tensor::from_vec(values(2.9), (2, 3, 5, 4), &device).unwrap();
        let fused = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
        let composed = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&fused), flat(&composed));
        let g1 = (fused * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (composed * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&a, &b] {
            let (x, y) = (
                flat(g1.get(v.as_tensor()).unwrap()),
                flat(g2.get(v.as_tensor()).unwrap()),
            );
            assert_eq!(x, y);
            assert!(x.contains(&0.0) && x.iter().any(|&g| g != 0.0));
        }
    }
}
