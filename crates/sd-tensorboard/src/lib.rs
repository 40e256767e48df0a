//! TensorBoard event files of scalars, written and read without TensorFlow.
//!
//! A file is a sequence of records (TensorFlow's `core/lib/io/record_writer.cc`):
//!
//! ```text
//! u64 length (little endian) | u32 masked CRC32C of those 8 bytes | data | u32 masked CRC32C of data
//! ```
//!
//! with `mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8` ([`masked_crc32c`]). Each record's
//! data is an `Event` protobuf (`core/util/event.proto`), of which this crate writes and reads the
//! fields scalars need: `wall_time` (1, double, seconds since the Unix epoch), `step` (2, int64),
//! `file_version` (3, string, `"brain.Event:2"` in a file's first event) and `summary` (5, a
//! `Summary` of repeated `Value`s (1), each a `tag` (1, string) and a `simple_value` (2, float)).
//! TensorBoard finds event files by name: they must contain `tfevents`
//! ([`file_name`]).
//!
//! # Example
//!
//! ```
//! use sd_tensorboard::{EventFile, read_scalars};
//!
//! let mut file = EventFile::new(1_700_000_000.0);
//! file.scalars(3, 1_700_000_010.0, &[("accuracy/validation", 0.91)]);
//! let scalars = read_scalars(&file.into_bytes())?;
//! assert_eq!((scalars[0].step, scalars[0].value), (3, 0.91));
//! # Ok::<(), sd_tensorboard::ReadError>(())
//! ```

/// The `file_version` of a file's first event, as TensorFlow and TensorBoard write it.
pub const FILE_VERSION: &str = "brain.Event:2";

/// `events.out.tfevents.<index>.<host>`: TensorBoard reads the files of a directory whose names
/// contain `tfevents`, in the order of their names; a zero-padded `index` keeps that order.
pub fn file_name(index: u64, host: &str) -> String {
    format!("events.out.tfevents.{index:010}.{host}")
}

/// TensorFlow's masked CRC32C (Castagnoli) of `data`: rotated right by 15 bits plus
/// `0xa282ead8`, so that a CRC of data holding CRCs stays well distributed.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One record around `data`: length, its masked CRC, the data, the data's masked CRC.
pub fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, LENGTH_DELIMITED);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The `Event` protobuf of a file's first event: its wall time and [`FILE_VERSION`].
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, 1, FIXED64);
    out.extend_from_slice(&wall_time.to_le_bytes());
    bytes_field(&mut out, 3, FILE_VERSION.as_bytes());
    out
}

/// The `Event` protobuf of scalars at one step: `wall_time`, `step` and a `Summary` with one
/// `Value { tag, simple_value }` per entry. Values are stored as `f32`, as TensorBoard stores
/// them.
pub fn scalars_event(step: i64, wall_time: f64, values: &[(&str, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, value) in values {
        let mut entry = Vec::new();
        bytes_field(&mut entry, 1, tag.as_bytes());
        key(&mut entry, 2, FIXED32);
        entry.extend_from_slice(&value.to_le_bytes());
        bytes_field(&mut summary, 1, &entry);
    }
    let mut out = Vec::new();
    key(&mut out, 1, FIXED64);
    out.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut out, 2, VARINT);
    // int64 is encoded as its two's complement, as u64.
    varint(&mut out, step as u64);
    bytes_field(&mut out, 5, &summary);
    out
}

/// The bytes of one event file, built in memory: write them in one go (atomically, under a
/// [`file_name`]) or append [`Self::into_bytes`] of a file without its header to an open one.
#[derive(Debug, Clone, Default)]
pub struct EventFile {
    bytes: Vec<u8>,
}

impl EventFile {
    /// A file that begins with the `file_version` event at `wall_time`.
    pub fn new(wall_time: f64) -> Self {
        Self {
            bytes: record(&file_version_event(wall_time)),
        }
    }

    /// Appends one event with `values` at `step`.
    pub fn scalars(&mut self, step: i64, wall_time: f64, values: &[(&str, f32)]) -> &mut Self {
        self.bytes
            .extend_from_slice(&record(&scalars_event(step, wall_time, values)));
        self
    }

    /// The file's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// One scalar read back from an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The event's step.
    pub step: i64,
    /// The event's wall time, seconds since the Unix epoch.
    pub wall_time: f64,
    /// The value's tag.
    pub tag: String,
    /// The value.
    pub value: f32,
}

/// What is wrong with an event file, and where.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReadError {
    /// A record's length or data does not match its CRC.
    #[error("record at byte {offset}: {what} does not match its CRC32C")]
    Crc {
        /// Where the record starts.
        offset: usize,
        /// `"the length"` or `"the data"`.
        what: &'static str,
    },
    /// The file ends inside a record.
    #[error("record at byte {offset}: the file ends inside it")]
    Truncated {
        /// Where the record starts.
        offset: usize,
    },
    /// A record's data is not a well-formed protobuf.
    #[error("record at byte {offset}: malformed protobuf ({why})")]
    Protobuf {
        /// Where the record starts.
        offset: usize,
        /// What was wrong.
        why: &'static str,
    },
}

/// The data of every record in `bytes`, each checked against its CRCs.
pub fn read_records(bytes: &[u8]) -> Result<Vec<(usize, &[u8])>, ReadError> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < 12 {
            return Err(ReadError::Truncated { offset });
        }
        let length_bytes = &rest[..8];
        let length = u64::from_le_bytes(length_bytes.try_into().expect("8 bytes"));
        let length_crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if masked_crc32c(length_bytes) != length_crc {
            return Err(ReadError::Crc {
                offset,
                what: "the length",
            });
        }
        let end = usize::try_from(length)
            .ok()
            .and_then(|length| length.checked_add(16))
            .filter(|&end| end <= rest.len())
            .ok_or(ReadError::Truncated { offset })?;
        let data = &rest[12..end - 4];
        let data_crc = u32::from_le_bytes(rest[end - 4..end].try_into().expect("4 bytes"));
        if masked_crc32c(data) != data_crc {
            return Err(ReadError::Crc {
                offset,
                what: "the data",
            });
        }
        records.push((offset, data));
        offset += end;
    }
    Ok(records)
}

/// Every scalar (`simple_value`) of every event in `bytes`, in file order. Other fields and
/// values without a `simple_value` are skipped.
pub fn read_scalars(bytes: &[u8]) -> Result<Vec<Scalar>, ReadError> {
    let mut scalars = Vec::new();
    for (offset, data) in read_records(bytes)? {
        let bad = |why| ReadError::Protobuf { offset, why };
        let (mut step, mut wall_time, mut values) = (0i64, 0f64, Vec::new());
        for (field, value) in fields(data).map_err(bad)? {
            match (field, value) {
                (1, Field::Fixed64(bits)) => wall_time = f64::from_bits(bits),
                (2, Field::Varint(v)) => step = v as i64,
                (5, Field::Bytes(summary)) => {
                    for (field, value) in fields(summary).map_err(bad)? {
                        if let (1, Field::Bytes(entry)) = (field, value) {
                            let (mut tag, mut simple) = (None, None);
                            for (field, value) in fields(entry).map_err(bad)? {
                                match (field, value) {
                                    (1, Field::Bytes(t)) => {
                                        tag = Some(
                                            String::from_utf8(t.to_vec())
                                                .map_err(|_| bad("a tag is not UTF-8"))?,
                                        );
                                    }
                                    (2, Field::Fixed32(bits)) => {
                                        simple = Some(f32::from_bits(bits))
                                    }
                                    _ => {}
                                }
                            }
                            if let (Some(tag), Some(value)) = (tag, simple) {
                                values.push((tag, value));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        scalars.extend(values.into_iter().map(|(tag, value)| Scalar {
            step,
            wall_time,
            tag,
            value,
        }));
    }
    Ok(scalars)
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

/// The fields of one protobuf message, in order.
fn fields(mut data: &[u8]) -> Result<Vec<(u64, Field<'_>)>, &'static str> {
    fn read_varint(data: &mut &[u8]) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = data.split_first().ok_or("a varint runs past the end")?;
            *data = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 10 bytes")
    }
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
        if data.len() < n {
            return Err("a field runs past the end");
        }
        let (head, rest) = data.split_at(n);
        *data = rest;
        Ok(head)
    }
    let mut out = Vec::new();
    while !data.is_empty() {
        let key = read_varint(&mut data)?;
        let field = match (key & 7) as u8 {
            VARINT => Field::Varint(read_varint(&mut data)?),
            FIXED64 => Field::Fixed64(u64::from_le_bytes(
                take(&mut data, 8)?.try_into().expect("8 bytes"),
            )),
            FIXED32 => Field::Fixed32(u32::from_le_bytes(
                take(&mut data, 4)?.try_into().expect("4 bytes"),
            )),
            LENGTH_DELIMITED => {
                let n = usize::try_from(read_varint(&mut data)?).map_err(|_| "a huge length")?;
                Field::Bytes(take(&mut data, n)?)
            }
            _ => return Err("an unknown wire type"),
        };
        out.push((key >> 3, field));
    }
    Ok(out)
}

// The README's example runs as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
