//! # sd-experiments
//!
//! The experiments of *Even your Teacher Needs Guidance* (Borup & Andersen, NeurIPS 2021) as a
//! library: every job the command lines run, for `sd-cli` and `cargo xtask` alike.
//!
//! - [`krr`]: one self-distillation run of kernel ridge regression on the paper's toy example or
//!   on CSV data ([`krr::run`]), printed as a table, JSON or CSV ([`krr::output`]), drawn as the
//!   original notebook's figures ([`plot`]); the paper's kernel study ([`krr::toy::toy_study`]).
//! - [`resnet`]: one distillation chain of ResNets on an image data set, fixed alpha or
//!   Algorithm 1, resumable from a teacher checkpoint (over [`sd_train`]).
//! - [`experiment`]: a [`profile::Profile`]'s sweep of chains over alphas and seeds, resumable,
//!   shardable over a cluster (Slurm arrays), the first fit shared by the chains of a seed;
//!   [`plan`]: which chains a profile has and which a shard runs.
//! - [`report`]: `REPORT.md`, its CSV tables and figures, from the run files alone (the kernel
//!   parts' too), merging shards; [`stats`]: its statistics and their one cell format.
//! - [`data`]: inspect an image data set, write a fixture in the real formats.
//! - [`terminal`]: what the command lines share: logs, progress bars, one-line errors.
//!
//! Errors are one [`Error`] type whose messages name the file, line, field or setting at fault.
//!
//! ```
//! use sd_alpha::Alpha;
//! use sd_experiments::krr::{KrrConfig, output, run};
//!
//! let report = run(&KrrConfig::toy(Alpha::Fixed(0.0)))?;
//! // Mobahi et al.'s setting: without ground truth, step 5 is worse than step 2.
//! assert!(report.steps[5].loss > report.steps[2].loss);
//! print!("{}", output::table(&report));
//! # Ok::<(), sd_experiments::Error>(())
//! ```

pub mod data;
pub mod device;
mod error;
pub mod experiment;
pub mod krr;
pub mod plan;
pub mod plot;
pub mod profile;
pub mod report;
pub mod resnet;
pub mod stats;
pub mod terminal;

pub use device::DeviceSpec;
pub use error::{Error, Result};

// The README's examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
