//! The batch pipeline: reproducible, complete, and the same with any number of workers.

use std::sync::Arc;

use candle_core::Tensor;
use sd_data::fixture::{self, FixtureSpec};
use sd_data::{
    Batch, BatchLoader, ImageSet, LoaderConfig, Normalization, Shuffle, Subset, Transform,
};

fn images() -> Arc<ImageSet> {
    let (train, _) = fixture::cifar_images(FixtureSpec {
        train: 203,
        test: 1,
        seed: 2,
    });
    Arc::new(train)
}

fn config(workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 32,
        num_workers: workers,
        seed: 11,
        ..LoaderConfig::default()
    }
}

fn collect(loader: &BatchLoader, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).map(Result::unwrap).collect()
}

fn values(tensor: &Tensor) -> Vec<f32> {
    tensor.flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_same_batches(a: &[Batch], b: &[Batch]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.indices, y.indices);
        assert_eq!(values(&x.images), values(&y.images));
        assert_eq!(
            x.labels.to_vec1::<u32>().unwrap(),
            y.labels.to_vec1::<u32>().unwrap()
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_batches_with_any_number_of_workers() {
    let subset = Subset::all(images());
    let transform = Transform::train(Normalization::cifar10());
    let reference = collect(
        &BatchLoader::new(subset.clone(), &transform, config(1)).unwrap(),
        3,
    );
    for workers in [0, 2, 4, 7] {
        let loader = BatchLoader::new(subset.clone(), &transform, config(workers)).unwrap();
        assert_same_batches(&collect(&loader, 3), &reference);
    }
    // Another seed shuffles and augments differently.
    let other = BatchLoader::new(
        subset,
        &transform,
        LoaderConfig {
            seed: 12,
            ..config(4)
        },
    )
    .unwrap();
    assert_ne!(collect(&other, 3)[0].indices, reference[0].indices);
}

#[test]
fn an_epoch_visits_every_image_once_and_keeps_the_last_partial_batch() {
    let subset = Subset::all(images());
    let loader = BatchLoader::new(
        subset.clone(),
        &Transform::test(Normalization::cifar10()),
        config(2),
    )
    .unwrap();
    assert_eq!(loader.len(), 7);
    let batches = collect(&loader, 0);
    let sizes: Vec<usize> = batches.iter().map(|b| b.indices.len()).collect();
    assert_eq!(sizes, [32, 32, 32, 32, 32, 32, 11]);
    let mut seen: Vec<u32> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort();
    assert_eq!(seen, (0..203).collect::<Vec<_>>());

    let dropping = BatchLoader::new(
        subset,
        &Transform::test(Normalization::cifar10()),
        LoaderConfig {
            drop_last: true,
            ..config(2)
        },
    )
    .unwrap();
    assert_eq!((dropping.len(), dropping.images_per_epoch()), (6, 192));
    assert_eq!(collect(&dropping, 0).len(), 6);
}

#[test]
fn tensors_have_the_promised_shapes_types_and_contents() {
    let images = images();
    let subset = Subset::all(images.clone());
    let normalization = Normalization::cifar10();
    let loader =
        BatchLoader::new(subset, &Transform::test(normalization.clone()), config(2)).unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.images.dims(), [32, 3, 32, 32]);
    assert_eq!(batch.images.dtype(), candle_core::DType::F32);
    assert_eq!(batch.labels.dims(), [32]);
    assert_eq!(batch.labels.dtype(), candle_core::DType::U32);
    assert_eq!(batch.one_hot.dims(), [32, 10]);
    let labels: Vec<u32> = batch.labels.to_vec1().unwrap();
    let one_hot: Vec<Vec<f32>> = batch.one_hot.to_vec2().unwrap();
    for (i, (&label, row)) in labels.iter().zip(&one_hot).enumerate() {
        assert_eq!(label, u32::from(images.label(batch.indices[i] as usize)));
        assert_eq!(row.iter().sum::<f32>(), 1.0);
        assert_eq!(row[label as usize], 1.0);
    }
    // The test transform is plain normalization of the stored bytes.
    let first: Vec<f32> = values(&batch.images.get(0).unwrap());
    let bytes = images.image(batch.indices[0] as usize);
    for (k, (&v, &b)) in first.iter().zip(bytes).enumerate() {
        let c = k / 1024;
        let expected = (f32::from(b) / 255.0 - normalization.mean[c]) / normalization.std[c];
        assert!((v - expected).abs() < 1e-6);
    }
}

#[test]
fn shuffle_modes() {
    let subset = Subset::all(images());
    let t = Transform::test(Normalization::cifar10());
    let order = |shuffle, epoch| {
        BatchLoader::new(
            subset.clone(),
            &t,
            LoaderConfig {
                shuffle,
                ..config(0)
            },
        )
        .unwrap()
        .order(epoch)
    };
    assert_ne!(order(Shuffle::EachEpoch, 0), order(Shuffle::EachEpoch, 1));
    assert_eq!(order(Shuffle::Once, 0), order(Shuffle::Once, 5));
    assert_ne!(order(Shuffle::Once, 0), order(Shuffle::Off, 0));
    assert_eq!(order(Shuffle::Off, 4), (0..203).collect::<Vec<_>>());
    // Same order, different epoch: the augmentation still changes (new crops and flips).
    let loader = BatchLoader::new(
        subset,
        &Transform::train(Normalization::cifar10()),
        LoaderConfig {
            shuffle: Shuffle::Once,
            ..config(2)
        },
    )
    .unwrap();
    let (a, b) = (collect(&loader, 0), collect(&loader, 1));
    assert_eq!(a[0].indices, b[0].indices);
    assert_ne!(values(&a[0].images), values(&b[0].images));
}

#[test]
fn augmentation_crops_and_flips_about_half_the_images() {
    let subset = Subset::all(images());
    let loader = BatchLoader::new(
        subset.clone(),
        &Transform {
            crop_padding: 0,
            ..Transform::train(Normalization::cifar10())
        },
        config(2),
    )
    .unwrap();
    let plain = BatchLoader::new(
        subset,
        &Transform::test(Normalization::cifar10()),
        config(2),
    )
    .unwrap();
    let (flipped, plain) = (collect(&loader, 0), collect(&plain, 0));
    let mut flips = 0;
    let mut total = 0;
    for (f, p) in flipped.iter().zip(&plain) {
        for i in 0..f.indices.len() {
            let f = f.images.get(i).unwrap();
            let p = p.images.get(i).unwrap();
            total += 1;
            if values(&f) != values(&p) {
                // The only change allowed is a mirror image.
                assert_eq!(values(&f), values(&p.flip(&[2]).unwrap()));
                flips += 1;
            }
        }
    }
    assert!((70..=133).contains(&flips), "{flips} of {total} flipped");
}

#[test]
fn dropping_an_epoch_early_stops_its_workers() {
    let subset = Subset::all(images());
    let loader = BatchLoader::new(
        subset,
        &Transform::train(Normalization::cifar10()),
        LoaderConfig {
            batch_size: 4,
            num_workers: 3,
            prefetch: 1,
            ..config(3)
        },
    )
    .unwrap();
    for _ in 0..20 {
        let mut epoch = loader.epoch(0);
        let _ = epoch.next().unwrap().unwrap();
        assert_eq!(epoch.remaining(), loader.len() - 1);
        // Dropped here with most batches unmade: must not hang.
    }
}

#[test]
fn refuses_bad_configurations() {
    let subset = Subset::all(images());
    let t = Transform::test(Normalization::cifar10());
    assert!(
        BatchLoader::new(
            subset.clone(),
            &t,
            LoaderConfig {
                batch_size: 0,
                ..config(1)
            }
        )
        .is_err()
    );
    assert!(
        BatchLoader::new(
            subset,
            &t,
            LoaderConfig {
                prefetch: 0,
                ..config(1)
            }
        )
        .is_err()
    );
}
