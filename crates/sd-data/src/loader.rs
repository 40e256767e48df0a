//! Batches made on background threads, reproducible from a seed.
//!
//! [`BatchLoader::epoch`] returns an iterator of [`Batch`]es. With `num_workers = W > 0`, worker
//! `w` makes batches `w, w + W, w + 2W, ...` into its own bounded channel (`prefetch` batches
//! deep) and the iterator takes them round-robin: batches arrive in order, memory stays bounded
//! (at most `W x (prefetch + 1)` batches made and not yet taken),
//! and training only waits if all workers together are slower than a training step. The sample
//! order of an epoch and every crop and flip come from seeded streams keyed by the epoch and the
//! image (see the `rng` module), so the batches are identical whatever the number of workers.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;

use crate::error::{DataError, Result};
use crate::rng::{Purpose, stream};
use crate::split::Subset;
use crate::transform::{PreparedTransform, Transform};

/// When the sample order changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Shuffle {
    /// A new permutation every epoch (`DataLoader(shuffle=True)`): the default.
    #[default]
    EachEpoch,
    /// One permutation, drawn from the seed, used for every epoch.
    Once,
    /// The subset's own order.
    Off,
}

/// How batches are made.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Images per batch (> 0).
    pub batch_size: usize,
    /// When the sample order changes.
    pub shuffle: Shuffle,
    /// Drop the last batch when it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Background threads making batches; 0 makes them on the calling thread.
    pub num_workers: usize,
    /// Batches each worker may have ready ahead of the consumer (> 0).
    pub prefetch: usize,
    /// Seed of the shuffles and of the augmentation.
    pub seed: u64,
    /// Where the tensors are created.
    pub device: Device,
}

impl Default for LoaderConfig {
    /// Batch 128, reshuffled each epoch, last batch kept, 2 workers, 2 batches of prefetch each,
    /// seed 0, on the CPU.
    fn default() -> Self {
        LoaderConfig {
            batch_size: 128,
            shuffle: Shuffle::EachEpoch,
            drop_last: false,
            num_workers: 2,
            prefetch: 2,
            seed: 0,
            device: Device::Cpu,
        }
    }
}

/// One batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Transformed images, f32 `[B, C, H, W]`.
    pub images: Tensor,
    /// Class labels, u32 `[B]`.
    pub labels: Tensor,
    /// The labels one-hot encoded, f32 `[B, classes]`.
    pub one_hot: Tensor,
    /// Which images of the underlying [`ImageSet`](crate::ImageSet) these are, in batch order.
    pub indices: Vec<u32>,
    /// The epoch it belongs to.
    pub epoch: u64,
    /// Its position in the epoch.
    pub index: usize,
}

/// Makes the batches of a [`Subset`] through a [`Transform`].
#[derive(Debug, Clone)]
pub struct BatchLoader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    subset: Subset,
    transform: PreparedTransform,
    random: bool,
    config: LoaderConfig,
}

impl BatchLoader {
    /// Checks the configuration and the transform against the subset's images.
    pub fn new(subset: Subset, transform: &Transform, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::InvalidConfig(
                "the batch size must be > 0".into(),
            ));
        }
        if config.prefetch == 0 {
            return Err(DataError::InvalidConfig("prefetch must be > 0".into()));
        }
        let prepared = transform.prepare(subset.images().shape())?;
        Ok(BatchLoader {
            inner: Arc::new(Inner {
                subset,
                transform: prepared,
                random: transform.is_random(),
                config,
            }),
        })
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let (n, b) = (self.inner.subset.len(), self.inner.config.batch_size);
        if self.inner.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Whether an epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Images per epoch (all of the subset, less the dropped last batch).
    pub fn images_per_epoch(&self) -> usize {
        (self.len() * self.inner.config.batch_size).min(self.inner.subset.len())
    }

    /// The subset it draws from.
    pub fn subset(&self) -> &Subset {
        &self.inner.subset
    }

    /// Its configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.config
    }

    /// The transform, checked against the images.
    pub fn transform(&self) -> &PreparedTransform {
        &self.inner.transform
    }

    /// The order in which epoch `epoch` visits the subset's images (indices into the images).
    pub fn order(&self, epoch: u64) -> Vec<u32> {
        self.inner.order(epoch)
    }

    /// The batches of epoch `epoch` (any epoch, in any order: each is determined by the seed and
    /// its number). With workers, they start working at once.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let order: Arc<[u32]> = self.inner.order(epoch).into();
        let batches = self.len();
        let workers = self.inner.config.num_workers.min(batches);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (sender, receiver) = sync_channel(self.inner.config.prefetch);
            let inner = self.inner.clone();
            let order = order.clone();
            let handle = std::thread::Builder::new()
                .name(format!("sd-data-{worker}"))
                .spawn(move || inner.work(worker, workers, epoch, &order, batches, sender))
                .expect("cannot start a batch worker thread");
            receivers.push(receiver);
            handles.push(Some(handle));
        }
        Epoch {
            inner: self.inner.clone(),
            order,
            epoch,
            next: 0,
            batches,
            receivers,
            handles,
        }
    }
}

impl Inner {
    fn order(&self, epoch: u64) -> Vec<u32> {
        let mut order = self.subset.indices().to_vec();
        let shuffle_epoch = match self.config.shuffle {
            Shuffle::Off => return order,
            Shuffle::Once => 0,
            Shuffle::EachEpoch => epoch,
        };
        order.shuffle(&mut stream(
            self.config.seed,
            Purpose::Shuffle,
            shuffle_epoch,
            0,
        ));
        order
    }

    fn work(
        &self,
        worker: usize,
        workers: usize,
        epoch: u64,
        order: &[u32],
        batches: usize,
        sender: SyncSender<Result<Batch>>,
    ) {
        for index in (worker..batches).step_by(workers) {
            let batch = self.make(epoch, order, index);
            let failed = batch.is_err();
            if sender.send(batch).is_err() || failed {
                // The consumer is gone (epoch dropped), or it has our error.
                return;
            }
        }
    }

    /// Batch `index` of `epoch`: transform each image with its own seeded placement.
    fn make(&self, epoch: u64, order: &[u32], index: usize) -> Result<Batch> {
        let size = self.config.batch_size;
        let indices = &order[index * size..((index + 1) * size).min(order.len())];
        let images = self.subset.images();
        let output = self.transform.output();
        let mut pixels = vec![0f32; indices.len() * output.pixels()];
        for (&i, out) in indices.iter().zip(pixels.chunks_exact_mut(output.pixels())) {
            let placement = if self.random {
                self.transform.sample(&mut stream(
                    self.config.seed,
                    Purpose::Augment,
                    epoch,
                    u64::from(i),
                ))
            } else {
                self.transform.identity()
            };
            self.transform
                .apply(images.image(i as usize), placement, out);
        }
        let classes = images.classes();
        let labels: Vec<u32> = indices
            .iter()
            .map(|&i| u32::from(images.label(i as usize)))
            .collect();
        let mut one_hot = vec![0f32; indices.len() * classes];
        for (row, &label) in one_hot.chunks_exact_mut(classes).zip(&labels) {
            row[label as usize] = 1.0;
        }
        let b = indices.len();
        let device = &self.config.device;
        Ok(Batch {
            images: Tensor::from_vec(
                pixels,
                (b, output.channels, output.height, output.width),
                device,
            )?,
            labels: Tensor::from_vec(labels, b, device)?,
            one_hot: Tensor::from_vec(one_hot, (b, classes), device)?,
            indices: indices.to_vec(),
            epoch,
            index,
        })
    }
}

/// The batches of one epoch, in order. Dropping it early stops its workers.
pub struct Epoch {
    inner: Arc<Inner>,
    order: Arc<[u32]>,
    epoch: u64,
    next: usize,
    batches: usize,
    receivers: Vec<Receiver<Result<Batch>>>,
    handles: Vec<Option<JoinHandle<()>>>,
}

impl Epoch {
    /// Batches left.
    pub fn remaining(&self) -> usize {
        self.batches - self.next
    }

    fn worker_failure(&mut self, worker: usize) -> DataError {
        let reason = match self.handles[worker].take().map(JoinHandle::join) {
            Some(Err(panic)) => panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "it panicked".into()),
            _ => "its channel closed early".into(),
        };
        DataError::Worker { worker, reason }
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.batches {
            return None;
        }
        let index = self.next;
        self.next += 1;
        if self.receivers.is_empty() {
            return Some(self.inner.make(self.epoch, &self.order, index));
        }
        let worker = index % self.receivers.len();
        let batch = match self.receivers[worker].recv() {
            Ok(batch) => batch,
            Err(_) => Err(self.worker_failure(worker)),
        };
        if batch.is_err() {
            // Nothing after a failed batch is delivered.
            self.next = self.batches;
        }
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl ExactSizeIterator for Epoch {}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Closing the channels makes blocked workers return; then wait for them.
        self.receivers.clear();
        for handle in self.handles.iter_mut().filter_map(Option::take) {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("epoch", &self.epoch)
            .field("next", &self.next)
            .field("batches", &self.batches)
            .field("workers", &self.receivers.len())
            .finish()
    }
}
