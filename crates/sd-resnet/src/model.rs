//! torchvision's ResNet-18, -34 and -50 (He et al. 2016, torchvision's "v1.5": the Bottleneck
//! strides in its 3x3 convolution).

use candle_core::{D, DType, Device, Tensor};

use crate::error::{ResnetError, Result};
use crate::layers::{BatchNorm2d, Builder, Conv2d, Linear, Shortcut};
use crate::maxpool::{MaxPool2d, max_pool2d};
use crate::params::{Init, Parameters};

/// Network depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Depth {
    /// BasicBlock, [2, 2, 2, 2].
    R18,
    /// BasicBlock, [3, 4, 6, 3].
    R34,
    /// Bottleneck, [3, 4, 6, 3].
    R50,
}

impl Depth {
    /// From 18, 34 or 50.
    pub fn from_layers(layers: u32) -> Option<Depth> {
        match layers {
            18 => Some(Depth::R18),
            34 => Some(Depth::R34),
            50 => Some(Depth::R50),
            _ => None,
        }
    }

    /// 18, 34 or 50.
    pub fn layers(self) -> u32 {
        match self {
            Depth::R18 => 18,
            Depth::R34 => 34,
            Depth::R50 => 50,
        }
    }

    fn blocks(self) -> [usize; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 | Depth::R50 => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        self == Depth::R50
    }
}

/// The first layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stem {
    /// torchvision's: 7x7 stride-2 convolution, BN, ReLU, 3x3 stride-2 max-pool with padding 1.
    /// What the original code trained on 32x32 CIFAR images (the default).
    #[default]
    Imagenet,
    /// The common CIFAR variant: 3x3 stride-1 convolution, BN, ReLU, no max-pool.
    Cifar,
}

/// What to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResnetConfig {
    /// Depth.
    pub depth: Depth,
    /// First layers.
    pub stem: Stem,
    /// Input channels: 3 (CIFAR-10) or 1 (grey images).
    pub in_channels: usize,
    /// Output classes.
    pub classes: usize,
}

impl ResnetConfig {
    /// `depth` with the imagenet stem, 3 input channels and 10 classes
    /// (`torchvision.models.resnetNN(num_classes=10)`).
    pub fn cifar10(depth: Depth) -> Self {
        ResnetConfig {
            depth,
            stem: Stem::Imagenet,
            in_channels: 3,
            classes: 10,
        }
    }
}

#[derive(Debug)]
struct Block {
    convs: Vec<(Conv2d, BatchNorm2d)>,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (last, inner) = self.convs.split_last().expect("a block has convolutions");
        let mut y = x.clone();
        for (conv, bn) in inner {
            y = bn.forward_relu(&conv.forward(&y)?, train)?;
        }
        let downsampled = match &self.downsample {
            Some((conv, bn)) => Some((conv.forward(x)?, bn)),
            None => None,
        };
        let shortcut = match &downsampled {
            Some((z, bn)) => Shortcut::Downsample(z, bn),
            None => Shortcut::Identity(x),
        };
        let (conv, bn) = last;
        bn.forward_add_relu(&conv.forward(&y)?, shortcut, train)
    }
}

/// A ResNet whose tensors carry torchvision's names and shapes.
#[derive(Debug)]
pub struct Resnet {
    config: ResnetConfig,
    params: Parameters,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    layers: Vec<Block>,
    fc: Linear,
}

impl Resnet {
    /// Builds and initializes the network as torchvision does (Kaiming normal, fan_out, for the
    /// convolutions; BN weight 1 and bias 0; `nn.Linear`'s default for the head), every draw from
    /// a ChaCha8 stream seeded by `seed`: the same seed gives the same weights.
    pub fn new(config: ResnetConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::with_dtype(config, seed, device, DType::F32)
    }

    /// [`Resnet::new`] with floating-point tensors of `dtype` (f32 for training; f64 for
    /// reference checks).
    pub fn with_dtype(
        config: ResnetConfig,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if config.in_channels == 0 || config.classes == 0 {
            return Err(ResnetError::InvalidConfig(format!(
                "a ResNet needs at least one input channel and one class, got {} and {}",
                config.in_channels, config.classes
            )));
        }
        let mut params = Parameters::default();
        let mut init = Init::new(seed, device, dtype);
        let mut b = Builder {
            params: &mut params,
            init: &mut init,
        };
        let conv1 = match config.stem {
            Stem::Imagenet => b.conv("conv1", config.in_channels, 64, 7, 2, 3)?,
            Stem::Cifar => b.conv("conv1", config.in_channels, 64, 3, 1, 1)?,
        };
        let bn1 = b.batch_norm("bn1", 64)?;
        let expansion = if config.depth.bottleneck() { 4 } else { 1 };
        let mut in_planes = 64;
        let mut layers = Vec::new();
        for (stage, &count) in config.depth.blocks().iter().enumerate() {
            let planes = 64 << stage;
            for index in 0..count {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                let prefix = format!("layer{}.{index}", stage + 1);
                let mut convs = Vec::new();
                if config.depth.bottleneck() {
                    let specs = [
                        (in_planes, planes, 1, 1, 0),
                        (planes, planes, 3, stride, 1),
                        (planes, planes * expansion, 1, 1, 0),
                    ];
                    for (i, (input, out, kernel, s, pad)) in specs.into_iter().enumerate() {
                        let conv = b.conv(
                            &format!("{prefix}.conv{}", i + 1),
                            input,
                            out,
                            kernel,
                            s,
                            pad,
                        )?;
                        let bn = b.batch_norm(&format!("{prefix}.bn{}", i + 1), out)?;
                        convs.push((conv, bn));
                    }
                } else {
                    let conv =
                        b.conv(&format!("{prefix}.conv1"), in_planes, planes, 3, stride, 1)?;
                    let bn = b.batch_norm(&format!("{prefix}.bn1"), planes)?;
                    convs.push((conv, bn));
                    let conv = b.conv(&format!("{prefix}.conv2"), planes, planes, 3, 1, 1)?;
                    let bn = b.batch_norm(&format!("{prefix}.bn2"), planes)?;
                    convs.push((conv, bn));
                }
                let downsample = if stride != 1 || in_planes != planes * expansion {
                    let conv = b.conv(
                        &format!("{prefix}.downsample.0"),
                        in_planes,
                        planes * expansion,
                        1,
                        stride,
                        0,
                    )?;
                    let bn = b.batch_norm(&format!("{prefix}.downsample.1"), planes * expansion)?;
                    Some((conv, bn))
                } else {
                    None
                };
                layers.push(Block { convs, downsample });
                in_planes = planes * expansion;
            }
        }
        let fc = b.linear("fc", 512 * expansion, config.classes)?;
        Ok(Resnet {
            config,
            params,
            conv1,
            bn1,
            layers,
            fc,
        })
    }

    /// What it was built as.
    pub fn config(&self) -> ResnetConfig {
        self.config
    }

    /// Its tensors, in torchvision's `state_dict` order.
    pub fn parameters(&self) -> &Parameters {
        &self.params
    }

    /// Logits `[N, classes]` for images `[N, C, H, W]`. `train`: BatchNorm uses (and updates)
    /// batch statistics; otherwise it uses its running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = self.bn1.forward_relu(&self.conv1.forward(x)?, train)?;
        if self.config.stem == Stem::Imagenet {
            y = max_pool2d(&y, MaxPool2d::RESNET_STEM)?;
        }
        for block in &self.layers {
            y = block.forward(&y, train)?;
        }
        // Adaptive average pooling to 1x1, then flatten.
        let pooled = y.flatten_from(2)?.mean(D::Minus1)?;
        self.fc.forward(&pooled)
    }

    /// `true`: every layer with a fast kernel of this crate takes candle's reference instead
    /// (convolutions and BatchNorm in training mode); `false` (the default): the fast kernels.
    /// For comparisons and checks.
    pub fn use_reference_kernels(&self, reference: bool) {
        self.use_reference_convolutions(reference);
        self.use_reference_batch_norm(reference);
    }

    /// `true`: convolutions through candle's `conv2d`; `false` (the default): through
    /// [`crate::conv::conv2d`].
    pub fn use_reference_convolutions(&self, reference: bool) {
        self.conv1.set_reference(reference);
        for block in &self.layers {
            for (conv, _) in block.convs.iter().chain(&block.downsample) {
                conv.set_reference(reference);
            }
        }
    }

    /// `true`: BatchNorm in training mode through the composition of candle ops; `false` (the
    /// default): through the fused op.
    pub fn use_reference_batch_norm(&self, reference: bool) {
        self.bn1.set_reference(reference);
        for block in &self.layers {
            for (_, bn) in block.convs.iter().chain(&block.downsample) {
                bn.set_reference(reference);
            }
        }
    }

    /// Saves every tensor as safetensors under torchvision's names, atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::checkpoint::save(&self.params, path)
    }

    /// Loads a checkpoint (ours, or a torchvision `state_dict` saved as safetensors), strictly.
    pub fn load(&self, path: &std::path::Path) -> Result<()> {
        crate::checkpoint::load(&self.params, path)?;
        self.after_load()
    }

    /// Re-reads the batch counters after the tensors were replaced (loading a checkpoint).
    fn after_load(&self) -> Result<()> {
        self.bn1.sync_batches_tracked()?;
        for block in &self.layers {
            for (_, bn) in block.convs.iter().chain(&block.downsample) {
                bn.sync_batches_tracked()?;
            }
        }
        Ok(())
    }
}
