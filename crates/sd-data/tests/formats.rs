//! Reading the real file formats: fixtures round-trip, layouts are recognised, and every kind of
//! damage is a named error.

use sd_data::cifar::{self, RECORD_BYTES};
use sd_data::fixture::{self, FixtureSpec};
use sd_data::{DataError, Dataset, DatasetKind, Format, ImageSet, idx};
use std::io::Write;

const SPEC: FixtureSpec = FixtureSpec {
    train: 203,
    test: 37,
    seed: 5,
};

fn assert_same(a: &ImageSet, b: &ImageSet) {
    assert_eq!(a.shape(), b.shape());
    assert_eq!(a.labels(), b.labels());
    assert!(a.pixels() == b.pixels(), "pixels differ");
}

#[test]
fn a_cifar_fixture_reads_back_identically_from_every_layout() {
    let (train, test) = fixture::cifar_images(SPEC);
    let dir = tempfile::tempdir().unwrap();
    let batches = fixture::write_cifar10(dir.path(), SPEC).unwrap();
    fixture::write_cifar10_archive(dir.path().join("fixture.tar.gz"), SPEC).unwrap();
    for (path, format) in [
        (dir.path().to_path_buf(), Format::CifarBinary),
        (batches.clone(), Format::CifarBinary),
        (dir.path().join("fixture.tar.gz"), Format::CifarArchive),
    ] {
        let data = Dataset::open(&path).unwrap();
        assert_eq!(
            (data.format, data.kind),
            (format, DatasetKind::Cifar10),
            "{path:?}"
        );
        assert!(data.is_fixture);
        assert_same(&data.train, &train);
        assert_same(&data.test, &test);
        assert_eq!(data.class_names[3], "class_3");
    }
    // The archive under its official name inside a directory is found too.
    let other = tempfile::tempdir().unwrap();
    fixture::write_cifar10_archive(other.path().join(cifar::ARCHIVE_NAME), SPEC).unwrap();
    assert_eq!(
        Dataset::open(other.path()).unwrap().format,
        Format::CifarArchive
    );
    // 203 training records over five files: 41, 41, 41, 40, 40.
    let sizes: Vec<u64> = cifar::TRAIN_FILES
        .iter()
        .map(|f| std::fs::metadata(batches.join(f)).unwrap().len() / RECORD_BYTES as u64)
        .collect();
    assert_eq!(sizes, [41, 41, 41, 40, 40]);
}

#[test]
fn an_idx_fixture_reads_back_identically_compressed_or_not() {
    let (train, test) = fixture::mnist_images(SPEC);
    for gzip in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fashion-fixture");
        fixture::write_idx(&path, SPEC, gzip).unwrap();
        let data = Dataset::open(&path).unwrap();
        assert_eq!(
            (data.format, data.kind),
            (Format::Idx, DatasetKind::FashionMnist)
        );
        assert_same(&data.train, &train);
        assert_same(&data.test, &test);
    }
}

#[test]
fn fixture_classes_are_balanced_and_separable() {
    let (train, test) = fixture::cifar_images(FixtureSpec {
        train: 500,
        test: 200,
        seed: 9,
    });
    assert_eq!(train.class_counts(), vec![50; 10]);
    // A nearest-class-mean classifier on raw pixels must do well: the structure is learnable.
    let size = train.shape().pixels();
    let mut means = vec![vec![0f64; size]; 10];
    for i in 0..train.len() {
        let mean = &mut means[usize::from(train.label(i))];
        for (m, &p) in mean.iter_mut().zip(train.image(i)) {
            *m += f64::from(p) / 50.0;
        }
    }
    let correct = (0..test.len())
        .filter(|&i| {
            let distance = |m: &Vec<f64>| -> f64 {
                m.iter()
                    .zip(test.image(i))
                    .map(|(a, &b)| (a - f64::from(b)).powi(2))
                    .sum()
            };
            let best = (0..10)
                .min_by(|&a, &b| distance(&means[a]).total_cmp(&distance(&means[b])))
                .unwrap();
            best == usize::from(test.label(i))
        })
        .count();
    assert!(correct >= 190, "nearest mean got {correct}/200");
}

fn cifar_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let batches = fixture::write_cifar10(dir.path(), SPEC).unwrap();
    (dir, batches)
}

#[test]
fn a_missing_batch_file_is_named() {
    let (dir, batches) = cifar_dir();
    std::fs::remove_file(batches.join("data_batch_4.bin")).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("data_batch_4.bin: missing"), "{message}");
    assert!(message.contains("cifar-10-binary.tar.gz"), "{message}");
}

#[test]
fn a_truncated_batch_file_names_the_file_and_record() {
    let (dir, batches) = cifar_dir();
    let file = batches.join("data_batch_2.bin");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..RECORD_BYTES * 10 + 17]).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TruncatedRecord {
                record: 10,
                tail: 17,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("data_batch_2.bin"), "{err}");
}

#[test]
fn an_oversized_batch_file_is_refused() {
    let (dir, batches) = cifar_dir();
    let file = batches.join("test_batch.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_within(..RECORD_BYTES);
    std::fs::write(&file, bytes).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::RecordCount {
                found: 38,
                expected: 37,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("test_batch.bin"));
}

#[test]
fn without_a_manifest_the_official_record_count_is_required() {
    let (dir, batches) = cifar_dir();
    std::fs::remove_file(batches.join(cifar::MANIFEST_FILE)).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::RecordCount {
                expected: 10_000,
                ..
            }
        ),
        "{err}"
    );
    // Home-made subsets can opt out of the count check.
    let data = cifar::read_dir_with(&batches, cifar::RecordCount::Any).unwrap();
    assert_eq!(data.train.len(), 203);
}

#[test]
fn a_label_out_of_range_on_disk_names_the_record() {
    let (dir, batches) = cifar_dir();
    let file = batches.join("data_batch_5.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[RECORD_BYTES * 3] = 200;
    std::fs::write(&file, bytes).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                record: 3,
                label: 200,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("data_batch_5.bin"));
}

#[test]
fn a_damaged_archive_is_blamed_on_the_right_layer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cifar.tar.gz");
    fixture::write_cifar10_archive(&path, SPEC).unwrap();
    let good = std::fs::read(&path).unwrap();

    // Bytes changed in the middle of the deflate stream: the gzip layer fails (bad data or CRC).
    let mut corrupt = good.clone();
    let middle = corrupt.len() / 2;
    for byte in &mut corrupt[middle..middle + 64] {
        *byte ^= 0x5a;
    }
    std::fs::write(&path, &corrupt).unwrap();
    let err = Dataset::open(&path).unwrap_err();
    assert!(
        matches!(err, DataError::Gzip { .. } | DataError::Tar { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cifar.tar.gz"), "{err}");

    // Cut short: gzip's stream ends early.
    std::fs::write(&path, &good[..good.len() / 3]).unwrap();
    let err = Dataset::open(&path).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err}");

    // Valid gzip around something that is not a tar archive.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&[0x42; 3000]).unwrap();
    std::fs::write(&path, gzip.finish().unwrap()).unwrap();
    let err = Dataset::open(&path).unwrap_err();
    assert!(matches!(err, DataError::Tar { .. }), "{err}");

    // A valid archive that lacks a member.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut archive = tar::Builder::new(&mut gzip);
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_cksum();
        archive
            .append_data(
                &mut header,
                "cifar-10-batches-bin/readme.html",
                &b"hi\n"[..],
            )
            .unwrap();
        archive.finish().unwrap();
    }
    std::fs::write(&path, gzip.finish().unwrap()).unwrap();
    let err = Dataset::open(&path).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("data_batch_1.bin"), "{err}");
}

/// Builds a `.tar.gz` from `(name, declared size, data)` members, headers taken at their word.
fn archive(members: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut builder = tar::Builder::new(&mut gzip);
        for &(name, size, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_path(name).unwrap();
            header.set_size(size);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.finish().unwrap();
    }
    gzip.finish().unwrap()
}

#[test]
fn archive_headers_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cifar.tar.gz");
    // A member claiming 2^40 records with one record of data: an error, not a 3 PB allocation.
    let record = [0u8; RECORD_BYTES];
    std::fs::write(
        &path,
        archive(&[(
            "cifar-10-batches-bin/data_batch_1.bin",
            (RECORD_BYTES as u64) << 40,
            &record,
        )]),
    )
    .unwrap();
    let err = Dataset::open(&path).unwrap_err();
    assert!(
        matches!(err, DataError::EndedEarly { .. } | DataError::Tar { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cifar.tar.gz"), "{err}");

    // Two members of the same name: refused, not silently replaced.
    let two = [RECORD_BYTES as u64, RECORD_BYTES as u64];
    std::fs::write(
        &path,
        archive(&[
            ("a/test_batch.bin", two[0], &record),
            ("b/test_batch.bin", two[1], &record),
        ]),
    )
    .unwrap();
    let err = Dataset::open(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("a second member named test_batch.bin"),
        "{err}"
    );
}

#[test]
fn a_cut_off_gzip_trailer_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cifar.tar.gz");
    fixture::write_cifar10_archive(&path, SPEC).unwrap();
    let good = std::fs::read(&path).unwrap();
    // Only the CRC and length at the very end are missing: tar alone would not notice.
    std::fs::write(&path, &good[..good.len() - 6]).unwrap();
    let err = Dataset::open(&path).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err}");
}

#[test]
fn an_idx_header_bounds_what_is_read() {
    let dir = idx_dir();
    // One 28 x 28 image announced, 10 MB of zeros delivered (compressed to a few kB).
    let mut bytes = Vec::new();
    for w in [idx::IMAGES_MAGIC, 1, 28, 28] {
        bytes.extend_from_slice(&w.to_be_bytes());
    }
    bytes.resize(bytes.len() + (10 << 20), 0);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&bytes).unwrap();
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte.gz"),
        gzip.finish().unwrap(),
    )
    .unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::IdxDimensions { .. }), "{err}");
    assert!(err.to_string().contains("trailing bytes"), "{err}");
}

fn idx_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_idx(dir.path(), SPEC, false).unwrap();
    dir
}

#[test]
fn idx_damage_is_named() {
    let dir = idx_dir();
    let labels = dir.path().join("t10k-labels-idx1-ubyte");
    let images = dir.path().join("t10k-images-idx3-ubyte");

    // Fewer labels than images.
    std::fs::write(&labels, idx::encode_labels(&[1; 30])).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                images: 37,
                labels: 30,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte"));

    // A label file where the images should be.
    std::fs::write(&images, idx::encode_labels(&[1; 37])).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::IdxMagic { .. }), "{err}");
    assert!(err.to_string().contains("t10k-images-idx3-ubyte"));

    // A truncated image file.
    let train = dir.path().join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&train).unwrap();
    std::fs::write(&train, &bytes[..bytes.len() - 5]).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::IdxDimensions { .. }), "{err}");

    // A missing file.
    std::fs::remove_file(&train).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("dataset-fashion-mnist"), "{err}");
}

#[test]
fn a_corrupt_gzip_idx_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_idx(dir.path(), SPEC, true).unwrap();
    let file = dir.path().join("train-images-idx3-ubyte.gz");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    std::fs::write(&file, bytes).unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err}");
    assert!(
        err.to_string().contains("train-images-idx3-ubyte.gz"),
        "{err}"
    );
}

#[test]
fn unknown_and_missing_paths_say_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::UnknownFormat { .. }));
    assert!(err.to_string().contains("data_batch_1.bin"), "{err}");
    let err = Dataset::open(dir.path().join("nowhere")).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "hello").unwrap();
    assert!(matches!(
        Dataset::open(&file),
        Err(DataError::UnknownFormat { .. })
    ));
}
