//! Adam (Kingma & Ba 2015) as `torch.optim.Adam` with no weight decay.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{ResnetError, Result};

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

/// Adam over a fixed list of tensors.
///
/// With `g` the gradient at step `t`: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
/// `p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`. A tensor without a gradient
/// is left alone (its moments too), as in PyTorch.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    params: Vec<Var>,
    moments: Vec<Option<(Tensor, Tensor)>>,
    step: i32,
}

impl Adam {
    /// An optimizer for `params`.
    pub fn new(params: Vec<Var>, config: AdamConfig) -> Result<Self> {
        if !(config.lr > 0.0 && config.lr.is_finite()) {
            return Err(ResnetError::InvalidConfig(format!(
                "the learning rate must be finite and > 0, got {}",
                config.lr
            )));
        }
        let moments = vec![None; params.len()];
        Ok(Adam {
            config,
            params,
            moments,
            step: 0,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> i32 {
        self.step
    }

    /// One update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
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
            let grad = grad.detach();
            let grad = &grad;
            let (m, v) = match moments.take() {
                Some((m, v)) => (
                    ((m * beta1)? + (grad * (1.0 - beta1))?)?,
                    ((v * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?,
                ),
                None => ((grad * (1.0 - beta1))?, (grad.sqr()? * (1.0 - beta2))?),
            };
            let update = ((&m * (lr / bias1))? / ((&v * (1.0 / bias2))?.sqrt()? + eps)?)?;
            var.set(&(var.as_tensor() - update)?.detach())?;
            *moments = Some((m.detach(), v.detach()));
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
        let p = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut adam = Adam::new(
            vec![p.clone()],
            AdamConfig {
                lr: 0.1,
                ..AdamConfig::default()
            },
        )
        .unwrap();
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
            assert!((got[i] - x[i]).abs() < 1e-12, "{got:?} vs {x:?}");
        }
        assert_eq!(adam.steps(), 3);
        // candle's gradients carry their computation graph; moments kept from them must not,
        // or every step keeps the previous steps' graphs alive (memory grows, steps slow down).
        for (m, v) in adam.moments.iter().flatten() {
            assert!(!m.track_op() && !v.track_op());
        }
    }
}
