//! # sd-resnet
//!
//! torchvision's ResNet-18, -34 and -50 in candle, trainable on the CPU with fused kernels: the
//! networks of the deep half of *Even your Teacher Needs Guidance* (Borup & Andersen, NeurIPS
//! 2021), usable from any candle program. It knows nothing of data loaders, training loops or run
//! directories (those are `sd-train`'s).
//!
//! - [`Resnet`]: a candle [`ModuleT`](candle_core::ModuleT) (`forward_t(images, train)`), built
//!   from a [`candle_nn::VarBuilder`] under torchvision's names (`conv1.weight`,
//!   `layer2.0.downsample.0.weight`, `bn1.running_mean`, `fc.bias`, ...): a `VarMap` for
//!   training, a safetensors `state_dict` written by torchvision, or [`init::seeded`] for
//!   torchvision's initialization drawn from a seed ([`Resnet::seeded`]). The ImageNet stem (7x7/2
//!   convolution and 3x3/2 max-pool, what the original trained on CIFAR-10) or the CIFAR stem
//!   (3x3/1, no max-pool). Its [`Block`]s and [`layers`] are modules too. [`ResnetConfig::width`]
//!   narrows every stage alike for CPU-scale work (64, [`TORCHVISION_WIDTH`], is torchvision's).
//! - [`optim::Adam`]: `torch.optim.Adam`, fused into one pass per tensor on the CPU, as a
//!   [`candle_nn::Optimizer`].
//! - [`loss`]: the original's losses (softmax MSE against mixed targets, the teacher detached,
//!   and the unsquared L2 regularizer), and soft-target cross-entropy.
//! - The ops: [`conv::conv2d`] (im2col + GEMM with its own backward on the CPU, candle's
//!   `conv2d` elsewhere), [`maxpool::max_pool2d`] (padded, with a backward pass, which candle
//!   lacks when the kernel differs from the stride), [`layers::BatchNorm2d`] (PyTorch's running
//!   statistics; training, evaluation and a block's end fused into single ops); [`profile`]
//!   times each kernel phase.
//!
//! ```
//! use candle_core::{DType, Device, ModuleT, Tensor};
//! use candle_nn::{Optimizer, VarBuilder, VarMap};
//! use sd_resnet::optim::{Adam, AdamConfig};
//! use sd_resnet::{Depth, Resnet, ResnetConfig, loss};
//!
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let model = Resnet::new(ResnetConfig::cifar10(Depth::R18), vb)?;
//! assert_eq!(model.parameters().trainable_count(), 11_181_642); // as torchvision's
//!
//! let images = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu)?;
//! let labels = Tensor::new(&[[1f32, 0., 0., 0., 0., 0., 0., 0., 0., 0.]; 2], &Device::Cpu)?;
//! let logits = model.forward_t(&images, true)?;
//! assert_eq!(logits.dims(), [2, 10]);
//! let mut adam = Adam::new(model.parameters().trainable(), AdamConfig::default())?;
//! adam.backward_step(&loss::against(loss::LossKind::SoftmaxMse, &logits, &labels)?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batchnorm;
pub mod checkpoint;
pub mod conv;
mod cpu;
mod error;
pub mod init;
pub mod layers;
pub mod loss;
mod matmul;
pub mod maxpool;
mod model;
pub mod optim;
pub mod params;
pub mod profile;
mod winograd;

pub use error::{ResnetError, Result};
pub use model::{Block, Depth, Resnet, ResnetConfig, Stem, TORCHVISION_WIDTH};
pub use params::{Param, ParamKind, Parameters};

// The README's examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
