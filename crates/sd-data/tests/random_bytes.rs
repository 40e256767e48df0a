//! Random bytes fed to the decoders: an error or a valid result, never a panic.

use std::path::Path;

use proptest::prelude::*;
use sd_data::cifar::{self, RECORD_BYTES};
use sd_data::{DataError, idx};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_batch_files(bytes in prop::collection::vec(any::<u8>(), 0..4 * RECORD_BYTES)) {
        match cifar::decode_batch(Path::new("random.bin"), &bytes, None) {
            Ok((pixels, labels)) => {
                prop_assert_eq!(bytes.len() % RECORD_BYTES, 0);
                prop_assert_eq!(labels.len(), bytes.len() / RECORD_BYTES);
                prop_assert_eq!(pixels.len(), labels.len() * 3072);
                prop_assert!(labels.iter().all(|&l| l < 10));
            }
            Err(DataError::TruncatedRecord { .. } | DataError::LabelOutOfRange { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
        // Against the official count, anything this small is refused.
        prop_assert!(cifar::decode_batch(Path::new("r.bin"), &bytes, Some(10_000)).is_err());
    }

    /// Valid records with random labels: exactly the ones >= 10 are refused, by record.
    #[test]
    fn random_labels(labels in prop::collection::vec(any::<u8>(), 1..6)) {
        let mut bytes = Vec::new();
        for &l in &labels {
            bytes.push(l);
            bytes.extend(std::iter::repeat_n(l, RECORD_BYTES - 1));
        }
        let result = cifar::decode_batch(Path::new("l.bin"), &bytes, None);
        match labels.iter().position(|&l| l >= 10) {
            None => prop_assert_eq!(result.unwrap().1, labels),
            Some(first) => {
                let is_first_bad = matches!(
                    result, Err(DataError::LabelOutOfRange { record, .. }) if record == first
                );
                prop_assert!(is_first_bad);
            }
        }
    }

    #[test]
    fn random_idx_files(
        mut bytes in prop::collection::vec(any::<u8>(), 0..200),
        header in prop::option::of((1u32..4, 0u32..5, 0u32..5)),
    ) {
        // Half the cases get a plausible header so the checks past the magic number run too.
        if let Some((count, rows, cols)) = header {
            let mut with_header = Vec::new();
            for w in [idx::IMAGES_MAGIC, count, rows, cols] {
                with_header.extend_from_slice(&w.to_be_bytes());
            }
            with_header.extend_from_slice(&bytes);
            bytes = with_header;
        }
        let path = Path::new("random-idx3-ubyte");
        match idx::decode_images(path, &bytes) {
            Ok((count, shape, pixels)) => prop_assert_eq!(pixels.len(), count * shape.pixels()),
            Err(DataError::IdxMagic { .. } | DataError::IdxDimensions { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
        match idx::decode_labels(path, &bytes, 10) {
            Ok(labels) => prop_assert!(labels.iter().all(|&l| l < 10)),
            Err(DataError::IdxMagic { .. } | DataError::IdxDimensions { .. }
                | DataError::LabelOutOfRange { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
        // Random bytes claiming to be gzip.
        let mut gz = vec![0x1f, 0x8b];
        gz.extend_from_slice(&bytes);
        match idx::gunzip_if_compressed(path, gz) {
            Ok(_) | Err(DataError::Gzip { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random bytes as `cifar-10-binary.tar.gz`: raw, gzip-wrapped, or a tar member of random
    /// content and declared size. Always an error (nothing here is a whole data set), never a
    /// panic.
    #[test]
    fn random_archives(
        bytes in prop::collection::vec(any::<u8>(), 0..2 * RECORD_BYTES),
        wrap in 0u8..3,
        declared in 0u64..1 << 40,
    ) {
        use std::io::Write;
        let content = match wrap {
            0 => bytes,
            1 => {
                let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gzip.write_all(&bytes).unwrap();
                gzip.finish().unwrap()
            }
            _ => {
                let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                {
                    let mut builder = tar::Builder::new(&mut gzip);
                    let mut header = tar::Header::new_gnu();
                    header.set_path("cifar-10-batches-bin/data_batch_1.bin").unwrap();
                    header.set_size(declared);
                    header.set_cksum();
                    builder.append(&header, &bytes[..]).unwrap();
                    builder.finish().unwrap();
                }
                gzip.finish().unwrap()
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("random.tar.gz");
        std::fs::write(&path, content).unwrap();
        prop_assert!(cifar::read_archive(&path).is_err());
        prop_assert!(cifar::read_archive_with(&path, cifar::RecordCount::Any).is_err());
    }
}
