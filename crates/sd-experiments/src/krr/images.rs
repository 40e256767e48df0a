//! An image data set (Fashion-MNIST, MNIST, CIFAR-10, through `sd-data`) as a kernel ridge
//! problem: pixels scaled to `[0, 1]` and flattened, one-hot targets, predictions classified by
//! argmax.
//!
//! The choices, fixed and documented (docs/cli.md):
//! - **Training images:** the first `train_size` of the training file in file order, or, with
//!   `subset_seed`, a seeded random subset (ChaCha8 from the seed; the same seed gives the same
//!   images). The test images are chosen the same way from the test file.
//! - **Validation:** the last `val_size` of the chosen training images are held out for choosing
//!   alpha (Algorithm 1); the model trains on the rest. By default none for a fixed alpha and a
//!   tenth for `alpha = auto`.
//! - **Label noise:** each chosen training image's label (validation images included, as a
//!   practitioner's held-out labels are as noisy as the rest) is replaced with probability `p`
//!   by a class drawn uniformly from all classes (so it may stay the same). Test labels are never
//!   touched.
//! - **Standardization** (optional): each feature centred and scaled by the training images'
//!   mean and standard deviation (a constant feature is only centred).

use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sd_data::{Dataset, ImageSet};
use sd_kernel::faer::{Mat, MatRef};
use serde::Serialize;

use crate::error::{Error, Result};

/// Where the images come from and how they are chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageSource {
    /// The data set: an IDX directory or a CIFAR-10 directory or archive.
    pub path: PathBuf,
    /// Training images to take (`None`: all).
    pub train_size: Option<usize>,
    /// Test images to take (`None`: all).
    pub test_size: Option<usize>,
    /// Validation images held out of the chosen training images (`None`: 0 for a fixed alpha,
    /// a tenth for `alpha = auto`).
    pub val_size: Option<usize>,
    /// A seeded random subset instead of the first images in file order.
    pub subset_seed: Option<u64>,
    /// Probability that a training label is replaced by a uniformly drawn class, in `[0, 1)`.
    pub label_noise: f64,
    /// Seed of the label noise.
    pub noise_seed: u64,
    /// Centre and scale each feature by the training images' statistics.
    pub standardize: bool,
}

/// One split: inputs, one-hot targets, labels.
#[derive(Debug, Clone)]
pub struct Split {
    /// Inputs, one image per row.
    pub x: Mat<f64>,
    /// One-hot targets.
    pub y: Mat<f64>,
    /// Labels (the targets' argmax).
    pub labels: Vec<u8>,
}

/// The problem `krr --images` solves.
#[derive(Debug, Clone)]
pub struct ImageProblem {
    /// Training images (labels after noise).
    pub train: Split,
    /// Validation images, held out of the training images (labels after noise); may be empty.
    pub val: Split,
    /// Test images (labels as in the file).
    pub test: Split,
    /// Class names, one per output.
    pub class_names: Vec<String>,
    /// Training and validation labels the noise changed.
    pub labels_changed: usize,
    /// What was read and how, in words.
    pub description: String,
}

/// The validation size when none is given: 0 for a fixed alpha, a tenth (at least 1) for auto.
pub fn default_val_size(chosen: usize, auto: bool) -> usize {
    if auto { (chosen / 10).max(1) } else { 0 }
}

/// Reads the data set and builds the problem, refusing sizes that do not fit it.
pub fn load(source: &ImageSource, auto: bool) -> Result<ImageProblem> {
    if !(0.0..1.0).contains(&source.label_noise) {
        return Err(Error::setting(
            "label_noise",
            format!("must lie in [0, 1), got {}", source.label_noise),
        ));
    }
    for (field, size) in [
        ("train_size", source.train_size),
        ("test_size", source.test_size),
    ] {
        if size == Some(0) {
            return Err(Error::setting(
                field,
                "must be at least 1 (leave it out for all images)",
            ));
        }
    }
    let dataset = Dataset::open(&source.path)?;
    let pick = |set: &ImageSet, size: Option<usize>, field: &'static str, salt: u64| {
        let available = set.len();
        let size = size.unwrap_or(available);
        if size > available {
            return Err(Error::setting(
                field,
                format!(
                    "{size} is more than the {available} images of {}",
                    source.path.display()
                ),
            ));
        }
        let mut indices: Vec<usize> = (0..available).collect();
        if let Some(seed) = source.subset_seed {
            indices.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ salt));
        }
        indices.truncate(size);
        Ok(indices)
    };
    let chosen = pick(&dataset.train, source.train_size, "train_size", 0)?;
    let test_indices = pick(&dataset.test, source.test_size, "test_size", 1)?;
    let val_size = source
        .val_size
        .unwrap_or_else(|| default_val_size(chosen.len(), auto));
    if val_size >= chosen.len() {
        return Err(Error::setting(
            "val_size",
            format!(
                "{val_size} leaves no training images of the {} chosen",
                chosen.len()
            ),
        ));
    }
    if auto && val_size == 0 {
        return Err(Error::setting(
            "val_size",
            "must be at least 1 with alpha auto: each step's alpha is chosen on it",
        ));
    }
    let classes = dataset.classes();
    // Label noise on the chosen training images, in their order.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(source.noise_seed);
    let mut labels_changed = 0;
    let noisy: Vec<u8> = chosen
        .iter()
        .map(|&i| {
            let label = dataset.train.label(i);
            if source.label_noise > 0.0 && rng.random::<f64>() < source.label_noise {
                let drawn = rng.random_range(0..classes) as u8;
                labels_changed += usize::from(drawn != label);
                drawn
            } else {
                label
            }
        })
        .collect();
    let split = |set: &ImageSet, indices: &[usize], labels: &[u8]| -> Split {
        let d = set.shape().pixels();
        Split {
            x: Mat::from_fn(indices.len(), d, |r, c| {
                f64::from(set.image(indices[r])[c]) / 255.0
            }),
            y: Mat::from_fn(indices.len(), classes, |r, c| {
                f64::from(usize::from(labels[r]) == c)
            }),
            labels: labels.to_vec(),
        }
    };
    let n_train = chosen.len() - val_size;
    let mut train = split(&dataset.train, &chosen[..n_train], &noisy[..n_train]);
    let mut val = split(&dataset.train, &chosen[n_train..], &noisy[n_train..]);
    let test_labels: Vec<u8> = test_indices
        .iter()
        .map(|&i| dataset.test.label(i))
        .collect();
    let mut test = split(&dataset.test, &test_indices, &test_labels);
    if source.standardize {
        standardize(&mut train.x, [&mut val.x, &mut test.x]);
    }
    let how = match source.subset_seed {
        Some(seed) => format!("a random subset (seed {seed})"),
        None => "the first in file order".into(),
    };
    let description = format!(
        "{} ({}): {} training images{}, {} test images, {how}; pixels / 255{}; label noise {}{}",
        source.path.display(),
        dataset.kind,
        train.x.nrows(),
        if val_size > 0 {
            format!(" + {val_size} validation images held out")
        } else {
            String::new()
        },
        test.x.nrows(),
        if source.standardize {
            ", standardized"
        } else {
            ""
        },
        source.label_noise,
        if source.label_noise > 0.0 {
            format!(
                " (seed {}, {labels_changed} labels changed)",
                source.noise_seed
            )
        } else {
            String::new()
        },
    );
    Ok(ImageProblem {
        train,
        val,
        test,
        class_names: dataset.class_names.clone(),
        labels_changed,
        description,
    })
}

/// Centres and scales every column of `train` and `others` by `train`'s mean and standard
/// deviation (a column with none is only centred).
fn standardize<const N: usize>(train: &mut Mat<f64>, others: [&mut Mat<f64>; N]) {
    let n = train.nrows().max(1) as f64;
    let stats: Vec<(f64, f64)> = (0..train.ncols())
        .map(|c| {
            let column = train.col(c);
            let mean = column.iter().sum::<f64>() / n;
            let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let sd = var.sqrt();
            (mean, if sd > 0.0 { sd } else { 1.0 })
        })
        .collect();
    for m in std::iter::once(train).chain(others) {
        for (c, &(mean, sd)) in stats.iter().enumerate() {
            for v in m.col_mut(c).iter_mut() {
                *v = (*v - mean) / sd;
            }
        }
    }
}

/// The share of rows whose largest prediction is at the label's column.
pub fn accuracy(predictions: MatRef<'_, f64>, labels: &[u8]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    let correct = (0..predictions.nrows())
        .filter(|&r| {
            let mut best = 0;
            for c in 1..predictions.ncols() {
                if predictions[(r, c)] > predictions[(r, best)] {
                    best = c;
                }
            }
            best == usize::from(labels[r])
        })
        .count();
    correct as f64 / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(dir: &std::path::Path) -> PathBuf {
        let path = dir.join("fx");
        sd_data::fixture::write_idx(
            &path,
            sd_data::fixture::FixtureSpec {
                train: 200,
                test: 50,
                seed: 0,
            },
            false,
        )
        .unwrap();
        path
    }

    fn source(path: PathBuf) -> ImageSource {
        ImageSource {
            path,
            train_size: Some(100),
            test_size: None,
            val_size: None,
            subset_seed: None,
            label_noise: 0.0,
            noise_seed: 0,
            standardize: false,
        }
    }

    #[test]
    fn images_become_scaled_rows_and_one_hot_targets() {
        let dir = tempfile::tempdir().unwrap();
        let data = fixture(dir.path());
        let problem = load(&source(data.clone()), false).unwrap();
        assert_eq!(
            (problem.train.x.nrows(), problem.train.x.ncols()),
            (100, 784)
        );
        assert_eq!(problem.val.x.nrows(), 0);
        assert_eq!((problem.test.x.nrows(), problem.test.y.ncols()), (50, 10));
        let raw = Dataset::open(&data).unwrap();
        // The first images in file order, pixels / 255, one-hot of their labels.
        assert_eq!(
            problem.train.x[(3, 400)],
            f64::from(raw.train.image(3)[400]) / 255.0
        );
        assert_eq!(problem.train.labels[..5], raw.train.labels()[..5]);
        for r in 0..100 {
            let row: Vec<f64> = (0..10).map(|c| problem.train.y[(r, c)]).collect();
            assert_eq!(row.iter().sum::<f64>(), 1.0);
            assert_eq!(row[usize::from(problem.train.labels[r])], 1.0);
        }
        // Auto holds a tenth out: the last 10 of the 100.
        let auto = load(&source(data.clone()), true).unwrap();
        assert_eq!((auto.train.x.nrows(), auto.val.x.nrows()), (90, 10));
        assert_eq!(auto.val.labels[..], raw.train.labels()[90..100]);
    }

    #[test]
    fn noise_touches_training_labels_only_at_the_rate_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut noisy = source(fixture(dir.path()));
        noisy.train_size = None;
        noisy.label_noise = 0.5;
        noisy.noise_seed = 3;
        let problem = load(&noisy, false).unwrap();
        let clean = load(&source(noisy.path.clone()), false).unwrap();
        assert_eq!(problem.test.labels, clean.test.labels);
        // A label is redrawn with probability 0.5 and lands on another class 9 times in 10.
        let changed = problem.labels_changed;
        assert!((60..=120).contains(&changed), "{changed} of 200");
        assert!(problem.description.contains("label noise 0.5 (seed 3"));
        // Same seed, same labels; the subset seed picks other images.
        assert_eq!(
            load(&noisy, false).unwrap().train.labels,
            problem.train.labels
        );
        noisy.label_noise = 0.0;
        noisy.subset_seed = Some(1);
        noisy.train_size = Some(100);
        let subset = load(&noisy, false).unwrap();
        assert_ne!(subset.train.labels, clean.train.labels);
    }

    #[test]
    fn sizes_that_do_not_fit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = source(fixture(dir.path()));
        let refused = |change: &dyn Fn(&mut ImageSource), auto: bool| -> String {
            let mut source = base.clone();
            change(&mut source);
            load(&source, auto).unwrap_err().to_string()
        };
        assert!(refused(&|s| s.train_size = Some(0), false).contains("at least 1"));
        assert!(refused(&|s| s.train_size = Some(201), false).contains("more than the 200"));
        assert!(refused(&|s| s.val_size = Some(100), false).contains("leaves no training"));
        assert!(refused(&|s| s.val_size = Some(0), true).contains("alpha auto"));
        assert!(refused(&|s| s.label_noise = 1.0, false).contains("[0, 1)"));
        assert!(refused(&|s| s.label_noise = -0.1, false).contains("[0, 1)"));
    }

    #[test]
    fn standardized_training_columns_have_mean_0_and_sd_1() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = source(fixture(dir.path()));
        source.standardize = true;
        let problem = load(&source, false).unwrap();
        let column = problem.train.x.col(400);
        let n = column.nrows() as f64;
        let mean = column.iter().sum::<f64>() / n;
        let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!(
            mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-9,
            "{mean} {var}"
        );
    }

    #[test]
    fn accuracy_is_the_share_of_argmax_hits() {
        let predictions = Mat::from_fn(4, 3, |r, c| if (r + c) % 3 == 0 { 1.0 } else { 0.0 });
        // Row argmax: 0, 2, 1, 0.
        assert_eq!(accuracy(predictions.as_ref(), &[0, 2, 0, 0]), 0.75);
    }
}
