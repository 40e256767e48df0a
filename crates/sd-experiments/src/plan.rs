//! What an experiment trains: the chains of a [`Profile`] (one per label-noise level, seed and
//! alpha, [`chains`]), their directory names ([`ChainSpec::dir_name`]), and the part of them a
//! shard of a cluster job runs ([`Shard`], [`select`], [`slurm_shard`]).

use std::str::FromStr;

use sd_alpha::Alpha;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::profile::Profile;

/// The `i`-th (from 1) of `n` parts of the chains.
///
/// Text form ([`FromStr`], [`std::fmt::Display`]): `I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// From 1.
    pub index: usize,
    /// At least 1.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parse = || -> Option<Shard> {
            let (i, n) = text.split_once('/')?;
            Some(Shard {
                index: i.trim().parse().ok()?,
                count: n.trim().parse().ok()?,
            })
        };
        match parse() {
            Some(shard) if shard.count >= 1 && (1..=shard.count).contains(&shard.index) => {
                Ok(shard)
            }
            _ => Err(format!(
                "'{text}' is not a shard: expected I/N with 1 <= I <= N, e.g. 2/4"
            )),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of a Slurm job array task: `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1` of
/// `SLURM_ARRAY_TASK_COUNT` (`MIN` defaults to 0). `None` outside an array job.
pub fn slurm_shard(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
    let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT"))
    else {
        return Ok(None);
    };
    let number = |name: &str, text: &str| -> Result<usize> {
        text.trim()
            .parse()
            .map_err(|_| Error::Slurm(format!("{name}={text} is not a number")))
    };
    let id = number("SLURM_ARRAY_TASK_ID", &id)?;
    let count = number("SLURM_ARRAY_TASK_COUNT", &count)?;
    let min = match var("SLURM_ARRAY_TASK_MIN") {
        Some(min) => number("SLURM_ARRAY_TASK_MIN", &min)?,
        None => 0,
    };
    let index = id.checked_sub(min).map(|i| i + 1);
    match index {
        Some(index) if count >= 1 && index <= count => Ok(Some(Shard { index, count })),
        _ => Err(Error::Slurm(format!(
            "SLURM_ARRAY_TASK_ID={id} (min {min}) does not fit SLURM_ARRAY_TASK_COUNT={count}: \
             use a contiguous array such as --array=0-{}, or give the shard explicitly",
            count.saturating_sub(1)
        ))),
    }
}

/// One chain of the experiment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainSpec {
    /// Its ground-truth weight.
    pub alpha: Alpha,
    /// Its seed.
    pub seed: u64,
    /// Its label-noise level (one of the profile's).
    pub label_noise: f64,
}

impl ChainSpec {
    /// `alpha-0.25_seed-1`, `alpha-auto_seed-1` on clean labels; `noise-0.3_alpha-0.25_seed-1`
    /// with label noise.
    pub fn dir_name(&self) -> String {
        let chain = format!("alpha-{}_seed-{}", self.alpha, self.seed);
        if self.label_noise > 0.0 {
            format!("noise-{}_{chain}", self.label_noise)
        } else {
            chain
        }
    }
}

/// Every chain of `profile`: noise level by noise level, seed by seed, in the profile's alpha
/// order.
pub fn chains(profile: &Profile) -> Vec<ChainSpec> {
    let mut chains = Vec::new();
    for &label_noise in &profile.label_noise {
        for &seed in &profile.seeds {
            for &alpha in &profile.alphas {
                chains.push(ChainSpec {
                    alpha,
                    seed,
                    label_noise,
                });
            }
        }
    }
    chains
}

/// The chains of `shard`, in running order (seed by seed). Shards are dealt round-robin over the
/// chains listed alpha by alpha, so that each shard gets a mix of alphas and seeds: with as many
/// shards as alphas (the `paper` profile on 7 GPUs), each gets one chain of each seed, and the
/// costlier auto chains land on different shards.
pub fn select(profile: &Profile, shard: Option<Shard>) -> Vec<ChainSpec> {
    if !profile.networks {
        return Vec::new();
    }
    let all = chains(profile);
    let Some(shard) = shard else {
        return all;
    };
    // A group: one noise level and seed, all alphas.
    let groups = profile.seeds.len() * profile.label_noise.len();
    all.into_iter()
        .enumerate()
        .filter(|(running, _)| {
            let (group, alpha) = (
                running / profile.alphas.len(),
                running % profile.alphas.len(),
            );
            (alpha * groups + group) % shard.count == shard.index - 1
        })
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn shards_split_the_chains_without_overlap() {
        let profile =
            crate::profile::load(&crate::profile::locate("fmnist").unwrap(), &[]).unwrap();
        let all = chains(&profile);
        // 2 noise levels x 3 seeds x 4 alphas.
        assert_eq!(all.len(), 24);
        assert_eq!(all[3].dir_name(), "alpha-auto_seed-0");
        assert_eq!(all[4].dir_name(), "alpha-0_seed-1");
        assert_eq!(all[12].dir_name(), "noise-0.3_alpha-0_seed-0");
        let mut seen = Vec::new();
        for index in 1..=5 {
            let part = select(&profile, Some(Shard { index, count: 5 }));
            assert!(part.len() == 4 || part.len() == 5, "{part:?}");
            // Each shard gets chains of both noise levels.
            assert!(part.iter().any(|c| c.label_noise == 0.0), "{part:?}");
            assert!(part.iter().any(|c| c.label_noise > 0.0), "{part:?}");
            seen.extend(part);
        }
        assert_eq!(seen.len(), all.len());
        for chain in &all {
            assert_eq!(seen.iter().filter(|c| *c == chain).count(), 1);
        }
        // The paper on 7 GPUs: each shard trains 3 different alphas, one chain per seed.
        let paper = crate::profile::load(&crate::profile::locate("paper").unwrap(), &[]).unwrap();
        let mut autos = 0;
        for index in 1..=7 {
            let part = select(&paper, Some(Shard { index, count: 7 }));
            assert_eq!(part.len(), 3);
            let seeds: BTreeSet<u64> = part.iter().map(|c| c.seed).collect();
            assert_eq!(seeds.len(), 3, "{part:?}");
            let autos_here = part.iter().filter(|c| c.alpha == Alpha::Auto).count();
            assert!(autos_here <= 1, "{part:?}");
            autos += autos_here;
            // Running order: seed by seed.
            assert!(part.windows(2).all(|w| w[0].seed <= w[1].seed), "{part:?}");
        }
        assert_eq!(autos, 3);
    }

    #[test]
    fn shards_parse_and_come_from_slurm() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "2", "a/b"] {
            assert!(bad.parse::<Shard>().unwrap_err().contains("I/N"), "{bad}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(slurm_shard(env(&[])).unwrap(), None);
        assert_eq!(
            slurm_shard(env(&[
                ("SLURM_ARRAY_TASK_ID", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]))
            .unwrap(),
            Some(Shard { index: 1, count: 4 })
        );
        assert_eq!(
            slurm_shard(env(&[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]))
            .unwrap(),
            Some(Shard { index: 4, count: 4 })
        );
        let error = slurm_shard(env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]))
        .unwrap_err();
        assert!(error.to_string().contains("--array=0-3"), "{error}");
    }

    #[test]
    fn every_noise_level_has_every_alpha_and_seed_in_its_own_directories() {
        let path = crate::profile::locate("smoke").unwrap();
        let two = crate::profile::load(&path, &["label_noise=[0, 0.3]".into()]).unwrap();
        let chains = chains(&two);
        assert_eq!(chains.len(), 2 * two.alphas.len() * two.seeds.len());
        assert_eq!(chains[0].dir_name(), "alpha-0_seed-0");
        assert_eq!(
            chains.last().unwrap().dir_name(),
            format!("noise-0.3_alpha-auto_seed-{}", two.seeds.last().unwrap())
        );
    }
}
