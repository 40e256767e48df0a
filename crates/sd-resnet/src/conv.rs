//! 2-D convolution (no bias, no groups, no dilation) as one candle op with its own backward,
//! through im2col and the `gemm` crate (candle's matrix product), for f32 tensors on the CPU.
//!
//! With `x: [N, C, H, W]`, `w: [O, C, kh, kw]`, stride `s`, zero padding `p`,
//! `H' = (H + 2p - kh) / s + 1` (and the same for `W'`), `K = C kh kw` and `P = H' W'`:
//!
//! - forward: `cols = im2col(x)` (`[K, n P]` for a chunk of `n` images), `y = W cols`
//!   (`W` seen as `[O, K]`);
//! - weight gradient: `dW = sum over chunks of dy cols^T` (`dy` as `[O, n P]`);
//! - input gradient: `dx = col2im(W^T dy)`.
//!
//! 3 x 3 convolutions with stride 1 and padding 1 (most of ResNet's) take Winograd's
//! F(2x2, 3x3) for the output and both gradients instead (Lavin & Gray 2016; 2.25 times fewer
//! multiply-adds and no `cols`) when the batch has enough 2 x 2 tiles ([`WINOGRAD_MIN_TILES`],
//! fewer for wide layers).
//! Planes with fewer pixels than the kernel has taps (ResNet's last stages on 32 x 32 images)
//! take one product with the convolution's dense matrix instead, which skips the padding that
//! im2col's product multiplies (`Geometry::dense`).
//!
//! Images are taken in chunks so that one matrix product covers several of them: in ResNet's deep
//! layers on 32 x 32 inputs `P` is 1 to 16, and a product per image would be a matrix-vector
//! product that reads all of `W` for a handful of columns. A chunk's `cols` and product stay under
//! [`WORKSPACE_FLOATS`] floats, and the scratch buffers are kept between calls
//! (`crate::matmul::WORKSPACE`) rather than allocated (and page-faulted) at every call.
//!
//! candle's own CPU convolution does the forward the same way, but its backward runs a direct
//! transposed convolution for the input gradient and a convolution with the batch as channels for
//! the weight gradient, which were most of a training step (see docs/benchmarks.md).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::error::{ResnetError, Result};
use crate::matmul::{Order, View, WORKSPACE, ordered_product, product};
use crate::profile;

/// The most floats one chunk's `cols` or output product may hold (32 MiB); at least one image is
/// always taken.
pub const WORKSPACE_FLOATS: usize = 8 << 20;

/// Smallest plane (`H' W'`) for which a 1 x 1 convolution with stride 1 and no padding takes one
/// product per image, read and written in place; below it a per-image product is too thin and
/// images are chunked through im2col. 8 x 8 planes gain since the weight gradient's products
/// run a group of images per thread; 4 x 4 planes lose (ResNet-50's convolution phases:
/// docs/benchmarks.md, "Figures behind the code's choices").
pub const POINTWISE_MIN_PLANE: usize = 64;

/// Smallest output side (height and width) for which a 3 x 3 convolution with stride 1 and
/// padding 1 takes Winograd's F(2x2, 3x3) for its output and gradients (see the module
/// documentation); below it the 2 x 2 tiles are mostly padding.
pub const WINOGRAD_MIN_SIDE: usize = 4;

/// Fewest 2 x 2 output tiles over the batch for which such a convolution takes Winograd's
/// F(2x2, 3x3): with fewer, transforming the filters (16 values for 9) costs more than the
/// products save, unless the convolution is [wide](WINOGRAD_WIDE_CHANNELS).
pub const WINOGRAD_MIN_TILES: usize = 256;

/// Fewest input and output channels for which a convolution takes Winograd's F(2x2, 3x3) from
/// [`WINOGRAD_MIN_TILES_WIDE`] tiles: ResNet's last stage on 32 x 32 images at batch 16 (512
/// channels, 4 x 4 planes, 64 tiles) gains, the 128-channel 4 x 4 planes of the imagenet stem do
/// not.
pub const WINOGRAD_WIDE_CHANNELS: usize = 256;

/// Fewest tiles for a [wide](WINOGRAD_WIDE_CHANNELS) convolution to take Winograd.
pub const WINOGRAD_MIN_TILES_WIDE: usize = 64;

/// Stride and zero padding of a convolution, the same along both axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Step between windows.
    pub stride: usize,
    /// Zero border on each side.
    pub padding: usize,
}

/// Sizes of one convolution call.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride: usize,
    padding: usize,
    out_h: usize,
    out_w: usize,
}

impl Geometry {
    fn new(x: &[usize], w: &[usize], params: Conv2dConfig) -> Result<Self> {
        let (&[batch, channels, height, width], &[out_channels, in_channels, kernel_h, kernel_w]) =
            (x, w)
        else {
            let got = if x.len() == 4 { w } else { x };
            return Err(ResnetError::Rank {
                op: "convolution",
                expected: "[N, C, H, W] inputs and [O, C, kh, kw] weight",
                got: got.to_vec(),
            });
        };
        if in_channels != channels {
            return Err(ResnetError::Channels {
                weight: w.to_vec(),
                input: x.to_vec(),
                expected: in_channels,
                found: channels,
            });
        }
        let Conv2dConfig { stride, padding } = params;
        let out = |size: usize, kernel: usize| {
            (size + 2 * padding >= kernel && kernel > 0 && stride > 0)
                .then(|| (size + 2 * padding - kernel) / stride + 1)
        };
        match (out(height, kernel_h), out(width, kernel_w)) {
            (Some(out_h), Some(out_w)) => Ok(Self {
                batch,
                channels,
                height,
                width,
                out_channels,
                kernel_h,
                kernel_w,
                stride,
                padding,
                out_h,
                out_w,
            }),
            _ => Err(ResnetError::Window {
                op: "convolution",
                kernel: kernel_h,
                kernel_w,
                stride,
                padding,
                height,
                width,
            }),
        }
    }

    /// A 1 x 1 convolution with stride 1 and no padding on planes of at least
    /// [`POINTWISE_MIN_PLANE`] positions: each image's `[C, P]` block of `x` is its own `cols`
    /// matrix and its `[O, P]` block of `y` its own product, so one product per image needs no
    /// im2col, scatter, gather or col2im.
    fn pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride == 1
            && self.padding == 0
            && self.p() >= POINTWISE_MIN_PLANE
    }

    /// A 3 x 3 convolution with stride 1 and padding 1 on planes of at least
    /// [`WINOGRAD_MIN_SIDE`] a side and [`WINOGRAD_MIN_TILES`] tiles in all (or
    /// [`WINOGRAD_MIN_TILES_WIDE`] for [wide](WINOGRAD_WIDE_CHANNELS) ones): output and both
    /// gradients by [`crate::winograd`].
    fn winograd(&self) -> bool {
        self.kernel_h == 3
            && self.kernel_w == 3
            && self.stride == 1
            && self.padding == 1
            && self.out_h.min(self.out_w) >= WINOGRAD_MIN_SIDE
            && {
                let tiles = self.batch * self.out_h.div_ceil(2) * self.out_w.div_ceil(2);
                let wide = self.channels.min(self.out_channels) >= WINOGRAD_WIDE_CHANNELS;
                tiles >= WINOGRAD_MIN_TILES || (wide && tiles >= WINOGRAD_MIN_TILES_WIDE)
            }
    }

    /// A convolution on planes with fewer pixels than its kernel has taps (ResNet's last two
    /// stages on 32 x 32 images: 2 x 2 and 1 x 1 planes under 3 x 3 kernels), done as one
    /// matrix product per pass with the dense `[O H' W', C H W]` matrix `D` of the map
    /// ([`dense_matrix`]): `y_n = D x_n` costs `O H' W' C H W` multiply-adds where im2col's
    /// product costs `O H' W' C kh kw`, most of them on padding (9x as many on a 1 x 1 plane,
    /// 2.25x on a 2 x 2 one), and `x`, `y` and their gradients are the products' operands as
    /// they lie: no im2col, scatter, gather or col2im. Up to `D` of [`WORKSPACE_FLOATS`].
    fn dense(&self) -> bool {
        self.plane() < self.kernel_h * self.kernel_w
            && self.out_channels * self.p() * self.channels * self.plane() <= WORKSPACE_FLOATS
    }

    /// The kernel tap (`ki kw + kj`) joining output position `q` (`oy W' + ox`) to input pixel
    /// `r` (`iy W + ix`), if any: `ki = iy - oy s + p`, `kj = ix - ox s + p` inside the kernel.
    fn tap(&self, q: usize, r: usize) -> Option<usize> {
        let (oy, ox) = (q / self.out_w, q % self.out_w);
        let (iy, ix) = (r / self.width, r % self.width);
        let ki = (iy + self.padding).checked_sub(oy * self.stride)?;
        let kj = (ix + self.padding).checked_sub(ox * self.stride)?;
        (ki < self.kernel_h && kj < self.kernel_w).then_some(ki * self.kernel_w + kj)
    }

    /// `K`: rows of `cols`.
    fn k(&self) -> usize {
        self.channels * self.kernel_h * self.kernel_w
    }

    /// `P`: output positions per image.
    fn p(&self) -> usize {
        self.out_h * self.out_w
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Images per chunk: as many as keep both the chunk's `cols` (`K` rows) and its output
    /// product (`O` rows) under [`WORKSPACE_FLOATS`]. Bounding `cols` alone let a 1 x 1
    /// convolution to 4 times the channels take a 128 MiB product buffer (ResNet-50's
    /// bottlenecks).
    fn chunk(&self) -> usize {
        let rows = self.k().max(self.out_channels);
        (WORKSPACE_FLOATS / (rows * self.p()).max(1)).clamp(1, self.batch.max(1))
    }

    /// The output positions `o` (of `out` along an axis of `size` inputs) whose input
    /// `o s + k - p` lies inside the image, as a range `lo..hi` (empty when none does).
    fn valid(&self, k: usize, size: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.padding);
        let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
        let hi = (size + p).saturating_sub(k).div_ceil(s).min(out);
        (lo.min(hi), hi)
    }

    /// [`Geometry::valid`] along the width, for kernel column `kj`.
    fn valid_columns(&self, kj: usize) -> (usize, usize) {
        self.valid(kj, self.width, self.out_w)
    }

    /// [`Geometry::valid`] along the height, for kernel row `ki`.
    fn valid_rows(&self, ki: usize) -> (usize, usize) {
        self.valid(ki, self.height, self.out_h)
    }
}

/// `cols[(c, ki, kj), (i, oh, ow)] = x[n0 + i, c, oh s + ki - p, ow s + kj - p]`, zero outside.
///
/// One row of `cols` per task. A row whose kernel position sees padding is zeroed once, then
/// only the inside is copied. With stride 1 and an output as wide as the input (ResNet's 3x3
/// convolutions), the inside of an image is one shifted copy of the input plane, after which the
/// few values that wrapped around a row end are zeroed again; otherwise it is copied row by row.
/// This keeps the number of copies per row to one per image where it can (the deep layers have
/// 1 x 1 to 8 x 8 planes, so a copy per output row would be a call per handful of floats).
fn im2col(g: &Geometry, x: &[f32], n0: usize, images: usize, cols: &mut [f32]) {
    let (p, plane) = (g.p(), g.plane());
    let kernel = g.kernel_h * g.kernel_w;
    let (s, pad, out_w) = (g.stride, g.padding, g.out_w);
    let shifted = s == 1 && out_w == g.width;
    cols.par_chunks_mut(images * p)
        .enumerate()
        .for_each(|(row, dst)| {
            let (c, ki, kj) = (
                row / kernel,
                (row / g.kernel_w) % g.kernel_h,
                row % g.kernel_w,
            );
            let (lo, hi) = g.valid_columns(kj);
            let (top, bottom) = g.valid_rows(ki);
            if lo == hi || top == bottom {
                dst.fill(0.0);
                return;
            }
            if lo > 0 || hi < out_w || top > 0 || bottom < g.out_h {
                dst.fill(0.0);
            }
            for (i, dst) in dst.chunks_exact_mut(p).enumerate() {
                let src = &x[((n0 + i) * g.channels + c) * plane..][..plane];
                if shifted {
                    let first = top * out_w + lo;
                    let last = (bottom - 1) * out_w + hi;
                    let from = (top + ki - pad) * g.width + lo + kj - pad;
                    dst[first..last].copy_from_slice(&src[from..from + last - first]);
                    // Inside [first, last), the columns left of `lo` and right of `hi` took
                    // values from the neighbouring input rows: padding again.
                    for oh in top..bottom {
                        let base = oh * out_w;
                        if oh > top {
                            zero(&mut dst[base..base + lo]);
                        }
                        if oh + 1 < bottom {
                            zero(&mut dst[base + hi..base + out_w]);
                        }
                    }
                    continue;
                }
                for oh in top..bottom {
                    let start = (oh * s + ki - pad) * g.width + lo * s + kj - pad;
                    let dst = &mut dst[oh * out_w + lo..oh * out_w + hi];
                    if s == 1 {
                        dst.copy_from_slice(&src[start..start + dst.len()]);
                    } else {
                        for (d, v) in dst.iter_mut().zip(src[start..].iter().step_by(s)) {
                            *d = *v;
                        }
                    }
                }
            }
        });
}

/// Zeroes a slice of usually 0 to 3 floats without a call into `memset`.
fn zero(values: &mut [f32]) {
    match values {
        [] => {}
        [a] => *a = 0.0,
        longer => longer.fill(0.0),
    }
}

/// Adds `cols` (as [`im2col`] lays it out) back onto the images `n0..n0 + images` of `dx`.
///
/// Parallel over the planes of `dx`. With stride 1 and an output as wide as the input (ResNet's
/// 3x3 convolutions), each kernel position adds one shifted contiguous range per image, as
/// [`im2col`] copies one; the values of `cols` that would wrap around a row end belong to padding
/// and are zeroed first (which is why `cols` is taken mutably). Otherwise it adds row by row.
fn col2im(g: &Geometry, cols: &mut [f32], n0: usize, images: usize, dx: &mut [f32]) {
    let (p, plane) = (g.p(), g.plane());
    let row_len = images * p;
    let (pad, out_w) = (g.padding, g.out_w);
    let shifted = g.stride == 1 && out_w == g.width;
    if shifted {
        let kernel = g.kernel_h * g.kernel_w;
        cols.par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(row, values)| {
                let (ki, kj) = ((row / g.kernel_w) % g.kernel_h, row % g.kernel_w);
                debug_assert!(row / kernel < g.channels);
                let (lo, hi) = g.valid_columns(kj);
                let (top, bottom) = g.valid_rows(ki);
                if lo == hi || top == bottom || (lo == 0 && hi == out_w) {
                    return;
                }
                for values in values.chunks_exact_mut(p) {
                    for oh in top..bottom {
                        let base = oh * out_w;
                        if oh > top {
                            zero(&mut values[base..base + lo]);
                        }
                        if oh + 1 < bottom {
                            zero(&mut values[base + hi..base + out_w]);
                        }
                    }
                }
            });
    }
    let cols = &*cols;
    dx[n0 * g.channels * plane..(n0 + images) * g.channels * plane]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(index, dst)| {
            let (i, c) = (index / g.channels, index % g.channels);
            // Each plane is written before it is read (see `maxpool::backward`): `dx` is a
            // fresh allocation whose pages would otherwise fault twice.
            dst.fill(0.0);
            for ki in 0..g.kernel_h {
                for kj in 0..g.kernel_w {
                    let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                    let src = &cols[row * row_len + i * p..][..p];
                    let (lo, hi) = g.valid_columns(kj);
                    let (top, bottom) = g.valid_rows(ki);
                    if lo >= hi || top >= bottom {
                        continue;
                    }
                    if shifted {
                        let first = top * out_w + lo;
                        let last = (bottom - 1) * out_w + hi;
                        let from = (top + ki - pad) * g.width + lo + kj - pad;
                        let dst = &mut dst[from..from + last - first];
                        for (d, s) in dst.iter_mut().zip(&src[first..last]) {
                            *d += *s;
                        }
                        continue;
                    }
                    for oh in top..bottom {
                        let src = &src[oh * out_w..][..out_w];
                        let ih = oh * g.stride + ki - pad;
                        let first = ih * g.width + lo * g.stride + kj - pad;
                        let src = &src[lo..hi];
                        if g.stride == 1 {
                            let dst = &mut dst[first..first + src.len()];
                            for (d, s) in dst.iter_mut().zip(src) {
                                *d += *s;
                            }
                        } else {
                            let dst = dst[first..].iter_mut().step_by(g.stride);
                            for (d, s) in dst.zip(src) {
                                *d += *s;
                            }
                        }
                    }
                }
            }
        });
}

/// `[images, O, P]` (a slice of `y`) from the product `[O, images P]` stored in `order`.
fn scatter_output(g: &Geometry, product: &[f32], order: Order, images: usize, y: &mut [f32]) {
    let (p, o) = (g.p(), g.out_channels);
    y.par_chunks_mut(p).enumerate().for_each(|(index, dst)| {
        let (i, c) = (index / o, index % o);
        match order {
            Order::RowMajor => dst.copy_from_slice(&product[c * images * p + i * p..][..p]),
            Order::ColMajor => {
                let src = &product[i * p * o + c..];
                for (d, s) in dst.iter_mut().zip(src.iter().step_by(o)) {
                    *d = *s;
                }
            }
        }
    });
}

/// `[O, images P]` in `order` from `[images, O, P]` (a slice of `dy`).
fn gather_output(g: &Geometry, dy: &[f32], order: Order, images: usize, out: &mut [f32]) {
    let (p, o) = (g.p(), g.out_channels);
    match order {
        Order::RowMajor => out[..o * images * p]
            .par_chunks_mut(images * p)
            .enumerate()
            .for_each(|(c, dst)| {
                for (i, dst) in dst.chunks_exact_mut(p).enumerate() {
                    dst.copy_from_slice(&dy[(i * o + c) * p..][..p]);
                }
            }),
        // Column-major: position-major, the O values of each position together.
        Order::ColMajor => out[..o * images * p]
            .par_chunks_mut(o * p)
            .enumerate()
            .for_each(|(i, dst)| {
                let src = &dy[i * o * p..][..o * p];
                for (position, dst) in dst.chunks_exact_mut(o).enumerate() {
                    for (d, s) in dst.iter_mut().zip(src[position..].iter().step_by(p)) {
                        *d = *s;
                    }
                }
            }),
    }
}

/// Destination order of the forward product `W cols` (`O x nP`): column-major (positions
/// outermost) when `O` is 64, row-major from 128 channels up, each the faster by a wide margin
/// on ResNet's shapes (docs/benchmarks.md, "Figures behind the code's choices").
fn forward_order(out_channels: usize) -> Order {
    if out_channels < 128 {
        Order::ColMajor
    } else {
        Order::RowMajor
    }
}

/// `y = conv(x, w)`: `x` `[N, C, H, W]`, `w` `[O, C, kh, kw]`, both contiguous; `[N, O, H', W']`.
/// Takes `chunk` images per matrix product.
fn forward(g: &Geometry, x: &[f32], w: &[f32], chunk: usize) -> Vec<f32> {
    let (k, p, o) = (g.k(), g.p(), g.out_channels);
    let mut y = {
        let _t = profile::scope("conv forward: allocate");
        crate::cpu::zeros(g.batch * o * p)
    };
    let order = forward_order(o);
    let mut cols = WORKSPACE.take(chunk * k * p);
    let mut product = WORKSPACE.take(chunk * o * p);
    for n0 in (0..g.batch).step_by(chunk) {
        let images = chunk.min(g.batch - n0);
        let columns = images * p;
        let (cols, product) = (&mut cols[..k * columns], &mut product[..o * columns]);
        let t = profile::scope("conv forward: im2col");
        im2col(g, x, n0, images, cols);
        drop(t);
        let t = profile::scope("conv forward: GEMM");
        ordered_product(
            product,
            order,
            View::row_major(w, o, k),
            View::row_major(cols, k, columns),
            false,
        );
        drop(t);
        let _t = profile::scope("conv forward: scatter");
        scatter_output(
            g,
            product,
            order,
            images,
            &mut y[n0 * o * p..(n0 + images) * o * p],
        );
    }
    WORKSPACE.give(cols);
    WORKSPACE.give(product);
    y
}

/// `(dx, dw)` for output gradient `dy` (`[N, O, H', W']`, contiguous), `chunk` images at a time;
/// `dx` only when `input_gradient` (a network's input images need none: skipping it saves the
/// first convolution's input-gradient product and col2im).
///
/// The weight gradient is accumulated column-major (`dy` gathered position-major) and the input
/// gradient's product takes `dy` row-major: the layouts that measured fastest for each.
fn backward(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    chunk: usize,
    input_gradient: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (k, p, o) = (g.k(), g.p(), g.out_channels);
    let t = profile::scope("conv backward: allocate");
    let mut dx = input_gradient.then(|| crate::cpu::zeros(x.len()));
    drop(t);
    let mut cols = WORKSPACE.take(chunk * k * p);
    let mut dy_rows = WORKSPACE.take(chunk * o * p);
    let mut dy_positions = WORKSPACE.take(chunk * o * p);
    let mut dw_columns = WORKSPACE.take(o * k);
    // A 1 x 1 convolution with stride 1 and no padding (on a plane too small to be
    // `pointwise`): `cols` is a copy of x, and the weight gradient's product takes `dy`
    // row-major into `dw` as it is returned: no position-major gather of `dy` and no transpose
    // at the end, for a slightly slower product (ResNet-50 cifar 16: transpose 23 -> 12.5 ms
    // per step, gathers 17 -> 10, product +4 to 9). With stride 2 the product lost as much as
    // the rest gained: not taken.
    let copies = g.kernel_h * g.kernel_w == 1 && g.stride == 1 && g.padding == 0;
    let mut dw = vec![0f32; if copies { o * k } else { 0 }];
    for n0 in (0..g.batch).step_by(chunk) {
        let images = chunk.min(g.batch - n0);
        let columns = images * p;
        let cols = &mut cols[..k * columns];
        let t = profile::scope("conv backward: gather");
        let dy = &dy[n0 * o * p..];
        if dx.is_some() || copies {
            gather_output(g, dy, Order::RowMajor, images, &mut dy_rows);
        }
        if !copies {
            gather_output(g, dy, Order::ColMajor, images, &mut dy_positions);
        }
        drop(t);
        // dW += dy cols^T: [O, n P] x [n P, K].
        let t = profile::scope("conv backward: im2col");
        im2col(g, x, n0, images, cols);
        drop(t);
        let t = profile::scope("conv backward: GEMM weight");
        let (dst, order, dy) = if copies {
            (
                &mut dw,
                Order::RowMajor,
                View::row_major(&dy_rows, o, columns),
            )
        } else {
            let dy = View::col_major(&dy_positions, o, columns);
            (&mut dw_columns, Order::ColMajor, dy)
        };
        ordered_product(
            dst,
            order,
            dy,
            View::row_major(cols, k, columns).t(),
            n0 > 0,
        );
        drop(t);
        let Some(dx) = dx.as_mut() else {
            continue;
        };
        // dcols = W^T dy: [K, O] x [O, n P], into the same buffer, then back onto the images.
        let t = profile::scope("conv backward: GEMM input");
        ordered_product(
            cols,
            Order::RowMajor,
            View::row_major(w, o, k).t(),
            View::row_major(&dy_rows, o, columns),
            false,
        );
        drop(t);
        let _t = profile::scope("conv backward: col2im");
        col2im(g, cols, n0, images, dx);
    }
    if !copies {
        let _t = profile::scope("conv backward: dW transpose");
        dw = crate::cpu::zeros(o * k);
        // dw_columns is column-major `[O, K]`, i.e. row-major `[K, O]`.
        transpose(&dw_columns[..o * k], k, o, &mut dw);
    }
    for buffer in [cols, dy_rows, dy_positions, dw_columns] {
        WORKSPACE.give(buffer);
    }
    (dx, dw)
}

/// `dst` (`cols x rows`, row-major) = the transpose of `src` (`rows x cols`, row-major), in
/// tiles that stay in cache on both sides, tile rows in parallel.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 32;
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    dst[..rows * cols]
        .par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(tile_row, dst)| {
            let c0 = tile_row * TILE;
            let tile_cols = dst.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                let r1 = (r0 + TILE).min(rows);
                for c in 0..tile_cols {
                    let dst = &mut dst[c * rows + r0..c * rows + r1];
                    for (d, r) in dst.iter_mut().zip(r0..r1) {
                        *d = src[r * cols + c0 + c];
                    }
                }
            }
        });
}

/// [`forward`] by [Winograd's F(2x2, 3x3)](Geometry::winograd); with `input_gradient`, the input
/// gradient instead: the same convolution of `dy` (as `x`) with the filters turned and
/// transposed.
fn convolve_winograd(g: &Geometry, x: &[f32], w: &[f32], input_gradient: bool) -> Vec<f32> {
    let (c, o) = (g.channels, g.out_channels);
    let (channels, out) = if input_gradient { (o, c) } else { (c, o) };
    let shape = crate::winograd::Shape {
        batch: g.batch,
        channels,
        out,
        height: g.height,
        width: g.width,
    };
    let t = profile::scope("winograd: weights");
    let mut u = WORKSPACE.take(crate::winograd::weights_len(o, c));
    crate::winograd::weights(w, o, c, input_gradient, &mut u);
    drop(t);
    let _t = profile::scope("winograd: convolution");
    let y = crate::winograd::convolve(&shape, x, &u, shape.images_per_task());
    WORKSPACE.give(u);
    y
}

/// [`backward`] for a [Winograd](Geometry::winograd) convolution: the weight gradient by
/// `winograd::weight_gradient`, the input gradient by [`convolve_winograd`].
fn backward_winograd(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    input_gradient: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let shape = crate::winograd::Shape {
        batch: g.batch,
        channels: g.channels,
        out: g.out_channels,
        height: g.height,
        width: g.width,
    };
    let t = profile::scope("winograd: weight gradient");
    let dw = crate::winograd::weight_gradient(&shape, x, dy);
    drop(t);
    let dx = input_gradient.then(|| convolve_winograd(g, dy, w, true));
    (dx, dw)
}

/// The taps of every (output position, input pixel) pair, position-major ([`Geometry::tap`]).
fn dense_taps(g: &Geometry) -> Vec<Option<usize>> {
    (0..g.p())
        .flat_map(|q| (0..g.plane()).map(move |r| g.tap(q, r)))
        .collect()
}

/// `d` := the [dense](Geometry::dense) matrix of the convolution by `w`, row-major
/// `[O H' W', C H W]`: `D[(o, q), (c, r)] = w[o, c, tap(q, r)]`, 0 where no tap joins them.
/// Rows of one output channel in parallel.
fn dense_matrix(g: &Geometry, w: &[f32], d: &mut [f32]) {
    let (c, plane, p) = (g.channels, g.plane(), g.p());
    let taps_per_filter = g.kernel_h * g.kernel_w;
    let taps = dense_taps(g);
    let row = c * plane;
    d[..g.out_channels * p * row]
        .par_chunks_mut(p * row)
        .zip(w.par_chunks(c * taps_per_filter))
        .for_each(|(d, w)| {
            for (q, d) in d.chunks_exact_mut(row).enumerate() {
                let taps = &taps[q * plane..(q + 1) * plane];
                for (d, w) in d
                    .chunks_exact_mut(plane)
                    .zip(w.chunks_exact(taps_per_filter))
                {
                    for (d, tap) in d.iter_mut().zip(taps) {
                        *d = tap.map_or(0.0, |t| w[t]);
                    }
                }
            }
        });
}

/// [`forward`] for a [dense](Geometry::dense) convolution: `y = x D^T`, `x` as `[N, C H W]`
/// and `y` as `[N, O H' W']`.
fn forward_dense(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (rows, cols) = (g.out_channels * g.p(), g.channels * g.plane());
    let t = profile::scope("conv forward: dense matrix");
    let mut d = WORKSPACE.take(rows * cols);
    dense_matrix(g, w, &mut d);
    drop(t);
    let mut y = {
        let _t = profile::scope("conv forward: allocate");
        crate::cpu::zeros(g.batch * rows)
    };
    let t = profile::scope("conv forward: GEMM");
    ordered_product(
        &mut y,
        Order::RowMajor,
        View::row_major(x, g.batch, cols),
        View::row_major(&d[..rows * cols], rows, cols).t(),
        false,
    );
    drop(t);
    WORKSPACE.give(d);
    y
}

/// [`backward`] for a [dense](Geometry::dense) convolution: `dD = dy^T x` (a sum over the
/// batch), folded onto the taps in a fixed order ([`fold_dense`]); `dx = dy D`.
fn backward_dense(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    input_gradient: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (rows, cols) = (g.out_channels * g.p(), g.channels * g.plane());
    let mut buffer = WORKSPACE.take(rows * cols);
    let d = &mut buffer[..rows * cols];
    let t = profile::scope("conv backward: GEMM weight");
    ordered_product(
        d,
        Order::RowMajor,
        View::row_major(dy, g.batch, rows).t(),
        View::row_major(x, g.batch, cols),
        false,
    );
    drop(t);
    let t = profile::scope("conv backward: dense fold");
    let dw = fold_dense(g, d);
    drop(t);
    let dx = input_gradient.then(|| {
        let t = profile::scope("conv backward: dense matrix");
        dense_matrix(g, w, d);
        drop(t);
        let mut dx = crate::cpu::zeros(g.batch * cols);
        let _t = profile::scope("conv backward: GEMM input");
        ordered_product(
            &mut dx,
            Order::RowMajor,
            View::row_major(dy, g.batch, rows),
            View::row_major(d, rows, cols),
            false,
        );
        dx
    });
    WORKSPACE.give(buffer);
    (dx, dw)
}

/// `dw[o, c, t]` = the sum of `dD[(o, q), (c, r)]` over the pairs `(q, r)` joined by tap `t`,
/// in `(q, r)` order; output channels in parallel.
fn fold_dense(g: &Geometry, dd: &[f32]) -> Vec<f32> {
    let (c, plane, p) = (g.channels, g.plane(), g.p());
    let taps_per_filter = g.kernel_h * g.kernel_w;
    let taps = dense_taps(g);
    let row = c * plane;
    let mut dw = vec![0f32; g.out_channels * c * taps_per_filter];
    dw.par_chunks_mut(c * taps_per_filter)
        .zip(dd.par_chunks(p * row))
        .for_each(|(dw, dd)| {
            for (q, dd) in dd.chunks_exact(row).enumerate() {
                let taps = &taps[q * plane..(q + 1) * plane];
                for (dw, dd) in dw
                    .chunks_exact_mut(taps_per_filter)
                    .zip(dd.chunks_exact(plane))
                {
                    for (value, tap) in dd.iter().zip(taps) {
                        if let Some(t) = tap {
                            dw[*t] += value;
                        }
                    }
                }
            }
        });
    dw
}

/// [`forward`] for a [pointwise](Geometry::pointwise) convolution: `y_i = W x_i` per image,
/// written in place.
fn forward_pointwise(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (c, p, o) = (g.channels, g.p(), g.out_channels);
    let mut y = {
        let _t = profile::scope("conv forward: allocate");
        crate::cpu::zeros(g.batch * o * p)
    };
    let _t = profile::scope("conv forward: GEMM");
    per_image_products(&mut y, View::row_major(w, o, c), x, p);
    y
}

/// `dst_i = lhs src_i` for every image `i`, `src_i` the image's `[lhs.cols, p]` block of `src`
/// and `dst_i` its `[lhs.rows, p]` block of `dst`. Images in parallel, each product on one
/// thread; the products themselves in parallel where there are fewer images than threads.
fn per_image_products(dst: &mut [f32], lhs: View<'_>, src: &[f32], p: usize) {
    let (rows, cols) = (lhs.rows, lhs.cols);
    let shared = src.len() / (cols * p) < rayon::current_num_threads();
    dst.par_chunks_mut(rows * p)
        .zip(src.par_chunks(cols * p))
        .for_each(|(dst, src)| {
            product(
                dst,
                (p, 1),
                lhs,
                View::row_major(src, cols, p),
                false,
                shared,
            );
        });
}

/// Most groups of images of [`pointwise_weight_gradient`].
const WEIGHT_GROUPS: usize = 4;

/// `dW = sum over images of dy_i x_i^T` (`[O, C]`, row-major) for a
/// [pointwise](Geometry::pointwise) convolution: the images in up to [`WEIGHT_GROUPS`] groups
/// of consecutive images, each group on one thread summing its products in image order, and
/// the groups' sums added in group order. The groups depend on the batch only, so the result
/// does not depend on the threads. (One product at a time split over both threads ran well
/// below the forward products' speed on ResNet-50 cifar 16: docs/benchmarks.md, "Issue 18,
/// Winograd products by element, grouped weight gradients".)
fn pointwise_weight_gradient(x: &[f32], dy: &[f32], (o, c, p): (usize, usize, usize)) -> Vec<f32> {
    let batch = x.len() / (c * p);
    let per_group = batch.div_ceil(WEIGHT_GROUPS).max(1);
    let partials: Vec<Vec<f32>> = (0..batch.div_ceil(per_group))
        .into_par_iter()
        .map(|group| {
            let images = group * per_group..((group + 1) * per_group).min(batch);
            let mut dw = vec![0f32; o * c];
            for i in images.clone() {
                product(
                    &mut dw,
                    (c, 1),
                    View::row_major(&dy[i * o * p..][..o * p], o, p),
                    View::row_major(&x[i * c * p..][..c * p], c, p).t(),
                    i > images.start,
                    false,
                );
            }
            dw
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut dw = partials.next().unwrap_or_else(|| vec![0f32; o * c]);
    for partial in partials {
        for (a, b) in dw.iter_mut().zip(&partial) {
            *a += b;
        }
    }
    dw
}

/// [`backward`] for a [pointwise](Geometry::pointwise) convolution, per image:
/// `dW += dy_i x_i^T` and `dx_i = W^T dy_i`, read and written in place.
fn backward_pointwise(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    input_gradient: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (c, p, o) = (g.channels, g.p(), g.out_channels);
    let mut dx = input_gradient.then(|| crate::cpu::zeros(x.len()));
    let t = profile::scope("conv backward: GEMM weight");
    let dw = pointwise_weight_gradient(x, dy, (o, c, p));
    drop(t);
    if let Some(dx) = dx.as_mut() {
        let _t = profile::scope("conv backward: GEMM input");
        per_image_products(dx, View::row_major(w, o, c).t(), dy, p);
    }
    (dx, dw)
}

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    crate::cpu::f32_slice(storage, layout, "the convolution op")
}

struct Conv2dOp {
    params: Conv2dConfig,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "sd-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geometry::new(xl.dims(), wl.dims(), self.params)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let (x, w) = (f32_slice(xs, xl)?, f32_slice(ws, wl)?);
        let y = if g.pointwise() {
            forward_pointwise(&g, x, w)
        } else if g.winograd() {
            convolve_winograd(&g, x, w, false)
        } else if g.dense() {
            forward_dense(&g, x, w)
        } else {
            forward(&g, x, w, g.chunk())
        };
        let shape = Shape::from((g.batch, g.out_channels, g.out_h, g.out_w));
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Geometry::new(x.dims(), w.dims(), self.params)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let dy = dy.contiguous()?;
        let (dx, dw) = {
            let (xs, xl) = x.storage_and_layout();
            let (ws, wl) = w.storage_and_layout();
            let (dys, dyl) = dy.storage_and_layout();
            let (Storage::Cpu(xs), Storage::Cpu(ws), Storage::Cpu(dys)) = (&*xs, &*ws, &*dys)
            else {
                candle_core::bail!("the convolution op runs on the CPU only")
            };
            let (xv, wv, dyv) = (f32_slice(xs, xl)?, f32_slice(ws, wl)?, f32_slice(dys, dyl)?);
            // candle would keep the gradient of an input that does not track one, unused.
            let input_gradient = x.track_op();
            if g.pointwise() {
                backward_pointwise(&g, xv, wv, dyv, input_gradient)
            } else if g.winograd() {
                backward_winograd(&g, xv, wv, dyv, input_gradient)
            } else if g.dense() {
                backward_dense(&g, xv, wv, dyv, input_gradient)
            } else {
                backward(&g, xv, wv, dyv, g.chunk(), input_gradient)
            }
        };
        let dx = match dx {
            Some(dx) => Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            None => None,
        };
        let dw = Tensor::from_vec(dw, w.shape(), w.device())?;
        Ok((dx, Some(dw)))
    }
}

/// Convolves `x` (`[N, C, H, W]`) with `w` (`[O, C, kh, kw]`): differentiable in both.
///
/// f32 tensors on the CPU take this module's op (im2col + GEMM, Winograd, or a dense product, by
/// shape); anything else (CUDA, f64)
/// takes candle's `conv2d`, as does [`conv2d_reference`].
pub fn conv2d(x: &Tensor, w: &Tensor, params: Conv2dConfig) -> Result<Tensor> {
    Geometry::new(x.dims(), w.dims(), params)?;
    let fast = x.device().is_cpu()
        && w.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && w.dtype() == candle_core::DType::F32;
    if !fast {
        return conv2d_reference(x, w, params);
    }
    Ok(x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2dOp { params })?)
}

/// candle's own `conv2d` (the reference the op is checked against).
pub fn conv2d_reference(x: &Tensor, w: &Tensor, params: Conv2dConfig) -> Result<Tensor> {
    Ok(x.conv2d(w, params.padding, params.stride, 1, 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Chunking only regroups the columns of the same products: any chunk size gives the
        /// results of one image at a time, up to the rounding of a different summation order.
        #[test]
        fn chunk_size_does_not_change_results(
            batch in 1usize..6, channels in 1usize..4, size in 1usize..9, out in 1usize..4,
            kernel in 1usize..4, stride in 1usize..3, padding in 0usize..2, chunk in 2usize..7,
            seed in any::<u64>(),
        ) {
            let params = Conv2dConfig { stride, padding };
            let Ok(g) = Geometry::new(
                &[batch, channels, size, size], &[out, channels, kernel, kernel], params,
            ) else {
                return Ok(());
            };
            let x = values(batch * channels * size * size, seed);
            let w = values(out * g.k(), seed ^ 0x9e37);
            let dy = values(batch * out * g.p(), seed ^ 0x7f4a);
            let single = (forward(&g, &x, &w, 1), backward(&g, &x, &w, &dy, 1, true));
            let chunked = (forward(&g, &x, &w, chunk), backward(&g, &x, &w, &dy, chunk, true));
            let (single_dx, chunked_dx) = (single.1.0.expect("dx"), chunked.1.0.expect("dx"));
            // Without the input gradient, the weight gradient is the same bit for bit.
            let (no_dx, dw) = backward(&g, &x, &w, &dy, chunk, false);
            prop_assert!(no_dx.is_none());
            prop_assert_eq!(&dw, &chunked.1.1);
            for (a, b) in [(&single.0, &chunked.0), (&single_dx, &chunked_dx), (&single.1.1, &chunked.1.1)] {
                prop_assert_eq!(a.len(), b.len());
                for (a, b) in a.iter().zip(b) {
                    prop_assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{} vs {}", a, b);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Winograd's three results against the im2col path on random shapes, any side from
        /// 1 (the op itself takes Winograd from 4 x 4 and 64 to 256 tiles; the functions take any).
        #[test]
        fn winograd_equals_im2col_on_random_shapes(
            batch in 1usize..7, channels in 1usize..6, out in 1usize..6,
            height in 1usize..13, width in 1usize..13, seed in any::<u64>(),
        ) {
            let params = Conv2dConfig { stride: 1, padding: 1 };
            let Ok(g) = Geometry::new(
                &[batch, channels, height, width], &[out, channels, 3, 3], params,
            ) else {
                return Ok(());
            };
            let x = values(batch * channels * height * width, seed);
            let w = values(out * g.k(), seed ^ 0x9e37);
            let dy = values(batch * out * g.p(), seed ^ 0x7f4a);
            let (dx, dw) = backward(&g, &x, &w, &dy, 2, true);
            let (winograd_dx, winograd_dw) = backward_winograd(&g, &x, &w, &dy, true);
            let pairs = [
                (convolve_winograd(&g, &x, &w, false), forward(&g, &x, &w, 2)),
                (winograd_dx.expect("dx"), dx.expect("dx")),
                (winograd_dw, dw),
            ];
            for (a, b) in pairs {
                prop_assert_eq!(a.len(), b.len());
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                for (a, b) in a.iter().zip(&b) {
                    prop_assert!((a - b).abs() <= 1e-5 * scale, "{} vs {}", a, b);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The dense path's three results against the im2col path on random small planes,
        /// kernels, strides and paddings (those with fewer pixels than taps).
        #[test]
        fn dense_equals_im2col_on_random_shapes(
            batch in 1usize..6, channels in 1usize..5, out in 1usize..5,
            height in 1usize..4, width in 1usize..4, kernel in 2usize..6,
            stride in 1usize..3, padding in 0usize..3, seed in any::<u64>(),
        ) {
            let Ok(g) = Geometry::new(
                &[batch, channels, height, width],
                &[out, channels, kernel, kernel],
                Conv2dConfig { stride, padding },
            ) else {
                return Ok(());
            };
            if !g.dense() {
                return Ok(());
            }
            let x = values(batch * channels * height * width, seed);
            let w = values(out * g.k(), seed ^ 0x9e37);
            let dy = values(batch * out * g.p(), seed ^ 0x7f4a);
            let (dx, dw) = backward(&g, &x, &w, &dy, 2, true);
            let (dense_dx, dense_dw) = backward_dense(&g, &x, &w, &dy, true);
            let pairs = [
                (forward_dense(&g, &x, &w), forward(&g, &x, &w, 2)),
                (dense_dx.expect("dx"), dx.expect("dx")),
                (dense_dw, dw),
            ];
            for (a, b) in pairs {
                prop_assert_eq!(a.len(), b.len());
                for (a, b) in a.iter().zip(&b) {
                    prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{} vs {}", a, b);
                }
            }
        }
    }

    /// The per-image path of 1 x 1 convolutions gives what the chunked im2col path gives.
    #[test]
    fn pointwise_equals_the_chunked_path() {
        let params = Conv2dConfig {
            stride: 1,
            padding: 0,
        };
        for (batch, channels, side, out) in [(3, 5, 16, 7), (2, 1, 17, 3), (1, 9, 20, 1)] {
            let Ok(g) = Geometry::new(
                &[batch, channels, side, side],
                &[out, channels, 1, 1],
                params,
            ) else {
                panic!("geometry");
            };
            assert!(
                g.pointwise(),
                "{side} x {side} planes take the per-image path"
            );
            let x = values(batch * channels * side * side, side as u64);
            let w = values(out * channels, 17);
            let dy = values(batch * out * g.p(), 23);
            let pairs = [
                (forward_pointwise(&g, &x, &w), forward(&g, &x, &w, 2)),
                (
                    backward_pointwise(&g, &x, &w, &dy, true).0.expect("dx"),
                    backward(&g, &x, &w, &dy, 2, true).0.expect("dx"),
                ),
                (
                    backward_pointwise(&g, &x, &w, &dy, false).1,
                    backward(&g, &x, &w, &dy, 2, false).1,
                ),
            ];
            for (a, b) in pairs {
                assert_eq!(a.len(), b.len());
                for (a, b) in a.iter().zip(&b) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
        }
    }

    /// Winograd's output and input gradient give what the im2col path gives, at even and odd
    /// sides, and in tasks of any number of images (called directly: most of these shapes are
    /// below [`WINOGRAD_MIN_TILES`], so the op itself would take im2col).
    #[test]
    fn winograd_equals_the_im2col_path() {
        let params = Conv2dConfig {
            stride: 1,
            padding: 1,
        };
        for (batch, channels, height, width, out) in [
            (3, 5, 4, 4, 7),
            (2, 3, 5, 7, 4),
            (1, 8, 9, 6, 3),
            (5, 2, 8, 8, 2),
            (2, 16, 4, 5, 32),
            // 16 images per task of the weight gradient: it adds three tasks' products.
            (40, 2, 16, 16, 3),
        ] {
            let Ok(g) = Geometry::new(
                &[batch, channels, height, width],
                &[out, channels, 3, 3],
                params,
            ) else {
                panic!("geometry");
            };
            let x = values(batch * channels * height * width, (height * width) as u64);
            let w = values(out * g.k(), 29);
            let dy = values(batch * out * g.p(), 31);
            let shape = |input_gradient: bool| crate::winograd::Shape {
                batch,
                channels: if input_gradient { out } else { channels },
                out: if input_gradient { channels } else { out },
                height,
                width,
            };
            let chunked = |input, input_gradient: bool| {
                let s = shape(input_gradient);
                let mut u = vec![0.0; crate::winograd::weights_len(out, channels)];
                crate::winograd::weights(&w, out, channels, input_gradient, &mut u);
                crate::winograd::convolve(&s, input, &u, 2)
            };
            let im2col_dx = backward(&g, &x, &w, &dy, 2, true).0.expect("dx");
            let pairs = [
                (convolve_winograd(&g, &x, &w, false), forward(&g, &x, &w, 2)),
                (chunked(&x, false), forward(&g, &x, &w, 1)),
                (convolve_winograd(&g, &dy, &w, true), im2col_dx.clone()),
                (chunked(&dy, true), im2col_dx),
            ];
            for (a, b) in pairs {
                assert_eq!(a.len(), b.len());
                for (a, b) in a.iter().zip(&b) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
            let (winograd_dx, winograd_dw) = backward_winograd(&g, &x, &w, &dy, true);
            let im2col_dw = backward(&g, &x, &w, &dy, g.chunk(), false).1;
            // A sum over every position of the batch (10,240 of them in the last case), in
            // another order: within 1e-5 of the largest value (the f64 tests in tests/conv.rs
            // bound both paths at 1e-4).
            assert_eq!(winograd_dw.len(), im2col_dw.len());
            let scale = im2col_dw.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in winograd_dw.iter().zip(&im2col_dw) {
                assert!((a - b).abs() <= 1e-5 * scale, "dW: {a} vs {b}");
            }
            assert_eq!(winograd_dx, Some(convolve_winograd(&g, &dy, &w, true)));
        }
    }

    /// The dense path's three results against the im2col path on the planes it takes (fewer
    /// pixels than taps): ResNet's 1 x 1 and 2 x 2 planes under 3 x 3 kernels at strides 1 and
    /// 2, and odd ones (a 1 x 3 plane, a 5 x 5 kernel, padding 2, a pixel no tap reaches).
    #[test]
    fn dense_equals_the_im2col_path() {
        for (batch, channels, height, width, out, kernel, stride, padding) in [
            (3, 5, 1, 1, 7, 3, 1, 1),
            (4, 6, 2, 2, 5, 3, 1, 1),
            (2, 3, 2, 2, 4, 3, 2, 1),
            (1, 2, 1, 3, 3, 3, 1, 1),
            (2, 3, 3, 3, 2, 5, 1, 2),
            (5, 1, 2, 1, 1, 3, 2, 1),
            // A 1 x 1 output that no tap joins to the 1 x 1 input: all zeros.
            (2, 3, 1, 1, 4, 2, 5, 2),
        ] {
            let Ok(g) = Geometry::new(
                &[batch, channels, height, width],
                &[out, channels, kernel, kernel],
                Conv2dConfig { stride, padding },
            ) else {
                panic!("geometry");
            };
            assert!(g.dense(), "{height} x {width} under {kernel} x {kernel}");
            let x = values(
                batch * channels * height * width,
                (height * 31 + width) as u64,
            );
            let w = values(out * g.k(), 37);
            let dy = values(batch * out * g.p(), 41);
            let (dense_dx, dense_dw) = backward_dense(&g, &x, &w, &dy, true);
            let (im2col_dx, im2col_dw) = backward(&g, &x, &w, &dy, 2, true);
            let pairs = [
                (forward_dense(&g, &x, &w), forward(&g, &x, &w, 2)),
                (dense_dx.expect("dx"), im2col_dx.expect("dx")),
                (dense_dw.clone(), im2col_dw),
            ];
            for (a, b) in pairs {
                assert_eq!(a.len(), b.len());
                for (a, b) in a.iter().zip(&b) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
            let (no_dx, dw) = backward_dense(&g, &x, &w, &dy, false);
            assert!(no_dx.is_none());
            assert_eq!(dw, dense_dw);
        }
    }

    #[test]
    fn transpose_matches_the_definition_at_odd_sizes() {
        for (rows, cols) in [(1, 1), (1, 70), (70, 1), (33, 65), (64, 32), (100, 37)] {
            let src = values(rows * cols, (rows * 1000 + cols) as u64);
            let mut dst = vec![f32::NAN; rows * cols];
            transpose(&src, rows, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "{rows} x {cols} at {r}, {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn valid_columns_cover_exactly_the_inside() {
        for (width, kernel, stride, padding) in
            [(5, 3, 1, 1), (7, 7, 2, 3), (4, 1, 2, 0), (3, 3, 3, 2)]
        {
            let Ok(g) = Geometry::new(
                &[1, 1, width, width],
                &[1, 1, kernel, kernel],
                Conv2dConfig { stride, padding },
            ) else {
                panic!("geometry {width} {kernel} {stride} {padding}");
            };
            for kj in 0..kernel {
                let (lo, hi) = g.valid_columns(kj);
                assert_eq!(g.valid_rows(kj), (lo, hi), "a square image");
                for ow in 0..g.out_w {
                    let column = (ow * stride + kj) as isize - padding as isize;
                    let inside = (0..width as isize).contains(&column);
                    assert_eq!(inside, (lo..hi).contains(&ow), "kj {kj} ow {ow}");
                }
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let params = Conv2dConfig {
            stride: 1,
            padding: 0,
        };
        assert!(Geometry::new(&[1, 3, 4, 4], &[2, 2, 3, 3], params).is_err());
        assert!(Geometry::new(&[1, 3, 2, 2], &[2, 3, 3, 3], params).is_err());
        assert!(
            Geometry::new(
                &[1, 3, 4, 4],
                &[2, 3, 3, 3],
                Conv2dConfig {
                    stride: 0,
                    padding: 0
                }
            )
            .is_err()
        );
        assert!(Geometry::new(&[3, 4, 4], &[2, 3, 3, 3], params).is_err());
    }
}
