//! Training, validation and test splits as index lists over shared images.

use std::sync::Arc;

use rand::seq::SliceRandom;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::images::ImageSet;
use crate::rng::{Purpose, stream};

/// Some images of an [`ImageSet`], by index (in increasing order when made by [`Splits`]; in
/// the order given by [`Subset::new`]). Cheap to clone: the images and the indices are shared.
#[derive(Debug, Clone)]
pub struct Subset {
    images: Arc<ImageSet>,
    indices: Arc<[u32]>,
}

impl Subset {
    /// Every image of `images`.
    pub fn all(images: Arc<ImageSet>) -> Self {
        let indices = (0..images.len() as u32).collect();
        Subset { images, indices }
    }

    /// The images at `indices` (each below `images.len()`; kept in the order given).
    pub fn new(images: Arc<ImageSet>, indices: Vec<u32>) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= images.len()) {
            return Err(DataError::InvalidConfig(format!(
                "index {bad} is out of range for {} images",
                images.len()
            )));
        }
        Ok(Subset {
            images,
            indices: indices.into(),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether it has no images.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Indices into [`Subset::images`].
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// The underlying images (all of them, not only this subset's).
    pub fn images(&self) -> &Arc<ImageSet> {
        &self.images
    }

    /// The labels of this subset, in its order.
    pub fn labels(&self) -> Vec<u8> {
        self.indices
            .iter()
            .map(|&i| self.images.label(i as usize))
            .collect()
    }

    /// How many images of each class it has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.images.classes()];
        for &i in self.indices.iter() {
            counts[usize::from(self.images.label(i as usize))] += 1;
        }
        counts
    }

    /// The first `count` images, balanced across classes: walking in order, each class keeps at
    /// most `count / classes` images (the first `count % classes` classes one more); if a class
    /// runs short, the earliest images not yet taken fill the gap. The order is kept.
    pub fn first_balanced(&self, count: usize) -> Result<Subset> {
        if count > self.len() {
            return Err(DataError::InvalidConfig(format!(
                "cannot keep {count} images of a split that has {}",
                self.len()
            )));
        }
        let classes = self.images.classes();
        let quota = |class: usize| count / classes + usize::from(class < count % classes);
        let mut taken = vec![false; self.len()];
        let mut per_class = vec![0usize; classes];
        let mut kept = 0;
        for (position, &index) in self.indices.iter().enumerate() {
            if kept == count {
                break;
            }
            let class = usize::from(self.images.label(index as usize));
            if per_class[class] < quota(class) {
                per_class[class] += 1;
                taken[position] = true;
                kept += 1;
            }
        }
        for flag in taken.iter_mut() {
            if kept == count {
                break;
            }
            if !*flag {
                *flag = true;
                kept += 1;
            }
        }
        let indices = self
            .indices
            .iter()
            .zip(&taken)
            .filter(|&(_, &t)| t)
            .map(|(&i, _)| i)
            .collect::<Vec<_>>();
        Ok(Subset {
            images: self.images.clone(),
            indices: indices.into(),
        })
    }
}

/// Where validation images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Validation {
    /// Held out of the training set: `size` images, stratified by class, drawn with the split
    /// seed. `size = 0` means no validation split.
    Holdout {
        /// How many images.
        size: usize,
    },
    /// The test set, as the original code did (its "validation" accuracy is test accuracy).
    TestSet,
}

impl Default for Validation {
    /// 5,000 held-out training images.
    fn default() -> Self {
        Validation::Holdout { size: 5000 }
    }
}

/// How to split a data set.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct SplitConfig {
    /// Where validation images come from.
    pub validation: Validation,
    /// Seed of the held-out draw.
    pub seed: u64,
    /// Keep only the first N training images, balanced across classes.
    pub limit_train: Option<usize>,
    /// Keep only the first N validation images, balanced across classes.
    pub limit_val: Option<usize>,
    /// Keep only the first N test images, balanced across classes.
    pub limit_test: Option<usize>,
    /// Symmetric label noise on the training set's labels ([`ImageSet::with_label_noise`]),
    /// before the split: held-out validation images get it too, as a practitioner's held-out
    /// labels are as noisy as the rest; test labels never (nor validation on the test set).
    pub label_noise: f64,
    /// Seed of the label noise.
    pub noise_seed: u64,
}

/// The three splits.
#[derive(Debug, Clone)]
pub struct Splits {
    /// What training sees.
    pub train: Subset,
    /// What model selection sees.
    pub val: Subset,
    /// What the final accuracy is measured on.
    pub test: Subset,
    /// Training-set labels the noise changed (training and held-out validation images alike).
    pub labels_changed: usize,
}

impl Splits {
    /// Splits `dataset` as `config` says. The held-out images are stratified: each class gives
    /// its share of `size` (largest remainders rounded up), drawn at random with `config.seed`;
    /// the training split is the rest. Limits apply after the split.
    pub fn new(dataset: &Dataset, config: &SplitConfig) -> Result<Splits> {
        let (train_set, labels_changed) = if config.label_noise == 0.0 {
            (dataset.train.clone(), 0)
        } else {
            let (set, changed) = dataset
                .train
                .with_label_noise(config.label_noise, config.noise_seed)?;
            (Arc::new(set), changed)
        };
        let train_all = Subset::all(train_set);
        let test = Subset::all(dataset.test.clone());
        let (train, val) = match config.validation {
            Validation::TestSet => (train_all, test.clone()),
            Validation::Holdout { size } => holdout(&train_all, size, config.seed)?,
        };
        let limit = |subset: Subset, limit: Option<usize>, name: &str| match limit {
            None => Ok(subset),
            Some(n) => subset
                .first_balanced(n)
                .map_err(|e| DataError::InvalidConfig(format!("{name} split: {e}"))),
        };
        Ok(Splits {
            train: limit(train, config.limit_train, "training")?,
            val: limit(val, config.limit_val, "validation")?,
            test: limit(test, config.limit_test, "test")?,
            labels_changed,
        })
    }
}

fn holdout(all: &Subset, size: usize, seed: u64) -> Result<(Subset, Subset)> {
    let n = all.len();
    if size >= n && size > 0 {
        return Err(DataError::InvalidConfig(format!(
            "a validation split of {size} leaves nothing of the {n} training images"
        )));
    }
    let counts = all.class_counts();
    // Stratified quotas: floor of the proportional share, then the largest remainders.
    let mut quotas: Vec<usize> = counts.iter().map(|&c| size * c / n.max(1)).collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse((size * counts[c]) % n.max(1)), c));
    let mut missing = size - quotas.iter().sum::<usize>();
    for &c in &order {
        if missing == 0 {
            break;
        }
        if quotas[c] < counts[c] {
            quotas[c] += 1;
            missing -= 1;
        }
    }
    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); counts.len()];
    for &i in all.indices() {
        by_class[usize::from(all.images().label(i as usize))].push(i);
    }
    let mut in_val = vec![false; all.images().len()];
    for (class, members) in by_class.iter_mut().enumerate() {
        members.shuffle(&mut stream(seed, Purpose::Split, class as u64, 0));
        for &i in &members[..quotas[class]] {
            in_val[i as usize] = true;
        }
    }
    let (val, train): (Vec<u32>, Vec<u32>) =
        all.indices().iter().partition(|&&i| in_val[i as usize]);
    Ok((
        Subset::new(all.images().clone(), train)?,
        Subset::new(all.images().clone(), val)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::ImageShape;

    fn set(labels: Vec<u8>) -> Arc<ImageSet> {
        let shape = ImageShape {
            channels: 1,
            height: 1,
            width: 1,
        };
        Arc::new(ImageSet::new(vec![0; labels.len()], labels, shape, 3).unwrap())
    }

    #[test]
    fn first_balanced_takes_the_first_of_each_class() {
        let all = Subset::all(set(vec![0, 0, 0, 1, 0, 2, 1, 2, 2, 1]));
        let kept = all.first_balanced(6).unwrap();
        assert_eq!(kept.indices(), &[0, 1, 3, 5, 6, 7]);
        assert_eq!(kept.class_counts(), [2, 2, 2]);
        // 7 = 3 + 2 + 2: class 0 gets the extra one.
        assert_eq!(all.first_balanced(7).unwrap().class_counts(), [3, 2, 2]);
        // Class 0 has only 1 image: the gap is filled with the earliest others.
        let short = Subset::all(set(vec![1, 1, 1, 0, 2, 2, 2]));
        let kept = short.first_balanced(6).unwrap();
        assert_eq!(kept.len(), 6);
        assert_eq!(kept.indices(), &[0, 1, 2, 3, 4, 5]);
        assert!(all.first_balanced(11).is_err());
    }

    #[test]
    fn label_noise_is_symmetric_seeded_and_reaches_no_test_label() {
        let labels: Vec<u8> = (0..30_000).map(|i| (i % 3) as u8).collect();
        let train = set(labels.clone());
        let (noisy, changed) = train.with_label_noise(0.3, 5).unwrap();
        let differ = labels
            .iter()
            .zip(noisy.labels())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differ, changed);
        // Replaced with probability 0.3 by one of 3 classes: changed with probability 0.2.
        let rate = changed as f64 / labels.len() as f64;
        assert!((rate - 0.2).abs() < 0.01, "{rate}");
        // The same seed, the same labels; another seed, others.
        assert_eq!(
            train.with_label_noise(0.3, 5).unwrap().0.labels(),
            noisy.labels()
        );
        assert_ne!(
            train.with_label_noise(0.3, 6).unwrap().0.labels(),
            noisy.labels()
        );
        assert!(train.with_label_noise(1.0, 5).is_err());
        assert_eq!(train.with_label_noise(0.0, 5).unwrap().1, 0);

        // Through a split: training and held-out labels noisy, test labels as they were.
        let test = set((0..300).map(|i| (i % 3) as u8).collect());
        let dataset = Dataset {
            kind: crate::dataset::DatasetKind::Mnist,
            format: crate::dataset::Format::Idx,
            source: "memory".into(),
            train: train.clone(),
            test: test.clone(),
            class_names: vec!["a".into(), "b".into(), "c".into()],
            is_fixture: true,
        };
        let config = SplitConfig {
            validation: Validation::Holdout { size: 3000 },
            label_noise: 0.3,
            noise_seed: 5,
            ..SplitConfig::default()
        };
        let splits = Splits::new(&dataset, &config).unwrap();
        assert_eq!(splits.labels_changed, changed);
        for subset in [&splits.train, &splits.val] {
            for &i in subset.indices() {
                assert_eq!(
                    subset.images().label(i as usize),
                    noisy.labels()[i as usize]
                );
            }
        }
        assert_eq!(splits.test.labels(), test.labels());
    }

    #[test]
    fn holdout_is_stratified_disjoint_and_seeded() {
        let labels: Vec<u8> = (0..300).map(|i| (i % 3) as u8).collect();
        let all = Subset::all(set(labels));
        let (train, val) = holdout(&all, 30, 7).unwrap();
        assert_eq!(val.class_counts(), [10, 10, 10]);
        assert_eq!(train.len() + val.len(), 300);
        let mut union: Vec<u32> = train
            .indices()
            .iter()
            .chain(val.indices())
            .copied()
            .collect();
        union.sort();
        assert_eq!(union, (0..300).collect::<Vec<_>>());
        let (_, again) = holdout(&all, 30, 7).unwrap();
        assert_eq!(again.indices(), val.indices());
        let (_, other) = holdout(&all, 30, 8).unwrap();
        assert_ne!(other.indices(), val.indices());
        // 31 = 11 + 10 + 10.
        let (_, val) = holdout(&all, 31, 7).unwrap();
        assert_eq!(val.len(), 31);
        assert!(holdout(&all, 300, 7).is_err());
        assert_eq!(holdout(&all, 0, 7).unwrap().1.len(), 0);
    }
}
