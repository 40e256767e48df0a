//! torchvision's ResNet-18, -34 and -50 (He et al. 2016, torchvision's "v1.5": the Bottleneck
//! strides in its 3x3 convolution).

use std::fmt;
use std::str::FromStr;

use candle_core::{D, DType, Device, ModuleT, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::error::{ResnetError, Result};
use crate::layers::{BatchNorm2d, Conv2d, Linear, Shortcut};
use crate::maxpool::{MaxPool2d, max_pool2d};
use crate::params::Parameters;

/// Network depth.
///
/// Text form ([`FromStr`], [`fmt::Display`]): `18`, `34`, `50` (also `resnet18`, `ResNet-18`);
/// serde (the `serde` feature): the number, `18`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "u32", into = "u32")
)]
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

    /// `ResNet-18`, `ResNet-34` or `ResNet-50`.
    pub fn name(self) -> &'static str {
        match self {
            Depth::R18 => "ResNet-18",
            Depth::R34 => "ResNet-34",
            Depth::R50 => "ResNet-50",
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

impl fmt::Display for Depth {
    /// `18`, `34` or `50`, as flags and files spell it ([`Depth::name`] for `ResNet-18`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.layers())
    }
}

impl FromStr for Depth {
    type Err = ResnetError;

    fn from_str(text: &str) -> Result<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let digits = lower
            .strip_prefix("resnet-")
            .or_else(|| lower.strip_prefix("resnet"))
            .unwrap_or(&lower);
        digits
            .parse()
            .ok()
            .and_then(Depth::from_layers)
            .ok_or_else(|| ResnetError::Parse {
                what: "ResNet depth",
                text: text.to_string(),
                expected: "18, 34 or 50".into(),
            })
    }
}

impl TryFrom<u32> for Depth {
    type Error = ResnetError;

    fn try_from(layers: u32) -> Result<Self> {
        layers.to_string().parse()
    }
}

impl From<Depth> for u32 {
    fn from(depth: Depth) -> u32 {
        depth.layers()
    }
}

/// The first layers.
///
/// Text form ([`FromStr`], [`fmt::Display`], serde with the `serde` feature): `imagenet`,
/// `cifar`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
    strum::EnumMessage,
)]
#[strum(serialize_all = "lowercase")]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Stem {
    /// torchvision's: 7x7 stride-2 convolution, BN, ReLU, 3x3 stride-2 max-pool with padding 1.
    /// What the original code trained on 32x32 CIFAR images (the default).
    #[default]
    #[strum(
        message = "7x7 stride-2 convolution + 3x3 stride-2 max-pool (torchvision's; the original's)"
    )]
    Imagenet,
    /// The common CIFAR variant: 3x3 stride-1 convolution, BN, ReLU, no max-pool.
    #[strum(message = "3x3 stride-1 convolution, no max-pool (the common CIFAR variant)")]
    Cifar,
}

impl Stem {
    /// `imagenet` or `cifar`.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl FromStr for Stem {
    type Err = ResnetError;

    fn from_str(text: &str) -> Result<Self> {
        crate::error::parse_name("stem", text)
    }
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
    /// Channels of the stem and the first stage; stage `s` has `width << s` (times 4 at the end
    /// of a bottleneck block). [`TORCHVISION_WIDTH`] (64) is torchvision's network, whose
    /// checkpoints load both ways; a narrower network is a CPU-scale variant of the same
    /// architecture (width 16 has about 1/16 of the weights and multiply-adds).
    pub width: usize,
}

/// torchvision's ResNets: 64 channels in the stem and the first stage, 512 (2,048) at the end.
pub const TORCHVISION_WIDTH: usize = 64;

impl ResnetConfig {
    /// `depth` with the imagenet stem, 3 input channels, 10 classes and torchvision's width
    /// (`torchvision.models.resnetNN(num_classes=10)`).
    pub fn cifar10(depth: Depth) -> Self {
        ResnetConfig {
            depth,
            stem: Stem::Imagenet,
            in_channels: 3,
            classes: 10,
            width: TORCHVISION_WIDTH,
        }
    }
}

/// A residual block: torchvision's `BasicBlock` (two 3x3 convolutions) or `Bottleneck` (1x1,
/// 3x3 carrying the stride, 1x1 to four times the planes), each convolution followed by its
/// BatchNorm, and a `downsample` (1x1 convolution and BatchNorm) on the shortcut where the shape
/// changes: `relu(bn_last(conv_last(...)) + shortcut(x))`.
#[derive(Debug)]
pub struct Block {
    convs: Vec<(Conv2d, BatchNorm2d)>,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Block {
    /// torchvision's `BasicBlock(in_planes, planes, stride)` under `vb` (`conv1`, `bn1`, `conv2`,
    /// `bn2`, `downsample.0`, `downsample.1`).
    pub fn basic(
        vb: VarBuilder<'_>,
        in_planes: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let convs = vec![
            (
                Conv2d::new(vb.pp("conv1"), in_planes, planes, 3, stride, 1)?,
                BatchNorm2d::new(vb.pp("bn1"), planes)?,
            ),
            (
                Conv2d::new(vb.pp("conv2"), planes, planes, 3, 1, 1)?,
                BatchNorm2d::new(vb.pp("bn2"), planes)?,
            ),
        ];
        Self::with_shortcut(vb, convs, in_planes, planes, stride)
    }

    /// torchvision's `Bottleneck(in_planes, planes, stride)` under `vb`: its output has
    /// `4 * planes` channels.
    pub fn bottleneck(
        vb: VarBuilder<'_>,
        in_planes: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let specs = [
            (in_planes, planes, 1, 1, 0),
            (planes, planes, 3, stride, 1),
            (planes, planes * 4, 1, 1, 0),
        ];
        let mut convs = Vec::new();
        for (i, (input, out, kernel, s, pad)) in specs.into_iter().enumerate() {
            convs.push((
                Conv2d::new(vb.pp(format!("conv{}", i + 1)), input, out, kernel, s, pad)?,
                BatchNorm2d::new(vb.pp(format!("bn{}", i + 1)), out)?,
            ));
        }
        Self::with_shortcut(vb, convs, in_planes, planes * 4, stride)
    }

    fn with_shortcut(
        vb: VarBuilder<'_>,
        convs: Vec<(Conv2d, BatchNorm2d)>,
        in_planes: usize,
        out_planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let downsample = if stride != 1 || in_planes != out_planes {
            Some((
                Conv2d::new(vb.pp("downsample.0"), in_planes, out_planes, 1, stride, 0)?,
                BatchNorm2d::new(vb.pp("downsample.1"), out_planes)?,
            ))
        } else {
            None
        };
        Ok(Block { convs, downsample })
    }

    fn layers(&self) -> impl Iterator<Item = &(Conv2d, BatchNorm2d)> {
        self.convs.iter().chain(&self.downsample)
    }

    fn register(&self, prefix: &str, params: &mut Parameters) {
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            conv.register(&format!("{prefix}.conv{}", i + 1), params);
            bn.register(&format!("{prefix}.bn{}", i + 1), params);
        }
        if let Some((conv, bn)) = &self.downsample {
            conv.register(&format!("{prefix}.downsample.0"), params);
            bn.register(&format!("{prefix}.downsample.1"), params);
        }
    }

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

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(self.forward(x, train)?)
    }
}

/// A ResNet whose tensors carry torchvision's names and shapes, a candle [`ModuleT`]:
/// `forward_t(images [N, C, H, W], train) -> logits [N, classes]`.
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
    /// Builds the network from `vb`, whose tensors it asks for under torchvision's names
    /// (`conv1.weight`, `layer2.0.downsample.1.running_var`, `fc.bias`, ...), in the dtype and on
    /// the device of `vb`:
    ///
    /// - a `candle_nn::VarMap` (`VarBuilder::from_varmap`) creates them with torchvision's
    ///   initialization schemes from candle's random generator, and the model trains the map's
    ///   variables in place (its running statistics too), so `varmap.save(path)` saves it;
    /// - [`crate::init::seeded`] creates them the same way from a seed ([`Resnet::seeded`]);
    /// - a safetensors file with torchvision's names (`VarBuilder::from_buffered_safetensors`,
    ///   `from_mmaped_safetensors`), such as a `state_dict` saved by `safetensors.torch`, gives
    ///   torchvision's network (copied into trainable tensors of the model's own).
    pub fn new(config: ResnetConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if config.in_channels == 0 || config.classes == 0 || config.width == 0 {
            return Err(ResnetError::EmptyNetwork {
                in_channels: config.in_channels,
                classes: config.classes,
                width: config.width,
            });
        }
        let width = config.width;
        let conv1 = match config.stem {
            Stem::Imagenet => Conv2d::new(vb.pp("conv1"), config.in_channels, width, 7, 2, 3)?,
            Stem::Cifar => Conv2d::new(vb.pp("conv1"), config.in_channels, width, 3, 1, 1)?,
        };
        let bn1 = BatchNorm2d::new(vb.pp("bn1"), width)?;
        let expansion = if config.depth.bottleneck() { 4 } else { 1 };
        let mut in_planes = width;
        let mut layers = Vec::new();
        for (stage, &count) in config.depth.blocks().iter().enumerate() {
            let planes = width << stage;
            for index in 0..count {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                let vb = vb.pp(format!("layer{}.{index}", stage + 1));
                layers.push(if config.depth.bottleneck() {
                    Block::bottleneck(vb, in_planes, planes, stride)?
                } else {
                    Block::basic(vb, in_planes, planes, stride)?
                });
                in_planes = planes * expansion;
            }
        }
        let fc = Linear::new(vb.pp("fc"), in_planes, config.classes)?;
        let mut params = Parameters::default();
        conv1.register("conv1", &mut params);
        bn1.register("bn1", &mut params);
        let mut index = 0;
        for (stage, &count) in config.depth.blocks().iter().enumerate() {
            for block in 0..count {
                layers[index].register(&format!("layer{}.{block}", stage + 1), &mut params);
                index += 1;
            }
        }
        fc.register("fc", &mut params);
        Ok(Resnet {
            config,
            params,
            conv1,
            bn1,
            layers,
            fc,
        })
    }

    /// [`Resnet::new`] from [`crate::init::seeded`]`(seed)` in f32: initialized as torchvision
    /// does (Kaiming normal, fan_out, for the convolutions; BN weight 1 and bias 0; `nn.Linear`'s
    /// default for the head), every draw from a ChaCha8 stream seeded by `seed`: the same seed
    /// gives the same weights.
    pub fn seeded(config: ResnetConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::new(config, crate::init::seeded(seed, DType::F32, device))
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
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = self.bn1.forward_relu(&self.conv1.forward(x)?, train)?;
        if self.config.stem == Stem::Imagenet {
            y = max_pool2d(&y, MaxPool2d::RESNET_STEM)?;
        }
        for block in &self.layers {
            y = block.forward(&y, train)?;
        }
        // Adaptive average pooling to 1x1, then flatten.
        let pooled = y.flatten_from(2)?.mean(D::Minus1)?;
        Ok(self.fc.forward(&pooled)?)
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
            for (conv, _) in block.layers() {
                conv.set_reference(reference);
            }
        }
    }

    /// `true`: BatchNorm in training mode through the composition of candle ops; `false` (the
    /// default): through the fused op.
    pub fn use_reference_batch_norm(&self, reference: bool) {
        self.bn1.set_reference(reference);
        for block in &self.layers {
            for (_, bn) in block.layers() {
                bn.set_reference(reference);
            }
        }
    }

    /// Saves every tensor (weights and buffers) to `path` as safetensors under torchvision's
    /// names, as `VarMap::save` does: the file is written in place. (sd-train writes its
    /// checkpoints to a temporary file renamed into place, so that none is ever half written.)
    /// `torchvision.models.resnetNN(num_classes=...).load_state_dict(load_file(path))` loads it.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::checkpoint::save(&self.params, path.as_ref())
    }

    /// Loads a checkpoint (ours, or a torchvision `state_dict` saved as safetensors) into this
    /// network, strictly, as `load_state_dict(strict=True)`: every tensor must be there with its
    /// shape and nothing else may be; nothing changes unless everything matches.
    pub fn load(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::checkpoint::load(&self.params, path.as_ref())?;
        self.bn1.sync_batches_tracked()?;
        for block in &self.layers {
            for (_, bn) in block.layers() {
                bn.sync_batches_tracked()?;
            }
        }
        Ok(())
    }
}

impl ModuleT for Resnet {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(self.forward(x, train)?)
    }
}
