//! # sd-train
//!
//! Self-distillation chains of ResNets with weighted ground-truth targets (Borup & Andersen,
//! "Even your Teacher Needs Guidance", NeurIPS 2021), as the original `self_distiller.py` trains
//! them, in candle with [`sd_resnet`]'s networks and [`sd_data`]'s batches:
//!
//! - [`Chain`]: step 0 fits the ground truth; step `k >= 1` trains a fresh network on
//!   `alpha * onehot + (1 - alpha) * softmax(teacher)`, its teacher the step `k - 1` network
//!   after its last epoch, frozen, in evaluation mode, seeing the same augmented batch; Adam,
//!   the original's loss and regularizer, the best checkpoints chosen on a validation split.
//! - [`sd_alpha::Alpha::Auto`]: the paper's Algorithm 1 for networks. Before each step `k >= 1`
//!   an `alpha = 0` student of the step's teacher (the probe) is trained; `alpha_k` is
//!   [`sd_alpha::optimal_alpha`] of the one-hot validation labels, the first fit's softmax
//!   outputs and the probe's, clamped into `[0, 1]`.
//! - [`ChainDir`]: the run directory and its files (`chain.json`, per-epoch metrics, per-step
//!   test results, best and last checkpoints with torchvision's names, TensorBoard event files
//!   of the metrics ([`tensorboard`](mod@tensorboard))), written atomically and
//!   read strictly, rows appended with those already written kept byte for byte; a chain killed
//!   at any moment continues where it stopped ([`Start::Resume`]) and removes the temporaries the
//!   kill left; a directory with a finished step trained with other settings is refused with the
//!   difference named; new directories are created exclusively ([`ChainDir::create_new`]), and
//!   one process at a time holds a directory's lock. A teacher is accepted only as the final
//!   model of a finished step, with finite weights ([`Chain::load_teacher`]).
//! - [`bench`](mod@bench): the time of a training step and parity with torchvision.
//!
//! Steps are numbered from 0, the first fit (see [`sd_alpha`]). Each step's seed derives from the
//! chain's ([`step_seed`]): the same seed gives the same numbers on the same machine, resumed or
//! not, with any number of data workers.
//!
//! ```
//! use candle_core::Device;
//! use sd_alpha::Alpha;
//! use sd_data::fixture::{self, FixtureSpec};
//! use sd_data::{Dataset, SplitConfig, Validation};
//! use sd_resnet::{Depth, Stem, loss::LossKind};
//! use sd_train::{Chain, ChainData, ChainDir, ChainRecord, Settings, Silent, Start};
//!
//! let dir = tempfile::tempdir()?;
//! fixture::write_cifar10(dir.path().join("data"), FixtureSpec { train: 60, test: 20, seed: 0 })?;
//! let dataset = Dataset::open(dir.path().join("data"))?;
//! let split = SplitConfig { validation: Validation::Holdout { size: 20 }, ..Default::default() };
//! let data = ChainData::new(&dataset, &split)?;
//! let settings = Settings {
//!     data: "fixture".into(), fixture: Some((60, 20)), train_size: 0, val_size: 20,
//!     val_on_test: false, test_size: 0, resnet: Depth::R18, stem: Stem::Imagenet,
//!     width: 16, // a quarter of torchvision's channels: about 1/16 of the work
//!     loss: LossKind::SoftmaxMse, epochs: 1, batch_size: 20, lr: 1e-3, reg_coef: 1e-4,
//!     lr_schedule: sd_train::LrSchedule::Constant,
//!     device: sd_train::DeviceKind::Cpu, pretrained: None, shuffle: true,
//!     teacher_mode: sd_train::TeacherMode::Eval, label_noise: 0.0, noise_seed: 0,
//! };
//! let chain = Chain {
//!     record: ChainRecord { alpha: Alpha::Fixed(0.5), seed: 0, steps: 2, settings },
//!     data: &data,
//!     device: Device::Cpu,
//!     num_workers: 1,
//! };
//! let run = ChainDir::new(dir.path().join("run"));
//! let results = chain.run(&run, Start::Resume, &mut Silent)?;
//! assert_eq!((results.len(), results[1].alpha), (2, 0.5));
//! assert!(run.last_checkpoint(1).is_file());
//! // Run again: everything is finished, nothing is trained.
//! assert!(chain.run(&run, Start::Resume, &mut Silent)?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bench;
mod chain;
mod dir;
mod error;
mod evaluate;
pub mod files;
mod metrics;
mod record;
mod sidecar;
pub mod tensorboard;

pub use chain::{BatchProgress, Chain, ChainData, Observer, Silent, Start, StepStart, step_seed};
pub use dir::{ChainDir, DirLock};
pub use error::{Result, TrainError};
pub use evaluate::{Feed, evaluate, one_hot, predict_proba};
pub use metrics::{AutoAlpha, EpochMetrics, StepResult};
pub use record::{ChainRecord, DeviceKind, LrSchedule, Settings, TeacherMode};
pub use sidecar::CheckpointSidecar;

// The README's examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
