//! # sd-resnet
//!
//! torchvision's ResNet-18, -34 and -50 in candle, trainable on the CPU: the deep half of
//! *Even your Teacher Needs Guidance* (Borup & Andersen, NeurIPS 2021).
//!
//! - [`Resnet`]: the networks with torchvision's parameter names and shapes (`conv1.weight`,
//!   `layer2.0.downsample.0.weight`, `bn1.running_mean`, `fc.bias`, ...) and its initialization,
//!   from a seed; the ImageNet stem (7x7/2 convolution and 3x3/2 max-pool, what the original
//!   trained on CIFAR-10) or the CIFAR stem (3x3/1, no max-pool).
//! - [`conv::conv2d`]: the convolution as im2col + GEMM with its own backward on the CPU
//!   (candle's `conv2d` elsewhere); [`profile`] times each kernel phase of a training step.
//! - [`maxpool::max_pool2d`]: max-pooling with padding and a backward pass, which candle lacks
//!   when the kernel differs from the stride.
//! - [`layers::BatchNorm2d`]: batch statistics in training with running statistics updated as
//!   PyTorch does (momentum 0.1, unbiased running variance, eps 1e-5), running statistics in
//!   evaluation; the running statistics are buffers, never trainable.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use sd_resnet::{Depth, Resnet, ResnetConfig};
//!
//! let model = Resnet::new(ResnetConfig::cifar10(Depth::R18), 0, &Device::Cpu)?;
//! assert_eq!(model.parameters().trainable_count(), 11_181_642); // as torchvision's
//! let images = Tensor::zeros((2, 3, 32, 32), candle_core::DType::F32, &Device::Cpu)?;
//! let logits = model.forward(&images, false)?;
//! assert_eq!(logits.dims(), [2, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batchnorm;
pub mod bench;
pub mod checkpoint;
pub mod conv;
mod cpu;
mod error;
mod files;
pub mod layers;
pub mod loss;
pub mod maxpool;
mod model;
pub mod optim;
pub mod params;
pub mod profile;
pub mod train;

pub use error::{ResnetError, Result};
pub use model::{Depth, Resnet, ResnetConfig, Stem};
pub use params::{Param, ParamKind, Parameters};

// The README's examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
