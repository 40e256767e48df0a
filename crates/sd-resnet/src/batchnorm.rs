//! BatchNorm in training mode as one fused op (forward and backward), for f32 CPU tensors.
//!
//! Forward, per channel `c` over the `M = N H W` values: `mean`, biased `var`,
//! `xhat = (x - mean) / sqrt(var + eps)`, `y = w xhat + b`. Backward, with `dy` the output
//! gradient: `db = sum dy`, `dw = sum dy xhat`,
//! `dx = w / sqrt(var + eps) / M * (M dy - db - xhat dw)`. Statistics are accumulated in f64.
//! Compared with the composition of candle ops (a transpose copy, two means, broadcasts and
//! their backward passes) it reads the input twice and writes the output once, and the backward
//! reads `x` and `dy` twice and writes `dx` once.
//!
//! [`FusedBatchNormAddRelu`] ends a ResNet block the same way: `relu(BN(x) + shortcut)`, the
//! shortcut being the block's input or its downsampling convolution's output through a second
//! BatchNorm, so that no normalized tensor is kept for the backward pass.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::cpu::{DisjointParts, LANES, lane_sum, wide};

/// The batch statistics of the last forward pass: per channel mean and biased variance.
pub(crate) type Statistics = Arc<Mutex<Option<(Vec<f64>, Vec<f64>)>>>;

pub(crate) struct FusedBatchNorm {
    pub(crate) eps: f64,
    pub(crate) statistics: Statistics,
    /// Applies `max(0, .)` to the output (and masks the output gradient where it is 0): the
    /// ReLU that follows most BatchNorms in ResNet, without a pass of its own either way.
    pub(crate) relu: bool,
}

fn slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    crate::cpu::f32_slice(storage, layout, "fused BatchNorm")
}

/// Per-channel mean and biased variance of `x` (`N x C x plane`), two passes, f64 sums.
fn statistics(x: &[f32], channels: usize, plane: usize) -> (Vec<f64>, Vec<f64>) {
    if by_rows(channels, plane) {
        return rows::statistics(x, channels, plane);
    }
    let batch = x.len() / (channels * plane);
    let count = (batch * plane) as f64;
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let planes = || (0..batch).map(move |n| &x[(n * channels + c) * plane..][..plane]);
            let sum = |p| {
                wide(
                    #[inline(always)]
                    move || lane_sum(p, |v| v),
                )
            };
            let mean = planes().map(sum).sum::<f64>() / count;
            let squares = |p| {
                wide(
                    #[inline(always)]
                    move || lane_sum(p, move |v| (v - mean) * (v - mean)),
                )
            };
            let var = planes().map(squares).sum::<f64>() / count;
            (mean, var)
        })
        .unzip()
}

/// Per channel `scale = w / sqrt(var + eps)` and `shift = b - mean scale` of `x`
/// (`N x C x plane`); records the batch statistics in `statistics`.
fn affine(
    x: &[f32],
    dims: &[usize],
    w: &[f32],
    b: &[f32],
    eps: f64,
    statistics: &Statistics,
) -> (Vec<f32>, Vec<f32>) {
    let (channels, plane) = (dims[1], dims[2] * dims[3]);
    let (mean, var) = self::statistics(x, channels, plane);
    let scale: Vec<f32> = (0..channels)
        .map(|c| (f64::from(w[c]) / (var[c] + eps).sqrt()) as f32)
        .collect();
    let shift: Vec<f32> = (0..channels)
        .map(|c| (f64::from(b[c]) - mean[c] * f64::from(scale[c])) as f32)
        .collect();
    *statistics.lock().expect("statistics lock") = Some((mean, var));
    (scale, shift)
}

/// What is added before the ReLU: a tensor as it is, or a tensor through its own per-channel
/// `scale` and `shift` (a second BatchNorm).
#[derive(Clone, Copy)]
enum Residual<'a> {
    None,
    Plain(&'a [f32]),
    Normalized(&'a [f32], &'a [f32], &'a [f32]),
}

/// `y = [relu](scale x + shift + residual)` per channel of `x` (`N x C x plane`).
fn normalize(
    x: &[f32],
    dims: &[usize],
    (scale, shift): (&[f32], &[f32]),
    residual: Residual<'_>,
    relu: bool,
) -> Vec<f32> {
    let (channels, plane) = (dims[1], dims[2] * dims[3]);
    if by_rows(channels, plane) {
        return rows::normalize(x, (channels, plane), (scale, shift), residual, relu);
    }
    crate::cpu::filled(x.len(), plane, |i, y| {
        let x = &x[i * plane..][..plane];
        let c = i % channels;
        let st = (scale[c], shift[c]);
        let plane_residual = match residual {
            Residual::None => PlaneResidual::None,
            Residual::Plain(r) => PlaneResidual::Plain(&r[i * plane..][..plane]),
            Residual::Normalized(r, rs, rt) => {
                PlaneResidual::Normalized(&r[i * plane..][..plane], rs[c], rt[c])
            }
        };
        wide(
            #[inline(always)]
            move || normalize_plane(y, x, st, plane_residual, relu),
        )
    })
}

/// One plane's share of a [`Residual`]: its values, and the residual's scale and shift.
#[derive(Clone, Copy)]
enum PlaneResidual<'a> {
    None,
    Plain(&'a [f32]),
    Normalized(&'a [f32], f32, f32),
}

/// One plane of [`normalize`]: `y = [relu](s x + t + residual)`. A function of plain values (no
/// captures behind references), so that the loops vectorize under [`wide`].
#[inline(always)]
fn normalize_plane(
    y: &mut [f32],
    x: &[f32],
    (s, t): (f32, f32),
    residual: PlaneResidual<'_>,
    relu: bool,
) {
    let relu = |v: f32| if relu { v.max(0.0) } else { v };
    match residual {
        PlaneResidual::None => {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = relu(x * s + t);
            }
        }
        PlaneResidual::Plain(r) => {
            for ((y, &x), &r) in y.iter_mut().zip(x).zip(r) {
                *y = relu(x * s + t + r);
            }
        }
        PlaneResidual::Normalized(r, rs, rt) => {
            for ((y, &x), &r) in y.iter_mut().zip(x).zip(r) {
                *y = relu(x * s + t + (r * rs + rt));
            }
        }
    }
}

/// The gradient reaching the normalization: `dy`, or 0 where a folded ReLU cut the output `y`.
#[inline(always)]
fn relu_masked(relu: bool, dy: f32, y: f32) -> f32 {
    if relu && y <= 0.0 { 0.0 } else { dy }
}

/// Runs `f` on the values of `x`, `y` and `dy` (made contiguous), which must be f32 CPU
/// tensors: the shared start of the backward passes.
fn with_cpu_values<R>(
    x: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    f: impl FnOnce(&[f32], &[f32], &[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let dy = dy.contiguous()?;
    let (xs, xl) = x.storage_and_layout();
    let (ys, yl) = y.storage_and_layout();
    let (dys, dyl) = dy.storage_and_layout();
    let (Storage::Cpu(xs), Storage::Cpu(ys), Storage::Cpu(dys)) = (&*xs, &*ys, &*dys) else {
        candle_core::bail!("fused BatchNorm runs on the CPU only")
    };
    f(slice(xs, xl)?, slice(ys, yl)?, slice(dys, dyl)?)
}

/// `(sum g, sum g (x - mean))` over one plane, `g` the output gradient `dy` zeroed where a
/// folded ReLU cut the output `y` (`relu`); f64 sums in [`LANES`] interleaved partial sums.
#[inline(always)]
fn plane_gradient_sums(x: &[f32], dy: &[f32], y: &[f32], mean: f64, relu: bool) -> (f64, f64) {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let whole = x.len() / LANES * LANES;
    let chunks = x[..whole]
        .chunks_exact(LANES)
        .zip(dy[..whole].chunks_exact(LANES))
        .zip(y[..whole].chunks_exact(LANES));
    // One sum per loop: the compiler vectorizes each into whole-register operations, where
    // a loop carrying both interleaves them lane by lane. The second loop reads from cache.
    for (dy, y) in chunks.clone().map(|(xd, y)| (xd.1, y)) {
        for l in 0..LANES {
            s1[l] += f64::from(relu_masked(relu, dy[l], y[l]));
        }
    }
    for ((x, dy), y) in chunks {
        for l in 0..LANES {
            s2[l] += f64::from(relu_masked(relu, dy[l], y[l])) * (f64::from(x[l]) - mean);
        }
    }
    let (mut t1, mut t2) = (s1.iter().sum::<f64>(), s2.iter().sum::<f64>());
    for i in whole..x.len() {
        let g = f64::from(relu_masked(relu, dy[i], y[i]));
        t1 += g;
        t2 += g * (f64::from(x[i]) - mean);
    }
    (t1, t2)
}

/// Per channel `db = sum g` and `dw = sum g xhat` with `xhat = (x - mean) invstd`, `g` the
/// output gradient `dy` zeroed where a folded ReLU cut the output (`relu`, judged by the output
/// `y`); f64 sums. Arguments: `(x, dy, y)` as `[N, C, plane]`, `(channels, plane)`,
/// `(mean, invstd)` per channel.
fn gradient_sums(
    (xv, dyv, yv): (&[f32], &[f32], &[f32]),
    (channels, plane): (usize, usize),
    (mean, invstd): (&[f64], &[f64]),
    relu: bool,
) -> (Vec<f64>, Vec<f64>) {
    if by_rows(channels, plane) {
        return rows::gradient_sums((xv, dyv, yv), (channels, plane), (mean, invstd), relu);
    }
    let n = xv.len() / (channels * plane);
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let (mut db, mut dw) = (0.0, 0.0);
            for k in 0..n {
                let at = (k * channels + c) * plane;
                let (x, dy, y) = (&xv[at..][..plane], &dyv[at..][..plane], &yv[at..][..plane]);
                let m = mean[c];
                let (s1, s2) = wide(
                    #[inline(always)]
                    move || plane_gradient_sums(x, dy, y, m, relu),
                );
                db += s1;
                dw += s2;
            }
            (db, dw * invstd[c])
        })
        .unzip()
}

/// One plane of a BatchNorm's input gradient,
/// `dx = k (M g - db - xhat dw)` with `xhat = (x - mean) invstd` and `g` the output gradient
/// `dy` masked by the folded ReLU (`relu`, judged by the output `y`), computed in f64; `g` itself
/// into `masked` when given. `[k, M, mean, invstd, db, dw]` are the channel's coefficients.
#[inline(always)]
fn input_gradient_plane(
    dx: &mut [f32],
    masked: Option<&mut [f32]>,
    (x, dy, y): (&[f32], &[f32], &[f32]),
    [k, count, mean, invstd, db, dw]: [f64; 6],
    relu: bool,
) {
    for (((dx, &x), &dy), &y) in dx.iter_mut().zip(x).zip(dy).zip(y) {
        let xhat = (f64::from(x) - mean) * invstd;
        let g = f64::from(relu_masked(relu, dy, y));
        *dx = (k * (count * g - db - xhat * dw)) as f32;
    }
    if let Some(masked) = masked {
        for ((g, &dy), &y) in masked.iter_mut().zip(dy).zip(y) {
            *g = relu_masked(relu, dy, y);
        }
    }
}

/// The backward pass of a BatchNorm on planes not [by rows](by_rows), one channel per task:
/// its sums over its `n` planes ([`plane_gradient_sums`], in image order), then its planes of
/// `dx` (and of the masked output gradient when `masked_dy`) by [`input_gradient_plane`], while
/// the channel's `x`, `dy` and `y` (3 n plane floats: 192 KiB at batch 16 on 32 x 32 planes)
/// are still in the core's cache. Two passes over all channels read them twice from memory.
/// Returns `(dx, masked, db, dw)`; the same values as the two passes, bit for bit.
fn by_channel(
    (xv, dyv, yv): (&[f32], &[f32], &[f32]),
    (channels, plane): (usize, usize),
    (w, mean, invstd): (&[f32], &[f64], &[f64]),
    relu: bool,
    masked_dy: bool,
) -> (Vec<f32>, Option<Vec<f32>>, Vec<f64>, Vec<f64>) {
    let n = xv.len() / (channels * plane);
    let count = (n * plane) as f64;
    let len = xv.len();
    let mut dx: Vec<f32> = Vec::with_capacity(len);
    let mut masked: Option<Vec<f32>> = masked_dy.then(|| Vec::with_capacity(len));
    // Their spare capacity, for tasks writing disjoint planes.
    let planes = (
        DisjointParts::new(&mut dx.spare_capacity_mut()[..len]),
        masked
            .as_mut()
            .map(|m| DisjointParts::new(&mut m.spare_capacity_mut()[..len])),
    );
    let (db, dw): (Vec<f64>, Vec<f64>) = (0..channels)
        .into_par_iter()
        .map(|c| {
            let planes = &planes;
            let (m, s) = (mean[c], invstd[c]);
            let at = |i: usize| (i * channels + c) * plane;
            let inputs = |i: usize| {
                let at = at(i);
                (&xv[at..][..plane], &dyv[at..][..plane], &yv[at..][..plane])
            };
            let (mut db, mut dw) = (0.0, 0.0);
            for i in 0..n {
                let (x, dy, y) = inputs(i);
                let (s1, s2) = wide(
                    #[inline(always)]
                    move || plane_gradient_sums(x, dy, y, m, relu),
                );
                db += s1;
                dw += s2;
            }
            let dw = dw * s;
            let k = f64::from(w[c]) * s / count;
            let coefficients = [k, count, m, s, db, dw];
            for i in 0..n {
                let at = at(i);
                // SAFETY: plane `i * channels + c` of `dx` (and of `masked`) is written by this
                // task only, and no one else reads it until all tasks are done.
                #[allow(unsafe_code)]
                let (dx, out) = unsafe {
                    (
                        planes.0.part(at, plane),
                        planes.1.as_ref().map(|m| m.part(at, plane)),
                    )
                };
                let (dx, out) = (crate::cpu::zeroed(dx), out.map(crate::cpu::zeroed));
                let inputs = inputs(i);
                wide(
                    #[inline(always)]
                    move || input_gradient_plane(dx, out, inputs, coefficients, relu),
                );
            }
            (db, dw)
        })
        .unzip();
    // SAFETY: the tasks wrote every plane of both buffers: `n` planes for each of `channels`
    // channels, `len` floats, their capacity.
    #[allow(unsafe_code)]
    unsafe {
        dx.set_len(len);
        if let Some(masked) = masked.as_mut() {
            masked.set_len(len);
        }
    }
    (dx, masked, db, dw)
}

/// Whether a BatchNorm's values go by [`rows`]: planes too small for a loop of their own (a
/// ResNet's last stages on small images: 8 x 8 down to 1 x 1), where per-plane loops of 1 to
/// 64 values cost several times more per value than a 16 x 16 plane's (docs/benchmarks.md,
/// "Issue 18, our loops compiled for AVX-512/AVX2 at run time"), and few enough channels that a
/// row's f64 sums stay in cache.
fn by_rows(channels: usize, plane: usize) -> bool {
    plane < 256 && channels * plane <= 1 << 15
}

/// BatchNorm over whole rows: an image's `C x plane` values are one contiguous row of lanes
/// (lane `j` in channel `j / plane`), per-channel values are spread over the lanes, and every
/// loop runs along a row, so it vectorizes whatever the plane's size. Sums are per lane over
/// the images (in image order), then per channel over its lanes (in lane order); the output
/// and input-gradient formulas are those of the per-plane kernels, value for value.
mod rows {
    use rayon::prelude::*;

    use super::{Residual, relu_masked};
    use crate::cpu::wide;

    /// Lanes per parallel task of the sums.
    const CHUNK: usize = 1024;

    /// `values` per channel spread over the lanes of a row.
    fn spread<T: Copy>(values: &[T], plane: usize) -> Vec<T> {
        values
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, plane))
            .collect()
    }

    /// Per-channel totals of per-lane sums, in lane order.
    fn per_channel(lanes: &[f64], plane: usize) -> Vec<f64> {
        lanes.chunks_exact(plane).map(|c| c.iter().sum()).collect()
    }

    /// `f(chunk of the lanes, offset)` for the row's lanes in parallel chunks of [`CHUNK`].
    fn lanes_in_parallel(row: usize, f: impl Fn(&mut [f64], usize) + Sync) -> Vec<f64> {
        let mut lanes = vec![0f64; row];
        lanes
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, chunk)| f(chunk, k * CHUNK));
        lanes
    }

    #[inline(always)]
    fn add_values(acc: &mut [f64], x: &[f32], (row, at): (usize, usize)) {
        for xs in x.chunks_exact(row) {
            for (a, &v) in acc.iter_mut().zip(&xs[at..]) {
                *a += f64::from(v);
            }
        }
    }

    #[inline(always)]
    fn add_squares(acc: &mut [f64], x: &[f32], mean: &[f64], (row, at): (usize, usize)) {
        for xs in x.chunks_exact(row) {
            for ((a, &v), &m) in acc.iter_mut().zip(&xs[at..]).zip(mean) {
                *a += (f64::from(v) - m) * (f64::from(v) - m);
            }
        }
    }

    /// Per-channel mean and biased variance of `x` (`[N, C, plane]`), two passes, f64 sums.
    pub(super) fn statistics(x: &[f32], channels: usize, plane: usize) -> (Vec<f64>, Vec<f64>) {
        let row = channels * plane;
        let count = (x.len() / row * plane) as f64;
        let sums = lanes_in_parallel(row, |acc, at| {
            wide(
                #[inline(always)]
                || add_values(acc, x, (row, at)),
            )
        });
        let mean: Vec<f64> = per_channel(&sums, plane)
            .into_iter()
            .map(|s| s / count)
            .collect();
        let spread_mean = spread(&mean, plane);
        let squares = lanes_in_parallel(row, |acc, at| {
            let mean = &spread_mean[at..];
            wide(
                #[inline(always)]
                || add_squares(acc, x, mean, (row, at)),
            )
        });
        let var = per_channel(&squares, plane)
            .into_iter()
            .map(|s| s / count)
            .collect();
        (mean, var)
    }

    /// A row's share of a [`Residual`], per-channel values spread over the lanes.
    #[derive(Clone, Copy)]
    enum RowResidual<'a> {
        None,
        Plain(&'a [f32]),
        Normalized(&'a [f32], &'a [f32], &'a [f32]),
    }

    /// One row of [`normalize`]: `y = [relu](s x + t + residual)`, lane by lane.
    #[inline(always)]
    fn normalize_row(
        y: &mut [f32],
        x: &[f32],
        (s, t): (&[f32], &[f32]),
        residual: RowResidual<'_>,
        relu: bool,
    ) {
        let relu = |v: f32| if relu { v.max(0.0) } else { v };
        let values = y.iter_mut().zip(x).zip(s.iter().zip(t));
        match residual {
            RowResidual::None => {
                for ((y, &x), (&s, &t)) in values {
                    *y = relu(x * s + t);
                }
            }
            RowResidual::Plain(r) => {
                for (((y, &x), (&s, &t)), &r) in values.zip(r) {
                    *y = relu(x * s + t + r);
                }
            }
            RowResidual::Normalized(r, rs, rt) => {
                for (((y, &x), (&s, &t)), ((&r, &rs), &rt)) in values.zip(r.iter().zip(rs).zip(rt))
                {
                    *y = relu(x * s + t + (r * rs + rt));
                }
            }
        }
    }

    /// `y = [relu](scale x + shift + residual)` of `x` (`[N, C, plane]`), rows in parallel.
    pub(super) fn normalize(
        x: &[f32],
        (channels, plane): (usize, usize),
        (scale, shift): (&[f32], &[f32]),
        residual: Residual<'_>,
        relu: bool,
    ) -> Vec<f32> {
        let row = channels * plane;
        let (s, t) = (spread(scale, plane), spread(shift, plane));
        let spread_residual = match residual {
            Residual::Normalized(_, rs, rt) => Some((spread(rs, plane), spread(rt, plane))),
            _ => None,
        };
        let mut y = crate::cpu::zeros(x.len());
        y.par_chunks_mut(row)
            .zip(x.par_chunks(row))
            .enumerate()
            .for_each(|(n, (y, x))| {
                let residual = match (residual, &spread_residual) {
                    (Residual::Plain(r), _) => RowResidual::Plain(&r[n * row..][..row]),
                    (Residual::Normalized(r, ..), Some((rs, rt))) => {
                        RowResidual::Normalized(&r[n * row..][..row], rs, rt)
                    }
                    _ => RowResidual::None,
                };
                let st = (&s[..], &t[..]);
                wide(
                    #[inline(always)]
                    move || normalize_row(y, x, st, residual, relu),
                )
            });
        y
    }

    #[inline(always)]
    fn add_gradient_sums(
        (s1, s2): (&mut [f64], &mut [f64]),
        (x, dy, y): (&[f32], &[f32], &[f32]),
        mean: &[f64],
        (row, at): (usize, usize),
        relu: bool,
    ) {
        let rows = x
            .chunks_exact(row)
            .zip(dy.chunks_exact(row))
            .zip(y.chunks_exact(row));
        for ((xs, dys), ys) in rows {
            let inputs = xs[at..].iter().zip(&dys[at..]).zip(&ys[at..]).zip(mean);
            for ((a1, a2), (((&x, &dy), &y), &m)) in s1.iter_mut().zip(s2.iter_mut()).zip(inputs) {
                let g = f64::from(relu_masked(relu, dy, y));
                *a1 += g;
                *a2 += g * (f64::from(x) - m);
            }
        }
    }

    /// Per channel `db = sum g` and `dw = sum g xhat`, as [`super::gradient_sums`].
    pub(super) fn gradient_sums(
        (x, dy, y): (&[f32], &[f32], &[f32]),
        (channels, plane): (usize, usize),
        (mean, invstd): (&[f64], &[f64]),
        relu: bool,
    ) -> (Vec<f64>, Vec<f64>) {
        let row = channels * plane;
        let spread_mean = spread(mean, plane);
        let mut s1 = vec![0f64; row];
        let mut s2 = vec![0f64; row];
        s1.par_chunks_mut(CHUNK)
            .zip(s2.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(k, (s1, s2))| {
                let (at, mean) = (k * CHUNK, &spread_mean[k * CHUNK..]);
                wide(
                    #[inline(always)]
                    || add_gradient_sums((s1, s2), (x, dy, y), mean, (row, at), relu),
                )
            });
        let dw = per_channel(&s2, plane)
            .into_iter()
            .zip(invstd)
            .map(|(s, i)| s * i)
            .collect();
        (per_channel(&s1, plane), dw)
    }

    /// Per-channel coefficients of the input gradient (see [`super::input_gradient_plane`]).
    pub(super) struct InputGradient<'a> {
        pub(super) k: Vec<f64>,
        pub(super) count: f64,
        pub(super) mean: &'a [f64],
        pub(super) invstd: &'a [f64],
        pub(super) db: &'a [f64],
        pub(super) dw: &'a [f64],
    }

    /// One row of [`input_gradient`]: per lane, the formula of
    /// [`super::input_gradient_plane`] with the lane's channel's coefficients.
    #[inline(always)]
    fn input_gradient_row(
        dx: &mut [f32],
        masked: Option<&mut [f32]>,
        (x, dy, y): (&[f32], &[f32], &[f32]),
        [k, mean, invstd, db, dw]: [&[f64]; 5],
        count: f64,
        relu: bool,
    ) {
        let coefficients = k.iter().zip(mean).zip(invstd).zip(db).zip(dw);
        let values = dx.iter_mut().zip(x).zip(dy).zip(y);
        for ((((dx, &x), &dy), &y), ((((&k, &mean), &invstd), &db), &dw)) in
            values.zip(coefficients)
        {
            let xhat = (f64::from(x) - mean) * invstd;
            let g = f64::from(relu_masked(relu, dy, y));
            *dx = (k * (count * g - db - xhat * dw)) as f32;
        }
        if let Some(masked) = masked {
            for ((g, &dy), &y) in masked.iter_mut().zip(dy).zip(y) {
                *g = relu_masked(relu, dy, y);
            }
        }
    }

    /// The input gradient `dx` (and the masked output gradient into `masked`), rows in
    /// parallel.
    pub(super) fn input_gradient(
        dx: &mut [f32],
        masked: Option<&mut [f32]>,
        (x, dy, y): (&[f32], &[f32], &[f32]),
        plane: usize,
        c: &InputGradient<'_>,
        relu: bool,
    ) {
        let row = c.k.len() * plane;
        let spread_all = [&c.k[..], c.mean, c.invstd, c.db, c.dw].map(|v| spread(v, plane));
        let coefficients = [0, 1, 2, 3, 4].map(|i| &spread_all[i][..]);
        let count = c.count;
        let run = |n: usize, dx: &mut [f32], masked: Option<&mut [f32]>| {
            let at = n * row..(n + 1) * row;
            let inputs = (&x[at.clone()], &dy[at.clone()], &y[at]);
            wide(
                #[inline(always)]
                move || input_gradient_row(dx, masked, inputs, coefficients, count, relu),
            )
        };
        match masked {
            Some(masked) => dx
                .par_chunks_mut(row)
                .zip(masked.par_chunks_mut(row))
                .enumerate()
                .for_each(|(n, (dx, masked))| run(n, dx, Some(masked))),
            None => dx
                .par_chunks_mut(row)
                .enumerate()
                .for_each(|(n, dx)| run(n, dx, None)),
        }
    }
}

/// The gradients of one BatchNorm: `dx`, `dw`, `db`, and (when `masked_dy`) the output
/// gradient with the ReLU's zeros applied, which is the residual's gradient.
struct Gradients {
    dx: Tensor,
    dw: Vec<f32>,
    db: Vec<f32>,
    masked_dy: Option<Tensor>,
}

/// One BatchNorm as its backward pass needs it: the weight (`w`), `eps`, and the batch
/// statistics its forward pass recorded.
struct Normalization<'a> {
    weight: &'a [f32],
    eps: f64,
    statistics: &'a Statistics,
}

/// The backward pass shared by the two ops: `x` the input, `y` the output and `dy` its
/// gradient. With `relu`, the gradient is 0 where the output is 0; with `masked_dy`, that
/// masked gradient is returned too.
fn backward(
    x: &Tensor,
    bn: Normalization<'_>,
    y: &Tensor,
    dy: &Tensor,
    relu: bool,
    masked_dy: bool,
) -> candle_core::Result<Gradients> {
    let Normalization {
        weight: w,
        eps,
        statistics,
    } = bn;
    let (n, channels, h, width) = x.dims4()?;
    let plane = h * width;
    let count = (n * plane) as f64;
    with_cpu_values(x, y, dy, |xv, yv, dyv| {
        // Each forward pass makes its own op, so these statistics are this x's.
        let (mean, var) = match statistics.lock().expect("statistics lock").clone() {
            Some(saved) => saved,
            None => self::statistics(xv, channels, plane),
        };
        let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        if !by_rows(channels, plane) {
            let _t = crate::profile::scope("batch norm backward: by channel");
            let (dx, masked, db, dw) = by_channel(
                (xv, dyv, yv),
                (channels, plane),
                (w, &mean, &invstd),
                relu,
                masked_dy,
            );
            let (device, shape) = (x.device(), x.shape());
            let narrow = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
            return Ok(Gradients {
                dx: Tensor::from_vec(dx, shape, device)?,
                dw: narrow(dw),
                db: narrow(db),
                masked_dy: masked
                    .map(|m| Tensor::from_vec(m, shape, device))
                    .transpose()?,
            });
        }
        // Sub-phases of both ops' backward passes.
        let t = crate::profile::scope("batch norm backward: gradient sums");
        let (db, dw) = gradient_sums((xv, dyv, yv), (channels, plane), (&mean, &invstd), relu);
        drop(t);
        let _t = crate::profile::scope("batch norm backward: input gradient");
        // Planes by rows from here: the others went by channel above.
        let mut dx = crate::cpu::zeros(xv.len());
        let mut masked_out = if masked_dy {
            crate::cpu::zeros(xv.len())
        } else {
            Vec::new()
        };
        let coefficients = rows::InputGradient {
            k: (0..channels)
                .map(|c| f64::from(w[c]) * invstd[c] / count)
                .collect(),
            count,
            mean: &mean,
            invstd: &invstd,
            db: &db,
            dw: &dw,
        };
        let masked = masked_dy.then_some(&mut masked_out[..]);
        rows::input_gradient(&mut dx, masked, (xv, dyv, yv), plane, &coefficients, relu);
        let device = x.device();
        let narrow = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
        Ok(Gradients {
            dx: Tensor::from_vec(dx, x.shape(), device)?,
            dw: narrow(dw),
            db: narrow(db),
            masked_dy: if masked_dy {
                Some(Tensor::from_vec(masked_out, x.shape(), device)?)
            } else {
                None
            },
        })
    })
}

impl CustomOp3 for FusedBatchNorm {
    fn name(&self) -> &'static str {
        "sd-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _t = crate::profile::scope("batch norm forward");
        let (x, w, b) = (slice(xs, xl)?, slice(ws, wl)?, slice(bs, bl)?);
        let (scale, shift) = affine(x, xl.dims(), w, b, self.eps, &self.statistics);
        let y = normalize(x, xl.dims(), (&scale, &shift), Residual::None, self.relu);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _t = crate::profile::scope("batch norm backward");
        let channels = w.dim(0)?;
        let weight = w.to_vec1::<f32>()?;
        let bn = Normalization {
            weight: &weight,
            eps: self.eps,
            statistics: &self.statistics,
        };
        let g = backward(x, bn, y, dy, self.relu, false)?;
        let device = x.device();
        Ok((
            Some(g.dx),
            Some(Tensor::from_vec(g.dw, channels, device)?),
            Some(Tensor::from_vec(g.db, channels, device)?),
        ))
    }
}

/// BatchNorm in evaluation mode as one op: `y = [relu](w (x - mean) / sqrt(var + eps) + b)` with
/// the running statistics, which are constants here (no gradient reaches them). Backward, with
/// `dy` masked by the ReLU: `dx = dy w / sqrt(var + eps)`, `dw = sum dy xhat`, `db = sum dy`.
///
/// Evaluation mode runs for every evaluation and, in a distillation chain, for the teacher's
/// predictions; as a composition it was a transpose-free but five-op chain of broadcasts.
pub(crate) struct FusedBatchNormEval {
    pub(crate) eps: f64,
    /// Running mean and running variance per channel.
    pub(crate) mean: Vec<f64>,
    pub(crate) var: Vec<f64>,
    pub(crate) relu: bool,
}

impl FusedBatchNormEval {
    /// `scale = w / sqrt(var + eps)` per channel, rounded to f32.
    fn scale(&self, w: &[f32]) -> Vec<f32> {
        (0..w.len())
            .map(|c| (f64::from(w[c]) / (self.var[c] + self.eps).sqrt()) as f32)
            .collect()
    }

    /// [`Self::scale`] and `shift = b - mean scale`, per channel, rounded to f32.
    fn affine(&self, w: &[f32], b: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let scale = self.scale(w);
        let shift = (0..w.len())
            .map(|c| (f64::from(b[c]) - self.mean[c] * f64::from(scale[c])) as f32)
            .collect();
        (scale, shift)
    }
}

impl CustomOp3 for FusedBatchNormEval {
    fn name(&self) -> &'static str {
        "sd-batch-norm-eval"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _t = crate::profile::scope("batch norm forward (evaluation)");
        let (x, w, b) = (slice(xs, xl)?, slice(ws, wl)?, slice(bs, bl)?);
        let dims = xl.dims();
        if dims.len() != 4 || w.len() != dims[1] || self.mean.len() != dims[1] {
            candle_core::bail!(
                "BatchNorm: input {dims:?} does not match {} channels",
                w.len()
            )
        }
        let (scale, shift) = self.affine(w, b);
        let y = normalize(x, dims, (&scale, &shift), Residual::None, self.relu);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, channels, h, width) = x.dims4()?;
        let plane = h * width;
        with_cpu_values(x, y, dy, |xv, yv, dyv| {
            let weight = w.to_vec1::<f32>()?;
            let relu = self.relu;
            let invstd: Vec<f64> = self
                .var
                .iter()
                .map(|v| 1.0 / (v + self.eps).sqrt())
                .collect();
            let scale = self.scale(&weight);
            let (db, dw) = gradient_sums(
                (xv, dyv, yv),
                (channels, plane),
                (&self.mean, &invstd),
                relu,
            );
            let narrow = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
            let (db, dw) = (narrow(db), narrow(dw));
            let mut dx = crate::cpu::zeros(xv.len());
            dx.par_chunks_mut(plane)
                .zip(dyv.par_chunks(plane).zip(yv.par_chunks(plane)))
                .enumerate()
                .for_each(|(i, (dx, (dy, y)))| {
                    let s = scale[i % channels];
                    wide(
                        #[inline(always)]
                        move || {
                            for ((dx, &dy), &y) in dx.iter_mut().zip(dy).zip(y) {
                                *dx = relu_masked(relu, dy, y) * s;
                            }
                        },
                    )
                });
            let device = x.device();
            Ok((
                Some(Tensor::from_vec(dx, x.shape(), device)?),
                Some(Tensor::from_vec(dw, channels, device)?),
                Some(Tensor::from_vec(db, channels, device)?),
            ))
        })
    }
}

/// `relu(BatchNorm(x) + residual)`, the end of every ResNet block, as one op: the arguments are
/// `x`, the residual, and the BatchNorm's weight and bias concatenated (`[2 C]`). When the block
/// has a downsampling branch, its BatchNorm is folded in too (`residual_statistics` is set): the
/// residual is the downsampling convolution's output and the parameters are
/// `[w, b, w_residual, b_residual]` (`[4 C]`).
///
/// Compared with BatchNorms followed by [`crate::layers::add_relu`], the normalized tensors are
/// never made, so the computation graph does not keep them until the backward pass (one
/// activation-sized tensor per block, two in a block that downsamples: docs/benchmarks.md, "Figures behind the code's choices"), and the
/// output is written in one pass.
pub(crate) struct FusedBatchNormAddRelu {
    pub(crate) eps: f64,
    pub(crate) statistics: Statistics,
    pub(crate) residual_statistics: Option<Statistics>,
}

impl FusedBatchNormAddRelu {
    /// How many parameters per channel the op takes: 2, or 4 with a normalized residual.
    fn params_per_channel(&self) -> usize {
        if self.residual_statistics.is_some() {
            4
        } else {
            2
        }
    }
}

impl CustomOp3 for FusedBatchNormAddRelu {
    fn name(&self) -> &'static str {
        "sd-batch-norm-add-relu-train"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _t = crate::profile::scope("batch norm + add + relu forward");
        let (x, residual, params) = (slice(xs, xl)?, slice(rs, rl)?, slice(ps, pl)?);
        let dims = xl.dims();
        if rl.dims() != dims || params.len() != self.params_per_channel() * dims[1] {
            candle_core::bail!(
                "BatchNorm + residual: input {:?}, residual {:?} and {} parameters do not match",
                dims,
                rl.dims(),
                params.len()
            )
        }
        let channels = dims[1];
        let (w, b) = (&params[..channels], &params[channels..2 * channels]);
        let (scale, shift) = affine(x, dims, w, b, self.eps, &self.statistics);
        let y = match &self.residual_statistics {
            None => normalize(x, dims, (&scale, &shift), Residual::Plain(residual), true),
            Some(statistics) => {
                let (w, b) = (&params[2 * channels..3 * channels], &params[3 * channels..]);
                let (rs, rt) = affine(residual, dims, w, b, self.eps, statistics);
                let residual = Residual::Normalized(residual, &rs, &rt);
                normalize(x, dims, (&scale, &shift), residual, true)
            }
        };
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        residual: &Tensor,
        params: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _t = crate::profile::scope("batch norm + add + relu backward");
        let params = params.to_vec1::<f32>()?;
        let channels = x.dim(1)?;
        let bn = Normalization {
            weight: &params[..channels],
            eps: self.eps,
            statistics: &self.statistics,
        };
        let Some(residual_statistics) = &self.residual_statistics else {
            let g = backward(x, bn, y, dy, true, true)?;
            let mut dparams = g.dw;
            dparams.extend(g.db);
            let dparams = Tensor::from_vec(dparams, params.len(), x.device())?;
            return Ok((Some(g.dx), g.masked_dy, Some(dparams)));
        };
        // Both BatchNorms see the same masked output gradient.
        let g = backward(x, bn, y, dy, true, false)?;
        let residual_bn = Normalization {
            weight: &params[2 * channels..3 * channels],
            eps: self.eps,
            statistics: residual_statistics,
        };
        let r = backward(residual, residual_bn, y, dy, true, false)?;
        let dparams: Vec<f32> = [g.dw, g.db, r.dw, r.db].concat();
        let dparams = Tensor::from_vec(dparams, params.len(), x.device())?;
        Ok((Some(g.dx), Some(r.dx), Some(dparams)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};
    use proptest::prelude::*;

    /// The reference: the composition of candle ops the layer used before (and still offers).
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let c = w.dim(0).unwrap();
        let (n, _, h, wd) = x.dims4().unwrap();
        let flat = x.transpose(0, 1).unwrap().reshape((c, n * h * wd)).unwrap();
        let mean = flat.mean_keepdim(D::Minus1).unwrap();
        let var = flat
            .broadcast_sub(&mean)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_keepdim(D::Minus1)
            .unwrap();
        let (mean, var) = (mean.flatten_all().unwrap(), var.flatten_all().unwrap());
        let scale = (w / (var + eps).unwrap().sqrt().unwrap()).unwrap();
        let shift = (b - (&mean * &scale).unwrap()).unwrap();
        x.broadcast_mul(&scale.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&shift.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all()
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        // Relative to the largest value, with a floor: near-zero gradients are rounding noise.
        let scale = b.iter().fold(1e-2f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * scale)
    }

    /// The kernels give the same bits under [`wide`] (AVX-512 or AVX2 where the CPU has them)
    /// as compiled for the baseline: no fused multiply-adds, no reordered sums.
    #[test]
    fn wide_kernels_equal_the_baseline() {
        let n = 1000 + LANES / 2; // a remainder after the whole lanes
        let value = |i: usize, k: u32| ((i as f32 * 0.37 + k as f32).sin() * 3.0).powi(3);
        let (x, dy, y): (Vec<f32>, Vec<f32>, Vec<f32>) = (0..n)
            .map(|i| (value(i, 1), value(i, 2), value(i, 3)))
            .collect();
        for relu in [false, true] {
            let base = plane_gradient_sums(&x, &dy, &y, 0.3, relu);
            let fast = wide(
                #[inline(always)]
                || plane_gradient_sums(&x, &dy, &y, 0.3, relu),
            );
            assert_eq!(base.0.to_bits(), fast.0.to_bits());
            assert_eq!(base.1.to_bits(), fast.1.to_bits());
            let coefficients = [0.7, n as f64, 0.3, 1.9, -2.1, 0.45];
            let (mut base_dx, mut base_g) = (vec![0f32; n], vec![0f32; n]);
            input_gradient_plane(
                &mut base_dx,
                Some(&mut base_g),
                (&x, &dy, &y),
                coefficients,
                relu,
            );
            let (mut dx, mut g) = (vec![0f32; n], vec![0f32; n]);
            wide(
                #[inline(always)]
                || input_gradient_plane(&mut dx, Some(&mut g), (&x, &dy, &y), coefficients, relu),
            );
            assert_eq!(bits(&base_dx), bits(&dx));
            assert_eq!(bits(&base_g), bits(&g));
            let residual = PlaneResidual::Normalized(&dy, 1.3, -0.2);
            let mut base_y = vec![0f32; n];
            normalize_plane(&mut base_y, &x, (0.8, 0.1), residual, relu);
            let mut out = vec![0f32; n];
            wide(
                #[inline(always)]
                || normalize_plane(&mut out, &x, (0.8, 0.1), residual, relu),
            );
            assert_eq!(bits(&base_y), bits(&out));
        }
        let base = lane_sum(&x, |v| v * v - 0.5);
        let fast = wide(
            #[inline(always)]
            || lane_sum(&x, |v| v * v - 0.5),
        );
        assert_eq!(base.to_bits(), fast.to_bits());
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn fused_equals_the_composition(
            n in 1usize..5, c in 1usize..6, h in 1usize..7, w in 1usize..7,
            shift in -3f32..3.0, spread in 0.1f32..4.0, relu in any::<bool>(), big in any::<bool>(),
        ) {
            prop_assume!(n * h * w > 1);
            // Planes of 256 values and more go plane by plane, smaller ones by rows.
            let (h, w) = if big { (h + 15, w + 15) } else { (h, w) };
            let device = Device::Cpu;
            let x = Var::from_tensor(&((Tensor::randn(0f32, 1.0, (n, c, h, w), &device).unwrap() * spread as f64).unwrap() + shift as f64).unwrap()).unwrap();
            let weight = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &device).unwrap()).unwrap();
            let bias = Var::from_tensor(&Tensor::randn(0f32, 0.5, c, &device).unwrap()).unwrap();
            // A random linear functional of the output, so every output's gradient matters.
            let probe = Tensor::randn(0f32, 1.0, (n, c, h, w), &device).unwrap();
            let statistics = Statistics::default();
            let fused = x.as_tensor().apply_op3(weight.as_tensor(), bias.as_tensor(), FusedBatchNorm { eps: 1e-5, statistics: statistics.clone(), relu }).unwrap();
            // The truth: the composition in f64 on the same values (the f32 composition itself
            // loses digits to cancellation when a channel's values are close together).
            let wide = |v: &Var| Var::from_tensor(&v.as_tensor().to_dtype(candle_core::DType::F64).unwrap()).unwrap();
            let (x64, w64, b64) = (wide(&x), wide(&weight), wide(&bias));
            let mut truth = reference(x64.as_tensor(), w64.as_tensor(), b64.as_tensor(), 1e-5);
            if relu {
                truth = truth.relu().unwrap();
            }
            prop_assert!(close(&values(&fused), &values(&truth)));
            let g1 = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let probe64 = probe.to_dtype(candle_core::DType::F64).unwrap();
            let g2 = (truth * &probe64).unwrap().sum_all().unwrap().backward().unwrap();
            for (var, var64) in [(&x, &x64), (&weight, &w64), (&bias, &b64)] {
                let a = values(g1.get(var.as_tensor()).unwrap());
                let b = values(g2.get(var64.as_tensor()).unwrap());
                prop_assert!(close(&a, &b), "{:?} vs {:?}", a, b);
            }
            let (mean, _) = statistics.lock().unwrap().clone().unwrap();
            prop_assert_eq!(mean.len(), c);
        }

        /// Evaluation mode as one op equals the f64 composition with the same running
        /// statistics, gradients of the input, the weight and the bias included.
        #[test]
        fn fused_eval_equals_the_composition(
            n in 1usize..5, c in 1usize..6, h in 1usize..7, w in 1usize..7,
            shift in -3f32..3.0, spread in 0.1f32..4.0, relu in any::<bool>(), seed in 0u64..1000,
            big in any::<bool>(),
        ) {
            let (h, w) = if big { (h + 15, w + 15) } else { (h, w) };
            let device = Device::Cpu;
            let x = Var::from_tensor(&((Tensor::randn(0f32, 1.0, (n, c, h, w), &device).unwrap() * spread as f64).unwrap() + shift as f64).unwrap()).unwrap();
            let weight = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &device).unwrap()).unwrap();
            let bias = Var::from_tensor(&Tensor::randn(0f32, 0.5, c, &device).unwrap()).unwrap();
            // Running statistics near, not at, the batch's own.
            let mean: Vec<f64> = (0..c).map(|i| f64::from(shift) + ((i as u64 * 7 + seed) % 5) as f64 * 0.1 - 0.2).collect();
            let var: Vec<f64> = (0..c).map(|i| f64::from(spread * spread) * (0.5 + ((i as u64 + seed) % 4) as f64 * 0.25)).collect();
            let probe = Tensor::randn(0f32, 1.0, (n, c, h, w), &device).unwrap();
            let op = FusedBatchNormEval { eps: 1e-5, mean: mean.clone(), var: var.clone(), relu };
            let fused = x.as_tensor().apply_op3(weight.as_tensor(), bias.as_tensor(), op).unwrap();
            let wide = |v: &Var| Var::from_tensor(&v.as_tensor().to_dtype(candle_core::DType::F64).unwrap()).unwrap();
            let (x64, w64, b64) = (wide(&x), wide(&weight), wide(&bias));
            let per_channel = |v: Vec<f64>| Tensor::from_vec(v, (1, c, 1, 1), &device).unwrap();
            let (mean64, std64) = (per_channel(mean), per_channel(var.iter().map(|v| (v + 1e-5).sqrt()).collect()));
            let mut truth = x64.as_tensor().broadcast_sub(&mean64).unwrap().broadcast_div(&std64).unwrap()
                .broadcast_mul(&w64.as_tensor().reshape((1, c, 1, 1)).unwrap()).unwrap()
                .broadcast_add(&b64.as_tensor().reshape((1, c, 1, 1)).unwrap()).unwrap();
            if relu {
                truth = truth.relu().unwrap();
            }
            prop_assert!(close(&values(&fused), &values(&truth)));
            let g1 = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let probe64 = probe.to_dtype(candle_core::DType::F64).unwrap();
            let g2 = (truth * &probe64).unwrap().sum_all().unwrap().backward().unwrap();
            for (var, var64) in [(&x, &x64), (&weight, &w64), (&bias, &b64)] {
                let a = values(g1.get(var.as_tensor()).unwrap());
                let b = values(g2.get(var64.as_tensor()).unwrap());
                prop_assert!(close(&a, &b), "{:?} vs {:?}", a, b);
            }
        }

        /// `relu(BatchNorm(x) + residual)` as one op, the residual plain or through its own
        /// BatchNorm, equals the f64 composition, every gradient included.
        #[test]
        fn fused_add_relu_equals_the_composition(
            n in 1usize..5, c in 1usize..6, h in 1usize..7, w in 1usize..7,
            shift in -3f32..3.0, spread in 0.1f32..4.0, normalized in any::<bool>(), big in any::<bool>(),
        ) {
            prop_assume!(n * h * w > 1);
            let (h, w) = if big { (h + 15, w + 15) } else { (h, w) };
            let device = Device::Cpu;
            let random = |mean: f32, std: f32, shape: &[usize]| {
                Var::from_tensor(&Tensor::randn(mean, std, shape, &device).unwrap()).unwrap()
            };
            let x = Var::from_tensor(&((random(0.0, 1.0, &[n, c, h, w]).as_tensor() * spread as f64).unwrap() + shift as f64).unwrap()).unwrap();
            let residual = Var::from_tensor(&(random(0.0, 1.0, &[n, c, h, w]).as_tensor() - shift as f64).unwrap()).unwrap();
            let (weight, bias) = (random(1.0, 0.5, &[c]), random(0.0, 0.5, &[c]));
            let (weight_r, bias_r) = (random(1.0, 0.5, &[c]), random(0.0, 0.5, &[c]));
            let probe = Tensor::randn(0f32, 1.0, (n, c, h, w), &device).unwrap();
            let (statistics, statistics_r) = (Statistics::default(), Statistics::default());
            let mut params = vec![weight.as_tensor(), bias.as_tensor()];
            if normalized {
                params.extend([weight_r.as_tensor(), bias_r.as_tensor()]);
            }
            let op = FusedBatchNormAddRelu {
                eps: 1e-5,
                statistics: statistics.clone(),
                residual_statistics: normalized.then(|| statistics_r.clone()),
            };
            let fused = x.as_tensor().apply_op3(residual.as_tensor(), &Tensor::cat(&params, 0).unwrap(), op).unwrap();
            let wide = |v: &Var| Var::from_tensor(&v.as_tensor().to_dtype(candle_core::DType::F64).unwrap()).unwrap();
            let (x64, r64, w64, b64) = (wide(&x), wide(&residual), wide(&weight), wide(&bias));
            let (wr64, br64) = (wide(&weight_r), wide(&bias_r));
            let added = if normalized {
                reference(r64.as_tensor(), wr64.as_tensor(), br64.as_tensor(), 1e-5)
            } else {
                r64.as_tensor().clone()
            };
            let truth = (reference(x64.as_tensor(), w64.as_tensor(), b64.as_tensor(), 1e-5) + added).unwrap().relu().unwrap();
            prop_assert!(close(&values(&fused), &values(&truth)));
            let g1 = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let probe64 = probe.to_dtype(candle_core::DType::F64).unwrap();
            let g2 = (truth * &probe64).unwrap().sum_all().unwrap().backward().unwrap();
            let mut pairs = vec![(&x, &x64), (&residual, &r64), (&weight, &w64), (&bias, &b64)];
            if normalized {
                pairs.extend([(&weight_r, &wr64), (&bias_r, &br64)]);
            }
            for (var, var64) in pairs {
                let a = values(g1.get(var.as_tensor()).unwrap());
                let b = values(g2.get(var64.as_tensor()).unwrap());
                prop_assert!(close(&a, &b), "{:?} vs {:?}", a, b);
            }
            prop_assert!(statistics.lock().unwrap().is_some());
            prop_assert_eq!(statistics_r.lock().unwrap().is_some(), normalized);
        }
    }
}
