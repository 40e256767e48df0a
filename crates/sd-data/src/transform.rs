//! The per-image transforms of the original code, fused into one pass from bytes to floats.
//!
//! The original trained with torchvision's
//! `Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)])`
//! and tested with `Compose([ToTensor(), Normalize(mean, std)])`. [`Transform`] does the same in
//! one pass per image: the crop's zero padding is applied to the pixel values before
//! normalization (so a padded pixel becomes `-mean / std`, as in torchvision), the flip happens
//! after the crop, and each output value is looked up in a 256-entry table per channel holding
//! `(byte / 255 - mean) / std`. For (Fashion-)MNIST it can first zero-pad 28 x 28 to 32 x 32
//! (centred) and repeat the single channel to 3.

use rand::Rng;

use crate::error::{DataError, Result};
use crate::images::{ChannelStats, ImageShape};

/// Per-channel mean and standard deviation, in `[0, 1]` units: `out = (x / 255 - mean) / std`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Normalization {
    /// One mean per channel (or a single one for all channels).
    pub mean: Vec<f32>,
    /// One standard deviation per channel (or a single one for all channels).
    pub std: Vec<f32>,
}

impl Normalization {
    /// The original code's CIFAR-10 constants: mean (0.4914, 0.4822, 0.4465), std (0.2023,
    /// 0.1994, 0.2010). (The std values are the widespread ones from the kuangliu/pytorch-cifar
    /// code, not the data set's true per-pixel std of about 0.247, 0.243, 0.261; kept for parity.)
    pub fn cifar10() -> Self {
        Normalization {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2023, 0.1994, 0.2010],
        }
    }

    /// Fashion-MNIST: the mean and population std of the 60,000 training images' pixels,
    /// computed by [`ImageSet::channel_stats`](crate::ImageSet::channel_stats) on the 28 x 28
    /// images (before any padding) and checked by a test against the real files: 0.2860, 0.3530.
    pub fn fashion_mnist() -> Self {
        Normalization {
            mean: vec![0.2860],
            std: vec![0.3530],
        }
    }

    /// MNIST's customary constants: 0.1307, 0.3081.
    pub fn mnist() -> Self {
        Normalization {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// From measured statistics, for example [`ImageSet::channel_stats`](crate::ImageSet::channel_stats).
    pub fn from_stats(stats: &[ChannelStats]) -> Self {
        Normalization {
            mean: stats.iter().map(|s| s.mean as f32).collect(),
            std: stats.iter().map(|s| s.std as f32).collect(),
        }
    }
}

/// What happens to each image on its way into a batch. Every part can be switched off; with all
/// off, images become `byte / 255` (torchvision's `ToTensor`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transform {
    /// Zero-pad each image, centred, to this height and width first (28 x 28 to 32 x 32 for
    /// MNIST); `None`: keep the input size.
    pub pad_to: Option<(usize, usize)>,
    /// Repeat a single input channel to this many (1 to 3 for MNIST); `None`: keep the channels.
    pub channels: Option<usize>,
    /// `RandomCrop(size, padding = crop_padding)` at the (padded) image size: zero-pad every side
    /// by this much, then cut a window of the original size at a uniformly random offset in
    /// `0..=2 * crop_padding` on each axis. `0` switches the crop off.
    pub crop_padding: usize,
    /// `RandomHorizontalFlip(p = 0.5)`, after the crop.
    pub horizontal_flip: bool,
    /// `Normalize(mean, std)`, after `ToTensor`; `None`: values stay in `[0, 1]`.
    pub normalize: Option<Normalization>,
}

impl Transform {
    /// The original's training transform: crop with padding 4, flip, normalize.
    pub fn train(normalize: Normalization) -> Self {
        Transform {
            pad_to: None,
            channels: None,
            crop_padding: 4,
            horizontal_flip: true,
            normalize: Some(normalize),
        }
    }

    /// The original's test transform: normalize only.
    pub fn test(normalize: Normalization) -> Self {
        Transform {
            pad_to: None,
            channels: None,
            crop_padding: 0,
            horizontal_flip: false,
            normalize: Some(normalize),
        }
    }

    /// Also pad to `height x width` (centred) and repeat a single channel to `channels`: what
    /// lets the CIFAR-10 networks train on 28 x 28 grey images.
    pub fn with_geometry(
        mut self,
        pad_to: Option<(usize, usize)>,
        channels: Option<usize>,
    ) -> Self {
        self.pad_to = pad_to;
        self.channels = channels;
        self
    }

    /// Whether an image's result depends on random draws (crop or flip on).
    pub fn is_random(&self) -> bool {
        self.crop_padding > 0 || self.horizontal_flip
    }

    /// Checks the transform against the input geometry and builds its lookup tables.
    pub fn prepare(&self, input: ImageShape) -> Result<PreparedTransform> {
        let (height, width) = self.pad_to.unwrap_or((input.height, input.width));
        if height < input.height || width < input.width {
            return Err(DataError::InvalidConfig(format!(
                "cannot pad {input} images to {height}x{width}: smaller than the images"
            )));
        }
        let channels = self.channels.unwrap_or(input.channels);
        if channels == 0 || (channels != input.channels && input.channels != 1) {
            return Err(DataError::InvalidConfig(format!(
                "cannot turn {} channels into {channels}: only a single channel can be repeated",
                input.channels
            )));
        }
        let tables = (0..channels)
            .map(|c| {
                let (mean, std) = match &self.normalize {
                    None => (0.0, 1.0),
                    Some(n) => {
                        let pick = |v: &[f32], what: &str| -> Result<f32> {
                            match v.len() {
                                1 => Ok(v[0]),
                                len if len == channels => Ok(v[c]),
                                len => Err(DataError::InvalidConfig(format!(
                                    "normalization has {len} {what} values for {channels} channels"
                                ))),
                            }
                        };
                        (pick(&n.mean, "mean")?, pick(&n.std, "std")?)
                    }
                };
                if !(std.is_finite() && std > 0.0 && mean.is_finite()) {
                    return Err(DataError::InvalidConfig(format!(
                        "normalization of channel {c}: std must be finite and > 0 and mean \
                         finite, got mean {mean}, std {std}"
                    )));
                }
                let mut table = [0f32; 256];
                for (byte, value) in table.iter_mut().enumerate() {
                    *value = (byte as f32 / 255.0 - mean) / std;
                }
                Ok(table)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PreparedTransform {
            input,
            output: ImageShape {
                channels,
                height,
                width,
            },
            offset_y: (height - input.height) / 2,
            offset_x: (width - input.width) / 2,
            crop_padding: self.crop_padding,
            horizontal_flip: self.horizontal_flip,
            tables,
        })
    }
}

/// Where the random crop window sits and whether the image is flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    /// Top of the window in the padded image, in `0..=2 * crop_padding`.
    pub dy: usize,
    /// Left of the window in the padded image, in `0..=2 * crop_padding`.
    pub dx: usize,
    /// Mirror left-right after cropping.
    pub flip: bool,
}

/// A [`Transform`] checked against an input geometry, with its lookup tables.
#[derive(Debug, Clone)]
pub struct PreparedTransform {
    input: ImageShape,
    output: ImageShape,
    offset_y: usize,
    offset_x: usize,
    crop_padding: usize,
    horizontal_flip: bool,
    tables: Vec<[f32; 256]>,
}

impl PreparedTransform {
    /// The geometry of the images it takes.
    pub fn input(&self) -> ImageShape {
        self.input
    }

    /// The geometry of the images it makes.
    pub fn output(&self) -> ImageShape {
        self.output
    }

    /// The placement with no crop shift and no flip (the centre window).
    pub fn identity(&self) -> Placement {
        Placement {
            dy: self.crop_padding,
            dx: self.crop_padding,
            flip: false,
        }
    }

    /// Draws a placement as torchvision does: crop offsets uniform in `0..=2p` (top, then
    /// left), then a flip with probability 0.5. Draws nothing for the parts switched off.
    pub fn sample(&self, rng: &mut impl Rng) -> Placement {
        let mut placement = self.identity();
        if self.crop_padding > 0 {
            placement.dy = rng.random_range(0..=2 * self.crop_padding);
            placement.dx = rng.random_range(0..=2 * self.crop_padding);
        }
        if self.horizontal_flip {
            placement.flip = rng.random_bool(0.5);
        }
        placement
    }

    /// Transforms one image (`input` geometry, bytes) into `out` (`output` geometry, floats).
    ///
    /// Output pixel `(c, y, x)` is input pixel `(c or 0, y + dy - p - oy, x' + dx - p - ox)`
    /// with `x' = W - 1 - x` when flipped, else `x`; `p` the crop padding and `(oy, ox)` the
    /// centring offsets of `pad_to`; positions outside the input read as 0.
    ///
    /// # Panics
    /// If `image` or `out` has the wrong length, or the placement is out of range.
    pub fn apply(&self, image: &[u8], placement: Placement, out: &mut [f32]) {
        let (input, output) = (self.input, self.output);
        assert_eq!(image.len(), input.pixels(), "input image size");
        assert_eq!(out.len(), output.pixels(), "output image size");
        let p = self.crop_padding;
        assert!(
            placement.dy <= 2 * p && placement.dx <= 2 * p,
            "placement out of range"
        );
        let (width, in_width) = (output.width as isize, input.width as isize);
        // Source column of output column x is sign * x + shift.
        let column_shift = placement.dx as isize - p as isize - self.offset_x as isize;
        let (sign, shift) = if placement.flip {
            (-1, width - 1 + column_shift)
        } else {
            (1, column_shift)
        };
        // The output columns whose source column lies inside the image: one contiguous range.
        let valid = |x: isize| (0..in_width).contains(&(sign * x + shift));
        let x0 = (0..width).find(|&x| valid(x)).unwrap_or(width);
        let x1 = (x0..width).find(|&x| !valid(x)).unwrap_or(width);
        let (x0, x1) = (x0 as usize, x1 as usize);
        let row_shift = placement.dy as isize - p as isize - self.offset_y as isize;

        for (c, (plane, table)) in out
            .chunks_exact_mut(output.plane())
            .zip(&self.tables)
            .enumerate()
        {
            let source_channel = if input.channels == 1 { 0 } else { c };
            let source = &image[source_channel * input.plane()..][..input.plane()];
            let zero = table[0];
            for (y, row) in plane.chunks_exact_mut(output.width).enumerate() {
                let sy = y as isize + row_shift;
                if !(0..input.height as isize).contains(&sy) || x0 == x1 {
                    row.fill(zero);
                    continue;
                }
                let source_row = &source[sy as usize * input.width..][..input.width];
                row[..x0].fill(zero);
                row[x1..].fill(zero);
                let first = (sign * x0 as isize + shift) as usize;
                if placement.flip {
                    // Source columns first, first - 1, ..., going left.
                    let span = &source_row[first + 1 - (x1 - x0)..=first];
                    for (value, &byte) in row[x0..x1].iter_mut().zip(span.iter().rev()) {
                        *value = table[usize::from(byte)];
                    }
                } else {
                    let span = &source_row[first..first + (x1 - x0)];
                    for (value, &byte) in row[x0..x1].iter_mut().zip(span) {
                        *value = table[usize::from(byte)];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Transform {
        Transform {
            pad_to: None,
            channels: None,
            crop_padding: 0,
            horizontal_flip: false,
            normalize: None,
        }
    }

    /// A naive reference: pad into a big zero canvas, cut, flip.
    fn reference(image: &[u8], input: ImageShape, t: &Transform, placement: Placement) -> Vec<f32> {
        let prepared = t.prepare(input).unwrap();
        let output = prepared.output();
        let p = t.crop_padding;
        let (oy, ox) = (
            (output.height - input.height) / 2,
            (output.width - input.width) / 2,
        );
        let mut out = Vec::new();
        for c in 0..output.channels {
            let sc = if input.channels == 1 { 0 } else { c };
            for y in 0..output.height {
                for x in 0..output.width {
                    let x = if placement.flip {
                        output.width - 1 - x
                    } else {
                        x
                    };
                    // Coordinates in the canvas padded by p around the pad_to image.
                    let (cy, cx) = (y + placement.dy, x + placement.dx);
                    let byte = if cy >= p + oy
                        && cy < p + oy + input.height
                        && cx >= p + ox
                        && cx < p + ox + input.width
                    {
                        image[sc * input.plane() + (cy - p - oy) * input.width + (cx - p - ox)]
                    } else {
                        0
                    };
                    let v = byte as f32 / 255.0;
                    out.push(match &t.normalize {
                        None => v,
                        Some(n) => {
                            let i = if n.mean.len() == 1 { 0 } else { c };
                            (v - n.mean[i]) / n.std[i]
                        }
                    });
                }
            }
        }
        out
    }

    #[test]
    fn crop_and_flip_by_hand_on_a_3x3_image() {
        let input = ImageShape {
            channels: 1,
            height: 3,
            width: 3,
        };
        #[rustfmt::skip]
        let image = [
            10, 20, 30,
            40, 50, 60,
            70, 80, 90,
        ];
        let t = Transform {
            crop_padding: 1,
            ..plain()
        };
        let prepared = t.prepare(input).unwrap();
        let mut out = [0f32; 9];
        let bytes = |out: &[f32]| {
            out.iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect::<Vec<_>>()
        };
        // Window at the top-left corner of the padded 5x5 image: a zero row and column appear.
        prepared.apply(
            &image,
            Placement {
                dy: 0,
                dx: 0,
                flip: false,
            },
            &mut out,
        );
        assert_eq!(bytes(&out), [0, 0, 0, 0, 10, 20, 0, 40, 50]);
        // Bottom-right corner.
        prepared.apply(
            &image,
            Placement {
                dy: 2,
                dx: 2,
                flip: false,
            },
            &mut out,
        );
        assert_eq!(bytes(&out), [50, 60, 0, 80, 90, 0, 0, 0, 0]);
        // Centre, flipped.
        prepared.apply(
            &image,
            Placement {
                dy: 1,
                dx: 1,
                flip: true,
            },
            &mut out,
        );
        assert_eq!(bytes(&out), [30, 20, 10, 60, 50, 40, 90, 80, 70]);
        // Flip after crop: crop top-left (zero column on the left), then mirror.
        prepared.apply(
            &image,
            Placement {
                dy: 1,
                dx: 0,
                flip: true,
            },
            &mut out,
        );
        assert_eq!(bytes(&out), [20, 10, 0, 50, 40, 0, 80, 70, 0]);
    }

    #[test]
    fn zero_padding_is_normalized_like_torchvision() {
        let input = ImageShape {
            channels: 3,
            height: 2,
            width: 2,
        };
        let t = Transform {
            crop_padding: 2,
            ..Transform::train(Normalization::cifar10())
        };
        let prepared = t.prepare(input).unwrap();
        let mut out = [0f32; 12];
        // Offset (0, 0) with padding 2 on a 2x2 image: the window is all padding.
        prepared.apply(
            &[255; 12],
            Placement {
                dy: 0,
                dx: 0,
                flip: false,
            },
            &mut out,
        );
        let n = Normalization::cifar10();
        for c in 0..3 {
            for v in &out[c * 4..(c + 1) * 4] {
                assert!((v - (-n.mean[c] / n.std[c])).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn pads_mnist_to_32_and_repeats_the_channel() {
        let input = ImageShape::MNIST;
        let image: Vec<u8> = (0..784).map(|i| (i % 251) as u8 + 1).collect();
        let t = plain().with_geometry(Some((32, 32)), Some(3));
        let prepared = t.prepare(input).unwrap();
        assert_eq!(prepared.output(), ImageShape::CIFAR10);
        let mut out = vec![0f32; 3 * 1024];
        prepared.apply(&image, prepared.identity(), &mut out);
        for c in 0..3 {
            let plane = &out[c * 1024..(c + 1) * 1024];
            assert_eq!(plane[0], 0.0);
            assert_eq!(plane[31 * 32 + 31], 0.0);
            assert_eq!(plane[2 * 32 + 1], 0.0, "two-pixel border");
            assert_eq!(plane[2 * 32 + 2], image[0] as f32 / 255.0);
            assert_eq!(plane[29 * 32 + 29], image[783] as f32 / 255.0);
        }
    }

    #[test]
    fn every_placement_matches_the_naive_reference() {
        let input = ImageShape {
            channels: 1,
            height: 5,
            width: 6,
        };
        let image: Vec<u8> = (0..30).map(|i| i * 8 + 3).collect();
        for channels in [None, Some(2)] {
            let t = Transform {
                pad_to: Some((7, 9)),
                channels,
                crop_padding: 3,
                horizontal_flip: true,
                normalize: Some(Normalization {
                    mean: vec![0.3],
                    std: vec![0.7],
                }),
            };
            let prepared = t.prepare(input).unwrap();
            let mut out = vec![0f32; prepared.output().pixels()];
            for dy in 0..=6 {
                for dx in 0..=6 {
                    for flip in [false, true] {
                        let placement = Placement { dy, dx, flip };
                        prepared.apply(&image, placement, &mut out);
                        let expected = reference(&image, input, &t, placement);
                        for (a, b) in out.iter().zip(&expected) {
                            assert!((a - b).abs() < 1e-6, "{placement:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_impossible_geometry() {
        let t = plain().with_geometry(Some((20, 20)), None);
        assert!(t.prepare(ImageShape::MNIST).is_err());
        let t = plain().with_geometry(None, Some(2));
        assert!(t.prepare(ImageShape::CIFAR10).is_err());
        let mut t = Transform::test(Normalization::cifar10());
        t.normalize.as_mut().unwrap().std[1] = 0.0;
        assert!(t.prepare(ImageShape::CIFAR10).is_err());
    }
}
