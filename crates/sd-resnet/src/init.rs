//! Seeded initialization as a [`candle_nn::VarBuilder`] backend.
//!
//! candle-nn's `VarMap` draws from candle's random generator, which cannot be seeded on the CPU.
//! [`seeded`] gives a `VarBuilder` whose tensors come from one ChaCha8 stream seeded by a `u64`,
//! drawn in the order they are asked for, following each request's [`Init`] hint the way
//! torchvision initializes (Kaiming normal for convolutions, `nn.Linear`'s uniform, constants for
//! BatchNorm): the same seed gives the same network, bit for bit, on every machine.

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// A `VarBuilder` backend creating every requested tensor from a seeded ChaCha8 stream, as a
/// fresh [`Var`] (so a model built on it is trainable and its tensors are its own).
#[derive(Debug)]
pub struct SeededInit {
    rng: Mutex<ChaCha8Rng>,
}

impl SeededInit {
    /// A stream seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        SeededInit {
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The values of `init` for `shape`, in f64, row-major; an error for a hint no distribution
    /// fits (a negative or non-finite spread, bounds the wrong way round).
    fn values(&self, shape: &Shape, init: Init) -> candle_core::Result<Vec<f64>> {
        let count = shape.elem_count();
        let mut rng = self.rng.lock().expect("the generator is never poisoned");
        let mut draw = |distribution: &dyn Fn(&mut ChaCha8Rng) -> f64| -> Vec<f64> {
            (0..count).map(|_| distribution(&mut rng)).collect()
        };
        let normal = |mean: f64, std: f64| {
            Normal::new(mean, std).map_err(|e| {
                candle_core::Error::Msg(format!("initialization N({mean}, {std}^2): {e}"))
            })
        };
        let uniform = |lo: f64, up: f64| {
            Uniform::new_inclusive(lo, up)
                .map_err(|e| candle_core::Error::Msg(format!("initialization U({lo}, {up}): {e}")))
        };
        Ok(match init {
            Init::Const(value) => vec![value; count],
            Init::Randn { mean, stdev } => {
                let normal = normal(mean, stdev)?;
                draw(&|rng| normal.sample(rng))
            }
            Init::Uniform { lo, up } => {
                let uniform = uniform(lo, up)?;
                draw(&|rng| uniform.sample(rng))
            }
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let fan = fan.for_shape(shape) as f64;
                // torchvision's kaiming_normal_(nonlinearity="relu"): sqrt(2 / fan), written so
                // rather than gain / sqrt(fan) to keep the bits of the networks trained so far.
                let std = match non_linearity {
                    NonLinearity::ReLU => (2.0 / fan).sqrt(),
                    other => other.gain() / fan.sqrt(),
                };
                match dist {
                    NormalOrUniform::Normal => {
                        let normal = normal(0.0, std)?;
                        draw(&|rng| normal.sample(rng))
                    }
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        let uniform = uniform(-bound, bound)?;
                        draw(&|rng| uniform.sample(rng))
                    }
                }
            }
        })
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededInit {
    fn get(
        &self,
        shape: Shape,
        _name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let values = self.values(&shape, init)?;
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?;
        Ok(Var::from_tensor(&tensor)?.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("seeded initialization needs the shape of {name}: use `get`")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

/// A `VarBuilder` whose tensors are drawn from [`SeededInit`] with `seed`, in `dtype` on
/// `device`: `Resnet::new(config, seeded(seed, DType::F32, &device))` is [`crate::Resnet::seeded`].
pub fn seeded(seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SeededInit::new(seed)), dtype, device.clone())
}

/// torchvision's ResNet convolution initialization: `kaiming_normal_(mode="fan_out",
/// nonlinearity="relu")`, `N(0, 2 / fan_out)` with `fan_out = out_channels * kh * kw`.
pub const CONV: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

/// `nn.Linear`'s default for weight and bias: uniform in `±1 / sqrt(fan_in)`.
pub fn linear(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_tensors_in_request_order() {
        let draw = |seed| {
            let vb = seeded(seed, DType::F32, &Device::Cpu);
            let a = vb.get_with_hints((64, 3, 3, 3), "a", CONV).unwrap();
            let b = vb.get_with_hints((10, 512), "b", linear(512)).unwrap();
            (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        };
        let (a, b) = draw(3);
        assert_eq!(draw(3), (a.clone(), b.clone()));
        assert_ne!(draw(4).0, a);
        // N(0, 2 / (64 * 9)) and U(-1/sqrt(512), 1/sqrt(512)).
        let std = (a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
        assert!((std / (2.0f64 / 576.0).sqrt() - 1.0).abs() < 0.1, "{std}");
        let bound = 1.0 / 512f32.sqrt();
        assert!(b.iter().all(|v| v.abs() <= bound) && b.iter().any(|v| v.abs() > 0.9 * bound));
        // A fresh Var each time: trainable, and the model's own.
        let vb = seeded(0, DType::F64, &Device::Cpu);
        let t = vb.get_with_hints(3, "c", Init::Const(1.5)).unwrap();
        assert!(t.is_variable() && t.dtype() == DType::F64);
        assert_eq!(t.to_vec1::<f64>().unwrap(), [1.5; 3]);
        // A hint no distribution fits is an error, not a panic.
        let bad = vb.get_with_hints(3, "d", Init::Uniform { lo: 1.0, up: 0.0 });
        assert!(bad.unwrap_err().to_string().contains("U(1, 0)"));
    }
}
