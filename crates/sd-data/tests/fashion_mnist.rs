//! The real Fashion-MNIST files, where Debian's `dataset-fashion-mnist` package is installed
//! (`.ci/run` installs it). Elsewhere the test says so and passes.

use std::path::Path;

use sd_data::{Dataset, DatasetKind, Normalization, idx};

#[test]
fn reads_the_installed_fashion_mnist_whole() {
    let dir = Path::new(idx::DEBIAN_FASHION_MNIST_DIR);
    if !dir.exists() {
        eprintln!(
            "skipped: {} is absent (apt-get install -y dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let data = Dataset::open(dir).unwrap();
    assert_eq!(data.kind, DatasetKind::FashionMnist);
    assert_eq!((data.train.len(), data.test.len()), (60_000, 10_000));
    assert_eq!(data.train.class_counts(), vec![6000; 10]);
    assert_eq!(data.test.class_counts(), vec![1000; 10]);
    assert_eq!(data.train.shape().to_string(), "1x28x28");
    assert_eq!(data.class_names[9], "Ankle boot");
    // The documented normalization constants are this data's own, to the 4 decimals given.
    let stats = data.train.channel_stats(None);
    let constants = Normalization::fashion_mnist();
    assert!(
        (stats[0].mean - f64::from(constants.mean[0])).abs() < 5e-5,
        "{stats:?}"
    );
    assert!(
        (stats[0].std - f64::from(constants.std[0])).abs() < 5e-5,
        "{stats:?}"
    );
}
