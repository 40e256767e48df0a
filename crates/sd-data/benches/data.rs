//! Data pipeline benchmarks: decoding CIFAR-10-sized batch files, and making augmented batches.
//!
//! `cargo bench -p sd-data --bench data`. The CIFAR files are a fixture tiled to the official
//! size (50,000 + 10,000 records, 184 MB), written once to a temporary directory; the page
//! cache holds them, as it does after the first epoch of a real run.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sd_data::fixture::{self, FixtureSpec};
use sd_data::{
    BatchLoader, Dataset, ImageSet, LoaderConfig, Normalization, Subset, Transform, cifar,
};

fn tile(set: &ImageSet, count: usize) -> ImageSet {
    let mut pixels = Vec::with_capacity(count * set.shape().pixels());
    for i in 0..count {
        pixels.extend_from_slice(set.image(i % set.len()));
    }
    let labels = (0..count).map(|i| set.label(i % set.len())).collect();
    ImageSet::new(pixels, labels, set.shape(), 10).unwrap()
}

fn official_size_fixture() -> (tempfile::TempDir, std::path::PathBuf, ImageSet) {
    let (train, test) = fixture::cifar_images(FixtureSpec {
        train: 1000,
        test: 1000,
        seed: 1,
    });
    let (train, test) = (tile(&train, 50_000), tile(&test, 10_000));
    let dir = tempfile::tempdir().unwrap();
    let batches = fixture::write_cifar(dir.path(), &train, &test, 1).unwrap();
    // Without the manifest the reader checks the official 10,000 records per file.
    std::fs::remove_file(batches.join(cifar::MANIFEST_FILE)).unwrap();
    (dir, batches, train)
}

fn decode(c: &mut Criterion) {
    let (dir, batches, train) = official_size_fixture();
    let mut group = c.benchmark_group("decode");
    group.sample_size(10);
    group.throughput(Throughput::Elements(60_000));
    group.bench_function("cifar10_binary_60000_records", |b| {
        b.iter(|| black_box(cifar::read_dir(&batches).unwrap()))
    });
    let archive = dir.path().join(cifar::ARCHIVE_NAME);
    let (_, test) = fixture::cifar_images(FixtureSpec {
        train: 0,
        test: 1000,
        seed: 1,
    });
    fixture::write_cifar_archive(&archive, &train, &tile(&test, 10_000), 1).unwrap();
    group.bench_function("cifar10_archive_60000_records", |b| {
        b.iter(|| black_box(cifar::read_archive(&archive).unwrap()))
    });
    let fashion = std::path::Path::new(sd_data::idx::DEBIAN_FASHION_MNIST_DIR);
    if fashion.exists() {
        group.throughput(Throughput::Elements(70_000));
        group.bench_function("fashion_mnist_idx_gz_70000_images", |b| {
            b.iter(|| black_box(Dataset::open(fashion).unwrap()))
        });
    }
    group.finish();
}

fn batches(c: &mut Criterion) {
    let (train, _) = fixture::cifar_images(FixtureSpec {
        train: 1000,
        test: 0,
        seed: 1,
    });
    let images = 20_000;
    let subset = Subset::all(Arc::new(tile(&train, images)));
    let mut group = c.benchmark_group("batches");
    group.sample_size(10);
    group.throughput(Throughput::Elements(images as u64));
    for (name, transform) in [
        (
            "train_transform",
            Transform::train(Normalization::cifar10()),
        ),
        ("test_transform", Transform::test(Normalization::cifar10())),
    ] {
        for workers in [0, 1, 2] {
            let loader = BatchLoader::new(
                subset.clone(),
                &transform,
                LoaderConfig {
                    batch_size: 128,
                    num_workers: workers,
                    ..LoaderConfig::default()
                },
            )
            .unwrap();
            let mut epoch = 0;
            group.bench_function(format!("{name}/batch128/workers{workers}"), |b| {
                b.iter(|| {
                    epoch += 1;
                    for batch in loader.epoch(epoch) {
                        black_box(batch.unwrap());
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode, batches);
criterion_main!(benches);
