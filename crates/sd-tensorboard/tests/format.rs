//! The bytes TensorBoard's own writer produces, and damaged files.

use sd_tensorboard::{EventFile, ReadError, file_version_event, masked_crc32c, read_scalars};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// From tensorboard 2.21's `EventFileWriter` (Python), the records after its file_version event:
/// `Event(wall_time=1700000001.5, step=7, summary=[loss/train 0.75, accuracy/train 0.625])`, then
/// `Event(wall_time=2.0, step=-3, summary=[a -1.5])`.
const TENSORBOARD_RECORDS: &str = "3700000000000000e7e8ca590900006040fc54d94110072a2a0a110a0a6c6f73\
732f747261696e150000403f0a150a0e61636375726163792f747261696e150000203f2c92272e2000000000000000\
29eda95009000000000000004010fdffffffffffffffff012a0a0a080a0161150000c0bffcecd63e";

/// `Event(wall_time=1700000000.0, file_version='brain.Event:2').SerializeToString()`.
const TENSORBOARD_FILE_VERSION: &str = "0900000040fc54d9411a0d627261696e2e4576656e743a32";

#[test]
fn events_are_byte_for_byte_tensorboards() {
    let mut file = EventFile::new(1_700_000_000.0);
    file.scalars(
        7,
        1_700_000_001.5,
        &[("loss/train", 0.75), ("accuracy/train", 0.625)],
    );
    file.scalars(-3, 2.0, &[("a", -1.5)]);
    let bytes = file.into_bytes();
    let header = sd_tensorboard::record(&file_version_event(1_700_000_000.0));
    assert_eq!(
        file_version_event(1_700_000_000.0),
        hex(TENSORBOARD_FILE_VERSION)
    );
    assert_eq!(&bytes[..header.len()], &header[..]);
    assert_eq!(&bytes[header.len()..], &hex(TENSORBOARD_RECORDS)[..]);
}

#[test]
fn crc32c_is_castagnolis_masked() {
    // The CRC-32C check value of "123456789" is 0xe3069283; masked as TensorFlow does.
    let crc: u32 = 0xe306_9283;
    assert_eq!(
        masked_crc32c(b"123456789"),
        crc.rotate_right(15).wrapping_add(0xa282_ead8)
    );
}

#[test]
fn scalars_read_back_from_tensorboards_bytes() {
    let mut bytes = sd_tensorboard::record(&file_version_event(1.0));
    bytes.extend(hex(TENSORBOARD_RECORDS));
    let scalars = read_scalars(&bytes).unwrap();
    let seen: Vec<(i64, &str, f32)> = scalars
        .iter()
        .map(|s| (s.step, s.tag.as_str(), s.value))
        .collect();
    assert_eq!(
        seen,
        [
            (7, "loss/train", 0.75),
            (7, "accuracy/train", 0.625),
            (-3, "a", -1.5)
        ]
    );
    assert_eq!(scalars[0].wall_time, 1_700_000_001.5);
}

#[test]
fn damaged_files_say_where() {
    let mut file = EventFile::new(0.0);
    file.scalars(1, 1.0, &[("x", 1.0)]);
    let bytes = file.into_bytes();
    let second = sd_tensorboard::record(&file_version_event(0.0)).len();
    // A kill in the middle of the last record.
    assert_eq!(
        read_scalars(&bytes[..bytes.len() - 3]),
        Err(ReadError::Truncated { offset: second })
    );
    // A flipped bit in the data.
    let mut flipped = bytes.clone();
    flipped[second + 14] ^= 1;
    assert_eq!(
        read_scalars(&flipped),
        Err(ReadError::Crc {
            offset: second,
            what: "the data"
        })
    );
}
