//! Named parameters and buffers, in torchvision's `state_dict` order, and their seeded
//! initialization.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::Result;

/// Whether the optimizer sees a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Learned by gradient descent (weights, biases, BN scale and shift).
    Trainable,
    /// State that is saved but never handed to the optimizer (BN running statistics).
    Buffer,
}

/// One named tensor.
#[derive(Debug, Clone)]
pub struct Param {
    /// torchvision's name, for example `layer1.0.conv1.weight`.
    pub name: String,
    /// The value; a `Var` so that training can update it in place.
    pub var: Var,
    /// Trainable or buffer.
    pub kind: ParamKind,
}

/// All tensors of a model, in registration order (torchvision's `state_dict` order).
#[derive(Debug, Clone, Default)]
pub struct Parameters {
    entries: Vec<Param>,
}

impl Parameters {
    pub(crate) fn push(&mut self, name: String, var: Var, kind: ParamKind) -> Var {
        self.entries.push(Param {
            name,
            var: var.clone(),
            kind,
        });
        var
    }

    /// Every tensor, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.entries.iter()
    }

    /// The tensors the optimizer updates.
    pub fn trainable(&self) -> Vec<Var> {
        self.entries
            .iter()
            .filter(|p| p.kind == ParamKind::Trainable)
            .map(|p| p.var.clone())
            .collect()
    }

    /// The number of trainable scalars (torchvision's
    /// `sum(p.numel() for p in model.parameters())`).
    pub fn trainable_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|p| p.kind == ParamKind::Trainable)
            .map(|p| p.var.elem_count())
            .sum()
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.entries.iter().find(|p| p.name == name)
    }
}

/// Seeded initializers, as torchvision's ResNet initializes its layers.
pub(crate) struct Init {
    rng: ChaCha8Rng,
    device: Device,
    dtype: DType,
}

impl Init {
    pub(crate) fn new(seed: u64, device: &Device, dtype: DType) -> Self {
        Init {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
            dtype,
        }
    }

    fn tensor(&self, values: Vec<f64>, shape: &[usize]) -> Result<Var> {
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(self.dtype)?
            .to_device(&self.device)?;
        Ok(Var::from_tensor(&t)?)
    }

    /// `kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`: N(0, 2 / fan_out),
    /// fan_out = out_channels x kernel height x kernel width.
    pub(crate) fn conv(&mut self, out: usize, input: usize, kernel: usize) -> Result<Var> {
        let std = (2.0 / (out * kernel * kernel) as f64).sqrt();
        let normal = Normal::new(0.0, std).expect("a positive std");
        let values = (0..out * input * kernel * kernel)
            .map(|_| normal.sample(&mut self.rng))
            .collect();
        self.tensor(values, &[out, input, kernel, kernel])
    }

    /// `nn.Linear`'s default: weight and bias uniform in `±1 / sqrt(fan_in)` (kaiming_uniform
    /// with a = sqrt(5) for the weight).
    pub(crate) fn linear(&mut self, out: usize, input: usize) -> Result<(Var, Var)> {
        let bound = 1.0 / (input as f64).sqrt();
        let uniform = Uniform::new_inclusive(-bound, bound).expect("a valid range");
        let weight = (0..out * input)
            .map(|_| uniform.sample(&mut self.rng))
            .collect();
        let bias = (0..out).map(|_| uniform.sample(&mut self.rng)).collect();
        Ok((
            self.tensor(weight, &[out, input])?,
            self.tensor(bias, &[out])?,
        ))
    }

    /// A constant tensor.
    pub(crate) fn constant(&self, value: f64, shape: &[usize]) -> Result<Var> {
        self.tensor(vec![value; shape.iter().product()], shape)
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }
}
