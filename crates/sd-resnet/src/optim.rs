//! Adam (Kingma & Ba 2015) as `torch.optim.Adam` with no weight decay, behind candle-nn's
//! [`Optimizer`] trait.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor, Var};
use candle_nn::Optimizer;
use rayon::prelude::*;

use crate::error::ResnetError;

/// Adam's hyperparameters; the defaults are PyTorch's and the original code's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// First-moment decay (0.9).
    pub beta1: f64,
    /// Second-moment decay (0.999).
    pub beta2: f64,
    /// Added to the denominator (1e-8).
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// How the update is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdamKernel {
    /// One pass per tensor, in place, over the CPU tensor's storage, moments kept beside it: no
    /// temporary tensors (the default; tensors on other devices take the reference path).
    #[default]
    Fused,
    /// The same formula from candle tensor operations (about ten temporaries per tensor).
    Reference,
}

/// Adam's moments of one tensor.
#[derive(Debug)]
enum Moments {
    /// Kept as candle tensors (reference kernel, or a tensor not on the CPU).
    Tensors(Tensor, Tensor),
    /// Kept beside the tensor for the fused kernel.
    F32(Vec<f32>, Vec<f32>),
    /// The same, for f64 tensors.
    F64(Vec<f64>, Vec<f64>),
}

/// Adam over a fixed list of tensors, a [`candle_nn::Optimizer`]: build it with
/// `Optimizer::new(vars, AdamConfig { lr, ..Default::default() })`, step it with
/// `Optimizer::step(&grads)` or `Optimizer::backward_step(&loss)`.
///
/// With `g` the gradient at step `t`: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
/// `p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`. A tensor without a gradient
/// is left alone (its moments too), as in PyTorch, so BatchNorm's running statistics, which never
/// get one, can be in the list. `Optimizer::new` refuses a learning rate that is not finite and
/// above 0 ([`ResnetError::LearningRate`], wrapped in candle's error).
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use candle_nn::Optimizer;
/// use sd_resnet::optim::{Adam, AdamConfig};
///
/// let x = Var::new(&[3f64, -2.0], &Device::Cpu)?;
/// let mut adam = Adam::new(vec![x.clone()], AdamConfig { lr: 0.1, ..AdamConfig::default() })?;
/// adam.backward_step(&x.as_tensor().sqr()?.sum_all()?)?; // the first step moves each by ~lr
/// let moved = x.as_tensor().to_vec1::<f64>()?;
/// assert!((moved[0] - 2.9).abs() < 1e-8 && (moved[1] + 1.9).abs() < 1e-8);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    params: Vec<Var>,
    moments: Vec<Option<Moments>>,
    step: i32,
    kernel: AdamKernel,
}

impl Adam {
    /// Chooses the kernel (the fused one by default).
    pub fn with_kernel(mut self, kernel: AdamKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// Steps taken.
    pub fn steps(&self) -> i32 {
        self.step
    }

    /// Its hyperparameters.
    pub fn config(&self) -> AdamConfig {
        self.config
    }
}

impl Optimizer for Adam {
    type Config = AdamConfig;

    /// An optimizer for `vars`.
    fn new(vars: Vec<Var>, config: AdamConfig) -> candle_core::Result<Self> {
        if !(config.lr > 0.0 && config.lr.is_finite()) {
            return Err(ResnetError::LearningRate { lr: config.lr }.into());
        }
        let moments = vars.iter().map(|_| None).collect();
        Ok(Adam {
            config,
            params: vars,
            moments,
            step: 0,
            kernel: AdamKernel::Fused,
        })
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// One update from `grads`.
    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
        } = self.config;
        let bias1 = 1.0 - beta1.powi(self.step);
        let bias2 = 1.0 - beta2.powi(self.step);
        for (var, moments) in self.params.iter().zip(self.moments.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            // candle's gradients carry their computation graph: nothing kept may refer to it.
            let grad = grad.detach();
            let fused = self.kernel == AdamKernel::Fused
                && var.device().is_cpu()
                && matches!(
                    var.dtype(),
                    candle_core::DType::F32 | candle_core::DType::F64
                );
            if fused {
                if moments.is_none() {
                    let n = var.elem_count();
                    // Zeros written, not `vec![0.0; n]`: a calloc'd buffer's pages are first
                    // read (the shared zero page), then copied on the first write, each with a
                    // TLB shootdown across threads (0.4 s at a ResNet-18's first step).
                    fn zeros<T: Copy + Default>(n: usize) -> Vec<T> {
                        std::iter::repeat_n(T::default(), n).collect()
                    }
                    *moments = Some(match var.dtype() {
                        candle_core::DType::F32 => Moments::F32(zeros(n), zeros(n)),
                        _ => Moments::F64(zeros(n), zeros(n)),
                    });
                }
                let op = FusedStep {
                    moments: RefCell::new(moments.as_mut().expect("set above")),
                    beta1,
                    beta2,
                    step_size: lr / bias1,
                    inv_bias2: 1.0 / bias2,
                    eps,
                };
                var.as_tensor()
                    .inplace_op2(&grad.to_dtype(var.dtype())?.contiguous()?, &op)?;
                continue;
            }
            let grad = &grad;
            let (m, v) = match moments.take() {
                Some(Moments::Tensors(m, v)) => (
                    ((m * beta1)? + (grad * (1.0 - beta1))?)?,
                    ((v * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?,
                ),
                _ => ((grad * (1.0 - beta1))?, (grad.sqr()? * (1.0 - beta2))?),
            };
            let update = ((&m * (lr / bias1))? / ((&v * (1.0 / bias2))?.sqrt()? + eps)?)?;
            var.set(&(var.as_tensor() - update)?.detach())?;
            *moments = Some(Moments::Tensors(m.detach(), v.detach()));
        }
        Ok(())
    }
}

/// One Adam update of a CPU tensor in place: `(parameter, gradient)`, moments beside.
struct FusedStep<'a> {
    moments: RefCell<&'a mut Moments>,
    beta1: f64,
    beta2: f64,
    step_size: f64,
    inv_bias2: f64,
    eps: f64,
}

/// Elements per parallel chunk: large tensors are updated on all threads.
const CHUNK: usize = 1 << 16;

macro_rules! fused_update {
    ($t:ty, $p:expr, $g:expr, $m:expr, $v:expr, $op:expr) => {{
        // 1 - beta in f64, then rounded, as the reference kernel's scalar multipliers are (in
        // f32, 1 - 0.999 would lose four digits to cancellation).
        let (b1, b2) = ($op.beta1 as $t, $op.beta2 as $t);
        let (c1, c2) = ((1.0 - $op.beta1) as $t, (1.0 - $op.beta2) as $t);
        let (step_size, inv_bias2, eps) = ($op.step_size as $t, $op.inv_bias2 as $t, $op.eps as $t);
        let constants = [b1, b2, c1, c2, step_size, inv_bias2, eps];
        /// One chunk, a function of values so that it vectorizes under `wide`.
        #[inline(always)]
        fn update(p: &mut [$t], g: &[$t], m: &mut [$t], v: &mut [$t], constants: [$t; 7]) {
            let [b1, b2, c1, c2, step_size, inv_bias2, eps] = constants;
            let values = p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
            for (((p, &g), m), v) in values {
                // The reference kernel's operations, in its order.
                *m = *m * b1 + g * c1;
                *v = *v * b2 + g * g * c2;
                *p -= (*m * step_size) / ((*v * inv_bias2).sqrt() + eps);
            }
        }
        $p.par_chunks_mut(CHUNK)
            .zip($g.par_chunks(CHUNK))
            .zip($m.par_chunks_mut(CHUNK))
            .zip($v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                crate::cpu::wide(
                    #[inline(always)]
                    move || update(p, g, m, v, constants),
                )
            });
    }};
}

impl InplaceOp2 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "sd-adam-step"
    }

    fn cpu_fwd(
        &self,
        param: &mut CpuStorage,
        param_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((p0, p1)), Some((g0, g1))) = (
            param_layout.contiguous_offsets(),
            grad_layout.contiguous_offsets(),
        ) else {
            candle_core::bail!("the fused Adam step needs contiguous tensors")
        };
        let mut moments = self.moments.borrow_mut();
        match (param, grad, &mut **moments) {
            (CpuStorage::F32(p), CpuStorage::F32(g), Moments::F32(m, v)) => {
                fused_update!(f32, p[p0..p1], g[g0..g1], m, v, self)
            }
            (CpuStorage::F64(p), CpuStorage::F64(g), Moments::F64(m, v)) => {
                fused_update!(f64, p[p0..p1], g[g0..g1], m, v, self)
            }
            _ => candle_core::bail!("the fused Adam step got mismatched dtypes"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_the_formula_over_three_steps() {
        for kernel in [AdamKernel::Fused, AdamKernel::Reference] {
            formula_over_three_steps(kernel);
        }
    }

    fn formula_over_three_steps(kernel: AdamKernel) {
        let p = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut adam = Adam::new(
            vec![p.clone()],
            AdamConfig {
                lr: 0.1,
                ..AdamConfig::default()
            },
        )
        .unwrap()
        .with_kernel(kernel);
        // Loss sum(p^3): gradient 3 p^2; reference by hand in f64.
        let (mut x, mut m, mut v) = ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2]);
        for t in 1..=3 {
            let grads = p
                .as_tensor()
                .powf(3.0)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            adam.step(&grads).unwrap();
            for i in 0..2 {
                let g = 3.0 * x[i] * x[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mhat = m[i] / (1.0 - 0.9f64.powi(t));
                let vhat = v[i] / (1.0 - 0.999f64.powi(t));
                x[i] -= 0.1 * mhat / (vhat.sqrt() + 1e-8);
            }
        }
        let got = p.as_tensor().to_vec1::<f64>().unwrap();
        for i in 0..2 {
            assert!(
                (got[i] - x[i]).abs() < 1e-12,
                "{kernel:?}: {got:?} vs {x:?}"
            );
        }
        assert_eq!(adam.steps(), 3);
        // candle's gradients carry their computation graph; moments kept from them must not,
        // or every step keeps the previous steps' graphs alive (memory grows, steps slow down).
        for moments in adam.moments.iter().flatten() {
            if let Moments::Tensors(m, v) = moments {
                assert!(!m.track_op() && !v.track_op());
            }
        }
    }
}
