//! 2-D max-pooling with padding, differentiable.
//!
//! candle's `max_pool2d` has no padding and cannot backpropagate when the kernel differs from the
//! stride (candle issues #1593 and #1851); torchvision's ImageNet stem needs
//! `MaxPool2d(kernel_size=3, stride=2, padding=1)`. [`max_pool2d`] is a candle `CustomOp1` with
//! its own CPU forward and backward, matching PyTorch exactly:
//!
//! - padding is implicit `-inf` (a padded position never wins);
//! - output size `floor((H + 2 p - k) / s) + 1` (PyTorch's `ceil_mode=False`);
//! - ties go to the first maximum in the window, scanning rows then columns, and a NaN wins (as
//!   PyTorch's CPU kernel: `if val > max || isnan(val)`), so the gradient of a window goes to
//!   exactly one input.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::error::{ResnetError, Result};

/// Kernel, stride and padding of a square max-pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Implicit `-inf` border on each side; at most `kernel / 2`, as PyTorch requires.
    pub padding: usize,
}

impl MaxPool2d {
    /// torchvision's ResNet stem: kernel 3, stride 2, padding 1.
    pub const RESNET_STEM: MaxPool2d = MaxPool2d {
        kernel: 3,
        stride: 2,
        padding: 1,
    };

    /// Output height or width for an input of `size`.
    pub fn output_size(&self, size: usize) -> Option<usize> {
        let padded = size + 2 * self.padding;
        (padded >= self.kernel).then(|| (padded - self.kernel) / self.stride + 1)
    }

    fn check(&self, dims: &[usize]) -> Result<(usize, usize, usize, usize)> {
        let &[_, _, h, w] = dims else {
            return Err(ResnetError::Rank {
                op: "max-pool",
                expected: "[N, C, H, W]",
                got: dims.to_vec(),
            });
        };
        let valid = self.kernel > 0 && self.stride > 0 && self.padding <= self.kernel / 2;
        let sizes = valid.then(|| (self.output_size(h), self.output_size(w)));
        match sizes {
            Some((Some(oh), Some(ow))) => Ok((h, w, oh, ow)),
            _ => Err(ResnetError::Window {
                op: "max-pool",
                kernel: self.kernel,
                kernel_w: self.kernel,
                stride: self.stride,
                padding: self.padding,
                height: h,
                width: w,
            }),
        }
    }
}

/// Max-pools `x` (`[N, C, H, W]`, f32 or f64) with `pool`; differentiable.
///
/// On another device than the CPU (CUDA), the op runs on a CPU copy and the result is moved
/// back; candle's device transfers are differentiable, so the gradient takes the same way. The
/// copies are small (the stem's activations, once per step) next to the convolutions.
pub fn max_pool2d(x: &Tensor, pool: MaxPool2d) -> Result<Tensor> {
    pool.check(x.dims())?;
    if !x.device().is_cpu() {
        let on_cpu = x.to_device(&candle_core::Device::Cpu)?;
        return Ok(on_cpu
            .contiguous()?
            .apply_op1(pool)?
            .to_device(x.device())?);
    }
    Ok(x.contiguous()?.apply_op1(pool)?)
}

/// The window of output `(oy, ox)`: input rows and columns it covers (clipped to the input).
fn window(pool: &MaxPool2d, o: usize, size: usize) -> std::ops::Range<usize> {
    let start = (o * pool.stride) as isize - pool.padding as isize;
    let end = (start + pool.kernel as isize).min(size as isize);
    start.max(0) as usize..end.max(0) as usize
}

/// Index (within the plane) of the first maximum of a window; NaN wins.
fn argmax<T: WithDType>(
    plane: &[T],
    width: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> usize {
    let mut best = rows.start * width + cols.start;
    let mut max = plane[best];
    for y in rows {
        for x in cols.clone() {
            let v = plane[y * width + x];
            if v > max || v.to_f64().is_nan() {
                max = v;
                best = y * width + x;
                if v.to_f64().is_nan() {
                    return best;
                }
            }
        }
    }
    best
}

fn forward<T: WithDType>(
    pool: &MaxPool2d,
    input: &[T],
    (h, w, oh, ow): (usize, usize, usize, usize),
) -> Vec<T> {
    let mut out = vec![T::from_f64(0.0); input.len() / (h * w) * oh * ow];
    out.par_chunks_mut(oh * ow)
        .zip(input.par_chunks(h * w))
        .for_each(|(out, plane)| {
            for oy in 0..oh {
                let rows = window(pool, oy, h);
                for ox in 0..ow {
                    let cols = window(pool, ox, w);
                    out[oy * ow + ox] = plane[argmax(plane, w, rows.clone(), cols)];
                }
            }
        });
    out
}

fn backward<T: WithDType>(
    pool: &MaxPool2d,
    input: &[T],
    grad_out: &[T],
    (h, w, oh, ow): (usize, usize, usize, usize),
) -> Vec<T> {
    let mut grad = vec![T::from_f64(0.0); input.len()];
    grad.par_chunks_mut(h * w)
        .zip(input.par_chunks(h * w))
        .zip(grad_out.par_chunks(oh * ow))
        .for_each(|((grad, plane), grad_out)| {
            // Written before it is read: a fresh allocation's first touch is then a write, not
            // a read of the shared zero page followed by a copy-on-write fault (with its TLB
            // shootdown across threads) at the first `+=`.
            grad.fill(T::from_f64(0.0));
            for oy in 0..oh {
                let rows = window(pool, oy, h);
                for ox in 0..ow {
                    let cols = window(pool, ox, w);
                    grad[argmax(plane, w, rows.clone(), cols)] += grad_out[oy * ow + ox];
                }
            }
        });
    grad
}

fn contiguous<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [T]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("max-pool needs a contiguous input")
    };
    Ok(&T::cpu_storage_as_slice(storage)?[start..end])
}

fn geometry(
    pool: &MaxPool2d,
    layout: &Layout,
) -> candle_core::Result<(usize, usize, usize, usize)> {
    pool.check(layout.dims())
        .map_err(|e| candle_core::Error::Msg(e.to_string()))
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "sd-max-pool2d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _t = crate::profile::scope("max-pool forward");
        let g = geometry(self, layout)?;
        let dims = layout.dims();
        let shape = Shape::from((dims[0], dims[1], g.2, g.3));
        let out = match storage {
            CpuStorage::F32(_) => {
                CpuStorage::F32(forward(self, contiguous::<f32>(storage, layout)?, g))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(forward(self, contiguous::<f64>(storage, layout)?, g))
            }
            _ => candle_core::bail!("max-pool supports f32 and f64 tensors"),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = arg.apply_op2_no_bwd(&grad_res.contiguous()?, &MaxPool2dBackward(*self))?;
        Ok(Some(grad))
    }
}

/// The backward of [`MaxPool2d`]: `(input, grad_output) -> grad_input`.
struct MaxPool2dBackward(MaxPool2d);

impl CustomOp2 for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "sd-max-pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        input: &CpuStorage,
        input_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _t = crate::profile::scope("max-pool backward");
        let g = geometry(&self.0, input_layout)?;
        let out = match (input, grad) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(backward(
                &self.0,
                contiguous::<f32>(input, input_layout)?,
                contiguous::<f32>(grad, grad_layout)?,
                g,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(backward(
                &self.0,
                contiguous::<f64>(input, input_layout)?,
                contiguous::<f64>(grad, grad_layout)?,
                g,
            )),
            _ => candle_core::bail!("max-pool backward supports f32 and f64"),
        };
        Ok((out, input_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn tensor(values: Vec<f64>, shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn hand_computed_case_with_padding_and_ties() {
        // One 4x4 plane; kernel 3, stride 2, padding 1: a 2x2 output.
        #[rustfmt::skip]
        let x = vec![
            1.0, 5.0, 5.0, 0.0,
            2.0, 3.0, 4.0, 7.0,
            9.0, 9.0, 1.0, 1.0,
            0.0, 2.0, 8.0, 1.0,
        ];
        let var = Var::from_tensor(&tensor(x, (1, 1, 4, 4))).unwrap();
        let y = max_pool2d(var.as_tensor(), MaxPool2d::RESNET_STEM).unwrap();
        // Windows: rows -1..2 x cols -1..2 -> max 5 (first at (0,1)); rows -1..2 x cols 1..4 ->
        // 7; rows 1..4 x cols -1..2 -> 9 (first at (2,0)); rows 1..4 x cols 1..4 -> 9 at (2,1).
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            [5.0, 7.0, 9.0, 9.0]
        );
        let grads = (y * tensor(vec![1.0, 10.0, 100.0, 1000.0], (1, 1, 2, 2)))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = grads.get(var.as_tensor()).unwrap();
        #[rustfmt::skip]
        let expected = [
            0.0, 1.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 10.0,
            100.0, 1000.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(g.flatten_all().unwrap().to_vec1::<f64>().unwrap(), expected);
    }

    #[test]
    fn matches_candle_where_candle_applies() {
        // Kernel == stride, no padding: candle's own max_pool2d and its backward.
        let x = Tensor::randn(0f32, 1.0, (2, 3, 6, 8), &Device::Cpu).unwrap();
        let pool = MaxPool2d {
            kernel: 2,
            stride: 2,
            padding: 0,
        };
        let ours = max_pool2d(&x, pool).unwrap();
        let theirs = x.max_pool2d(2).unwrap();
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn refuses_bad_geometry() {
        let x = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let bad = MaxPool2d {
            kernel: 3,
            stride: 1,
            padding: 2,
        };
        assert!(max_pool2d(&x, bad).is_err());
        let too_big = MaxPool2d {
            kernel: 5,
            stride: 1,
            padding: 1,
        };
        assert!(max_pool2d(&x, too_big).is_err());
        let flat = Tensor::zeros((4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&flat, MaxPool2d::RESNET_STEM).is_err());
    }
}
