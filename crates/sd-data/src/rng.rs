//! Seeded random streams.
//!
//! Every random decision draws from its own ChaCha8 stream keyed by `(seed, purpose, a, b)`:
//! the shuffle of epoch `e` from `(seed, Shuffle, e, 0)`, the crop and flip of image `i` in epoch
//! `e` from `(seed, Augment, e, i)`. So a result depends on the seed and on what is computed,
//! never on which thread computed it or in what order: batches are the same with 1 worker or 16.
//! ChaCha8 is a portable generator whose output the `rand_chacha` crate documents as stable.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream is for; part of its key, so streams never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Purpose {
    Shuffle = 1,
    Augment = 2,
    Split = 3,
    Fixture = 4,
    LabelNoise = 5,
}

/// The stream for `(seed, purpose, a, b)`.
pub(crate) fn stream(seed: u64, purpose: Purpose, a: u64, b: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (chunk, word) in key.chunks_exact_mut(8).zip([seed, purpose as u64, a, b]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: u64 = stream(1, Purpose::Shuffle, 0, 0).random();
        assert_eq!(a, stream(1, Purpose::Shuffle, 0, 0).random::<u64>());
        assert_ne!(a, stream(1, Purpose::Augment, 0, 0).random::<u64>());
        assert_ne!(a, stream(1, Purpose::Shuffle, 1, 0).random::<u64>());
        assert_ne!(a, stream(2, Purpose::Shuffle, 0, 0).random::<u64>());
    }
}
