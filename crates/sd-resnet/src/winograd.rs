//! 3 x 3 convolutions with stride 1 and padding 1 by Winograd's minimal filtering F(2x2, 3x3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016).
//!
//! Each output plane is cut into 2 x 2 tiles; tile `(ty, tx)` needs the 4 x 4 input patch `d`
//! at rows `2 ty - 1 ..= 2 ty + 2` and columns `2 tx - 1 ..= 2 tx + 2` (zero outside the image).
//! With the 3 x 3 filter `g`,
//!
//! ```text
//! Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A
//!
//!       | 1  0 -1  0 |        |  1    0    0  |
//! B^T = | 0  1  1  0 |    G = | 1/2  1/2  1/2 |    A^T = | 1 1  1  0 |
//!       | 0 -1  1  0 |        | 1/2 -1/2  1/2 |          | 0 1 -1 -1 |
//!       | 0  1  0 -1 |        |  0    0    1  |
//! ```
//!
//! and the sum over input channels moves inside the brackets: for each of the 16 elements `e`
//! of a transformed tile, `M_e = U_e V_e` with `U_e` the `[O, C]` matrix of transformed filters
//! and `V_e` the `[C, T]` matrix of transformed input tiles (`T` tiles of a task's images).
//! The products do 16 `O C T` multiply-adds where im2col + GEMM does 36 per 2 x 2 outputs:
//! 2.25 times fewer, and `cols` (9 copies of the input) is never written.
//!
//! The input gradient of such a convolution is the same kind of convolution of the output
//! gradient with the filters turned by 180 degrees and input and output channels swapped
//! (`w'[c, o, i, j] = w[o, c, 2 - i, 2 - j]`), so [`weights`] makes either. The weight gradient
//! is the adjoint of the forward: `dW = G^T dU G` with `dU_e = sum over tiles of dM_e V_e^T`
//! and `dM = A dY A^T` ([`weight_gradient`]).
//!
//! The transforms are exact in binary (sums, differences and halvings), so the results differ
//! from im2col + GEMM only by the rounding of a different order of additions. Every value is
//! computed by the same sequence of operations at any thread count.

use rayon::prelude::*;

use crate::cpu::{wide, wide_blocks};

/// Elements of a transformed tile.
const ELEMENTS: usize = 16;

/// Tiles per task of [`convolve`] (at least one image): wide enough for efficient products
/// (`T` columns), small enough that a task's `V` and `M` stay in a core's L2 cache.
pub(crate) const TASK_TILES: usize = 256;

/// Floats of the transformed filters of `out x channels` 3 x 3 filters.
pub(crate) fn weights_len(out: usize, channels: usize) -> usize {
    ELEMENTS * out * channels
}

/// The transformed filters `U` into `u` (its first [`weights_len`] floats): `[rows][16][cols]`
/// (`U_e` is the `[rows, cols]` matrix with rows `16 cols` apart), rows the convolution's output
/// channels, parallel over rows: `U_e[o][c] = (G w[o, c] G^T)_e` for `w` `[O, C, 3, 3]`.
///
/// With `input_gradient`, the filters of the input gradient: `rows = C`, `cols = O`,
/// `U_e[c][o] = (G rot180(w[o, c]) G^T)_e`. (Writing `U` in `w`'s order and reading `U_e`
/// transposed cost the products more than it saved here.)
pub(crate) fn weights(w: &[f32], out: usize, channels: usize, input_gradient: bool, u: &mut [f32]) {
    let (rows, cols) = if input_gradient {
        (channels, out)
    } else {
        (out, channels)
    };
    wide_blocks(
        &mut u[..ELEMENTS * rows * cols],
        ELEMENTS * cols,
        || vec![0f32; 15 * cols],
        #[inline(always)]
        |scratch, row, u| filter_row(w, channels, input_gradient, (row, u), scratch),
    );
}

/// One row of [`weights`] (its `16 cols` floats), with `15 cols` floats of scratch: the row's
/// filters gathered tap by tap (`[9][cols]`, turned when `input_gradient`), then `G g` (its two
/// middle rows, `[2][3][cols]`; the outer two are taps), then `(G g) G^T`, each step a loop over
/// the row's filters. A function of values run under [`wide`].
#[inline(always)]
fn filter_row(
    w: &[f32],
    channels: usize,
    input_gradient: bool,
    (row, u): (usize, &mut [f32]),
    scratch: &mut [f32],
) {
    let cols = u.len() / ELEMENTS;
    let (taps, middle) = scratch.split_at_mut(9 * cols);
    for col in 0..cols {
        let (o, c) = if input_gradient {
            (col, row)
        } else {
            (row, col)
        };
        let f = &w[(o * channels + c) * 9..][..9];
        for (k, &value) in f.iter().enumerate() {
            // Turned by 180 degrees: tap (i, j) is the filter's (2 - i, 2 - j).
            let k = if input_gradient { 8 - k } else { k };
            taps[k * cols + col] = value;
        }
    }
    let tap = |i: usize, j: usize| &taps[(i * 3 + j) * cols..][..cols];
    // G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2.
    for j in 0..3 {
        let (plus, minus) = middle.split_at_mut(3 * cols);
        let (a, b, c) = (tap(0, j), tap(1, j), tap(2, j));
        let lanes = plus[j * cols..][..cols]
            .iter_mut()
            .zip(&mut minus[j * cols..][..cols]);
        for ((p, m), ((&a, &b), &c)) in lanes.zip(a.iter().zip(b).zip(c)) {
            *p = 0.5 * (a + b + c);
            *m = 0.5 * (a - b + c);
        }
    }
    // (G g) G^T, each row r of G g giving r0, (r0 + r1 + r2) / 2, (r0 - r1 + r2) / 2, r2.
    for i in 0..4 {
        let r = |j: usize| match i {
            0 => tap(0, j),
            1 => &middle[j * cols..][..cols],
            2 => &middle[(3 + j) * cols..][..cols],
            _ => tap(2, j),
        };
        let (r0, r1, r2) = (r(0), r(1), r(2));
        let (first, rest) = u[i * 4 * cols..][..4 * cols].split_at_mut(cols);
        let (plus, rest) = rest.split_at_mut(cols);
        let (minus, last) = rest.split_at_mut(cols);
        first.copy_from_slice(r0);
        last.copy_from_slice(r2);
        let lanes = plus.iter_mut().zip(minus.iter_mut());
        for ((p, m), ((&a, &b), &c)) in lanes.zip(r0.iter().zip(r1).zip(r2)) {
            *p = 0.5 * (a + b + c);
            *m = 0.5 * (a - b + c);
        }
    }
}

/// Element `e`'s `[rows, cols]` matrix in a buffer laid out `[rows][16][cols]` (`U`, `V`, `M`,
/// `dM`): its rows `16 cols` apart.
fn element(buffer: &[f32], e: usize, rows: usize, cols: usize) -> crate::matmul::View<'_> {
    crate::matmul::View {
        data: &buffer[e * cols..],
        rows,
        cols,
        row_stride: ELEMENTS * cols,
        col_stride: 1,
    }
}

/// Sizes of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub batch: usize,
    /// Input channels.
    pub channels: usize,
    /// Output channels.
    pub out: usize,
    pub height: usize,
    pub width: usize,
}

impl Shape {
    fn tiles_h(&self) -> usize {
        self.height.div_ceil(2)
    }

    fn tiles_w(&self) -> usize {
        self.width.div_ceil(2)
    }

    /// Tiles per image.
    fn tiles(&self) -> usize {
        self.tiles_h() * self.tiles_w()
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Floats each of the scratch buffers `V` and `M` needs for `images` images.
    pub(crate) fn scratch(&self, images: usize) -> usize {
        ELEMENTS * self.channels.max(self.out) * self.tiles() * images
    }

    /// Whether the transforms go [by images](by_images): planes of at most 4 tiles a row
    /// (8 x 8 and smaller), where a row of tiles is too short a loop.
    fn by_images(&self) -> bool {
        self.tiles_w() <= 4
    }

    /// The column of `V`, `M` and `dM` (of `T = images * tiles`) that holds tile `t` of image
    /// `i`: image-major, or tile-major [by images](Self::by_images). The products do not depend
    /// on the order; the weight gradient's sum over tiles runs in it.
    #[cfg(test)]
    fn column(&self, images: usize, i: usize, t: usize) -> usize {
        if self.by_images() {
            t * images + i
        } else {
            i * self.tiles() + t
        }
    }

    /// Images per task of [`convolve`]: enough for [`TASK_TILES`] tiles.
    pub(crate) fn images_per_task(&self) -> usize {
        TASK_TILES
            .div_ceil(self.tiles())
            .clamp(1, self.batch.max(1))
    }
}

/// `V` for images `n0..n0 + images`, laid out `[C][16][T]` (`T = images * tiles`): parallel
/// over channels, each writing its own block (inside a task of [`convolve`], other threads
/// only take part when they are idle).
///
/// A row of tiles at a time: `B^T` combines four input rows over their whole width, split into
/// even and odd columns, and `B` then combines neighbouring columns, so that every loop runs
/// over consecutive tiles (and vectorizes) rather than over the 16 values of one tile. The
/// operations per value are those of `tests::input_tile`, the definition.
fn transform_input(s: &Shape, x: &[f32], n0: usize, images: usize, v: &mut [f32]) {
    if s.by_images() {
        return by_images::transform_input(s, x, n0, images, v);
    }
    let (th, tw) = (s.tiles_h(), s.tiles_w());
    let t_all = images * s.tiles();
    if s.width.is_multiple_of(2) {
        let rows = ROWS * (th * s.width + 2) + s.width;
        let s = *s;
        wide_blocks(
            &mut v[..s.channels * ELEMENTS * t_all],
            ELEMENTS * t_all,
            || vec![0f32; rows],
            #[inline(always)]
            |rows, c, block| input_channel_even(s, x, (n0, images), (c, block), rows),
        );
        return;
    }
    // The plane with a zero border of 1 on top and left and 1 or 2 (to an even size) below and
    // right, so that every tile reads a full 4 x 4 patch.
    let (ph, pw) = (2 * th + 2, 2 * tw + 2);
    let half = tw + 1;
    let s = *s;
    wide_blocks(
        &mut v[..s.channels * ELEMENTS * t_all],
        ELEMENTS * t_all,
        || (vec![0f32; ph * pw], vec![0f32; 8 * half]),
        #[inline(always)]
        |(padded, columns), c, block| {
            input_channel(s, x, (n0, images), (c, block), padded, columns)
        },
    );
}

/// The outputs of `images` images from `M` (`[O][16][T]`), into `y` (their `[images, O, H, W]`),
/// a row of tiles at a time as in [`transform_input`]; the operations per value are those of
/// `tests::output_tile`.
fn transform_output(s: &Shape, m: &[f32], images: usize, y: &mut [f32]) {
    if s.by_images() {
        return by_images::transform_output(s, m, images, y);
    }
    let (tw, plane) = (s.tiles_w(), s.plane());
    if s.width.is_multiple_of(2) {
        let sums = 8 * s.tiles();
        let s = *s;
        wide_blocks(
            &mut y[..images * s.out * plane],
            plane,
            || vec![0f32; sums],
            #[inline(always)]
            |sums, index, dst| output_plane_even(s, m, images, (index, dst), sums),
        );
        return;
    }
    let s = *s;
    wide_blocks(
        &mut y[..images * s.out * plane],
        plane,
        || vec![0f32; 8 * tw],
        #[inline(always)]
        |sums, index, dst| output_plane(s, m, images, (index, dst), sums),
    );
}

/// `y = conv(x, w)` with the transformed filters `u` ([`weights`]), `x` `[N, C, H, W]`, stride 1,
/// padding 1; `[N, O, H, W]`. For the input gradient `x` is `dy`, `C` the forward's output
/// channels and `O` its input channels.
///
/// The images are split into tasks of `images` each, run in parallel, each on one thread from
/// input transform through its 16 products to output transform, so that a task's `V` and `M`
/// stay in the core's cache (a task of ResNet's shapes has about [`TASK_TILES`] tiles: 1 MiB
/// each for 64 channels). Where there are fewer tasks than threads, a task's 16 products are
/// spread over the threads instead ([`element_products`]). Which thread runs a task does not
/// change its arithmetic.
pub(crate) fn convolve(s: &Shape, x: &[f32], u: &[f32], images: usize) -> Vec<f32> {
    let (c, o, plane) = (s.channels, s.out, s.plane());
    let mut y = crate::cpu::zeros(s.batch * o * plane);
    let images = images.max(1);
    let tasks = s.batch.div_ceil(images);
    let shared = tasks < rayon::current_num_threads();
    y.par_chunks_mut(images * o * plane)
        .enumerate()
        .for_each(|(task, y)| {
            let n0 = task * images;
            let images = y.len() / (o * plane);
            let t_all = images * s.tiles();
            let workspace = &crate::matmul::WORKSPACE;
            let mut v = workspace.take(s.scratch(images));
            let mut m = workspace.take(s.scratch(images));
            transform_input(s, x, n0, images, &mut v);
            element_products(&mut m[..ELEMENTS * o * t_all], t_all, u, &v, (o, c), shared);
            transform_output(s, &m, images, y);
            workspace.give(v);
            workspace.give(m);
        });
    y
}

/// `M_e = U_e V_e` (`[O, C] x [C, T]`) for the 16 elements `e`, into `m` (`[O][16][T]`): one
/// after another, or, when `parallel`, the elements spread over the rayon pool, each product on
/// one thread (a product shared between threads ran well below two products side by side on
/// ResNet's 8 x 8 planes at batch 16: docs/benchmarks.md, "Issue 18, Winograd products by
/// element, grouped weight gradients"). The same arithmetic either way.
fn element_products(
    m: &mut [f32],
    t_all: usize,
    u: &[f32],
    v: &[f32],
    (o, c): (usize, usize),
    parallel: bool,
) {
    assert_eq!(m.len(), ELEMENTS * o * t_all, "M's size");
    if !parallel {
        for e in 0..ELEMENTS {
            crate::matmul::product(
                &mut m[e * t_all..],
                (ELEMENTS * t_all, 1),
                element(u, e, o, c),
                element(v, e, c, t_all),
                false,
                false,
            );
        }
        return;
    }
    let dst = crate::cpu::DisjointParts::new(m);
    (0..ELEMENTS).into_par_iter().for_each(|e| {
        let dst = &dst;
        // SAFETY: element `e` writes rows `r < o` at `(r 16 + e) t_all + j`, `j < t_all`: for
        // different `e` these never meet, and `m`, borrowed uniquely above, is read by no one
        // while the products run. Its bounds are asserted by `product_raw`.
        #[allow(unsafe_code)]
        unsafe {
            crate::matmul::product_raw(
                dst.tail(e * t_all),
                (ELEMENTS * t_all, 1),
                element(u, e, o, c),
                element(v, e, c, t_all),
                false,
                false,
            );
        }
    });
}

/// Rows of `B^T d` per tile row, the first step of [`input_channel_even`].
const ROWS: usize = 4;

/// One channel `c` of [`transform_input`] for planes of even width (all of ResNet's), with the
/// scratch `rows` (`4 (th W + 2) + W` floats). `B^T d` first, over whole input rows: tile row
/// `ty` reads input rows `2 ty - 1 ..= 2 ty + 2` (zero outside) and gives four rows
/// `R_k[ty]`, each `W` long, so that `R_k` is a `th x W` plane in which tile `j = ty tw + tx`
/// has its four columns at `2 j - 1 ..= 2 j + 2`. Then `(B^T d) B` over all tiles of the image
/// at once, one loop per `k`, and the first and last tile of each row put right (their outer
/// column is padding, not the neighbouring row's value). The operations per value are those of
/// `tests::input_tile`, zero padding included, so the results are those of [`input_channel`]
/// bit for bit; loops run over whole rows and planes rather than the `tw + 1` values of one tile
/// row (16 times fewer loops on a 32 x 32 plane).
#[inline(always)]
fn input_channel_even(
    s: Shape,
    x: &[f32],
    (n0, images): (usize, usize),
    (c, block): (usize, &mut [f32]),
    rows: &mut [f32],
) {
    let (th, tw, tiles, plane) = (s.tiles_h(), s.tiles_w(), s.tiles(), s.plane());
    let (h, w) = (s.height, s.width);
    let t_all = images * tiles;
    let stride = th * w + 2;
    let (planes, zero) = rows.split_at_mut(ROWS * stride);
    let zero = &*zero;
    for i in 0..images {
        let src = &x[((n0 + i) * s.channels + c) * plane..][..plane];
        let row = |r: usize| {
            // Input row r - 1: the top border is r = 0.
            if r == 0 || r > h {
                zero
            } else {
                &src[(r - 1) * w..][..w]
            }
        };
        {
            let (r0, rest) = planes.split_at_mut(stride);
            let (r1, rest) = rest.split_at_mut(stride);
            let (r2, r3) = rest.split_at_mut(stride);
            for ty in 0..th {
                let (a, b, c, d) = (
                    row(2 * ty),
                    row(2 * ty + 1),
                    row(2 * ty + 2),
                    row(2 * ty + 3),
                );
                let at = 1 + ty * w;
                for ((dst, a), c) in r0[at..][..w].iter_mut().zip(a).zip(c) {
                    *dst = a - c;
                }
                for ((dst, b), c) in r1[at..][..w].iter_mut().zip(b).zip(c) {
                    *dst = b + c;
                }
                for ((dst, c), b) in r2[at..][..w].iter_mut().zip(c).zip(b) {
                    *dst = c - b;
                }
                for ((dst, b), d) in r3[at..][..w].iter_mut().zip(b).zip(d) {
                    *dst = b - d;
                }
            }
        }
        let t0 = i * tiles;
        for k in 0..ROWS {
            // `r[1 + m]` is `R_k[m]`; `r[0]` and `r[2 tiles + 1]` are guards, put right below.
            let r = &planes[k * stride..][..stride];
            let (d0, rest) = block[k * 4 * t_all..][..4 * t_all].split_at_mut(t_all);
            let (d1, rest) = rest.split_at_mut(t_all);
            let (d2, d3) = rest.split_at_mut(t_all);
            let outputs = d0[t0..][..tiles]
                .iter_mut()
                .zip(&mut d1[t0..][..tiles])
                .zip(d2[t0..][..tiles].iter_mut().zip(&mut d3[t0..][..tiles]));
            let left = r[..2 * tiles].chunks_exact(2);
            let right = r[2..2 * tiles + 2].chunks_exact(2);
            for (((v0, v1), (v2, v3)), (l, q)) in outputs.zip(left.zip(right)) {
                // Columns 2 tx - 1, 2 tx, 2 tx + 1, 2 tx + 2 of the tile's rows.
                let (e0, e1, e2, e3) = (l[0], l[1], q[0], q[1]);
                *v0 = e0 - e2;
                *v1 = e1 + e2;
                *v2 = e2 - e1;
                *v3 = e1 - e3;
            }
            for ty in 0..th {
                let (first, last) = (ty * tw, ty * tw + tw - 1);
                d0[t0 + first] = 0.0 - r[1 + 2 * first + 1];
                d3[t0 + last] = r[1 + 2 * last] - 0.0;
            }
        }
    }
}

/// One channel `c` of [`transform_input`]: its `block` of `V`, with the scratch rows `padded`
/// and `columns`. A function of values (no captures behind references) run under [`wide`].
#[inline(always)]
fn input_channel(
    s: Shape,
    x: &[f32],
    (n0, images): (usize, usize),
    (c, block): (usize, &mut [f32]),
    padded: &mut [f32],
    columns: &mut [f32],
) {
    let (th, tw, tiles, plane) = (s.tiles_h(), s.tiles_w(), s.tiles(), s.plane());
    let t_all = images * tiles;
    // `padded` holds the plane with a zero border (see `transform_input`), its even and odd
    // columns apart: `[ph][half]` each, so that every later loop reads consecutive values.
    let half = tw + 1;
    let (padded_even, padded_odd) = padded.split_at_mut(padded.len() / 2);
    let (even, odd) = columns.split_at_mut(4 * half);
    for i in 0..images {
        let src = &x[((n0 + i) * s.channels + c) * plane..][..plane];
        // Padded column 2k + 1 is the plane's column 2k, padded column 2k + 2 its 2k + 1.
        for (r, row) in src.chunks_exact(s.width).enumerate() {
            let e = &mut padded_even[(r + 1) * half..][..half];
            let o = &mut padded_odd[(r + 1) * half..][..half];
            let pairs = row.chunks_exact(2);
            if let [last] = pairs.remainder() {
                o[s.width / 2] = *last;
            }
            for ((pair, o), e) in pairs.zip(o.iter_mut()).zip(&mut e[1..]) {
                *o = pair[0];
                *e = pair[1];
            }
        }
        // The border is never written, so it stays zero; `padded` is reused only for
        // planes of this same shape.
        for ty in 0..th {
            for (columns, plane) in [(&mut *even, &*padded_even), (&mut *odd, &*padded_odd)] {
                let row = |r: usize| &plane[(2 * ty + r) * half..][..half];
                let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                let (c0, rest) = columns.split_at_mut(half);
                let (c1, rest) = rest.split_at_mut(half);
                let (c2, c3) = rest.split_at_mut(half);
                for ((d, a), b) in c0.iter_mut().zip(r0).zip(r2) {
                    *d = a - b;
                }
                for ((d, a), b) in c1.iter_mut().zip(r1).zip(r2) {
                    *d = a + b;
                }
                for ((d, a), b) in c2.iter_mut().zip(r2).zip(r1) {
                    *d = a - b;
                }
                for ((d, a), b) in c3.iter_mut().zip(r1).zip(r3) {
                    *d = a - b;
                }
            }
            let t0 = i * tiles + ty * tw;
            for row in 0..4 {
                let e = &even[row * half..][..half];
                let o = &odd[row * half..][..half];
                let at = |q: usize| (row * 4 + q) * t_all + t0;
                let (e0, e1) = (&e[..tw], &e[1..]);
                let (o0, o1) = (&o[..tw], &o[1..]);
                let dst = &mut block[at(0)..][..tw];
                for ((d, a), b) in dst.iter_mut().zip(e0).zip(e1) {
                    *d = a - b;
                }
                let dst = &mut block[at(1)..][..tw];
                for ((d, a), b) in dst.iter_mut().zip(o0).zip(e1) {
                    *d = a + b;
                }
                let dst = &mut block[at(2)..][..tw];
                for ((d, a), b) in dst.iter_mut().zip(e1).zip(o0) {
                    *d = a - b;
                }
                let dst = &mut block[at(3)..][..tw];
                for ((d, a), b) in dst.iter_mut().zip(o0).zip(o1) {
                    *d = a - b;
                }
            }
        }
    }
}

/// One plane `index` (image by output channel) of [`transform_output`] for planes of even width,
/// with `8 tiles` floats of scratch `sums`: `A^T` over the rows of every tile of the image at
/// once (`sums[q]` the top row's column `q`, `sums[4 + q]` the bottom row's, each a loop over
/// the tiles), then `A` over the columns row by row of the output, interleaving each tile's two
/// columns. The operations per value are those of [`output_plane`], so the same bits.
#[inline(always)]
fn output_plane_even(
    s: Shape,
    m: &[f32],
    images: usize,
    (index, dst): (usize, &mut [f32]),
    sums: &mut [f32],
) {
    let (tw, tiles) = (s.tiles_w(), s.tiles());
    let t_all = images * tiles;
    let (h, w) = (s.height, s.width);
    let (i, o) = (index / s.out, index % s.out);
    let block = &m[o * ELEMENTS * t_all..][..ELEMENTS * t_all];
    let m = |e: usize| &block[e * t_all + i * tiles..][..tiles];
    let (top, bottom) = sums.split_at_mut(4 * tiles);
    for q in 0..4 {
        let (m0, m1, m2, m3) = (m(q), m(4 + q), m(8 + q), m(12 + q));
        let lanes = top[q * tiles..][..tiles]
            .iter_mut()
            .zip(&mut bottom[q * tiles..][..tiles]);
        for ((t, b), ((&a0, &a1), (&a2, &a3))) in
            lanes.zip(m0.iter().zip(m1).zip(m2.iter().zip(m3)))
        {
            *t = a0 + a1 + a2;
            *b = a1 - a2 - a3;
        }
    }
    for r in 0..h {
        let (ty, half) = (r / 2, r % 2);
        let t = &sums[half * 4 * tiles..][..4 * tiles];
        let at = |q: usize| &t[q * tiles + ty * tw..][..tw];
        let (t0, t1, t2, t3) = (at(0), at(1), at(2), at(3));
        let row = &mut dst[r * w..][..w];
        for (out, (((&a, &b), &c), &d)) in row
            .chunks_exact_mut(2)
            .zip(t0.iter().zip(t1).zip(t2).zip(t3))
        {
            out[0] = a + b + c;
            out[1] = b - c - d;
        }
    }
}

/// One plane `index` (image by output channel) of [`transform_output`], into `dst`, with the
/// scratch rows `sums`. A function of values run under [`wide`].
#[inline(always)]
fn output_plane(
    s: Shape,
    m: &[f32],
    images: usize,
    (index, dst): (usize, &mut [f32]),
    sums: &mut [f32],
) {
    let (th, tw, tiles) = (s.tiles_h(), s.tiles_w(), s.tiles());
    let t_all = images * tiles;
    let (h, w) = (s.height, s.width);
    // Output columns that come in pairs; an odd width leaves one more.
    let pairs = w / 2;
    let (i, o) = (index / s.out, index % s.out);
    let block = &m[o * ELEMENTS * t_all..][..ELEMENTS * t_all];
    for ty in 0..th {
        let t0 = i * tiles + ty * tw;
        let m = |e: usize| &block[e * t_all + t0..][..tw];
        // A^T over the rows: sums[j] (top row) and sums[4 + j] (bottom row).
        for j in 0..4 {
            let (m0, m1, m2, m3) = (m(j), m(4 + j), m(8 + j), m(12 + j));
            let (top, bottom) = sums.split_at_mut(4 * tw);
            let top = &mut top[j * tw..][..tw];
            for (((d, a), b), c) in top.iter_mut().zip(m0).zip(m1).zip(m2) {
                *d = a + b + c;
            }
            let bottom = &mut bottom[j * tw..][..tw];
            for (((d, a), b), c) in bottom.iter_mut().zip(m1).zip(m2).zip(m3) {
                *d = a - b - c;
            }
        }
        for half in 0..2 {
            let r = 2 * ty + half;
            if r >= h {
                break;
            }
            let t = &sums[half * 4 * tw..][..4 * tw];
            let (t0, t1, t2, t3) = (&t[..tw], &t[tw..2 * tw], &t[2 * tw..3 * tw], &t[3 * tw..]);
            let row = &mut dst[r * w..][..w];
            let (paired, last) = row.split_at_mut(2 * pairs);
            for (k, out) in paired.chunks_exact_mut(2).enumerate() {
                out[0] = t0[k] + t1[k] + t2[k];
                out[1] = t1[k] - t2[k] - t3[k];
            }
            if let [out] = last {
                *out = t0[pairs] + t1[pairs] + t2[pairs];
            }
        }
    }
}

/// One output channel `o` of [`transform_gradient`]: its `block` of `dM`, with the scratch
/// rows `columns`. A function of values run under [`wide`].
#[inline(always)]
fn gradient_channel(
    s: Shape,
    dy: &[f32],
    (n0, images): (usize, usize),
    (o, block): (usize, &mut [f32]),
    columns: &mut [f32],
) {
    let (th, tw, tiles, plane) = (s.tiles_h(), s.tiles_w(), s.tiles(), s.plane());
    let t_all = images * tiles;
    let (h, w) = (s.height, s.width);
    for i in 0..images {
        let src = &dy[((n0 + i) * s.out + o) * plane..][..plane];
        for ty in 0..th {
            // Even and odd columns of the tile row's two gradient rows.
            let (top, bottom) = columns.split_at_mut(2 * tw);
            for (r, halves) in [(2 * ty, top), (2 * ty + 1, bottom)] {
                let (even, odd) = halves.split_at_mut(tw);
                if r >= h {
                    even.fill(0.0);
                    odd.fill(0.0);
                    continue;
                }
                let row = &src[r * w..][..w];
                for tx in 0..tw {
                    even[tx] = row[2 * tx];
                    odd[tx] = if 2 * tx + 1 < w { row[2 * tx + 1] } else { 0.0 };
                }
            }
            let (gradients, pq) = columns.split_at_mut(4 * tw);
            let (y0e, rest) = gradients.split_at(tw);
            let (y0o, rest) = rest.split_at(tw);
            let (y1e, y1o) = rest.split_at(tw);
            let t0 = i * tiles + ty * tw;
            // Row by row of `P = A dY`: its (p, q) over the tile row, then the four columns,
            // each a loop over consecutive tiles.
            let (p, q) = pq.split_at_mut(tw);
            for row in 0..4 {
                let pairs = p.iter_mut().zip(q.iter_mut());
                let inputs = y0e.iter().zip(y0o).zip(y1e.iter().zip(y1o));
                for ((p, q), ((&y0e, &y0o), (&y1e, &y1o))) in pairs.zip(inputs) {
                    (*p, *q) = match row {
                        0 => (y0e, y0o),
                        1 => (y0e + y1e, y0o + y1o),
                        2 => (y0e - y1e, y0o - y1o),
                        _ => (-y1e, -y1o),
                    };
                }
                let (p, q) = (&*p, &*q);
                let at = |k: usize| (row * 4 + k) * t_all + t0;
                block[at(0)..][..tw].copy_from_slice(p);
                for ((d, a), b) in block[at(1)..][..tw].iter_mut().zip(p).zip(q) {
                    *d = a + b;
                }
                for ((d, a), b) in block[at(2)..][..tw].iter_mut().zip(p).zip(q) {
                    *d = a - b;
                }
                for (d, b) in block[at(3)..][..tw].iter_mut().zip(q) {
                    *d = -b;
                }
            }
        }
    }
}

/// `A dY A^T`, the adjoint of the output transform, for the output gradient `dy` of images
/// `n0..n0 + images` (`[N, O, H, W]`): `dM`, laid out `[O][16][T]` like `V`. Zero beyond the
/// output (the last tile of an odd side).
///
/// With `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]` and a tile's 2 x 2 gradient rows `y0`, `y1`:
/// `P = A dY` has rows `y0`, `y0 + y1`, `y0 - y1`, `-y1`, and each row `(p, q)` of `P`
/// becomes `(p, p + q, p - q, -q)`.
fn transform_gradient(s: &Shape, dy: &[f32], n0: usize, images: usize, dm: &mut [f32]) {
    if s.by_images() {
        return by_images::transform_gradient(s, dy, n0, images, dm);
    }
    let (tw, t_all) = (s.tiles_w(), images * s.tiles());
    if s.width.is_multiple_of(2) {
        let rows = ROWS * s.tiles_h() * s.width + s.width;
        let s = *s;
        wide_blocks(
            &mut dm[..s.out * ELEMENTS * t_all],
            ELEMENTS * t_all,
            || vec![0f32; rows],
            #[inline(always)]
            |rows, o, block| gradient_channel_even(s, dy, (n0, images), (o, block), rows),
        );
        return;
    }
    let s = *s;
    wide_blocks(
        &mut dm[..s.out * ELEMENTS * t_all],
        ELEMENTS * t_all,
        || vec![0f32; 6 * tw],
        #[inline(always)]
        |columns, o, block| gradient_channel(s, dy, (n0, images), (o, block), columns),
    );
}

/// One output channel `o` of [`transform_gradient`] for planes of even width, with the scratch
/// `rows` (`4 th W + W` floats), as [`input_channel_even`] does the input: `P = A dY` over
/// whole rows first (tile row `ty`'s gradient rows `y0 = 2 ty`, `y1 = 2 ty + 1`, zero below the
/// plane, give `y0`, `y0 + y1`, `y0 - y1`, `-y1`, each a `th x W` plane `P_k`), then each
/// `P_k` over all tiles at once: tile `j = ty tw + tx` has its column pair at `2 j`, `2 j + 1`
/// and gives `(p, p + q, p - q, -q)`. The operations per value are those of
/// [`gradient_channel`], so the same bits.
#[inline(always)]
fn gradient_channel_even(
    s: Shape,
    dy: &[f32],
    (n0, images): (usize, usize),
    (o, block): (usize, &mut [f32]),
    rows: &mut [f32],
) {
    let (th, tiles, plane) = (s.tiles_h(), s.tiles(), s.plane());
    let (h, w) = (s.height, s.width);
    let t_all = images * tiles;
    let stride = th * w;
    let (planes, zero) = rows.split_at_mut(ROWS * stride);
    let zero = &*zero;
    for i in 0..images {
        let src = &dy[((n0 + i) * s.out + o) * plane..][..plane];
        let row = |r: usize| if r < h { &src[r * w..][..w] } else { zero };
        {
            let (p0, rest) = planes.split_at_mut(stride);
            let (p1, rest) = rest.split_at_mut(stride);
            let (p2, p3) = rest.split_at_mut(stride);
            for ty in 0..th {
                let (y0, y1) = (row(2 * ty), row(2 * ty + 1));
                let at = ty * w;
                p0[at..][..w].copy_from_slice(y0);
                for ((d, a), b) in p1[at..][..w].iter_mut().zip(y0).zip(y1) {
                    *d = a + b;
                }
                for ((d, a), b) in p2[at..][..w].iter_mut().zip(y0).zip(y1) {
                    *d = a - b;
                }
                for (d, b) in p3[at..][..w].iter_mut().zip(y1) {
                    *d = -b;
                }
            }
        }
        let t0 = i * tiles;
        for k in 0..ROWS {
            let pairs = planes[k * stride..][..stride].chunks_exact(2);
            let (d0, rest) = block[k * 4 * t_all..][..4 * t_all].split_at_mut(t_all);
            let (d1, rest) = rest.split_at_mut(t_all);
            let (d2, d3) = rest.split_at_mut(t_all);
            let outputs = d0[t0..][..tiles]
                .iter_mut()
                .zip(&mut d1[t0..][..tiles])
                .zip(d2[t0..][..tiles].iter_mut().zip(&mut d3[t0..][..tiles]));
            for (((v0, v1), (v2, v3)), pq) in outputs.zip(pairs) {
                let (p, q) = (pq[0], pq[1]);
                *v0 = p;
                *v1 = p + q;
                *v2 = p - q;
                *v3 = -q;
            }
        }
    }
}

/// The weight gradient (`[O, C, 3, 3]`) of the convolution of `x` (`[N, C, H, W]`) whose output
/// gradient is `dy` (`[N, O, H, W]`), stride 1, padding 1: the backward pass of [`convolve`].
///
/// With `V` the transformed input tiles and `dM = A dY A^T` the transformed output gradient,
/// `dU_e = sum over tiles of dM_e V_e^T` (16 products `[O, T] x [T, C]`, 2.25 times fewer
/// multiply-adds than `dy cols^T`) and `dW = G^T dU G`. The images go in tasks of about
/// 4 [`TASK_TILES`] tiles, one after another: a task's transforms run parallel over channels,
/// then its 16 products parallel over elements, each on one thread, adding onto its `dU_e`.
/// Each `dU_e` is so summed over the tasks in order, whatever the threads.
///
/// (Groups of tasks each summing their own `dU`, added at the end, were slower at batch 16, where
/// four groups of four images gave products over 64 tiles on 8 x 8 planes: docs/benchmarks.md, "Figures behind the code's choices".)
pub(crate) fn weight_gradient(s: &Shape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (c, o) = (s.channels, s.out);
    let len = ELEMENTS * o * c;
    let task = (4 * TASK_TILES)
        .div_ceil(s.tiles())
        .clamp(1, s.batch.max(1));
    let workspace = &crate::matmul::WORKSPACE;
    let mut du = workspace.take(len);
    let mut v = workspace.take(s.scratch(task));
    let mut dm = workspace.take(s.scratch(task));
    for n0 in (0..s.batch).step_by(task) {
        let images = task.min(s.batch - n0);
        let t_all = images * s.tiles();
        let t = crate::profile::scope("winograd: weight gradient: input transform");
        transform_input(s, x, n0, images, &mut v);
        drop(t);
        let t = crate::profile::scope("winograd: weight gradient: gradient transform");
        transform_gradient(s, dy, n0, images, &mut dm);
        drop(t);
        let _t = crate::profile::scope("winograd: weight gradient: products");
        let (v, dm) = (&v, &dm);
        du[..len]
            .par_chunks_mut(o * c)
            .enumerate()
            .for_each(|(e, du)| {
                // dU_e (+)= dM_e V_e^T: [O, T] x [T, C].
                crate::matmul::product(
                    du,
                    (c, 1),
                    element(dm, e, o, t_all),
                    element(v, e, c, t_all).t(),
                    n0 > 0,
                    false,
                );
            });
    }
    workspace.give(v);
    workspace.give(dm);
    let _t = crate::profile::scope("winograd: weight gradient: filters");
    filters_from(du, o, c)
}

/// `dW = G^T dU_e G` per filter from `dU` (`[16][O][C]`, given back to the workspace), with
/// G's columns (1, 1/2, 1/2, 0), (0, 1/2, -1/2, 0) and (0, 1/2, 1/2, 1); `[O, C, 3, 3]`.
/// Parallel over output channels, each by [`filter_gradients`].
fn filters_from(du: Vec<f32>, o: usize, c: usize) -> Vec<f32> {
    let dw = crate::cpu::filled(o * c * 9, c * 9, |oi, dw| {
        let mut scratch = vec![0f32; 21 * c];
        let du = &du[..];
        wide(
            #[inline(always)]
            move || filter_gradients(du, o, oi, dw, &mut scratch),
        )
    });
    crate::matmul::WORKSPACE.give(du);
    dw
}

/// `(v0 + v1 / 2 + v2 / 2, v1 / 2 - v2 / 2, v1 / 2 + v2 / 2 + v3)` (`v G`, `G` of
/// [`filters_from`]) lane by lane, into `out` (`3 n` floats) from `v` (four rows of `n`).
#[inline(always)]
fn combine(out: &mut [f32], [v0, v1, v2, v3]: [&[f32]; 4]) {
    let n = v0.len();
    let (d0, rest) = out[..3 * n].split_at_mut(n);
    let (d1, d2) = rest.split_at_mut(n);
    let outputs = d0.iter_mut().zip(d1.iter_mut()).zip(d2.iter_mut());
    let inputs = v0.iter().zip(v1).zip(v2.iter().zip(v3));
    for (((d0, d1), d2), ((&a, &b), (&c, &d))) in outputs.zip(inputs) {
        *d0 = a + 0.5 * b + 0.5 * c;
        *d1 = 0.5 * b - 0.5 * c;
        *d2 = 0.5 * b + 0.5 * c + d;
    }
}

/// The filters of output channel `oi` of [`filters_from`] into `dw` (`[C][9]`), with `21 C`
/// floats of scratch: `G^T` over the rows of each `dU` tile (four columns `j`, three rows `a`
/// each: `[j][a][C]`), then `G` over its columns (`[a][b][C]`), each a loop over the `C`
/// filters, then the nine values of each filter laid side by side. The operations per value
/// are those of the tile's definition. A function of values run under [`wide`].
#[inline(always)]
fn filter_gradients(du: &[f32], o: usize, oi: usize, dw: &mut [f32], scratch: &mut [f32]) {
    let c = dw.len() / 9;
    let row = |e: usize| &du[(e * o + oi) * c..][..c];
    let (rows, out) = scratch.split_at_mut(12 * c);
    for j in 0..4 {
        combine(
            &mut rows[j * 3 * c..],
            [row(j), row(4 + j), row(8 + j), row(12 + j)],
        );
    }
    let rows = &*rows;
    for a in 0..3 {
        let v = |j: usize| &rows[(j * 3 + a) * c..][..c];
        combine(&mut out[a * 3 * c..], [v(0), v(1), v(2), v(3)]);
    }
    for (ci, dw) in dw.chunks_exact_mut(9).enumerate() {
        for (k, dw) in dw.iter_mut().enumerate() {
            *dw = out[k * c + ci];
        }
    }
}

/// The transforms for small planes ([`Shape::by_images`]): the columns of `V`, `M` and `dM`
/// are tile-major (`t * images + i`), a plane's pixels are first laid out image-minor
/// (`[pixel][image]`, a transpose per channel), and every operation of the tile definitions
/// (`tests::input_tile`, `tests::output_tile`) then runs over a vector of the task's images
/// (16 to 64 of them), contiguous on both sides.
mod by_images {
    use rayon::prelude::*;

    use super::{ELEMENTS, Shape};
    use crate::cpu::wide_blocks;

    /// `out = f(a, b)` lane by lane.
    #[inline(always)]
    fn lanes(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    }

    /// `out = f(a, b, c)` lane by lane.
    #[inline(always)]
    fn lanes3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
        for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
            *o = f(a, b, c);
        }
    }

    /// Image `i`'s plane (rows of `width`) into `padded` laid out `[pixel][image]`: its pixel
    /// `(r, q)` at `((r + border) pw + q + border) images + i`, in rows `pw` wide.
    #[inline(always)]
    fn lay_out_by_image<'a>(
        planes: impl Iterator<Item = &'a [f32]>,
        width: usize,
        (pw, border): (usize, usize),
        images: usize,
        padded: &mut [f32],
    ) {
        for (i, plane) in planes.enumerate() {
            for (r, row) in plane.chunks_exact(width).enumerate() {
                for (q, &value) in row.iter().enumerate() {
                    padded[((r + border) * pw + q + border) * images + i] = value;
                }
            }
        }
    }

    /// Vector `k` (of `images` lanes) of a scratch buffer.
    fn slot(buffer: &mut [f32], k: usize, images: usize) -> &mut [f32] {
        &mut buffer[k * images..][..images]
    }

    /// The slice of element `e`, tile `t` (all images) in a block laid out `[16][T]`.
    fn at(
        block: &mut [f32],
        (e, t): (usize, usize),
        (t_all, images): (usize, usize),
    ) -> &mut [f32] {
        &mut block[e * t_all + t * images..][..images]
    }

    /// `V` of images `n0..n0 + images` (see [`super::transform_input`]); channels in parallel.
    pub(super) fn transform_input(s: &Shape, x: &[f32], n0: usize, images: usize, v: &mut [f32]) {
        let t_all = images * s.tiles();
        let (ph, pw) = (2 * s.tiles_h() + 2, 2 * s.tiles_w() + 2);
        let s = *s;
        wide_blocks(
            &mut v[..s.channels * ELEMENTS * t_all],
            ELEMENTS * t_all,
            || (vec![0f32; ph * pw * images], vec![0f32; ELEMENTS * images]),
            #[inline(always)]
            |(padded, rows), c, block| input_channel(s, x, (n0, images), (c, block), padded, rows),
        );
    }

    /// One channel of [`transform_input`]: `padded[(r, q)][i]` holds pixel `(r - 1, q - 1)` of
    /// image `i` (the border is never written, so it stays zero: the buffer is reused only for
    /// this shape), `rows` the row combinations `B^T d` of one tile.
    #[inline(always)]
    fn input_channel(
        s: Shape,
        x: &[f32],
        (n0, images): (usize, usize),
        (c, block): (usize, &mut [f32]),
        padded: &mut [f32],
        rows: &mut [f32],
    ) {
        let (tw, plane, w) = (s.tiles_w(), s.plane(), s.width);
        let t_all = images * s.tiles();
        let pw = 2 * tw + 2;
        let planes = (0..images).map(|i| &x[((n0 + i) * s.channels + c) * plane..][..plane]);
        lay_out_by_image(planes, w, (pw, 1), images, padded);
        for t in 0..s.tiles() {
            let (ty, tx) = (t / tw, t % tw);
            let d =
                |a: usize, b: usize| &padded[((2 * ty + a) * pw + 2 * tx + b) * images..][..images];
            // rows[r][j] = (B^T d)[r][j], as `tests::input_tile`'s `t`.
            for j in 0..4 {
                lanes(slot(rows, j, images), d(0, j), d(2, j), |a, b| a - b);
                lanes(slot(rows, 4 + j, images), d(1, j), d(2, j), |a, b| a + b);
                lanes(slot(rows, 8 + j, images), d(2, j), d(1, j), |a, b| a - b);
                lanes(slot(rows, 12 + j, images), d(1, j), d(3, j), |a, b| a - b);
            }
            let rows = &*rows;
            let r = |r: usize, j: usize| &rows[(r * 4 + j) * images..][..images];
            let dims = (t_all, images);
            for i in 0..4 {
                lanes(at(block, (i * 4, t), dims), r(i, 0), r(i, 2), |a, b| a - b);
                lanes(at(block, (i * 4 + 1, t), dims), r(i, 1), r(i, 2), |a, b| {
                    a + b
                });
                lanes(at(block, (i * 4 + 2, t), dims), r(i, 2), r(i, 1), |a, b| {
                    a - b
                });
                lanes(at(block, (i * 4 + 3, t), dims), r(i, 1), r(i, 3), |a, b| {
                    a - b
                });
            }
        }
    }

    /// The outputs of `images` images from `M` (see [`super::transform_output`]): output
    /// channels in parallel into `[O][pixel][image]`, then planes in parallel into `y`.
    pub(super) fn transform_output(s: &Shape, m: &[f32], images: usize, y: &mut [f32]) {
        let (plane, t_all) = (s.plane(), images * s.tiles());
        let workspace = &crate::matmul::WORKSPACE;
        let mut by_pixel = workspace.take(s.out * plane * images);
        let shape = *s;
        wide_blocks(
            &mut by_pixel[..s.out * plane * images],
            plane * images,
            || vec![0f32; 8 * images],
            #[inline(always)]
            |sums, o, out| {
                let block = &m[o * ELEMENTS * t_all..][..ELEMENTS * t_all];
                output_channel(shape, block, images, out, sums)
            },
        );
        let pixels = &by_pixel[..s.out * plane * images];
        y[..images * s.out * plane]
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(index, dst)| {
                let (i, o) = (index / s.out, index % s.out);
                let src = &pixels[o * plane * images + i..];
                for (d, &v) in dst.iter_mut().zip(src.iter().step_by(images)) {
                    *d = v;
                }
            });
        workspace.give(by_pixel);
    }

    /// One output channel of [`transform_output`]: `out[pixel][image]`, with `sums` the row
    /// combinations `A^T m` of one tile (as `tests::output_tile`'s `t`).
    #[inline(always)]
    fn output_channel(s: Shape, block: &[f32], images: usize, out: &mut [f32], sums: &mut [f32]) {
        let (tw, h, w) = (s.tiles_w(), s.height, s.width);
        let t_all = images * s.tiles();
        for t in 0..s.tiles() {
            let (ty, tx) = (t / tw, t % tw);
            let m = |e: usize| &block[e * t_all + t * images..][..images];
            for j in 0..4 {
                lanes3(
                    slot(sums, j, images),
                    m(j),
                    m(4 + j),
                    m(8 + j),
                    |a, b, c| a + b + c,
                );
                lanes3(
                    slot(sums, 4 + j, images),
                    m(4 + j),
                    m(8 + j),
                    m(12 + j),
                    |a, b, c| a - b - c,
                );
            }
            let sums = &*sums;
            let sum = |k: usize, j: usize| &sums[(k * 4 + j) * images..][..images];
            for k in 0..2 {
                let r = 2 * ty + k;
                if r >= h {
                    break;
                }
                let q = 2 * tx;
                let first = &mut out[(r * w + q) * images..][..images];
                lanes3(first, sum(k, 0), sum(k, 1), sum(k, 2), |a, b, c| a + b + c);
                if q + 1 < w {
                    let second = &mut out[(r * w + q + 1) * images..][..images];
                    lanes3(second, sum(k, 1), sum(k, 2), sum(k, 3), |a, b, c| a - b - c);
                }
            }
        }
    }

    /// `dM` of images `n0..n0 + images` (see [`super::transform_gradient`]); output channels
    /// in parallel.
    pub(super) fn transform_gradient(
        s: &Shape,
        dy: &[f32],
        n0: usize,
        images: usize,
        dm: &mut [f32],
    ) {
        let t_all = images * s.tiles();
        let (ph, pw) = (2 * s.tiles_h(), 2 * s.tiles_w());
        let s = *s;
        wide_blocks(
            &mut dm[..s.out * ELEMENTS * t_all],
            ELEMENTS * t_all,
            || (vec![0f32; ph * pw * images], vec![0f32; 2 * images]),
            #[inline(always)]
            |(padded, pq), o, block| gradient_channel(s, dy, (n0, images), (o, block), padded, pq),
        );
    }

    /// One output channel of [`transform_gradient`]: `padded[(r, q)][i]` the gradient of image
    /// `i` at `(r, q)`, zero beyond the output (never written); `pq` the row pair `(p, q)`.
    #[inline(always)]
    fn gradient_channel(
        s: Shape,
        dy: &[f32],
        (n0, images): (usize, usize),
        (o, block): (usize, &mut [f32]),
        padded: &mut [f32],
        pq: &mut [f32],
    ) {
        let (tw, plane, w) = (s.tiles_w(), s.plane(), s.width);
        let t_all = images * s.tiles();
        let pw = 2 * tw;
        let planes = (0..images).map(|i| &dy[((n0 + i) * s.out + o) * plane..][..plane]);
        lay_out_by_image(planes, w, (pw, 0), images, padded);
        let dims = (t_all, images);
        for t in 0..s.tiles() {
            let (ty, tx) = (t / tw, t % tw);
            let g =
                |r: usize, q: usize| &padded[((2 * ty + r) * pw + 2 * tx + q) * images..][..images];
            let (y0e, y0o, y1e, y1o) = (g(0, 0), g(0, 1), g(1, 0), g(1, 1));
            for row in 0..4 {
                let (p, q) = pq.split_at_mut(images);
                match row {
                    0 => {
                        p.copy_from_slice(y0e);
                        q.copy_from_slice(y0o);
                    }
                    1 => {
                        lanes(p, y0e, y1e, |a, b| a + b);
                        lanes(q, y0o, y1o, |a, b| a + b);
                    }
                    2 => {
                        lanes(p, y0e, y1e, |a, b| a - b);
                        lanes(q, y0o, y1o, |a, b| a - b);
                    }
                    _ => {
                        lanes(p, y1e, y1e, |a, _| -a);
                        lanes(q, y1o, y1o, |a, _| -a);
                    }
                }
                let (p, q) = (&*p, &*q);
                at(block, (row * 4, t), dims).copy_from_slice(p);
                lanes(at(block, (row * 4 + 1, t), dims), p, q, |a, b| a + b);
                lanes(at(block, (row * 4 + 2, t), dims), p, q, |a, b| a - b);
                lanes(at(block, (row * 4 + 3, t), dims), q, q, |a, _| -a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `B^T d B` for the 4 x 4 patch `d` (rows of 4), one tile at a time: the definition
    /// [`transform_input`] computes a row of tiles at a time.
    pub(super) fn input_tile(d: [[f32; 4]; 4]) -> [f32; ELEMENTS] {
        let mut t = [[0f32; 4]; 4];
        for j in 0..4 {
            t[0][j] = d[0][j] - d[2][j];
            t[1][j] = d[1][j] + d[2][j];
            t[2][j] = d[2][j] - d[1][j];
            t[3][j] = d[1][j] - d[3][j];
        }
        let mut v = [0f32; ELEMENTS];
        for i in 0..4 {
            let r = t[i];
            v[i * 4] = r[0] - r[2];
            v[i * 4 + 1] = r[1] + r[2];
            v[i * 4 + 2] = r[2] - r[1];
            v[i * 4 + 3] = r[1] - r[3];
        }
        v
    }

    /// `A^T m A` for the 16 elements `m` of a tile: the 2 x 2 outputs, row by row.
    /// `A dY A^T` of one tile's 2 x 2 output gradient `d`, by the definition: `P = A dY` has
    /// rows `y0`, `y0 + y1`, `y0 - y1`, `-y1`, and each row `(p, q)` gives `(p, p + q, p - q,
    /// -q)`.
    pub(super) fn gradient_tile(d: [[f32; 2]; 2]) -> [f32; ELEMENTS] {
        let [y0, y1] = d;
        let p: [[f32; 2]; 4] = [
            y0,
            [y0[0] + y1[0], y0[1] + y1[1]],
            [y0[0] - y1[0], y0[1] - y1[1]],
            [-y1[0], -y1[1]],
        ];
        let mut m = [0f32; ELEMENTS];
        for (k, [p, q]) in p.into_iter().enumerate() {
            m[k * 4..k * 4 + 4].copy_from_slice(&[p, p + q, p - q, -q]);
        }
        m
    }

    pub(super) fn output_tile(m: [f32; ELEMENTS]) -> [f32; 4] {
        let mut t = [[0f32; 4]; 2];
        for j in 0..4 {
            t[0][j] = m[j] + m[4 + j] + m[8 + j];
            t[1][j] = m[4 + j] - m[8 + j] - m[12 + j];
        }
        [
            t[0][0] + t[0][1] + t[0][2],
            t[0][1] - t[0][2] - t[0][3],
            t[1][0] + t[1][1] + t[1][2],
            t[1][1] - t[1][2] - t[1][3],
        ]
    }

    /// The row-at-a-time transforms give, bit for bit, the tile-at-a-time definitions, at even
    /// and odd sides and several images.
    #[test]
    fn row_transforms_equal_the_tile_definitions() {
        // Planes of at most 4 tiles a row go by images, wider ones by rows of tiles.
        for (images, height, width) in [
            (2, 4, 4),
            (1, 5, 7),
            (3, 7, 6),
            (1, 1, 9),
            (3, 8, 8),
            (2, 12, 10),
            (2, 7, 12),
        ] {
            let s = Shape {
                batch: images,
                channels: 2,
                out: 2,
                height,
                width,
            };
            let x: Vec<f32> = (0..images * 2 * height * width)
                .map(|k| ((k * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let (tw, tiles) = (s.tiles_w(), s.tiles());
            let t_all = images * tiles;
            let mut v = vec![f32::NAN; s.scratch(images)];
            transform_input(&s, &x, 0, images, &mut v);
            let at = |i: usize, c: usize, r: isize, q: isize| {
                let inside = (0..height as isize).contains(&r) && (0..width as isize).contains(&q);
                if inside {
                    x[((i * 2 + c) * height + r as usize) * width + q as usize]
                } else {
                    0.0
                }
            };
            for i in 0..images {
                for c in 0..2 {
                    for t in 0..tiles {
                        let (ty, tx) = ((t / tw) as isize, (t % tw) as isize);
                        let mut d = [[0f32; 4]; 4];
                        for (r, row) in d.iter_mut().enumerate() {
                            for (q, value) in row.iter_mut().enumerate() {
                                *value = at(i, c, 2 * ty - 1 + r as isize, 2 * tx - 1 + q as isize);
                            }
                        }
                        let expected = input_tile(d);
                        for (e, expected) in expected.into_iter().enumerate() {
                            let got = v[(c * ELEMENTS + e) * t_all + s.column(images, i, t)];
                            assert_eq!(got.to_bits(), expected.to_bits(), "{height}x{width}");
                        }
                    }
                }
            }
            // x as an output gradient: A dY A^T of each tile's 2 x 2 block, zero outside.
            let mut dm = vec![f32::NAN; s.scratch(images)];
            transform_gradient(&s, &x, 0, images, &mut dm);
            for i in 0..images {
                for o in 0..2 {
                    for t in 0..tiles {
                        let (ty, tx) = ((t / tw) as isize, (t % tw) as isize);
                        let d: [[f32; 2]; 2] = std::array::from_fn(|r| {
                            std::array::from_fn(|q| {
                                at(i, o, 2 * ty + r as isize, 2 * tx + q as isize)
                            })
                        });
                        for (e, expected) in gradient_tile(d).into_iter().enumerate() {
                            let got = dm[(o * ELEMENTS + e) * t_all + s.column(images, i, t)];
                            assert_eq!(got.to_bits(), expected.to_bits(), "dM {height}x{width}");
                        }
                    }
                }
            }
            // The same buffer as M: each output's 2 x 2 block from its tile's 16 values.
            let mut y = vec![f32::NAN; images * 2 * height * width];
            transform_output(&s, &v, images, &mut y);
            for i in 0..images {
                for o in 0..2 {
                    for t in 0..tiles {
                        let (ty, tx) = (t / tw, t % tw);
                        let mut m = [0f32; ELEMENTS];
                        for (e, m) in m.iter_mut().enumerate() {
                            *m = v[(o * ELEMENTS + e) * t_all + s.column(images, i, t)];
                        }
                        for (k, expected) in output_tile(m).into_iter().enumerate() {
                            let (r, q) = (2 * ty + k / 2, 2 * tx + k % 2);
                            if r < height && q < width {
                                let got = y[((i * 2 + o) * height + r) * width + q];
                                assert_eq!(got.to_bits(), expected.to_bits(), "{height}x{width}");
                            }
                        }
                    }
                }
            }
            assert!(y.iter().all(|v| !v.is_nan()), "every output written");
        }
    }

    /// The transforms of one tile and one filter give the direct 2 x 2 correlation.
    #[test]
    fn one_tile_is_the_direct_correlation() {
        let d: Vec<f32> = (0..16).map(|k| (k * 7 % 11) as f32 - 5.0).collect();
        let g: Vec<f32> = (0..9).map(|k| (k * 5 % 7) as f32 - 3.0).collect();
        let mut u = vec![0.0; weights_len(1, 1)];
        weights(&g, 1, 1, false, &mut u);
        let mut rows = [[0f32; 4]; 4];
        for (r, row) in rows.iter_mut().enumerate() {
            row.copy_from_slice(&d[r * 4..][..4]);
        }
        let v = input_tile(rows);
        let mut m = [0f32; ELEMENTS];
        for e in 0..ELEMENTS {
            m[e] = u[e] * v[e];
        }
        let y = output_tile(m);
        for (k, y) in y.into_iter().enumerate() {
            let (r, q) = (k / 2, k % 2);
            let mut direct = 0.0;
            for i in 0..3 {
                for j in 0..3 {
                    direct += d[(r + i) * 4 + q + j] * g[i * 3 + j];
                }
            }
            assert_eq!(y, direct, "output {r}, {q}");
        }
    }
}
