//! 2-D convolution (no bias, no groups, no dilation) as one candle op with its own backward,
//! through im2col and faer's matrix product, for f32 tensors on the CPU.
//!
//! With `x: [N, C, H, W]`, `w: [O, C, kh, kw]`, stride `s`, zero padding `p`,
//! `H' = (H + 2p - kh) / s + 1` (and the same for `W'`), `K = C kh kw` and `P = H' W'`:
//!
//! - forward: `cols = im2col(x)` (`[K, n P]` for a chunk of `n` images), `y = W cols`
//!   (`W` seen as `[O, K]`);
//! - weight gradient: `dW = sum over chunks of dy cols^T` (`dy` as `[O, n P]`);
//! - input gradient: `dx = col2im(W^T dy)`.
//!
//! Images are taken in chunks so that one matrix product covers several of them: in ResNet's deep
//! layers on 32 x 32 inputs `P` is 1 to 16, and a product per image would be a matrix-vector
//! product that reads all of `W` for a handful of columns. A chunk's `cols` stays under
//! [`WORKSPACE_FLOATS`] floats, and the scratch buffers are kept between calls
//! ([`Workspace`]) rather than allocated (and page-faulted) at every call.
//!
//! candle's own CPU convolution does the forward the same way, but its backward runs a direct
//! transposed convolution for the input gradient and a convolution with the batch as channels for
//! the weight gradient, which were most of a training step (see docs/benchmarks.md).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::error::{ResnetError, Result};

/// The most floats one chunk's `cols` may hold (32 MiB); at least one image is always taken.
pub const WORKSPACE_FLOATS: usize = 8 << 20;

/// Stride and zero padding of a convolution, the same along both axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
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
    fn new(x: &[usize], w: &[usize], params: Conv2dParams) -> Result<Self> {
        let (&[batch, channels, height, width], &[out_channels, in_channels, kernel_h, kernel_w]) =
            (x, w)
        else {
            return Err(ResnetError::InvalidConfig(format!(
                "convolution takes [N, C, H, W] inputs and [O, C, kh, kw] weights, got {x:?} and \
                 {w:?}"
            )));
        };
        if in_channels != channels {
            return Err(ResnetError::InvalidConfig(format!(
                "convolution weight {w:?} expects {in_channels} input channels, the input {x:?} \
                 has {channels}"
            )));
        }
        let Conv2dParams { stride, padding } = params;
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
            _ => Err(ResnetError::InvalidConfig(format!(
                "convolution kernel {kernel_h} x {kernel_w} with stride {stride} and padding \
                 {padding} does not fit a {height} x {width} input"
            ))),
        }
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

    /// Images per chunk.
    fn chunk(&self) -> usize {
        (WORKSPACE_FLOATS / (self.k() * self.p()).max(1)).clamp(1, self.batch.max(1))
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

/// Scratch buffers kept between calls (they are large: tens of MiB at batch 128).
///
/// A call takes buffers out and puts them back, so concurrent calls each get their own.
pub struct Workspace {
    free: Mutex<Vec<Vec<f32>>>,
}

static WORKSPACE: Workspace = Workspace {
    free: Mutex::new(Vec::new()),
};

impl Workspace {
    /// A buffer of `len` floats, contents unspecified.
    fn take(&self, len: usize) -> Vec<f32> {
        let mut free = self.free.lock().expect("workspace lock");
        // Prefer the smallest buffer that is large enough.
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let mut buffer = match best {
            Some(i) => free.swap_remove(i),
            None => free.pop().unwrap_or_default(),
        };
        drop(free);
        // Only what grows is written; every caller overwrites what it reads.
        buffer.resize(len, 0.0);
        buffer
    }

    fn give(&self, buffer: Vec<f32>) {
        let mut free = self.free.lock().expect("workspace lock");
        // Three buffers serve a backward pass; a few more cover concurrent calls.
        if free.len() < 6 {
            free.push(buffer);
        }
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
fn col2im(g: &Geometry, cols: &[f32], n0: usize, images: usize, dx: &mut [f32]) {
    let (p, plane) = (g.p(), g.plane());
    let row_len = images * p;
    dx[n0 * g.channels * plane..(n0 + images) * g.channels * plane]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(index, dst)| {
            let (i, c) = (index / g.channels, index % g.channels);
            for ki in 0..g.kernel_h {
                for kj in 0..g.kernel_w {
                    let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                    let src = &cols[row * row_len + i * p..][..p];
                    let (lo, hi) = g.valid_columns(kj);
                    let (top, bottom) = g.valid_rows(ki);
                    if lo >= hi {
                        continue;
                    }
                    for oh in top..bottom {
                        let src = &src[oh * g.out_w..][..g.out_w];
                        let ih = oh * g.stride + ki - g.padding;
                        let first = ih * g.width + lo * g.stride + kj - g.padding;
                        let dst = &mut dst[first..];
                        for (d, s) in dst.iter_mut().step_by(g.stride).zip(&src[lo..hi]) {
                            *d += *s;
                        }
                    }
                }
            }
        });
}

/// `[images, O, P]` (a slice of `y`) from the product's `[O, images P]`.
fn scatter_output(g: &Geometry, product: &[f32], images: usize, y: &mut [f32]) {
    let p = g.p();
    y.par_chunks_mut(p).enumerate().for_each(|(index, dst)| {
        let (i, o) = (index / g.out_channels, index % g.out_channels);
        dst.copy_from_slice(&product[o * images * p + i * p..][..p]);
    });
}

/// `[O, images P]` from `[images, O, P]` (a slice of `dy`).
fn gather_output(g: &Geometry, dy: &[f32], images: usize, out: &mut [f32]) {
    let p = g.p();
    out.par_chunks_mut(images * p)
        .enumerate()
        .for_each(|(o, dst)| {
            for (i, dst) in dst.chunks_exact_mut(p).enumerate() {
                dst.copy_from_slice(&dy[(i * g.out_channels + o) * p..][..p]);
            }
        });
}

/// A matrix read from a row-major slice, as is or transposed.
#[derive(Clone, Copy)]
enum Matrix<'a> {
    /// `rows x cols`, row-major.
    RowMajor(&'a [f32], usize, usize),
    /// The transpose of a row-major `rows x cols` slice (so `cols x rows`).
    Transposed(&'a [f32], usize, usize),
}

impl<'a> Matrix<'a> {
    fn view(self) -> faer::MatRef<'a, f32> {
        match self {
            Self::RowMajor(data, rows, cols) => {
                faer::MatRef::from_row_major_slice(&data[..rows * cols], rows, cols)
            }
            Self::Transposed(data, rows, cols) => {
                faer::MatRef::from_row_major_slice(&data[..rows * cols], rows, cols).transpose()
            }
        }
    }
}

/// `dst[m x n] (+)= lhs rhs`, `dst` row-major; accumulates when `accumulate`.
fn matmul(dst: &mut [f32], m: usize, n: usize, lhs: Matrix<'_>, rhs: Matrix<'_>, accumulate: bool) {
    let (lhs, rhs) = (lhs.view(), rhs.view());
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * lhs.ncols() > 1 << 15 {
        faer::Par::rayon(threads)
    } else {
        faer::Par::Seq
    };
    let dst = faer::MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n);
    let accum = if accumulate {
        faer::Accum::Add
    } else {
        faer::Accum::Replace
    };
    faer::linalg::matmul::matmul(dst, accum, lhs, rhs, 1.0, par);
}

/// `y = conv(x, w)`: `x` `[N, C, H, W]`, `w` `[O, C, kh, kw]`, both contiguous; `[N, O, H', W']`.
/// Takes `chunk` images per matrix product.
fn forward(g: &Geometry, x: &[f32], w: &[f32], chunk: usize) -> Vec<f32> {
    let (k, p, o) = (g.k(), g.p(), g.out_channels);
    let mut y = vec![0f32; g.batch * o * p];
    let mut cols = WORKSPACE.take(chunk * k * p);
    let mut product = WORKSPACE.take(chunk * o * p);
    for n0 in (0..g.batch).step_by(chunk) {
        let images = chunk.min(g.batch - n0);
        let (cols, product) = (&mut cols[..images * k * p], &mut product[..images * o * p]);
        im2col(g, x, n0, images, cols);
        matmul(
            product,
            o,
            images * p,
            Matrix::RowMajor(w, o, k),
            Matrix::RowMajor(cols, k, images * p),
            false,
        );
        scatter_output(
            g,
            product,
            images,
            &mut y[n0 * o * p..(n0 + images) * o * p],
        );
    }
    WORKSPACE.give(cols);
    WORKSPACE.give(product);
    y
}

/// `(dx, dw)` for output gradient `dy` (`[N, O, H', W']`, contiguous).
fn backward(g: &Geometry, x: &[f32], w: &[f32], dy: &[f32], chunk: usize) -> (Vec<f32>, Vec<f32>) {
    let (k, p, o) = (g.k(), g.p(), g.out_channels);
    let mut dx = vec![0f32; x.len()];
    let mut dw = vec![0f32; o * k];
    let mut cols = WORKSPACE.take(chunk * k * p);
    let mut gathered = WORKSPACE.take(chunk * o * p);
    for n0 in (0..g.batch).step_by(chunk) {
        let images = chunk.min(g.batch - n0);
        let columns = images * p;
        let (cols, gathered) = (&mut cols[..k * columns], &mut gathered[..o * columns]);
        gather_output(g, &dy[n0 * o * p..], images, gathered);
        // dW += dy cols^T: [O, n P] x [n P, K].
        im2col(g, x, n0, images, cols);
        matmul(
            &mut dw,
            o,
            k,
            Matrix::RowMajor(gathered, o, columns),
            Matrix::Transposed(cols, k, columns),
            n0 > 0,
        );
        // dcols = W^T dy: [K, O] x [O, n P], into the same buffer, then back onto the images.
        matmul(
            cols,
            k,
            columns,
            Matrix::Transposed(w, o, k),
            Matrix::RowMajor(gathered, o, columns),
            false,
        );
        col2im(g, cols, n0, images, &mut dx);
    }
    WORKSPACE.give(cols);
    WORKSPACE.give(gathered);
    (dx, dw)
}

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let (Some((start, end)), CpuStorage::F32(data)) = (layout.contiguous_offsets(), storage) else {
        candle_core::bail!("the convolution op takes contiguous f32 tensors")
    };
    Ok(&data[start..end])
}

struct Conv2dOp {
    params: Conv2dParams,
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
        let y = forward(&g, f32_slice(xs, xl)?, f32_slice(ws, wl)?, g.chunk());
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
            backward(
                &g,
                f32_slice(xs, xl)?,
                f32_slice(ws, wl)?,
                f32_slice(dys, dyl)?,
                g.chunk(),
            )
        };
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = Tensor::from_vec(dw, w.shape(), w.device())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// Convolves `x` (`[N, C, H, W]`) with `w` (`[O, C, kh, kw]`): differentiable in both.
///
/// f32 tensors on the CPU take the im2col + GEMM op of this module; anything else (CUDA, f64)
/// takes candle's `conv2d`, as does [`conv2d_reference`].
pub fn conv2d(x: &Tensor, w: &Tensor, params: Conv2dParams) -> Result<Tensor> {
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
pub fn conv2d_reference(x: &Tensor, w: &Tensor, params: Conv2dParams) -> Result<Tensor> {
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
            let params = Conv2dParams { stride, padding };
            let Ok(g) = Geometry::new(
                &[batch, channels, size, size], &[out, channels, kernel, kernel], params,
            ) else {
                return Ok(());
            };
            let x = values(batch * channels * size * size, seed);
            let w = values(out * g.k(), seed ^ 0x9e37);
            let dy = values(batch * out * g.p(), seed ^ 0x7f4a);
            let single = (forward(&g, &x, &w, 1), backward(&g, &x, &w, &dy, 1));
            let chunked = (forward(&g, &x, &w, chunk), backward(&g, &x, &w, &dy, chunk));
            for (a, b) in [(&single.0, &chunked.0), (&single.1.0, &chunked.1.0), (&single.1.1, &chunked.1.1)] {
                prop_assert_eq!(a.len(), b.len());
                for (a, b) in a.iter().zip(b) {
                    prop_assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{} vs {}", a, b);
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
                Conv2dParams { stride, padding },
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
        let params = Conv2dParams {
            stride: 1,
            padding: 0,
        };
        assert!(Geometry::new(&[1, 3, 4, 4], &[2, 2, 3, 3], params).is_err());
        assert!(Geometry::new(&[1, 3, 2, 2], &[2, 3, 3, 3], params).is_err());
        assert!(
            Geometry::new(
                &[1, 3, 4, 4],
                &[2, 3, 3, 3],
                Conv2dParams {
                    stride: 0,
                    padding: 0
                }
            )
            .is_err()
        );
        assert!(Geometry::new(&[3, 4, 4], &[2, 3, 3, 3], params).is_err());
    }
}
