//! The toy problem of Mobahi et al. (2020) as the original notebook ran it.
//!
//! Eleven noisy samples of `sin(2 pi x)` at `x = 0, 0.1, ..., 1`, an RBF kernel with `gamma = 80`,
//! ridge `lambda = 0.2`, six steps; the loss is the mean squared error against `sin(2 pi x)` on the
//! 101-point grid `0, 0.01, ..., 1`.

use faer::Mat;

/// RBF `gamma` of the toy example.
pub const GAMMA: f64 = 80.0;
/// Ridge `lambda` of the toy example.
pub const LAMBDA: f64 = 0.2;
/// Distillation steps the original notebook ran.
pub const STEPS: usize = 6;
/// Points on the evaluation grid `0, 0.01, ..., 1`.
pub const GRID_POINTS: usize = 101;

/// The targets, from the original notebook (`y = sin(2 pi x) + noise`).
pub const TARGETS: [f64; 11] = [
    0.38476636465198066,
    1.2333967683416893,
    1.33232242218057,
    0.6920159488889518,
    -0.29756145531871736,
    -0.24189291901377769,
    -0.7964485769175675,
    -0.9616480167034174,
    -0.49672509509916934,
    -0.3469066003991437,
    0.5589512650600734,
];

/// `count` evenly spaced points from 0 to 1 inclusive, as a `count x 1` matrix, rounded exactly as
/// numpy's `linspace(0, 1, count)`: `i * step` with `step = 1 / (count - 1)`, the last point 1.
pub fn unit_grid(count: usize) -> Mat<f64> {
    let step = 1.0 / count.saturating_sub(1).max(1) as f64;
    Mat::from_fn(count, 1, |i, _| {
        if i + 1 == count && count > 1 {
            1.0
        } else {
            i as f64 * step
        }
    })
}

/// Training inputs `0, 0.1, ..., 1` (`11 x 1`).
pub fn inputs() -> Mat<f64> {
    unit_grid(TARGETS.len())
}

/// Training targets (`11 x 1`).
pub fn targets() -> Mat<f64> {
    Mat::from_fn(TARGETS.len(), 1, |i, _| TARGETS[i])
}

/// The true function `sin(2 pi x)`.
pub fn true_function(x: f64) -> f64 {
    (2.0 * std::f64::consts::PI * x).sin()
}

/// The evaluation grid `0, 0.01, ..., 1` (`101 x 1`).
pub fn grid() -> Mat<f64> {
    unit_grid(GRID_POINTS)
}

/// `sin(2 pi x)` on [`grid`] (`101 x 1`): the reference of the toy example's loss.
pub fn grid_truth() -> Mat<f64> {
    let grid = grid();
    Mat::from_fn(GRID_POINTS, 1, |i, _| true_function(grid[(i, 0)]))
}
