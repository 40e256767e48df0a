//! BatchNorm in training mode as one fused op (forward and backward), for f32 CPU tensors.
//!
//! Forward, per channel `c` over the `M = N H W` values: `mean`, biased `var`,
//! `xhat = (x - mean) / sqrt(var + eps)`, `y = w xhat + b`. Backward, with `dy` the output
//! gradient: `db = sum dy`, `dw = sum dy xhat`,
//! `dx = w / sqrt(var + eps) / M * (M dy - db - xhat dw)`. Statistics are accumulated in f64.
//! Compared with the composition of candle ops (a transpose copy, two means, broadcasts and
//! their backward passes) it reads the input twice and writes the output once, and the backward
//! reads `x` and `dy` twice and writes `dx` once.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

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
    let batch = x.len() / (channels * plane);
    let count = (batch * plane) as f64;
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let planes = || (0..batch).map(move |n| &x[(n * channels + c) * plane..][..plane]);
            let mean = planes()
                .map(|p| p.iter().map(|&v| f64::from(v)).sum::<f64>())
                .sum::<f64>()
                / count;
            let var = planes()
                .map(|p| {
                    p.iter()
                        .map(|&v| (f64::from(v) - mean).powi(2))
                        .sum::<f64>()
                })
                .sum::<f64>()
                / count;
            (mean, var)
        })
        .unzip()
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
        let dims = xl.dims();
        let (channels, plane) = (dims[1], dims[2] * dims[3]);
        let (mean, var) = statistics(x, channels, plane);
        let scale: Vec<f32> = (0..channels)
            .map(|c| (f64::from(w[c]) / (var[c] + self.eps).sqrt()) as f32)
            .collect();
        let shift: Vec<f32> = (0..channels)
            .map(|c| (f64::from(b[c]) - mean[c] * f64::from(scale[c])) as f32)
            .collect();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(plane)
            .zip(x.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (y, x))| {
                let c = i % channels;
                let (s, t) = (scale[c], shift[c]);
                if self.relu {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = (x * s + t).max(0.0);
                    }
                } else {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = x * s + t;
                    }
                }
            });
        *self.statistics.lock().expect("statistics lock") = Some((mean, var));
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
        let (n, channels, h, width) = x.dims4()?;
        let plane = h * width;
        let count = (n * plane) as f64;
        let dy = dy.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ys, yl) = y.storage_and_layout();
        let (dys, dyl) = dy.storage_and_layout();
        let (Storage::Cpu(xs), Storage::Cpu(ys), Storage::Cpu(dys)) = (&*xs, &*ys, &*dys) else {
            candle_core::bail!("fused BatchNorm runs on the CPU only")
        };
        let (xv, yv, dyv) = (slice(xs, xl)?, slice(ys, yl)?, slice(dys, dyl)?);
        let wv = w.to_vec1::<f32>()?;
        // Each forward pass makes its own op, so these statistics are this x's.
        let (mean, var) = match self.statistics.lock().expect("statistics lock").clone() {
            Some(saved) => saved,
            None => statistics(xv, channels, plane),
        };
        let relu = self.relu;
        // The gradient reaching the normalization: dy, or 0 where the ReLU cut the output.
        let masked = move |dy: f32, y: f32| if relu && y <= 0.0 { 0.0 } else { dy };
        let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let (db, dw): (Vec<f64>, Vec<f64>) = (0..channels)
            .into_par_iter()
            .map(|c| {
                let (mut db, mut dw) = (0.0, 0.0);
                for k in 0..n {
                    let at = (k * channels + c) * plane;
                    let values = xv[at..at + plane]
                        .iter()
                        .zip(&dyv[at..at + plane])
                        .zip(&yv[at..at + plane]);
                    for ((&x, &dy), &y) in values {
                        let dy = f64::from(masked(dy, y));
                        db += dy;
                        dw += dy * (f64::from(x) - mean[c]) * invstd[c];
                    }
                }
                (db, dw)
            })
            .unzip();
        let mut dx = vec![0f32; xv.len()];
        dx.par_chunks_mut(plane)
            .zip(xv.par_chunks(plane).zip(dyv.par_chunks(plane)))
            .zip(yv.par_chunks(plane))
            .enumerate()
            .for_each(|(i, ((dx, (x, dy)), y))| {
                let c = i % channels;
                let k = f64::from(wv[c]) * invstd[c] / count;
                for (((dx, &x), &dy), &y) in dx.iter_mut().zip(x).zip(dy).zip(y) {
                    let xhat = (f64::from(x) - mean[c]) * invstd[c];
                    let dy = f64::from(masked(dy, y));
                    *dx = (k * (count * dy - db[c] - xhat * dw[c])) as f32;
                }
            });
        let device = x.device();
        let to = |v: Vec<f64>| {
            Tensor::from_vec(
                v.into_iter().map(|x| x as f32).collect::<Vec<_>>(),
                channels,
                device,
            )
        };
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(to(dw)?),
            Some(to(db)?),
        ))
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn fused_equals_the_composition(
            n in 1usize..5, c in 1usize..6, h in 1usize..7, w in 1usize..7,
            shift in -3f32..3.0, spread in 0.1f32..4.0, relu in any::<bool>(),
        ) {
            prop_assume!(n * h * w > 1);
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
    }
}
