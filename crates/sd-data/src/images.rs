//! Images kept as bytes: `N x C x H x W` pixels and one label per image.

use crate::error::{DataError, Result};

/// The geometry of one image: channels, height and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ImageShape {
    /// Colour channels: 3 for CIFAR-10, 1 for MNIST.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// CIFAR-10's 3 x 32 x 32.
    pub const CIFAR10: ImageShape = ImageShape {
        channels: 3,
        height: 32,
        width: 32,
    };
    /// (Fashion-)MNIST's 1 x 28 x 28.
    pub const MNIST: ImageShape = ImageShape {
        channels: 1,
        height: 28,
        width: 28,
    };

    /// Bytes (pixels) per image: `C * H * W`.
    pub const fn pixels(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Pixels per channel plane: `H * W`.
    pub const fn plane(&self) -> usize {
        self.height * self.width
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// A set of labelled images stored as they come from disk: one byte per pixel, planar
/// (`N x C x H x W`, each plane row-major), one byte per label. Conversion to floats happens per
/// batch ([`crate::Transform`]), so a data set takes a quarter of the memory of an `f32` copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    shape: ImageShape,
    classes: usize,
}

/// Mean and standard deviation of one channel, in `[0, 1]` units (pixel / 255), as torchvision's
/// `Normalize` expects them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ChannelStats {
    /// Mean over all images and positions.
    pub mean: f64,
    /// Population standard deviation over all images and positions.
    pub std: f64,
}

impl ImageSet {
    /// The same images with symmetric label noise: each label is replaced with probability `p`
    /// by a class drawn uniformly from all classes (so it may stay the same), image by image in
    /// file order from `seed`'s own stream. An image's new label depends only on `seed`, `p` and
    /// its index, not on any split. Returns the set and how many labels changed. `p` must lie in
    /// `[0, 1)`.
    pub fn with_label_noise(&self, p: f64, seed: u64) -> Result<(ImageSet, usize)> {
        use rand::Rng;
        if !(0.0..1.0).contains(&p) {
            return Err(DataError::InvalidConfig(format!(
                "label noise must lie in [0, 1), got {p}"
            )));
        }
        let mut rng = crate::rng::stream(seed, crate::rng::Purpose::LabelNoise, 0, 0);
        let mut changed = 0;
        let labels: Vec<u8> = self
            .labels
            .iter()
            .map(|&label| {
                // Both draws for every image: the stream stays aligned with the index.
                let (flip, drawn) = (rng.random::<f64>(), rng.random_range(0..self.classes) as u8);
                if p > 0.0 && flip < p {
                    changed += usize::from(drawn != label);
                    drawn
                } else {
                    label
                }
            })
            .collect();
        let set = ImageSet {
            pixels: self.pixels.clone(),
            labels,
            shape: self.shape,
            classes: self.classes,
        };
        Ok((set, changed))
    }

    /// Images and labels; `pixels.len()` must be `labels.len() * shape.pixels()` and every label
    /// below `classes`.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        shape: ImageShape,
        classes: usize,
    ) -> Result<Self> {
        if shape.channels == 0 || shape.height == 0 || shape.width == 0 {
            return Err(DataError::InvalidConfig(format!(
                "image shape {shape} has no pixels"
            )));
        }
        let expected = shape
            .channels
            .checked_mul(shape.height)
            .and_then(|p| p.checked_mul(shape.width))
            .and_then(|p| p.checked_mul(labels.len()));
        if expected != Some(pixels.len()) {
            return Err(DataError::InvalidConfig(format!(
                "{} pixel bytes do not make {} images of {shape}",
                pixels.len(),
                labels.len()
            )));
        }
        if classes == 0 || classes > 256 {
            return Err(DataError::InvalidConfig(format!(
                "the number of classes must be in 1..=256, got {classes}"
            )));
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= classes)
        {
            return Err(DataError::InvalidConfig(format!(
                "image {index} has label {label}, outside 0..{classes}"
            )));
        }
        Ok(ImageSet {
            pixels,
            labels,
            shape,
            classes,
        })
    }

    /// Readers that validated their labels already build the set without a second pass.
    pub(crate) fn from_validated(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        shape: ImageShape,
        classes: usize,
    ) -> Self {
        debug_assert_eq!(pixels.len(), labels.len() * shape.pixels());
        debug_assert!(labels.iter().all(|&l| usize::from(l) < classes));
        ImageSet {
            pixels,
            labels,
            shape,
            classes,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The geometry of every image.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Number of classes; every label is below it.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The pixels of image `index`: `C x H x W` bytes, planar.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn image(&self, index: usize) -> &[u8] {
        let size = self.shape.pixels();
        &self.pixels[index * size..(index + 1) * size]
    }

    /// The label of image `index`.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn label(&self, index: usize) -> u8 {
        self.labels[index]
    }

    /// All labels, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// All pixels, `N x C x H x W`.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// How many images each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &label in &self.labels {
            counts[usize::from(label)] += 1;
        }
        counts
    }

    /// Per-channel mean and standard deviation over the images `indices` (all when `None`), in
    /// `[0, 1]` units. Exact: integer sums of bytes and squared bytes.
    pub fn channel_stats(&self, indices: Option<&[u32]>) -> Vec<ChannelStats> {
        let plane = self.shape.plane();
        let channels = self.shape.channels;
        let mut sums = vec![(0u64, 0u64); channels];
        let mut add = |image: &[u8]| {
            for (channel, sum) in sums.iter_mut().enumerate() {
                let (mut s, mut q) = (0u64, 0u64);
                for &p in &image[channel * plane..(channel + 1) * plane] {
                    let p = u64::from(p);
                    s += p;
                    q += p * p;
                }
                sum.0 += s;
                sum.1 += q;
            }
        };
        let count = match indices {
            Some(indices) => {
                for &i in indices {
                    add(self.image(i as usize));
                }
                indices.len()
            }
            None => {
                for i in 0..self.len() {
                    add(self.image(i));
                }
                self.len()
            }
        };
        let n = (count * plane) as f64;
        sums.into_iter()
            .map(|(s, q)| {
                if count == 0 {
                    return ChannelStats {
                        mean: f64::NAN,
                        std: f64::NAN,
                    };
                }
                let mean = s as f64 / n;
                let variance = (q as f64 / n - mean * mean).max(0.0);
                ChannelStats {
                    mean: mean / 255.0,
                    std: variance.sqrt() / 255.0,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_inconsistent_sizes_and_labels() {
        let shape = ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        };
        assert!(ImageSet::new(vec![0; 7], vec![0, 1], shape, 10).is_err());
        let err = ImageSet::new(vec![0; 8], vec![0, 10], shape, 10).unwrap_err();
        assert!(err.to_string().contains("image 1 has label 10"), "{err}");
        let set = ImageSet::new((0..8).collect(), vec![3, 1], shape, 10).unwrap();
        assert_eq!(set.image(1), &[4, 5, 6, 7]);
        assert_eq!(set.class_counts()[3], 1);
    }

    #[test]
    fn channel_stats_match_a_direct_computation() {
        let shape = ImageShape {
            channels: 2,
            height: 1,
            width: 2,
        };
        // Channel 0 sees 0, 255, 255, 0; channel 1 sees 51 four times.
        let set =
            ImageSet::new(vec![0, 255, 51, 51, 255, 0, 51, 51], vec![0, 0], shape, 1).unwrap();
        let stats = set.channel_stats(None);
        assert!((stats[0].mean - 0.5).abs() < 1e-12);
        assert!((stats[0].std - 0.5).abs() < 1e-12);
        assert!((stats[1].mean - 0.2).abs() < 1e-12);
        assert!(stats[1].std.abs() < 1e-12);
        let first = set.channel_stats(Some(&[1]));
        assert!((first[0].mean - 0.5).abs() < 1e-12);
    }
}
