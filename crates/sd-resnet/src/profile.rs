//! Wall time per kernel phase, for finding where a training step goes.
//!
//! Off by default (one relaxed atomic load per phase). [`enable`] switches it on for the process;
//! [`take`] returns and resets the totals. The `train_step` example prints them with
//! `SD_PROFILE=1`; the figures in docs/benchmarks.md come from there. Phases run inside rayon
//! pools are timed from the calling thread, so the totals are wall time, not CPU time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// Starts (`true`) or stops (`false`) recording.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The totals recorded since the last call, `(phase, wall time, calls)`, sorted by phase name;
/// resets them.
pub fn take() -> Vec<(&'static str, Duration, u64)> {
    let mut totals = TOTALS.lock().expect("profile lock");
    std::mem::take(&mut *totals)
        .into_iter()
        .map(|(name, (time, calls))| (name, time, calls))
        .collect()
}

/// Times the rest of the enclosing scope under `name` when recording is on.
pub(crate) fn scope(name: &'static str) -> Option<Scope> {
    ENABLED.load(Ordering::Relaxed).then(|| Scope {
        name,
        started: Instant::now(),
    })
}

/// A running timer; records when dropped.
pub(crate) struct Scope {
    name: &'static str,
    started: Instant,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let mut totals = TOTALS.lock().expect("profile lock");
        let entry = totals.entry(self.name).or_default();
        entry.0 += elapsed;
        entry.1 += 1;
    }
}
