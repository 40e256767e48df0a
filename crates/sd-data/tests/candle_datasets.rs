//! Our readers and candle-datasets' read the same files to the same data (feature
//! `candle-datasets`; `cargo test -p sd-data --features candle-datasets`).
#![cfg(feature = "candle-datasets")]

use sd_data::candle_datasets::{from_candle, upstream};
use sd_data::fixture::{self, FixtureSpec};
use sd_data::{Dataset, DatasetKind, Format, ImageSet};

/// candle-datasets reads exactly 10,000 records per CIFAR file, so the fixture is tiled to the
/// official size.
fn tile(set: &ImageSet, count: usize) -> ImageSet {
    let pixels: Vec<u8> = (0..count)
        .flat_map(|i| set.image(i % set.len()).to_vec())
        .collect();
    let labels: Vec<u8> = (0..count).map(|i| set.label(i % set.len())).collect();
    ImageSet::new(pixels, labels, set.shape(), 10).unwrap()
}

#[test]
fn both_readers_agree_on_a_cifar_fixture() {
    let (train, test) = fixture::cifar_images(FixtureSpec {
        train: 250,
        test: 70,
        seed: 4,
    });
    let (train, test) = (tile(&train, 50_000), tile(&test, 10_000));
    let dir = tempfile::tempdir().unwrap();
    let batches = fixture::write_cifar(dir.path(), &train, &test, 4).unwrap();
    let ours = Dataset::open(&batches).unwrap();
    let theirs = upstream::vision::cifar::load_dir(&batches).unwrap();
    let theirs = from_candle(&theirs, DatasetKind::Cifar10, Format::CifarBinary, batches).unwrap();
    assert!(ours.train.pixels() == theirs.train.pixels());
    assert_eq!(ours.train.labels(), theirs.train.labels());
    assert!(ours.test.pixels() == theirs.test.pixels());
    assert_eq!(ours.test.labels(), theirs.test.labels());
}

#[test]
fn both_readers_agree_on_an_idx_fixture() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_idx(
        dir.path(),
        FixtureSpec {
            train: 300,
            test: 60,
            seed: 4,
        },
        false,
    )
    .unwrap();
    let ours = Dataset::open(dir.path()).unwrap();
    let theirs = upstream::vision::mnist::load_dir(dir.path()).unwrap();
    let theirs = from_candle(
        &theirs,
        DatasetKind::Mnist,
        Format::Idx,
        dir.path().to_path_buf(),
    )
    .unwrap();
    assert!(ours.train.pixels() == theirs.train.pixels());
    assert_eq!(ours.train.labels(), theirs.train.labels());
    assert!(ours.test.pixels() == theirs.test.pixels());
}
